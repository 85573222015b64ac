//! Vault KV v2: master keys stored at `{mount}/crypto/master_keys/{key_id}`, one KV version per
//! master key version, read into memory (zeroized on drop) and used locally through the
//! [`Keyring`].
//!
//! | port | KV v2 |
//! |---|---|
//! | generate / unwrap / rewrap | local, with the versions read |
//! | rotate | a new KV version written with check-and-set |
//! | retire | the versions below soft-deleted (an operator can undelete them) |
//! | status | the secret's metadata: current version active, deleted ones retired |
//!
//! Each process re-reads the versions every `refresh` (and at once when it meets a version it
//! does not know), so a rotation by the worker reaches the API within that interval. A version
//! retired by another process still opens here until then.
//!
//! The path is `{mount}/{prefix}/{key_id}`; the prefix is `crypto/master_keys` by default. The
//! periodic re-read (every 30 s by default) runs once at a time and never sooner than `refresh`
//! after the last attempt, so during a Vault outage callers keep the versions they have instead
//! of waiting for timeouts. A version not known yet costs at most one re-read a second. Losing a
//! check-and-set rotation to another process is success: theirs is the new version.
//!
//! KV's default of 10 versions would destroy old master key versions, and every data key they
//! wrap. A process allowed to create the secret (`create_if_missing`) sets it to keep 100,000
//! versions, also when it was written by hand; any process warns when it finds fewer.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use coffer_crypto::{DataKey, MasterKey};
use coffer_keys::keyring::{Keyring, RingVersion};
use coffer_keys::{
    Capabilities, GeneratedDataKey, KeyContext, KeyError, KeyProvider, KeyStatus, RewrapRequest,
    VersionInfo, VersionState, WrappedKey,
};
use serde::{Deserialize, Serialize};
use serde_json::json;
use vaultrs::api::kv2::requests::SetSecretRequestOptions;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::session::{CallError, Session, VaultConnection, vault_call};

/// The name recorded in every key this provider wraps.
pub const PROVIDER_NAME: &str = "vault-kv";

/// How many versions Vault keeps of a master key secret. KV's default is 10, after which the
/// oldest version is destroyed: with it, every data key it wraps.
const MAX_VERSIONS: u32 = 100_000;

/// Which secret, and how to use it.
#[derive(Debug, Clone)]
pub struct KvSettings {
    /// The KV v2 mount, usually `kv`.
    pub mount: String,
    /// The folder of master keys in it, usually `crypto/master_keys`.
    pub prefix: String,
    /// The master key's id: the last path segment.
    pub key_id: String,
    /// Write a first version when the secret does not exist (development; production runs
    /// `cargo xtask vault-setup`).
    pub create_if_missing: bool,
    /// How long versions read are used before reading them again.
    pub refresh: Duration,
}

impl KvSettings {
    /// `kv/crypto/master_keys/{key_id}`, not created, re-read every 30 s.
    #[must_use]
    pub fn new(key_id: impl Into<String>) -> Self {
        Self {
            mount: "kv".into(),
            prefix: "crypto/master_keys".into(),
            key_id: key_id.into(),
            create_if_missing: false,
            refresh: Duration::from_secs(30),
        }
    }

    fn path(&self) -> String {
        format!("{}/{}", self.prefix.trim_matches('/'), self.key_id)
    }
}

/// One KV version's data.
#[derive(Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
struct StoredKey {
    /// Base64 of 32 bytes.
    key: String,
}

struct Loaded {
    ring: Keyring,
    retired: BTreeSet<u32>,
    at: Instant,
}

/// See the [module documentation](self).
#[derive(Debug)]
pub struct VaultKvProvider {
    session: Arc<Session>,
    settings: KvSettings,
    loaded: RwLock<Option<Loaded>>,
    reloading: tokio::sync::Mutex<()>,
    last_attempt: std::sync::Mutex<Option<Instant>>,
    /// The secret's `max_versions` as last read.
    max_versions: std::sync::atomic::AtomicU64,
}

coffer_macros::debug_non_exhaustive!(self => Loaded { ring, retired });

