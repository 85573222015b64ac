//! The key port: how Coffer gets data keys (DEKs) wrapped by a master key (KEK) it may never see.
//!
//! One trait, [`KeyProvider`], fits both a KEK held in process memory (the local key file, Vault
//! KV) and one that never leaves a remote service (Vault Transit's `datakey`/`decrypt`/`rewrap`,
//! AWS KMS's `GenerateDataKey`/`Decrypt`/`ReEncrypt`). Its operations are exactly the ones those
//! services offer:
//!
//! | port | local / Vault KV | Vault Transit | AWS KMS |
//! |---|---|---|---|
//! | [`generate_data_key`](KeyProvider::generate_data_key) | random DEK, sealed locally | `datakey/plaintext` | `GenerateDataKey` |
//! | [`unwrap_data_key`](KeyProvider::unwrap_data_key) | open locally | `decrypt` | `Decrypt` |
//! | [`rewrap_data_keys`](KeyProvider::rewrap_data_keys) | open + seal locally | `rewrap` (batch) | `ReEncrypt` |
//! | [`rotate`](KeyProvider::rotate) | new version in the file | `keys/{name}/rotate` | `RotateKeyOnDemand` |
//! | [`retire_versions_below`](KeyProvider::retire_versions_below) | mark retired | `min_decryption_version` | unsupported |
//!
//! The [`KeyContext`] travels with every call: it is the AEAD associated data locally, the
//! encryption context in KMS, the context in Transit, so a wrapped key copied to another wallet
//! does not unwrap.
//!
//! What a provider cannot do is declared, not discovered: [`KeyProvider::capabilities`] (an
//! inline key does not rotate; KMS does not retire versions). A [`WrappedKey`] records the
//! provider, the key id, the KEK version and the provider's ciphertext; its storage form is
//! parsed without panics, and the KEK version also has a column of its own, so a rotation's
//! work left is `WHERE kek_version < active`. Every provider checks
//! [`WrappedKey::ensure_made_by`] before spending a call. [`KeyError`] says what a caller can
//! act on: `Unavailable` (retry), `Denied`, `NotFound`, `Retired`, `Corrupt`, `Unsupported`.
//!
//! The application stacks the decorators as cache over meter over provider: the
//! [`CachingKeyProvider`] answers hits, and the [`MeteredKeyProvider`] counts what reaches the
//! key manager.

use std::collections::BTreeMap;
use std::fmt;
use std::time::SystemTime;

use async_trait::async_trait;
use coffer_crypto::DataKey;

pub mod cache;
pub mod keyring;
pub mod metered;
#[cfg(feature = "testkit")]
pub mod testkit;
pub mod usage;

pub use cache::{CacheConfig, CacheStats, CachingKeyProvider};
pub use metered::{MeteredKeyProvider, OperationStats};
pub use usage::{UsageCounter, UsageRow, outcome_of};

/// What a wrapped key is bound to: ordered string pairs such as `purpose=wallet-dek`,
/// `wallet_id=…`. Not secret (it is sent to remote key services as their context).
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct KeyContext(BTreeMap<String, String>);

impl KeyContext {
    /// An empty context.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds or replaces one pair.
    #[must_use]
    pub fn with(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.0.insert(key.into(), value.into());
        self
    }

    /// The pairs, sorted by key.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// An unambiguous byte encoding (length-prefixed keys and values in key order), for
    /// providers that bind the context as AEAD associated data.
    #[must_use]
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        for (k, v) in &self.0 {
            for part in [k.as_bytes(), v.as_bytes()] {
                let len = u32::try_from(part.len()).unwrap_or(u32::MAX);
                out.extend_from_slice(&len.to_be_bytes());
                out.extend_from_slice(part);
            }
        }
        out
    }
}

impl fmt::Debug for KeyContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.0.iter()).finish()
    }
}

