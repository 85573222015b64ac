//! The [`Dispatcher`]: one round of delivery, as the worker runs it on a short interval.
//!
//! A round scans (marks the cursors of wallets with new events due), claims due cursors under
//! a lease, and delivers each claimed wallet's events to its sink in the wallet's order, up to
//! `events_per_claim`, several claims at once. For each event, in order:
//!
//! - a kind the sink does not want is passed over;
//! - an event whose wallet was erased no longer opens: it is recorded as `erased` and skipped;
//! - otherwise the message is sent. Delivered: on to the next. Failed: the attempt is
//!   recorded and the cursor stays on the event until the [`RetrySchedule`] says to try again;
//!   the wallet's later events wait behind it (per sink, event n+1 never goes before event n
//!   was delivered or given up on). Once the schedule is spent: `gave_up`, and on.
//!
//! Then the cursor is settled where it got to, with the attempts, in one transaction, if the
//! lease is still the claim's. A worker killed at any point loses nothing: its lease lapses,
//! another worker claims the cursor and sends again from the cursor (at least once; the
//! message id is the event's, so receivers deduplicate). No transaction is open while a
//! message is in flight.
//!
//! A sink that fails `disable_after` attempts in a row is disabled, with an audit record.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use coffer_audit::{Action, Actor, AuditEvent, AuditLog, Code, DetailValue, EntityId, Subject};
use coffer_clock::Clock;
use coffer_ledger::domain::EventData;
use coffer_ledger::port::EventRecord;
use coffer_ledger::{Ledger, LedgerError, WalletId};
use coffer_webhooks::RetrySchedule;
use futures_util::StreamExt;

use crate::port::{Attempt, AttemptId, Claim, OutboxError, OutboxStore, Outcome, Settlement};
use crate::sink::{Sink, SinkId};
use crate::transport::{Message, SendError, Transport};

/// Opens events' payloads (the ledger, under each wallet's data key).
#[cfg_attr(test, mockall::automock)]
#[async_trait]
pub trait Payloads: Send + Sync {
    /// The payloads of `events`, all of `wallet`, in their order.
    async fn open(
        &self,
        wallet: WalletId,
        events: &[EventRecord],
    ) -> Result<Vec<EventData>, Opened>;
}

/// Why payloads did not open.
#[derive(Debug, thiserror::Error)]
pub enum Opened {
    /// The wallet was erased: its events are shredded with its keys.
    #[error("the wallet was erased")]
    Erased,
    /// Anything else (keys, storage): tried again later.
    #[error("the payloads did not open")]
    Failed(#[source] coffer_ledger::Error),
}

#[async_trait]
impl Payloads for Ledger {
    async fn open(
        &self,
        wallet: WalletId,
        events: &[EventRecord],
    ) -> Result<Vec<EventData>, Opened> {
        self.events_data(wallet, events).await.map_err(|e| match e {
            coffer_ledger::Error::Rejected(LedgerError::Erased) => Opened::Erased,
            e => Opened::Failed(e),
        })
    }
}

/// How the dispatcher works (configuration).
#[derive(Debug, Clone)]
pub struct DispatchConfig {
    /// Events the scan reads per round.
    pub scan_batch: u32,
    /// Cursors claimed per round.
    pub claim_batch: u32,
    /// A claimed wallet's events delivered per round, at most.
    pub events_per_claim: u32,
    /// How long a claim is a worker's alone. No send starts after its first half, so it must be
    /// over twice the transport's timeout.
    pub lease: Duration,
    /// Claims delivered at once.
    pub concurrency: usize,
    /// A sink is disabled after this many failed attempts in a row.
    pub disable_after: u32,
    /// When a failed delivery is tried again, and when it is given up on.
    pub schedule: RetrySchedule,
}

impl Default for DispatchConfig {
    fn default() -> Self {
        Self {
            scan_batch: 1000,
            claim_batch: 64,
            events_per_claim: 100,
            lease: Duration::from_secs(120),
            concurrency: 16,
            disable_after: 100,
            schedule: RetrySchedule::default(),
        }
    }
}

/// What a round did.
#[derive(Debug, Default)]
pub struct Round {
    /// Events the scan read.
    pub scanned: usize,
    /// Cursors claimed.
    pub claimed: usize,
    /// Every attempt recorded (the metrics count them by sink and outcome).
    pub attempts: Vec<Attempt>,
    /// Claims whose lease had lapsed before they settled (their work is done again).
    pub lost_leases: usize,
    /// Sinks disabled for failing.
    pub disabled: Vec<SinkId>,
    /// Claims that failed (storage, keys); their cursors are tried again after the lease.
    pub errors: usize,
}

/// Delivers the outbox's events to the sinks.
pub struct Dispatcher {
    store: Arc<dyn OutboxStore>,
    payloads: Arc<dyn Payloads>,
    transport: Arc<dyn Transport>,
    audit: Arc<dyn AuditLog>,
    clock: Arc<dyn Clock>,
    config: DispatchConfig,
    worker: EntityId,
}

coffer_macros::debug_non_exhaustive!(self => Dispatcher { store, config });

fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

impl Dispatcher {
    /// A dispatcher; `worker` names it in audit records.
    #[must_use]
    pub fn new(
        store: Arc<dyn OutboxStore>,
        payloads: Arc<dyn Payloads>,
        transport: Arc<dyn Transport>,
        audit: Arc<dyn AuditLog>,
        clock: Arc<dyn Clock>,
        config: DispatchConfig,
        worker: EntityId,
    ) -> Self {
        Self {
            store,
            payloads,
            transport,
            audit,
            clock,
            config,
            worker,
        }
    }

