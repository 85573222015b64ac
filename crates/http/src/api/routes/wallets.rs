//! `wallets`: opening and listing the caller's wallets, reading one, its history and one
//! transaction (with its signature and signer key), and changing a wallet's PIN. Whoever may
//! administer wallets (`wallet:write`) reads any wallet; everyone else reads their own, and
//! another user's wallet is a 404.

use axum::extract::{Query, State};
use coffer_auth::Permission;
use coffer_ledger::Caller;
use serde::Deserialize;

use super::shared::{ApiResult, created, no_content, ok};
use crate::api::error::ApiError;
use crate::api::extract::{Json, PathId, Principal, transaction_id, wallet_id};
use crate::api::state::ApiState;
use crate::api::views;
use crate::api::views::errors::{
    Invalid, JsonErrors, PinErrors, RoleErrors, ServiceErrors, TransactionNotFound, WalletErrors,
};

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(in crate::api) struct OpenWalletBody {
    currency: String,
    pin: String,
}

#[utoipa::path(
    post,
    path = "/v1/wallets",
    tag = "wallets",
    request_body = OpenWalletBody,
    responses(
        (status = 201, description = "opened", body = views::Wallet),
        RoleErrors,
        JsonErrors,
        Invalid,
        ServiceErrors,
    ),
    security(("bearer" = []))
)]
pub(in crate::api) async fn open_wallet(
    State(state): State<ApiState>,
    principal: Principal,
    Json(b): Json<OpenWalletBody>,
) -> ApiResult {
    principal.require(&state, Permission::WalletManage)?;
    let w = state
        .ledger
        .open_wallet(principal.ledger_user(), &b.currency, &b.pin)
        .await?;
    created(views::Wallet::from(&w))
}

#[utoipa::path(
    get,
    path = "/v1/wallets",
    tag = "wallets",
    responses(
        (status = 200, description = "the caller's wallets", body = views::Wallets),
        RoleErrors,
        ServiceErrors,
    ),
    security(("bearer" = []))
)]
pub(in crate::api) async fn list_wallets(
    State(state): State<ApiState>,
    principal: Principal,
) -> ApiResult {
    principal.require(&state, Permission::WalletRead)?;
    let ws = state.ledger.wallets_of(principal.ledger_user()).await?;
    ok(views::Wallets::from(ws.as_slice()))
}

fn caller(state: &ApiState, principal: &Principal) -> Caller {
    // Whoever may administer wallets reads any; everyone else reads their own.
    if state
        .accounts
        .rbac()
        .allows(&principal.claims.roles, Permission::WalletWrite)
    {
        Caller::Admin(principal.ledger_user())
    } else {
        Caller::User(principal.ledger_user())
    }
}

#[utoipa::path(
    get,
    path = "/v1/wallets/{id}",
    tag = "wallets",
    params(("id" = String, Path, description = "the resource id")),
    responses(
        (status = 200, description = "the wallet", body = views::Wallet),
        WalletErrors,
        ServiceErrors,
    ),
    security(("bearer" = []))
)]
pub(in crate::api) async fn get_wallet(
    State(state): State<ApiState>,
    principal: Principal,
    PathId(id): PathId,
) -> ApiResult {
    principal.require(&state, Permission::WalletRead)?;
    let w = state
        .ledger
        .wallet(caller(&state, &principal), wallet_id(&id)?)
        .await?;
    ok(views::Wallet::from(&w))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(in crate::api) struct HistoryQuery {
    limit: Option<u32>,
    cursor: Option<String>,
}

#[utoipa::path(
    get,
    path = "/v1/wallets/{id}/transactions",
    tag = "wallets",
    params(
        ("id" = String, Path, description = "the resource id"),
        ("limit" = Option<u32>, Query, description = "1 to 200, default 50"),
        ("cursor" = Option<String>, Query, description = "next_cursor of the previous page")
    ),
    responses(
        (status = 200, description = "newest first", body = views::History),
        WalletErrors,
        Invalid,
        ServiceErrors,
    ),
    security(("bearer" = []))
)]
pub(in crate::api) async fn history(
    State(state): State<ApiState>,
    principal: Principal,
    PathId(id): PathId,
    query: Result<Query<HistoryQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult {
    principal.require(&state, Permission::WalletRead)?;
    let Query(q) =
        query.map_err(|_| ApiError::invalid("query", "limit (1-100) and cursor only"))?;
    let page = state
        .ledger
        .history(
            caller(&state, &principal),
            wallet_id(&id)?,
            q.cursor.as_deref(),
            q.limit.unwrap_or(50),
        )
        .await?;
    ok(views::History::from(&page))
}

#[utoipa::path(
    get,
    path = "/v1/transactions/{id}",
    tag = "wallets",
    params(("id" = String, Path, description = "the resource id")),
    responses(
        (status = 200, description = "with signature and signer key", body = views::Transaction),
        RoleErrors,
        TransactionNotFound,
        ServiceErrors,
    ),
    security(("bearer" = []))
)]
pub(in crate::api) async fn get_transaction(
    State(state): State<ApiState>,
    principal: Principal,
    PathId(id): PathId,
) -> ApiResult {
    principal.require(&state, Permission::WalletRead)?;
    let t = state
        .ledger
        .transaction(caller(&state, &principal), transaction_id(&id)?)
        .await?;
    ok(views::Transaction::from(&t))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(in crate::api) struct ChangePinBody {
    old_pin: String,
    new_pin: String,
}

#[utoipa::path(
    put,
    path = "/v1/wallets/{id}/pin",
    tag = "wallets",
    request_body = ChangePinBody,
    params(("id" = String, Path, description = "the resource id")),
    responses(
        (status = 204, description = "changed"),
        PinErrors,
        JsonErrors,
        Invalid,
        ServiceErrors,
    ),
    security(("bearer" = []))
)]
pub(in crate::api) async fn change_pin(
    State(state): State<ApiState>,
    principal: Principal,
    PathId(id): PathId,
    Json(b): Json<ChangePinBody>,
) -> ApiResult {
    principal.require(&state, Permission::WalletManage)?;
    state
        .ledger
        .change_pin(
            principal.ledger_user(),
            wallet_id(&id)?,
            &b.old_pin,
            &b.new_pin,
        )
        .await?;
    no_content()
}
