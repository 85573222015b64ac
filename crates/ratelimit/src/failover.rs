//! A shared limiter with a configured behaviour when its store is down.
//!
//! [`Failover`] wraps the shared limiter. When it answers [`LimitError::Unavailable`],
//! [`RedisDownMode::FailOpen`] asks the in-process limiter instead (each replica then enforces
//! the limits alone) and [`RedisDownMode::FailClosed`] returns the error, which the HTTP layer
//! answers with a 503. Failures are counted, and logged at most every 10 s.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;

use crate::{Decision, LimitError, Policy, RateLimiter};

/// What to do when the shared store (Redis) does not answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RedisDownMode {
    /// Keep limiting with the in-process limiter: each replica enforces the limits on its own
    /// share of traffic, so the effective limit is up to replicas × limit until Redis is back.
    FailOpen,
    /// Refuse: the HTTP layer answers 503 Service Unavailable.
    FailClosed,
}

/// See the [module documentation](self).
pub struct Failover {
    primary: Arc<dyn RateLimiter>,
    fallback: Arc<dyn RateLimiter>,
    mode: RedisDownMode,
    failures: AtomicU64,
    last_log: std::sync::Mutex<Option<Instant>>,
}

coffer_macros::debug_non_exhaustive!(self => Failover { primary, mode, failures: self.failures() });

impl Failover {
    /// `primary` (shared) with `fallback` (in-process) used as `mode` says.
    #[must_use]
    pub fn new(
        primary: Arc<dyn RateLimiter>,
        fallback: Arc<dyn RateLimiter>,
        mode: RedisDownMode,
    ) -> Self {
        Self {
            primary,
            fallback,
            mode,
            failures: AtomicU64::new(0),
            last_log: std::sync::Mutex::new(None),
        }
    }

    /// Calls the shared store failed since start (a metric).
    #[must_use]
    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }

    fn note_failure(&self, error: &LimitError) {
        self.failures.fetch_add(1, Ordering::Relaxed);
        let mut last = self
            .last_log
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // One line every 10 s at most: a flood of requests must not become a flood of logs.
        if last.is_none_or(|t| t.elapsed() > Duration::from_secs(10)) {
            *last = Some(Instant::now());
            tracing::warn!(
                event = "coffer.ratelimit.store_unavailable",
                mode = ?self.mode,
                failures = self.failures(),
                error = %error,
                "shared rate limiter store unavailable"
            );
        }
    }
}

#[async_trait]
impl RateLimiter for Failover {
    async fn check(&self, key: &str, policy: &Policy, cost: u32) -> Result<Decision, LimitError> {
        match self.primary.check(key, policy, cost).await {
            Err(e @ LimitError::Unavailable(_)) => {
                self.note_failure(&e);
                match self.mode {
                    RedisDownMode::FailOpen => self.fallback.check(key, policy, cost).await,
                    RedisDownMode::FailClosed => Err(e),
                }
            }
            other => other,
        }
    }

    async fn peek(&self, key: &str, policy: &Policy) -> Result<Decision, LimitError> {
        match self.primary.peek(key, policy).await {
            Err(e @ LimitError::Unavailable(_)) => {
                self.note_failure(&e);
                match self.mode {
                    RedisDownMode::FailOpen => self.fallback.peek(key, policy).await,
                    RedisDownMode::FailClosed => Err(e),
                }
            }
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::InProcessLimiter;
    use mockall::mock;

    mock! {
        #[derive(Debug)]
        Store {}
        #[async_trait]
        impl RateLimiter for Store {
            async fn check(&self, key: &str, policy: &Policy, cost: u32) -> Result<Decision, LimitError>;
            async fn peek(&self, key: &str, policy: &Policy) -> Result<Decision, LimitError>;
        }
    }

    fn down() -> Arc<dyn RateLimiter> {
        let mut m = MockStore::new();
        m.expect_check()
            .returning(|_, _, _| Err(LimitError::Unavailable("connection refused".into())));
        m.expect_peek()
            .returning(|_, _| Err(LimitError::Unavailable("connection refused".into())));
        Arc::new(m)
    }

    fn policy() -> Policy {
        Policy::new("login", 2, Duration::from_secs(60)).unwrap()
    }

    #[tokio::test]
    async fn fail_open_keeps_limiting_in_process() {
        let f = Failover::new(
            down(),
            Arc::new(InProcessLimiter::new()),
            RedisDownMode::FailOpen,
        );
        assert!(f.check("ip:1", &policy(), 1).await.unwrap().allowed);
        assert!(f.check("ip:1", &policy(), 1).await.unwrap().allowed);
        assert!(
            !f.check("ip:1", &policy(), 1).await.unwrap().allowed,
            "still limited"
        );
        assert_eq!(f.peek("ip:1", &policy()).await.unwrap().remaining, 0);
        assert_eq!(f.failures(), 4);
    }

    #[tokio::test]
    async fn fail_closed_reports_unavailable() {
        let f = Failover::new(
            down(),
            Arc::new(InProcessLimiter::new()),
            RedisDownMode::FailClosed,
        );
        let err = f.check("ip:1", &policy(), 1).await.unwrap_err();
        assert!(matches!(err, LimitError::Unavailable(_)), "{err:?}");
        assert_eq!(f.failures(), 1);
    }

    #[tokio::test]
    async fn other_errors_and_decisions_pass_through() {
        let mut m = MockStore::new();
        m.expect_check().returning(|_, p, c| {
            Err(LimitError::CostExceedsLimit {
                policy: p.name().into(),
                cost: c,
                limit: p.limit(),
            })
        });
        let f = Failover::new(
            Arc::new(m),
            Arc::new(InProcessLimiter::new()),
            RedisDownMode::FailOpen,
        );
        let err = f.check("k", &policy(), 9).await.unwrap_err();
        assert!(matches!(err, LimitError::CostExceedsLimit { .. }));
        assert_eq!(f.failures(), 0);
    }
}
