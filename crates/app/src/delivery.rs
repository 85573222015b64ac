//! The worker's delivery loop (`coffer-worker run`, when `events.deliver`): rounds of the
//! outbox's [`Dispatcher`] back to back while there is work, `events.poll_millis` apart when
//! there is little; and every ten seconds the backlog's gauges and the endpoints disabled for
//! failing, every minute the pruning of events past their retention.
//!
//! [`DeliveryMetrics`] joins the worker's `/metrics`: attempts by endpoint and outcome, retries,
//! the oldest wait, what waits, and the endpoints disabled for failing (alert rules in
//! `deploy/prometheus`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use coffer_clock::Clock;
use coffer_outbox::{Dispatcher, OutboxStore, Outcome, Round};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::config::EventsConfig;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DeliveryLabels {
    endpoint: String,
    outcome: &'static str,
}

/// The delivery's metrics, in the worker's registry.
#[derive(Debug, Default)]
pub struct DeliveryMetrics {
    attempts: Family<DeliveryLabels, Counter>,
    retries: Counter,
    rounds_failed: Counter,
    lag: Gauge,
    pending: Gauge,
    unscanned: Gauge,
    disabled: Gauge,
    pruned: Counter,
}

impl DeliveryMetrics {
    /// The metrics, registered in `registry`.
    pub(crate) fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        registry.register(
            "webhook_deliveries",
            "Webhook delivery attempts by endpoint and outcome (delivered, failed, gave_up, erased)",
            m.attempts.clone(),
        );
        registry.register(
            "webhook_retries",
            "Failed webhook deliveries scheduled to be tried again",
            m.retries.clone(),
        );
        registry.register(
            "outbox_rounds_failed",
            "Delivery rounds that failed (the database did not answer)",
            m.rounds_failed.clone(),
        );
        registry.register(
            "events_lag_seconds",
            "How long the longest-waiting endpoint has had events to deliver",
            m.lag.clone(),
        );
        registry.register(
            "events_pending_cursors",
            "Endpoint and wallet pairs with events waiting",
            m.pending.clone(),
        );
        registry.register(
            "events_unscanned",
            "Events written that the delivery has not read yet",
            m.unscanned.clone(),
        );
        registry.register(
            "webhook_endpoints_disabled",
            "Webhook endpoints disabled for failing too often in a row",
            m.disabled.clone(),
        );
        registry.register(
            "events_pruned",
            "Events deleted past their retention",
            m.pruned.clone(),
        );
        m
    }

    fn round(&self, round: &Round) {
        for a in &round.attempts {
            self.attempts
                .get_or_create(&DeliveryLabels {
                    endpoint: a.sink.to_string(),
                    outcome: a.outcome.as_str(),
                })
                .inc();
            if a.outcome == Outcome::Failed {
                self.retries.inc();
            }
        }
    }
}

/// The delivery loop's state.
pub(crate) struct Delivery {
    pub(crate) dispatcher: Arc<Dispatcher>,
    pub(crate) store: Arc<dyn OutboxStore>,
    pub(crate) config: EventsConfig,
    pub(crate) clock: Arc<dyn Clock>,
}

fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

impl Delivery {
    /// Delivers until cancelled (the worker's shutdown drops it between awaits: a round cut
    /// short leaves leases that lapse, and its events go again).
    pub(crate) async fn run(&self, metrics: &DeliveryMetrics) {
        let mut gauges = None;
        let mut prune = None;
        loop {
            let busy = match self.dispatcher.round().await {
                Ok(round) => {
                    metrics.round(&round);
                    for id in &round.disabled {
                        tracing::warn!(endpoint = %id, "a webhook endpoint was disabled for failing");
                    }
                    round.claimed >= self.config.claim_batch as usize
                        || round.scanned >= self.config.scan_batch as usize
                }
                Err(e) => {
                    metrics.rounds_failed.inc();
                    tracing::error!(error = %e, "an outbox delivery round failed");
                    false
                }
            };
            if every(&mut gauges, Duration::from_secs(10)) {
                self.gauges(metrics).await;
            }
            if every(&mut prune, Duration::from_secs(60)) {
                self.prune(metrics).await;
            }
            if !busy {
                tokio::time::sleep(Duration::from_millis(self.config.poll_millis)).await;
            }
        }
    }

    async fn gauges(&self, metrics: &DeliveryMetrics) {
        match self.store.backlog(self.clock.unix_micros()).await {
            Ok(b) => {
                metrics.lag.set(b.oldest_wait / 1_000_000);
                metrics
                    .pending
                    .set(i64::try_from(b.pending).unwrap_or(i64::MAX));
                metrics
                    .unscanned
                    .set(i64::try_from(b.unscanned).unwrap_or(i64::MAX));
            }
            Err(e) => tracing::warn!(error = %e, "the outbox backlog could not be read"),
        }
        match self.store.sinks().await {
            Ok(sinks) => {
                let disabled = sinks.iter().filter(|s| s.disabled_at.is_some()).count();
                metrics
                    .disabled
                    .set(i64::try_from(disabled).unwrap_or(i64::MAX));
            }
            Err(e) => tracing::warn!(error = %e, "the webhook endpoints could not be read"),
        }
    }

    async fn prune(&self, metrics: &DeliveryMetrics) {
        let now = self.clock.unix_micros();
        let (delivered, any) = self.config.retention();
        match self
            .store
            .prune(now - micros(delivered), now - micros(any), 10_000)
            .await
        {
            Ok(n) => {
                metrics.pruned.inc_by(n);
            }
            Err(e) => tracing::warn!(error = %e, "pruning the outbox failed"),
        }
    }
}

/// Whether `every` has passed since `last` (true the first time), and if so, now is the last.
fn every(last: &mut Option<Instant>, every: Duration) -> bool {
    if last.is_some_and(|t| t.elapsed() < every) {
        return false;
    }
    *last = Some(Instant::now());
    true
}