/// A data key wrapped by a master key version: what the database stores.
///
/// `version` is kept in its own column next to the bytes so that a KEK rotation's remaining work
/// is `WHERE kek_version < active`.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct WrappedKey {
    /// Which provider wrapped it (`local`, `vault-transit`, `aws-kms`…).
    pub provider: String,
    /// The master key's id at that provider.
    pub key_id: String,
    /// The master key version that wrapped it.
    pub version: u32,
    /// The provider's ciphertext (an envelope, a `vault:vN:` string, a KMS blob).
    pub ciphertext: Vec<u8>,
}

/// Why stored bytes are not a [`WrappedKey`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("stored wrapped key is malformed: {0}")]
pub struct WrappedKeyFormatError(&'static str);

const WRAPPED_FORMAT: u8 = 1;
const MAX_WRAPPED_CIPHERTEXT: usize = 64 * 1024;

impl WrappedKey {
    /// Storage form: format byte, provider and key id (u16 length-prefixed), version and
    /// ciphertext (u32 length-prefixed), big-endian. Provider names and key ids (KMS ARNs
    /// included) are far below the 65,535-byte limit; a longer one is cut at a character
    /// boundary, which then fails to unwrap as an unknown key rather than corrupting the record.
    #[must_use]
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(
            13 + self.provider.len() + self.key_id.len() + self.ciphertext.len(),
        );
        out.push(WRAPPED_FORMAT);
        for s in [&self.provider, &self.key_id] {
            let mut end = s.len().min(usize::from(u16::MAX));
            while !s.is_char_boundary(end) {
                end -= 1;
            }
            let text = s.get(..end).unwrap_or_default();
            out.extend_from_slice(&u16::try_from(text.len()).unwrap_or(u16::MAX).to_be_bytes());
            out.extend_from_slice(text.as_bytes());
        }
        out.extend_from_slice(&self.version.to_be_bytes());
        let ct_len = u32::try_from(self.ciphertext.len()).unwrap_or(u32::MAX);
        out.extend_from_slice(&ct_len.to_be_bytes());
        out.extend_from_slice(&self.ciphertext);
        out
    }

    /// Parses the storage form. Never panics.
    ///
    /// # Errors
    /// [`WrappedKeyFormatError`] naming what is wrong.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, WrappedKeyFormatError> {
        let mut r = Reader(bytes);
        if r.take(1)? != [WRAPPED_FORMAT] {
            return Err(WrappedKeyFormatError("unknown format version"));
        }
        let provider = r.short_string()?;
        let key_id = r.short_string()?;
        let version = r.u32()?;
        let ct_len = usize::try_from(r.u32()?).unwrap_or(usize::MAX);
        if ct_len > MAX_WRAPPED_CIPHERTEXT {
            return Err(WrappedKeyFormatError("ciphertext too long"));
        }
        let ciphertext = r.take(ct_len)?.to_vec();
        if !r.0.is_empty() {
            return Err(WrappedKeyFormatError("trailing bytes"));
        }
        Ok(Self {
            provider,
            key_id,
            version,
            ciphertext,
        })
    }
}

/// Bounds-checked reader for [`WrappedKey::from_bytes`].
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], WrappedKeyFormatError> {
        if self.0.len() < n {
            return Err(WrappedKeyFormatError("truncated"));
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }

    fn u32(&mut self) -> Result<u32, WrappedKeyFormatError> {
        let b: [u8; 4] = self.take(4)?.try_into().unwrap_or_default();
        Ok(u32::from_be_bytes(b))
    }

    fn short_string(&mut self) -> Result<String, WrappedKeyFormatError> {
        let b: [u8; 2] = self.take(2)?.try_into().unwrap_or_default();
        let len = usize::from(u16::from_be_bytes(b));
        String::from_utf8(self.take(len)?.to_vec()).map_err(|_| WrappedKeyFormatError("not UTF-8"))
    }
}

impl WrappedKey {
    /// Whether this provider and master key made it, before any call is spent on it: one of
    /// another provider or key is `NotFound` (naming it), an empty ciphertext `Corrupt`.
    ///
    /// # Errors
    /// As above.
    pub fn ensure_made_by(&self, provider: &str, key_id: &str) -> Result<(), KeyError> {
        if self.provider != provider || self.key_id != key_id {
            return Err(KeyError::NotFound {
                key_id: self.key_id.clone(),
                version: Some(self.version),
            });
        }
        if self.ciphertext.is_empty() {
            return Err(KeyError::Corrupt("empty ciphertext".into()));
        }
        Ok(())
    }
}

