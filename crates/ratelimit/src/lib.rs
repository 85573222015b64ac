//! Rate limiting: the limiter port, policies, and the adapters that need no network.
//!
//! - [`RateLimiter`]: `check(key, policy, cost)` and a read-only `peek`, GCRA semantics: a
//!   policy of `limit` per `period` allows a burst of `limit` and refills one unit every
//!   `period / limit`.
//! - [`InProcessLimiter`]: the embedded default, on governor's keyed GCRA; stale keys are evicted
//!   on a schedule so memory stays bounded.
//! - [`Failover`]: a shared limiter (Redis) with a configured behaviour when it is down: fail
//!   open to the in-process limiter, or fail closed (the HTTP layer answers 503).
//! - [`policy`]: the policies Coffer applies, configurable, with defaults for a public API.
//! - [`audit`]: aggregates limited requests per key and minute into `security.rate_limited`
//!   audit events (which feed the rate-limit alert rule).
//!
//! [`gcra`] is the arithmetic as one pure function, for the adapters that compute it themselves;
//! the Redis adapter's script computes the same.

use std::fmt;
use std::num::NonZeroU32;
use std::time::Duration;

use async_trait::async_trait;

pub mod audit;
mod failover;
mod in_process;
pub mod policy;
#[cfg(feature = "testkit")]
pub mod testkit;

pub use failover::{Failover, RedisDownMode};
pub use in_process::InProcessLimiter;

/// A named rate: `limit` units per `period`, bursting up to `limit`.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Policy {
    name: String,
    limit: NonZeroU32,
    period: Duration,
}

/// Why a policy is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// The name is not `[a-z0-9_-]{1,32}` (it appears in response headers).
    #[error("policy names are 1-32 characters of [a-z0-9_-]")]
    BadName,
    /// Zero limit, or a period under 1 ms or over a day.
    #[error("a policy needs a limit of at least 1 and a period between 1 ms and 24 h")]
    BadRate,
}

impl Policy {
    /// A policy of `limit` per `period`.
    ///
    /// # Errors
    /// [`PolicyError`].
    pub fn new(name: &str, limit: u32, period: Duration) -> Result<Self, PolicyError> {
        let name_ok = !name.is_empty()
            && name.len() <= 32
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
        if !name_ok {
            return Err(PolicyError::BadName);
        }
        let limit = NonZeroU32::new(limit).ok_or(PolicyError::BadRate)?;
        if period < Duration::from_millis(1) || period > Duration::from_secs(86_400) {
            return Err(PolicyError::BadRate);
        }
        Ok(Self {
            name: name.to_owned(),
            limit,
            period,
        })
    }

    /// The name (for headers and logs).
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Units per period (and the burst).
    #[must_use]
    pub fn limit(&self) -> u32 {
        self.limit.get()
    }

    /// The period.
    #[must_use]
    pub fn period(&self) -> Duration {
        self.period
    }

    /// Time to refill one unit: `period / limit`.
    #[must_use]
    pub fn emission_interval(&self) -> Duration {
        self.period / self.limit.get()
    }
}

impl fmt::Debug for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Policy({}: {}/{:?})", self.name, self.limit, self.period)
    }
}

/// The outcome of a check or peek.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Whether the request may proceed (for a peek: whether one unit would be allowed now).
    pub allowed: bool,
    /// The policy's limit.
    pub limit: u32,
    /// Units left right now (after this request, for an allowed check).
    pub remaining: u32,
    /// When limited: how long until the same request would be allowed. Zero when allowed.
    pub retry_after: Duration,
    /// How long until the key is back to its full burst.
    pub reset_after: Duration,
}

/// Errors of the limiter port.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LimitError {
    /// The shared store (Redis) cannot be reached or timed out.
    #[error("rate limiter store unavailable: {0}")]
    Unavailable(String),
    /// A cost larger than the policy's burst can never be allowed.
    #[error("cost {cost} exceeds the burst {limit} of policy {policy}")]
    CostExceedsLimit {
        /// The policy.
        policy: String,
        /// The cost asked for.
        cost: u32,
        /// Its limit.
        limit: u32,
    },
    /// Anything else.
    #[error("rate limiter error: {0}")]
    Other(String),
}

