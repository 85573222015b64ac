//! Vault Transit: the master key never leaves Vault.
//!
//! | port | Transit |
//! |---|---|
//! | generate | `datakey/plaintext/{key}` |
//! | unwrap | `decrypt/{key}` |
//! | rewrap | `rewrap/{key}` with `batch_input`, in chunks |
//! | rotate | `keys/{key}/rotate` |
//! | retire | `keys/{key}/config` `min_decryption_version` |
//!
//! The key is created `derived`: the [`KeyContext`] is Transit's derivation context, so a
//! wrapped key only opens under the context it was made for. Generation uses
//! `datakey/plaintext` because Coffer seals a new wallet's data at once; `datakey/wrapped` would
//! cost a second round trip to learn the same key.
//!
//! A wrapped key stores the ciphertext's bytes without the `vault:vN:` prefix; the version sits
//! in its own column and the prefix is rebuilt from it, so the record's version is the one Vault
//! is asked about.
//!
//! `connect` and `health` refuse a key that is not derived. vaultrs has no batch call, so
//! `rewrap` is a raw request in chunks of `rewrap_batch` items (200: OpenBao refuses a JSON
//! body of over 1,000 strings), answered per item in order.

use std::time::{Duration, UNIX_EPOCH};

use std::sync::Arc;

use async_trait::async_trait;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use coffer_crypto::DataKey;
use coffer_keys::{
    Capabilities, GeneratedDataKey, KeyContext, KeyError, KeyProvider, KeyStatus, RewrapRequest,
    VersionInfo, VersionState, WrappedKey,
};
use serde_json::{Value, json};
use vaultrs::api::transit::KeyType;
use vaultrs::api::transit::requests::{
    CreateKeyRequest, DataKeyType, DecryptDataRequest, GenerateDataKeyRequest,
    UpdateKeyConfigurationRequest,
};
use zeroize::{Zeroize as _, Zeroizing};

use crate::session::{CallError, Session, VaultConnection, vault_call};

/// The name recorded in every key this provider wraps.
pub const PROVIDER_NAME: &str = "vault-transit";

/// Which Transit key, and how to use it.
#[derive(Debug, Clone)]
pub struct TransitSettings {
    /// The Transit mount, usually `transit`.
    pub mount: String,
    /// The key's name (its id in wrapped keys).
    pub key: String,
    /// Create the key (derived, `aes256-gcm96`) when it does not exist: for development. In
    /// production the setup (`cargo xtask vault-setup`) creates it and the API may not.
    pub create_if_missing: bool,
    /// Items per `rewrap` request. OpenBao refuses a JSON body of more than 1,000 strings
    /// (keys included): an item costs four, so 200 items (801 strings) stay under it.
    pub rewrap_batch: usize,
}

impl TransitSettings {
    /// The key `key` on the `transit` mount, not created, 200 items per rewrap.
    #[must_use]
    pub fn new(key: impl Into<String>) -> Self {
        Self {
            mount: "transit".into(),
            key: key.into(),
            create_if_missing: false,
            rewrap_batch: 200,
        }
    }
}

/// See the [module documentation](self).
#[derive(Debug)]
pub struct VaultTransitProvider {
    session: Arc<Session>,
    settings: TransitSettings,
}

/// What `keys/{name}` says about the key.
struct KeyInfo {
    latest: u32,
    min_decryption: u32,
    derived: bool,
    created: Vec<(u32, u64)>,
}

fn encode_context(context: &KeyContext) -> String {
    STANDARD.encode(context.canonical_bytes())
}

fn as_u32(v: &Value) -> Option<u32> {
    v.as_u64().and_then(|n| u32::try_from(n).ok())
}

/// `vault:v7:AbC=` → (7, bytes).
fn parse_ciphertext(text: &str) -> Option<(u32, Vec<u8>)> {
    let rest = text.strip_prefix("vault:v")?;
    let (version, b64) = rest.split_once(':')?;
    Some((version.parse().ok()?, STANDARD.decode(b64).ok()?))
}

impl VaultTransitProvider {
    /// Logs in and checks the key (creating it when allowed).
    ///
    /// # Errors
    /// `Unavailable` when Vault does not answer, `Denied` for bad credentials, `NotFound` when
    /// the key is missing and may not be created, `Other` for a key that is not derived.
    pub async fn connect(
        conn: VaultConnection,
        settings: TransitSettings,
    ) -> Result<Self, KeyError> {
        let session = Session::connect(conn)
            .await
            .map_err(|e| crate::key_error(PROVIDER_NAME, &settings.key, e))?;
        let provider = Self { session, settings };
        match provider.read_key().await {
            Err(KeyError::NotFound { .. }) if provider.settings.create_if_missing => {
                provider.create_key().await?;
            }
            other => {
                other?;
            }
        }
        provider.health().await?;
        Ok(provider)
    }

    fn err(&self, e: CallError) -> KeyError {
        crate::key_error(PROVIDER_NAME, &self.settings.key, e)
    }