impl fmt::Debug for WrappedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WrappedKey")
            .field("provider", &self.provider)
            .field("key_id", &self.key_id)
            .field("version", &self.version)
            .field("ciphertext_len", &self.ciphertext.len())
            .finish()
    }
}

/// A freshly generated data key: the plaintext to use now, the wrapped form to store.
#[derive(Debug, Clone)]
pub struct GeneratedDataKey {
    /// Use it, never store it.
    pub plaintext: DataKey,
    /// Store it.
    pub wrapped: WrappedKey,
}

/// One item of a batch re-wrap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RewrapRequest {
    /// The key as stored.
    pub wrapped: WrappedKey,
    /// The context it was wrapped with.
    pub context: KeyContext,
}

/// The state of one master key version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VersionState {
    /// New data keys are wrapped under it. Exactly one version is active.
    Active,
    /// Still unwraps, no longer wraps. Re-wrapping moves its keys to the active version.
    DecryptOnly,
    /// Refuses to unwrap: every key must have been re-wrapped away from it.
    Retired,
}

/// One master key version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionInfo {
    /// The version number.
    pub version: u32,
    /// What it may still do.
    pub state: VersionState,
    /// When it was created, when the provider says.
    pub created_at: Option<SystemTime>,
}

/// The versions of a provider's master key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyStatus {
    /// The provider's name.
    pub provider: String,
    /// The master key's id.
    pub key_id: String,
    /// The version new keys are wrapped under.
    pub active_version: u32,
    /// Every known version, oldest first.
    pub versions: Vec<VersionInfo>,
}

/// Operations a provider may not support, so callers and the contract suite know what to
/// expect instead of discovering it through errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capabilities {
    /// [`KeyProvider::rotate`] works.
    pub rotate: bool,
    /// [`KeyProvider::retire_versions_below`] works.
    pub retire: bool,
}

/// Errors of the key port. Messages never contain key material.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The provider cannot be reached or timed out. Retry later.
    #[error("key provider {provider} is unavailable: {reason}")]
    Unavailable {
        /// Which provider.
        provider: String,
        /// What happened (no secrets).
        reason: String,
    },
    /// The provider refused: bad credentials or a policy that does not allow the operation.
    #[error("key provider {provider} denied the request: {reason}")]
    Denied {
        /// Which provider.
        provider: String,
        /// What was refused.
        reason: String,
    },
    /// The key, or the version of it, is not known to this provider.
    #[error("master key {key_id}{} is not known to this provider", version.map(|v| format!(" version {v}")).unwrap_or_default())]
    NotFound {
        /// The key id asked for.
        key_id: String,
        /// The version asked for, if any.
        version: Option<u32>,
    },
    /// The version was retired for decryption.
    #[error("master key {key_id} version {version} is retired and no longer unwraps")]
    Retired {
        /// The key id.
        key_id: String,
        /// The retired version.
        version: u32,
    },
    /// The wrapped key does not unwrap under its context: damaged, or moved from another row.
    #[error("wrapped key is corrupt or bound to another context: {0}")]
    Corrupt(String),
    /// The provider cannot do this operation (see [`Capabilities`]).
    #[error("{operation} is not supported by {provider}: {hint}")]
    Unsupported {
        /// Which provider.
        provider: String,
        /// Which operation.
        operation: &'static str,
        /// What to do instead.
        hint: &'static str,
    },
    /// Anything else.
    #[error("key provider error: {0}")]
    Other(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl KeyError {
    /// Whether retrying the same call later may succeed.
    #[must_use]
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Unavailable { .. })
    }
}

/// A master-key (KEK) provider. Used as `Arc<dyn KeyProvider>`.
#[async_trait]
pub trait KeyProvider: Send + Sync + fmt::Debug {
    /// Short stable name recorded in every [`WrappedKey`] it makes: `local`, `vault-kv`,
    /// `vault-transit`, `aws-kms`.
    fn name(&self) -> &str;

