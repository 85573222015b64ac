//! The worker's schedule (`coffer-worker run`): every `worker.poll_secs` it runs whatever is
//! due, each job independent of the others (one failing is logged and counted, the rest run):
//!
//! - `kek_rotation`: a rotation requested through the API or the command line, or one the
//!   schedule requests when the active master key version is older than
//!   `worker.kek_rotation_days`, run under the rotation lock (several workers: one runs it, a
//!   killed one leaves a job the next continues);
//! - `dek_rotation`: wallets' and users' data keys older than `worker.dek_rotation_days`
//!   rotated (a new version; the mutable fields re-sealed under it), a bounded number per
//!   poll, under its own lock;
//! - `jwt_rotation`: a new token signing key when the current one is older than
//!   `worker.jwt_rotation_days` (under its own lock; the old key keeps verifying);
//! - `audit_checkpoint`: a checkpoint every `worker.audit_checkpoint_secs`;
//! - `cleanup`: ended sessions' refresh tokens and expired password resets deleted, and secrets
//!   past their expiry or rotation date counted and logged, every `worker.cleanup_secs`;
//! - `key_status`: the metrics of the master key's versions and stale data keys, every minute;
//! - `hold_expiry`: the lapsed holds of up to `worker.hold_expiries_per_poll` wallets written
//!   expired, every poll (the work list is the holds still active past their expiry: nothing to
//!   resume, nothing done twice).
//!
//! Beside the schedule, the outbox's delivery runs on its own loop (`delivery`).
//!
//! [`WorkerMetrics`] is what `/metrics` on `worker.metrics_listen` serves.

use std::future::Future;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use coffer_audit::{AuditLog as _, ObservedAuditLog};
use coffer_auth::accounts::Accounts;
use coffer_ledger::{Ledger, WalletId};
use coffer_rotation::{DataKeyOwner, RotateRequest, RotationJob, Rotator};
use coffer_secrets::SecretsManager;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::{App, WorkerConfig};

/// Who the schedule's requests name.
pub const SCHEDULE_ACTOR: &str = "service:coffer-worker";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct JobLabels {
    job: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VersionLabels {
    provider: String,
    key_id: String,
    version: String,
    state: &'static str,
}

/// The worker's metrics (prometheus-client).
pub struct WorkerMetrics {
    registry: Registry,
    runs: Family<JobLabels, Counter>,
    failures: Family<JobLabels, Counter>,
    last_success: Family<JobLabels, Gauge>,
    key_age: Family<VersionLabels, Gauge>,
    stale_keys: Gauge,
    rotation_total: Gauge,
    rotation_done: Gauge,
    rotation_rate: Gauge<f64, AtomicU64>,
    secrets_expired: Gauge,
    secrets_rotation_due: Gauge,
    dek_rotations: Counter,
    holds_expired: Counter,
    delivery: crate::delivery::DeliveryMetrics,
}

impl std::fmt::Debug for WorkerMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerMetrics").finish_non_exhaustive()
    }
}

