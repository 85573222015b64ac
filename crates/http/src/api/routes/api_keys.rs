//! `admin`: API keys of service accounts (`user:admin`). `POST /v1/admin/api-keys` creates one
//! and shows its secret once; `GET` lists them (by owner, in pages) or shows one; `DELETE`
//! revokes one, at once on every replica. The rules (a key never exceeds its owner, a key never
//! makes keys) are the use cases'.

use axum::extract::{Query, State};
use coffer_auth::api_key::{ApiKeyId, ApiKeyName, NewApiKey, parse_permissions};
use serde::Deserialize;

use super::shared::{ApiResult, DEFAULT_PAGE, created, no_content, ok};
use crate::api::error::ApiError;
use crate::api::extract::{Ctx, Json, PathId, Principal, user_id};
use crate::api::state::ApiState;
use crate::api::views;
use crate::api::views::errors::{
    ApiKeyNotFound, Invalid, JsonErrors, RoleErrors, ServiceErrors, UserNotFound,
};

/// How long a key works unless the request says.
const DEFAULT_LIFETIME_DAYS: u32 = 90;

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(in crate::api) struct CreateApiKeyBody {
    /// The service account the key acts as.
    user_id: String,
    /// For people: 1 to 64 characters.
    name: String,
    /// Permission names, each granted by the owner's roles (`system:metrics` for a scraper).
    permissions: Vec<String>,
    /// 1 to 365; default 90.
    expires_in_days: Option<u32>,
    /// The key's own budget, 1 to 100,000 requests a minute; default the configured per-key
    /// policy.
    rate_limit_per_minute: Option<u32>,
}

fn key_id(raw: &str) -> Result<ApiKeyId, ApiError> {
    ApiKeyId::parse(raw).map_err(|_| {
        ApiError::new(
            axum::http::StatusCode::NOT_FOUND,
            "api_key_not_found",
            "No such API key",
        )
    })
}

fn invalid(e: &coffer_auth::api_key::ApiKeyError) -> ApiError {
    ApiError::invalid(e.field(), e.to_string())
}

#[utoipa::path(
    post,
    path = "/v1/admin/api-keys",
    tag = "admin",
    request_body = CreateApiKeyBody,
    responses(
        (status = 201, description = "the key and its secret, shown this once", body = views::ApiKeyCreated),
        RoleErrors,
        JsonErrors,
        UserNotFound,
        (status = 409, description = "api_key_credential: keys are created by a signed-in administrator, not with a key", body = crate::problem::Problem, content_type = crate::problem::PROBLEM_JSON),
        Invalid,
        ServiceErrors,
    ),
    security(("bearer" = []))
)]
pub(in crate::api) async fn create(
    State(state): State<ApiState>,
    principal: Principal,
    Ctx(ctx): Ctx,
    Json(b): Json<CreateApiKeyBody>,
) -> ApiResult {
    let user = user_id(&b.user_id).map_err(|_| ApiError::invalid("user_id", "a user id (UUID)"))?;
    let name = ApiKeyName::parse(&b.name).map_err(|e| invalid(&e))?;
    let permissions = parse_permissions(&b.permissions).map_err(|e| invalid(&e))?;
    let new = NewApiKey::new(
        user,
        name,
        permissions,
        b.expires_in_days.unwrap_or(DEFAULT_LIFETIME_DAYS),
        b.rate_limit_per_minute,
    )
    .map_err(|e| invalid(&e))?;
    let issued = state.admin.create_api_key(&principal, new, &ctx).await?;
    created(views::ApiKeyCreated::from(&issued))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(in crate::api) struct ListQuery {
    user_id: Option<String>,
    limit: Option<u32>,
    cursor: Option<String>,
}

#[utoipa::path(
    get,
    path = "/v1/admin/api-keys",
    tag = "admin",
    params(
        ("user_id" = Option<String>, Query, description = "only this user's keys"),
        ("limit" = Option<u32>, Query, description = "1 to 200, default 50"),
        ("cursor" = Option<String>, Query, description = "next_cursor of the previous page")
    ),
    responses(
        (status = 200, description = "keys in id order, revoked and expired ones included", body = views::ApiKeys),
        RoleErrors,
        Invalid,
        ServiceErrors,
    ),
    security(("bearer" = []))
)]
pub(in crate::api) async fn list(
    State(state): State<ApiState>,
    principal: Principal,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult {
    let Query(q) =
        query.map_err(|_| ApiError::invalid("query", "user_id, limit (1-200) and cursor only"))?;
    let user = q
        .user_id
        .as_deref()
        .map(|u| user_id(u).map_err(|_| ApiError::invalid("user_id", "a user id (UUID)")))
        .transpose()?;
    let after = q
        .cursor
        .as_deref()
        .map(|c| ApiKeyId::parse(c).map_err(|_| ApiError::invalid("cursor", "a next_cursor")))
        .transpose()?;
    let limit = q.limit.unwrap_or(DEFAULT_PAGE);
    let keys = state.admin.api_keys(&principal, user, after, limit).await?;
    ok(views::ApiKeys::new(&keys, limit))
}

#[utoipa::path(
    get,
    path = "/v1/admin/api-keys/{id}",
    tag = "admin",
    params(("id" = String, Path, description = "the resource id")),
    responses(
        (status = 200, description = "the key", body = views::ApiKey),
        RoleErrors,
        ApiKeyNotFound,
        ServiceErrors,
    ),
    security(("bearer" = []))
)]
pub(in crate::api) async fn get(
    State(state): State<ApiState>,
    principal: Principal,
    PathId(id): PathId,
) -> ApiResult {
    let key = state.admin.api_key(&principal, key_id(&id)?).await?;
    ok(views::ApiKey::from(&key))
}

#[utoipa::path(
    delete,
    path = "/v1/admin/api-keys/{id}",
    tag = "admin",
    params(("id" = String, Path, description = "the resource id")),
    responses(
        (status = 204, description = "revoked: no request authenticates with it any more, on any replica (revoking a revoked key changes nothing)"),
        RoleErrors,
        ApiKeyNotFound,
        ServiceErrors,
    ),
    security(("bearer" = []))
)]
pub(in crate::api) async fn revoke(
    State(state): State<ApiState>,
    principal: Principal,
    Ctx(ctx): Ctx,
    PathId(id): PathId,
) -> ApiResult {
    state
        .admin
        .revoke_api_key(&principal, key_id(&id)?, &ctx)
        .await?;
    no_content()
}
