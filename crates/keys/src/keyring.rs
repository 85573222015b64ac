//! Master key versions held in process memory, for the providers that read their KEKs from
//! somewhere (the local key file, Vault KV) and wrap data keys themselves.
//!
//! A data key is wrapped as a [`coffer_crypto::Envelope`] whose key reference is the master key
//! id and version, with associated data `coffer.<provider>.dek-wrap` plus the [`KeyContext`], so
//! a wrapped key moved to another row, key or provider does not open.
//!
//! Versions count from 1 and exactly one is active. An unknown provider, key or version is
//! `NotFound`, a retired version `Retired`, a failed tag `Corrupt`.

use std::collections::BTreeMap;
use std::fmt;
use std::time::SystemTime;

use coffer_crypto::{Aad, DataKey, Envelope, KeyRef, MasterKey, OpenError};

use crate::{
    KeyContext, KeyError, KeyStatus, RewrapRequest, VersionInfo, VersionState, WrappedKey,
};

/// One master key version.
#[derive(Debug)]
pub struct RingVersion {
    /// The key material.
    pub key: MasterKey,
    /// What it may still do.
    pub state: VersionState,
    /// When it was created, when known.
    pub created_at: Option<SystemTime>,
}

/// Why a set of versions is not a usable keyring.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyringError {
    /// No version is active.
    #[error("no version is active")]
    NoActive,
    /// Several versions are active.
    #[error("more than one version is active")]
    SeveralActive,
    /// Version 0 or a key id the envelope format cannot carry.
    #[error("{0}")]
    Invalid(String),
}

