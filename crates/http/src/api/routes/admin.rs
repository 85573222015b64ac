//! `admin`: wallets (a search by owner, email, status and currency; freeze, unfreeze, close, PIN
//! unlock and reset), reversals, users (roles,
//! revoking every session, a password reset), the master key and the audit log.
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
use serde::Deserialize;

use super::shared::{ApiResult, created, currency, no_content, ok};
use crate::api::error::ApiError;
use crate::api::extract::{
    Ctx, IdempotencyHeader, Json, OptionalJson, PathId, PinText, Principal, transaction_id,
    user_id, wallet_id,
};
use crate::api::state::ApiState;
use crate::api::views;
use crate::api::views::errors::{
    Invalid, JsonErrors, MoneyJsonErrors, RoleErrors, ServiceErrors, Throttled,
    TransactionNotFound, UserNotFound, WalletErrors,
};
use crate::problem::{PROBLEM_JSON, Problem};

#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(in crate::api) struct ReasonBody {
    /// Accepted and not stored; the ledger's audit record names the action and the admin.
    #[serde(rename = "reason")]
    _reason: Option<String>,
}

#[utoipa::path(
    post,
    path = "/v1/admin/wallets/{id}/freeze",
    tag = "admin",
    request_body = ReasonBody,
    params(("id" = String, Path, description = "the resource id")),
    responses(
        (status = 200, description = "frozen", body = views::Wallet),
        WalletErrors,
        (status = 409, description = "closed", body = Problem, content_type = PROBLEM_JSON),
        JsonErrors,
        Invalid,
        ServiceErrors,
    ),
    security(("bearer" = []))
)]
pub(in crate::api) async fn freeze(
    State(state): State<ApiState>,
    principal: Principal,
    PathId(id): PathId,
    OptionalJson(_): OptionalJson<ReasonBody>,
) -> ApiResult {
    let w = state.admin.freeze(&principal, wallet_id(&id)?).await?;
    ok(views::Wallet::from(&w))
}

#[utoipa::path(
    post,
    path = "/v1/admin/wallets/{id}/unfreeze",
    tag = "admin",
    request_body = ReasonBody,
    params(("id" = String, Path, description = "the resource id")),
    responses(
        (status = 200, description = "active again", body = views::Wallet),
        WalletErrors,
        (status = 409, description = "closed", body = Problem, content_type = PROBLEM_JSON),
        JsonErrors,
        Invalid,
        ServiceErrors,
    ),
    security(("bearer" = []))
)]
pub(in crate::api) async fn unfreeze(
    State(state): State<ApiState>,
    principal: Principal,
    PathId(id): PathId,
    OptionalJson(_): OptionalJson<ReasonBody>,
) -> ApiResult {
    let w = state.admin.unfreeze(&principal, wallet_id(&id)?).await?;
    ok(views::Wallet::from(&w))
}

#[utoipa::path(
    post,
    path = "/v1/admin/wallets/{id}/close",
    tag = "admin",
    request_body = ReasonBody,
    params(("id" = String, Path, description = "the resource id")),
    responses(
        (status = 200, description = "closed", body = views::Wallet),
        WalletErrors,
        (status = 409, description = "not empty", body = Problem, content_type = PROBLEM_JSON),
        JsonErrors,
        Invalid,
        ServiceErrors,
    ),
    security(("bearer" = []))
)]
pub(in crate::api) async fn close(
    State(state): State<ApiState>,
    principal: Principal,
    PathId(id): PathId,
    OptionalJson(_): OptionalJson<ReasonBody>,
) -> ApiResult {
    let w = state.admin.close(&principal, wallet_id(&id)?).await?;
    ok(views::Wallet::from(&w))
}

