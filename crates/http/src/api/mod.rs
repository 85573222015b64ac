//! The REST API (DESIGN.md §3): the router, its state and its middleware.
//!
//! Every response to a request that went wrong is a problem (`application/problem+json`) with a
//! stable `code`: the handlers' errors ([`error::ApiError`]), unknown routes and methods, bodies
//! over the limit, requests over the time limit and panics alike. Every request carries an id
//! (`x-request-id`, accepted from the client or generated), echoed in the response and recorded
//! in its log span.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{HeaderName, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use coffer_audit::ObservedAuditLog;
use coffer_auth::MfaRule;
use coffer_auth::accounts::Accounts;
use coffer_ledger::Ledger;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

pub mod error;
pub mod extract;
pub mod metrics;
pub mod openapi;
mod routes;
mod views;

use error::ApiError;

/// The request id header.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// What `/readyz` asks: each dependency's name and whether it answers.
#[async_trait]
pub trait Readiness: Send + Sync {
    /// One entry per dependency (database, key provider, Redis when configured).
    async fn check(&self) -> Vec<(&'static str, Result<(), String>)>;
}

/// What the handlers share.
#[derive(Clone)]
pub struct ApiState {
    /// The ledger.
    pub ledger: Arc<Ledger>,
    /// Accounts and tokens.
    pub accounts: Arc<Accounts>,
    /// Master key rotation: status and requests (a worker runs them).
    pub rotation: Arc<coffer_rotation::Rotator>,
    /// Configured external OIDC issuers, whose tokens are accepted next to Coffer's own.
    pub oidc: Option<Arc<coffer_auth_oidc::OidcIssuers>>,
    /// The audit log (admin reads and verification).
    pub audit: Arc<ObservedAuditLog>,
    /// The step-up rule for money-out.
    pub mfa: MfaRule,
    /// Readiness checks.
    pub readiness: Arc<dyn Readiness>,
    /// The metrics registry.
    pub metrics: Arc<metrics::Metrics>,
}

impl std::fmt::Debug for ApiState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiState").finish_non_exhaustive()
    }
}

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

/// The caller a request's token proved, verified once by [`authenticate`] (the rate limiter keys
/// by its user; the `Principal` extractor reuses it).
#[derive(Debug, Clone)]
pub struct Authenticated(pub extract::Principal);

/// Verifies a bearer token if the request has one, before rate limiting, so per-user limits
/// count verified users only (a forged `sub` cannot spend another user's budget). A request
/// whose token fails is limited as anonymous and refused by the handler's extractor.
async fn authenticate(State(state): State<ApiState>, mut req: Request, next: Next) -> Response {
    let token = extract::bearer(req.headers()).map(str::to_owned);
    if let Some(token) = token
        && let Ok(principal) = extract::Principal::verify(&state, &token).await
    {
        req.extensions_mut()
            .insert(coffer_ratelimit::policy::Caller::User(
                principal.user.to_string(),
            ));
        req.extensions_mut().insert(Authenticated(principal));
    }
    next.run(req).await
}

/// The rate-limit class of a request: logins, registrations and refreshes have their own
/// budgets, anything that takes a PIN is money-out, admin routes are admin.
#[must_use]
pub fn classify(req: &Request) -> coffer_ratelimit::policy::RouteClass {
    use coffer_ratelimit::policy::RouteClass as C;
    let path = req.uri().path();
    let method = req.method();
    match path {
        "/v1/auth/login" => C::Login,
        "/v1/auth/register" => C::Register,
        "/v1/auth/refresh" => C::Refresh,
        _ if path.starts_with("/v1/admin/") => C::Admin,
        _ if path.ends_with("/withdrawals")
            || path.ends_with("/transfers")
            || path.ends_with("/pin") =>
        {
            C::MoneyOut
        }
        _ if method == axum::http::Method::GET || method == axum::http::Method::HEAD => C::Read,
        _ => C::Write,
    }
}

/// The API's routes with their middleware; `rate` adds the rate-limit layer.
pub fn router(
    state: ApiState,
    limits: Limits,
    rate: Option<crate::ratelimit::RateLimits>,
) -> Router {
    use routes as r;
    let api = Router::new()
        .route("/v1/auth/register", post(r::register))
        .route("/v1/auth/login", post(r::login))
        .route("/v1/auth/refresh", post(r::refresh))
        .route("/v1/auth/logout", post(r::logout))
        .route("/v1/auth/sessions/revoke-all", post(r::revoke_all))
        .route("/v1/auth/totp/enroll", post(r::totp_enroll))
        .route("/v1/auth/totp/confirm", post(r::totp_confirm))
        .route("/v1/auth/totp/disable", post(r::totp_disable))
        .route("/.well-known/jwks.json", get(r::jwks))
        .route("/v1/me", get(r::me))
        .route("/v1/wallets", post(r::open_wallet).get(r::list_wallets))
        .route("/v1/wallets/{id}", get(r::get_wallet))
        .route("/v1/wallets/{id}/deposits", post(r::deposit))
        .route("/v1/wallets/{id}/withdrawals", post(r::withdraw))
        .route("/v1/wallets/{id}/transfers", post(r::transfer))
        .route("/v1/wallets/{id}/transactions", get(r::history))
        .route("/v1/wallets/{id}/pin", put(r::change_pin))
        .route("/v1/transactions/{id}", get(r::get_transaction))
        .route("/v1/admin/wallets/{id}/freeze", post(r::freeze))
        .route("/v1/admin/wallets/{id}/unfreeze", post(r::unfreeze))
        .route("/v1/admin/wallets/{id}/close", post(r::close))
        .route("/v1/admin/wallets/{id}/pin/unlock", post(r::unlock_pin))
        .route("/v1/admin/wallets/{id}/pin/reset", post(r::reset_pin))
        .route("/v1/admin/transactions/{id}/reversal", post(r::reverse))
        .route("/v1/admin/users/{id}/roles", post(r::set_roles))
        .route(
            "/v1/admin/users/{id}/sessions/revoke",
            post(r::revoke_user_sessions),
        )
        .route("/v1/admin/keys", get(r::keys_overview))
        .route("/v1/admin/keys/rotate", post(r::request_rotation))
        .route("/v1/admin/audit", get(r::audit_events))
        .route("/v1/admin/audit/verify", get(r::audit_verify))
        .route(
            "/openapi.json",
            get(|| async {
                (
                    [(axum::http::header::CONTENT_TYPE, "application/json")],
                    openapi::openapi_json(),
                )
            }),
        )
        .route(
            "/docs",
            get(|| async { axum::response::Html(openapi::DOCS_PAGE) }),
        )
        .route("/metrics", get(r::metrics))
        .route("/healthz", get(r::healthz))
        .route("/readyz", get(r::readyz))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state.clone());
    // Layers run outside-in in the reverse order of these calls: request id, tracing, panics,
    // body limit, timeout, authentication, then rate limiting (which keys by the verified
    // user), then the handler.
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
