//! `/metrics` in the Prometheus text format (prometheus-client), behind the `system:metrics`
//! permission: requests and latency per route template, method and status; ledger operations
//! by kind and outcome; rate-limited requests; and, read at scrape time, the key provider's
//! calls, errors and time per operation (what reaches the key manager), the data-key cache's
//! hit ratio and size, and the PIN KDF's queue depth.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use coffer_keys::{CachingKeyProvider, KeyProvider as _, MeteredKeyProvider};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HttpLabels {
    route: String,
    method: &'static str,
    status: u16,
}

/// A method as a label: the standard ones by name, any other token `other` (hyper accepts any
/// token, and each new label value would be a new series held for good).
fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method as M;
    match *method {
        M::GET => "GET",
        M::HEAD => "HEAD",
        M::POST => "POST",
        M::PUT => "PUT",
        M::PATCH => "PATCH",
        M::DELETE => "DELETE",
        M::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LedgerLabels {
    kind: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KeyLabels {
    provider: String,
    operation: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KeyErrorLabels {
    provider: String,
    operation: &'static str,
    kind: &'static str,
}

/// Where the scrape-time figures come from.
#[derive(Debug, Clone, Default)]
pub struct Sources {
    /// The key provider as called under the cache.
    pub key_provider: Option<Arc<MeteredKeyProvider>>,
    /// The data-key cache.
    pub cache: Option<Arc<CachingKeyProvider>>,
    /// The audit log whose alert rules raise security alerts.
    pub audit: Option<Arc<coffer_audit::ObservedAuditLog>>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AlertLabels {
    rule: &'static str,
}

/// The registry and its metrics.
pub struct Metrics {
    registry: Registry,
    requests: Family<HttpLabels, Counter>,
    latency: Family<HttpLabels, Histogram>,
    ledger: Family<LedgerLabels, Counter>,
    rate_limited: Counter,
    key_calls: Family<KeyLabels, Gauge>,
    key_errors: Family<KeyErrorLabels, Gauge>,
    decryption_failures: Gauge,
    key_seconds: Family<KeyLabels, Gauge<f64, AtomicU64>>,
    cache_hit_ratio: Gauge<f64, AtomicU64>,
    cache_entries: Gauge,
    kdf_queue: Gauge,
    alerts: Family<AlertLabels, Gauge>,
    sources: Sources,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    /// A registry reading its scrape-time figures from `sources`.
    #[must_use]
    pub fn new(sources: Sources) -> Self {
        let mut registry = Registry::with_prefix("coffer");
        let requests = Family::<HttpLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests by route template, method and status",
            requests.clone(),
        );
        let latency = Family::<HttpLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.000_5, 2.0, 16))
        });
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency",
            latency.clone(),
        );
        let ledger = Family::<LedgerLabels, Counter>::default();
        registry.register(
            "ledger_operations",
            "Money operations by kind and outcome (ok, refused, failed)",
            ledger.clone(),
        );
        let rate_limited = Counter::default();
        registry.register(
            "rate_limited_requests",
            "Requests refused by the rate limiter",
            rate_limited.clone(),
        );
        let key_calls = Family::<KeyLabels, Gauge>::default();
        registry.register(
            "key_provider_calls",
            "Calls that reached the key provider since start, by provider and operation",
            key_calls.clone(),
        );
        let key_errors = Family::<KeyErrorLabels, Gauge>::default();
        registry.register(
            "key_provider_errors",
            "Failed key provider calls since start, by provider, operation and kind (unavailable, denied, not_found, retired, corrupt, unsupported, other)",
            key_errors.clone(),
        );
        let decryption_failures = Gauge::default();
        registry.register(
            "decryption_failures",
            "Wrapped data keys that did not open under their master key and context since start \
             (damaged, or copied from another row): the key provider's corrupt answers",
            decryption_failures.clone(),
        );
        let key_seconds = Family::<KeyLabels, Gauge<f64, AtomicU64>>::default();
        registry.register(
            "key_provider_seconds",
            "Time spent in the key provider since start, by provider and operation",
            key_seconds.clone(),
        );
        let cache_hit_ratio = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "data_key_cache_hit_ratio",
            "Data-key unwraps answered from the cache",
            cache_hit_ratio.clone(),
        );
        let cache_entries = Gauge::default();
        registry.register(
            "data_key_cache_entries",
            "Unwrapped data keys held",
            cache_entries.clone(),
        );
        let alerts = Family::<AlertLabels, Gauge>::default();
        registry.register(
            "security_alerts",
            "Security alerts this process raised since start, by rule (failed_logins, \
             large_transaction, rate_limit_exceeded, failed_transactions)",
            alerts.clone(),
        );
        let kdf_queue = Gauge::default();
        registry.register(
            "pin_kdf_queue_depth",
            "PIN derivations waiting for a slot",
            kdf_queue.clone(),
        );
        Self {
            registry,
            requests,
            latency,
            ledger,
            rate_limited,
            key_calls,
            key_errors,
            decryption_failures,
            key_seconds,
            cache_hit_ratio,
            cache_entries,
            kdf_queue,
            alerts,
            sources,
        }
    }

    fn observe(&self, route: &str, method: &'static str, status: u16, seconds: f64) {
        let labels = HttpLabels {
            route: route.to_owned(),
            method,
            status,
        };
        self.requests.get_or_create(&labels).inc();
        self.latency.get_or_create(&labels).observe(seconds);
        if status == 429 {
            self.rate_limited.inc();
        }
        let kind = if method != "POST" {
            None
        } else if route.ends_with("/deposits") {
            Some("deposit")
        } else if route.ends_with("/withdrawals") {
            Some("withdrawal")
        } else if route.ends_with("/transfers") {
            Some("transfer")
        } else if route.ends_with("/reversal") {
            Some("reversal")
        } else if route.ends_with("/holds") {
            Some("hold")
        } else if route.ends_with("/capture") {
            Some("capture")
        } else {
            None
        };
        if let Some(kind) = kind {
            let outcome = match status {
                200..=299 => "ok",
                500..=599 => "failed",
                _ => "refused",
            };
            self.ledger
                .get_or_create(&LedgerLabels { kind, outcome })
                .inc();
        }
    }

    /// The text exposition, with the scrape-time figures read now.
    #[must_use]
    pub fn render(&self, kdf_queue_depth: u64) -> String {
        if let Some(p) = &self.sources.key_provider {
            let provider = p.name().to_owned();
            let mut failures = 0u64;
            for s in p.stats() {
                let l = KeyLabels {
                    provider: provider.clone(),
                    operation: s.operation,
                };
                self.key_calls
                    .get_or_create(&l)
                    .set(i64::try_from(s.calls).unwrap_or(i64::MAX));
                for (kind, n) in s.errors {
                    self.key_errors
                        .get_or_create(&KeyErrorLabels {
                            provider: provider.clone(),
                            operation: s.operation,
                            kind,
                        })
                        .set(i64::try_from(n).unwrap_or(i64::MAX));
                    if kind == "corrupt" && s.operation == "unwrap_data_key" {
                        failures = failures.saturating_add(n);
                    }
                }
                #[allow(clippy::cast_precision_loss)]
                self.key_seconds
                    .get_or_create(&l)
                    .set(s.micros as f64 / 1e6);
            }
            self.decryption_failures
                .set(i64::try_from(failures).unwrap_or(i64::MAX));
        }
        if let Some(c) = &self.sources.cache {
            let stats = c.stats();
            self.cache_hit_ratio.set(stats.hit_ratio());
            self.cache_entries
                .set(i64::try_from(stats.entries).unwrap_or(i64::MAX));
        }
        if let Some(audit) = &self.sources.audit {
            for (rule, n) in audit.alerts_raised() {
                self.alerts
                    .get_or_create(&AlertLabels { rule })
                    .set(i64::try_from(n).unwrap_or(i64::MAX));
            }
        }
        self.kdf_queue
            .set(i64::try_from(kdf_queue_depth).unwrap_or(i64::MAX));
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            tracing::error!("metrics could not be encoded");
        }
        out
    }
}