impl VaultKvProvider {
    /// Logs in and reads the master key versions (writing a first one when allowed).
    ///
    /// # Errors
    /// `Unavailable`, `Denied`, or `NotFound` when the secret is missing and may not be created.
    pub async fn connect(conn: VaultConnection, settings: KvSettings) -> Result<Self, KeyError> {
        let session = Session::connect(conn)
            .await
            .map_err(|e| crate::key_error(PROVIDER_NAME, &settings.key_id, e))?;
        let provider = Self {
            session,
            settings,
            loaded: RwLock::new(None),
            reloading: tokio::sync::Mutex::new(()),
            last_attempt: std::sync::Mutex::new(None),
            max_versions: std::sync::atomic::AtomicU64::new(0),
        };
        match provider.reload().await {
            Err(KeyError::NotFound { .. }) if provider.settings.create_if_missing => {
                provider.write_version(0).await?;
                provider.set_max_versions().await?;
                tracing::warn!(path = %provider.settings.path(), "created the KV master key");
                provider.reload().await?;
            }
            other => other?,
        }
        // Allowed to create it, so allowed to keep every version of it (a secret made by hand
        // keeps KV's default of 10).
        if provider.settings.create_if_missing
            && provider
                .max_versions
                .load(std::sync::atomic::Ordering::Relaxed)
                < u64::from(MAX_VERSIONS)
        {
            provider.set_max_versions().await?;
            provider.reload().await?;
        }
        Ok(provider)
    }

    fn err(&self, e: CallError) -> KeyError {
        crate::key_error(PROVIDER_NAME, &self.settings.key_id, e)
    }

    /// Writes fresh material as the version after `cas` (0: the secret must not exist).
    async fn write_version(&self, cas: u32) -> Result<(), KeyError> {
        let s = &self.settings;
        let path = s.path();
        let data = StoredKey {
            key: STANDARD.encode(MasterKey::generate().expose_secret()),
        };
        vault_call!(&self.session, |c| vaultrs::kv2::set_with_options(
            c,
            &s.mount,
            &path,
            &data,
            SetSecretRequestOptions { cas },
        ))
        .map_err(|e| self.err(e))?;
        Ok(())
    }

    async fn set_max_versions(&self) -> Result<(), KeyError> {
        let path = format!("{}/metadata/{}", self.settings.mount, self.settings.path());
        let (status, _) = self
            .session
            .raw(
                reqwest::Method::POST,
                &path,
                &json!({ "max_versions": MAX_VERSIONS }),
            )
            .await
            .map_err(|e| self.err(e))?;
        if !(200..300).contains(&status) {
            return Err(self.err(CallError::Status {
                code: status,
                errors: Vec::new(),
            }));
        }
        Ok(())
    }

    /// Reads the metadata and every live version.
    async fn reload(&self) -> Result<(), KeyError> {
        let s = &self.settings;
        let path = s.path();
        let meta = vault_call!(&self.session, |c| vaultrs::kv2::read_metadata(
            c, &s.mount, &path
        ))
        .map_err(|e| self.err(e))?;
        if meta.max_versions == 0 || meta.max_versions < u64::from(MAX_VERSIONS) {
            // KV destroys the oldest version beyond it: with it, every data key it wraps.
            tracing::warn!(
                path = %path,
                max_versions = meta.max_versions,
                "the KV master key keeps few versions (0 is the mount's default, 10): a rotation \
                 beyond it destroys the oldest master key version; run cargo xtask vault-setup or \
                 set max_versions on its metadata"
            );
        }
        self.max_versions
            .store(meta.max_versions, std::sync::atomic::Ordering::Relaxed);
        let current = u32::try_from(meta.current_version).unwrap_or(0);
        let mut versions = BTreeMap::new();
        let mut retired = BTreeSet::new();
        for (number, info) in &meta.versions {
            let Ok(v) = number.parse::<u32>() else {
                continue;
            };
            if info.destroyed || !info.deletion_time.is_empty() {
                retired.insert(v);
                continue;
            }
            let stored: StoredKey = vault_call!(&self.session, |c| vaultrs::kv2::read_version(
                c,
                &s.mount,
                &path,
                u64::from(v)
            ))
            .map_err(|e| self.err(e))?;
            let bytes = Zeroizing::new(STANDARD.decode(stored.key.as_bytes()).map_err(|_| {
                KeyError::Other(format!("{path} version {v} is not base64").into())
            })?);
            let key = MasterKey::from_configured(&bytes).map_err(|e| {
                KeyError::Other(format!("{path} version {v} is not a master key: {e}").into())
            })?;
            let state = if v == current {
                VersionState::Active
            } else {
                VersionState::DecryptOnly
            };
            versions.insert(
                v,
                RingVersion {
                    key,
                    state,
                    created_at: None,
                },
            );
        }
        let ring = Keyring::new(PROVIDER_NAME, &s.key_id, versions).map_err(|e| {
            KeyError::Other(format!("{path}: {e} (is the current version deleted?)").into())
        })?;
        *self.loaded.write().unwrap_or_else(PoisonError::into_inner) = Some(Loaded {
            ring,
            retired,
            at: Instant::now(),
        });
        Ok(())
    }

