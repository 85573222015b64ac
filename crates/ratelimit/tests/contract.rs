//! The limiter contract suite against the in-process limiter on a manual clock (no case waits),
//! plus its memory bound.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use coffer_clock::ManualClock;
use coffer_ratelimit::testkit::LimiterUnderTest;
use coffer_ratelimit::{InProcessLimiter, Policy, RateLimiter};

coffer_ratelimit::rate_limiter_contract_tests!(|| async {
    let clock = Arc::new(ManualClock::default());
    let limiter = InProcessLimiter::with_clock(clock.clone());
    LimiterUnderTest::with_clock(Arc::new(limiter) as Arc<dyn RateLimiter>, clock)
});

/// A million distinct keys (a scan from a botnet) are forgotten once their budgets are whole
/// again: tracked keys, and so memory, follow recent activity, not history.
#[tokio::test]
async fn a_million_distinct_keys_are_evicted() {
    let clock = Arc::new(ManualClock::default());
    let limiter = InProcessLimiter::with_clock(clock.clone());
    let p = Policy::new("flood", 10, Duration::from_millis(100)).unwrap();
    for i in 0..1_000_000u32 {
        assert!(
            limiter
                .check_now(&format!("ip:{i}"), &p, 1)
                .unwrap()
                .allowed
        );
    }
    assert_eq!(limiter.len(), 1_000_000);
    // After one emission interval (10 ms) every one-request key is back to a full budget.
    clock.advance(Duration::from_millis(50));
    limiter.evict_stale();
    assert_eq!(limiter.len(), 0);

    // A key that is still limited is kept.
    let slow = Policy::new("slow", 1, Duration::from_secs(60)).unwrap();
    limiter.check_now("ip:attacker", &slow, 1).unwrap();
    limiter.evict_stale();
    assert_eq!(limiter.len(), 1);
    assert!(!limiter.check_now("ip:attacker", &slow, 1).unwrap().allowed);
}

#[tokio::test]
async fn the_scheduled_evictor_runs() {
    let clock = Arc::new(ManualClock::default());
    let limiter = Arc::new(InProcessLimiter::with_clock(clock.clone()));
    let p = Policy::new("flood", 10, Duration::from_millis(10)).unwrap();
    for i in 0..1_000u32 {
        limiter.check_now(&format!("ip:{i}"), &p, 1).unwrap();
    }
    // Every budget is whole again: what is left to wait for is the evictor task's first run.
    clock.advance(Duration::from_millis(20));
    let task = limiter.spawn_evictor(Duration::from_millis(20));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !limiter.is_empty() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(limiter.len(), 0);
    task.abort();
}
