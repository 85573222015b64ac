//! Extractors: the signed-in caller, JSON bodies that refuse unknown fields with a problem, path
//! ids, and the `Idempotency-Key` header.

use axum::body::Bytes;
use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use coffer_auth::accounts::RequestContext;
use coffer_auth::user::UserId;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};
use zeroize::Zeroizing;

use super::error::ApiError;
use super::state::ApiState;

/// The caller of a route that needs a bearer token: verified (signature, claims, revocation) by
/// the [`Authenticator`](coffer_auth::Authenticator), Coffer's own token, a configured external
/// issuer's, or an API key (as a bearer token or in `X-API-Key`). Its fields are the domain
/// principal's.
#[derive(Debug, Clone)]
pub struct Principal(pub coffer_auth::Principal);

impl std::ops::Deref for Principal {
    type Target = coffer_auth::Principal;

    fn deref(&self) -> &coffer_auth::Principal {
        &self.0
    }
}

impl Principal {
    /// Verifies `token` through the state's authenticator.
    ///
    /// # Errors
    /// 401 with the token's reason; 503 when a dependency cannot be asked.
    pub async fn verify(state: &ApiState, token: &str) -> Result<Self, ApiError> {
        Ok(Self(state.authenticator.authenticate(token).await?))
    }
}

impl FromRequestParts<ApiState> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, ApiError> {
        if let Some(super::state::Authenticated(principal)) =
            parts.extensions.get::<super::state::Authenticated>()
        {
            return Ok(principal.clone());
        }
        if !parts.headers.contains_key(header::AUTHORIZATION)
            && !parts.headers.contains_key(API_KEY)
        {
            return Err(ApiError::unauthenticated(
                "missing_token",
                "send Authorization: Bearer <access token or API key>, or X-API-Key: <API key>",
            ));
        }
        let token = credential(&parts.headers).ok_or_else(|| {
            ApiError::unauthenticated(
                "malformed",
                "the Authorization header is not a bearer token",
            )
        })?;
        Self::verify(state, token).await
    }
}

/// The header a service client may send its API key in instead of `Authorization: Bearer`.
pub const API_KEY: header::HeaderName = header::HeaderName::from_static("x-api-key");

/// What a request authenticates with: the bearer token of its `Authorization` header (an access
/// token or an API key), else its `X-API-Key` header.
#[must_use]
pub fn credential(headers: &axum::http::HeaderMap) -> Option<&str> {
    if headers.contains_key(header::AUTHORIZATION) {
        return bearer(headers);
    }
    let key = headers.get(API_KEY)?.to_str().ok()?.trim();
    (!key.is_empty()).then_some(key)
}

/// The bearer token of an `Authorization` header, if it carries one.
#[must_use]
pub fn bearer(headers: &axum::http::HeaderMap) -> Option<&str> {
    let (scheme, token) = headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// A JSON body: `Content-Type: application/json`, within the body limit, every field known.
/// Refusals are problems: 415, 413, 400 `malformed_json` (not JSON), 422 `invalid_request`
/// (unknown field, wrong type, missing field). A type error's message is not echoed: it could
/// quote a PIN or password.
#[derive(Debug, Clone)]
pub struct Json<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Json<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let is_json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"));
        if !is_json {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "JSON expected",
            )
            .detail("send Content-Type: application/json"));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "payload_too_large",
                    "Body too large",
                )
            } else {
                ApiError::new(StatusCode::BAD_REQUEST, "malformed_body", "Unreadable body")
            }
        })?;
        parse_json(&bytes).map(Json)
    }
}

/// A JSON body that may be absent (no body is `T::default()`); when present, checked as
/// [`Json`] checks it.
#[derive(Debug, Clone)]
pub struct OptionalJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Default> FromRequest<S> for OptionalJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let h = req.headers();
        let empty = h
            .get(header::CONTENT_LENGTH)
            .map_or(!h.contains_key(header::TRANSFER_ENCODING), |v| {
                v.as_bytes() == b"0"
            });
        if empty {
            return Ok(Self(T::default()));
        }
        Json::<T>::from_request(req, state)
            .await
            .map(|Json(t)| Self(t))
    }
}

/// A path id: a segment that is not valid text is a 404, like any unknown id.
#[derive(Debug, Clone)]
pub struct PathId(pub String);

impl<S: Send + Sync> FromRequestParts<S> for PathId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Path::<String>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(id)| Self(id))
            .map_err(|_| ApiError::new(StatusCode::NOT_FOUND, "not_found", "No such resource"))
    }
}