    /// Re-reads when the versions are older than `refresh`; keeps the old ones if that fails.
    async fn refresh_if_stale(&self) {
        let stale = self
            .loaded
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .is_none_or(|l| l.at.elapsed() >= self.settings.refresh);
        if stale {
            self.reload_at_most_every(self.settings.refresh, false)
                .await;
        }
    }

    /// One re-read at a time, and none if the last attempt (failed or not) is younger than
    /// `gap`: during a Vault outage callers keep the versions they have instead of each waiting
    /// for timeouts. With `wait`, a caller waits for a re-read under way and then decides.
    async fn reload_at_most_every(&self, gap: Duration, wait: bool) {
        let _one = if wait {
            self.reloading.lock().await
        } else {
            match self.reloading.try_lock() {
                Ok(guard) => guard,
                Err(_) => return, // somebody is re-reading right now
            }
        };
        {
            let mut last = self
                .last_attempt
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if last.is_some_and(|t| t.elapsed() < gap) {
                return;
            }
            *last = Some(Instant::now());
        }
        if let Err(e) = self.reload().await {
            tracing::warn!(error = %e, "KV master keys could not be re-read; using those read before");
        }
    }

    fn with<T>(&self, f: impl FnOnce(&Loaded) -> Result<T, KeyError>) -> Result<T, KeyError> {
        let guard = self.loaded.read().unwrap_or_else(PoisonError::into_inner);
        let loaded = guard.as_ref().ok_or_else(|| KeyError::Unavailable {
            provider: PROVIDER_NAME.into(),
            reason: "master keys not read yet".into(),
        })?;
        f(loaded)
    }

    fn open(loaded: &Loaded, wrapped: &WrappedKey, ctx: &KeyContext) -> Result<DataKey, KeyError> {
        if loaded.retired.contains(&wrapped.version)
            && wrapped.provider == PROVIDER_NAME
            && wrapped.key_id == loaded.ring.status().key_id
        {
            return Err(KeyError::Retired {
                key_id: wrapped.key_id.clone(),
                version: wrapped.version,
            });
        }
        loaded.ring.unwrap(wrapped, ctx)
    }

    /// Makes sure every version in `wanted` is known (one re-read when one is not).
    async fn know_versions(&self, wanted: impl Iterator<Item = u32>) {
        let unknown = {
            let guard = self.loaded.read().unwrap_or_else(PoisonError::into_inner);
            let mut wanted = wanted;
            guard
                .as_ref()
                .is_none_or(|l| wanted.any(|v| !l.ring.has_version(v) && !l.retired.contains(&v)))
        };
        if unknown {
            // A version written by another process: read it now, but a key naming a version
            // that does not exist (damaged, or destroyed in KV) costs one re-read a second at most.
            self.reload_at_most_every(Duration::from_secs(1), true)
                .await;
        }
    }
}

#[async_trait]
impl KeyProvider for VaultKvProvider {
    fn name(&self) -> &str {
        PROVIDER_NAME
    }

