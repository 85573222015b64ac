//! [`SecretsManager`]: the secrets manager's operations (get, set,
//! rotate, list, backup, restore, status) on top of a [`SecretStore`] and a
//! [`KeyProvider`].
//!
//! Time comes from an injected [`Clock`]: expiries, rotation due dates and backup times in its
//! Unix seconds, the cache's age on its monotonic time. [`SecretsManager::new`] reads the
//! system's; tests of expiry give a [`coffer_clock::ManualClock`] through
//! [`SecretsManager::with_clock`].

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use coffer_clock::Clock;
use coffer_crypto::{Aad, KeyRef, SecretBytes};
use coffer_keys::{
    KeyContext, KeyError, KeyProvider, UsageCounter, WrappedKey, outcome_of, rewrap_one,
};
use serde::{Deserialize, Serialize};

use crate::{RotationPolicy, SecretMeta, SecretName, SecretRecord, SecretStore, SecretStoreError};

/// The plaintext of a data key wrapped by `keys` under `context`, as a secret's value: how a
/// key stored before the secrets manager (a wrapped data key in a row of its own) is adopted by
/// [`SecretsManager::get_or_init`] with its bytes.
///
/// # Errors
/// `Keys` (a malformed wrapped key is `Corrupt`).
pub async fn unwrap_legacy_key(
    keys: &dyn KeyProvider,
    wrapped: &[u8],
    context: &KeyContext,
) -> Result<SecretBytes, SecretError> {
    let wrapped = WrappedKey::from_bytes(wrapped)
        .map_err(|e| SecretError::Keys(KeyError::Corrupt(e.to_string())))?;
    let key = keys.unwrap_data_key(&wrapped, context).await?;
    Ok(SecretBytes::new(key.expose_secret().to_vec()))
}

/// The backup bundle's format number.
pub const BACKUP_FORMAT: u32 = 1;

/// Why a secrets operation failed. Never carries a value.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SecretError {
    /// No such secret, or no such version of it.
    #[error("no secret {name}{}", version.map(|v| format!(" version {v}")).unwrap_or_default())]
    NotFound {
        /// The name asked for.
        name: SecretName,
        /// The version asked for, if any.
        version: Option<u32>,
    },
    /// `set` of a name that exists: use `rotate`.
    #[error("secret {0} exists: rotate it instead")]
    Exists(SecretName),
    /// The version's expiry has passed; it is no longer handed out.
    #[error("secret {name} version {version} expired at {expired_at} (unix seconds): rotate it")]
    Expired {
        /// The secret.
        name: SecretName,
        /// The expired version.
        version: u32,
        /// When.
        expired_at: u64,
    },
    /// Another rotation of the same secret won; read it again.
    #[error("secret {0} was rotated concurrently")]
    Conflict(SecretName),
    /// The key provider failed (unavailable, denied, corrupt wrapped key…).
    #[error(transparent)]
    Keys(#[from] KeyError),
    /// The store failed.
    #[error(transparent)]
    Store(SecretStoreError),
    /// A stored value does not open under its data key, name and version.
    #[error("secret {name} version {version} is corrupt or was moved")]
    Corrupt {
        /// The secret.
        name: SecretName,
        /// The version.
        version: u32,
    },
    /// A backup that is not one, or was changed.
    #[error("not a valid secrets backup: {0}")]
    BadBackup(String),
}

impl From<SecretStoreError> for SecretError {
    fn from(e: SecretStoreError) -> Self {
        match e {
            SecretStoreError::Exists(name) => Self::Exists(name),
            SecretStoreError::Conflict { name, .. } => Self::Conflict(name),
            SecretStoreError::NotFound(name) => Self::NotFound {
                name,
                version: None,
            },
            other => Self::Store(other),
        }
    }
}

/// What `set` records next to the value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetOptions {
    /// How long the version is handed out; `None`: until rotated.
    pub expires_in: Option<Duration>,
    /// When it is due for rotation.
    pub rotation: RotationPolicy,
    /// Labels.
    pub tags: BTreeMap<String, String>,
}

impl Default for SetOptions {
    fn default() -> Self {
        Self {
            expires_in: None,
            rotation: RotationPolicy::Manual,
            tags: BTreeMap::new(),
        }
    }
}

/// One secret in a listing: its active version's metadata and how many versions it has.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SecretInfo {
    /// The active version.
    pub active: SecretMeta,
    /// Versions kept, the active one included.
    pub versions: u32,
    /// Whether the active version has expired.
    pub expired: bool,
    /// Whether its rotation policy says it is due.
    pub rotation_due: bool,
}

