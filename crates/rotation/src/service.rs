//! The [`Rotator`]: requests, runs and resumes master key rotations, validates the stored keys,
//! and reports where the keys stand. Job times and version ages are read from the [`Clock`] it
//! is given.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use async_trait::async_trait;
use coffer_audit::{
    Action, Actor, AuditEvent, AuditLog, Code, DetailValue, EntityId, Outcome, Subject,
};
use coffer_clock::Clock;
use coffer_crypto::Envelope;
use coffer_keys::{KeyError, KeyProvider, RewrapRequest, VersionState, WrappedKey};
use futures_util::StreamExt as _;
use serde::Serialize;
use uuid::Uuid;

use crate::{
    JobState, KeyQuery, KeyRow, KeySet, Replacement, RotationJob, RotationStore,
    RotationStoreError, StoredKey,
};

/// The lock a rotation runs under.
const LOCK: &str = "kek-rotation";
/// How many validation failures a report names.
const FAILURES_NAMED: usize = 20;
/// Passes over the keys below the new version: keys wrapped by a process that had not seen the
/// rotation yet land below it after a pass started and are picked up by the next.
const PASSES: usize = 3;

/// Tuning.
#[derive(Debug, Clone)]
pub struct RotationConfig {
    /// Keys read, re-wrapped and written per batch.
    pub batch: u32,
    /// Unwraps in flight while validating.
    pub validate_concurrency: usize,
    /// How long to wait between the last re-wrap and retiring the old versions: a request
    /// that read a key just before its re-wrap, and processes that have not seen the rotation
    /// yet (a Vault KV refresh), finish with the old version first. Keys those processes wrote
    /// meanwhile are re-wrapped before retiring.
    pub retire_grace: Duration,
}

impl Default for RotationConfig {
    fn default() -> Self {
        Self {
            batch: 1000,
            validate_concurrency: 16,
            retire_grace: Duration::from_secs(30),
        }
    }
}

/// Revokes every session (the emergency procedure's first step), implemented by the app over
/// the accounts service.
#[async_trait]
pub trait SessionRevoker: Send + Sync {
    /// Every session and every access token issued so far stop working. Returns how many
    /// sessions ended.
    async fn revoke_all(&self) -> Result<u64, String>;
}

/// What an operator asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RotateRequest {
    /// Who asks (`admin:<user id>`, `cli:<user>`, `service:coffer-worker`): a token of
    /// `[A-Za-z0-9._:-]`.
    pub requested_by: String,
    /// Revoke every session first, re-wrap everything, retire the old versions.
    pub emergency: bool,
    /// Retire the versions below the new one when every key has moved.
    pub retire: bool,
}

/// Why a rotation, validation or report failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RotationError {
    /// The key provider failed (the job stays running and resumes on the next run).
    #[error(transparent)]
    Keys(#[from] KeyError),
    /// The database failed (likewise).
    #[error(transparent)]
    Store(#[from] RotationStoreError),
    /// The request cannot be carried out as asked.
    #[error("{0}")]
    Refused(String),
    /// Revoking the sessions failed.
    #[error("revoking sessions: {0}")]
    Sessions(String),
    /// Keys would not re-wrap: the job failed and nothing was retired.
    #[error("{failed} keys did not re-wrap (first: {first}); nothing was retired")]
    KeysFailed {
        /// How many.
        failed: u64,
        /// The first one and why.
        first: String,
    },
}

impl RotationError {
    /// A stable code for the API and exit messages.
    #[must_use]
    pub fn code(&self) -> &'static str {
        match self {
            Self::Keys(e) if e.is_retryable() => "key_provider_unavailable",
            Self::Keys(_) => "key_provider_error",
            Self::Store(RotationStoreError::Conflict) => "rotation_in_progress",
            Self::Store(_) => "store_unavailable",
            Self::Refused(_) => "rotation_refused",
            Self::Sessions(_) => "sessions_not_revoked",
            Self::KeysFailed { .. } => "keys_failed",
        }
    }
}

/// How many keys of a set each master key version wraps.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SetCount {
    /// The set.
    pub set: KeySet,
    /// Version to count.
    pub by_kek_version: BTreeMap<u32, u64>,
}

