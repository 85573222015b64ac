//! Coffer's audit trail: append-only, tamper-evident, written in the same database transaction as
//! the change it describes.
//!
//! - [`event`]: the record model; free text is impossible by construction, secrets and PII enter
//!   only as keyed hashes ([`AuditHasher`]).
//! - [`chain`]: one HMAC chain per stream (usually per subject), chained checkpoints.
//! - [`verify`]: names the first modified, deleted, reordered or inserted record and detects
//!   truncation.
//! - [`alerts`]: the security alert rules over the audit stream.
//! - The port: [`AuditLog`] and its transaction [`AuditTx`]; adapters live in `coffer-store`.
//!   [`ObservedAuditLog`] decorates any adapter with the JSON-lines log sink and the alert rules.

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;

pub mod alerts;
pub mod chain;
pub mod event;
#[cfg(feature = "testkit")]
pub mod testkit;
pub mod verify;

pub use alerts::{Alert, AlertConfig, AlertRules, WindowRule};
pub use chain::{
    AuditRecord, Checkpoint, CheckpointAnchor, CheckpointEntry, CheckpointSummary, Receipt,
};
pub use event::{
    Action, Actor, AuditEvent, AuditHasher, Code, DetailValue, Details, EntityId, EventError,
    Outcome, StreamId, Subject, by_api_key, current_request_id, in_request,
};
pub use verify::{Finding, FindingKind, Verifier, VerifyProgress, VerifyReport};

/// The cause of an opaque failure: any error, or a message (`"…".into()`); the source chain is
/// kept.
pub type Cause = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Errors of the audit port.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuditError {
    /// The store cannot be reached. Retry later.
    #[error("audit store unavailable: {0}")]
    Unavailable(#[source] Cause),
    /// The database aborted the transaction to keep it serialisable (a serialization failure
    /// or deadlock). Retry the whole transaction.
    #[error("audit append conflicted with a concurrent transaction; retry: {0}")]
    Conflict(#[source] Cause),
    /// A stored row cannot be read back (run verify).
    #[error("audit store holds an unreadable record: {0}")]
    Unreadable(#[source] Cause),
    /// Anything else.
    #[error("audit store error: {0}")]
    Other(#[source] Cause),
}

/// A page of the log, newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditQuery {
    /// Only records with a smaller id (the previous page's last id).
    pub before_id: Option<i64>,
    /// Only this stream.
    pub stream: Option<StreamId>,
    /// At most this many (capped at 1,000).
    pub limit: u32,
}

impl Default for AuditQuery {
    fn default() -> Self {
        Self {
            before_id: None,
            stream: None,
            limit: 100,
        }
    }
}

/// What an adapter can do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuditCapabilities {
    /// Transactions appending to different streams proceed in parallel (Postgres); otherwise
    /// writers are serialised by the database (SQLite).
    pub concurrent_streams: bool,
}

/// Appends inside one database transaction. Dropping it without [`AuditTx::commit`] rolls back.
#[async_trait]
pub trait AuditTx: Send {
    /// Appends `event` to its stream; the stream stays locked until commit or rollback.
    async fn append(&mut self, event: &AuditEvent) -> Result<Receipt, AuditError>;
    /// Commits every append of this transaction at once.
    async fn commit(self: Box<Self>) -> Result<(), AuditError>;
    /// Discards every append of this transaction.
    async fn rollback(self: Box<Self>) -> Result<(), AuditError>;
}

/// The audit port. Used as `Arc<dyn AuditLog>`.
#[async_trait]
pub trait AuditLog: Send + Sync + fmt::Debug {
    /// What this adapter can do.
    fn capabilities(&self) -> AuditCapabilities;

    /// Opens a transaction. Stores that also hold the ledger write audit records inside their own
    /// transactions instead; this is for events that change nothing else.
    async fn begin(&self) -> Result<Box<dyn AuditTx>, AuditError>;

    /// Appends one event in a transaction of its own.
    async fn append(&self, event: &AuditEvent) -> Result<Receipt, AuditError> {
        let mut tx = self.begin().await?;
        let receipt = tx.append(event).await?;
        tx.commit().await?;
        Ok(receipt)
    }

    /// A page of records, newest first.
    async fn list(&self, query: &AuditQuery) -> Result<Vec<AuditRecord>, AuditError>;

    /// Records a checkpoint over the stream heads that moved since the last one; `None` when
    /// nothing moved.
    async fn checkpoint(&self) -> Result<Option<CheckpointSummary>, AuditError>;

    /// Verifies the whole log. `anchor`, the latest checkpoint known from outside the database,
    /// makes cutting off the newest checkpoints (and records) detectable.
    async fn verify(
        &self,
        anchor: Option<&CheckpointAnchor>,
        progress: &(dyn Fn(VerifyProgress) + Send + Sync),
    ) -> Result<VerifyReport, AuditError>;
}

/// Writes a checkpoint every `every` (one minute by default in production) until the task is
/// aborted; failures are logged and retried at the next tick. Run it through
/// [`ObservedAuditLog`] so each checkpoint's anchor is shipped.
pub fn spawn_checkpoints(
    log: Arc<dyn AuditLog>,
    every: std::time::Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(e) = log.checkpoint().await {
                tracing::warn!(event = "coffer.audit.checkpoint_failed", error = %e, "audit checkpoint failed");
            }
        }
    })
}

