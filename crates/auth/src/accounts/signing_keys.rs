//! The token signing keys and the service's own secrets.
//!
//! Each RSA private key (PKCS#1 DER) is the secrets manager's secret `coffer/jwt-signing/<kid>`
//! (tags `owner=coffer-auth`, `purpose=jwt-signing`), and its `signing_keys` row is the index
//! (kid, created, retired, dropped) without material. A row from before the secrets manager, its
//! key sealed in the row under a data key of its own, still loads and is adopted with its bytes.
//! The first start generates the first key; the schema allows one current key, so a replica
//! starting at the same time as another adopts the key that won (the loser's secret stays,
//! unused).
//!
//! Rotating makes a new key sign while the earlier ones keep verifying, and stay in the JWKS,
//! until every token they signed has expired (keys past that window are not even unwrapped). A
//! leaked retired key can be dropped for good: its tokens stop verifying here at once and in
//! every other process at its next reload. Another process's rotation is picked up by reloading
//! the keys, which [`Accounts::verify`] does when it meets an unknown kid.
//!
//! The service's own secrets, the email blind-index key and the audit-detail hashing key, are
//! `coffer/email-blind-index` and `coffer/audit-detail-hash` (tag `owner=coffer-auth`), made on
//! first start; a database from before the secrets manager has them adopted, same bytes, from
//! its `service_secrets` rows, which stay as they were.

use std::collections::BTreeMap;

use coffer_clock::Clock;
use coffer_crypto::{Aad, DataKey, HmacKey, open_bytes};
use coffer_keys::{KeyContext, KeyError, KeyProvider, WrappedKey};
use coffer_secrets::{SecretBytes, SecretError, SecretName, SecretsManager};

use super::error::{AuthError, corrupt, invalid};
use super::{Accounts, AccountsDeps};
use crate::revocation::unix_secs;
use crate::store::{StoredSigningKey, UserStore, UserStoreError};
use crate::token::{SigningKey, TokenConfig, TokenKeys};

fn signing_key_context(kid: &str) -> KeyContext {
    KeyContext::new()
        .with("purpose", "token-signing-key")
        .with("kid", kid)
}

fn signing_key_aad(kid: &str) -> Aad {
    Aad::new("auth.signing_key").with(kid)
}

impl Accounts {
    /// Rotates the token signing key: a new key signs from now on, the previous one keeps
    /// verifying (and stays in the JWKS) until its tokens have expired. Returns the kid that
    /// signs now (another process's, if it rotated at the same moment).
    ///
    /// # Errors
    /// Store or key provider failures.
    pub async fn rotate_signing_key(&self) -> Result<String, AuthError> {
        let stored = new_signing_key(&self.secrets, self.clock.as_ref()).await?;
        self.store.add_signing_key(&stored, false).await?;
        self.reload_signing_keys().await?;
        self.tokens
            .current_kid()
            .ok_or_else(|| corrupt("no signing key is current"))
    }

    /// When the key that signs now started signing (the worker rotates it by age).
    ///
    /// # Errors
    /// Store failures.
    pub async fn current_signing_key_created_at(&self) -> Result<Option<u64>, AuthError> {
        Ok(self
            .store
            .signing_keys()
            .await?
            .iter()
            .filter(|k| k.retired_at.is_none())
            .map(|k| k.created_at)
            .max())
    }

    /// Drops a retired signing key for good (it leaked): tokens it signed stop verifying now,
    /// here and, at their next reload, in every other process. The current key cannot be
    /// dropped: rotate first.
    ///
    /// # Errors
    /// [`AuthError::Invalid`] for the current or an unknown key, dependencies.
    pub async fn drop_signing_key(&self, kid: &str) -> Result<(), AuthError> {
        let now = self.clock.unix_secs();
        if !self.store.drop_signing_key(kid, now).await? {
            return Err(invalid("kid", "not a retired signing key: rotate first"));
        }
        self.tokens.drop_key(kid);
        Ok(())
    }

    /// Reads the signing keys again (another replica rotated them).
    ///
    /// # Errors
    /// Store or key provider failures.
    pub async fn reload_signing_keys(&self) -> Result<(), AuthError> {
        let ring = load_ring(
            self.store.as_ref(),
            self.keys.as_ref(),
            &self.secrets,
            &self.config.token,
            self.clock.as_ref(),
        )
        .await?;
        self.tokens.replace_ring(ring);
        Ok(())
    }
}

/// The service secret `purpose`, kept by the secrets manager as `coffer/<purpose>` (listed,
/// backed up and restored with the others). Made on first start: adopted from the
/// `service_secrets` row of a database from before the secrets manager (the same bytes, so
/// blind indexes and audit hashes still match), or 32 random bytes.
pub(super) async fn load_secret(deps: &AccountsDeps, purpose: &str) -> Result<HmacKey, AuthError> {
    let name = SecretName::parse(&format!("coffer/{purpose}")).map_err(corrupt)?;
    let tags = BTreeMap::from([("owner".to_owned(), "coffer-auth".to_owned())]);
    let value = deps
        .secrets
        .get_or_init(&name, &tags, || async {
            let context = KeyContext::new().with("purpose", purpose);
            match deps.store.secret(purpose).await.map_err(secret_store_err)? {
                Some(stored) => {
                    let key =
                        coffer_secrets::unwrap_legacy_key(deps.keys.as_ref(), &stored, &context)
                            .await?;
                    tracing::info!(secret = %name, "adopted a service secret into the secrets manager");
                    Ok(key)
                }
                None => Ok(SecretBytes::new(DataKey::generate().expose_secret().to_vec())),
            }
        })
        .await?;
    HmacKey::from_slice(value.expose_secret()).map_err(corrupt)
}

