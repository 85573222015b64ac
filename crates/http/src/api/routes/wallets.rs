//! `wallets`: opening and listing the caller's wallets, reading one, its history and one
//! transaction (with its signature and signer key), and changing a wallet's PIN. Whoever may
//! administer wallets (`wallet:write`) reads any wallet; everyone else reads their own, and
//! another user's wallet is a 404: rules of the use cases (`coffer_usecases::Wallets`), which
//! the handlers call after parsing.

use axum::extract::{Query, State};
use coffer_ledger::port::HistoryFilter;
use coffer_ledger::{HistoryCursor, TransactionKind, WalletCursor, WalletId};
use serde::Deserialize;

use super::shared::{ApiResult, DEFAULT_PAGE, PageQuery, created, currency, no_content, ok};
use crate::api::error::ApiError;
use crate::api::extract::{Json, PathId, PinText, Principal, transaction_id, wallet_id};
use crate::api::state::ApiState;
use crate::api::views;
use crate::api::views::errors::{
    Invalid, JsonErrors, PinErrors, RoleErrors, ServiceErrors, TransactionNotFound, WalletErrors,
};
use crate::problem::{PROBLEM_JSON, Problem};

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(in crate::api) struct OpenWalletBody {
    currency: String,
    #[schema(value_type = String)]
    pin: PinText,
}

#[utoipa::path(
    post,
    path = "/v1/wallets",
    tag = "wallets",
    request_body = OpenWalletBody,
    responses(
        (status = 201, description = "opened", body = views::Wallet),
        (status = 409, description = "too_many_wallets: the caller holds the most wallets allowed", body = Problem, content_type = PROBLEM_JSON),
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
    let (currency, pin) = (currency(&b.currency)?, b.pin.parse()?);
    let w = state
        .wallets
        .open_wallet(&principal, currency, &pin)
        .await?;
    created(views::Wallet::from(&w))
}

#[utoipa::path(
    get,
    path = "/v1/wallets",
    tag = "wallets",
    params(
        ("limit" = Option<u32>, Query, description = "1 to 200, default 50"),
        ("cursor" = Option<String>, Query, description = "next_cursor of the previous page")
    ),
    responses(
        (status = 200, description = "the caller's wallets, oldest first", body = views::Wallets),
        RoleErrors,
        Invalid,
        ServiceErrors,
    ),
    security(("bearer" = []))
)]
pub(in crate::api) async fn list_wallets(
    State(state): State<ApiState>,
    principal: Principal,
    query: Result<Query<PageQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult {
    let Query(q) =
        query.map_err(|_| ApiError::invalid("query", "limit (1-200) and cursor only"))?;
    let cursor = q.cursor.as_deref().map(WalletCursor::parse).transpose()?;
    let page = state
        .wallets
        .wallets(&principal, cursor, q.limit.unwrap_or(DEFAULT_PAGE))
        .await?;
    ok(views::Wallets::from(&page))
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
    let w = state.wallets.wallet(&principal, wallet_id(&id)?).await?;
    ok(views::Wallet::from(&w))
}

/// A history page's query: its size, where it starts, and which transactions it selects.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(in crate::api) struct HistoryQuery {
    limit: Option<u32>,
    cursor: Option<String>,
    kind: Option<String>,
    from: Option<String>,
    to: Option<String>,
    counterparty: Option<String>,
    min_amount: Option<i64>,
    max_amount: Option<i64>,
}

/// An RFC 3339 time of the query, as microseconds since the epoch.
fn query_time(field: &'static str, raw: &str) -> Result<i64, ApiError> {
    humantime::parse_rfc3339_weak(raw)
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .and_then(|d| i64::try_from(d.as_micros()).ok())
        .ok_or_else(|| {
            ApiError::invalid(field, "an RFC 3339 time in UTC, e.g. 2026-12-01T00:00:00Z")
        })
}

impl HistoryQuery {
    fn filter(&self) -> Result<HistoryFilter, ApiError> {
        Ok(HistoryFilter {
            kind: self
                .kind
                .as_deref()
                .map(|k| {
                    TransactionKind::parse(k).ok_or_else(|| {
                        ApiError::invalid(
                            "kind",
                            "deposit, withdrawal, transfer, reversal or sweep",
                        )
                    })
                })
                .transpose()?,
            from_micros: self
                .from
                .as_deref()
                .map(|t| query_time("from", t))
                .transpose()?,
            to_micros: self
                .to
                .as_deref()
                .map(|t| query_time("to", t))
                .transpose()?,
            counterparty: self
                .counterparty
                .as_deref()
                .map(|w| {
                    WalletId::parse(w).map_err(|_| ApiError::invalid("counterparty", "a wallet id"))
                })
                .transpose()?,
            min_amount: self.min_amount,
            max_amount: self.max_amount,
        })
    }
}

#[utoipa::path(
    get,
    path = "/v1/wallets/{id}/transactions",
    tag = "wallets",
    params(
        ("id" = String, Path, description = "the resource id"),
        ("limit" = Option<u32>, Query, description = "1 to 200, default 50"),
        ("cursor" = Option<String>, Query, description = "next_cursor of the previous page (with the same filters)"),
        ("kind" = Option<String>, Query, description = "only deposit, withdrawal, transfer, reversal or sweep"),
        ("from" = Option<String>, Query, description = "only at or after this time (RFC 3339, UTC)"),
        ("to" = Option<String>, Query, description = "only before this time (RFC 3339, UTC)"),
        ("counterparty" = Option<String>, Query, description = "only those with this other wallet"),
        ("min_amount" = Option<i64>, Query, description = "only those moving at least this many minor units (applied after decryption: a page reads at most 1,000 transactions and says so in stopped_early)"),
        ("max_amount" = Option<i64>, Query, description = "only those moving at most this many minor units")
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
    let Query(q) = query.map_err(|_| {
        ApiError::invalid(
            "query",
            "limit (1-200), cursor, kind, from, to, counterparty, min_amount and max_amount only",
        )
    })?;
    let page = state
        .wallets
        .history(
            &principal,
            wallet_id(&id)?,
            &q.filter()?,
            q.cursor.as_deref().map(HistoryCursor::parse).transpose()?,
            q.limit.unwrap_or(DEFAULT_PAGE),
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
    let t = state
        .wallets
        .transaction(&principal, transaction_id(&id)?)
        .await?;
    ok(views::Transaction::from(&t))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(in crate::api) struct ChangePinBody {
    #[schema(value_type = String)]
    old_pin: PinText,
    #[schema(value_type = String)]
    new_pin: PinText,
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
    let wallet = wallet_id(&id)?;
    let (old, new) = (b.old_pin.parse()?, b.new_pin.parse()?);
    state
        .wallets
        .change_pin(&principal, wallet, &old, &new)
        .await?;
    no_content()
}