fn gauge_of(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl WorkerMetrics {
    /// A fresh registry.
    #[must_use]
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("coffer_worker");
        let m = Self {
            runs: Family::default(),
            failures: Family::default(),
            last_success: Family::default(),
            key_age: Family::default(),
            stale_keys: Gauge::default(),
            rotation_total: Gauge::default(),
            rotation_done: Gauge::default(),
            rotation_rate: Gauge::default(),
            secrets_expired: Gauge::default(),
            secrets_rotation_due: Gauge::default(),
            dek_rotations: Counter::default(),
            holds_expired: Counter::default(),
            delivery: crate::delivery::DeliveryMetrics::register(&mut registry),
            registry: Registry::default(),
        };
        registry.register("job_runs", "Scheduled job runs", m.runs.clone());
        registry.register(
            "job_failures",
            "Scheduled job runs that failed",
            m.failures.clone(),
        );
        registry.register(
            "job_last_success_timestamp_seconds",
            "When each job last succeeded",
            m.last_success.clone(),
        );
        registry.register(
            "master_key_age_seconds",
            "Age of each master key version",
            m.key_age.clone(),
        );
        registry.register(
            "stale_data_keys",
            "Data keys wrapped under a master key version below the active one",
            m.stale_keys.clone(),
        );
        registry.register(
            "rotation_keys_total",
            "Data keys the current or last rotation has to move",
            m.rotation_total.clone(),
        );
        registry.register(
            "rotation_keys_done",
            "Data keys the current or last rotation has moved or failed",
            m.rotation_done.clone(),
        );
        registry.register(
            "rotation_rate_keys_per_second",
            "Re-wrap rate of the current or last rotation run",
            m.rotation_rate.clone(),
        );
        registry.register(
            "secrets_expired",
            "Secrets whose active version is past its expiry",
            m.secrets_expired.clone(),
        );
        registry.register(
            "secrets_rotation_due",
            "Secrets whose rotation policy says they are due",
            m.secrets_rotation_due.clone(),
        );
        registry.register(
            "data_key_rotations",
            "Wallet and user data keys rotated",
            m.dek_rotations.clone(),
        );
        registry.register(
            "holds_expired",
            "Holds the expiry job wrote expired",
            m.holds_expired.clone(),
        );
        Self { registry, ..m }
    }

    /// The Prometheus text format.
    #[must_use]
    pub fn render(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }

    fn ran(&self, job: &'static str, ok: bool) {
        let labels = JobLabels { job };
        self.runs.get_or_create(&labels).inc();
        if ok {
            self.last_success
                .get_or_create(&labels)
                .set(gauge_of(now_secs()));
        } else {
            self.failures.get_or_create(&labels).inc();
        }
    }

    /// Shows a rotation's progress (`rate` in keys per second).
    pub fn rotation_progress(&self, job: &RotationJob, rate: f64) {
        self.rotation_total.set(gauge_of(job.total));
        self.rotation_done.set(gauge_of(job.rewrapped + job.failed));
        self.rotation_rate.set(rate);
    }
}

impl Default for WorkerMetrics {
    fn default() -> Self {
        Self::new()
    }
}

/// A rotation's rate, from the first progress report of a run.
#[derive(Debug)]
pub struct RateMeter {
    start: Mutex<Option<(Instant, u64)>>,
}

impl RateMeter {
    /// A meter that starts at the first report.
    #[must_use]
    pub fn new() -> Self {
        Self {
            start: Mutex::new(None),
        }
    }

    /// Keys per second since the first report (0 until there are two).
    pub fn rate(&self, job: &RotationJob) -> f64 {
        let done = job.rewrapped + job.failed;
        let Ok(mut start) = self.start.lock() else {
            return 0.0;
        };
        let (at, from) = *start.get_or_insert((Instant::now(), done));
        let secs = at.elapsed().as_secs_f64();
        if secs <= 0.0 {
            return 0.0;
        }
        #[allow(clippy::cast_precision_loss)]
        let moved = done.saturating_sub(from) as f64;
        moved / secs
    }
}

impl Default for RateMeter {
    fn default() -> Self {
        Self::new()
    }
}

/// When each periodic job last ran.
#[derive(Debug, Default)]
struct Due {
    checkpoint: Option<Instant>,
    cleanup: Option<Instant>,
    key_status: Option<Instant>,
}

fn due(last: &mut Option<Instant>, every: Duration) -> bool {
    if every.is_zero() {
        return false;
    }
    if last.is_some_and(|t| t.elapsed() < every) {
        return false;
    }
    *last = Some(Instant::now());
    true
}

/// The scheduled jobs over the app's services.
pub struct Worker {
    rotation: Arc<Rotator>,
    ledger: Arc<Ledger>,
    accounts: Arc<Accounts>,
    audit: Arc<ObservedAuditLog>,
    secrets: Arc<SecretsManager>,
    config: WorkerConfig,
    metrics: Arc<WorkerMetrics>,
    due: Mutex<Due>,
    delivery: Option<crate::delivery::Delivery>,
}

coffer_macros::debug_non_exhaustive!(self => Worker { config });

/// Why a scheduled job failed (its service's message).
#[derive(Debug, thiserror::Error)]
#[error("{job}: {message}")]
pub struct JobError {
    /// The job.
    pub job: &'static str,
    /// What failed.
    pub message: String,
}

fn failed(job: &'static str) -> impl Fn(&dyn std::fmt::Display) -> JobError {
    move |e| JobError {
        job,
        message: e.to_string(),
    }
}