/// One master key version, as reported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VersionView {
    /// The number.
    pub version: u32,
    /// `active`, `decrypt_only` or `retired`.
    pub state: &'static str,
    /// Unix seconds, when the provider says.
    pub created_at: Option<u64>,
    /// Seconds since then.
    pub age_secs: Option<u64>,
}

/// Where the keys stand: `GET /v1/admin/keys`, `coffer-worker keys status`, the metrics.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeysOverview {
    /// The provider's name.
    pub provider: String,
    /// The master key's id.
    pub key_id: String,
    /// The version new keys are wrapped under.
    pub active_version: u32,
    /// Every version.
    pub versions: Vec<VersionView>,
    /// Stored keys per set and version.
    pub keys: Vec<SetCount>,
    /// Keys under a version below the active one: the work a rotation has left.
    pub stale: u64,
    /// The rotation requested or running.
    pub open_job: Option<RotationJob>,
    /// The last rotation that finished.
    pub last_done: Option<RotationJob>,
}

/// One key that failed validation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ValidationFailure {
    /// Where it is.
    pub row: KeyRow,
    /// Why (a key-port or envelope error: never material).
    pub error: String,
}

/// What `keys validate` found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ValidationReport {
    /// Keys checked per set.
    pub checked: BTreeMap<KeySet, u64>,
    /// Wallets whose balance their current data key opened.
    pub wallets_opened: u64,
    /// Keys (or balances) that failed.
    pub failed: u64,
    /// The first failures.
    pub failures: Vec<ValidationFailure>,
}

impl ValidationReport {
    /// Nothing failed.
    #[must_use]
    pub fn ok(&self) -> bool {
        self.failed == 0
    }

    /// Keys checked in all.
    #[must_use]
    pub fn total(&self) -> u64 {
        self.checked.values().sum()
    }

    fn fail(&mut self, row: &KeyRow, error: String) {
        self.failed += 1;
        if self.failures.len() < FAILURES_NAMED {
            self.failures.push(ValidationFailure {
                row: row.clone(),
                error,
            });
        }
    }
}

/// Requests, runs and reports master key rotations over the rotation store and the key port.
pub struct Rotator {
    store: Arc<dyn RotationStore>,
    keys: Arc<dyn KeyProvider>,
    audit: Arc<dyn AuditLog>,
    sessions: Option<Arc<dyn SessionRevoker>>,
    config: RotationConfig,
    clock: Arc<dyn Clock>,
}

coffer_macros::debug_non_exhaustive!(self => Rotator { provider: self.keys.name(), config });

fn state_name(s: VersionState) -> &'static str {
    match s {
        VersionState::Active => "active",
        VersionState::DecryptOnly => "decrypt_only",
        VersionState::Retired => "retired",
    }
}

/// `admin:<id>` → `Actor::Admin`, `user:<id>` → `Actor::User`, anything else a service.
fn actor_of(requested_by: &str) -> Actor {
    let service = || {
        EntityId::parse("coffer-worker")
            .map(Actor::Service)
            .unwrap_or(Actor::Anonymous)
    };
    match requested_by.split_once(':') {
        Some(("admin", id)) => EntityId::parse(id).map_or_else(|_| service(), Actor::Admin),
        Some(("user", id)) => EntityId::parse(id).map_or_else(|_| service(), Actor::User),
        _ => service(),
    }
}

fn count(n: u64) -> DetailValue {
    DetailValue::Int(i64::try_from(n).unwrap_or(i64::MAX))
}

