//! The error sets: which problems an operation can answer, for the OpenAPI document. Each set
//! is a `#[derive(IntoResponses)]` type named in the operations' `responses(...)`; they are
//! disjoint (no status in two sets), so an operation lists the sets that apply and its own
//! refinements beside them. Every body is a [`Problem`] (`application/problem+json`, component
//! `ProblemDoc`).
//!
//! - [`ServiceErrors`]: what any operation can answer (429, 500, 503); [`Throttled`] is the same
//!   without 503, for the operations that document their own.
//! - Who may call: [`AuthErrors`] (a bearer token), [`RoleErrors`] (and a permission),
//!   [`WalletErrors`] (and a wallet in the path), [`PinErrors`] (and the wallet's PIN),
//!   [`MoneyOutErrors`] (money leaving a wallet), [`TransactionNotFound`], [`UserNotFound`],
//!   [`ApiKeyNotFound`], [`WebhookNotFound`].
//! - What was sent: [`JsonErrors`] (a JSON body), [`MoneyJsonErrors`] (and an
//!   `Idempotency-Key`), [`Invalid`] (a field, in the body, the query or a header).
//!
//! The types are never built: the derive reads their attributes.
#![allow(dead_code)]

use utoipa::IntoResponses;

use crate::problem::{PROBLEM_JSON, Problem};

/// What any operation can answer: too many requests, an internal error, a dependency down or
/// the request over its time limit.
#[derive(IntoResponses)]
pub enum ServiceErrors {
    /// rate limited (`rate_limited`): retry after `Retry-After` seconds
    #[response(status = 429, content_type = PROBLEM_JSON, headers(
        ("Retry-After" = u64, description = "seconds to wait"),
        ("RateLimit-Policy" = String, description = "the policies that apply: \"name\";q=limit;w=window seconds"),
        ("RateLimit" = String, description = "the refusing policy: \"name\";r=remaining;t=seconds to reset"),
    ))]
    RateLimited(Problem),
    /// an internal error (`internal`): logged with the request id
    #[response(status = 500, content_type = PROBLEM_JSON)]
    Internal(Problem),
    /// a dependency did not answer (`unavailable`) or the request took too long (`timeout`)
    #[response(status = 503, content_type = PROBLEM_JSON, headers(
        ("Retry-After" = u64, description = "seconds to wait, when a dependency did not answer"),
    ))]
    Unavailable(Problem),
}

/// [`ServiceErrors`] but 503, for operations that document their own.
#[derive(IntoResponses)]
pub enum Throttled {
    /// rate limited (`rate_limited`): retry after `Retry-After` seconds
    #[response(status = 429, content_type = PROBLEM_JSON, headers(
        ("Retry-After" = u64, description = "seconds to wait"),
        ("RateLimit-Policy" = String, description = "the policies that apply: \"name\";q=limit;w=window seconds"),
        ("RateLimit" = String, description = "the refusing policy: \"name\";r=remaining;t=seconds to reset"),
    ))]
    RateLimited(Problem),
    /// an internal error (`internal`): logged with the request id
    #[response(status = 500, content_type = PROBLEM_JSON)]
    Internal(Problem),
}

/// A bearer token is required.
#[derive(IntoResponses)]
pub enum AuthErrors {
    /// no valid access token
    #[response(status = 401, content_type = PROBLEM_JSON, headers(
        ("WWW-Authenticate" = String, description = "Bearer error=\"invalid_token\""),
    ))]
    Unauthenticated(Problem),
}

/// A bearer token whose roles grant the operation's permission.
#[derive(IntoResponses)]
pub enum RoleErrors {
    /// no valid access token
    #[response(status = 401, content_type = PROBLEM_JSON, headers(
        ("WWW-Authenticate" = String, description = "Bearer error=\"invalid_token\""),
    ))]
    Unauthenticated(Problem),
    /// the role lacks the permission
    #[response(status = 403, content_type = PROBLEM_JSON)]
    Forbidden(Problem),
}

/// [`RoleErrors`], on a wallet in the path.
#[derive(IntoResponses)]
pub enum WalletErrors {
    /// no valid access token
    #[response(status = 401, content_type = PROBLEM_JSON, headers(
        ("WWW-Authenticate" = String, description = "Bearer error=\"invalid_token\""),
    ))]
    Unauthenticated(Problem),
    /// the role lacks the permission
    #[response(status = 403, content_type = PROBLEM_JSON)]
    Forbidden(Problem),
    /// no such wallet (or not the caller's)
    #[response(status = 404, content_type = PROBLEM_JSON)]
    NotFound(Problem),
}