/// A user-store failure met while adopting a legacy secret, in the secrets manager's terms.
fn secret_store_err(e: UserStoreError) -> SecretError {
    SecretError::Store(match e {
        UserStoreError::Unavailable(_) => coffer_secrets::SecretStoreError::Unavailable(e.into()),
        other => coffer_secrets::SecretStoreError::Storage(other.into()),
    })
}

/// The secrets manager's name for a signing key's private key.
fn signing_secret(kid: &str) -> Result<SecretName, AuthError> {
    SecretName::parse(&format!("coffer/jwt-signing/{kid}")).map_err(corrupt)
}

fn signing_tags() -> BTreeMap<String, String> {
    BTreeMap::from([
        ("owner".to_owned(), "coffer-auth".to_owned()),
        ("purpose".to_owned(), "jwt-signing".to_owned()),
    ])
}

/// A new signing key: its private key (PKCS#1 DER) a secret of the secrets manager, its row in
/// `signing_keys` the index (kid, when it signed, retired, dropped) with no material.
async fn new_signing_key(
    secrets: &SecretsManager,
    clock: &dyn Clock,
) -> Result<StoredSigningKey, AuthError> {
    let key = tokio::task::spawn_blocking(SigningKey::generate)
        .await
        .map_err(|e| AuthError::Internal(e.into()))?
        .map_err(|e| AuthError::Internal(e.into()))?;
    let options = coffer_secrets::SetOptions {
        tags: signing_tags(),
        ..coffer_secrets::SetOptions::default()
    };
    secrets
        .set(
            &signing_secret(key.kid())?,
            key.expose_pkcs1_der(),
            &options,
        )
        .await?;
    Ok(StoredSigningKey {
        kid: key.kid().to_owned(),
        wrapped_dek: Vec::new(),
        kek_version: 0,
        sealed: Vec::new(),
        created_at: clock.unix_secs(),
        retired_at: None,
    })
}

/// A signing key as releases before the secrets manager stored it: the private key sealed in
/// its row under a data key of its own. Such rows still load (and are adopted); tests make them
/// through the testkit.
#[cfg(feature = "testkit")]
pub(crate) async fn legacy_signing_key(
    keys: &dyn KeyProvider,
) -> Result<StoredSigningKey, AuthError> {
    let key = tokio::task::spawn_blocking(SigningKey::generate)
        .await
        .map_err(|e| AuthError::Internal(e.into()))?
        .map_err(|e| AuthError::Internal(e.into()))?;
    let generated = keys
        .generate_data_key(&signing_key_context(key.kid()))
        .await?;
    let sealed = coffer_crypto::seal(
        &generated.plaintext,
        &coffer_crypto::KeyRef::version_only(1),
        &signing_key_aad(key.kid()),
        key.expose_pkcs1_der(),
    )
    .map_err(|e| AuthError::Internal(e.into()))?;
    Ok(StoredSigningKey {
        kid: key.kid().to_owned(),
        wrapped_dek: generated.wrapped.to_bytes(),
        kek_version: generated.wrapped.version,
        sealed: sealed.into_bytes(),
        created_at: coffer_clock::SystemClock.unix_secs(),
        retired_at: None,
    })
}

/// A signing key's private key: from the secrets manager, or, for a row from before it, opened
/// from the row and adopted into the secrets manager with the same bytes.
async fn signing_key_der(
    keys: &dyn KeyProvider,
    secrets: &SecretsManager,
    k: &StoredSigningKey,
) -> Result<SecretBytes, AuthError> {
    let name = signing_secret(&k.kid)?;
    if k.sealed.is_empty() {
        return Ok(secrets.get(&name).await?);
    }
    let tags = signing_tags();
    Ok(secrets
        .get_or_init(&name, &tags, || async {
            let wrapped = WrappedKey::from_bytes(&k.wrapped_dek)
                .map_err(|e| SecretError::Keys(KeyError::Corrupt(e.to_string())))?;
            let dek = keys
                .unwrap_data_key(&wrapped, &signing_key_context(&k.kid))
                .await?;
            open_bytes(&dek, &signing_key_aad(&k.kid), &k.sealed)
                .map_err(|e| SecretError::Keys(KeyError::Corrupt(e.to_string())))
        })
        .await?)
}

/// The signing keys from the store (generating the first one on first start).
pub(super) async fn load_ring(
    store: &dyn UserStore,
    keys: &dyn KeyProvider,
    secrets: &SecretsManager,
    config: &TokenConfig,
    clock: &dyn Clock,
) -> Result<TokenKeys, AuthError> {
    let mut stored = store.signing_keys().await?;
    if !stored.iter().any(|k| k.retired_at.is_none()) {
        let first = new_signing_key(secrets, clock).await?;
        store.add_signing_key(&first, true).await?;
        stored = store.signing_keys().await?;
    }
    let now = clock.now();
    let window = (config.access_ttl + config.leeway).as_secs();
    let mut ring = Vec::with_capacity(stored.len());
    for k in stored {
        // Keys past their window are not even unwrapped.
        if k.retired_at
            .is_some_and(|at| unix_secs(now) > at.saturating_add(window))
        {
            continue;
        }
        let der = signing_key_der(keys, secrets, &k).await?;
        let key = SigningKey::from_pkcs1_der(der.expose_secret()).map_err(corrupt)?;
        if key.kid() != k.kid {
            return Err(corrupt("a signing key does not match its kid"));
        }
        ring.push((key, k.retired_at));
    }
    TokenKeys::restore(ring, config, now).ok_or_else(|| corrupt("no signing key is current"))
}
