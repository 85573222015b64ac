//! Master key (KEK) rotation: the [`RotationStore`] port and the [`Rotator`] service.
//!
//! Every data key Coffer stores is wrapped by a version of the master key, and its row records
//! that version (`kek_version`). A rotation makes a new version active at the provider and then
//! re-wraps every key below it, in batches, while the API keeps serving: the data keys
//! themselves do not change, so nothing sealed under them is touched and a request that read a
//! key before its re-wrap still opens it (the old version stays decrypt-only until retired). The
//! work left is always "keys below the new version", so a job killed at any point continues
//! where the rows say it is; the job row only records what was decided (the version rotated to,
//! whether sessions were revoked) so that a restart never decides it twice.
//!
//! No I/O here: the store is a port (`coffer-store` implements it on Postgres and SQLite), the
//! master key is the key port.
//!
//! The [`Rotator`] (`service.rs`):
//!
//! - `request` refuses a provider that cannot rotate (or retire, when asked) and answers the
//!   open job instead of opening a second one.
//! - `run_pending` runs under the lock `kek-rotation`. An emergency job first revokes every
//!   session through a [`SessionRevoker`]. The version it starts from is saved before the
//!   provider rotates, so a restart that finds a newer active version adopts it. Then up to
//!   three passes of batches (1,000 keys by default): read, one `rewrap_data_keys` call, write
//!   where the row still holds the bytes read, save the job. Then `retire_grace` (30 s), the
//!   stragglers, and the retirement (asked for, or an emergency's when the provider can
//!   retire), only once no key is left below. Keys that do not re-wrap fail the job and retire
//!   nothing.
//! - `validate` unwraps every key under its own context (16 in flight) and opens each wallet's
//!   current balance with it; it reports counts and the first 20 failures.
//! - The audit log gets `key.rotation_started`, `key.kek_rotated` and `key.rotation_finished`.
//!
//! [`KeyRow::context`] calls the owning crate's own context function, so a re-wrap can never
//! bind a key to a context its owner would not rebuild.

use std::collections::BTreeMap;
use std::fmt;

use async_trait::async_trait;
use coffer_keys::KeyContext;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

mod service;
#[cfg(feature = "testkit")]
pub mod testkit;

pub use service::{
    KeysOverview, RotateRequest, RotationConfig, RotationError, Rotator, SessionRevoker, SetCount,
    ValidationFailure, ValidationReport,
};

/// The tables that hold wrapped data keys, in the order a rotation visits them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeySet {
    /// `secrets`: the secrets manager's data keys (the service's own secrets first: few rows).
    Secrets,
    /// `user_keys`: users' data keys.
    UserKeys,
    /// `wallet_keys`: wallets' data keys.
    WalletKeys,
}

impl KeySet {
    /// Every set.
    pub const ALL: [Self; 3] = [Self::Secrets, Self::UserKeys, Self::WalletKeys];

    /// The table's name.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Secrets => "secrets",
            Self::UserKeys => "user_keys",
            Self::WalletKeys => "wallet_keys",
        }
    }
}

impl fmt::Display for KeySet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where one wrapped key is stored: its table's primary key. Rows of a set are visited in this
/// order, and a row is the cursor of the next page.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(tag = "set", rename_all = "snake_case")]
pub enum KeyRow {
    /// `secrets (name, version)`.
    Secret {
        /// The secret's name.
        name: String,
        /// The secret's version.
        version: i64,
    },
    /// `user_keys (user_id, version)`.
    User {
        /// The user.
        user: Uuid,
        /// The data key's version.
        version: i64,
    },
    /// `wallet_keys (wallet_id, version)`.
    Wallet {
        /// The wallet.
        wallet: Uuid,
        /// The data key's version.
        version: i64,
    },
}

impl KeyRow {
    /// The set it belongs to.
    #[must_use]
    pub fn set(&self) -> KeySet {
        match self {
            Self::Secret { .. } => KeySet::Secrets,
            Self::User { .. } => KeySet::UserKeys,
            Self::Wallet { .. } => KeySet::WalletKeys,
        }
    }

