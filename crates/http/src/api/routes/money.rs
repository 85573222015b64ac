//! `money`: deposits, withdrawals and transfers. Each POST needs an `Idempotency-Key` (the
//! ledger replays the first answer for the same body, or refuses a different one); money-out
//! (withdrawals and transfers) takes the wallet's PIN and, once what left the wallet within the
//! configured window would pass the threshold, a second factor in the token's `amr` (403
//! `mfa_required`). The permissions and the second factor are the use cases' and the ledger's
//! rules (`coffer_usecases::Wallets`): the handlers parse and call.

use axum::extract::State;
use serde::Deserialize;

use super::shared::{ApiResult, created, money_request};
use crate::api::error::ApiError;
use crate::api::extract::{IdempotencyHeader, Json, PathId, PinText, Principal, wallet_id};
use crate::api::state::ApiState;
use crate::api::views;
use crate::api::views::errors::{
    Invalid, MoneyJsonErrors, MoneyOutErrors, ServiceErrors, WalletErrors,
};
use crate::problem::{PROBLEM_JSON, Problem};

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(in crate::api) struct DepositBody {
    amount: i64,
    currency: String,
    reference: Option<String>,
}

#[utoipa::path(
    post,
    path = "/v1/wallets/{id}/deposits",
    tag = "money",
    request_body = DepositBody,
    params(
        ("id" = String, Path, description = "the resource id"),
        ("Idempotency-Key" = String, Header, description = "replays the first answer for the same body")
    ),
    responses(
        (status = 201, description = "deposited (or the replay of the first answer)", body = views::Transaction),
        WalletErrors,
        (status = 409, description = "frozen, closed, or idempotency conflict", body = Problem, content_type = PROBLEM_JSON),
        MoneyJsonErrors,
        Invalid,
        ServiceErrors,
    ),
    security(("bearer" = []))
)]
pub(in crate::api) async fn deposit(
    State(state): State<ApiState>,
    principal: Principal,
    PathId(id): PathId,
    IdempotencyHeader(key): IdempotencyHeader,
    Json(b): Json<DepositBody>,
) -> ApiResult {
    let wallet = wallet_id(&id)?;
    let request = money_request(&state, b.amount, &b.currency, b.reference.as_deref(), &key)?;
    let t = state.wallets.deposit(&principal, wallet, &request).await?;
    created(views::Transaction::from(&t))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(in crate::api) struct WithdrawBody {
    amount: i64,
    currency: String,
    #[schema(value_type = String)]
    pin: PinText,
    reference: Option<String>,
}

#[utoipa::path(
    post,
    path = "/v1/wallets/{id}/withdrawals",
    tag = "money",
    request_body = WithdrawBody,
    params(
        ("id" = String, Path, description = "the resource id"),
        ("Idempotency-Key" = String, Header, description = "replays the first answer for the same body")
    ),
    responses(
        (status = 201, description = "withdrawn (or the replay)", body = views::Transaction),
        MoneyOutErrors,
        MoneyJsonErrors,
        Invalid,
        ServiceErrors,
    ),
    security(("bearer" = []))
)]
pub(in crate::api) async fn withdraw(
    State(state): State<ApiState>,
    principal: Principal,
    PathId(id): PathId,
    IdempotencyHeader(key): IdempotencyHeader,
    Json(b): Json<WithdrawBody>,
) -> ApiResult {
    let wallet = wallet_id(&id)?;
    let request = money_request(&state, b.amount, &b.currency, b.reference.as_deref(), &key)?;
    let pin = b.pin.parse()?;
    let t = state
        .wallets
        .withdraw(&principal, wallet, &pin, &request)
        .await?;
    created(views::Transaction::from(&t))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(in crate::api) struct TransferBody {
    to_wallet_id: String,
    amount: i64,
    currency: String,
    #[schema(value_type = String)]
    pin: PinText,
    memo: Option<String>,
}

#[utoipa::path(
    post,
    path = "/v1/wallets/{id}/transfers",
    tag = "money",
    request_body = TransferBody,
    params(
        ("id" = String, Path, description = "the resource id"),
        ("Idempotency-Key" = String, Header, description = "replays the first answer for the same body")
    ),
    responses(
        (status = 201, description = "transferred (or the replay)", body = views::Transaction),
        MoneyOutErrors,
        MoneyJsonErrors,
        Invalid,
        ServiceErrors,
    ),
    security(("bearer" = []))
)]
pub(in crate::api) async fn transfer(
    State(state): State<ApiState>,
    principal: Principal,
    PathId(id): PathId,
    IdempotencyHeader(key): IdempotencyHeader,
    Json(b): Json<TransferBody>,
) -> ApiResult {
    let from = wallet_id(&id)?;
    let to = coffer_ledger::WalletId::parse(&b.to_wallet_id)
        .map_err(|_| ApiError::invalid("to_wallet_id", "not a wallet id"))?;
    let request = money_request(&state, b.amount, &b.currency, b.memo.as_deref(), &key)?;
    let pin = b.pin.parse()?;
    let t = state
        .wallets
        .transfer(&principal, from, to, &pin, &request)
        .await?;
    created(views::Transaction::from(&t))
}
