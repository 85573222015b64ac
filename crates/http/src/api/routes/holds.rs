//! `holds`: money reserved on a wallet for a later capture. Placing one takes the wallet's PIN
//! (it is signed like money-out) and an `Idempotency-Key`; capturing and voiding take an
//! `Idempotency-Key` and replay. Who may place, read, capture and void which hold is the use
//! cases' and the ledger's rule (`coffer_usecases::Wallets`): the handlers parse and call.

use axum::extract::{Query, State};
use serde::Deserialize;

use super::shared::{ApiResult, DEFAULT_PAGE, PageQuery, created, money_request, ok};
use crate::api::error::ApiError;
use crate::api::extract::{
    IdempotencyHeader, Json, OptionalJson, PathId, PinText, Principal, hold_id, wallet_id,
};
use crate::api::state::ApiState;
use crate::api::views;
use crate::api::views::errors::{
    HoldNotFound, Invalid, JsonErrors, MoneyJsonErrors, MoneyOutErrors, RoleErrors, ServiceErrors,
    WalletErrors,
};
use crate::problem::{PROBLEM_JSON, Problem};

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(in crate::api) struct HoldBody {
    /// The most it may capture, minor units.
    amount: i64,
    currency: String,
    #[schema(value_type = String)]
    pin: PinText,
    /// A held transfer's destination; absent for a held withdrawal (a payout).
    to_wallet_id: Option<String>,
    memo: Option<String>,
    /// Seconds until it expires (`ledger.hold_expiry_secs` when absent; at most
    /// `ledger.max_hold_expiry_secs`).
    expires_in_secs: Option<u32>,
}

#[utoipa::path(
    post,
    path = "/v1/wallets/{id}/holds",
    tag = "holds",
    request_body = HoldBody,
    params(
        ("id" = String, Path, description = "the resource id"),
        ("Idempotency-Key" = String, Header, description = "replays the first answer for the same body")
    ),
    responses(
        (status = 201, description = "held (or the replay): the wallet's available balance is lower by the amount until the hold is captured, voided or expires", body = views::Hold),
        MoneyOutErrors,
        MoneyJsonErrors,
        Invalid,
        ServiceErrors,
    ),
    security(("bearer" = []))
)]
pub(in crate::api) async fn place(
    State(state): State<ApiState>,
    principal: Principal,
    PathId(id): PathId,
    IdempotencyHeader(key): IdempotencyHeader,
    Json(b): Json<HoldBody>,
) -> ApiResult {
    let wallet = wallet_id(&id)?;
    let to = b
        .to_wallet_id
        .as_deref()
        .map(|t| {
            coffer_ledger::WalletId::parse(t)
                .map_err(|_| ApiError::invalid("to_wallet_id", "not a wallet id"))
        })
        .transpose()?;
    let request = money_request(&state, b.amount, &b.currency, b.memo.as_deref(), &key)?;
    let pin = b.pin.parse()?;
    let h = state
        .wallets
        .place_hold(&principal, wallet, to, &pin, &request, b.expires_in_secs)
        .await?;
    created(views::Hold::from(&h))
}