/// Parses a body.
///
/// # Errors
/// 400 `malformed_json` or 422 `invalid_request`.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(bytes).map_err(|e| {
        use serde_json::error::Category;
        match e.classify() {
            Category::Data => {
                let message = e.to_string();
                let detail = if message.starts_with("unknown field")
                    || message.starts_with("missing field")
                {
                    // Field names only: safe to echo.
                    message
                } else {
                    format!(
                        "a field has the wrong type or an out-of-range value (line {}, column {})",
                        e.line(),
                        e.column()
                    )
                };
                ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "invalid_request",
                    "Invalid request",
                )
                .detail(detail)
            }
            Category::Syntax | Category::Eof | Category::Io => {
                ApiError::new(StatusCode::BAD_REQUEST, "malformed_json", "Malformed JSON").detail(
                    format!("not valid JSON at line {}, column {}", e.line(), e.column()),
                )
            }
        }
    })
}

/// Where a request came from, for the audit log: the client address the rate-limit layer
/// decided on (trusting `X-Forwarded-For` only from configured proxies), else the socket peer;
/// and the request id.
#[derive(Debug, Clone)]
pub struct Ctx(pub RequestContext);

impl<S: Send + Sync> FromRequestParts<S> for Ctx {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let client_ip = parts
            .extensions
            .get::<crate::ratelimit::ClientIp>()
            .map(|c| c.0)
            .or_else(|| {
                parts
                    .extensions
                    .get::<ConnectInfo<SocketAddr>>()
                    .map(|c| c.0.ip())
            });
        let request_id = parts
            .headers
            .get(super::state::REQUEST_ID)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        Ok(Self(RequestContext {
            client_ip,
            request_id,
        }))
    }
}

/// The `Idempotency-Key` header, required on money-moving POSTs, as sent: the handler parses it
/// into a [`coffer_ledger::IdempotencyKey`] with the rest of the request.
#[derive(Debug, Clone)]
pub struct IdempotencyHeader(pub String);

impl<S: Send + Sync> FromRequestParts<S> for IdempotencyHeader {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let value = parts.headers.get("idempotency-key").ok_or_else(|| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "idempotency_key_required",
                "Idempotency-Key required",
            )
            .detail("money-moving requests carry an Idempotency-Key header (a UUID, say)")
        })?;
        let key = value
            .to_str()
            .map_err(|_| ApiError::invalid("Idempotency-Key", "visible ASCII only"))?;
        Ok(Self(key.to_owned()))
    }
}

/// A PIN as a request body carries it: its text is zeroized when the body is dropped, and the
/// handler parses it into a [`coffer_ledger::Pin`] (zeroized too) with [`PinText::parse`]. In a
/// body it is described as a string (`#[schema(value_type = String)]`).
pub struct PinText(Zeroizing<String>);

impl PinText {
    /// The PIN, parsed: a malformed one is a 422 on the field `pin`, as the ledger names it.
    ///
    /// # Errors
    /// [`ApiError::invalid`].
    pub fn parse(&self) -> Result<coffer_ledger::Pin, ApiError> {
        Ok(coffer_ledger::parse_pin(&self.0)?)
    }
}

impl std::fmt::Debug for PinText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PinText(..)")
    }
}

impl<'de> Deserialize<'de> for PinText {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(|s| Self(Zeroizing::new(s)))
    }
}

/// Parses a path id, answering 404 for anything that is not one (no such resource).
pub fn wallet_id(raw: &str) -> Result<coffer_ledger::WalletId, ApiError> {
    coffer_ledger::WalletId::parse(raw)
        .map_err(|_| ApiError::new(StatusCode::NOT_FOUND, "wallet_not_found", "No such wallet"))
}

/// As [`wallet_id`], for holds.
pub fn hold_id(raw: &str) -> Result<coffer_ledger::HoldId, ApiError> {
    coffer_ledger::HoldId::parse(raw)
        .map_err(|_| ApiError::new(StatusCode::NOT_FOUND, "hold_not_found", "No such hold"))
}

/// As [`wallet_id`], for transactions.
pub fn transaction_id(raw: &str) -> Result<coffer_ledger::TransactionId, ApiError> {
    coffer_ledger::TransactionId::parse(raw).map_err(|_| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "transaction_not_found",
            "No such transaction",
        )
    })
}

/// As [`wallet_id`], for users.
pub fn user_id(raw: &str) -> Result<UserId, ApiError> {
    UserId::parse(raw)
        .map_err(|_| ApiError::new(StatusCode::NOT_FOUND, "user_not_found", "No such user"))
}
