//! The REST API: the router, its middleware and the modules behind them.
//!
//! [`router`] wires every route to its handler in `routes` (one module per OpenAPI tag) and wraps
//! them in this stack, outside in:
//!
//! 1. request ids: a client's `x-request-id` is kept when it is 1 to 64 characters of
//!    `[A-Za-z0-9._-]`, otherwise one is generated; it is echoed in the response;
//! 2. tracing: one span per request with its method, route template (never the path: ids, not
//!    values, and no query strings) and request id;
//! 3. panics, caught and answered as opaque 500 problems;
//! 4. the body limit ([`Limits::body_bytes`]);
//! 5. the timeout ([`Limits::request_timeout`]): the handler runs in a task of its own and is
//!    left to finish, so no write stops half-way; only the wait is abandoned, with a 503
//!    `timeout` problem. The request id goes into every audit record the handler's services
//!    write;
//! 6. request metrics per route template, method and status (`metrics::record`);
//! 7. `authenticate`: a bearer token is verified once, before rate limiting, so per-user budgets
//!    count verified users only; the caller is left in the request as [`Authenticated`];
//! 8. when configured, the rate-limit layer ([`crate::ratelimit::enforce`]), with each request's
//!    class from [`classify`] (login, register, refresh, money-out, admin, write, read);
//! 9. on the operators' routes (`/v1/admin/…`, `/metrics`), when configured, the network
//!    allowlist ([`crate::ratelimit::admin_allowlist`]): 403 `ip_not_allowed` from anywhere
//!    else, the client address read through the trusted proxies as the rate limiter reads it.
//!
//! Every response to a request that went wrong is a problem (`application/problem+json`) with a
//! stable `code`: the handlers' errors ([`error::ApiError`]), unknown routes and methods, bodies
//! over the limit, requests over the time limit and panics alike. Every request carries an id
//! (`x-request-id`, accepted from the client or generated), echoed in the response and recorded
//! in its log span.
//!
//! The modules of this folder import from each other, never from this one: what they share
//! ([`ApiState`], [`Authenticated`], [`Readiness`], [`REQUEST_ID`]) is in `state`, re-exported
//! here at the paths the crate has always published.

use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

mod docs;
pub mod error;
pub mod extract;
pub mod metrics;
pub mod openapi;
mod routes;
mod state;
mod views;

use error::ApiError;
pub use state::{ApiState, Authenticated, REQUEST_ID, Readiness};

/// Limits the router enforces.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest request body.
    pub body_bytes: usize,
    /// Longest a request may take (then 503 `timeout`).
    pub request_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            body_bytes: 64 * 1024,
            request_timeout: Duration::from_secs(30),
        }
    }
}

/// Verifies a bearer token if the request has one, before rate limiting, so per-user limits
/// count verified users only (a forged `sub` cannot spend another user's budget). A request
/// whose token fails is limited as anonymous and refused by the handler's extractor.
///
/// A request made with an API key is limited by the key (its own budget, else the configured
/// per-key policy), and every audit record its handler writes names the key.
async fn authenticate(State(state): State<ApiState>, mut req: Request, next: Next) -> Response {
    use coffer_ratelimit::policy::Requester;
    let token = extract::credential(req.headers()).map(str::to_owned);
    let Some(principal) = (match token {
        Some(token) => extract::Principal::verify(&state, &token).await.ok(),
        None => None,
    }) else {
        return next.run(req).await;
    };
    let key = principal.api_key.as_ref().map(|k| k.id.to_string());
    let requester = match &principal.api_key {
        Some(k) => Requester::ApiKey {
            id: k.id.to_string(),
            policy: k.rate_per_minute.and_then(|r| {
                coffer_ratelimit::Policy::new("api_key", r, Duration::from_secs(60)).ok()
            }),
        },
        None => Requester::User(principal.user.to_string()),
    };
    req.extensions_mut().insert(requester);
    req.extensions_mut().insert(Authenticated(principal));
    match key.and_then(|k| coffer_audit::Code::parse(&k).ok()) {
        Some(key) => coffer_audit::by_api_key(key, next.run(req)).await,
        None => next.run(req).await,
    }
}

/// The rate-limit class of a request: logins (and the password change and reset and the second
/// factor's routes, which take a password, a reset token or a code), registrations, refreshes and
/// wallet openings have their own budgets, anything that takes a PIN is money-out, admin routes
/// are admin.
#[must_use]
pub fn classify(req: &Request) -> coffer_ratelimit::policy::RouteClass {
    use coffer_ratelimit::policy::RouteClass as C;
    let path = req.uri().path();
    let method = req.method();
    match path {
        "/v1/auth/login"
        | "/v1/auth/password"
        | "/v1/auth/password/reset"
        | "/v1/auth/totp/enroll"
        | "/v1/auth/totp/confirm"
        | "/v1/auth/totp/disable" => C::Login,
        "/v1/auth/register" => C::Register,
        "/v1/wallets" if method == axum::http::Method::POST => C::OpenWallet,
        "/v1/auth/refresh" => C::Refresh,
        _ if path.starts_with("/v1/admin/") => C::Admin,
        _ if path.ends_with("/withdrawals")
            || path.ends_with("/transfers")
            || path.ends_with("/holds")
            || path.ends_with("/pin") =>
        {
            C::MoneyOut
        }
        _ if method == axum::http::Method::GET || method == axum::http::Method::HEAD => C::Read,
        _ => C::Write,
    }
}

