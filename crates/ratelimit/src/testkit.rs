//! The limiter port's contract suite.
//! [`rate_limiter_contract_tests!`](crate::rate_limiter_contract_tests) expands to one test per
//! case; each case uses keys under a fresh random namespace, so cases and runs never share state.
//!
//! Time passes in one of two ways. A limiter on a clock the test holds
//! ([`LimiterUnderTest::with_clock`], the in-process limiter on a [`ManualClock`]) is moved on
//! at once: no case waits. A limiter that keeps its own time ([`LimiterUnderTest::new`], the
//! Redis adapter on Redis's clock) runs in real time, on short periods: a case that waits for a
//! budget polls `peek` until the limiter says it is there (within a bound), and the steady-rate
//! case samples every 10 ms for a second.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use coffer_clock::{Clock as _, ManualClock};

use crate::{Decision, LimitError, Policy, RateLimiter};

/// A limiter under test and the namespace its keys live in.
pub struct LimiterUnderTest {
    /// The limiter.
    pub limiter: Arc<dyn RateLimiter>,
    namespace: String,
    /// The limiter's clock, when the test holds it.
    clock: Option<Arc<ManualClock>>,
}

coffer_macros::debug_non_exhaustive!(self => LimiterUnderTest { namespace });

impl LimiterUnderTest {
    /// Wraps a limiter that keeps its own time (the cases run in real time); keys get a
    /// namespace unique to this value.
    pub fn new(limiter: Arc<dyn RateLimiter>) -> Self {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let namespace = format!("t{nanos:x}{:x}", std::process::id());
        Self {
            limiter,
            namespace,
            clock: None,
        }
    }

    /// Wraps a limiter that reads its time from `clock`: the cases move it instead of waiting.
    pub fn with_clock(limiter: Arc<dyn RateLimiter>, clock: Arc<ManualClock>) -> Self {
        Self {
            clock: Some(clock),
            ..Self::new(limiter)
        }
    }

    /// A key in this test's namespace.
    pub fn key(&self, name: &str) -> String {
        format!("{}:{name}", self.namespace)
    }

    /// The limiter's monotonic time: its clock's, or the machine's.
    fn now(&self) -> Instant {
        self.clock
            .as_ref()
            .map_or_else(Instant::now, |c| c.monotonic())
    }

    /// Lets `by` pass: moves the limiter's clock on, or sleeps in real time.
    async fn pass(&self, by: Duration) {
        match &self.clock {
            Some(clock) => clock.advance(by),
            None => tokio::time::sleep(by).await,
        }
    }

    /// Lets `by` pass for `key` under `policy`: moves the limiter's clock on; in real time,
    /// polls `peek` every 5 ms until `reached` holds of its answer (for at most `by` and 5 s
    /// more; the case's own assertion then says what went wrong).
    async fn wait(
        &self,
        by: Duration,
        key: &str,
        policy: &Policy,
        reached: impl Fn(&Decision) -> bool,
    ) {
        if let Some(clock) = &self.clock {
            clock.advance(by);
            return;
        }
        let deadline = Instant::now() + by + Duration::from_secs(5);
        while Instant::now() < deadline && !reached(&self.limiter.peek(key, policy).await.unwrap())
        {
            self.pass(Duration::from_millis(5)).await;
        }
    }
}

#[doc(hidden)]
pub use coffer_macros::contract_cases;

/// Expands to one test per contract case.
#[macro_export]
macro_rules! rate_limiter_contract_tests {
    ($factory:expr) => {
        $crate::testkit::contract_cases!(
            threads = 2, $factory, |subject| $crate::testkit(&subject);
            a_burst_is_allowed_then_limited,
            retry_after_is_accurate,
            the_steady_rate_is_the_policy_rate,
            keys_are_independent,
            policies_are_independent,
            costs_above_one_take_several_units,
            peek_reads_without_taking,
        );
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
    let p = policy("retry", 2, 400); // one unit per 200 ms
    let k = s.key("a");
    s.limiter.check(&k, &p, 2).await.unwrap();
    let d = s.limiter.check(&k, &p, 1).await.unwrap();
    assert!(!d.allowed);
    let halfway = d.retry_after / 2;
    s.wait(halfway, &k, &p, |now| now.retry_after <= halfway)
        .await;
    let half = s.limiter.check(&k, &p, 1).await.unwrap();
    assert!(!half.allowed, "allowed before retry_after: {half:?}");
    assert!(half.retry_after < d.retry_after, "{half:?} vs {d:?}");
    s.wait(
        half.retry_after + Duration::from_millis(40),
        &k,
        &p,
        |now| now.allowed,
    )
    .await;
    let after = s.limiter.check(&k, &p, 1).await.unwrap();
    assert!(after.allowed, "refused after retry_after: {after:?}");
}

/// After the burst, requests go through at the policy's rate, no faster.
pub async fn the_steady_rate_is_the_policy_rate(s: &LimiterUnderTest) {
    let p = policy("steady", 10, 1_000); // one per 100 ms
    let k = s.key("a");
    s.limiter.check(&k, &p, 10).await.unwrap();
    let start = s.now();
    let mut allowed = 0;
    while s.now().duration_since(start) < Duration::from_millis(1_000) {
        if s.limiter.check(&k, &p, 1).await.unwrap().allowed {
            allowed += 1;
        }
        s.pass(Duration::from_millis(10)).await;
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
