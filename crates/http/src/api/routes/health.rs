//! `health`: liveness (`/healthz`), readiness (`/readyz`: each dependency's check, 503 when
//! one fails, the cause logged and not answered) and `/metrics` (Prometheus text, behind
//! `system:metrics`).

use axum::Json as JsonResponse;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use coffer_auth::Permission;
use serde_json::json;

use super::shared::{ApiResult, ok};
use crate::api::extract::Principal;
use crate::api::openapi::ProblemDoc;
use crate::api::state::ApiState;

#[utoipa::path(get, path = "/metrics", tag = "health", responses((status = 200, description = "Prometheus text format", body = String, content_type = "text/plain"), (status = 401, description = "no valid access token", body = ProblemDoc, content_type = "application/problem+json"), (status = 403, description = "the role lacks the permission", body = ProblemDoc, content_type = "application/problem+json")), security(("bearer" = [])))]
pub(in crate::api) async fn metrics(
    State(state): State<ApiState>,
    principal: Principal,
) -> ApiResult {
    principal.require(&state, Permission::SystemMetrics)?;
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

#[utoipa::path(get, path = "/healthz", tag = "health", responses((status = 200, description = "alive", body = Object)))]
pub(in crate::api) async fn healthz() -> ApiResult {
    ok(json!({ "status": "ok" }))
}

#[utoipa::path(get, path = "/readyz", tag = "health", responses((status = 200, description = "ready", body = Object), (status = 503, description = "a dependency does not answer", body = Object)))]
pub(in crate::api) async fn readyz(State(state): State<ApiState>) -> ApiResult {
    let checks = state.readiness.check().await;
    let ready = checks.iter().all(|(_, r)| r.is_ok());
    let body = json!({
        "status": if ready { "ready" } else { "not_ready" },
        "checks": checks.iter().map(|(name, r)| (name.to_string(), json!(match r {
            Ok(()) => "ok",
            Err(_) => "failing",
        }))).collect::<serde_json::Map<_, _>>(),
    });
    for (name, r) in &checks {
        if let Err(e) = r {
            tracing::warn!(check = name, error = %e, "not ready");
        }
    }
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    Ok((status, JsonResponse(body)).into_response())
}