impl Worker {
    /// The worker over `app`'s services.
    #[must_use]
    pub fn new(app: &App) -> Self {
        Self {
            rotation: app.rotation.clone(),
            ledger: app.state.ledger.clone(),
            accounts: app.state.accounts.clone(),
            audit: app.audit.clone(),
            secrets: app.secrets.clone(),
            config: app.config.worker.clone(),
            metrics: Arc::new(WorkerMetrics::new()),
            due: Mutex::new(Due::default()),
            delivery: app
                .config
                .events
                .deliver
                .then(|| crate::delivery::Delivery {
                    dispatcher: app.outbox.clone(),
                    store: app.outbox_store.clone(),
                    config: app.config.events.clone(),
                    clock: app.clock.clone(),
                }),
        }
    }

    /// Its metrics.
    #[must_use]
    pub fn metrics(&self) -> Arc<WorkerMetrics> {
        self.metrics.clone()
    }

    /// Runs every due job once.
    pub async fn tick(&self) {
        let (checkpoint, cleanup, key_status) = {
            let Ok(mut d) = self.due.lock() else { return };
            (
                due(
                    &mut d.checkpoint,
                    Duration::from_secs(self.config.audit_checkpoint_secs),
                ),
                due(
                    &mut d.cleanup,
                    Duration::from_secs(self.config.cleanup_secs),
                ),
                due(&mut d.key_status, Duration::from_secs(60)),
            )
        };
        // The age check asks the provider (a KMS or Vault call): once a minute is enough; the
        // rotations requested through the API are looked for at every poll.
        self.report("kek_rotation", self.kek_rotation(key_status).await);
        if self.config.jwt_rotation_days > 0 {
            self.report("jwt_rotation", self.jwt_rotation().await);
        }
        if self.config.dek_rotation_days > 0 {
            self.report("dek_rotation", self.dek_rotation().await);
        }
        if checkpoint {
            self.report("audit_checkpoint", self.checkpoint().await);
        }
        if cleanup {
            self.report("cleanup", self.cleanup().await);
        }
        if key_status {
            self.report("key_status", self.key_status().await);
        }
        if self.config.hold_expiries_per_poll > 0 {
            self.report("hold_expiry", self.hold_expiry().await);
        }
    }

    /// `Ok(true)` when it expired a hold.
    async fn hold_expiry(&self) -> Result<bool, JobError> {
        let expired = self
            .ledger
            .expire_holds(self.config.hold_expiries_per_poll)
            .await
            .map_err(|e| failed("hold_expiry")(&e))?;
        self.metrics.holds_expired.inc_by(expired);
        Ok(expired > 0)
    }

    fn report(&self, job: &'static str, outcome: Result<bool, JobError>) {
        match outcome {
            Ok(true) => self.metrics.ran(job, true),
            Ok(false) => {}
            Err(e) => {
                tracing::error!(job, error = %e.message, "scheduled job failed");
                self.metrics.ran(job, false);
            }
        }
    }