    async fn create_key(&self) -> Result<(), KeyError> {
        let s = &self.settings;
        vault_call!(&self.session, |c| vaultrs::transit::key::create(
            c,
            &s.mount,
            &s.key,
            Some(
                CreateKeyRequest::builder()
                    .derived(true)
                    .key_type(KeyType::Aes256Gcm96)
            ),
        ))
        .map_err(|e| self.err(e))?;
        tracing::warn!(mount = %s.mount, key = %s.key, "created the Transit master key");
        Ok(())
    }

    async fn read_key(&self) -> Result<KeyInfo, KeyError> {
        let path = format!("{}/keys/{}", self.settings.mount, self.settings.key);
        let (status, body) = self
            .session
            .raw(reqwest::Method::GET, &path, &Value::Null)
            .await
            .map_err(|e| self.err(e))?;
        if status != 200 {
            return Err(self.err(CallError::Status {
                code: status,
                errors: errors_of(&body),
            }));
        }
        let data = &body["data"];
        let created = data["keys"]
            .as_object()
            .map(|keys| {
                keys.iter()
                    .filter_map(|(v, t)| Some((v.parse().ok()?, t.as_u64().unwrap_or(0))))
                    .collect()
            })
            .unwrap_or_default();
        Ok(KeyInfo {
            latest: as_u32(&data["latest_version"]).unwrap_or(0),
            min_decryption: as_u32(&data["min_decryption_version"]).unwrap_or(1),
            derived: data["derived"].as_bool().unwrap_or(false),
            created,
        })
    }

    /// The `vault:vN:…` ciphertext of a key this provider made.
    fn check_ours(&self, wrapped: &WrappedKey) -> Result<String, KeyError> {
        wrapped.ensure_made_by(PROVIDER_NAME, &self.settings.key)?;
        Ok(format!(
            "vault:v{}:{}",
            wrapped.version,
            STANDARD.encode(&wrapped.ciphertext)
        ))
    }

    /// Names a refusal of one ciphertext: a retired version, a missing key, or one that does
    /// not open under its context.
    fn item_error(&self, version: u32, e: CallError) -> KeyError {
        match e {
            // A refused login on the way (renewal, re-login) is not about the ciphertext.
            CallError::Status { code: 400, errors } if !crate::is_login_refusal(&errors) => {
                self.refusal(version, &errors.join("; "))
            }
            other => self.err(other),
        }
    }

    fn refusal(&self, version: u32, message: &str) -> KeyError {
        if message.contains("too old") || message.contains("disallowed by policy") {
            KeyError::Retired {
                key_id: self.settings.key.clone(),
                version,
            }
        } else if message.contains("key not found") {
            KeyError::NotFound {
                key_id: self.settings.key.clone(),
                version: Some(version),
            }
        } else {
            KeyError::Corrupt(format!("Vault refused the ciphertext: {message}"))
        }
    }

    fn wrapped_from(&self, ciphertext: &str) -> Result<WrappedKey, KeyError> {
        let (version, bytes) = parse_ciphertext(ciphertext).ok_or_else(|| {
            KeyError::Other("Vault answered a ciphertext not of the form vault:vN:…".into())
        })?;
        Ok(WrappedKey {
            provider: PROVIDER_NAME.into(),
            key_id: self.settings.key.clone(),
            version,
            ciphertext: bytes,
        })
    }

    async fn rewrap_chunk(
        &self,
        chunk: &[RewrapRequest],
    ) -> Result<Vec<Result<WrappedKey, KeyError>>, KeyError> {
        // Items that are not ours or empty are answered here; the rest go to Vault.
        let mut results: Vec<Option<Result<WrappedKey, KeyError>>> = Vec::new();
        let mut input = Vec::new();
        let mut sent = Vec::new();
        for (i, r) in chunk.iter().enumerate() {
            match self.check_ours(&r.wrapped) {
                Ok(ciphertext) => {
                    input.push(json!({
                        "ciphertext": ciphertext,
                        "context": encode_context(&r.context),
                    }));
                    sent.push(i);
                    results.push(None);
                }
                Err(e) => results.push(Some(Err(e))),
            }
        }
        if !input.is_empty() {
            let path = format!("{}/rewrap/{}", self.settings.mount, self.settings.key);
            let (status, body) = self
                .session
                .raw(
                    reqwest::Method::POST,
                    &path,
                    &json!({ "batch_input": input }),
                )
                .await
                .map_err(|e| self.err(e))?;
            // Vault answers 400 with the per-item results when some items fail.
            let items = body["data"]["batch_results"]
                .as_array()
                .filter(|a| a.len() == sent.len() && matches!(status, 200 | 400));
            let Some(items) = items else {
                return Err(self.err(CallError::Status {
                    code: status,
                    errors: errors_of(&body),
                }));
            };
            for (item, &i) in items.iter().zip(&sent) {
                let version = chunk.get(i).map_or(0, |r| r.wrapped.version);
                let outcome = match item["error"].as_str().filter(|e| !e.is_empty()) {
                    Some(message) => Err(self.refusal(version, message)),
                    None => self.wrapped_from(item["ciphertext"].as_str().unwrap_or_default()),
                };
                if let Some(slot) = results.get_mut(i) {
                    *slot = Some(outcome);
                }
            }
        }
        Ok(results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(KeyError::Other("no result for item".into()))))
            .collect())
    }
}