#[utoipa::path(
    post,
    path = "/v1/admin/wallets/{id}/pin/unlock",
    tag = "admin",
    params(("id" = String, Path, description = "the resource id")),
    responses(
        (status = 200, description = "PIN attempts reset", body = views::Wallet),
        WalletErrors,
        ServiceErrors,
    ),
    security(("bearer" = []))
)]
pub(in crate::api) async fn unlock_pin(
    State(state): State<ApiState>,
    principal: Principal,
    PathId(id): PathId,
) -> ApiResult {
    let w = state.admin.unlock_pin(&principal, wallet_id(&id)?).await?;
    ok(views::Wallet::from(&w))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(in crate::api) struct ResetPinBody {
    #[schema(value_type = String)]
    new_pin: PinText,
}

#[utoipa::path(
    post,
    path = "/v1/admin/wallets/{id}/pin/reset",
    tag = "admin",
    request_body = ResetPinBody,
    params(("id" = String, Path, description = "the resource id")),
    responses(
        (status = 200, description = "a new PIN and signing key", body = views::Wallet),
        WalletErrors,
        JsonErrors,
        Invalid,
        ServiceErrors,
    ),
    security(("bearer" = []))
)]
pub(in crate::api) async fn reset_pin(
    State(state): State<ApiState>,
    principal: Principal,
    PathId(id): PathId,
    Json(b): Json<ResetPinBody>,
) -> ApiResult {
    let wallet = wallet_id(&id)?;
    let pin = b.new_pin.parse()?;
    let w = state.admin.reset_pin(&principal, wallet, &pin).await?;
    ok(views::Wallet::from(&w))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(in crate::api) struct ReversalBody {
    reason: String,
}

#[utoipa::path(
    post,
    path = "/v1/admin/transactions/{id}/reversal",
    tag = "admin",
    request_body = ReversalBody,
    params(
        ("id" = String, Path, description = "the resource id"),
        ("Idempotency-Key" = String, Header, description = "replays the first answer for the same body")
    ),
    responses(
        (status = 201, description = "reversed", body = views::Transaction),
        RoleErrors,
        TransactionNotFound,
        (status = 409, description = "already reversed, a reversal of a reversal, or a wallet it would credit is closed (wallet_closed)", body = Problem, content_type = PROBLEM_JSON),
        MoneyJsonErrors,
        Invalid,
        ServiceErrors,
    ),
    security(("bearer" = []))
)]
pub(in crate::api) async fn reverse(
    State(state): State<ApiState>,
    principal: Principal,
    PathId(id): PathId,
    IdempotencyHeader(key): IdempotencyHeader,
    Json(b): Json<ReversalBody>,
) -> ApiResult {
    let transaction = transaction_id(&id)?;
    let key = coffer_ledger::IdempotencyKey::parse(&key)?;
    let reason = coffer_ledger::Reason::parse(&b.reason)?;
    let t = state
        .admin
        .reverse(&principal, transaction, &reason, &key)
        .await?;
    created(views::Transaction::from(&t))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(in crate::api) struct RolesBody {
    roles: Vec<String>,
}

#[utoipa::path(
    post,
    path = "/v1/admin/users/{id}/roles",
    tag = "admin",
    request_body = RolesBody,
    params(("id" = String, Path, description = "the resource id")),
    responses(
        (status = 200, description = "the user's roles", body = views::Roles),
        RoleErrors,
        UserNotFound,
        (status = 409, description = "it would leave no administrator (last_admin)", body = Problem, content_type = PROBLEM_JSON),
        JsonErrors,
        Invalid,
        ServiceErrors,
    ),
    security(("bearer" = []))
)]
pub(in crate::api) async fn set_roles(
    State(state): State<ApiState>,
    principal: Principal,
    Ctx(ctx): Ctx,
    PathId(id): PathId,
    Json(b): Json<RolesBody>,
) -> ApiResult {
    let user = user_id(&id)?;
    let roles = state
        .admin
        .set_roles(&principal, user, &b.roles, &ctx)
        .await?;
    ok(views::Roles::new(user, roles))
}

