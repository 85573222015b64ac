//! `/readyz`'s checks: the database, the key provider and, when configured, Redis. `/readyz` is
//! public, and a key provider call goes to Vault or KMS (metered, rate-limited, billed), so the
//! provider's answer is remembered for `server.readiness_cache_secs`: however often anyone asks,
//! the provider is called at most once a period, and concurrent checks wait for that one call.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use coffer_auth::RevocationList;
use coffer_clock::Clock;
use coffer_http::api::Readiness;
use coffer_keys::KeyProvider;

use crate::Db;

/// The provider's last answer and when it was asked.
type Answer = Option<(SystemTime, Result<(), String>)>;

/// The key provider's health, asked at most once per `ttl`.
pub(crate) struct ProviderHealth {
    keys: Arc<dyn KeyProvider>,
    ttl: Duration,
    clock: Arc<dyn Clock>,
    last: tokio::sync::Mutex<Answer>,
}

impl ProviderHealth {
    pub(crate) fn new(keys: Arc<dyn KeyProvider>, ttl: Duration, clock: Arc<dyn Clock>) -> Self {
        Self {
            keys,
            ttl,
            clock,
            last: tokio::sync::Mutex::new(None),
        }
    }

    /// The provider's answer: the remembered one while it is younger than `ttl`.
    pub(crate) async fn check(&self) -> Result<(), String> {
        let mut last = self.last.lock().await;
        let now = self.clock.now();
        if let Some((at, answer)) = &*last
            && now.duration_since(*at).is_ok_and(|age| age < self.ttl)
        {
            return answer.clone();
        }
        let answer = self.keys.health().await.map_err(|e| e.to_string());
        *last = Some((now, answer.clone()));
        answer
    }
}

pub(crate) struct Ready {
    pub(crate) db: Db,
    pub(crate) keys: ProviderHealth,
    pub(crate) revocation: Option<Arc<dyn RevocationList>>,
}

#[async_trait]
impl Readiness for Ready {
    async fn check(&self) -> Vec<(&'static str, Result<(), String>)> {
        let mut out = vec![
            ("database", self.db.ping().await),
            ("key_provider", self.keys.check().await),
        ];
        if let Some(r) = &self.revocation {
            out.push((
                "redis",
                r.epochs("readyz")
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string()),
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use coffer_clock::ManualClock;
    use coffer_keys::KeyError;
    use coffer_keys::testkit::MockProvider;

    use super::*;

    #[tokio::test]
    async fn the_provider_is_asked_once_a_period_however_often_readyz_is() {
        let mut provider = MockProvider::new();
        let mut calls = 0;
        provider.expect_health().times(2).returning(move || {
            calls += 1;
            if calls == 1 {
                Ok(())
            } else {
                Err(KeyError::Unavailable {
                    provider: "mock".into(),
                    reason: "sealed".into(),
                })
            }
        });
        let clock = Arc::new(ManualClock::at_unix_secs(1_000_000));
        let health = ProviderHealth::new(Arc::new(provider), Duration::from_secs(5), clock.clone());
        for _ in 0..100 {
            assert_eq!(health.check().await, Ok(()));
        }
        clock.advance(Duration::from_secs(4));
        assert_eq!(health.check().await, Ok(()));
        // A period later the provider is asked again, and its failure is what readyz shows
        // (remembered for a period too).
        clock.advance(Duration::from_secs(1));
        for _ in 0..10 {
            assert!(health.check().await.unwrap_err().contains("sealed"));
        }
    }
}