impl Rotator {
    /// A rotator over `store` and the master key provider `keys` (give it the provider the
    /// worker calls directly, not through the unwrap cache, so validation reaches the provider),
    /// reading the time from `clock`.
    #[must_use]
    pub fn new(
        store: Arc<dyn RotationStore>,
        keys: Arc<dyn KeyProvider>,
        audit: Arc<dyn AuditLog>,
        config: RotationConfig,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            store,
            keys,
            audit,
            sessions: None,
            config,
            clock,
        }
    }

    /// Emergency rotations revoke sessions through `sessions`.
    #[must_use]
    pub fn with_sessions(mut self, sessions: Arc<dyn SessionRevoker>) -> Self {
        self.sessions = Some(sessions);
        self
    }

    /// Takes the lock `name` (another scheduled job's: one worker at a time) if it is free.
    ///
    /// # Errors
    /// Store failures.
    pub async fn try_lock(&self, name: &str) -> Result<Option<crate::JobLease>, RotationError> {
        Ok(self.store.try_lock(name).await?)
    }

    /// A page of the owners whose current data key is older than `created_before_micros`.
    ///
    /// # Errors
    /// Store failures.
    pub async fn data_keys_due(
        &self,
        owner: crate::DataKeyOwner,
        created_before_micros: i64,
        after: Option<Uuid>,
        limit: u32,
    ) -> Result<Vec<Uuid>, RotationError> {
        Ok(self
            .store
            .data_keys_due(owner, created_before_micros, after, limit)
            .await?)
    }

    /// The key provider it rotates.
    #[must_use]
    pub fn provider(&self) -> &Arc<dyn KeyProvider> {
        &self.keys
    }

    /// Records a rotation for a worker to run, or returns the one already requested or running
    /// (`false`: not created now).
    ///
    /// # Errors
    /// [`RotationError::Refused`] when the provider cannot rotate (or retire, when asked), or
    /// `requested_by` is not a token; store failures.
    pub async fn request(&self, req: RotateRequest) -> Result<(RotationJob, bool), RotationError> {
        let caps = self.keys.capabilities();
        if !caps.rotate {
            return Err(RotationError::Refused(format!(
                "the {} master key cannot be rotated here (an inline COFFER_MASTER_KEY is read-only: rotate the key file, or the key at its manager)",
                self.keys.name()
            )));
        }
        if req.retire && !caps.retire {
            return Err(RotationError::Refused(format!(
                "the {} provider keeps every version for decryption: rotate without --retire",
                self.keys.name()
            )));
        }
        if Code::parse(&req.requested_by).is_err() {
            return Err(RotationError::Refused(
                "requested_by must be a token of [A-Za-z0-9._:-]".into(),
            ));
        }
        if let Some(open) = self.store.open_job().await? {
            return Ok((open, false));
        }
        let now = self.clock.unix_secs();
        let job = RotationJob {
            id: Uuid::now_v7(),
            state: JobState::Requested,
            emergency: req.emergency,
            retire: req.retire,
            requested_by: req.requested_by,
            requested_at: now,
            provider: self.keys.name().to_owned(),
            key_id: self.keys.key_id().to_owned(),
            from_version: None,
            to_version: None,
            started_at: None,
            finished_at: None,
            updated_at: now,
            total: 0,
            rewrapped: 0,
            failed: 0,
            sessions_revoked: false,
            retired_below: None,
            error: None,
        };
        match self.store.insert_job(&job).await {
            Ok(()) => Ok((job, true)),
            Err(RotationStoreError::Conflict) => match self.store.open_job().await? {
                Some(open) => Ok((open, false)),
                None => Err(RotationStoreError::Conflict.into()),
            },
            Err(e) => Err(e.into()),
        }
    }

    /// Runs the rotation requested or running, if any, to its end, under the rotation lock:
    /// `Ok(None)` when there is none, or another worker holds the lock. `progress` sees the job
    /// after every batch.
    ///
    /// # Errors
    /// As [`RotationError`]; the job row keeps the error, and, unless keys failed, stays running
    /// so the next run continues it.
    pub async fn run_pending(
        &self,
        progress: &(dyn Fn(&RotationJob) + Send + Sync),
    ) -> Result<Option<RotationJob>, RotationError> {
        let Some(_lease) = self.store.try_lock(LOCK).await? else {
            return Ok(None);
        };
        let Some(mut job) = self.store.open_job().await? else {
            return Ok(None);
        };
        if job.state == JobState::Requested {
            job.state = JobState::Running;
            job.started_at = Some(self.clock.unix_secs());
            self.save(&mut job).await?;
            self.record(&job, Action::KeyRotationStarted, Outcome::Success)
                .await;
        }
        match self.drive(&mut job, progress).await {
            Ok(()) => Ok(Some(job)),
            Err(e) => {
                job.error = Some(e.to_string());
                if let RotationError::KeysFailed { .. } = e {
                    job.state = JobState::Failed;
                    job.finished_at = Some(self.clock.unix_secs());
                    self.record(&job, Action::KeyRotationFinished, Outcome::Failed)
                        .await;
                }
                if let Err(save) = self.save(&mut job).await {
                    tracing::warn!(error = %save, "could not record the rotation's error");
                }
                Err(e)
            }
        }
    }

    async fn drive(
        &self,
        job: &mut RotationJob,
        progress: &(dyn Fn(&RotationJob) + Send + Sync),
    ) -> Result<(), RotationError> {
        if job.emergency && !job.sessions_revoked {
            let revoker = self.sessions.as_ref().ok_or_else(|| {
                RotationError::Refused("an emergency rotation needs the accounts service".into())
            })?;
            let ended = revoker
                .revoke_all()
                .await
                .map_err(RotationError::Sessions)?;
            job.sessions_revoked = true;
            self.save(job).await?;
            tracing::warn!(
                sessions = ended,
                "emergency rotation: every session revoked"
            );
        }
        let target = match job.to_version {
            Some(v) => v,
            None => {
                let status = self.keys.status().await?;
                let from = *job.from_version.get_or_insert(status.active_version);
                // Recorded before rotating: a crash between the provider's rotation and the
                // next save is recognised by an active version above it, not rotated again.
                self.save(job).await?;
                let to = if status.active_version > from {
                    status.active_version
                } else {
                    self.keys.rotate().await?
                };
                job.to_version = Some(to);
                self.save(job).await?;
                self.record(job, Action::KeyKekRotated, Outcome::Success)
                    .await;
                tracing::info!(from, to, key = %job.key_id, "master key rotated");
                to
            }
        };
        let mut first_error = None;
        for _ in 0..PASSES {
            let left = self.count_below(target).await?;
            job.total = job.rewrapped + job.failed + left;
            if left == 0 || job.failed > 0 {
                break;
            }
            self.rewrap_below(target, job, progress, &mut first_error)
                .await?;
        }
        if job.failed > 0 {
            return Err(RotationError::KeysFailed {
                failed: job.failed,
                first: first_error.unwrap_or_else(|| "see the worker's log".into()),
            });
        }
        let retire = (job.retire || (job.emergency && self.keys.capabilities().retire))
            && job.retired_below.is_none();
        if retire && !self.config.retire_grace.is_zero() {
            tracing::info!(
                grace_secs = self.config.retire_grace.as_secs(),
                "every key moved; waiting before retiring the old versions"
            );
            tokio::time::sleep(self.config.retire_grace).await;
            if self.count_below(target).await? > 0 {
                self.rewrap_below(target, job, progress, &mut first_error)
                    .await?;
            }
        }
        let left = self.count_below(target).await?;
        if left > 0 {
            return Err(RotationError::Refused(format!(
                "{left} keys are still wrapped under versions below {target} (written by processes that had not seen the rotation yet): run the rotation again"
            )));
        }
        if job.failed > 0 {
            return Err(RotationError::KeysFailed {
                failed: job.failed,
                first: first_error.unwrap_or_else(|| "see the worker's log".into()),
            });
        }
        if retire {
            self.keys.retire_versions_below(target).await?;
            job.retired_below = Some(target);
            tracing::info!(below = target, "old master key versions retired");
        }
        job.state = JobState::Done;
        job.finished_at = Some(self.clock.unix_secs());
        job.error = None;
        self.save(job).await?;
        progress(job);
        self.record(job, Action::KeyRotationFinished, Outcome::Success)
            .await;
        Ok(())
    }

    async fn count_below(&self, target: u32) -> Result<u64, RotationError> {
        let mut n = 0;
        for set in KeySet::ALL {
            n += self
                .store
                .count_by_kek_version(set)
                .await?
                .range(..target)
                .map(|(_, c)| c)
                .sum::<u64>();
        }
        Ok(n)
    }

    /// One pass over every set: read a batch below `target`, re-wrap it in one provider call,
    /// write it back where the rows still hold what was read.
    async fn rewrap_below(
        &self,
        target: u32,
        job: &mut RotationJob,
        progress: &(dyn Fn(&RotationJob) + Send + Sync),
        first_error: &mut Option<String>,
    ) -> Result<(), RotationError> {
        for set in KeySet::ALL {
            let mut after = None;
            loop {
                let batch = self
                    .store
                    .keys(&KeyQuery {
                        set,
                        below: Some(target),
                        after: after.clone(),
                        limit: self.config.batch.max(1),
                        probe: false,
                    })
                    .await?;
                let Some(last) = batch.last() else { break };
                after = Some(last.row.clone());
                let mut failed = |row: &KeyRow, why: String| {
                    job.failed += 1;
                    tracing::error!(key = %row, error = %why, "key did not re-wrap");
                    first_error.get_or_insert_with(|| format!("{row}: {why}"));
                };
                let mut requests = Vec::with_capacity(batch.len());
                let mut read: Vec<&StoredKey> = Vec::with_capacity(batch.len());
                for key in &batch {
                    match WrappedKey::from_bytes(&key.wrapped) {
                        Ok(wrapped) => {
                            requests.push(RewrapRequest {
                                wrapped,
                                context: key.row.context(),
                            });
                            read.push(key);
                        }
                        Err(e) => failed(&key.row, e.to_string()),
                    }
                }
                let results = self.keys.rewrap_data_keys(&requests).await?;
                let mut replacements = Vec::with_capacity(read.len());
                for (key, result) in read.into_iter().zip(results) {
                    match result {
                        Ok(new) if new.version >= target => replacements.push(Replacement {
                            row: key.row.clone(),
                            old: key.wrapped.clone(),
                            kek_version: new.version,
                            new: new.to_bytes(),
                        }),
                        Ok(new) => failed(
                            &key.row,
                            format!(
                                "the provider re-wrapped it under version {}, below {target}",
                                new.version
                            ),
                        ),
                        Err(e) => failed(&key.row, e.to_string()),
                    }
                }
                job.rewrapped += self.store.replace(set, &replacements).await?;
                self.save(job).await?;
                progress(job);
            }
        }
        Ok(())
    }

    async fn save(&self, job: &mut RotationJob) -> Result<(), RotationError> {
        job.updated_at = self.clock.unix_secs();
        self.store.update_job(job).await?;
        Ok(())
    }

    /// Appends a rotation's audit record; a failure is logged, not fatal (the job row is the
    /// history, the audit record its signature).
    async fn record(&self, job: &RotationJob, action: Action, outcome: Outcome) {
        let subject = EntityId::parse(&job.key_id)
            .map(Subject::Key)
            .unwrap_or(Subject::System);
        let mut event = AuditEvent::new(actor_of(&job.requested_by), action, subject, outcome);
        let mut details = vec![
            ("emergency", DetailValue::Bool(job.emergency)),
            ("rewrapped", count(job.rewrapped)),
            ("failed", count(job.failed)),
        ];
        if let Ok(id) = Code::parse(&job.id.to_string()) {
            details.push(("job", DetailValue::Code(id)));
        }
        if let Ok(provider) = Code::parse(&job.provider) {
            details.push(("provider", DetailValue::Code(provider)));
        }
        if let Some(v) = job.from_version {
            details.push(("from_version", count(u64::from(v))));
        }
        if let Some(v) = job.to_version {
            details.push(("to_version", count(u64::from(v))));
        }
        for (k, v) in details {
            let _ = event.details.insert(k, v);
        }
        if let Err(e) = self.audit.append(&event).await {
            tracing::warn!(error = %e, action = action.as_str(), "rotation audit record not written");
        }
    }

    /// Retires every master key version below the active one, after a rotation that did not
    /// (or to retire later than it): refused while any data key is still under one of them.
    /// Returns the version retired below.
    ///
    /// # Errors
    /// [`RotationError::Refused`] with keys left below the active version or a rotation open;
    /// provider and store failures.
    pub async fn retire_old_versions(&self) -> Result<u32, RotationError> {
        if let Some(open) = self.store.open_job().await? {
            return Err(RotationError::Refused(format!(
                "rotation {} is {}: let it finish first",
                open.id,
                open.state.as_str()
            )));
        }
        let active = self.keys.status().await?.active_version;
        let left = self.count_below(active).await?;
        if left > 0 {
            return Err(RotationError::Refused(format!(
                "{left} data keys are still wrapped under versions below {active}: rotate (or resume) first"
            )));
        }
        self.keys.retire_versions_below(active).await?;
        tracing::info!(below = active, "old master key versions retired");
        Ok(active)
    }

    /// Opens every stored key (and each wallet's balance with its current key): counts and
    /// the first failures. `progress` sees the report after every batch.
    ///
    /// # Errors
    /// Store failures, and a key provider that does not answer (a key it refuses is a failure
    /// in the report, not an error).
    pub async fn validate(
        &self,
        progress: &(dyn Fn(&ValidationReport) + Send + Sync),
    ) -> Result<ValidationReport, RotationError> {
        let mut report = ValidationReport::default();
        for set in KeySet::ALL {
            let mut after = None;
            loop {
                let batch = self
                    .store
                    .keys(&KeyQuery {
                        set,
                        below: None,
                        after: after.clone(),
                        limit: self.config.batch.max(1),
                        probe: true,
                    })
                    .await?;
                let Some(last) = batch.last() else { break };
                after = Some(last.row.clone());
                let outcomes: Vec<(usize, Result<bool, KeyError>)> =
                    futures_util::stream::iter(batch.iter().enumerate())
                        .map(|(i, key)| async move { (i, self.check(key).await) })
                        .buffer_unordered(self.config.validate_concurrency.max(1))
                        .collect()
                        .await;
                for (i, outcome) in outcomes {
                    let Some(key) = batch.get(i) else { continue };
                    match outcome {
                        Ok(true) => report.wallets_opened += 1,
                        Ok(false) => {}
                        Err(e) if e.is_retryable() => return Err(e.into()),
                        Err(e) => report.fail(&key.row, e.to_string()),
                    }
                }
                *report.checked.entry(set).or_default() += batch.len() as u64;
                progress(&report);
            }
        }
        Ok(report)
    }

    /// Unwraps one key; with a probe, opens the balance with it (`Ok(true)`).
    async fn check(&self, key: &StoredKey) -> Result<bool, KeyError> {
        let wrapped =
            WrappedKey::from_bytes(&key.wrapped).map_err(|e| KeyError::Corrupt(e.to_string()))?;
        let dek = self
            .keys
            .unwrap_data_key(&wrapped, &key.row.context())
            .await?;
        let (Some(probe), KeyRow::Wallet { wallet, .. }) = (&key.probe, &key.row) else {
            return Ok(false);
        };
        let envelope = Envelope::from_bytes(&probe.balance)
            .map_err(|e| KeyError::Corrupt(format!("balance: {e}")))?;
        let aad = coffer_ledger::sealing::balance_aad(
            coffer_ledger::WalletId::from_uuid(*wallet),
            probe.row_version,
        );
        coffer_crypto::open(&dek, &aad, &envelope).map_err(|e| {
            KeyError::Corrupt(format!(
                "the wallet's balance does not open with its key: {e}"
            ))
        })?;
        Ok(true)
    }

    /// Where the keys stand: the provider's versions with their ages, the keys per set and
    /// version, the open rotation and the last finished one.
    ///
    /// # Errors
    /// Provider and store failures.
    pub async fn overview(&self) -> Result<KeysOverview, RotationError> {
        let status = self.keys.status().await?;
        let now = self.clock.unix_secs();
        let versions = status
            .versions
            .iter()
            .map(|v| {
                let created_at = v
                    .created_at
                    .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                    .map(|d| d.as_secs());
                VersionView {
                    version: v.version,
                    state: state_name(v.state),
                    created_at,
                    age_secs: created_at.map(|c| now.saturating_sub(c)),
                }
            })
            .collect();
        let mut keys = Vec::new();
        let mut stale = 0;
        for set in KeySet::ALL {
            let by_kek_version = self.store.count_by_kek_version(set).await?;
            stale += by_kek_version
                .range(..status.active_version)
                .map(|(_, c)| c)
                .sum::<u64>();
            keys.push(SetCount {
                set,
                by_kek_version,
            });
        }
        let open_job = self.store.open_job().await?;
        let last_done = self
            .store
            .jobs(50)
            .await?
            .into_iter()
            .find(|j| j.state == JobState::Done);
        Ok(KeysOverview {
            provider: status.provider,
            key_id: status.key_id,
            active_version: status.active_version,
            versions,
            keys,
            stale,
            open_job,
            last_done,
        })
    }

    /// The newest `limit` rotations, newest first.
    ///
    /// # Errors
    /// Store failures.
    pub async fn history(&self, limit: u32) -> Result<Vec<RotationJob>, RotationError> {
        Ok(self.store.jobs(limit).await?)
    }
}
