//! What the handlers share: their result type, the three success answers (201 with a body, 200
//! with a body, 204), and the parsing of what a money request and a currency arrive as. A leaf:
//! it imports none of its siblings.

use axum::Json as JsonResponse;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use coffer_ledger::{Currency, MoneyRequest};

use crate::api::error::ApiError;
use crate::api::state::ApiState;

pub(super) type ApiResult = Result<Response, ApiError>;

pub(super) fn created(body: impl serde::Serialize) -> ApiResult {
    Ok((StatusCode::CREATED, JsonResponse(body)).into_response())
}

pub(super) fn ok(body: impl serde::Serialize) -> ApiResult {
    Ok(JsonResponse(body).into_response())
}

pub(super) fn no_content() -> ApiResult {
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// A money request's fields, parsed as the ledger defines them (its maximum amount included).
pub(super) fn money_request(
    state: &ApiState,
    amount_minor: i64,
    currency: &str,
    memo: Option<&str>,
    idempotency_key: &str,
) -> Result<MoneyRequest, ApiError> {
    let max = state.ledger.config().max_amount_minor;
    Ok(MoneyRequest::parse(
        amount_minor,
        currency,
        memo,
        idempotency_key,
        max,
    )?)
}

/// A currency code (an unknown one is the ledger's `unknown_currency` refusal).
pub(super) fn currency(code: &str) -> Result<Currency, ApiError> {
    Currency::parse(code).map_err(|e| coffer_ledger::Error::from(e).into())
}

/// A page's query: its size and where it starts.
#[derive(serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(in crate::api) struct PageQuery {
    pub(super) limit: Option<u32>,
    pub(super) cursor: Option<String>,
}

/// Items per page when the query names no limit.
pub(super) const DEFAULT_PAGE: u32 = 50;
