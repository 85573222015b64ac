//! Coffer's secrets manager: named secrets, versioned, each version sealed under a
//! data key of its own that the configured key provider wraps, so they are as safe as the
//! master key (local file, Vault or KMS) whatever holds the database.
//!
//! - [`SecretStore`]: the port the database adapters implement (`coffer-store`), with one
//!   contract suite ([`testkit`]).
//! - [`SecretsManager`]: get through a TTL cache, set, rotate (the old version stays readable by
//!   number, inactive), list metadata (never values), encrypted backup and restore, status.
//!
//! A secret's value never reaches logs, errors or `Debug`: it is [`SecretBytes`] (zeroized,
//! redacted) in memory and an [`coffer_crypto::Envelope`] in storage, bound to its name and
//! version.

use std::collections::BTreeMap;
use std::fmt;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

pub use coffer_crypto::SecretBytes;

mod manager;
#[cfg(feature = "testkit")]
pub mod testkit;

pub use manager::{
    BACKUP_FORMAT, RestoreReport, SecretError, SecretInfo, SecretsManager, SecretsStatus,
    SetOptions, unwrap_legacy_key,
};

/// The key-provider context a secret version's data key is wrapped under.
#[must_use]
pub fn secret_key_context(name: &str, version: u32) -> coffer_keys::KeyContext {
    coffer_keys::KeyContext::new()
        .with("purpose", "secret")
        .with("secret", name)
        .with("version", version.to_string())
}

/// A secret's name: 1-128 characters of `[A-Za-z0-9._/-]`.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SecretName(String);

/// Why a name is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("secret names are 1-128 characters of [A-Za-z0-9._/-]")]
pub struct BadSecretName;

impl SecretName {
    /// Parses a name.
    ///
    /// # Errors
    /// [`BadSecretName`].
    pub fn parse(name: &str) -> Result<Self, BadSecretName> {
        let ok = !name.is_empty()
            && name.len() <= 128
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'/' | b'-'));
        if ok {
            Ok(Self(name.to_owned()))
        } else {
            Err(BadSecretName)
        }
    }

    /// The name.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for SecretName {
    type Error = BadSecretName;
    fn try_from(s: String) -> Result<Self, BadSecretName> {
        Self::parse(&s)
    }
}

impl From<SecretName> for String {
    fn from(n: SecretName) -> Self {
        n.0
    }
}

impl fmt::Display for SecretName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for SecretName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

/// When a secret should be rotated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RotationPolicy {
    /// When an operator says.
    Manual,
    /// Due this many days after the version was created.
    EveryDays(u32),
}

/// What is known about one version of a secret, without its value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretMeta {
    /// The name.
    pub name: SecretName,
    /// 1, 2, …
    pub version: u32,
    /// Whether this is the version [`SecretsManager::get`] answers.
    pub active: bool,
    /// Unix seconds.
    pub created_at: u64,
    /// Unix seconds after which the version is no longer handed out.
    pub expires_at: Option<u64>,
    /// When it is due for rotation.
    pub rotation: RotationPolicy,
    /// Free-form labels (`service=payments`).
    pub tags: BTreeMap<String, String>,
}

/// One stored version: its metadata and its value, sealed.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretRecord {
    /// Metadata.
    pub meta: SecretMeta,
    /// The version's data key as the key provider wrapped it ([`coffer_keys::WrappedKey`]
    /// storage form).
    pub wrapped_key: Vec<u8>,
    /// The master key version that wrapped it (for re-wrapping after a rotation).
    pub kek_version: u32,
    /// The value: an envelope under the data key, bound to name and version.
    pub sealed: Vec<u8>,
}

coffer_macros::debug_non_exhaustive!(self => SecretRecord { meta, kek_version });

/// The cause of an opaque failure: any error, or a message (`"…".into()`); the source chain is
/// kept.
pub type Cause = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Errors of the store port.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SecretStoreError {
    /// A secret of this name exists already (`insert_first`).
    #[error("secret {0} exists")]
    Exists(SecretName),
    /// The active version is not the one the caller rotated from: another rotation won.
    #[error("secret {name} was rotated meanwhile (expected active version {expected})")]
    Conflict {
        /// The secret.
        name: SecretName,
        /// The version the caller saw active.
        expected: u32,
    },
    /// No such secret.
    #[error("no secret {0}")]
    NotFound(SecretName),
    /// The database cannot be reached.
    #[error("secret store unavailable: {0}")]
    Unavailable(#[source] Cause),
    /// A stored row does not parse.
    #[error("stored secret is corrupt: {0}")]
    Corrupt(#[source] Cause),
    /// Anything else from the database.
    #[error("secret store error: {0}")]
    Storage(#[source] Cause),
}

/// Where secrets are kept. Rows are only ever inserted, and a version's `active` flag changed;
/// nothing is deleted.
#[async_trait]
pub trait SecretStore: Send + Sync + fmt::Debug {
    /// Stores version 1 of a new secret, active.
    ///
    /// # Errors
    /// [`SecretStoreError::Exists`] when the name is taken.
    async fn insert_first(&self, record: &SecretRecord) -> Result<(), SecretStoreError>;

    /// In one transaction: makes `expected_active` inactive and stores `record` (the next
    /// version) active.
    ///
    /// # Errors
    /// [`SecretStoreError::Conflict`] when `expected_active` is not the active version
    /// (nothing changes); [`SecretStoreError::NotFound`] when there is no such secret.
    async fn rotate(
        &self,
        expected_active: u32,
        record: &SecretRecord,
    ) -> Result<(), SecretStoreError>;

    /// The active version (`None`) or the given one.
    async fn get(
        &self,
        name: &SecretName,
        version: Option<u32>,
    ) -> Result<Option<SecretRecord>, SecretStoreError>;

    /// Every version of every secret, metadata only, ordered by name and version.
    async fn list(&self) -> Result<Vec<SecretMeta>, SecretStoreError>;

    /// Every version of every secret with its sealed value, for a backup.
    async fn export(&self) -> Result<Vec<SecretRecord>, SecretStoreError>;

    /// Stores a version from a backup unless that name and version exist (answers whether it
    /// was stored). It stays active only if no other version of the name is.
    async fn restore(&self, record: &SecretRecord) -> Result<bool, SecretStoreError>;

    /// Replaces a version's wrapped data key (after a master key rotation).
    async fn rewrap(
        &self,
        name: &SecretName,
        version: u32,
        wrapped_key: &[u8],
        kek_version: u32,
    ) -> Result<(), SecretStoreError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        for good in ["jwt/signing", "API_KEY", "a", "x.y-z_1"] {
            assert!(SecretName::parse(good).is_ok(), "{good}");
        }
        for bad in ["", "has space", "ümlaut", &"x".repeat(129), "a\nb"] {
            assert_eq!(SecretName::parse(bad), Err(BadSecretName), "{bad:?}");
        }
    }
}