/// `status()`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SecretsStatus {
    /// Values held in the cache.
    pub cache_entries: usize,
    /// Reads answered from the cache since start.
    pub cache_hit_ratio: f64,
    /// Secrets (names).
    pub secrets: usize,
    /// Versions of all of them.
    pub versions: usize,
    /// Secrets whose active version has expired.
    pub expired: usize,
    /// Secrets due for rotation.
    pub rotation_due: usize,
    /// The key provider behind them.
    pub provider: String,
}

/// What `restore` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct RestoreReport {
    /// Versions stored.
    pub restored: usize,
    /// Versions that were there already.
    pub skipped: usize,
}

struct Cached {
    value: SecretBytes,
    meta: SecretMeta,
    at: Instant,
}

/// See the [crate documentation](crate).
pub struct SecretsManager {
    store: Arc<dyn SecretStore>,
    keys: Arc<dyn KeyProvider>,
    ttl: Duration,
    clock: Arc<dyn Clock>,
    /// `(name, None)` is the active version, `(name, Some(v))` a version asked for by number.
    cache: Mutex<HashMap<(SecretName, Option<u32>), Cached>>,
    /// Bumped by every rotation: a read that began before one does not cache what it read.
    rotations: AtomicU64,
    hits: AtomicU64,
    misses: AtomicU64,
    usage: UsageCounter,
}

impl SecretError {
    /// The stable name of its kind, as the audit's read summaries carry it.
    #[must_use]
    pub fn kind(&self) -> &'static str {
        match self {
            Self::NotFound { .. } => "not_found",
            Self::Exists(_) => "exists",
            Self::Expired { .. } => "expired",
            Self::Conflict(_) => "conflict",
            Self::Keys(e) => outcome_of(e),
            Self::Store(SecretStoreError::Unavailable(_)) => "unavailable",
            Self::Store(_) => "store",
            Self::Corrupt { .. } => "corrupt",
            Self::BadBackup(_) => "bad_backup",
        }
    }
}

coffer_macros::debug_non_exhaustive!(self => SecretsManager { store, keys, ttl });

fn key_context(name: &SecretName, version: u32) -> KeyContext {
    crate::secret_key_context(name.as_str(), version)
}

fn aad(name: &SecretName, version: u32) -> Aad {
    Aad::new("coffer.secret")
        .with(name.as_str())
        .with(version.to_be_bytes())
}

fn backup_context(created_at: u64) -> KeyContext {
    KeyContext::new()
        .with("purpose", "secrets-backup")
        .with("created_at", created_at.to_string())
}

#[derive(Serialize, Deserialize)]
struct Bundle {
    format: u32,
    created_at: u64,
    count: usize,
    /// The bundle's own data key, wrapped.
    wrapped_key: String,
    /// The records (each already sealed), sealed again under the bundle's key.
    sealed: String,
}

impl SecretsManager {
    /// A manager whose cache keeps values `ttl` (5 minutes by default).
    #[must_use]
    pub fn new(store: Arc<dyn SecretStore>, keys: Arc<dyn KeyProvider>, ttl: Duration) -> Self {
        Self {
            store,
            keys,
            ttl,
            clock: coffer_clock::system(),
            cache: Mutex::new(HashMap::new()),
            rotations: AtomicU64::new(0),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            usage: UsageCounter::default(),
        }
    }

    /// Reads per secret, outcome (`ok`, `cached`, an error kind) and minute, not yet written to
    /// the audit log.
    #[must_use]
    pub fn usage(&self) -> &UsageCounter {
        &self.usage
    }