/// The limiter port. Used as `Arc<dyn RateLimiter>`.
#[async_trait]
pub trait RateLimiter: Send + Sync + fmt::Debug {
    /// Takes `cost` units from `key`'s budget under `policy`, if it has them (a cost of 0 counts
    /// as 1).
    async fn check(&self, key: &str, policy: &Policy, cost: u32) -> Result<Decision, LimitError>;

    /// The state of `key` under `policy` without taking anything.
    async fn peek(&self, key: &str, policy: &Policy) -> Result<Decision, LimitError>;
}

/// GCRA arithmetic shared by the adapters that compute it themselves (and the tests): given the
/// stored theoretical arrival time (`tat`, none for a fresh key) and `now` (both in µs on one
/// clock), the decision and the new `tat` to store when allowed.
#[must_use]
pub fn gcra(policy: &Policy, tat: Option<u64>, now: u64, cost: u32) -> (Decision, Option<u64>) {
    let t = u64::try_from(policy.emission_interval().as_micros())
        .unwrap_or(u64::MAX)
        .max(1);
    let tau = t.saturating_mul(u64::from(policy.limit()));
    let tat = tat.unwrap_or(now).max(now);
    let new_tat = tat.saturating_add(t.saturating_mul(u64::from(cost.max(1))));
    let allow_at = new_tat.saturating_sub(tau);
    let remaining_at = |tat: u64| {
        u32::try_from((now.saturating_add(tau).saturating_sub(tat)) / t).unwrap_or(u32::MAX)
    };
    if allow_at > now {
        (
            Decision {
                allowed: false,
                limit: policy.limit(),
                remaining: remaining_at(tat),
                retry_after: Duration::from_micros(allow_at - now),
                reset_after: Duration::from_micros(tat - now),
            },
            None,
        )
    } else {
        (
            Decision {
                allowed: true,
                limit: policy.limit(),
                remaining: remaining_at(new_tat),
                retry_after: Duration::ZERO,
                reset_after: Duration::from_micros(new_tat - now),
            },
            Some(new_tat),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(limit: u32, ms: u64) -> Policy {
        Policy::new("test", limit, Duration::from_millis(ms)).unwrap()
    }

    #[test]
    fn policies_are_validated() {
        assert_eq!(
            Policy::new("Bad Name", 1, Duration::from_secs(1)),
            Err(PolicyError::BadName)
        );
        assert_eq!(
            Policy::new("x", 0, Duration::from_secs(1)),
            Err(PolicyError::BadRate)
        );
        assert_eq!(
            Policy::new("x", 1, Duration::ZERO),
            Err(PolicyError::BadRate)
        );
        assert_eq!(p(10, 1000).emission_interval(), Duration::from_millis(100));
    }

    #[test]
    fn gcra_allows_a_burst_then_refills_at_the_rate() {
        let policy = p(5, 1000); // 5 per second: one every 200 ms
        let mut tat = None;
        for i in 0..5 {
            let (d, new) = gcra(&policy, tat, 0, 1);
            assert!(d.allowed, "request {i}");
            assert_eq!(d.remaining, 4 - i);
            tat = new;
        }
        let (d, new) = gcra(&policy, tat, 0, 1);
        assert!(!d.allowed && new.is_none());
        assert_eq!(d.retry_after, Duration::from_millis(200));
        assert_eq!(d.reset_after, Duration::from_secs(1));
        let (d, _) = gcra(&policy, tat, 200_000, 1);
        assert!(d.allowed);
        assert_eq!(d.remaining, 0);
    }

    #[test]
    fn gcra_cost_counts_several_units() {
        let policy = p(10, 1000);
        let (d, tat) = gcra(&policy, None, 0, 7);
        assert!(d.allowed);
        assert_eq!(d.remaining, 3);
        let (d, _) = gcra(&policy, tat, 0, 4);
        assert!(!d.allowed);
        assert_eq!(d.retry_after, Duration::from_millis(100));
    }
}
