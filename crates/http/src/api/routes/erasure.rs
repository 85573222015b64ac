//! `admin`: erasing a user by crypto-shredding (`user:erase`), `POST /v1/admin/users/{id}/erase`.
//! The wallets are closed and their keys destroyed, then the user's; the books stay. The rules
//! (every wallet empty, or its remainder swept, the idempotency key kept with the erasure) are the use case's.

use axum::extract::State;
use serde::Deserialize;

use super::shared::{ApiResult, ok};
use crate::api::extract::{Ctx, IdempotencyHeader, Json, PathId, Principal, user_id};
use crate::api::state::ApiState;
use crate::api::views;
use crate::api::views::errors::{Invalid, JsonErrors, RoleErrors, ServiceErrors, UserNotFound};
use crate::problem::{PROBLEM_JSON, Problem};

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(in crate::api) struct EraseBody {
    /// Why: a short token (letters, digits, `. _ : -`), kept with the erasure and in the audit
    /// record, e.g. `gdpr_art17`.
    reason: String,
}

#[utoipa::path(
    post,
    path = "/v1/admin/users/{id}/erase",
    tag = "admin",
    request_body = EraseBody,
    params(
        ("id" = String, Path, description = "the resource id"),
        ("Idempotency-Key" = String, Header, description = "the same key and body again answer the first erasure")
    ),
    responses(
        (status = 200, description = "the user is erased: what was left in their wallets swept (up to `ledger.unclaimed`'s bound) to the unclaimed-funds wallet of its currency, their wallets closed and every data key of theirs and their wallets' destroyed; sessions, password resets and API keys ended; their email free to register again", body = views::UserErasure),
        RoleErrors,
        UserNotFound,
        (status = 409, description = "a wallet of theirs still holds money that is not swept (wallet_not_empty, the detail names it: more than `ledger.unclaimed`'s bound for its currency, in a frozen wallet, or in a currency without an unclaimed-funds wallet), the configured unclaimed-funds wallet cannot take it (unclaimed_wallet_unusable), a live hold on or into one of their wallets (wallet_has_holds), they are the last administrator (last_admin), the user kept opening wallets while it ran (wallet_not_erased), or the key was used with another reason (idempotency_conflict)", body = Problem, content_type = PROBLEM_JSON),
        (status = 410, description = "the user was erased already, under another Idempotency-Key (user_erased)", body = Problem, content_type = PROBLEM_JSON),
        JsonErrors,
        Invalid,
        ServiceErrors,
    ),
    security(("bearer" = []))
)]
pub(in crate::api) async fn erase_user(
    State(state): State<ApiState>,
    principal: Principal,
    Ctx(ctx): Ctx,
    PathId(id): PathId,
    IdempotencyHeader(key): IdempotencyHeader,
    Json(b): Json<EraseBody>,
) -> ApiResult {
    let user = user_id(&id)?;
    let key = coffer_ledger::IdempotencyKey::parse(&key)?;
    let reason = coffer_ledger::Reason::parse(&b.reason)?;
    let erased = state
        .admin
        .erase_user(&principal, user, &reason, &key, &ctx)
        .await?;
    ok(views::UserErasure::from(&erased))
}