/// The API's routes with their middleware; `rate` adds the rate-limit layer, and `admin`
/// keeps the operators' routes (`/v1/admin/…` and `/metrics`) to the networks it allows.
pub fn router(
    state: ApiState,
    limits: Limits,
    rate: Option<crate::ratelimit::RateLimits>,
    admin: Option<crate::ratelimit::AdminAllowlist>,
) -> Router {
    use routes::limits as wallet_limits;
    use routes::{admin, api_keys, auth, erasure, health, holds, money, wallets, webhooks};
    let operators = Router::new()
        .route("/v1/admin/wallets", get(admin::search_wallets))
        .route("/v1/admin/wallets/{id}/freeze", post(admin::freeze))
        .route("/v1/admin/wallets/{id}/unfreeze", post(admin::unfreeze))
        .route("/v1/admin/wallets/{id}/close", post(admin::close))
        .route("/v1/admin/wallets/{id}/limits", put(wallet_limits::set))
        .route("/v1/admin/wallets/{id}/pin/unlock", post(admin::unlock_pin))
        .route("/v1/admin/wallets/{id}/pin/reset", post(admin::reset_pin))
        .route("/v1/admin/transactions/{id}/reversal", post(admin::reverse))
        .route("/v1/admin/users/{id}/roles", post(admin::set_roles))
        .route("/v1/admin/users/{id}/erase", post(erasure::erase_user))
        .route(
            "/v1/admin/users/{id}/password-reset",
            post(admin::issue_password_reset),
        )
        .route(
            "/v1/admin/users/{id}/sessions/revoke",
            post(admin::revoke_user_sessions),
        )
        .route(
            "/v1/admin/api-keys",
            post(api_keys::create).get(api_keys::list),
        )
        .route(
            "/v1/admin/api-keys/{id}",
            get(api_keys::get).delete(api_keys::revoke),
        )
        .route(
            "/v1/admin/webhooks",
            post(webhooks::create).get(webhooks::list),
        )
        .route(
            "/v1/admin/webhooks/{id}",
            get(webhooks::get)
                .patch(webhooks::update)
                .delete(webhooks::delete),
        )
        .route(
            "/v1/admin/webhooks/{id}/rotate-secret",
            post(webhooks::rotate_secret),
        )
        .route(
            "/v1/admin/webhooks/{id}/deliveries",
            get(webhooks::deliveries),
        )
        .route(
            "/v1/admin/webhooks/{id}/deliveries/{delivery_id}/retry",
            post(webhooks::retry),
        )
        .route("/v1/admin/webhooks/{id}/test", post(webhooks::test))
        .route("/v1/admin/keys", get(admin::keys_overview))
        .route("/v1/admin/keys/rotate", post(admin::request_rotation))
        .route("/v1/admin/audit", get(admin::audit_events))
        .route("/v1/admin/audit/verify", get(admin::audit_verify))
        .route("/metrics", get(health::metrics));
    let operators = match admin {
        Some(allowed) => operators.route_layer(middleware::from_fn_with_state(
            allowed,
            crate::ratelimit::admin_allowlist,
        )),
        None => operators,
    };
    let api = Router::new()
        .route("/v1/auth/register", post(auth::register))
        .route("/v1/auth/login", post(auth::login))
        .route("/v1/auth/refresh", post(auth::refresh))
        .route("/v1/auth/logout", post(auth::logout))
        .route("/v1/auth/sessions/revoke-all", post(auth::revoke_all))
        .route("/v1/auth/password", post(auth::change_password))
        .route("/v1/auth/password/reset", post(auth::reset_password))
        .route("/v1/auth/totp/enroll", post(auth::totp_enroll))
        .route("/v1/auth/totp/confirm", post(auth::totp_confirm))
        .route("/v1/auth/totp/disable", post(auth::totp_disable))
        .route("/.well-known/jwks.json", get(auth::jwks))
        .route("/v1/me", get(auth::me))
        .route(
            "/v1/wallets",
            post(wallets::open_wallet).get(wallets::list_wallets),
        )
        .route("/v1/wallets/{id}", get(wallets::get_wallet))
        .route("/v1/wallets/{id}/deposits", post(money::deposit))
        .route("/v1/wallets/{id}/withdrawals", post(money::withdraw))
        .route("/v1/wallets/{id}/transfers", post(money::transfer))
        .route(
            "/v1/wallets/{id}/holds",
            post(holds::place).get(holds::list),
        )
        .route("/v1/holds/{id}", get(holds::get))
        .route("/v1/holds/{id}/capture", post(holds::capture))
        .route("/v1/holds/{id}/void", post(holds::void))
        .route("/v1/wallets/{id}/transactions", get(wallets::history))
        .route("/v1/wallets/{id}/limits", get(wallet_limits::get))
        .route("/v1/wallets/{id}/pin", put(wallets::change_pin))
        .route("/v1/transactions/{id}", get(wallets::get_transaction))
        .merge(operators)
        .route(
            "/openapi.json",
            get(|| async {
                (
                    [(axum::http::header::CONTENT_TYPE, "application/json")],
                    openapi::openapi_json(),
                )
            }),
        )
        .merge(docs::routes())
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state.clone());
    // Layers run outside-in in the reverse order of these calls: request id, tracing, panics,
    // body limit, timeout, metrics, authentication, then rate limiting (which keys by the
    // verified user), then the handler.
    let api = match rate {
        Some(rate) => api.layer(middleware::from_fn_with_state(
            rate,
            crate::ratelimit::enforce,
        )),
        None => api,
    };
    let recorder = state.metrics.clone();
    api.layer(middleware::from_fn_with_state(state, authenticate))
        .layer(middleware::from_fn_with_state(recorder, metrics::record))
        .layer(middleware::from_fn_with_state(
            limits.request_timeout,
            timeout,
        ))
        .layer(DefaultBodyLimit::max(limits.body_bytes))
        .layer(CatchPanicLayer::custom(|_| {
            ApiError::internal(&"a handler panicked").into_response()
        }))
        .layer(TraceLayer::new_for_http().make_span_with(|req: &Request| {
            let route = req
                .extensions()
                .get::<MatchedPath>()
                .map_or("unmatched", MatchedPath::as_str)
                .to_owned();
            let id = req
                .headers()
                .get(&REQUEST_ID)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("-")
                .to_owned();
            // The path template, never the path: ids, not values, and no query strings.
            tracing::info_span!("request", method = %req.method(), route, request_id = id)
        }))
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
        .layer(middleware::from_fn(sanitize_request_id))
}