    fn key_id(&self) -> &str {
        &self.settings.key_id
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            rotate: true,
            retire: true,
        }
    }

    async fn generate_data_key(&self, context: &KeyContext) -> Result<GeneratedDataKey, KeyError> {
        self.refresh_if_stale().await;
        let plaintext = DataKey::generate();
        let wrapped = self.with(|l| l.ring.wrap(&plaintext, context))?;
        Ok(GeneratedDataKey { plaintext, wrapped })
    }

    async fn unwrap_data_key(
        &self,
        wrapped: &WrappedKey,
        context: &KeyContext,
    ) -> Result<DataKey, KeyError> {
        if wrapped.provider == PROVIDER_NAME && wrapped.key_id == self.settings.key_id {
            self.know_versions(std::iter::once(wrapped.version)).await;
        }
        self.with(|l| Self::open(l, wrapped, context))
    }

    async fn rewrap_data_keys(
        &self,
        batch: &[RewrapRequest],
    ) -> Result<Vec<Result<WrappedKey, KeyError>>, KeyError> {
        self.refresh_if_stale().await;
        self.know_versions(batch.iter().map(|r| r.wrapped.version))
            .await;
        self.with(|l| {
            Ok(batch
                .iter()
                .map(|r| {
                    let dek = Self::open(l, &r.wrapped, &r.context)?;
                    l.ring.wrap(&dek, &r.context)
                })
                .collect())
        })
    }

    async fn status(&self) -> Result<KeyStatus, KeyError> {
        self.reload().await?;
        self.with(|l| {
            let mut status = l.ring.status();
            status
                .versions
                .extend(l.retired.iter().map(|v| VersionInfo {
                    version: *v,
                    state: VersionState::Retired,
                    created_at: None,
                }));
            status.versions.sort_by_key(|v| v.version);
            Ok(status)
        })
    }

    async fn rotate(&self) -> Result<u32, KeyError> {
        self.reload().await?;
        let current = self.with(|l| Ok(l.ring.active()))?;
        match self.write_version(current).await {
            Ok(()) => {}
            // Another process rotated first (check-and-set): theirs is the new version.
            Err(KeyError::Other(e)) if e.to_string().contains("check-and-set") => {
                tracing::info!("another process rotated the KV master key first");
            }
            Err(e) => return Err(e),
        }
        self.reload().await?;
        let active = self.with(|l| Ok(l.ring.active()))?;
        tracing::info!(key_id = %self.settings.key_id, version = active, "rotated the KV master key");
        Ok(active)
    }

    async fn retire_versions_below(&self, min_version: u32) -> Result<(), KeyError> {
        self.reload().await?;
        let (active, live) = self.with(|l| {
            let status = l.ring.status();
            Ok((
                status.active_version,
                status
                    .versions
                    .iter()
                    .map(|v| u64::from(v.version))
                    .filter(|v| *v < u64::from(min_version))
                    .collect::<Vec<_>>(),
            ))
        })?;
        if min_version > active {
            return Err(KeyError::Other(
                format!(
                    "refusing to retire the active version {active} (asked to retire below \
                     {min_version})"
                )
                .into(),
            ));
        }
        if !live.is_empty() {
            let s = &self.settings;
            let path = s.path();
            vault_call!(&self.session, |c| vaultrs::kv2::delete_versions(
                c,
                &s.mount,
                &path,
                live.clone()
            ))
            .map_err(|e| self.err(e))?;
        }
        self.reload().await?;
        tracing::info!(key_id = %self.settings.key_id, below = min_version, "retired KV master key versions");
        Ok(())
    }

    /// One metadata read (readiness probes call it often); the versions are read again only
    /// when the current one is not the active version held.
    async fn health(&self) -> Result<(), KeyError> {
        let s = &self.settings;
        let path = s.path();
        let meta = vault_call!(&self.session, |c| vaultrs::kv2::read_metadata(
            c, &s.mount, &path
        ))
        .map_err(|e| self.err(e))?;
        let current = u32::try_from(meta.current_version).unwrap_or(0);
        let held = self.with(|l| Ok(l.ring.active())).ok();
        if held != Some(current) {
            self.reload().await?;
        }
        Ok(())
    }
}
