//! The outbox store port: sinks, the scan that finds new events, per-(sink, wallet) cursors
//! claimed under leases, delivery attempts, and pruning.

use async_trait::async_trait;
use coffer_ledger::WalletId;
use coffer_ledger::domain::{EventId, EventKind};
use coffer_ledger::port::EventRecord;

use crate::sink::{Sink, SinkId};

coffer_ids::id_type!(
    /// A delivery attempt's id (UUID v7: attempts list newest first by it).
    AttemptId
);

/// What became of one attempt to deliver an event to a sink.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Outcome {
    /// The receiver answered 2xx.
    Delivered,
    /// It failed; it will be tried again.
    Failed,
    /// It failed and the retry schedule is spent: the sink's cursor moved past it.
    GaveUp,
    /// Its wallet was erased, so it no longer opens: skipped, never sent.
    Erased,
}

impl Outcome {
    /// The stored and shown name.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Delivered => "delivered",
            Self::Failed => "failed",
            Self::GaveUp => "gave_up",
            Self::Erased => "erased",
        }
    }

    /// Parses [`Outcome::as_str`].
    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        [Self::Delivered, Self::Failed, Self::GaveUp, Self::Erased]
            .into_iter()
            .find(|o| o.as_str() == s)
    }
}

/// One attempt to deliver an event to a sink (or the record that it was skipped).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    /// Its id.
    pub id: AttemptId,
    /// The sink.
    pub sink: SinkId,
    /// The event (what the receiver deduplicates on: its `webhook-id`).
    pub event: EventId,
    /// The event's wallet and number.
    pub wallet: WalletId,
    /// The event's number in its wallet's sequence.
    pub seq: i64,
    /// The event's kind.
    pub kind: EventKind,
    /// When (µs).
    pub at: i64,
    /// What became of it.
    pub outcome: Outcome,
    /// The receiver's HTTP status, when it answered.
    pub status: Option<u16>,
    /// How long the request took (ms).
    pub latency_ms: u32,
    /// A stable code for a failure (`timeout`, `connect`, `status`, `address_refused`…).
    pub error: Option<String>,
}

/// A (sink, wallet) cursor a worker holds under a lease: the sink has received the wallet's
/// events below `next_seq` (or they were skipped), and `next_seq` is the one to send next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    /// The sink.
    pub sink: SinkId,
    /// The wallet.
    pub wallet: WalletId,
    /// The next event number to deliver.
    pub next_seq: i64,
    /// The wallet's highest event number the scan has seen.
    pub last_seen: i64,
    /// Failed attempts at `next_seq` so far.
    pub failures: u32,
    /// When the first of them was (µs).
    pub first_failed_at: Option<i64>,
    /// The lease's token: settling with a token that is no longer the cursor's changes nothing.
    pub lease: uuid::Uuid,
}

/// Where a claimed cursor is left.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settlement {
    /// The next event number to deliver.
    pub next_seq: i64,
    /// Failed attempts at it so far.
    pub failures: u32,
    /// When the first of them was (µs).
    pub first_failed_at: Option<i64>,
    /// When to try again after a failure (µs); `None`: due again at once if the wallet has
    /// events from `next_seq` on, otherwise idle until the scan finds one.
    pub retry_at: Option<i64>,
}

/// What settling did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settled {
    /// The lease was still this claim's, and the cursor moved. `false`: it had expired and
    /// another worker took the cursor; nothing was written.
    pub ours: bool,
    /// The sink's failed attempts since its last delivered one, after this settlement.
    pub sink_failures: u32,
}