#[utoipa::path(
    get,
    path = "/v1/wallets/{id}/holds",
    tag = "holds",
    params(
        ("id" = String, Path, description = "the resource id"),
        ("limit" = Option<u32>, Query, description = "1 to 200, default 50"),
        ("cursor" = Option<String>, Query, description = "next_cursor of the previous page")
    ),
    responses(
        (status = 200, description = "the wallet's holds, as payer and as payee, newest first, whatever their status", body = views::Holds),
        WalletErrors,
        (status = 410, description = "the wallet's owner was erased (wallet_erased)", body = Problem, content_type = PROBLEM_JSON),
        Invalid,
        ServiceErrors,
    ),
    security(("bearer" = []))
)]
pub(in crate::api) async fn list(
    State(state): State<ApiState>,
    principal: Principal,
    PathId(id): PathId,
    query: Result<Query<PageQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult {
    let wallet = wallet_id(&id)?;
    let Query(q) =
        query.map_err(|_| ApiError::invalid("query", "limit (1-200) and cursor only"))?;
    let before = q
        .cursor
        .as_deref()
        .map(|c| {
            coffer_ledger::HoldId::parse(c)
                .map_err(|_| ApiError::invalid("cursor", "next_cursor of a previous page"))
        })
        .transpose()?;
    let page = state
        .wallets
        .holds(&principal, wallet, before, q.limit.unwrap_or(DEFAULT_PAGE))
        .await?;
    ok(views::Holds::from(&page))
}

#[utoipa::path(
    get,
    path = "/v1/holds/{id}",
    tag = "holds",
    params(("id" = String, Path, description = "the resource id")),
    responses(
        (status = 200, description = "the hold, as it stands now", body = views::Hold),
        RoleErrors,
        HoldNotFound,
        ServiceErrors,
    ),
    security(("bearer" = []))
)]
pub(in crate::api) async fn get(
    State(state): State<ApiState>,
    principal: Principal,
    PathId(id): PathId,
) -> ApiResult {
    let h = state.wallets.hold(&principal, hold_id(&id)?).await?;
    ok(views::Hold::from(&h))
}

#[derive(Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(in crate::api) struct CaptureBody {
    /// How much to capture, minor units; absent: all of it. The rest is released.
    amount: Option<i64>,
}

#[utoipa::path(
    post,
    path = "/v1/holds/{id}/capture",
    tag = "holds",
    request_body(content = Option<CaptureBody>, description = "optional: the amount, when less than all of it"),
    params(
        ("id" = String, Path, description = "the resource id"),
        ("Idempotency-Key" = String, Header, description = "replays the first answer for the same body")
    ),
    responses(
        (status = 200, description = "captured (or the replay): the transaction moved the money, the rest was released", body = views::Capture),
        RoleErrors,
        HoldNotFound,
        (status = 409, description = "the hold was resolved (hold_resolved) or expired (hold_expired), its wallet is frozen (wallet_frozen), or the key was used for another request", body = Problem, content_type = PROBLEM_JSON),
        JsonErrors,
        Invalid,
        ServiceErrors,
    ),
    security(("bearer" = []))
)]
pub(in crate::api) async fn capture(
    State(state): State<ApiState>,
    principal: Principal,
    PathId(id): PathId,
    IdempotencyHeader(key): IdempotencyHeader,
    OptionalJson(b): OptionalJson<CaptureBody>,
) -> ApiResult {
    let id = hold_id(&id)?;
    let max = state.ledger.config().max_amount_minor;
    let amount = b
        .amount
        .map(|a| coffer_ledger::Amount::parse(a, max).map_err(coffer_ledger::Error::from))
        .transpose()?;
    let key = coffer_ledger::IdempotencyKey::parse(&key)?;
    let (h, t) = state
        .wallets
        .capture_hold(&principal, id, amount, &key)
        .await?;
    ok(views::Capture::new(&h, &t))
}

#[utoipa::path(
    post,
    path = "/v1/holds/{id}/void",
    tag = "holds",
    params(
        ("id" = String, Path, description = "the resource id"),
        ("Idempotency-Key" = String, Header, description = "replays the first answer")
    ),
    responses(
        (status = 200, description = "voided (or the replay): the money is released", body = views::Hold),
        (status = 400, description = "no Idempotency-Key (idempotency_key_required)", body = Problem, content_type = PROBLEM_JSON),
        RoleErrors,
        HoldNotFound,
        (status = 409, description = "the hold was resolved (hold_resolved) or expired (hold_expired), or the key was used for another request", body = Problem, content_type = PROBLEM_JSON),
        Invalid,
        ServiceErrors,
    ),
    security(("bearer" = []))
)]
pub(in crate::api) async fn void(
    State(state): State<ApiState>,
    principal: Principal,
    PathId(id): PathId,
    IdempotencyHeader(key): IdempotencyHeader,
) -> ApiResult {
    let id = hold_id(&id)?;
    let key = coffer_ledger::IdempotencyKey::parse(&key)?;
    let h = state.wallets.void_hold(&principal, id, &key).await?;
    ok(views::Hold::from(&h))
}
