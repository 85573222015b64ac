//! The limiter contract suite against the machine's Redis (`COFFER_TEST_REDIS_URL`, default
//! redis://127.0.0.1:6379) and again over TLS against a Redis of the test's own that speaks only
//! TLS (`coffer_test_tls::redis`), the limit shared by two instances, and Redis-down behaviour
//! (a Redis that does not answer, or cannot prove who it is).
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use coffer_ratelimit::testkit::LimiterUnderTest;
use coffer_ratelimit::{
    Failover, InProcessLimiter, LimitError, Policy, RateLimiter, RedisDownMode,
};
use coffer_ratelimit_redis::{RedisLimiter, RedisLimiterConfig};

fn redis_url() -> String {
    std::env::var("COFFER_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

fn limiter() -> RedisLimiter {
    RedisLimiter::new(
        &redis_url(),
        "coffer-test:rl",
        RedisLimiterConfig::default(),
    )
    .unwrap()
}

coffer_ratelimit::rate_limiter_contract_tests!(|| async {
    LimiterUnderTest::new(Arc::new(limiter()) as Arc<dyn RateLimiter>)
});

/// Two limiter instances (two API replicas) share one budget.
#[tokio::test]
async fn two_instances_share_one_limit() {
    let keys = LimiterUnderTest::new(Arc::new(limiter()));
    let (a, b) = (limiter(), limiter());
    let p = Policy::new("shared", 10, Duration::from_secs(60)).unwrap();
    let k = keys.key("ip:198.51.100.7");
    let mut allowed = 0;
    for i in 0..20 {
        let l = if i % 2 == 0 { &a } else { &b };
        if l.check(&k, &p, 1).await.unwrap().allowed {
            allowed += 1;
        }
    }
    assert_eq!(allowed, 10, "the limit is global, not per instance");
    assert_eq!(b.peek(&k, &p).await.unwrap().remaining, 0);
}

fn unreachable_redis() -> Arc<dyn RateLimiter> {
    // Nothing listens on port 1; the timeouts keep the failure prompt.
    let config = RedisLimiterConfig {
        connect_timeout: Duration::from_millis(200),
        response_timeout: Duration::from_millis(200),
        ..RedisLimiterConfig::default()
    };
    Arc::new(RedisLimiter::new("redis://127.0.0.1:1", "x", config).unwrap())
}

#[tokio::test]
async fn redis_down_is_reported_as_unavailable_promptly() {
    let p = Policy::new("down", 5, Duration::from_secs(60)).unwrap();
    let started = tokio::time::Instant::now();
    let err = unreachable_redis().check("k", &p, 1).await.unwrap_err();
    assert!(matches!(err, LimitError::Unavailable(_)), "{err:?}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn redis_down_fail_open_limits_in_process() {
    let f = Failover::new(
        unreachable_redis(),
        Arc::new(InProcessLimiter::new()),
        RedisDownMode::FailOpen,
    );
    let p = Policy::new("down", 3, Duration::from_secs(60)).unwrap();
    let results: Vec<bool> = {
        let mut v = Vec::new();
        for _ in 0..5 {
            v.push(f.check("ip:1", &p, 1).await.unwrap().allowed);
        }
        v
    };
    assert_eq!(results, [true, true, true, false, false]);
    assert_eq!(f.failures(), 5);
}

#[tokio::test]
async fn redis_down_fail_closed_refuses() {
    let f = Failover::new(
        unreachable_redis(),
        Arc::new(InProcessLimiter::new()),
        RedisDownMode::FailClosed,
    );
    let p = Policy::new("down", 3, Duration::from_secs(60)).unwrap();
    let err = f.check("ip:1", &p, 1).await.unwrap_err();
    assert!(matches!(err, LimitError::Unavailable(_)), "{err:?}");
}

#[tokio::test]
async fn idle_keys_expire_in_redis() {
    let keys = LimiterUnderTest::new(Arc::new(limiter()));
    let l = limiter();
    let p = Policy::new("expiry", 2, Duration::from_millis(200)).unwrap();
    let k = keys.key("a");
    l.check(&k, &p, 1).await.unwrap();
    let client = redis::Client::open(redis_url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let redis_key = format!("coffer-test:rl:expiry:2:200:{k}");
    let ttl: i64 = redis::cmd("PTTL")
        .arg(&redis_key)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(
        (1..=100).contains(&ttl),
        "expires when the budget is whole again: {ttl} ms"
    );
    // Redis expires the key on its own clock: ask until it has (within a bound).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let exists = loop {
        let exists: i64 = redis::cmd("EXISTS")
            .arg(&redis_key)
            .query_async(&mut conn)
            .await
            .unwrap();
        if exists == 0 || tokio::time::Instant::now() >= deadline {
            break exists;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    assert_eq!(exists, 0);
}

/// A limiter over TLS to the test's own Redis at `url`, trusting the authority in `ca`, showing
/// the client certificate the server accepts when `identity`.
fn tls_limiter(url: &str, ca: &std::path::Path, identity: bool) -> RedisLimiter {
    let (cert, key) = coffer_test_tls::redis::server().client_identity();
    let config = RedisLimiterConfig {
        tls_ca: Some(std::fs::read(ca).unwrap()),
        tls_client: identity.then(|| (cert, coffer_crypto::SecretBytes::new(key))),
        ..RedisLimiterConfig::default()
    };
    RedisLimiter::new(url, "coffer-test:rl", config).unwrap()
}

/// The same suite over TLS: `rediss://localhost`, trusting the test's authority.
mod over_tls {
    use super::*;

    coffer_ratelimit::rate_limiter_contract_tests!(|| async {
        let server = coffer_test_tls::redis::server();
        LimiterUnderTest::new(
            Arc::new(tls_limiter(&server.url("localhost"), &server.pki.ca, true))
                as Arc<dyn RateLimiter>,
        )
    });
}

/// Over TLS, a server whose certificate another authority signed, or that names another host,
/// is refused, and so is plaintext to the TLS port; a client without the certificate the server
/// asks for is refused by the server: each is Unavailable.
#[tokio::test]
async fn a_redis_that_cannot_prove_who_it_is_is_refused() {
    let server = coffer_test_tls::redis::server();
    let p = Policy::new("tls", 5, Duration::from_secs(60)).unwrap();
    let plaintext = RedisLimiter::new(
        &format!("redis://localhost:{}", server.port),
        "coffer-test:rl",
        RedisLimiterConfig::default(),
    )
    .unwrap();
    for (what, limiter) in [
        (
            "another authority",
            tls_limiter(&server.url("localhost"), &server.pki.other_ca, true),
        ),
        (
            "another name",
            tls_limiter(&server.url("127.0.0.1"), &server.pki.ca, true),
        ),
        ("no TLS", plaintext),
        (
            "no client certificate",
            tls_limiter(&server.url("localhost"), &server.pki.ca, false),
        ),
    ] {
        assert!(
            matches!(
                limiter.check("k:tls", &p, 1).await,
                Err(LimitError::Unavailable(_))
            ),
            "{what}"
        );
    }
}