    /// The same with another clock (tests of expiry and rotation due dates).
    #[must_use]
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    fn now(&self) -> u64 {
        self.clock.unix_secs()
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, HashMap<(SecretName, Option<u32>), Cached>> {
        self.cache.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn check_expiry(&self, meta: &SecretMeta) -> Result<(), SecretError> {
        match meta.expires_at {
            Some(at) if self.now() >= at => Err(SecretError::Expired {
                name: meta.name.clone(),
                version: meta.version,
                expired_at: at,
            }),
            _ => Ok(()),
        }
    }

    fn rotation_due(&self, meta: &SecretMeta) -> bool {
        match meta.rotation {
            RotationPolicy::Manual => false,
            RotationPolicy::EveryDays(days) => {
                self.now() >= meta.created_at.saturating_add(u64::from(days) * 86_400)
            }
        }
    }

    /// The active version's value.
    ///
    /// # Errors
    /// `NotFound`, `Expired`, `Keys` (the provider is down and the value is not cached),
    /// `Corrupt`, `Store`.
    pub async fn get(&self, name: &SecretName) -> Result<SecretBytes, SecretError> {
        self.read(name, None).await
    }

    /// The active value of a secret the service itself needs (a blind-index key, a hashing key),
    /// made by `init` and stored as version 1 when there is none yet. Of two processes starting
    /// at once, one stores its value and both use it.
    ///
    /// # Errors
    /// As [`get`](Self::get) and [`set`](Self::set), and whatever `init` answers.
    pub async fn get_or_init<F, Fut>(
        &self,
        name: &SecretName,
        tags: &BTreeMap<String, String>,
        init: F,
    ) -> Result<SecretBytes, SecretError>
    where
        F: FnOnce() -> Fut + Send,
        Fut: std::future::Future<Output = Result<SecretBytes, SecretError>> + Send,
    {
        match self.get(name).await {
            Err(SecretError::NotFound { .. }) => {}
            other => return other,
        }
        let value = init().await?;
        let options = SetOptions {
            tags: tags.clone(),
            ..SetOptions::default()
        };
        match self.set(name, value.expose_secret(), &options).await {
            Ok(_) | Err(SecretError::Exists(_)) => self.get(name).await,
            Err(e) => Err(e),
        }
    }

    /// A version's value, active or not (an expired one is still refused).
    ///
    /// # Errors
    /// As [`get`](Self::get).
    pub async fn get_version(
        &self,
        name: &SecretName,
        version: u32,
    ) -> Result<SecretBytes, SecretError> {
        self.read(name, Some(version)).await
    }

    async fn read(
        &self,
        name: &SecretName,
        version: Option<u32>,
    ) -> Result<SecretBytes, SecretError> {
        let mut cached = false;
        let result = self.read_counted(name, version, &mut cached).await;
        let outcome = match &result {
            Ok(_) if cached => "cached",
            Ok(_) => "ok",
            Err(e) => e.kind(),
        };
        self.usage.record(name.as_str(), "read", outcome);
        result
    }

    async fn read_counted(
        &self,
        name: &SecretName,
        version: Option<u32>,
        cached: &mut bool,
    ) -> Result<SecretBytes, SecretError> {
        let key = (name.clone(), version);
        if let Some(c) = self.cache().get(&key)
            && self.clock.monotonic().saturating_duration_since(c.at) < self.ttl
        {
            self.check_expiry(&c.meta)?;
            self.hits.fetch_add(1, Ordering::Relaxed);
            *cached = true;
            return Ok(c.value.clone());
        }
        self.misses.fetch_add(1, Ordering::Relaxed);
        let rotations = self.rotations.load(Ordering::SeqCst);
        let record = self
            .store
            .get(name, version)
            .await?
            .ok_or_else(|| SecretError::NotFound {
                name: name.clone(),
                version,
            })?;
        self.check_expiry(&record.meta)?;
        let value = self.open(&record).await?;
        let mut cache = self.cache();
        // Checked under the cache's lock, which `rotate` takes to clear it.
        if self.rotations.load(Ordering::SeqCst) == rotations {
            cache.insert(
                key,
                Cached {
                    value: value.clone(),
                    meta: record.meta,
                    at: self.clock.monotonic(),
                },
            );
        }
        Ok(value)
    }

    async fn open(&self, record: &SecretRecord) -> Result<SecretBytes, SecretError> {
        let meta = &record.meta;
        let corrupt = || SecretError::Corrupt {
            name: meta.name.clone(),
            version: meta.version,
        };
        let wrapped = WrappedKey::from_bytes(&record.wrapped_key).map_err(|_| corrupt())?;
        let dek = self
            .keys
            .unwrap_data_key(&wrapped, &key_context(&meta.name, meta.version))
            .await?;
        coffer_crypto::open_bytes(&dek, &aad(&meta.name, meta.version), &record.sealed)
            .map_err(|_| corrupt())
    }

    async fn seal(&self, meta: SecretMeta, value: &[u8]) -> Result<SecretRecord, SecretError> {
        let generated = self
            .keys
            .generate_data_key(&key_context(&meta.name, meta.version))
            .await?;
        let key_ref = KeyRef::new("secret", meta.version)
            .map_err(|e| SecretError::Keys(KeyError::Other(Box::new(e))))?;
        let envelope = coffer_crypto::seal(
            &generated.plaintext,
            &key_ref,
            &aad(&meta.name, meta.version),
            value,
        )
        .map_err(|e| SecretError::Keys(KeyError::Other(Box::new(e))))?;
        Ok(SecretRecord {
            kek_version: generated.wrapped.version,
            wrapped_key: generated.wrapped.to_bytes(),
            sealed: envelope.into_bytes(),
            meta,
        })
    }

    fn meta_for(&self, name: &SecretName, version: u32, options: &SetOptions) -> SecretMeta {
        let now = self.now();
        SecretMeta {
            name: name.clone(),
            version,
            active: true,
            created_at: now,
            expires_at: options.expires_in.map(|d| now.saturating_add(d.as_secs())),
            rotation: options.rotation,
            tags: options.tags.clone(),
        }
    }

    /// Stores a new secret as version 1.
    ///
    /// # Errors
    /// `Exists` when the name is taken (rotate it instead); `Keys`, `Store`.
    pub async fn set(
        &self,
        name: &SecretName,
        value: &[u8],
        options: &SetOptions,
    ) -> Result<SecretMeta, SecretError> {
        let record = self.seal(self.meta_for(name, 1, options), value).await?;
        self.store.insert_first(&record).await?;
        tracing::info!(secret = %name, version = 1, "secret stored");
        Ok(record.meta)
    }

    /// Stores `value` as the next version, active; the previous one stays readable by number,
    /// inactive. Tags and rotation policy carry over; an expiry starts again with its length.
    /// Every cached value of the secret is dropped.
    ///
    /// # Errors
    /// `NotFound`, `Conflict` (another rotation won), `Keys`, `Store`.
    pub async fn rotate(&self, name: &SecretName, value: &[u8]) -> Result<SecretMeta, SecretError> {
        let current = self
            .store
            .get(name, None)
            .await?
            .ok_or_else(|| SecretError::NotFound {
                name: name.clone(),
                version: None,
            })?
            .meta;
        let options = SetOptions {
            expires_in: current
                .expires_at
                .map(|at| Duration::from_secs(at.saturating_sub(current.created_at))),
            rotation: current.rotation,
            tags: current.tags.clone(),
        };
        // After the highest version kept, not the active one: a restore may have added a newer
        // inactive version.
        let highest = self
            .store
            .list()
            .await?
            .iter()
            .filter(|m| m.name == *name)
            .map(|m| m.version)
            .max()
            .unwrap_or(current.version);
        let next = highest.saturating_add(1);
        let record = self
            .seal(self.meta_for(name, next, &options), value)
            .await?;
        self.store.rotate(current.version, &record).await?;
        {
            let mut cache = self.cache();
            self.rotations.fetch_add(1, Ordering::SeqCst);
            cache.retain(|(n, _), _| n != name);
        }
        tracing::info!(secret = %name, version = next, "secret rotated");
        Ok(record.meta)
    }

    /// Forgets every cached value (the next reads go to the store and the key provider).
    pub fn clear_cache(&self) {
        let mut cache = self.cache();
        self.rotations.fetch_add(1, Ordering::SeqCst);
        cache.clear();
    }

    /// The secrets, by their active version's metadata (never values); with `tag`, only those
    /// carrying that label and value.
    ///
    /// # Errors
    /// `Store`.
    pub async fn list(&self, tag: Option<(&str, &str)>) -> Result<Vec<SecretInfo>, SecretError> {
        let mut by_name: BTreeMap<SecretName, (Option<SecretMeta>, u32)> = BTreeMap::new();
        for meta in self.store.list().await? {
            let entry = by_name.entry(meta.name.clone()).or_default();
            entry.1 += 1;
            if meta.active {
                entry.0 = Some(meta);
            }
        }
        Ok(by_name
            .into_values()
            .filter_map(|(active, versions)| {
                let active = active?;
                if let Some((k, v)) = tag
                    && active.tags.get(k).map(String::as_str) != Some(v)
                {
                    return None;
                }
                Some(SecretInfo {
                    expired: self.check_expiry(&active).is_err(),
                    rotation_due: self.rotation_due(&active),
                    active,
                    versions,
                })
            })
            .collect())
    }

    /// Cache and store figures.
    ///
    /// # Errors
    /// `Store`.
    pub async fn status(&self) -> Result<SecretsStatus, SecretError> {
        let listed = self.list(None).await?;
        let hits = self.hits.load(Ordering::Relaxed);
        let misses = self.misses.load(Ordering::Relaxed);
        #[allow(clippy::cast_precision_loss)]
        let ratio = if hits + misses == 0 {
            0.0
        } else {
            hits as f64 / (hits + misses) as f64
        };
        Ok(SecretsStatus {
            cache_entries: self.cache().len(),
            cache_hit_ratio: ratio,
            secrets: listed.len(),
            versions: listed.iter().map(|s| s.versions as usize).sum(),
            expired: listed.iter().filter(|s| s.expired).count(),
            rotation_due: listed.iter().filter(|s| s.rotation_due).count(),
            provider: self.keys.name().to_owned(),
        })
    }

    /// Every version of every secret as one bundle, sealed under a data key of its own that the
    /// key provider wraps: it opens only where that master key is (and so do the secrets in it).
    ///
    /// # Errors
    /// `Keys`, `Store`.
    pub async fn backup(&self) -> Result<Vec<u8>, SecretError> {
        let records = self.store.export().await?;
        let created_at = self.now();
        let generated = self
            .keys
            .generate_data_key(&backup_context(created_at))
            .await?;
        let inner = serde_json::to_vec(&records)
            .map_err(|e| SecretError::Keys(KeyError::Other(Box::new(e))))?;
        let key_ref = KeyRef::new("secrets-backup", 1)
            .map_err(|e| SecretError::Keys(KeyError::Other(Box::new(e))))?;
        let envelope = coffer_crypto::seal(
            &generated.plaintext,
            &key_ref,
            &Aad::new("coffer.secrets-backup").with(created_at.to_be_bytes()),
            &inner,
        )
        .map_err(|e| SecretError::Keys(KeyError::Other(Box::new(e))))?;
        let bundle = Bundle {
            format: BACKUP_FORMAT,
            created_at,
            count: records.len(),
            wrapped_key: STANDARD.encode(generated.wrapped.to_bytes()),
            sealed: STANDARD.encode(envelope.into_bytes()),
        };
        tracing::info!(versions = records.len(), "secrets backed up");
        serde_json::to_vec_pretty(&bundle).map_err(|e| SecretError::BadBackup(e.to_string()))
    }

    /// Stores every version of a backup that is not here yet. Repeating it changes nothing.
    ///
    /// # Errors
    /// `BadBackup` for anything that is not an intact bundle; `Keys`, `Store`.
    pub async fn restore(&self, bundle: &[u8]) -> Result<RestoreReport, SecretError> {
        let bad = |what: &str| SecretError::BadBackup(what.to_owned());
        let bundle: Bundle = serde_json::from_slice(bundle).map_err(|_| bad("not JSON"))?;
        if bundle.format != BACKUP_FORMAT {
            return Err(bad("unknown format"));
        }
        let wrapped = STANDARD
            .decode(&bundle.wrapped_key)
            .ok()
            .and_then(|b| WrappedKey::from_bytes(&b).ok())
            .ok_or_else(|| bad("the bundle key is malformed"))?;
        let dek = self
            .keys
            .unwrap_data_key(&wrapped, &backup_context(bundle.created_at))
            .await
            .map_err(|e| match e {
                KeyError::Corrupt(_) => bad("the bundle key does not open (changed?)"),
                other => SecretError::Keys(other),
            })?;
        let sealed = STANDARD
            .decode(&bundle.sealed)
            .map_err(|_| bad("the sealed part is not base64"))?;
        let inner = coffer_crypto::open_bytes(
            &dek,
            &Aad::new("coffer.secrets-backup").with(bundle.created_at.to_be_bytes()),
            &sealed,
        )
        .map_err(|_| bad("the sealed part does not open (changed?)"))?;
        let records: Vec<SecretRecord> = serde_json::from_slice(inner.expose_secret())
            .map_err(|_| bad("the records do not parse"))?;
        let mut report = RestoreReport::default();
        for record in &records {
            if self.store.restore(record).await? {
                report.restored += 1;
            } else {
                report.skipped += 1;
            }
        }
        self.clear_cache();
        tracing::info!(
            restored = report.restored,
            skipped = report.skipped,
            "secrets restored"
        );
        Ok(report)
    }

    /// Re-wraps the data key of every version wrapped under an older master key version than
    /// the active one; answers how many. Values are not touched.
    ///
    /// # Errors
    /// `Keys`, `Store`; per-version refusals stop the run (it resumes where it stopped).
    pub async fn rewrap_stale(&self) -> Result<usize, SecretError> {
        let active = self.keys.status().await?.active_version;
        let mut done = 0;
        for record in self.store.export().await? {
            if record.kek_version >= active {
                continue;
            }
            let meta = &record.meta;
            let wrapped =
                WrappedKey::from_bytes(&record.wrapped_key).map_err(|_| SecretError::Corrupt {
                    name: meta.name.clone(),
                    version: meta.version,
                })?;
            let moved = rewrap_one(
                self.keys.as_ref(),
                &wrapped,
                &key_context(&meta.name, meta.version),
            )
            .await?;
            self.store
                .rewrap(&meta.name, meta.version, &moved.to_bytes(), moved.version)
                .await?;
            done += 1;
        }
        Ok(done)
    }
}