/// [`WalletErrors`], with the wallet's PIN.
#[derive(IntoResponses)]
pub enum PinErrors {
    /// no valid access token
    #[response(status = 401, content_type = PROBLEM_JSON, headers(
        ("WWW-Authenticate" = String, description = "Bearer error=\"invalid_token\""),
    ))]
    Unauthenticated(Problem),
    /// forbidden or pin_wrong
    #[response(status = 403, content_type = PROBLEM_JSON)]
    Forbidden(Problem),
    /// no such wallet (or not the caller's)
    #[response(status = 404, content_type = PROBLEM_JSON)]
    NotFound(Problem),
    /// pin_locked
    #[response(status = 423, content_type = PROBLEM_JSON)]
    Locked(Problem),
}

/// Money leaving a wallet: its PIN, past the day's threshold a second factor, its state.
#[derive(IntoResponses)]
pub enum MoneyOutErrors {
    /// no valid access token
    #[response(status = 401, content_type = PROBLEM_JSON, headers(
        ("WWW-Authenticate" = String, description = "Bearer error=\"invalid_token\""),
    ))]
    Unauthenticated(Problem),
    /// forbidden, pin_wrong or mfa_required
    #[response(status = 403, content_type = PROBLEM_JSON)]
    Forbidden(Problem),
    /// no such wallet (or not the caller's)
    #[response(status = 404, content_type = PROBLEM_JSON)]
    NotFound(Problem),
    /// frozen, closed, or idempotency conflict
    #[response(status = 409, content_type = PROBLEM_JSON)]
    Conflict(Problem),
    /// pin_locked
    #[response(status = 423, content_type = PROBLEM_JSON)]
    Locked(Problem),
}

/// no such transaction
#[derive(IntoResponses)]
#[response(status = 404, content_type = PROBLEM_JSON)]
pub struct TransactionNotFound(Problem);

/// no such hold, or not one of the caller's (`hold_not_found`)
#[derive(IntoResponses)]
#[response(status = 404, content_type = PROBLEM_JSON)]
pub struct HoldNotFound(Problem);

/// no such user
#[derive(IntoResponses)]
#[response(status = 404, content_type = PROBLEM_JSON)]
pub struct UserNotFound(Problem);

/// no such API key (`api_key_not_found`)
#[derive(IntoResponses)]
#[response(status = 404, content_type = PROBLEM_JSON)]
pub struct ApiKeyNotFound(Problem);

/// no such webhook endpoint (`webhook_not_found`)
#[derive(IntoResponses)]
#[response(status = 404, content_type = PROBLEM_JSON)]
pub struct WebhookNotFound(Problem);

/// A JSON body (`Content-Type: application/json`, within the body limit).
#[derive(IntoResponses)]
pub enum JsonErrors {
    /// malformed JSON (`malformed_json`) or an unreadable body (`malformed_body`)
    #[response(status = 400, content_type = PROBLEM_JSON)]
    Malformed(Problem),
    /// the body is over the size limit (`payload_too_large`)
    #[response(status = 413, content_type = PROBLEM_JSON)]
    TooLarge(Problem),
    /// the body is not `application/json` (`unsupported_media_type`)
    #[response(status = 415, content_type = PROBLEM_JSON)]
    UnsupportedMediaType(Problem),
}

/// [`JsonErrors`], on a money-moving POST that needs an `Idempotency-Key`.
#[derive(IntoResponses)]
pub enum MoneyJsonErrors {
    /// malformed JSON or body, or no `Idempotency-Key` (`idempotency_key_required`)
    #[response(status = 400, content_type = PROBLEM_JSON)]
    Malformed(Problem),
    /// the body is over the size limit (`payload_too_large`)
    #[response(status = 413, content_type = PROBLEM_JSON)]
    TooLarge(Problem),
    /// the body is not `application/json` (`unsupported_media_type`)
    #[response(status = 415, content_type = PROBLEM_JSON)]
    UnsupportedMediaType(Problem),
}

/// a field is invalid
#[derive(IntoResponses)]
#[response(status = 422, content_type = PROBLEM_JSON)]
pub struct Invalid(Problem);