    /// Runs until `shutdown` resolves: the schedule every `worker.poll_secs`, and beside it the
    /// outbox's delivery (when `events.deliver`). A job in progress is cut short only as far as
    /// the runtime lets it: a rotation killed mid-batch resumes on the next start, a delivery
    /// round's leases lapse and its events go again.
    pub async fn run(&self, shutdown: impl Future<Output = ()>) {
        let schedule = async {
            loop {
                self.tick().await;
                tokio::time::sleep(Duration::from_secs(self.config.poll_secs)).await;
            }
        };
        let delivery = async {
            match &self.delivery {
                Some(d) => d.run(&self.metrics.delivery).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = shutdown => {}
            ((), ()) = async { tokio::join!(schedule, delivery) } => {}
        }
    }

    /// Requests a rotation when the active version is too old (when `check_age`), then runs the
    /// open one.
    /// `Ok(true)` when a rotation finished.
    async fn kek_rotation(&self, check_age: bool) -> Result<bool, JobError> {
        let err = failed("kek_rotation");
        if check_age
            && self.config.kek_rotation_days > 0
            && self.rotation.provider().capabilities().rotate
        {
            let status = self
                .rotation
                .provider()
                .status()
                .await
                .map_err(|e| err(&e))?;
            let created = status
                .versions
                .iter()
                .find(|v| v.version == status.active_version)
                .and_then(|v| v.created_at);
            let max_age = Duration::from_secs(self.config.kek_rotation_days.saturating_mul(86_400));
            if created
                .and_then(|c| SystemTime::now().duration_since(c).ok())
                .is_some_and(|age| age > max_age)
            {
                let (job, made) = self
                    .rotation
                    .request(RotateRequest {
                        requested_by: SCHEDULE_ACTOR.to_owned(),
                        emergency: false,
                        retire: self.config.retire_after_rotation,
                    })
                    .await
                    .map_err(|e| err(&e))?;
                if made {
                    tracing::info!(job = %job.id, "master key due for rotation: requested");
                }
            }
        }
        let meter = RateMeter::new();
        let metrics = self.metrics.clone();
        let progress = move |job: &RotationJob| metrics.rotation_progress(job, meter.rate(job));
        let done = self
            .rotation
            .run_pending(&progress)
            .await
            .map_err(|e| err(&e))?;
        if let Some(job) = &done {
            tracing::info!(
                job = %job.id,
                rewrapped = job.rewrapped,
                to_version = job.to_version,
                "master key rotation finished"
            );
        }
        Ok(done.is_some())
    }

    async fn jwt_rotation(&self) -> Result<bool, JobError> {
        let err = failed("jwt_rotation");
        let created = self
            .accounts
            .current_signing_key_created_at()
            .await
            .map_err(|e| err(&e))?;
        let max_age = self.config.jwt_rotation_days.saturating_mul(86_400);
        if created.is_some_and(|c| now_secs().saturating_sub(c) < max_age) {
            return Ok(false);
        }
        let Some(_lease) = self
            .rotation
            .try_lock("jwt-rotation")
            .await
            .map_err(|e| err(&e))?
        else {
            return Ok(false);
        };
        // Another worker may have rotated while this one waited for the lock.
        let created = self
            .accounts
            .current_signing_key_created_at()
            .await
            .map_err(|e| err(&e))?;
        if created.is_some_and(|c| now_secs().saturating_sub(c) < max_age) {
            return Ok(false);
        }
        let kid = self
            .accounts
            .rotate_signing_key()
            .await
            .map_err(|e| err(&e))?;
        tracing::info!(kid = %kid, "token signing key rotated");
        Ok(true)
    }

    /// Data keys older than the policy, a bounded number per poll, under the `dek-rotation`
    /// lock. `Ok(true)` when it rotated any.
    async fn dek_rotation(&self) -> Result<bool, JobError> {
        let err = failed("dek_rotation");
        let Some(_lease) = self
            .rotation
            .try_lock("dek-rotation")
            .await
            .map_err(|e| err(&e))?
        else {
            return Ok(false);
        };
        let max_age = Duration::from_secs(self.config.dek_rotation_days.saturating_mul(86_400));
        let (wallets, users) = self
            .rotate_data_keys(max_age, Some(self.config.dek_rotations_per_poll), &|_| {})
            .await?;
        if wallets + users > 0 {
            tracing::info!(wallets, users, "data keys rotated by age");
        }
        Ok(wallets + users > 0)
    }

    /// Rotates the data key of every wallet (not closed) and user whose current one was
    /// created more than `max_age` ago, at most `limit` in all; `progress` sees the running
    /// count. Returns how many wallets and users moved. Each rotation is its own transaction,
    /// so stopping at any point loses nothing and the next run picks up what is still due.
    ///
    /// # Errors
    /// The first failure, after the rotations that succeeded.
    pub async fn rotate_data_keys(
        &self,
        max_age: Duration,
        limit: Option<u64>,
        progress: &(dyn Fn(u64) + Send + Sync),
    ) -> Result<(u64, u64), JobError> {
        let err = failed("dek_rotation");
        let age = i64::try_from(max_age.as_micros()).unwrap_or(i64::MAX);
        let now = i64::try_from(
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_micros()),
        )
        .unwrap_or(i64::MAX);
        let before = now.saturating_sub(age);
        let mut budget = limit.unwrap_or(u64::MAX);
        let mut done = [0u64; 2];
        for (i, owner) in [DataKeyOwner::Wallets, DataKeyOwner::Users]
            .into_iter()
            .enumerate()
        {
            let mut after = None;
            while budget > 0 {
                let page = u32::try_from(budget.min(500)).unwrap_or(500);
                let due = self
                    .rotation
                    .data_keys_due(owner, before, after, page)
                    .await
                    .map_err(|e| err(&e))?;
                let Some(last) = due.last() else { break };
                after = Some(*last);
                for id in due {
                    // An owner erased since the page was read has no key left to rotate.
                    match owner {
                        DataKeyOwner::Wallets => {
                            match self.ledger.rotate_data_key(WalletId::from_uuid(id)).await {
                                Err(coffer_ledger::Error::Rejected(
                                    coffer_ledger::LedgerError::Erased,
                                )) => continue,
                                other => other.map(drop).map_err(|e| err(&e))?,
                            }
                        }
                        DataKeyOwner::Users => match self
                            .accounts
                            .rotate_user_key(coffer_auth::user::UserId::from_uuid(id))
                            .await
                        {
                            Err(coffer_auth::accounts::AuthError::UserErased) => continue,
                            other => other.map(drop).map_err(|e| err(&e))?,
                        },
                    }
                    if let Some(n) = done.get_mut(i) {
                        *n += 1;
                    }
                    budget -= 1;
                    progress(done.iter().sum());
                    self.metrics.dek_rotations.inc();
                }
            }
        }
        Ok((done[0], done[1]))
    }