/// Answers 503 `timeout` when a request takes longer than `limit`. The handler runs in a task of
/// its own and is left to finish: dropping it mid-way could stop a write between two steps (a
/// counted PIN attempt not yet released, a wallet opened but not answered), so only the wait
/// is abandoned, never the work.
async fn timeout(State(limit): State<Duration>, req: Request, next: Next) -> Response {
    // The request id (accepted or generated by the layers outside) goes into every audit record
    // the handler's services write.
    let id = req
        .headers()
        .get(&REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| coffer_audit::Code::parse(v).ok());
    let work = next.run(req);
    let handler = match id {
        Some(id) => tokio::spawn(coffer_audit::in_request(id, work)),
        None => tokio::spawn(work),
    };
    match tokio::time::timeout(limit, handler).await {
        Ok(Ok(response)) => response,
        Ok(Err(e)) => ApiError::internal(&e).into_response(),
        Err(_) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "timeout",
            "Request timed out",
        )
        .detail(
            "the request took too long; it may still complete: retry money requests with the \
             same Idempotency-Key, and read before repeating anything else",
        )
        .into_response(),
    }
}

/// Drops a client's `x-request-id` unless it is 1 to 64 characters of `[A-Za-z0-9._-]`, so one
/// is generated instead: ids in logs are short and unambiguous.
async fn sanitize_request_id(mut req: Request, next: Next) -> Response {
    let acceptable = req.headers().get(&REQUEST_ID).is_none_or(|v| {
        let b = v.as_bytes();
        (1..=64).contains(&b.len())
            && b.iter()
                .all(|c| c.is_ascii_alphanumeric() || b"._-".contains(c))
    });
    if !acceptable {
        req.headers_mut().remove(&REQUEST_ID);
    }
    next.run(req).await
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "No such route")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "Method not allowed",
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use axum::body::Body;
    use coffer_ratelimit::policy::RouteClass;

    use super::classify;

    fn class(method: &str, path: &str) -> RouteClass {
        let req = axum::http::Request::builder()
            .method(method)
            .uri(path)
            .body(Body::empty())
            .unwrap();
        classify(&req)
    }

    /// What takes a password or a second-factor code is paced as strictly as a login.
    #[test]
    fn the_second_factors_routes_are_in_the_login_class() {
        for path in [
            "/v1/auth/login",
            "/v1/auth/password",
            "/v1/auth/password/reset",
            "/v1/auth/totp/enroll",
            "/v1/auth/totp/confirm",
            "/v1/auth/totp/disable",
        ] {
            assert_eq!(class("POST", path), RouteClass::Login, "{path}");
        }
        assert_eq!(class("POST", "/v1/auth/logout"), RouteClass::Write);
        assert_eq!(class("POST", "/v1/wallets/x/pin"), RouteClass::MoneyOut);
        assert_eq!(class("POST", "/v1/wallets"), RouteClass::OpenWallet);
        assert_eq!(class("GET", "/v1/wallets"), RouteClass::Read);
    }
}
