//! Delivery of the outbox's events: every event the ledger writes with a change reaches every
//! sink (a webhook endpoint) that wants its kind, at least once, each wallet's events in their
//! order.
//!
//! - [`sink`]: [`Sink`] (a webhook endpoint, or a NATS JetStream stream), [`WebhookUrl`]
//!   (parsed at the edge).
//! - [`port`]: the [`OutboxStore`] port. Per (sink, wallet), a cursor: the next event number to
//!   deliver, due or idle, leased to one worker at a time. A scan finds the wallets with new
//!   events and marks their cursors due; it only has to be complete, because delivery follows
//!   each wallet's gap-free numbers from its cursor, not the order the scan saw events in.
//! - [`transport`]: the [`Transport`] port (one message to one sink) and [`Message`].
//! - [`dispatch`]: the [`Dispatcher`], a round of delivery.
//!
//! No I/O here: `coffer-store` implements the store on Postgres and SQLite,
//! `coffer-outbox-http` and `coffer-outbox-nats` the transports.

pub mod dispatch;
pub mod port;
pub mod secrets;
pub mod sink;
#[cfg(feature = "testkit")]
pub mod testkit;
pub mod transport;

pub use dispatch::{DispatchConfig, Dispatcher, Opened, Payloads, Round};
pub use port::{
    Attempt, AttemptId, Backlog, Claim, OutboxError, OutboxStore, Outcome, Settled, Settlement,
    failure_run,
};
pub use secrets::{SecretUnavailable, SigningSecrets, SigningSource};
pub use sink::{Sink, SinkId, SubjectPrefix, Target, UrlError, WebhookUrl};
pub use transport::{Message, SendError, Sent, TEST_TYPE, Transport};

#[cfg(test)]
mod tests;