fn errors_of(body: &Value) -> Vec<String> {
    body["errors"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|e| e.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// A base64 plaintext from Vault as a data key, wiping the text.
fn data_key_from(mut b64: String) -> Result<DataKey, KeyError> {
    let bytes = STANDARD
        .decode(b64.as_bytes())
        .map(Zeroizing::new)
        .map_err(|_| KeyError::Other("Vault answered a plaintext that is not base64".into()));
    b64.zeroize();
    DataKey::from_slice(&bytes?).map_err(|e| KeyError::Corrupt(e.to_string()))
}

#[async_trait]
impl KeyProvider for VaultTransitProvider {
    fn name(&self) -> &str {
        PROVIDER_NAME
    }

    fn key_id(&self) -> &str {
        &self.settings.key
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            rotate: true,
            retire: true,
        }
    }

    async fn generate_data_key(&self, context: &KeyContext) -> Result<GeneratedDataKey, KeyError> {
        let s = &self.settings;
        let ctx = encode_context(context);
        let answer = vault_call!(&self.session, |c| vaultrs::transit::generate::data_key(
            c,
            &s.mount,
            &s.key,
            DataKeyType::Plaintext,
            Some(
                GenerateDataKeyRequest::builder()
                    .context(ctx.clone())
                    .bits(256u16)
            ),
        ))
        .map_err(|e| self.item_error(0, e))?;
        let wrapped = self.wrapped_from(&answer.ciphertext)?;
        let plaintext = data_key_from(answer.plaintext.unwrap_or_default())?;
        Ok(GeneratedDataKey { plaintext, wrapped })
    }

    async fn unwrap_data_key(
        &self,
        wrapped: &WrappedKey,
        context: &KeyContext,
    ) -> Result<DataKey, KeyError> {
        let ciphertext = self.check_ours(wrapped)?;
        let s = &self.settings;
        let ctx = encode_context(context);
        let answer = vault_call!(&self.session, |c| vaultrs::transit::data::decrypt(
            c,
            &s.mount,
            &s.key,
            &ciphertext,
            Some(DecryptDataRequest::builder().context(ctx.clone())),
        ))
        .map_err(|e| self.item_error(wrapped.version, e))?;
        data_key_from(answer.plaintext)
    }

    async fn rewrap_data_keys(
        &self,
        batch: &[RewrapRequest],
    ) -> Result<Vec<Result<WrappedKey, KeyError>>, KeyError> {
        let mut out = Vec::with_capacity(batch.len());
        for chunk in batch.chunks(self.settings.rewrap_batch.max(1)) {
            out.extend(self.rewrap_chunk(chunk).await?);
        }
        Ok(out)
    }

    async fn status(&self) -> Result<KeyStatus, KeyError> {
        let info = self.read_key().await?;
        Ok(KeyStatus {
            provider: PROVIDER_NAME.into(),
            key_id: self.settings.key.clone(),
            active_version: info.latest,
            versions: (1..=info.latest)
                .map(|v| VersionInfo {
                    version: v,
                    state: if v == info.latest {
                        VersionState::Active
                    } else if v < info.min_decryption {
                        VersionState::Retired
                    } else {
                        VersionState::DecryptOnly
                    },
                    created_at: info
                        .created
                        .iter()
                        .find(|(n, t)| *n == v && *t > 0)
                        .map(|(_, t)| UNIX_EPOCH + Duration::from_secs(*t)),
                })
                .collect(),
        })
    }

    async fn rotate(&self) -> Result<u32, KeyError> {
        let s = &self.settings;
        vault_call!(&self.session, |c| vaultrs::transit::key::rotate(
            c, &s.mount, &s.key
        ))
        .map_err(|e| self.err(e))?;
        let latest = self.read_key().await?.latest;
        tracing::info!(key = %s.key, version = latest, "rotated the Transit master key");
        Ok(latest)
    }

    async fn retire_versions_below(&self, min_version: u32) -> Result<(), KeyError> {
        let latest = self.read_key().await?.latest;
        if min_version > latest {
            return Err(KeyError::Other(
                format!(
                    "refusing to retire the active version {latest} (asked to retire below \
                     {min_version})"
                )
                .into(),
            ));
        }
        let s = &self.settings;
        vault_call!(&self.session, |c| vaultrs::transit::key::update(
            c,
            &s.mount,
            &s.key,
            Some(
                UpdateKeyConfigurationRequest::builder()
                    .min_decryption_version(u64::from(min_version))
            ),
        ))
        .map_err(|e| self.err(e))?;
        tracing::info!(key = %s.key, below = min_version, "retired Transit key versions");
        Ok(())
    }

    async fn health(&self) -> Result<(), KeyError> {
        let info = self.read_key().await?;
        if !info.derived {
            return Err(KeyError::Other(
                format!(
                    "Transit key {} is not derived, so wrapped keys would not be bound to their \
                     wallet: create it with derived=true (cargo xtask vault-setup does)",
                    self.settings.key
                )
                .into(),
            ));
        }
        Ok(())
    }
}