/// Versioned master keys with exactly one active version. See the [module documentation](self).
pub struct Keyring {
    provider: String,
    key_id: String,
    purpose: String,
    versions: BTreeMap<u32, RingVersion>,
    active: u32,
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keyring")
            .field("provider", &self.provider)
            .field("key_id", &self.key_id)
            .field("active", &self.active)
            .field("versions", &self.versions.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Keyring {
    /// Checks that exactly one version is active, versions start at 1 and the key id fits the
    /// envelope's key reference (1-64 characters of `[A-Za-z0-9._:/-]`).
    ///
    /// # Errors
    /// [`KeyringError`] naming what is wrong.
    pub fn new(
        provider: &str,
        key_id: &str,
        versions: BTreeMap<u32, RingVersion>,
    ) -> Result<Self, KeyringError> {
        if key_id.is_empty() || KeyRef::new(key_id, 0).is_err() {
            return Err(KeyringError::Invalid(
                "key id must be 1-64 characters of [A-Za-z0-9._:/-]".into(),
            ));
        }
        if versions.contains_key(&0) {
            return Err(KeyringError::Invalid("versions start at 1".into()));
        }
        let mut active = versions
            .iter()
            .filter(|(_, v)| v.state == VersionState::Active)
            .map(|(n, _)| *n);
        let one = active.next().ok_or(KeyringError::NoActive)?;
        if active.next().is_some() {
            return Err(KeyringError::SeveralActive);
        }
        Ok(Self {
            provider: provider.to_owned(),
            key_id: key_id.to_owned(),
            purpose: format!("coffer.{provider}.dek-wrap"),
            versions,
            active: one,
        })
    }

    /// The active version.
    #[must_use]
    pub fn active(&self) -> u32 {
        self.active
    }

    /// Whether `version` is known (in any state).
    #[must_use]
    pub fn has_version(&self, version: u32) -> bool {
        self.versions.contains_key(&version)
    }

    fn aad(&self, context: &KeyContext) -> Aad {
        Aad::new(&self.purpose).with(context.canonical_bytes())
    }

    fn key_ref(&self, version: u32) -> Result<KeyRef, KeyError> {
        KeyRef::new(&self.key_id, version).map_err(|e| KeyError::Other(Box::new(e)))
    }

    /// Wraps `dek` under the active version, bound to `context`.
    ///
    /// # Errors
    /// [`KeyError::Other`] if sealing fails (it does not with a valid keyring).
    pub fn wrap(&self, dek: &DataKey, context: &KeyContext) -> Result<WrappedKey, KeyError> {
        let kek = self.versions.get(&self.active).ok_or(KeyError::NotFound {
            key_id: self.key_id.clone(),
            version: Some(self.active),
        })?;
        let env = coffer_crypto::seal(
            &kek.key,
            &self.key_ref(self.active)?,
            &self.aad(context),
            dek.expose_secret(),
        )
        .map_err(|e| KeyError::Other(Box::new(e)))?;
        Ok(WrappedKey {
            provider: self.provider.clone(),
            key_id: self.key_id.clone(),
            version: self.active,
            ciphertext: env.into_bytes(),
        })
    }

    /// Opens a wrapped key: `NotFound` for another provider, key or an unknown version,
    /// `Retired` for a retired version, `Corrupt` when it does not authenticate under `context`.
    ///
    /// # Errors
    /// As above.
    pub fn unwrap(&self, wrapped: &WrappedKey, context: &KeyContext) -> Result<DataKey, KeyError> {
        wrapped.ensure_made_by(&self.provider, &self.key_id)?;
        let env = Envelope::from_bytes(&wrapped.ciphertext)
            .map_err(|e| KeyError::Corrupt(format!("not an envelope: {e}")))?;
        if env.key_ref().key_id() != self.key_id || env.key_ref().version() != wrapped.version {
            return Err(KeyError::Corrupt(format!(
                "envelope names {} but the record says version {}",
                env.key_ref(),
                wrapped.version
            )));
        }
        let kek = self
            .versions
            .get(&wrapped.version)
            .ok_or_else(|| KeyError::NotFound {
                key_id: self.key_id.clone(),
                version: Some(wrapped.version),
            })?;
        if kek.state == VersionState::Retired {
            return Err(KeyError::Retired {
                key_id: self.key_id.clone(),
                version: wrapped.version,
            });
        }
        let plain =
            coffer_crypto::open(&kek.key, &self.aad(context), &env).map_err(|e| match e {
                OpenError::Authentication => KeyError::Corrupt(
                    "does not authenticate under its master key and context".into(),
                ),
                other => KeyError::Corrupt(other.to_string()),
            })?;
        DataKey::from_slice(plain.expose_secret()).map_err(|e| KeyError::Corrupt(e.to_string()))
    }

    /// Re-wraps each key under the active version, item by item.
    #[must_use]
    pub fn rewrap(&self, batch: &[RewrapRequest]) -> Vec<Result<WrappedKey, KeyError>> {
        batch
            .iter()
            .map(|r| {
                let dek = self.unwrap(&r.wrapped, &r.context)?;
                self.wrap(&dek, &r.context)
            })
            .collect()
    }

    /// The versions and their states.
    #[must_use]
    pub fn status(&self) -> KeyStatus {
        KeyStatus {
            provider: self.provider.clone(),
            key_id: self.key_id.clone(),
            active_version: self.active,
            versions: self
                .versions
                .iter()
                .map(|(v, info)| VersionInfo {
                    version: *v,
                    state: info.state,
                    created_at: info.created_at,
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn version(state: VersionState) -> RingVersion {
        RingVersion {
            key: MasterKey::generate(),
            state,
            created_at: None,
        }
    }

    #[test]
    fn exactly_one_active_version_is_required() {
        let none = BTreeMap::from([(1, version(VersionState::DecryptOnly))]);
        assert_eq!(
            Keyring::new("p", "k", none).unwrap_err(),
            KeyringError::NoActive
        );
        let two = BTreeMap::from([
            (1, version(VersionState::Active)),
            (2, version(VersionState::Active)),
        ]);
        assert_eq!(
            Keyring::new("p", "k", two).unwrap_err(),
            KeyringError::SeveralActive
        );
        let zero = BTreeMap::from([(0, version(VersionState::Active))]);
        assert!(Keyring::new("p", "k", zero).is_err());
        let bad_id = BTreeMap::from([(1, version(VersionState::Active))]);
        assert!(Keyring::new("p", "no spaces", bad_id).is_err());
    }

    #[test]
    fn a_key_wrapped_for_one_provider_does_not_open_under_another_with_the_same_material() {
        let material = MasterKey::generate();
        let ring = |provider: &str| {
            let key = MasterKey::from_configured(material.expose_secret()).unwrap();
            let versions = BTreeMap::from([(
                1,
                RingVersion {
                    key,
                    state: VersionState::Active,
                    created_at: None,
                },
            )]);
            Keyring::new(provider, "k", versions).unwrap()
        };
        let (a, b) = (ring("local"), ring("vault-kv"));
        let ctx = KeyContext::new().with("wallet_id", "w1");
        let dek = DataKey::generate();
        let mut wrapped = a.wrap(&dek, &ctx).unwrap();
        assert_eq!(
            a.unwrap(&wrapped, &ctx).unwrap().expose_secret(),
            dek.expose_secret()
        );
        wrapped.provider = "vault-kv".into();
        assert!(matches!(
            b.unwrap(&wrapped, &ctx),
            Err(KeyError::Corrupt(_))
        ));
    }
}