/// The JSON form of a record for log shipping: one line, no secrets (there are none to leak).
#[must_use]
pub fn record_json(event: &AuditEvent, receipt: &Receipt) -> serde_json::Value {
    let (actor_kind, actor_id) = event.actor.parts();
    let (subject_kind, subject_id) = event.subject.parts();
    serde_json::json!({
        "id": receipt.id,
        "stream": event.stream.as_str(),
        "seq": receipt.seq,
        "at_micros": event.at_micros,
        "actor": { "kind": actor_kind, "id": actor_id.map(EntityId::as_str) },
        "action": event.action.as_str(),
        "subject": { "kind": subject_kind, "id": subject_id.map(EntityId::as_str) },
        "outcome": event.outcome.as_str(),
        "request_id": event.request_id.as_ref().map(Code::as_str),
        "details": &event.details,
        "mac": receipt.mac.iter().map(|b| format!("{b:02x}")).collect::<String>(),
    })
}

/// Decorates an adapter: every committed record is also emitted as one JSON line on the
/// `coffer::audit` tracing target (for log shipping) and fed to the alert rules, whose alerts are
/// appended as `security.alert` records.
pub struct ObservedAuditLog {
    inner: Arc<dyn AuditLog>,
    shared: Arc<Observer>,
}

struct Observer {
    rules: Mutex<AlertRules>,
    service: EntityId,
    /// Alerts raised since start, by rule (for metrics).
    raised: Mutex<std::collections::BTreeMap<&'static str, u64>>,
}

impl Observer {
    /// Emits and observes committed records; returns the alerts to append.
    fn committed(&self, records: &[(AuditEvent, Receipt)]) -> Vec<AuditEvent> {
        let mut alerts = Vec::new();
        let mut rules = self.rules.lock().unwrap_or_else(PoisonError::into_inner);
        for (event, receipt) in records {
            tracing::info!(target: "coffer::audit", "{}", record_json(event, receipt));
            if event.action != Action::SecurityAlert {
                let raised = rules.observe(event);
                if !raised.is_empty() {
                    let mut counts = self.raised.lock().unwrap_or_else(PoisonError::into_inner);
                    for a in &raised {
                        *counts.entry(a.rule).or_default() += 1;
                    }
                }
                alerts.extend(raised.iter().map(|a| a.to_event(&self.service)));
            }
        }
        alerts
    }
}

