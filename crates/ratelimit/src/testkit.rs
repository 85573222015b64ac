//! The limiter port's contract suite, in real time (the Redis adapter runs on Redis's clock).
//! [`rate_limiter_contract_tests!`](crate::rate_limiter_contract_tests) expands to one test per
//! case; each case uses keys under a fresh random namespace, so cases and runs never share state.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::{LimitError, Policy, RateLimiter};

/// A limiter under test and the namespace its keys live in.
pub struct LimiterUnderTest {
    /// The limiter.
    pub limiter: Arc<dyn RateLimiter>,
    namespace: String,
}

impl std::fmt::Debug for LimiterUnderTest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LimiterUnderTest")
            .field("namespace", &self.namespace)
            .finish_non_exhaustive()
    }
}

impl LimiterUnderTest {
    /// Wraps a limiter; keys get a namespace unique to this value.
    pub fn new(limiter: Arc<dyn RateLimiter>) -> Self {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let namespace = format!("t{nanos:x}{:x}", std::process::id());
        Self { limiter, namespace }
    }

    /// A key in this test's namespace.
    pub fn key(&self, name: &str) -> String {
        format!("{}:{name}", self.namespace)
    }
}

/// Expands to one test per contract case.
#[macro_export]
macro_rules! rate_limiter_contract_tests {
    ($factory:expr) => {
        $crate::rate_limiter_contract_tests!(@cases $factory;
            a_burst_is_allowed_then_limited,
            retry_after_is_accurate,
            the_steady_rate_is_the_policy_rate,
            keys_are_independent,
            policies_are_independent,
            costs_above_one_take_several_units,
            peek_reads_without_taking,
        );
    };
    (@cases $factory:expr; $($case:ident),+ $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let subject = ($factory)().await;
                $crate::testkit::$case(&subject).await;
            }
        )+
    };
}

fn policy(name: &str, limit: u32, period_ms: u64) -> Policy {
    Policy::new(name, limit, Duration::from_millis(period_ms)).unwrap()
}

/// A full budget allows `limit` requests at once, then refuses with a retry time of about one
/// emission interval.
pub async fn a_burst_is_allowed_then_limited(s: &LimiterUnderTest) {
    let p = policy("burst", 5, 2_000);
    let k = s.key("a");
    for expected_remaining in (0..5).rev() {
        let d = s.limiter.check(&k, &p, 1).await.unwrap();
        assert!(d.allowed);
        assert_eq!(d.limit, 5);
        assert_eq!(d.remaining, expected_remaining);
        assert_eq!(d.retry_after, Duration::ZERO);
    }
    let d = s.limiter.check(&k, &p, 1).await.unwrap();
    assert!(!d.allowed);
    assert_eq!(d.remaining, 0);
    assert!(
        d.retry_after > Duration::from_millis(250) && d.retry_after <= Duration::from_millis(400),
        "{d:?}"
    );
    assert!(
        d.reset_after > Duration::from_millis(1_500) && d.reset_after <= Duration::from_secs(2),
        "{d:?}"
    );
}

/// Waiting less than `retry_after` is still refused; waiting it out is allowed.
pub async fn retry_after_is_accurate(s: &LimiterUnderTest) {
    let p = policy("retry", 2, 1_600); // one unit per 800 ms
    let k = s.key("a");
    s.limiter.check(&k, &p, 2).await.unwrap();
    let d = s.limiter.check(&k, &p, 1).await.unwrap();
    assert!(!d.allowed);
    tokio::time::sleep(d.retry_after / 2).await;
    let half = s.limiter.check(&k, &p, 1).await.unwrap();
    assert!(!half.allowed, "allowed before retry_after: {half:?}");
    assert!(half.retry_after < d.retry_after, "{half:?} vs {d:?}");
    tokio::time::sleep(half.retry_after + Duration::from_millis(40)).await;
    let after = s.limiter.check(&k, &p, 1).await.unwrap();
    assert!(after.allowed, "refused after retry_after: {after:?}");
}

/// After the burst, requests go through at the policy's rate, no faster.
pub async fn the_steady_rate_is_the_policy_rate(s: &LimiterUnderTest) {
    let p = policy("steady", 10, 1_000); // one per 100 ms
    let k = s.key("a");
    s.limiter.check(&k, &p, 10).await.unwrap();
    let start = tokio::time::Instant::now();
    let mut allowed = 0;
    while start.elapsed() < Duration::from_millis(1_000) {
        if s.limiter.check(&k, &p, 1).await.unwrap().allowed {
            allowed += 1;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // 1 s at 10/s: 10, give or take the edges and a slow machine.
    assert!(
        (8..=11).contains(&allowed),
        "{allowed} allowed in 1 s at 10/s"
    );
}

/// One key's exhaustion leaves another's budget whole.
pub async fn keys_are_independent(s: &LimiterUnderTest) {
    let p = policy("indep", 3, 60_000);
    s.limiter.check(&s.key("a"), &p, 3).await.unwrap();
    assert!(!s.limiter.check(&s.key("a"), &p, 1).await.unwrap().allowed);
    let d = s.limiter.check(&s.key("b"), &p, 1).await.unwrap();
    assert!(d.allowed);
    assert_eq!(d.remaining, 2);
}

/// The same key under two policies has two budgets.
pub async fn policies_are_independent(s: &LimiterUnderTest) {
    let strict = policy("strict", 1, 60_000);
    let loose = policy("loose", 100, 60_000);
    let k = s.key("a");
    s.limiter.check(&k, &strict, 1).await.unwrap();
    assert!(!s.limiter.check(&k, &strict, 1).await.unwrap().allowed);
    assert_eq!(s.limiter.check(&k, &loose, 1).await.unwrap().remaining, 99);
}

/// A cost of n takes n units; more than the burst is an error, not a wait.
pub async fn costs_above_one_take_several_units(s: &LimiterUnderTest) {
    let p = policy("cost", 10, 60_000);
    let k = s.key("a");
    let d = s.limiter.check(&k, &p, 7).await.unwrap();
    assert!(d.allowed);
    assert_eq!(d.remaining, 3);
    let d = s.limiter.check(&k, &p, 4).await.unwrap();
    assert!(!d.allowed, "{d:?}");
    assert_eq!(d.remaining, 3, "a refused request takes nothing");
    let d = s.limiter.check(&k, &p, 3).await.unwrap();
    assert!(d.allowed);
    assert_eq!(d.remaining, 0);
    let err = s.limiter.check(&s.key("b"), &p, 11).await.unwrap_err();
    assert!(
        matches!(
            err,
            LimitError::CostExceedsLimit {
                cost: 11,
                limit: 10,
                ..
            }
        ),
        "{err:?}"
    );
}

/// Peeking shows the budget without spending it.
pub async fn peek_reads_without_taking(s: &LimiterUnderTest) {
    let p = policy("peek", 4, 60_000);
    let k = s.key("a");
    let fresh = s.limiter.peek(&k, &p).await.unwrap();
    assert!(fresh.allowed);
    assert_eq!(fresh.remaining, 4);
    s.limiter.check(&k, &p, 3).await.unwrap();
    for _ in 0..3 {
        let d = s.limiter.peek(&k, &p).await.unwrap();
        assert!(d.allowed);
        assert_eq!(d.remaining, 1);
    }
    s.limiter.check(&k, &p, 1).await.unwrap();
    let d = s.limiter.peek(&k, &p).await.unwrap();
    assert!(!d.allowed);
    assert_eq!(d.remaining, 0);
    assert!(d.retry_after > Duration::ZERO, "{d:?}");
    assert!(!s.limiter.check(&k, &p, 1).await.unwrap().allowed);
}
