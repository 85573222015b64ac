//! The transport port: how one message reaches one sink (the HTTP adapter signs it with
//! Standard Webhooks), and the message itself.

use async_trait::async_trait;
use coffer_ledger::WalletId;
use coffer_ledger::domain::{EventData, EventId, EventKind};
use serde::Serialize;

use crate::sink::Sink;

/// The `type` of the message `POST …/test` sends.
pub const TEST_TYPE: &str = "webhook.test";

/// One message: what a sink receives for an event.
#[derive(Clone, PartialEq, Eq)]
pub struct Message {
    /// Its id: the event's, the same on every attempt (`webhook-id`, `Nats-Msg-Id`).
    pub id: EventId,
    /// The event's wallet (`None` for a test message).
    pub wallet: Option<WalletId>,
    /// The body: `{"type", "timestamp", "data"}` as JSON.
    pub body: Vec<u8>,
}

coffer_macros::debug_non_exhaustive!(self => Message { id, wallet, body_len: self.body.len() });

#[derive(Serialize)]
struct Body<'a, T: Serialize> {
    r#type: &'a str,
    timestamp: String,
    data: &'a T,
}

impl Message {
    /// The message of an event: its kind as `type`, when it happened, its payload as `data`.
    #[must_use]
    pub fn of_event(id: EventId, kind: EventKind, at: i64, data: &EventData) -> Self {
        let mut m = Self::new(id, kind.as_str(), at, data);
        m.wallet = Some(WalletId::from_uuid(data.wallet_id));
        m
    }

    /// A test message (`webhook.test`) at `now` (µs), whose data names the sink.
    #[must_use]
    pub fn test(sink: &Sink, now: i64) -> Self {
        #[derive(Serialize)]
        struct Test {
            endpoint_id: String,
        }
        let data = Test {
            endpoint_id: sink.id.to_string(),
        };
        Self::new(EventId::new(), TEST_TYPE, now, &data)
    }

    fn new<T: Serialize>(id: EventId, kind: &str, at: i64, data: &T) -> Self {
        let micros = u64::try_from(at).unwrap_or(0);
        let time = std::time::UNIX_EPOCH + std::time::Duration::from_micros(micros);
        let body = Body {
            r#type: kind,
            timestamp: humantime::format_rfc3339_micros(time).to_string(),
            data,
        };
        // A struct of strings and numbers always serialises.
        let body = serde_json::to_vec(&body).unwrap_or_default();
        Self {
            id,
            wallet: None,
            body,
        }
    }
}

/// Why a message was not delivered (each a stable code, stored with the attempt).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    /// The receiver answered, but not 2xx (a redirect included: none is followed).
    #[error("the receiver answered {0}")]
    Status(u16),
    /// No answer in time.
    #[error("the receiver did not answer in time")]
    Timeout,
    /// No connection (DNS, refused, TLS).
    #[error("could not connect to the receiver")]
    Connect,
    /// Every address the host resolved to is one deliveries may not reach.
    #[error("the receiver's address is not allowed")]
    AddressRefused,
    /// The sink's signing secret could not be read.
    #[error("the signing secret is unavailable")]
    Secret,
    /// This deployment has no transport for the sink's kind (a stream sink without
    /// `[events.nats]`).
    #[error("no transport for this sink")]
    NoTransport,
}

impl SendError {
    /// The stable code.
    #[must_use]
    pub fn code(&self) -> &'static str {
        match self {
            Self::Status(_) => "status",
            Self::Timeout => "timeout",
            Self::Connect => "connect",
            Self::AddressRefused => "address_refused",
            Self::Secret => "secret_unavailable",
            Self::NoTransport => "no_transport",
        }
    }

    /// The receiver's status, when it answered.
    #[must_use]
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Status(s) => Some(*s),
            _ => None,
        }
    }
}

/// What sending one message came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    /// The receiver's 2xx status, or why not.
    pub result: Result<u16, SendError>,
    /// How long it took (ms).
    pub latency_ms: u32,
}

/// Sends one message to one sink. Implementations time out, never follow a redirect and never
/// log the secret; the attempt's time is theirs to put in the message's headers.
#[cfg_attr(test, mockall::automock)]
#[async_trait]
pub trait Transport: Send + Sync {
    /// Sends `message` to `sink`.
    async fn send(&self, sink: &Sink, message: &Message) -> Sent;
}