impl ObservedAuditLog {
    /// Wraps `inner` with these alert thresholds; alerts are recorded as actor
    /// `service:<service>`.
    #[must_use]
    pub fn new(inner: Arc<dyn AuditLog>, config: AlertConfig, service: EntityId) -> Self {
        Self {
            inner,
            shared: Arc::new(Observer {
                rules: Mutex::new(AlertRules::new(config)),
                service,
                raised: Mutex::new(std::collections::BTreeMap::new()),
            }),
        }
    }

    /// Alerts this process raised since it started, by rule (`failed_logins`,
    /// `large_transaction`, `rate_limit_exceeded`, `failed_transactions`).
    #[must_use]
    pub fn alerts_raised(&self) -> Vec<(&'static str, u64)> {
        self.shared
            .raised
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(rule, n)| (*rule, *n))
            .collect()
    }

    /// For records appended inside a store's own transaction (`append_in`): call after that
    /// transaction commits, so they are shipped and alerted on like any other.
    pub async fn committed_elsewhere(&self, records: &[(AuditEvent, Receipt)]) {
        let alerts = self.shared.committed(records);
        self.record_alerts(alerts).await;
    }

    async fn record_alerts(&self, alerts: Vec<AuditEvent>) {
        for alert in alerts {
            // An alert that cannot be recorded is still in the WARN log line the rule wrote.
            match self.inner.append(&alert).await {
                Ok(receipt) => {
                    tracing::info!(target: "coffer::audit", "{}", record_json(&alert, &receipt));
                }
                Err(e) => {
                    tracing::error!(error = %e, "could not record a security alert in the audit log");
                }
            }
        }
    }
}

coffer_macros::debug_non_exhaustive!(self => ObservedAuditLog { inner });

#[async_trait]
impl AuditLog for ObservedAuditLog {
    fn capabilities(&self) -> AuditCapabilities {
        self.inner.capabilities()
    }

    async fn begin(&self) -> Result<Box<dyn AuditTx>, AuditError> {
        Ok(Box::new(CommitHook {
            tx: self.inner.begin().await?,
            pending: Vec::new(),
            log: ObservedAuditLog {
                inner: self.inner.clone(),
                shared: self.shared.clone(),
            },
        }))
    }

    async fn list(&self, query: &AuditQuery) -> Result<Vec<AuditRecord>, AuditError> {
        self.inner.list(query).await
    }

    async fn checkpoint(&self) -> Result<Option<CheckpointSummary>, AuditError> {
        let summary = self.inner.checkpoint().await?;
        if let Some(c) = &summary {
            // Shipped off the database: the anchor for a later `verify`.
            tracing::info!(
                target: "coffer::audit",
                "{}",
                serde_json::json!({
                    "checkpoint_id": c.id,
                    "streams": c.streams,
                    "mac": c.mac.iter().map(|b| format!("{b:02x}")).collect::<String>(),
                })
            );
        }
        Ok(summary)
    }

    async fn verify(
        &self,
        anchor: Option<&CheckpointAnchor>,
        progress: &(dyn Fn(VerifyProgress) + Send + Sync),
    ) -> Result<VerifyReport, AuditError> {
        self.inner.verify(anchor, progress).await
    }
}

/// A transaction that, once committed, emits its records and records the alerts they trigger.
struct CommitHook {
    tx: Box<dyn AuditTx>,
    pending: Vec<(AuditEvent, Receipt)>,
    log: ObservedAuditLog,
}

#[async_trait]
impl AuditTx for CommitHook {
    async fn append(&mut self, event: &AuditEvent) -> Result<Receipt, AuditError> {
        let receipt = self.tx.append(event).await?;
        self.pending.push((event.clone(), receipt.clone()));
        Ok(receipt)
    }

    async fn commit(self: Box<Self>) -> Result<(), AuditError> {
        let Self { tx, pending, log } = *self;
        tx.commit().await?;
        log.committed_elsewhere(&pending).await;
        Ok(())
    }

    async fn rollback(self: Box<Self>) -> Result<(), AuditError> {
        self.tx.rollback().await
    }
}