    async fn checkpoint(&self) -> Result<bool, JobError> {
        self.audit
            .checkpoint()
            .await
            .map_err(|e| failed("audit_checkpoint")(&e))?;
        Ok(true)
    }

    async fn cleanup(&self) -> Result<bool, JobError> {
        let err = failed("cleanup");
        let purged = self
            .accounts
            .purge_ended_sessions()
            .await
            .map_err(|e| err(&e))?;
        if purged > 0 {
            tracing::info!(refresh_tokens = purged, "ended sessions purged");
        }
        let resets = self
            .accounts
            .purge_expired_resets()
            .await
            .map_err(|e| err(&e))?;
        if resets > 0 {
            tracing::info!(password_resets = resets, "expired password resets purged");
        }
        let listed = self.secrets.list(None).await.map_err(|e| err(&e))?;
        let expired: Vec<_> = listed.iter().filter(|s| s.expired).collect();
        let due: Vec<_> = listed.iter().filter(|s| s.rotation_due).collect();
        for s in &expired {
            tracing::warn!(secret = %s.active.name, version = s.active.version, "secret expired: rotate it");
        }
        for s in &due {
            tracing::warn!(secret = %s.active.name, version = s.active.version, "secret due for rotation");
        }
        self.metrics
            .secrets_expired
            .set(gauge_of(expired.len() as u64));
        self.metrics
            .secrets_rotation_due
            .set(gauge_of(due.len() as u64));
        Ok(true)
    }

    async fn key_status(&self) -> Result<bool, JobError> {
        let overview = self
            .rotation
            .overview()
            .await
            .map_err(|e| failed("key_status")(&e))?;
        self.metrics.key_age.clear();
        for v in &overview.versions {
            if let Some(age) = v.age_secs {
                self.metrics
                    .key_age
                    .get_or_create(&VersionLabels {
                        provider: overview.provider.clone(),
                        key_id: overview.key_id.clone(),
                        version: v.version.to_string(),
                        state: v.state,
                    })
                    .set(gauge_of(age));
            }
        }
        self.metrics.stale_keys.set(gauge_of(overview.stale));
        Ok(true)
    }
}

/// Serves the worker's `/metrics` (and `/healthz`) on `listener` until `shutdown` resolves.
///
/// # Errors
/// The listener's I/O errors.
pub async fn serve_metrics(
    metrics: Arc<WorkerMetrics>,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use axum::routing::get;
    let router = axum::Router::new()
        .route(
            "/metrics",
            get(move || {
                let metrics = metrics.clone();
                async move {
                    (
                        [(
                            axum::http::header::CONTENT_TYPE,
                            "text/plain; version=0.0.4; charset=utf-8",
                        )],
                        metrics.render(),
                    )
                }
            }),
        )
        .route("/healthz", get(|| async { "ok" }));
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
}
