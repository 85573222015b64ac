//! The `admin` tag's webhook bodies: an endpoint (never its secret), a created endpoint or a
//! rotated secret with the secret shown that once, a page of deliveries, a test's result.

use coffer_outbox::{Attempt, Sent, Sink};
use coffer_webhooks::SigningSecret;
use serde::Serialize;

use super::rfc3339;

/// A webhook endpoint; never its signing secret.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Webhook {
    id: String,
    /// Where events are delivered.
    url: String,
    /// The event types delivered; empty: every type.
    event_types: Vec<String>,
    /// Whether events are delivered to it now.
    enabled: bool,
    /// RFC 3339; it receives events from then on.
    created_at: String,
    /// Failed attempts since its last delivered one.
    consecutive_failures: u32,
    /// RFC 3339; set when it was disabled for failing too often.
    disabled_at: Option<String>,
    /// Its signing secret's version (1, then one more per rotation).
    secret_version: u32,
    /// RFC 3339; until then the previous secret signs too (both signatures are sent).
    previous_secret_until: Option<String>,
}

impl From<&Sink> for Webhook {
    fn from(s: &Sink) -> Self {
        Self {
            id: s.id.to_string(),
            url: s
                .webhook_url()
                .map(|u| u.as_str().to_owned())
                .unwrap_or_default(),
            event_types: s.kinds.iter().map(|k| k.as_str().to_owned()).collect(),
            enabled: s.enabled,
            created_at: rfc3339(s.created_at),
            consecutive_failures: s.failures,
            disabled_at: s.disabled_at.map(rfc3339),
            secret_version: s.secret_version,
            previous_secret_until: s.previous_secret_until.map(rfc3339),
        }
    }
}

/// An endpoint with its signing secret, shown this once (at registration and rotation).
#[derive(Serialize, utoipa::ToSchema)]
pub struct WebhookCreated {
    /// `whsec_…`: the receiver verifies `webhook-signature` with it (Standard Webhooks).
    secret: String,
    webhook: Webhook,
}

impl std::fmt::Debug for WebhookCreated {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookCreated")
            .field("webhook", &self.webhook)
            .finish_non_exhaustive()
    }
}

impl WebhookCreated {
    /// The endpoint and its new secret.
    #[must_use]
    pub fn new(sink: &Sink, secret: &SigningSecret) -> Self {
        Self {
            secret: secret.expose_text().to_string(),
            webhook: Webhook::from(sink),
        }
    }
}

/// Every endpoint, oldest first.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Webhooks {
    items: Vec<Webhook>,
}

impl Webhooks {
    /// The listing.
    #[must_use]
    pub fn new(sinks: &[Sink]) -> Self {
        Self {
            items: sinks.iter().map(Webhook::from).collect(),
        }
    }
}

/// One delivery attempt (or an event skipped because its wallet was erased).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Delivery {
    id: String,
    /// The event (the `webhook-id` the receiver got).
    event_id: String,
    event_type: String,
    wallet_id: String,
    /// The event's number in its wallet's sequence.
    sequence: i64,
    /// RFC 3339.
    attempted_at: String,
    /// `delivered`, `failed` (tried again later), `gave_up` (the retries are spent) or
    /// `erased` (its wallet was erased: skipped, never sent).
    outcome: String,
    /// The receiver's HTTP status, when it answered.
    status_code: Option<u16>,
    latency_ms: u32,
    /// Why it failed: `status`, `timeout`, `connect`, `address_refused`, `secret_unavailable`.
    error: Option<String>,
}

impl From<&Attempt> for Delivery {
    fn from(a: &Attempt) -> Self {
        Self {
            id: a.id.to_string(),
            event_id: a.event.to_string(),
            event_type: a.kind.as_str().to_owned(),
            wallet_id: a.wallet.to_string(),
            sequence: a.seq,
            attempted_at: rfc3339(a.at),
            outcome: a.outcome.as_str().to_owned(),
            status_code: a.status,
            latency_ms: a.latency_ms,
            error: a.error.clone(),
        }
    }
}

/// A page of deliveries, newest first.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Deliveries {
    items: Vec<Delivery>,
    /// Pass as `cursor` for the next page; absent on the last.
    next_cursor: Option<String>,
}

impl Deliveries {
    /// A page of at most `limit`.
    #[must_use]
    pub fn new(attempts: &[Attempt], limit: u32) -> Self {
        let full = u32::try_from(attempts.len()).is_ok_and(|n| n == limit);
        Self {
            items: attempts.iter().map(Delivery::from).collect(),
            next_cursor: full
                .then(|| attempts.last().map(|a| a.id.to_string()))
                .flatten(),
        }
    }
}

/// What a test message came to.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct WebhookTest {
    /// The receiver answered 2xx.
    delivered: bool,
    /// The receiver's HTTP status, when it answered.
    status_code: Option<u16>,
    latency_ms: u32,
    /// Why it failed (as a delivery's `error`).
    error: Option<String>,
}

impl From<&Sent> for WebhookTest {
    fn from(s: &Sent) -> Self {
        let (status_code, error) = match &s.result {
            Ok(status) => (Some(*status), None),
            Err(e) => (e.status(), Some(e.code().to_owned())),
        };
        Self {
            delivered: s.result.is_ok(),
            status_code,
            latency_ms: s.latency_ms,
            error,
        }
    }
}