#[utoipa::path(
    post,
    path = "/v1/admin/users/{id}/sessions/revoke",
    tag = "admin",
    params(("id" = String, Path, description = "the resource id")),
    responses(
        (status = 204, description = "every session of the user stops working"),
        RoleErrors,
        UserNotFound,
        ServiceErrors,
    ),
    security(("bearer" = []))
)]
pub(in crate::api) async fn revoke_user_sessions(
    State(state): State<ApiState>,
    principal: Principal,
    Ctx(ctx): Ctx,
    PathId(id): PathId,
) -> ApiResult {
    let user = user_id(&id)?;
    state.admin.revoke_sessions(&principal, user, &ctx).await?;
    no_content()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(in crate::api) struct WalletSearchQuery {
    owner_id: Option<String>,
    email: Option<String>,
    status: Option<String>,
    currency: Option<String>,
    limit: Option<u32>,
    cursor: Option<String>,
}

#[utoipa::path(
    get,
    path = "/v1/admin/wallets",
    tag = "admin",
    params(
        ("owner_id" = Option<String>, Query, description = "only this user's wallets"),
        ("email" = Option<String>, Query, description = "only the wallets of the user registered with this email (found through its blind index; not with owner_id)"),
        ("status" = Option<String>, Query, description = "active, frozen or closed"),
        ("currency" = Option<String>, Query, description = "ISO 4217 code"),
        ("limit" = Option<u32>, Query, description = "1 to 200, default 50"),
        ("cursor" = Option<String>, Query, description = "next_cursor of the previous page")
    ),
    responses(
        (status = 200, description = "the wallets found, oldest first", body = views::Wallets),
        RoleErrors,
        Invalid,
        ServiceErrors,
    ),
    security(("bearer" = []))
)]
pub(in crate::api) async fn search_wallets(
    State(state): State<ApiState>,
    principal: Principal,
    query: Result<Query<WalletSearchQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult {
    use coffer_usecases::{OwnerSearch, WalletSearch};
    let Query(q) = query.map_err(|_| {
        ApiError::invalid(
            "query",
            "owner_id, email, status, currency, limit (1-200) and cursor only",
        )
    })?;
    let owner = match (q.owner_id.as_deref(), q.email.as_deref()) {
        (Some(_), Some(_)) => {
            return Err(ApiError::invalid(
                "email",
                "give owner_id or email, not both",
            ));
        }
        (Some(id), None) => OwnerSearch::Id(
            user_id(id).map_err(|_| ApiError::invalid("owner_id", "a user id (UUID)"))?,
        ),
        (None, Some(email)) => OwnerSearch::Email(
            coffer_auth::email::Email::parse(email)
                .map_err(|e| ApiError::invalid("email", e.to_string()))?,
        ),
        (None, None) => OwnerSearch::Any,
    };
    let status = q
        .status
        .as_deref()
        .map(|s| {
            coffer_ledger::WalletStatus::parse(s)
                .ok_or_else(|| ApiError::invalid("status", "active, frozen or closed"))
        })
        .transpose()?;
    let currency = q.currency.as_deref().map(currency).transpose()?;
    let cursor = q
        .cursor
        .as_deref()
        .map(coffer_ledger::WalletCursor::parse)
        .transpose()?;
    let search = WalletSearch {
        owner,
        status,
        currency,
    };
    let page = state
        .admin
        .wallets(&principal, search, cursor, q.limit.unwrap_or(50))
        .await?;
    ok(views::Wallets::from(&page))
}

#[utoipa::path(
    post,
    path = "/v1/admin/users/{id}/password-reset",
    tag = "admin",
    params(("id" = String, Path, description = "the resource id")),
    responses(
        (status = 201, description = "a one-time reset token for the user, shown once; it replaces the pending one", body = views::PasswordReset),
        RoleErrors,
        UserNotFound,
        Invalid,
        ServiceErrors,
    ),
    security(("bearer" = []))
)]
pub(in crate::api) async fn issue_password_reset(
    State(state): State<ApiState>,
    principal: Principal,
    Ctx(ctx): Ctx,
    PathId(id): PathId,
) -> ApiResult {
    let user = user_id(&id)?;
    let issued = state
        .admin
        .issue_password_reset(&principal, user, &ctx)
        .await?;
    created(views::PasswordReset::new(user, &issued))
}

