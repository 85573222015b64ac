//! `admin`: wallets (freeze, unfreeze, close, PIN unlock and reset), reversals, users (roles,
//! revoking every session), the master key and the audit log.
//!
//! `GET /v1/admin/keys` (`key:read`) is the rotation overview: the master key's versions and
//! ages, data keys per version, the rotation requested or running and the last finished one.
//! `POST /v1/admin/keys/rotate` (`key:rotate`) answers 202 with the job a worker will run, 200
//! with the one already requested or running, and 422 `rotation_refused` when the provider
//! cannot rotate or retire. `GET /v1/admin/audit` pages the audit log newest first;
//! `GET /v1/admin/audit/verify` verifies it.

use axum::Json as JsonResponse;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use coffer_audit::{Actor, AuditQuery};
use coffer_auth::Permission;
use serde::Deserialize;
use serde_json::json;

use super::shared::{ApiResult, created, entity, no_content, ok};
use crate::api::error::ApiError;
use crate::api::extract::{
    Ctx, IdempotencyKey, Json, OptionalJson, PathId, Principal, transaction_id, user_id, wallet_id,
};
use crate::api::openapi::{
    AuditPageDoc, AuditVerifyDoc, KeysDoc, ProblemDoc, RolesDoc, RotationDoc,
};
use crate::api::state::ApiState;
use crate::api::views;

#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(in crate::api) struct ReasonBody {
    // This doc comment is the field's description in the published document (docs/openapi.json):
    // rewording it changes the contract.
    /// Accepted (DESIGN.md §3); the ledger's audit record names the action and the admin.
    #[serde(rename = "reason")]
    _reason: Option<String>,
}

#[utoipa::path(post, path = "/v1/admin/wallets/{id}/freeze", tag = "admin", request_body = ReasonBody, params(("id" = String, Path, description = "the resource id")), responses((status = 200, description = "frozen", body = views::Wallet), (status = 401, description = "no valid access token", body = ProblemDoc, content_type = "application/problem+json"), (status = 403, description = "the role lacks the permission", body = ProblemDoc, content_type = "application/problem+json"), (status = 404, description = "no such wallet (or not the caller's)", body = ProblemDoc, content_type = "application/problem+json")), security(("bearer" = [])))]
pub(in crate::api) async fn freeze(
    State(state): State<ApiState>,
    principal: Principal,
    PathId(id): PathId,
    OptionalJson(_): OptionalJson<ReasonBody>,
) -> ApiResult {
    principal.require(&state, Permission::WalletFreeze)?;
    let w = state
        .ledger
        .freeze(principal.ledger_user(), wallet_id(&id)?)
        .await?;
    ok(views::Wallet::from(&w))
}

#[utoipa::path(post, path = "/v1/admin/wallets/{id}/unfreeze", tag = "admin", request_body = ReasonBody, params(("id" = String, Path, description = "the resource id")), responses((status = 200, description = "active again", body = views::Wallet), (status = 401, description = "no valid access token", body = ProblemDoc, content_type = "application/problem+json"), (status = 403, description = "the role lacks the permission", body = ProblemDoc, content_type = "application/problem+json"), (status = 404, description = "no such wallet (or not the caller's)", body = ProblemDoc, content_type = "application/problem+json")), security(("bearer" = [])))]
pub(in crate::api) async fn unfreeze(
    State(state): State<ApiState>,
    principal: Principal,
    PathId(id): PathId,
    OptionalJson(_): OptionalJson<ReasonBody>,
) -> ApiResult {
    principal.require(&state, Permission::WalletFreeze)?;
    let w = state
        .ledger
        .unfreeze(principal.ledger_user(), wallet_id(&id)?)
        .await?;
    ok(views::Wallet::from(&w))
}

