//! `health`: liveness (`/healthz`), readiness (`/readyz`: each dependency's check, 503 when
//! one fails, the cause logged and not answered) and `/metrics` (Prometheus text, behind
//! `system:metrics`).

use axum::Json as JsonResponse;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;

use super::shared::{ApiResult, ok};
use crate::api::extract::Principal;
use crate::api::state::ApiState;
use crate::api::views;
use crate::api::views::errors::{RoleErrors, ServiceErrors, Throttled};
use crate::problem::Problem;

#[utoipa::path(
    get,
    path = "/metrics",
    tag = "health",
    responses(
        (status = 200, description = "Prometheus text format", body = String, content_type = "text/plain"),
        RoleErrors,
        ServiceErrors,
    ),
    security(("bearer" = []))
)]
pub(in crate::api) async fn metrics(
    State(state): State<ApiState>,
    principal: Principal,
) -> ApiResult {
    state.admin.read_metrics(&principal)?;
    let text = state.metrics.render(state.ledger.pins().queue_depth());
    Ok((
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response())
}

#[utoipa::path(
    get,
    path = "/healthz",
    tag = "health",
    responses(
        (status = 200, description = "alive", body = inline(views::Health)),
        ServiceErrors,
    )
)]
pub(in crate::api) async fn healthz() -> ApiResult {
    ok(views::Health::OK)
}

#[utoipa::path(
    get,
    path = "/readyz",
    tag = "health",
    responses(
        (status = 200, description = "ready", body = inline(views::Ready)),
        (
            status = 503,
            description = "a dependency does not answer",
            content(
                (inline(views::Ready) = "application/json"),
                (Problem = "application/problem+json")
            )
        ),
        Throttled,
    )
)]
pub(in crate::api) async fn readyz(State(state): State<ApiState>) -> ApiResult {
    let checks = state.readiness.check().await;
    let body = views::Ready::new(&checks);
    for (name, r) in &checks {
        if let Err(e) = r {
            tracing::warn!(check = name, error = %e, "not ready");
        }
    }
    let status = if body.is_ready() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    Ok((status, JsonResponse(body)).into_response())
}