// ---- keys ----

#[utoipa::path(
    get,
    path = "/v1/admin/keys",
    tag = "admin",
    responses(
        (status = 200, description = "the master key's versions and ages, stored data keys per version, the rotation requested or running with its progress, the last finished one", body = views::Keys),
        RoleErrors,
        (status = 503, description = "the key provider or the database does not answer", body = Problem, content_type = PROBLEM_JSON),
        Throttled,
    ),
    security(("bearer" = []))
)]
pub(in crate::api) async fn keys_overview(
    State(state): State<ApiState>,
    principal: Principal,
) -> ApiResult {
    let overview = state.admin.keys(&principal).await?;
    ok(views::Keys::from(overview))
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

#[utoipa::path(
    post,
    path = "/v1/admin/keys/rotate",
    tag = "admin",
    request_body(content = Option<RotateBody>, description = "optional: {\"emergency\": bool, \"retire\": bool}"),
    responses(
        (status = 202, description = "requested: a worker rotates the master key and re-wraps every data key; follow it at GET /v1/admin/keys", body = views::Rotation),
        (status = 200, description = "a rotation was already requested or running: that one", body = views::Rotation),
        RoleErrors,
        (status = 422, description = "the provider cannot rotate (or retire) its key", body = Problem, content_type = PROBLEM_JSON),
        (status = 503, description = "the key provider or the database does not answer", body = Problem, content_type = PROBLEM_JSON),
        JsonErrors,
        Throttled,
    ),
    security(("bearer" = []))
)]
pub(in crate::api) async fn request_rotation(
    State(state): State<ApiState>,
    principal: Principal,
    OptionalJson(b): OptionalJson<RotateBody>,
) -> ApiResult {
    let (job, created) = state
        .admin
        .request_rotation(&principal, b.emergency, b.retire)
        .await?;
    let status = if created {
        StatusCode::ACCEPTED
    } else {
        StatusCode::OK
    };
    Ok((status, JsonResponse(views::Rotation::new(job, created))).into_response())
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(in crate::api) struct AuditPageQuery {
    before: Option<i64>,
    limit: Option<u32>,
}

#[utoipa::path(
    get,
    path = "/v1/admin/audit",
    tag = "admin",
    params(
        ("before" = Option<i64>, Query, description = "next_before of the previous page"),
        ("limit" = Option<u32>, Query, description = "1 to 1000, default 100")
    ),
    responses(
        (status = 200, description = "newest first", body = views::AuditPage),
        RoleErrors,
        Invalid,
        ServiceErrors,
    ),
    security(("bearer" = []))
)]
pub(in crate::api) async fn audit_events(
    State(state): State<ApiState>,
    principal: Principal,
    query: Result<Query<AuditPageQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult {
    let Query(q) =
        query.map_err(|_| ApiError::invalid("query", "before (an event id) and limit only"))?;
    let limit = q.limit.unwrap_or(100);
    let records = state.admin.audit_page(&principal, q.before, limit).await?;
    ok(views::AuditPage::from(records.as_slice()))
}

#[utoipa::path(
    get,
    path = "/v1/admin/audit/verify",
    tag = "admin",
    responses(
        (status = 200, description = "the verification report", body = views::AuditVerify),
        RoleErrors,
        ServiceErrors,
    ),
    security(("bearer" = []))
)]
pub(in crate::api) async fn audit_verify(
    State(state): State<ApiState>,
    principal: Principal,
) -> ApiResult {
    let report = state.admin.audit_verify(&principal).await?;
    ok(views::AuditVerify::from(&report))
}