/// Records every request (route template, never the path; `unmatched` for a path no route
/// serves; the method as [`method_label`] names it).
pub(super) async fn record(
    State(metrics): State<Arc<Metrics>>,
    req: Request,
    next: Next,
) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |m| m.as_str().to_owned());
    let method = method_label(req.method());
    let started = std::time::Instant::now();
    let response = next.run(req).await;
    metrics.observe(
        &route,
        method,
        response.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    response
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use axum::Router;
    use axum::body::Body;
    use axum::http::Method;
    use axum::routing::get;
    use tower::ServiceExt as _;

    use super::*;

    /// Series of the request counter and latency histogram in the exposition.
    fn http_series(m: &Metrics) -> usize {
        m.render(0)
            .lines()
            .filter(|l| l.starts_with("coffer_http_request"))
            .count()
    }

    #[tokio::test]
    async fn odd_methods_and_unknown_paths_add_no_series() {
        let metrics = Arc::new(Metrics::new(Sources::default()));
        let app = Router::new()
            .route("/healthz", get(|| async { "ok" }))
            .layer(axum::middleware::from_fn_with_state(
                metrics.clone(),
                record,
            ));
        let send = |method: &str, path: &str| {
            let req = axum::http::Request::builder()
                .method(Method::from_bytes(method.as_bytes()).unwrap())
                .uri(path)
                .body(Body::empty())
                .unwrap();
            app.clone().oneshot(req)
        };
        send("GET", "/healthz").await.unwrap();
        send("BREW", "/healthz").await.unwrap();
        send("GET", "/nowhere").await.unwrap();
        let baseline = http_series(&metrics);
        assert!(baseline > 0);
        for i in 0..50 {
            let method = format!("X{}{i}", "Q".repeat(1_500));
            send(&method, "/healthz").await.unwrap();
            send("GET", &format!("/nowhere/{i}/{}", "p".repeat(200)))
                .await
                .unwrap();
        }
        assert_eq!(http_series(&metrics), baseline);
        assert!(!metrics.render(0).contains("QQQ"));
    }
}