    fn now(&self) -> i64 {
        self.clock.unix_micros()
    }

    /// One round: scan, claim, deliver, settle.
    ///
    /// # Errors
    /// The scan's or the claim's storage errors (a claim's own failure is counted in
    /// [`Round::errors`] and logged).
    pub async fn round(&self) -> Result<Round, OutboxError> {
        let now = self.now();
        let mut round = Round {
            scanned: self.store.scan(self.config.scan_batch, now).await?,
            ..Round::default()
        };
        let claims = self
            .store
            .claim(
                now,
                now + micros(self.config.lease),
                self.config.claim_batch,
            )
            .await?;
        round.claimed = claims.len();
        if claims.is_empty() {
            return Ok(round);
        }
        let sinks: HashMap<SinkId, Sink> = self
            .store
            .sinks()
            .await?
            .into_iter()
            .map(|s| (s.id, s))
            .collect();
        let mut done = futures_util::stream::iter(claims)
            .map(|claim| {
                let sink = sinks.get(&claim.sink).cloned();
                async move { (claim.sink, self.deliver(claim, sink).await) }
            })
            .buffer_unordered(self.config.concurrency.max(1));
        let mut failures: HashMap<SinkId, u32> = HashMap::new();
        while let Some((sink, result)) = done.next().await {
            match result {
                Ok((attempts, settled)) => {
                    if !settled.ours {
                        round.lost_leases += 1;
                    } else if !attempts.is_empty() {
                        failures.insert(sink, settled.sink_failures);
                    }
                    round.attempts.extend(attempts);
                }
                Err(e) => {
                    round.errors += 1;
                    tracing::warn!(sink = %sink, error = %e, "an outbox delivery failed");
                }
            }
        }
        drop(done);
        for (id, count) in failures {
            let enabled = sinks.get(&id).is_some_and(|s| s.enabled);
            if enabled && count >= self.config.disable_after && self.disable(id, count).await? {
                round.disabled.push(id);
            }
        }
        Ok(round)
    }

    async fn disable(&self, id: SinkId, failures: u32) -> Result<bool, OutboxError> {
        if !self.store.disable_sink(id, self.now()).await? {
            return Ok(false);
        }
        tracing::warn!(sink = %id, failures, "a webhook endpoint failed too often and was disabled");
        let mut event = AuditEvent::new(
            Actor::Service(self.worker.clone()),
            Action::WebhookDisabled,
            Subject::System,
            coffer_audit::Outcome::Success,
        );
        if let Ok(code) = Code::parse(&id.to_string()) {
            let _ = event.details.insert("endpoint", DetailValue::Code(code));
        }
        let _ = event
            .details
            .insert("failures", DetailValue::Int(i64::from(failures)));
        if let Err(e) = self.audit.append(&event).await {
            tracing::warn!(error = %e, "the audit record of a disabled endpoint was not written");
        }
        Ok(true)
    }

    /// Delivers one claim's events and settles it.
    async fn deliver(
        &self,
        claim: Claim,
        sink: Option<Sink>,
    ) -> Result<(Vec<Attempt>, crate::port::Settled), OutboxError> {
        let mut to = Settlement {
            next_seq: claim.next_seq,
            failures: claim.failures,
            first_failed_at: claim.first_failed_at,
            retry_at: None,
        };
        let mut attempts = Vec::new();
        let events = self
            .store
            .events_from(claim.wallet, claim.next_seq, self.config.events_per_claim)
            .await?;
        if events.is_empty() {
            // Pruned past the retention before they were delivered: nothing left to wait for.
            to.next_seq = to.next_seq.max(claim.last_seen + 1);
        }
        // A sink disabled since the claim keeps its cursor where it is, for when it is back.
        if let Some(sink) = sink.filter(|s| s.enabled) {
            // Sends start only in the lease's first half: a slow receiver cannot keep a worker
            // past its lease, so two never send one wallet's events at once.
            let deadline = self.now() + micros(self.config.lease) / 2;
            self.send_in_order(&sink, &events, deadline, &mut to, &mut attempts)
                .await;
        }
        let settled = self
            .store
            .settle(&claim, &to, &attempts, self.now())
            .await?;
        Ok((attempts, settled))
    }

