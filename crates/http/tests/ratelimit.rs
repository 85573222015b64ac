//! The rate-limit middleware and the admin allowlist, driven through a real axum router.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode};
use axum::middleware::from_fn_with_state;
use axum::routing::{get, post};
use coffer_audit::DetailValue;
use coffer_http::client_ip::{TrustedProxies, parse_cidrs};
use coffer_http::ratelimit::{AdminAllowlist, RateLimits, admin_allowlist, enforce};
use coffer_ratelimit::audit::LimitedRequests;
use coffer_ratelimit::policy::{Policies, RouteClass};
use coffer_ratelimit::{Decision, InProcessLimiter, LimitError, Policy, RateLimiter};
use http_body_util::BodyExt;
use tower::ServiceExt;

#[tokio::test]
async fn a_request_refused_by_one_policy_spends_nothing_of_the_others() {
    let mut l = limits(Arc::new(InProcessLimiter::new()));
    let mut p = policies();
    p.per_ip = Policy::new("ip", 5, Duration::from_secs(60)).unwrap();
    l.policies = Arc::new(p);
    let app = app(l, "");
    let mut statuses = Vec::new();
    for _ in 0..10 {
        let r = app
            .clone()
            .oneshot(request("POST", "/v1/auth/login", "203.0.113.9", None))
            .await
            .unwrap();
        statuses.push(r.status().as_u16());
    }
    assert_eq!(&statuses[..4], [200, 200, 200, 429]);
    // Seven refused logins took nothing from the per-IP budget: two of its five remain.
    let mut reads = Vec::new();
    for _ in 0..3 {
        let r = app
            .clone()
            .oneshot(request("GET", "/v1/wallets", "203.0.113.9", None))
            .await
            .unwrap();
        reads.push(r.status().as_u16());
    }
    assert_eq!(reads, [200, 200, 429]);
}

fn policies() -> Policies {
    let mut p = Policies::defaults().unwrap();
    p.login = Policy::new("login", 3, Duration::from_secs(60)).unwrap();
    p.per_ip = Policy::new("ip", 1_000, Duration::from_secs(60)).unwrap();
    p
}

fn limits(limiter: Arc<dyn RateLimiter>) -> RateLimits {
    RateLimits {
        limiter,
        policies: Arc::new(policies()),
        proxies: Arc::new(TrustedProxies::new(parse_cidrs("10.0.0.0/8").unwrap())),
        limited: Arc::new(LimitedRequests::new()),
        classify: Arc::new(|req| {
            if req.uri().path() == "/v1/auth/login" {
                RouteClass::Login
            } else {
                RouteClass::Read
            }
        }),
    }
}

fn app(limits: RateLimits, allow: &str) -> Router {
    let admin = Router::new()
        .route("/v1/admin/audit", get(|| async { "audit" }))
        .layer(from_fn_with_state(
            AdminAllowlist {
                nets: Arc::new(parse_cidrs(allow).unwrap()),
                proxies: limits.proxies.clone(),
            },
            admin_allowlist,
        ));
    Router::new()
        .route("/v1/auth/login", post(|| async { "token" }))
        .route("/v1/wallets", get(|| async { "[]" }))
        .merge(admin)
        .layer(from_fn_with_state(limits, enforce))
}

fn request(method: &str, path: &str, peer: &str, xff: Option<&str>) -> Request<Body> {
    let mut req = Request::builder().method(method).uri(path);
    if let Some(x) = xff {
        req = req.header("x-forwarded-for", x);
    }
    let mut req = req.body(Body::empty()).unwrap();
    let ip: std::net::IpAddr = peer.parse().unwrap();
    let addr = SocketAddr::new(ip, 40000);
    req.extensions_mut().insert(ConnectInfo(addr));
    req
}

async fn body_json(resp: axum::response::Response) -> serde_json::Value {
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    serde_json::from_slice(&bytes).unwrap()
}

#[tokio::test]
async fn the_fourth_login_gets_a_429_problem_with_the_ietf_fields() {
    let l = limits(Arc::new(InProcessLimiter::new()));
    let limited = l.limited.clone();
    let app = app(l, "");
    for remaining in [2, 1, 0] {
        let resp = app
            .clone()
            .oneshot(request("POST", "/v1/auth/login", "203.0.113.9", None))
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let h = resp.headers();
        assert_eq!(
            h["ratelimit-policy"],
            "\"ip\";q=1000;w=60, \"login\";q=3;w=60"
        );
        assert!(
            h["ratelimit"]
                .to_str()
                .unwrap()
                .starts_with(&format!("\"login\";r={remaining};t="))
        );
    }
    let resp = app
        .clone()
        .oneshot(request("POST", "/v1/auth/login", "203.0.113.9", None))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(resp.headers()["content-type"], "application/problem+json");
    let retry: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        (1..=20).contains(&retry),
        "one unit of 3/min comes back within 20 s: {retry}"
    );
    assert!(
        resp.headers()["ratelimit"]
            .to_str()
            .unwrap()
            .starts_with("\"login\";r=0;t=")
    );
    let body = body_json(resp).await;
    assert_eq!(body["code"], "rate_limited");
    assert_eq!(body["status"], 429);

    // Another client is unaffected; reads are a different class.
    let other = app
        .clone()
        .oneshot(request("POST", "/v1/auth/login", "203.0.113.10", None))
        .await
        .unwrap();
    assert_eq!(other.status(), StatusCode::OK);
    let read = app
        .clone()
        .oneshot(request("GET", "/v1/wallets", "203.0.113.9", None))
        .await
        .unwrap();
    assert_eq!(read.status(), StatusCode::OK);

    // The refusal is counted for the aggregated audit event.
    let events = limited.drain(SystemTime::now() + Duration::from_secs(120), true);
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].details.get("count"), Some(&DetailValue::Int(1)));
}

