//! Limited requests become audit records, aggregated per key, policy and minute: a flood of a
//! million refused requests is a handful of `security.rate_limited` rows, each with its count,
//! which the rate-limit alert rule reads.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use coffer_audit::{
    Action, Actor, AuditEvent, AuditLog, Code, DetailValue, Outcome, StreamId, Subject,
};

/// Counts limited requests until they are flushed to the audit log.
#[derive(Debug, Default)]
pub struct LimitedRequests {
    /// (key, policy, minute since epoch) → count
    counts: Mutex<HashMap<(String, String, u64), u64>>,
}

fn minute_of(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() / 60)
}

impl LimitedRequests {
    /// An empty counter.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Counts one limited request.
    pub fn record(&self, key: &str, policy: &str, at: SystemTime) {
        *self
            .counts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry((key.to_owned(), policy.to_owned(), minute_of(at)))
            .or_insert(0) += 1;
    }

    /// Takes the counts of minutes that ended before `now` (all of them with `everything`) as
    /// audit events.
    pub fn drain(&self, now: SystemTime, everything: bool) -> Vec<AuditEvent> {
        let current = minute_of(now);
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        let done: Vec<_> = counts
            .keys()
            .filter(|(_, _, m)| everything || *m < current)
            .cloned()
            .collect();
        let mut events = Vec::with_capacity(done.len());
        for k in done {
            let Some(count) = counts.remove(&k) else {
                continue;
            };
            let (key, policy, minute) = k;
            let at = i64::try_from(minute * 60 * 1_000_000).unwrap_or(i64::MAX);
            let mut e = AuditEvent::new(
                Actor::Anonymous,
                Action::SecurityRateLimited,
                Subject::System,
                Outcome::Denied,
            )
            .at(at);
            if let Ok(stream) = StreamId::parse("security:rate_limited") {
                e = e.on_stream(stream);
            }
            // Keys are built from IPs and ids, which are tokens.
            if let Ok(k) = Code::parse(&key) {
                let _ = e.details.insert("key", DetailValue::Code(k));
            }
            if let Ok(p) = Code::parse(&policy) {
                let _ = e.details.insert("policy", DetailValue::Code(p));
            }
            let _ = e.details.insert(
                "count",
                DetailValue::Int(i64::try_from(count).unwrap_or(i64::MAX)),
            );
            events.push(e);
        }
        events
    }

    /// Flushes finished minutes to `log` every `every`, and everything when dropped with the
    /// task aborted (call [`LimitedRequests::flush`] at shutdown).
    pub fn spawn_flusher(
        self: &Arc<Self>,
        log: Arc<dyn AuditLog>,
        every: Duration,
    ) -> tokio::task::JoinHandle<()> {
        let me = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                me.flush(log.as_ref(), false).await;
            }
        })
    }

    /// Writes the drained events; failures are logged and the counts dropped (the WARN line and
    /// the metrics still carry them).
    pub async fn flush(&self, log: &dyn AuditLog, everything: bool) {
        for event in self.drain(SystemTime::now(), everything) {
            if let Err(e) = log.append(&event).await {
                tracing::error!(error = %e, "could not record rate-limited requests in the audit log");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_becomes_one_row_per_key_policy_and_minute() {
        let r = LimitedRequests::new();
        let t0 = UNIX_EPOCH + Duration::from_secs(60 * 1_000);
        for i in 0..10_000 {
            r.record(
                "ip:10.0.0.1",
                "login",
                t0 + Duration::from_millis(i % 59_000),
            );
        }
        r.record("ip:10.0.0.2", "login", t0);
        r.record("ip:10.0.0.1", "login", t0 + Duration::from_secs(61));
        // The current minute is kept until it ends.
        let events = r.drain(t0 + Duration::from_secs(61), false);
        assert_eq!(events.len(), 2);
        let mut counts: Vec<i64> = events
            .iter()
            .map(|e| match e.details.get("count") {
                Some(DetailValue::Int(n)) => *n,
                _ => -1,
            })
            .collect();
        counts.sort_unstable();
        assert_eq!(counts, [1, 10_000]);
        assert_eq!(r.drain(t0 + Duration::from_secs(61), true).len(), 1);
        assert!(r.drain(t0 + Duration::from_secs(600), true).is_empty());
    }

    #[test]
    fn the_aggregated_event_feeds_the_rate_limit_alert_rule() {
        let r = LimitedRequests::new();
        let t0 = UNIX_EPOCH + Duration::from_secs(60 * 2_000);
        for _ in 0..150 {
            r.record("ip:10.0.0.1", "login", t0);
        }
        r.record("ip:10.0.0.2", "login", t0);
        let mut rules = coffer_audit::AlertRules::new(coffer_audit::AlertConfig::default());
        let alerts: Vec<_> = r
            .drain(t0 + Duration::from_secs(60), false)
            .iter()
            .flat_map(|e| rules.observe(e))
            .collect();
        assert_eq!(alerts.len(), 1, "{alerts:?}");
        assert_eq!(alerts[0].rule, "rate_limit_exceeded");
        assert_eq!(alerts[0].key.as_deref(), Some("ip:10.0.0.1"));
    }
}