    /// The key-provider context the key was wrapped under: the owning crate's own function, so
    /// a rotation can never wrap under a context the owner would not rebuild.
    #[must_use]
    pub fn context(&self) -> KeyContext {
        match self {
            Self::Secret { name, version } => coffer_secrets::secret_key_context(
                name,
                u32::try_from(*version).unwrap_or(u32::MAX),
            ),
            Self::User { user, .. } => {
                coffer_auth::accounts::user_key_context(coffer_auth::user::UserId::from_uuid(*user))
            }
            Self::Wallet { wallet, .. } => coffer_ledger::sealing::wallet_key_context(
                coffer_ledger::WalletId::from_uuid(*wallet),
            ),
        }
    }
}

impl fmt::Display for KeyRow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Secret { name, version } => write!(f, "secret {name} v{version}"),
            Self::User { user, version } => write!(f, "user {user} key v{version}"),
            Self::Wallet { wallet, version } => write!(f, "wallet {wallet} key v{version}"),
        }
    }
}

/// A wallet's current balance envelope, which its current data key must open: the proof that a
/// key that unwraps is also the right key.
#[derive(Clone, PartialEq, Eq)]
pub struct BalanceProbe {
    /// The wallet row's version (the balance is bound to it).
    pub row_version: i64,
    /// The sealed balance.
    pub balance: Vec<u8>,
}

coffer_macros::debug_non_exhaustive!(self => BalanceProbe { row_version });

/// One wrapped key as stored.
#[derive(Clone, PartialEq, Eq)]
pub struct StoredKey {
    /// Its row.
    pub row: KeyRow,
    /// The wrapped key's storage form (`WrappedKey::to_bytes`).
    pub wrapped: Vec<u8>,
    /// The master key version it is wrapped under, as its column says.
    pub kek_version: u32,
    /// For a wallet's current data key, when asked for: the balance it must open.
    pub probe: Option<BalanceProbe>,
}

coffer_macros::debug_non_exhaustive!(self => StoredKey {
    row, kek_version, wrapped_len: self.wrapped.len(),
});

/// Which keys to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyQuery {
    /// The table.
    pub set: KeySet,
    /// Only keys wrapped under a version below this one (all keys when `None`).
    pub below: Option<u32>,
    /// Rows after this one, in row order.
    pub after: Option<KeyRow>,
    /// At most this many.
    pub limit: u32,
    /// Include [`BalanceProbe`]s for wallets' current data keys.
    pub probe: bool,
}

/// A re-wrapped key to store, only if the row still holds `old`.
#[derive(Clone, PartialEq, Eq)]
pub struct Replacement {
    /// The row.
    pub row: KeyRow,
    /// The bytes read.
    pub old: Vec<u8>,
    /// The bytes to write.
    pub new: Vec<u8>,
    /// The master key version `new` is wrapped under.
    pub kek_version: u32,
}

coffer_macros::debug_non_exhaustive!(self => Replacement { row, kek_version });

/// Whose data keys a data-key rotation moves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DataKeyOwner {
    /// Wallets (`wallet_keys`).
    Wallets,
    /// Users (`user_keys`).
    Users,
}

/// A rotation's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// Asked for; no worker has started it.
    Requested,
    /// A worker started it (and may have died: the next one continues it).
    Running,
    /// Every key moved (and the old versions retired, when asked).
    Done,
    /// Stopped with keys that would not re-wrap (`error` says which first).
    Failed,
}

impl JobState {
    /// The stored form.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Requested => "requested",
            Self::Running => "running",
            Self::Done => "done",
            Self::Failed => "failed",
        }
    }

    /// Parses the stored form.
    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        [Self::Requested, Self::Running, Self::Done, Self::Failed]
            .into_iter()
            .find(|v| v.as_str() == s)
    }

    /// Requested or running.
    #[must_use]
    pub fn is_open(self) -> bool {
        matches!(self, Self::Requested | Self::Running)
    }
}

