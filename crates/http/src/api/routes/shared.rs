//! What the handlers share: their result type, the three success answers (201 with a body, 200
//! with a body, 204) and the audit entity of a user id. A leaf: it imports none of its siblings.

use axum::Json as JsonResponse;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use coffer_audit::EntityId;

use crate::api::error::ApiError;

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

#[allow(clippy::expect_used)]
pub(super) fn entity(id: &str) -> EntityId {
    EntityId::parse(id).expect("a UUID is an entity token")
}
