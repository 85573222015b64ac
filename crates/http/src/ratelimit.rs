//! The rate-limit middleware and the admin IP allowlist.
//!
//! ```text
//! router.layer(axum::middleware::from_fn_with_state(limits, ratelimit::enforce))
//! ```
//!
//! Each request is checked against every policy that applies to it (per client IP, per user or
//! API key, per route class; see [`coffer_ratelimit::policy`]): all are peeked first, so a
//! request one policy refuses spends nothing of the others, then all are checked. Refused: 429 problem with
//! `Retry-After` and the IETF `RateLimit-Policy` / `RateLimit` fields
//! (draft-ietf-httpapi-ratelimit-headers), counted for the aggregated `security.rate_limited`
//! audit event. Shared limiter down and configured to fail closed: 503 problem. Allowed: the
//! response carries the same fields for the policy closest to its limit.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use coffer_ratelimit::audit::LimitedRequests;
use coffer_ratelimit::policy::{Policies, Requester, RouteClass};
use coffer_ratelimit::{Decision, LimitError, Policy, RateLimiter};
use ipnet::IpNet;

use crate::client_ip::{TrustedProxies, contains};
use crate::problem::Problem;

/// The client address of a request, as decided by the layer (for handlers and logs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientIp(pub IpAddr);

/// Maps a request to its route class.
pub type Classifier = Arc<dyn Fn(&Request) -> RouteClass + Send + Sync>;

/// What the middleware needs.
#[derive(Clone)]
pub struct RateLimits {
    /// The limiter (in-process, Redis, or Redis with fail-over).
    pub limiter: Arc<dyn RateLimiter>,
    /// The policies.
    pub policies: Arc<Policies>,
    /// Whose `X-Forwarded-For` to believe.
    pub proxies: Arc<TrustedProxies>,
    /// Where refused requests are counted for the audit log.
    pub limited: Arc<LimitedRequests>,
    /// The route classifier.
    pub classify: Classifier,
}

coffer_macros::debug_non_exhaustive!(self => RateLimits { limiter, policies });

fn peer_ip(req: &Request) -> IpAddr {
    if let Some(ConnectInfo(addr)) = req.extensions().get::<ConnectInfo<SocketAddr>>() {
        addr.ip()
    } else {
        // Served without connect info: a wiring mistake. Limit as one anonymous client rather
        // than fail every request.
        tracing::error!(
            "request without connect info: the server must use into_make_service_with_connect_info"
        );
        IpAddr::V4(Ipv4Addr::UNSPECIFIED)
    }
}

/// Seconds, rounded up, at least 1 when there is anything to wait for.
fn ceil_secs(d: Duration) -> u64 {
    let s = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    if d.is_zero() { 0 } else { s.max(1) }
}

fn policy_item(p: &Policy) -> String {
    format!(
        "\"{}\";q={};w={}",
        p.name(),
        p.limit(),
        ceil_secs(p.period())
    )
}

fn set(headers: &mut HeaderMap, name: &'static str, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        headers.insert(name, v);
    }
}

fn ratelimit_headers(headers: &mut HeaderMap, applied: &[&Policy], closest: (&Policy, &Decision)) {
    let policies: Vec<String> = applied.iter().map(|p| policy_item(p)).collect();
    set(headers, "ratelimit-policy", &policies.join(", "));
    let (p, d) = closest;
    set(
        headers,
        "ratelimit",
        &format!(
            "\"{}\";r={};t={}",
            p.name(),
            d.remaining,
            ceil_secs(d.reset_after)
        ),
    );
}

