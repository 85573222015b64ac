//! The outbox's delivery (`[events]`): how the worker delivers events to webhook endpoints
//! (how often, how much at once, leases), the retry schedule, when an endpoint is disabled,
//! where deliveries may go (private addresses, plain http), how long a rotated signing secret
//! keeps signing, and how long delivered events are kept.

use std::time::Duration;

use coffer_outbox::DispatchConfig;
use coffer_webhooks::{AddressPolicy, RetrySchedule};
use serde::{Deserialize, Serialize};

use super::{ConfigError, error};

/// The outbox's delivery.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct EventsConfig {
    /// Whether this worker delivers events (several may; each event goes out once per
    /// endpoint at a time, under leases).
    pub deliver: bool,
    /// How long the worker waits after a round that found little to do.
    pub poll_millis: u64,
    /// Events the scan reads per round.
    pub scan_batch: u32,
    /// (endpoint, wallet) pairs claimed per round.
    pub claim_batch: u32,
    /// A claimed wallet's events sent per round at most.
    pub events_per_claim: u32,
    /// Requests in flight at once.
    pub concurrency: u32,
    /// How long a claim is one worker's; no send starts after its first half (over twice
    /// `timeout_secs`).
    pub lease_secs: u64,
    /// A request's timeout, connection included.
    pub timeout_secs: u64,
    /// Connecting's timeout (DNS, TCP, TLS).
    pub connect_timeout_secs: u64,
    /// Deliver to loopback, private, shared and link-local addresses too (tests, on-premises
    /// receivers). Special ranges (0.0.0.0/8, multicast, documentation…) stay refused.
    pub allow_private_addresses: bool,
    /// Deliver to plain `http` endpoints too.
    pub allow_http: bool,
    /// The first retry's wait after a failed delivery.
    pub retry_first_secs: u64,
    /// Each further wait is this many times the one before.
    pub retry_factor: u32,
    /// The longest wait between attempts.
    pub retry_max_interval_secs: u64,
    /// A delivery failing this long after its first attempt is given up on.
    pub retry_give_up_hours: u64,
    /// An endpoint is disabled after this many failed attempts in a row.
    pub disable_after_failures: u32,
    /// How long a rotated signing secret keeps signing beside the new one.
    pub secret_overlap_hours: u64,
    /// Events every endpoint has had are deleted after this long.
    pub retention_hours: u64,
    /// Events are deleted after this long whatever waits for them.
    pub max_retention_hours: u64,
}

impl Default for EventsConfig {
    fn default() -> Self {
        let d = DispatchConfig::default();
        let r = RetrySchedule::default();
        Self {
            deliver: true,
            poll_millis: 1000,
            scan_batch: d.scan_batch,
            claim_batch: d.claim_batch,
            events_per_claim: d.events_per_claim,
            concurrency: u32::try_from(d.concurrency).unwrap_or(16),
            lease_secs: d.lease.as_secs(),
            timeout_secs: 10,
            connect_timeout_secs: 5,
            allow_private_addresses: false,
            allow_http: false,
            retry_first_secs: r.first.as_secs(),
            retry_factor: r.factor,
            retry_max_interval_secs: r.max_interval.as_secs(),
            retry_give_up_hours: r.give_up_after.as_secs() / 3600,
            disable_after_failures: d.disable_after,
            secret_overlap_hours: 24,
            retention_hours: 24 * 7,
            max_retention_hours: 24 * 30,
        }
    }
}

fn hours(h: u64) -> Duration {
    Duration::from_secs(h.saturating_mul(3600))
}

impl EventsConfig {
    /// The dispatcher's settings.
    #[must_use]
    pub fn dispatch(&self) -> DispatchConfig {
        DispatchConfig {
            scan_batch: self.scan_batch,
            claim_batch: self.claim_batch,
            events_per_claim: self.events_per_claim,
            lease: Duration::from_secs(self.lease_secs),
            concurrency: usize::try_from(self.concurrency).unwrap_or(16),
            disable_after: self.disable_after_failures,
            schedule: RetrySchedule {
                first: Duration::from_secs(self.retry_first_secs),
                factor: self.retry_factor,
                max_interval: Duration::from_secs(self.retry_max_interval_secs),
                give_up_after: hours(self.retry_give_up_hours),
            },
        }
    }

    /// The transport's settings.
    #[must_use]
    pub fn http(&self) -> coffer_outbox_http::HttpConfig {
        coffer_outbox_http::HttpConfig {
            timeout: Duration::from_secs(self.timeout_secs),
            connect_timeout: Duration::from_secs(self.connect_timeout_secs),
            policy: AddressPolicy {
                allow_private: self.allow_private_addresses,
            },
            allow_http: self.allow_http,
        }
    }

    /// How long a rotated secret keeps signing.
    #[must_use]
    pub fn secret_overlap(&self) -> Duration {
        hours(self.secret_overlap_hours)
    }

    /// How long delivered events are kept, and any event at most.
    #[must_use]
    pub fn retention(&self) -> (Duration, Duration) {
        (hours(self.retention_hours), hours(self.max_retention_hours))
    }

    /// Batches and concurrency of at least 1, timeouts under the lease, retention in order.
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        for (name, v) in [
            ("events.poll_millis", self.poll_millis),
            ("events.scan_batch", u64::from(self.scan_batch)),
            ("events.claim_batch", u64::from(self.claim_batch)),
            ("events.events_per_claim", u64::from(self.events_per_claim)),
            ("events.concurrency", u64::from(self.concurrency)),
            ("events.timeout_secs", self.timeout_secs),
            ("events.retry_first_secs", self.retry_first_secs),
            ("events.retry_factor", u64::from(self.retry_factor)),
            (
                "events.disable_after_failures",
                u64::from(self.disable_after_failures),
            ),
        ] {
            if v == 0 {
                return Err(error(name, "0", "use 1 or more"));
            }
        }
        if self.lease_secs <= self.timeout_secs.saturating_mul(2) {
            return Err(error(
                "events.lease_secs",
                self.lease_secs.to_string(),
                "use more than twice events.timeout_secs (no send starts after a lease's first half)",
            ));
        }
        if self.max_retention_hours < self.retention_hours
            || self.max_retention_hours < self.retry_give_up_hours
        {
            return Err(error(
                "events.max_retention_hours",
                self.max_retention_hours.to_string(),
                "use at least events.retention_hours and events.retry_give_up_hours",
            ));
        }
        Ok(())
    }
}
