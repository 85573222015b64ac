//! `admin`: webhook endpoints (`webhook:admin`). `POST /v1/admin/webhooks` registers one and
//! shows its signing secret once; `GET` lists them or shows one; `PATCH` changes its URL, event
//! types or enabled flag; `DELETE` removes it; `POST …/rotate-secret` makes a new secret (the
//! old one signs too for the configured overlap); `GET …/deliveries` pages its attempts;
//! `POST …/deliveries/{delivery_id}/retry` sends a delivery's event again; `POST …/test` sends
//! a `webhook.test` message. The rules are the use cases'.

use axum::extract::{Query, State};
use axum::http::StatusCode;
use coffer_ledger::domain::EventKind;
use coffer_outbox::{AttemptId, SinkId};
use coffer_usecases::{NewWebhook, WebhookPatch};
use serde::Deserialize;

use super::shared::{ApiResult, DEFAULT_PAGE, PageQuery, created, no_content, ok};
use crate::api::error::ApiError;
use crate::api::extract::{Json, PathId, Principal};
use crate::api::state::ApiState;
use crate::api::views;
use crate::api::views::errors::{Invalid, JsonErrors, RoleErrors, ServiceErrors, WebhookNotFound};

fn not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "webhook_not_found",
        "No such webhook endpoint",
    )
}

fn sink_id(raw: &str) -> Result<SinkId, ApiError> {
    SinkId::parse(raw).map_err(|_| not_found())
}

fn event_types(names: &[String]) -> Result<Vec<EventKind>, ApiError> {
    let mut kinds = Vec::with_capacity(names.len());
    for name in names {
        let kind = EventKind::parse(name).ok_or_else(|| {
            ApiError::invalid("event_types", format!("{name:?} is not an event type"))
        })?;
        if !kinds.contains(&kind) {
            kinds.push(kind);
        }
    }
    Ok(kinds)
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(in crate::api) struct CreateWebhookBody {
    /// `https://…` (plain `http` only where the deployment allows it), without credentials.
    url: String,
    /// Event types to deliver (`transaction.posted`, `hold.created`…); absent or empty: every
    /// type.
    event_types: Option<Vec<String>>,
    /// Default true.
    enabled: Option<bool>,
}

#[utoipa::path(
    post,
    path = "/v1/admin/webhooks",
    tag = "admin",
    request_body = CreateWebhookBody,
    responses(
        (status = 201, description = "the endpoint and its signing secret, shown this once", body = views::WebhookCreated),
        RoleErrors,
        JsonErrors,
        Invalid,
        ServiceErrors,
    ),
    security(("bearer" = []))
)]
pub(in crate::api) async fn create(
    State(state): State<ApiState>,
    principal: Principal,
    Json(b): Json<CreateWebhookBody>,
) -> ApiResult {
    let url = state.webhooks.parse_url(&b.url)?;
    let kinds = event_types(b.event_types.as_deref().unwrap_or_default())?;
    let new = NewWebhook {
        url,
        kinds,
        enabled: b.enabled.unwrap_or(true),
    };
    let (sink, secret) = state.webhooks.create(&principal, new).await?;
    created(views::WebhookCreated::new(&sink, &secret))
}

#[utoipa::path(
    get,
    path = "/v1/admin/webhooks",
    tag = "admin",
    responses(
        (status = 200, description = "every endpoint, oldest first", body = views::Webhooks),
        RoleErrors,
        ServiceErrors,
    ),
    security(("bearer" = []))
)]
pub(in crate::api) async fn list(State(state): State<ApiState>, principal: Principal) -> ApiResult {
    let sinks = state.webhooks.list(&principal).await?;
    ok(views::Webhooks::new(&sinks))
}

#[utoipa::path(
    get,
    path = "/v1/admin/webhooks/{id}",
    tag = "admin",
    params(("id" = String, Path, description = "the resource id")),
    responses(
        (status = 200, description = "the endpoint", body = views::Webhook),
        RoleErrors,
        WebhookNotFound,
        ServiceErrors,
    ),
    security(("bearer" = []))
)]
pub(in crate::api) async fn get(
    State(state): State<ApiState>,
    principal: Principal,
    PathId(id): PathId,
) -> ApiResult {
    let sink = state.webhooks.get(&principal, sink_id(&id)?).await?;
    ok(views::Webhook::from(&sink))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(in crate::api) struct UpdateWebhookBody {
    /// A new URL.
    url: Option<String>,
    /// New event types; empty: every type.
    event_types: Option<Vec<String>>,
    /// Enable (clearing a disabled endpoint's failures; its waiting events follow) or disable.
    enabled: Option<bool>,
}

#[utoipa::path(
    patch,
    path = "/v1/admin/webhooks/{id}",
    tag = "admin",
    params(("id" = String, Path, description = "the resource id")),
    request_body = UpdateWebhookBody,
    responses(
        (status = 200, description = "the endpoint as changed", body = views::Webhook),
        RoleErrors,
        WebhookNotFound,
        JsonErrors,
        Invalid,
        ServiceErrors,
    ),
    security(("bearer" = []))
)]
pub(in crate::api) async fn update(
    State(state): State<ApiState>,
    principal: Principal,
    PathId(id): PathId,
    Json(b): Json<UpdateWebhookBody>,
) -> ApiResult {
    let id = sink_id(&id)?;
    // A missing endpoint is a 404 before the body's fields are judged.
    state.webhooks.get(&principal, id).await?;
    let patch = WebhookPatch {
        url: b
            .url
            .as_deref()
            .map(|u| state.webhooks.parse_url(u))
            .transpose()?,
        kinds: b.event_types.as_deref().map(event_types).transpose()?,
        enabled: b.enabled,
    };
    let sink = state.webhooks.update(&principal, id, patch).await?;
    ok(views::Webhook::from(&sink))
}