    async fn send_in_order(
        &self,
        sink: &Sink,
        events: &[EventRecord],
        deadline: i64,
        to: &mut Settlement,
        attempts: &mut Vec<Attempt>,
    ) {
        let Some(first) = events.first() else {
            return;
        };
        // Events below the first one left were pruned: nothing to wait for.
        to.next_seq = to.next_seq.max(first.seq);
        let wanted: Vec<EventRecord> = events
            .iter()
            .filter(|e| sink.wants(e.kind))
            .cloned()
            .collect();
        let payloads = match self.payloads.open(first.wallet, &wanted).await {
            Ok(p) => Some(p),
            Err(Opened::Erased) => None,
            Err(Opened::Failed(e)) => {
                tracing::warn!(error = %e, "outbox events did not open; tried again later");
                to.retry_at = Some(self.now() + micros(self.config.schedule.first));
                return;
            }
        };
        let mut payloads = payloads.map(Vec::into_iter);
        for e in events {
            if !sink.wants(e.kind) {
                to.next_seq = e.seq + 1;
                continue;
            }
            let Some(data) = payloads.as_mut().and_then(Iterator::next) else {
                attempts.push(self.attempt(sink, e, Outcome::Erased, None, 0));
                to.next_seq = e.seq + 1;
                continue;
            };
            if self.now() >= deadline {
                return;
            }
            let message = Message::of_event(e.id, e.kind, e.at, &data);
            let sent = self.transport.send(sink, &message).await;
            match sent.result {
                Ok(status) => {
                    attempts.push(self.attempt(
                        sink,
                        e,
                        Outcome::Delivered,
                        Some(Ok(status)),
                        sent.latency_ms,
                    ));
                    *to = Settlement {
                        next_seq: e.seq + 1,
                        failures: 0,
                        first_failed_at: None,
                        retry_at: None,
                    };
                }
                Err(error) => {
                    let now = self.now();
                    let failures = to.failures.saturating_add(1);
                    let first = to.first_failed_at.unwrap_or(now);
                    let elapsed = Duration::from_micros(u64::try_from(now - first).unwrap_or(0));
                    let wait =
                        self.config
                            .schedule
                            .next_wait(failures, elapsed, rand::random::<f64>());
                    let outcome = if wait.is_some() {
                        Outcome::Failed
                    } else {
                        Outcome::GaveUp
                    };
                    attempts.push(self.attempt(
                        sink,
                        e,
                        outcome,
                        Some(Err(error)),
                        sent.latency_ms,
                    ));
                    if let Some(wait) = wait {
                        *to = Settlement {
                            next_seq: e.seq,
                            failures,
                            first_failed_at: Some(first),
                            retry_at: Some(now + micros(wait)),
                        };
                        return;
                    }
                    *to = Settlement {
                        next_seq: e.seq + 1,
                        failures: 0,
                        first_failed_at: None,
                        retry_at: None,
                    };
                }
            }
        }
    }

    fn attempt(
        &self,
        sink: &Sink,
        e: &EventRecord,
        outcome: Outcome,
        result: Option<Result<u16, SendError>>,
        latency_ms: u32,
    ) -> Attempt {
        let (status, error) = match result {
            Some(Ok(status)) => (Some(status), None),
            Some(Err(e)) => (e.status(), Some(e.code().to_owned())),
            None => (None, None),
        };
        Attempt {
            id: AttemptId::new(),
            sink: sink.id,
            event: e.id,
            wallet: e.wallet,
            seq: e.seq,
            kind: e.kind,
            at: self.now(),
            outcome,
            status,
            latency_ms,
            error,
        }
    }

    /// Sends one event to a sink again, now, outside its cursor (an operator's retry of a
    /// delivery that was given up on), and records the attempt.
    ///
    /// # Errors
    /// [`OutboxError::NotFound`] when the sink or the event is gone; storage.
    pub async fn resend(
        &self,
        sink: &Sink,
        wallet: WalletId,
        seq: i64,
    ) -> Result<Attempt, OutboxError> {
        let e = self
            .store
            .events_from(wallet, seq, 1)
            .await?
            .pop()
            .filter(|e| e.seq == seq)
            .ok_or(OutboxError::NotFound)?;
        let attempt = match self.payloads.open(wallet, std::slice::from_ref(&e)).await {
            Ok(mut data) => {
                let data = data.pop().ok_or(OutboxError::NotFound)?;
                let sent = self
                    .transport
                    .send(sink, &Message::of_event(e.id, e.kind, e.at, &data))
                    .await;
                let outcome = if sent.result.is_ok() {
                    Outcome::Delivered
                } else {
                    Outcome::Failed
                };
                self.attempt(sink, &e, outcome, Some(sent.result), sent.latency_ms)
            }
            Err(Opened::Erased) => self.attempt(sink, &e, Outcome::Erased, None, 0),
            Err(Opened::Failed(err)) => return Err(OutboxError::Storage(Box::new(err))),
        };
        self.store.record_attempt(&attempt).await?;
        Ok(attempt)
    }

    /// What waits to be delivered now.
    ///
    /// # Errors
    /// The store's.
    pub async fn backlog(&self) -> Result<crate::port::Backlog, OutboxError> {
        self.store.backlog(self.now()).await
    }

    /// Sends a test message (`webhook.test`) to a sink now. Not recorded as an attempt: it is
    /// about no event.
    pub async fn test(&self, sink: &Sink) -> crate::transport::Sent {
        self.transport
            .send(sink, &Message::test(sink, self.now()))
            .await
    }
}
