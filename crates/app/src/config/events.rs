//! The outbox's delivery (`[events]`): how the worker delivers events to webhook endpoints
//! (how often, how much at once, leases), the retry schedule, when an endpoint is disabled,
//! where deliveries may go (private addresses, plain http), how long a rotated signing secret
//! keeps signing, and how long delivered events are kept.

use std::time::Duration;

use coffer_outbox::DispatchConfig;
use coffer_webhooks::{AddressPolicy, RetrySchedule};
use std::path::PathBuf;

use coffer_outbox::SubjectPrefix;
use serde::{Deserialize, Serialize};

use super::{ConfigError, SecretSetting, error};

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
    /// Also publish every event to a NATS JetStream stream (`[events.nats]`); unset: no stream.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nats: Option<NatsSettings>,
}

/// `[events.nats]`: the JetStream stream every event is also published to.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct NatsSettings {
    /// `nats://host:4222` (or `tls://…`).
    pub url: String,
    /// The stream's name (created when missing).
    pub stream: String,
    /// Events are published on `<subject_prefix>.<wallet id>`.
    pub subject_prefix: String,
    /// JetStream drops a repeat of a message it stored this recently: above a worker's restart
    /// time (`events.lease_secs`).
    pub duplicate_window_secs: u64,
    /// Connecting and each publish's acknowledgement.
    pub timeout_secs: u64,
    /// A user, with `password`.
    pub user: Option<String>,
    /// The user's password.
    pub password: Option<SecretSetting>,
    /// A token instead.
    pub token: Option<SecretSetting>,
    /// A `.creds` file instead.
    pub credentials_file: Option<PathBuf>,
}

impl Default for NatsSettings {
    fn default() -> Self {
        Self {
            url: "nats://127.0.0.1:4222".to_owned(),
            stream: "COFFER_EVENTS".to_owned(),
            subject_prefix: "coffer.events".to_owned(),
            duplicate_window_secs: 600,
            timeout_secs: 5,
            user: None,
            password: None,
            token: None,
            credentials_file: None,
        }
    }
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
            nats: None,
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

    /// The stream transport's settings, when `[events.nats]` is set.
    #[must_use]
    pub fn nats(&self) -> Option<coffer_outbox_nats::NatsConfig> {
        let n = self.nats.as_ref()?;
        Some(coffer_outbox_nats::NatsConfig {
            url: n.url.clone(),
            stream: n.stream.clone(),
            // Checked by `validate`.
            subject_prefix: SubjectPrefix::parse(&n.subject_prefix).ok()?,
            duplicate_window: Duration::from_secs(n.duplicate_window_secs),
            timeout: Duration::from_secs(n.timeout_secs),
            user: n
                .user
                .clone()
                .zip(n.password.as_ref().map(SecretSetting::secret)),
            token: n.token.as_ref().map(SecretSetting::secret),
            credentials_file: n.credentials_file.clone(),
        })
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
        if let Some(n) = &self.nats {
            n.validate(self.lease_secs)?;
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

impl NatsSettings {
    /// A stream name and subject prefix NATS takes, a window over the lease, one way to log in.
    fn validate(&self, lease_secs: u64) -> Result<(), ConfigError> {
        let name_ok = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_');
        if self.stream.is_empty() || self.stream.len() > 64 || !self.stream.bytes().all(name_ok) {
            return Err(error(
                "events.nats.stream",
                format!("{:?}", self.stream),
                "use 1 to 64 letters, digits, '-' or '_'",
            ));
        }
        if SubjectPrefix::parse(&self.subject_prefix).is_err() {
            return Err(error(
                "events.nats.subject_prefix",
                format!("{:?}", self.subject_prefix),
                "use dot-separated tokens of letters, digits, '-' and '_' (no wildcards)",
            ));
        }
        if self.duplicate_window_secs <= lease_secs {
            return Err(error(
                "events.nats.duplicate_window_secs",
                self.duplicate_window_secs.to_string(),
                "use more than events.lease_secs: a repeat after a worker's restart must fall within it",
            ));
        }
        if self.timeout_secs == 0 {
            return Err(error("events.nats.timeout_secs", "0", "use 1 or more"));
        }
        if self.user.is_some() != self.password.is_some() {
            return Err(error(
                "events.nats.user",
                "a user without a password, or a password without a user",
                "set both, or neither",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::collections::BTreeMap;

    use crate::Config;

    fn with_nats(table: &str) -> Result<Config, crate::ConfigError> {
        let vars = BTreeMap::from([("COFFER_EVENTS__NATS".to_owned(), table.to_owned())]);
        let c = Config::from_sources(None, &vars)?;
        c.validate()?;
        Ok(c)
    }

    #[test]
    fn the_stream_is_one_variable_and_its_settings_are_checked() {
        let c = with_nats(r#"{ url = "nats://n:4222", user = "u", password = "p1" }"#).unwrap();
        let n = c.events.nats().unwrap();
        assert_eq!(
            (n.url.as_str(), n.stream.as_str()),
            ("nats://n:4222", "COFFER_EVENTS")
        );
        assert_eq!(n.subject_prefix.as_str(), "coffer.events");
        assert!(n.user.is_some());
        assert!(!format!("{c:?}").contains("p1"), "the password is masked");
        assert!(
            Config::default().events.nats().is_none(),
            "no stream unless set"
        );
        for (table, setting) in [
            (r#"{ stream = "a.b" }"#, "events.nats.stream"),
            (
                r#"{ subject_prefix = "a.>" }"#,
                "events.nats.subject_prefix",
            ),
            (
                "{ duplicate_window_secs = 60 }",
                "events.nats.duplicate_window_secs",
            ),
            (r#"{ user = "u" }"#, "events.nats.user"),
        ] {
            assert_eq!(with_nats(table).unwrap_err().setting, setting, "{table}");
        }
    }
}