#[utoipa::path(
    delete,
    path = "/v1/admin/webhooks/{id}",
    tag = "admin",
    params(("id" = String, Path, description = "the resource id")),
    responses(
        (status = 204, description = "removed: nothing more is delivered to it"),
        RoleErrors,
        WebhookNotFound,
        ServiceErrors,
    ),
    security(("bearer" = []))
)]
pub(in crate::api) async fn delete(
    State(state): State<ApiState>,
    principal: Principal,
    PathId(id): PathId,
) -> ApiResult {
    state.webhooks.delete(&principal, sink_id(&id)?).await?;
    no_content()
}

#[utoipa::path(
    post,
    path = "/v1/admin/webhooks/{id}/rotate-secret",
    tag = "admin",
    params(("id" = String, Path, description = "the resource id")),
    responses(
        (status = 200, description = "the new signing secret, shown this once; the previous one signs too until `previous_secret_until`", body = views::WebhookCreated),
        RoleErrors,
        WebhookNotFound,
        ServiceErrors,
    ),
    security(("bearer" = []))
)]
pub(in crate::api) async fn rotate_secret(
    State(state): State<ApiState>,
    principal: Principal,
    PathId(id): PathId,
) -> ApiResult {
    let (sink, secret) = state
        .webhooks
        .rotate_secret(&principal, sink_id(&id)?)
        .await?;
    ok(views::WebhookCreated::new(&sink, &secret))
}

#[utoipa::path(
    get,
    path = "/v1/admin/webhooks/{id}/deliveries",
    tag = "admin",
    params(
        ("id" = String, Path, description = "the resource id"),
        ("limit" = Option<u32>, Query, description = "1 to 200, default 50"),
        ("cursor" = Option<String>, Query, description = "next_cursor of the previous page")
    ),
    responses(
        (status = 200, description = "attempts, newest first", body = views::Deliveries),
        RoleErrors,
        WebhookNotFound,
        Invalid,
        ServiceErrors,
    ),
    security(("bearer" = []))
)]
pub(in crate::api) async fn deliveries(
    State(state): State<ApiState>,
    principal: Principal,
    PathId(id): PathId,
    query: Result<Query<PageQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult {
    let id = sink_id(&id)?;
    let Query(q) =
        query.map_err(|_| ApiError::invalid("query", "limit (1-200) and cursor only"))?;
    let before = q
        .cursor
        .as_deref()
        .map(|c| AttemptId::parse(c).map_err(|_| ApiError::invalid("cursor", "a next_cursor")))
        .transpose()?;
    let limit = q.limit.unwrap_or(DEFAULT_PAGE);
    let attempts = state
        .webhooks
        .deliveries(&principal, id, before, limit)
        .await?;
    ok(views::Deliveries::new(&attempts, limit))
}

/// An endpoint's id and one of its deliveries' (an unparsable one is a 404).
#[derive(Deserialize)]
pub(in crate::api) struct DeliveryPath {
    id: String,
    delivery_id: String,
}

#[utoipa::path(
    post,
    path = "/v1/admin/webhooks/{id}/deliveries/{delivery_id}/retry",
    tag = "admin",
    params(
        ("id" = String, Path, description = "the endpoint's id"),
        ("delivery_id" = String, Path, description = "the delivery's id")
    ),
    responses(
        (status = 200, description = "the new attempt (the event sent again now, with its own `webhook-id`)", body = views::Delivery),
        RoleErrors,
        (status = 404, description = "no such endpoint (`webhook_not_found`) or delivery (`delivery_not_found`), or its event was pruned", body = crate::problem::Problem, content_type = crate::problem::PROBLEM_JSON),
        ServiceErrors,
    ),
    security(("bearer" = []))
)]
pub(in crate::api) async fn retry(
    State(state): State<ApiState>,
    principal: Principal,
    path: Result<axum::extract::Path<DeliveryPath>, axum::extract::rejection::PathRejection>,
) -> ApiResult {
    let axum::extract::Path(p) = path.map_err(|_| not_found())?;
    let id = sink_id(&p.id)?;
    let delivery = AttemptId::parse(&p.delivery_id).map_err(|_| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "delivery_not_found",
            "No such delivery",
        )
    })?;
    let attempt = state.webhooks.retry(&principal, id, delivery).await?;
    ok(views::Delivery::from(&attempt))
}

#[utoipa::path(
    post,
    path = "/v1/admin/webhooks/{id}/test",
    tag = "admin",
    params(("id" = String, Path, description = "the resource id")),
    responses(
        (status = 200, description = "what the receiver answered to a `webhook.test` message (not recorded as a delivery)", body = views::WebhookTest),
        RoleErrors,
        WebhookNotFound,
        ServiceErrors,
    ),
    security(("bearer" = []))
)]
pub(in crate::api) async fn test(
    State(state): State<ApiState>,
    principal: Principal,
    PathId(id): PathId,
) -> ApiResult {
    let sent = state.webhooks.test(&principal, sink_id(&id)?).await?;
    ok(views::WebhookTest::from(&sent))
}