/// The outbox store's errors.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OutboxError {
    /// No such sink.
    #[error("no such sink")]
    NotFound,
    /// A stored value does not decode.
    #[error("corrupt outbox data: {0}")]
    Corrupt(String),
    /// The database failed (the driver's error kept as the source).
    #[error("outbox storage failed")]
    Storage(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// The outbox store.
///
/// The scan reads events in an order that is final (an event it has passed can no longer
/// appear behind it: on Postgres, in transaction-id order below every running transaction) and
/// marks each (sink, wallet) with new events due. Delivery never follows the scan's order: it
/// follows each wallet's own sequence from the cursor, so the scan only has to be complete.
#[async_trait]
pub trait OutboxStore: Send + Sync + std::fmt::Debug {
    /// Adds a sink, or replaces the one with its id.
    async fn put_sink(&self, sink: &Sink) -> Result<(), OutboxError>;

    /// A sink.
    async fn sink(&self, id: SinkId) -> Result<Option<Sink>, OutboxError>;

    /// Every sink, oldest first.
    async fn sinks(&self) -> Result<Vec<Sink>, OutboxError>;

    /// Removes a sink with its cursors (its attempts stay, for the record). `false`: none.
    async fn delete_sink(&self, id: SinkId) -> Result<bool, OutboxError>;

    /// Disables an enabled sink for failing, at `now`. `false`: it was not enabled.
    async fn disable_sink(&self, id: SinkId, now: i64) -> Result<bool, OutboxError>;

    /// Makes every cursor of a sink that waits for a retry due at `now`, with a fresh retry
    /// schedule (an operator enabled it again: its receiver is back).
    async fn wake_sink(&self, id: SinkId, now: i64) -> Result<(), OutboxError>;

    /// Reads up to `limit` events past the scan's position, marks every sink's cursor on their
    /// wallets due (creating it at the wallet's first event since the sink was registered),
    /// and moves the position past them, in one short transaction. Returns how many events it
    /// read; 0 as well when another worker is scanning.
    async fn scan(&self, limit: u32, now: i64) -> Result<usize, OutboxError>;

    /// Takes a lease until `until` on up to `limit` due cursors of enabled sinks whose lease
    /// is free or lapsed, most overdue first. Two workers never hold one cursor at once.
    async fn claim(&self, now: i64, until: i64, limit: u32) -> Result<Vec<Claim>, OutboxError>;

    /// A wallet's events from number `from` on, in order, at most `limit`.
    async fn events_from(
        &self,
        wallet: WalletId,
        from: i64,
        limit: u32,
    ) -> Result<Vec<EventRecord>, OutboxError>;

    /// Records `attempts` and moves the claimed cursor to `to`, releasing its lease, in one
    /// transaction, if the lease is still the claim's. A delivered attempt resets the sink's
    /// failure count, a failed or spent one adds to it.
    async fn settle(
        &self,
        claim: &Claim,
        to: &Settlement,
        attempts: &[Attempt],
        now: i64,
    ) -> Result<Settled, OutboxError>;

    /// Records an attempt made outside any cursor (a test message, an operator's retry).
    async fn record_attempt(&self, attempt: &Attempt) -> Result<(), OutboxError>;

    /// A sink's attempts, newest first, older than `before` when given, at most `limit`.
    async fn attempts(
        &self,
        sink: SinkId,
        before: Option<AttemptId>,
        limit: u32,
    ) -> Result<Vec<Attempt>, OutboxError>;

    /// One attempt of a sink.
    async fn attempt(&self, sink: SinkId, id: AttemptId) -> Result<Option<Attempt>, OutboxError>;

    /// How long (µs) the longest-waiting cursor of an enabled sink has had events to deliver,
    /// and how many events wait for the scan; 0 and 0 when nothing waits.
    async fn backlog(&self, now: i64) -> Result<Backlog, OutboxError>;

    /// Deletes up to `limit` events created before `before` (µs) that the scan has passed and
    /// that no cursor still needs, and every event created before `expired` (µs) whatever
    /// waits for it, with attempts older than `expired`. Returns how many events it deleted.
    async fn prune(&self, before: i64, expired: i64, limit: u32) -> Result<u64, OutboxError>;
}

/// What waits to be delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Backlog {
    /// The longest time (µs) a cursor of an enabled sink has had events waiting.
    pub oldest_wait: i64,
    /// Cursors of enabled sinks with events waiting.
    pub pending: u64,
    /// Events the scan has not read yet.
    pub unscanned: u64,
}

/// How settling `attempts` changes their sink's count of failed attempts in a row: whether to
/// reset it first (one was delivered), then how many to add (the failed or given-up ones after
/// the last delivered). Skipped (erased) events count neither way.
#[must_use]
pub fn failure_run(attempts: &[Attempt]) -> (bool, u32) {
    let last_ok = attempts
        .iter()
        .rposition(|a| a.outcome == Outcome::Delivered);
    let after = &attempts[last_ok.map_or(0, |i| i + 1)..];
    let failed = after
        .iter()
        .filter(|a| matches!(a.outcome, Outcome::Failed | Outcome::GaveUp))
        .count();
    (last_ok.is_some(), u32::try_from(failed).unwrap_or(u32::MAX))
}