    /// The master key's id at the provider.
    fn key_id(&self) -> &str;

    /// What this provider supports.
    fn capabilities(&self) -> Capabilities;

    /// A new random data key, wrapped under the active master key version and bound to
    /// `context`.
    async fn generate_data_key(&self, context: &KeyContext) -> Result<GeneratedDataKey, KeyError>;

    /// The plaintext of a wrapped data key. `context` must be the one it was wrapped with.
    async fn unwrap_data_key(
        &self,
        wrapped: &WrappedKey,
        context: &KeyContext,
    ) -> Result<DataKey, KeyError>;

    /// Re-wraps each key under the active version without exposing it (where the provider
    /// allows). The outer error means the whole call failed (nothing changed); inner errors are
    /// per item, in request order.
    async fn rewrap_data_keys(
        &self,
        batch: &[RewrapRequest],
    ) -> Result<Vec<Result<WrappedKey, KeyError>>, KeyError>;

    /// The master key's versions and their states.
    async fn status(&self) -> Result<KeyStatus, KeyError>;

    /// Creates a new master key version and makes it active; the previous one becomes
    /// decrypt-only. Returns the new version.
    async fn rotate(&self) -> Result<u32, KeyError>;

    /// Retires every version below `min_version` for decryption. Refuses to retire the active
    /// version.
    async fn retire_versions_below(&self, min_version: u32) -> Result<(), KeyError>;

    /// Whether the provider answers and the master key is usable.
    async fn health(&self) -> Result<(), KeyError>;

    /// Forgets every unwrapped key under `context` it keeps in memory (a caching decorator's):
    /// the keys' owner was erased. A provider that keeps none does nothing.
    fn forget(&self, context: &KeyContext) {
        let _ = context;
    }
}

/// Re-wraps one key: a batch of one.
///
/// # Errors
/// As [`KeyProvider::rewrap_data_keys`].
pub async fn rewrap_one(
    provider: &dyn KeyProvider,
    wrapped: &WrappedKey,
    context: &KeyContext,
) -> Result<WrappedKey, KeyError> {
    let mut out = provider
        .rewrap_data_keys(&[RewrapRequest {
            wrapped: wrapped.clone(),
            context: context.clone(),
        }])
        .await?;
    out.pop().unwrap_or_else(|| {
        Err(KeyError::Other(
            "provider returned no result for a batch of one".into(),
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrapped_key_round_trips_and_never_panics_on_bad_bytes() {
        let w = WrappedKey {
            provider: "local".into(),
            key_id: "coffer-master".into(),
            version: 7,
            ciphertext: vec![1, 2, 3, 4, 5],
        };
        let bytes = w.to_bytes();
        assert_eq!(WrappedKey::from_bytes(&bytes).unwrap(), w);
        // A KMS alias ARN of 300 bytes survives.
        let long = WrappedKey {
            key_id: format!(
                "arn:aws:kms:eu-west-1:111122223333:alias/{}",
                "k".repeat(260)
            ),
            ..w.clone()
        };
        assert_eq!(WrappedKey::from_bytes(&long.to_bytes()).unwrap(), long);
        for cut in 0..bytes.len() {
            assert_eq!(
                WrappedKey::from_bytes(&bytes[..cut]).unwrap_err(),
                WrappedKeyFormatError("truncated")
            );
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(
            WrappedKey::from_bytes(&longer).unwrap_err(),
            WrappedKeyFormatError("trailing bytes")
        );
        let mut wrong = bytes;
        wrong[0] = 2;
        assert_eq!(
            WrappedKey::from_bytes(&wrong).unwrap_err(),
            WrappedKeyFormatError("unknown format version")
        );
    }

    #[test]
    fn context_encoding_is_unambiguous_and_ordered() {
        let a = KeyContext::new().with("a", "bc").with("d", "e");
        let b = KeyContext::new().with("d", "e").with("a", "bc");
        assert_eq!(a.canonical_bytes(), b.canonical_bytes());
        let c = KeyContext::new().with("ab", "c").with("d", "e");
        assert_ne!(a.canonical_bytes(), c.canonical_bytes());
    }
}