/// The middleware. See the [module documentation](self).
pub async fn enforce(State(limits): State<RateLimits>, mut req: Request, next: Next) -> Response {
    let ip = limits.proxies.client_ip(peer_ip(&req), req.headers());
    req.extensions_mut().insert(ClientIp(ip));
    let caller = req
        .extensions()
        .get::<Requester>()
        .cloned()
        .unwrap_or(Requester::Anonymous);
    let class = (limits.classify)(&req);
    let checks = limits.policies.applicable(ip, &caller, class);
    let applied: Vec<&Policy> = checks.iter().map(|(_, p)| *p).collect();

    // Peek first: a request that one policy refuses takes nothing from the others.
    for (key, policy) in &checks {
        match limits.limiter.peek(key, policy).await {
            Ok(d) if !d.allowed => return limited(&limits, key, policy, &d, &applied, class),
            Ok(_) => {}
            Err(e) => return unavailable(&e),
        }
    }
    let mut closest: Option<(&Policy, Decision)> = None;
    for (key, policy) in &checks {
        match limits.limiter.check(key, policy, 1).await {
            Ok(d) if d.allowed => {
                let ratio = |d: &Decision| f64::from(d.remaining) / f64::from(d.limit.max(1));
                if closest.as_ref().is_none_or(|(_, c)| ratio(&d) < ratio(c)) {
                    closest = Some((policy, d));
                }
            }
            // Another request took the last unit between the peek and the check.
            Ok(d) => return limited(&limits, key, policy, &d, &applied, class),
            Err(e) => return unavailable(&e),
        }
    }
    let mut response = next.run(req).await;
    if let Some((p, d)) = &closest {
        ratelimit_headers(response.headers_mut(), &applied, (p, d));
    }
    response
}

fn limited(
    limits: &RateLimits,
    key: &str,
    policy: &Policy,
    d: &Decision,
    applied: &[&Policy],
    class: RouteClass,
) -> Response {
    limits.limited.record(key, policy.name(), SystemTime::now());
    tracing::info!(
        event = "coffer.ratelimit.limited",
        policy = policy.name(),
        class = class.as_str(),
        "request rate-limited"
    );
    let mut response = Problem::new(
        StatusCode::TOO_MANY_REQUESTS,
        "rate_limited",
        "Too many requests",
    )
    .detail(format!(
        "the {} limit is {} per {} s; retry after {} s",
        policy.name(),
        policy.limit(),
        ceil_secs(policy.period()),
        ceil_secs(d.retry_after).max(1)
    ))
    .into_response();
    let headers = response.headers_mut();
    set(
        headers,
        "retry-after",
        &ceil_secs(d.retry_after).max(1).to_string(),
    );
    ratelimit_headers(headers, applied, (policy, d));
    response
}

/// The limiter failed (fail-closed, or a store error): 503, never a 500. Logged and counted by
/// the fail-over decorator; no internals in the body.
fn unavailable(e: &LimitError) -> Response {
    let code = match e {
        LimitError::Unavailable(_) => "rate_limiter_unavailable",
        _ => "rate_limiter_error",
    };
    tracing::warn!(event = "coffer.ratelimit.error", error = %e, "rate limiter failed");
    Problem::new(
        StatusCode::SERVICE_UNAVAILABLE,
        code,
        "Service temporarily unavailable",
    )
    .detail("rate limiting is unavailable; retry shortly")
    .into_response()
}

/// Client networks allowed on admin routes; empty allows everyone (the default: enable it in
/// production).
#[derive(Debug, Clone)]
pub struct AdminAllowlist {
    /// Allowed ranges.
    pub nets: Arc<Vec<IpNet>>,
    /// Whose `X-Forwarded-For` to believe.
    pub proxies: Arc<TrustedProxies>,
}

/// Middleware for admin routes: 403 problem unless the client IP is allowed.
pub async fn admin_allowlist(
    State(list): State<AdminAllowlist>,
    req: Request,
    next: Next,
) -> Response {
    if list.nets.is_empty() {
        return next.run(req).await;
    }
    let ip = list.proxies.client_ip(peer_ip(&req), req.headers());
    if contains(&list.nets, ip) {
        next.run(req).await
    } else {
        tracing::warn!(
            event = "coffer.admin.ip_refused",
            "admin request from a network not on the allowlist"
        );
        Problem::new(StatusCode::FORBIDDEN, "ip_not_allowed", "Forbidden")
            .detail("admin routes are not reachable from this network")
            .into_response()
    }
}