#[tokio::test]
async fn an_ipv6_client_gets_one_budget_for_its_whole_64() {
    let app = app(limits(Arc::new(InProcessLimiter::new())), "");
    // A new address of the same /64 for every attempt does not escape the login budget.
    let mut statuses = Vec::new();
    for i in 1..=5 {
        let peer = format!("2001:db8:1:2:{i:x}::{i:x}");
        let resp = app
            .clone()
            .oneshot(request("POST", "/v1/auth/login", &peer, None))
            .await
            .unwrap();
        statuses.push(resp.status().as_u16());
    }
    assert_eq!(statuses, [200, 200, 200, 429, 429]);
    // The next /64 is another client.
    let resp = app
        .clone()
        .oneshot(request("POST", "/v1/auth/login", "2001:db8:1:3::1", None))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
}

#[tokio::test]
async fn forwarded_addresses_count_only_behind_trusted_proxies() {
    let app = app(limits(Arc::new(InProcessLimiter::new())), "");
    // Through the trusted proxy, each real client has its own budget even when the client
    // forges a leftmost entry.
    for i in 0..3 {
        let xff = format!("6.6.6.6, 198.51.100.{i}");
        let resp = app
            .clone()
            .oneshot(request("POST", "/v1/auth/login", "10.0.0.2", Some(&xff)))
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
    }
    // A client talking directly cannot pick its address by header: rotating forged values
    // does not escape its budget.
    let mut statuses = Vec::new();
    for i in 0..5 {
        let xff = format!("198.51.100.{}", 100 + i);
        let resp = app
            .clone()
            .oneshot(request(
                "POST",
                "/v1/auth/login",
                "203.0.113.77",
                Some(&xff),
            ))
            .await
            .unwrap();
        statuses.push(resp.status().as_u16());
    }
    assert_eq!(statuses, [200, 200, 200, 429, 429]);
}

mockall::mock! {
    #[derive(Debug)]
    Down {}
    #[async_trait]
    impl RateLimiter for Down {
        async fn check(&self, key: &str, policy: &Policy, cost: u32) -> Result<Decision, LimitError>;
        async fn peek(&self, key: &str, policy: &Policy) -> Result<Decision, LimitError>;
    }
}

#[tokio::test]
async fn a_limiter_that_fails_closed_gives_503_never_500() {
    let mut down = MockDown::new();
    down.expect_peek()
        .returning(|_, _| Err(LimitError::Unavailable("connection refused".into())));
    down.expect_check()
        .returning(|_, _, _| Err(LimitError::Unavailable("connection refused".into())));
    let app = app(limits(Arc::new(down)), "");
    let resp = app
        .oneshot(request("GET", "/v1/wallets", "203.0.113.9", None))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body = body_json(resp).await;
    assert_eq!(body["code"], "rate_limiter_unavailable");
    assert!(
        !body.to_string().contains("connection refused"),
        "no internals in the body"
    );
}

#[tokio::test]
async fn admin_routes_answer_only_allowed_networks() {
    let app = app(
        limits(Arc::new(InProcessLimiter::new())),
        "192.0.2.0/24, 2001:db8::/32",
    );
    let ok = app
        .clone()
        .oneshot(request("GET", "/v1/admin/audit", "192.0.2.44", None))
        .await
        .unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
    let v6 = app
        .clone()
        .oneshot(request("GET", "/v1/admin/audit", "2001:db8::5", None))
        .await
        .unwrap();
    assert_eq!(v6.status(), StatusCode::OK);
    let refused = app
        .clone()
        .oneshot(request("GET", "/v1/admin/audit", "203.0.113.9", None))
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    assert_eq!(body_json(refused).await["code"], "ip_not_allowed");
    // A forged X-Forwarded-For from an untrusted peer does not get in.
    let forged = app
        .clone()
        .oneshot(request(
            "GET",
            "/v1/admin/audit",
            "203.0.113.9",
            Some("192.0.2.1"),
        ))
        .await
        .unwrap();
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    // Through the trusted proxy, the forwarded client address decides.
    let proxied = app
        .oneshot(request(
            "GET",
            "/v1/admin/audit",
            "10.0.0.2",
            Some("192.0.2.1"),
        ))
        .await
        .unwrap();
    assert_eq!(proxied.status(), StatusCode::OK);
}