/// One master key rotation: the row in `key_rotations`, which is also its history entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RotationJob {
    /// Its id (UUID v7: ordered by creation).
    pub id: Uuid,
    /// Where it is.
    pub state: JobState,
    /// The emergency procedure: sessions revoked first, every key re-wrapped, the old versions
    /// retired.
    pub emergency: bool,
    /// Retire the versions below the new one once every key has moved.
    pub retire: bool,
    /// Who asked (`admin:<user id>`, `service:coffer-worker`, `cli:<user>`).
    pub requested_by: String,
    /// When (Unix seconds).
    pub requested_at: u64,
    /// The provider's name.
    pub provider: String,
    /// The master key's id.
    pub key_id: String,
    /// The active version when the job started.
    pub from_version: Option<u32>,
    /// The version it rotated to (set once the provider rotated).
    pub to_version: Option<u32>,
    /// When a worker started it.
    pub started_at: Option<u64>,
    /// When it ended.
    pub finished_at: Option<u64>,
    /// Last written.
    pub updated_at: u64,
    /// Keys below the new version when the re-wrap started.
    pub total: u64,
    /// Keys moved.
    pub rewrapped: u64,
    /// Keys that would not re-wrap.
    pub failed: u64,
    /// Sessions were revoked (emergency).
    pub sessions_revoked: bool,
    /// Versions below this were retired.
    pub retired_below: Option<u32>,
    /// The last error (a key-port or store message: never key material).
    pub error: Option<String>,
}

impl RotationJob {
    /// Seconds from start to end (or to its last update while running).
    #[must_use]
    pub fn duration_secs(&self) -> Option<u64> {
        let start = self.started_at?;
        Some(
            self.finished_at
                .unwrap_or(self.updated_at)
                .saturating_sub(start),
        )
    }
}

/// The cause of an opaque failure: any error, or a message (`"…".into()`); the source chain is
/// kept.
pub type Cause = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Errors of the rotation store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RotationStoreError {
    /// The database does not answer. Retry later.
    #[error("rotation store unavailable: {0}")]
    Unavailable(#[source] Cause),
    /// Another rotation is already requested or running.
    #[error("a master key rotation is already requested or running")]
    Conflict,
    /// A stored row does not parse.
    #[error("rotation store holds a corrupt row: {0}")]
    Corrupt(#[source] Cause),
    /// Anything else the database said.
    #[error("rotation store: {0}")]
    Storage(#[source] Cause),
}

/// Held while a job runs; dropping it lets another worker take the job. Released by the
/// database or the operating system when the process dies, so a killed worker blocks nobody.
pub struct JobLease {
    _holder: Box<dyn Send + Sync>,
}

impl JobLease {
    /// Wraps whatever holds the lock (a connection holding an advisory lock, a locked file).
    pub fn new(holder: impl Send + Sync + 'static) -> Self {
        Self {
            _holder: Box::new(holder),
        }
    }
}

impl fmt::Debug for JobLease {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("JobLease")
    }
}

/// The rotation's storage: wrapped keys by set, the job rows, and a lock per job name.
#[async_trait]
pub trait RotationStore: Send + Sync + fmt::Debug {
    /// Keys in row order after `query.after`, at most `query.limit`.
    async fn keys(&self, query: &KeyQuery) -> Result<Vec<StoredKey>, RotationStoreError>;

    /// Stores each replacement whose row still holds its `old` bytes, in one transaction;
    /// returns how many rows changed (a row changed or removed meanwhile is left alone).
    async fn replace(&self, set: KeySet, items: &[Replacement]) -> Result<u64, RotationStoreError>;

    /// How many keys of `set` each master key version wraps.
    async fn count_by_kek_version(
        &self,
        set: KeySet,
    ) -> Result<BTreeMap<u32, u64>, RotationStoreError>;

    /// Records a new job. [`RotationStoreError::Conflict`] when one is requested or running.
    async fn insert_job(&self, job: &RotationJob) -> Result<(), RotationStoreError>;

    /// Writes a job's row again (its id exists).
    async fn update_job(&self, job: &RotationJob) -> Result<(), RotationStoreError>;

    /// The job requested or running, if any.
    async fn open_job(&self) -> Result<Option<RotationJob>, RotationStoreError>;

    /// The newest `limit` jobs, newest first.
    async fn jobs(&self, limit: u32) -> Result<Vec<RotationJob>, RotationStoreError>;

    /// Takes the lock named `name` if nobody holds it.
    async fn try_lock(&self, name: &str) -> Result<Option<JobLease>, RotationStoreError>;

    /// Owners (wallets that are not closed, or users) whose current data key was created
    /// before `created_before_micros`, in id order after `after`, at most `limit`: the work of
    /// a data-key rotation by age.
    async fn data_keys_due(
        &self,
        owner: DataKeyOwner,
        created_before_micros: i64,
        after: Option<Uuid>,
        limit: u32,
    ) -> Result<Vec<Uuid>, RotationStoreError>;
}