#[utoipa::path(post, path = "/v1/admin/wallets/{id}/close", tag = "admin", request_body = ReasonBody, params(("id" = String, Path, description = "the resource id")), responses((status = 200, description = "closed", body = views::Wallet), (status = 401, description = "no valid access token", body = ProblemDoc, content_type = "application/problem+json"), (status = 403, description = "the role lacks the permission", body = ProblemDoc, content_type = "application/problem+json"), (status = 404, description = "no such wallet (or not the caller's)", body = ProblemDoc, content_type = "application/problem+json"), (status = 409, description = "not empty", body = ProblemDoc, content_type = "application/problem+json")), security(("bearer" = [])))]
pub(in crate::api) async fn close(
    State(state): State<ApiState>,
    principal: Principal,
    PathId(id): PathId,
    OptionalJson(_): OptionalJson<ReasonBody>,
) -> ApiResult {
    principal.require(&state, Permission::WalletClose)?;
    let w = state
        .ledger
        .close(principal.ledger_user(), wallet_id(&id)?)
        .await?;
    ok(views::Wallet::from(&w))
}

#[utoipa::path(post, path = "/v1/admin/wallets/{id}/pin/unlock", tag = "admin", params(("id" = String, Path, description = "the resource id")), responses((status = 200, description = "PIN attempts reset", body = views::Wallet), (status = 401, description = "no valid access token", body = ProblemDoc, content_type = "application/problem+json"), (status = 403, description = "the role lacks the permission", body = ProblemDoc, content_type = "application/problem+json"), (status = 404, description = "no such wallet (or not the caller's)", body = ProblemDoc, content_type = "application/problem+json")), security(("bearer" = [])))]
pub(in crate::api) async fn unlock_pin(
    State(state): State<ApiState>,
    principal: Principal,
    PathId(id): PathId,
) -> ApiResult {
    principal.require(&state, Permission::WalletWrite)?;
    let w = state
        .ledger
        .unlock_pin(principal.ledger_user(), wallet_id(&id)?)
        .await?;
    ok(views::Wallet::from(&w))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(in crate::api) struct ResetPinBody {
    new_pin: String,
}

#[utoipa::path(post, path = "/v1/admin/wallets/{id}/pin/reset", tag = "admin", request_body = ResetPinBody, params(("id" = String, Path, description = "the resource id")), responses((status = 200, description = "a new PIN and signing key", body = views::Wallet), (status = 401, description = "no valid access token", body = ProblemDoc, content_type = "application/problem+json"), (status = 403, description = "the role lacks the permission", body = ProblemDoc, content_type = "application/problem+json"), (status = 404, description = "no such wallet (or not the caller's)", body = ProblemDoc, content_type = "application/problem+json"), (status = 422, description = "a field is invalid", body = ProblemDoc, content_type = "application/problem+json")), security(("bearer" = [])))]
pub(in crate::api) async fn reset_pin(
    State(state): State<ApiState>,
    principal: Principal,
    PathId(id): PathId,
    Json(b): Json<ResetPinBody>,
) -> ApiResult {
    principal.require(&state, Permission::WalletWrite)?;
    let w = state
        .ledger
        .reset_pin(principal.ledger_user(), wallet_id(&id)?, &b.new_pin)
        .await?;
    ok(views::Wallet::from(&w))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(in crate::api) struct ReversalBody {
    reason: String,
}

#[utoipa::path(post, path = "/v1/admin/transactions/{id}/reversal", tag = "admin", request_body = ReversalBody, params(("id" = String, Path, description = "the resource id"), ("Idempotency-Key" = String, Header, description = "replays the first answer for the same body")), responses((status = 201, description = "reversed", body = views::Transaction), (status = 401, description = "no valid access token", body = ProblemDoc, content_type = "application/problem+json"), (status = 403, description = "the role lacks the permission", body = ProblemDoc, content_type = "application/problem+json"), (status = 404, description = "no such transaction", body = ProblemDoc, content_type = "application/problem+json"), (status = 409, description = "already reversed", body = ProblemDoc, content_type = "application/problem+json")), security(("bearer" = [])))]
pub(in crate::api) async fn reverse(
    State(state): State<ApiState>,
    principal: Principal,
    PathId(id): PathId,
    IdempotencyKey(key): IdempotencyKey,
    Json(b): Json<ReversalBody>,
) -> ApiResult {
    principal.require(&state, Permission::WalletWrite)?;
    let t = state
        .ledger
        .reverse(
            principal.ledger_user(),
            transaction_id(&id)?,
            &b.reason,
            &key,
        )
        .await?;
    created(views::Transaction::from(&t))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(in crate::api) struct RolesBody {
    roles: Vec<String>,
}

#[utoipa::path(post, path = "/v1/admin/users/{id}/roles", tag = "admin", request_body = RolesBody, params(("id" = String, Path, description = "the resource id")), responses((status = 200, description = "the user's roles", body = RolesDoc), (status = 401, description = "no valid access token", body = ProblemDoc, content_type = "application/problem+json"), (status = 403, description = "the role lacks the permission", body = ProblemDoc, content_type = "application/problem+json"), (status = 404, description = "no such user", body = ProblemDoc, content_type = "application/problem+json"), (status = 422, description = "a field is invalid", body = ProblemDoc, content_type = "application/problem+json")), security(("bearer" = [])))]
pub(in crate::api) async fn set_roles(
    State(state): State<ApiState>,
    principal: Principal,
    Ctx(ctx): Ctx,
    PathId(id): PathId,
    Json(b): Json<RolesBody>,
) -> ApiResult {
    principal.require(&state, Permission::UserAdmin)?;
    let user = user_id(&id)?;
    let roles = state
        .accounts
        .set_roles(principal.user, user, &b.roles, &ctx)
        .await?;
    ok(json!({ "user_id": user.to_string(), "roles": roles }))
}

#[utoipa::path(post, path = "/v1/admin/users/{id}/sessions/revoke", tag = "admin", params(("id" = String, Path, description = "the resource id")), responses((status = 204, description = "every session of the user stops working"), (status = 401, description = "no valid access token", body = ProblemDoc, content_type = "application/problem+json"), (status = 403, description = "the role lacks the permission", body = ProblemDoc, content_type = "application/problem+json"), (status = 404, description = "no such user", body = ProblemDoc, content_type = "application/problem+json")), security(("bearer" = [])))]
pub(in crate::api) async fn revoke_user_sessions(
    State(state): State<ApiState>,
    principal: Principal,
    Ctx(ctx): Ctx,
    PathId(id): PathId,
) -> ApiResult {
    principal.require(&state, Permission::UserAdmin)?;
    let user = user_id(&id)?;
    state
        .accounts
        .revoke_sessions(
            Actor::Admin(entity(&principal.user.to_string())),
            user,
            &ctx,
        )
        .await?;
    no_content()
}

// ---- keys ----

fn rotation_error(e: &coffer_rotation::RotationError) -> ApiError {
    use coffer_rotation::RotationError as E;
    match e {
        E::Refused(reason) => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            e.code(),
            "the rotation cannot be done as asked",
        )
        .detail(reason.clone()),
        _ => ApiError::unavailable(e),
    }
}

#[utoipa::path(get, path = "/v1/admin/keys", tag = "admin", responses((status = 200, description = "the master key's versions and ages, stored data keys per version, the rotation requested or running with its progress, the last finished one", body = KeysDoc), (status = 401, description = "no valid access token", body = ProblemDoc, content_type = "application/problem+json"), (status = 403, description = "the role lacks the permission", body = ProblemDoc, content_type = "application/problem+json"), (status = 503, description = "the key provider or the database does not answer", body = ProblemDoc, content_type = "application/problem+json")), security(("bearer" = [])))]
pub(in crate::api) async fn keys_overview(
    State(state): State<ApiState>,
    principal: Principal,
) -> ApiResult {
    principal.require(&state, Permission::KeyRead)?;
    let overview = state
        .rotation
        .overview()
        .await
        .map_err(|e| rotation_error(&e))?;
    ok(overview)
}

#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(in crate::api) struct RotateBody {
    /// Revoke every session first, re-wrap every key, retire the old versions.
    #[serde(default)]
    emergency: bool,
    /// Retire the old versions once every key has moved.
    #[serde(default)]
    retire: bool,
}

#[utoipa::path(post, path = "/v1/admin/keys/rotate", tag = "admin", request_body(content = Option<RotateBody>, description = "optional: {\"emergency\": bool, \"retire\": bool}"), responses((status = 202, description = "requested: a worker rotates the master key and re-wraps every data key; follow it at GET /v1/admin/keys", body = RotationDoc), (status = 200, description = "a rotation was already requested or running: that one", body = RotationDoc), (status = 401, description = "no valid access token", body = ProblemDoc, content_type = "application/problem+json"), (status = 403, description = "the role lacks the permission", body = ProblemDoc, content_type = "application/problem+json"), (status = 422, description = "the provider cannot rotate (or retire) its key", body = ProblemDoc, content_type = "application/problem+json"), (status = 503, description = "the key provider or the database does not answer", body = ProblemDoc, content_type = "application/problem+json")), security(("bearer" = [])))]
pub(in crate::api) async fn request_rotation(
    State(state): State<ApiState>,
    principal: Principal,
    OptionalJson(b): OptionalJson<RotateBody>,
) -> ApiResult {
    principal.require(&state, Permission::KeyRotate)?;
    let (job, created) = state
        .rotation
        .request(coffer_rotation::RotateRequest {
            requested_by: format!("admin:{}", principal.user),
            emergency: b.emergency,
            retire: b.retire,
        })
        .await
        .map_err(|e| rotation_error(&e))?;
    let status = if created {
        StatusCode::ACCEPTED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        JsonResponse(json!({ "created": created, "job": job })),
    )
        .into_response())
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(in crate::api) struct AuditPageQuery {
    before: Option<i64>,
    limit: Option<u32>,
}

#[utoipa::path(get, path = "/v1/admin/audit", tag = "admin", params(("before" = Option<i64>, Query, description = "next_before of the previous page"), ("limit" = Option<u32>, Query, description = "1 to 1000, default 100")), responses((status = 200, description = "newest first", body = AuditPageDoc), (status = 401, description = "no valid access token", body = ProblemDoc, content_type = "application/problem+json"), (status = 403, description = "the role lacks the permission", body = ProblemDoc, content_type = "application/problem+json"), (status = 422, description = "a field is invalid", body = ProblemDoc, content_type = "application/problem+json")), security(("bearer" = [])))]
pub(in crate::api) async fn audit_events(
    State(state): State<ApiState>,
    principal: Principal,
    query: Result<Query<AuditPageQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult {
    principal.require(&state, Permission::AuditRead)?;
    let Query(q) =
        query.map_err(|_| ApiError::invalid("query", "before (an event id) and limit only"))?;
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::invalid("limit", "1 to 1000"));
    }
    let records = coffer_audit::AuditLog::list(
        state.audit.as_ref(),
        &AuditQuery {
            before_id: q.before,
            stream: None,
            limit,
        },
    )
    .await
    .map_err(|e| ApiError::unavailable(&e))?;
    let next = records.last().map(|r| r.id);
    let items: Vec<_> = records
        .iter()
        .map(|r| {
            coffer_audit::record_json(
                &r.event,
                &coffer_audit::Receipt {
                    id: r.id,
                    seq: r.seq,
                    mac: r.mac,
                },
            )
        })
        .collect();
    ok(json!({ "items": items, "next_before": next }))
}

#[utoipa::path(get, path = "/v1/admin/audit/verify", tag = "admin", responses((status = 200, description = "the verification report", body = AuditVerifyDoc), (status = 401, description = "no valid access token", body = ProblemDoc, content_type = "application/problem+json"), (status = 403, description = "the role lacks the permission", body = ProblemDoc, content_type = "application/problem+json")), security(("bearer" = [])))]
pub(in crate::api) async fn audit_verify(
    State(state): State<ApiState>,
    principal: Principal,
) -> ApiResult {
    principal.require(&state, Permission::AuditRead)?;
    let report = coffer_audit::AuditLog::verify(state.audit.as_ref(), None, &|_| {})
        .await
        .map_err(|e| ApiError::unavailable(&e))?;
    ok(json!({
        "ok": report.ok,
        "checked": report.checked,
        "streams": report.streams,
        "first_bad": report.first_bad.map(|f| json!({
            "stream": f.stream, "seq": f.seq, "id": f.id, "kind": format!("{:?}", f.kind),
        })),
    }))
}
