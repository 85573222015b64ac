//! Spending limits: a wallet's owner reads them with what remains under each
//! (`GET /v1/wallets/{id}/limits`, tag `wallets`); an administrator with `wallet:limits` sets a
//! wallet's own or returns it to its currency's default (`PUT /v1/admin/wallets/{id}/limits`,
//! tag `admin`). Money-out past a limit answers 422 `limit_exceeded` with the limit and what
//! remains (the ledger checks them, under the wallet's lock).

use axum::extract::State;
use coffer_ledger::{Amount, Limit, LimitKind, LimitSet, LimitWindow};
use serde::Deserialize;

use super::shared::{ApiResult, ok};
use crate::api::error::ApiError;
use crate::api::extract::{Json, PathId, Principal, wallet_id};
use crate::api::state::ApiState;
use crate::api::views;
use crate::api::views::errors::{Invalid, JsonErrors, ServiceErrors, WalletErrors};
use crate::problem::{PROBLEM_JSON, Problem};

#[utoipa::path(
    get,
    path = "/v1/wallets/{id}/limits",
    tag = "wallets",
    params(("id" = String, Path, description = "the resource id")),
    responses(
        (status = 200, description = "the wallet's limits, each with what it used and what remains", body = views::Limits),
        WalletErrors,
        (status = 410, description = "the wallet's owner was erased (wallet_erased)", body = Problem, content_type = PROBLEM_JSON),
        ServiceErrors,
    ),
    security(("bearer" = []))
)]
pub(in crate::api) async fn get(
    State(state): State<ApiState>,
    principal: Principal,
    PathId(id): PathId,
) -> ApiResult {
    let v = state.wallets.limits(&principal, wallet_id(&id)?).await?;
    ok(views::Limits::from(&v))
}

/// One limit to set.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(in crate::api) struct LimitBody {
    /// `withdrawal`, `transfer` or `hold`.
    kind: String,
    /// `per_transaction`, `rolling_24h`, `rolling_7d` or `rolling_30d`.
    window: String,
    /// The most, minor units.
    max_minor: i64,
}

/// A wallet's own limits.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(in crate::api) struct LimitsBody {
    /// The wallet's limits, each kind and window at most once (an empty list: no limit at
    /// all); null or absent: its currency's default policy.
    limits: Option<Vec<LimitBody>>,
}

fn limit_set(body: Vec<LimitBody>) -> Result<LimitSet, ApiError> {
    let limits = body
        .iter()
        .enumerate()
        .map(|(i, l)| {
            let field = |f: &str| format!("limits[{i}].{f}");
            Ok(Limit {
                kind: LimitKind::parse(&l.kind).ok_or_else(|| {
                    ApiError::invalid(&field("kind"), "withdrawal, transfer or hold")
                })?,
                window: LimitWindow::parse(&l.window).ok_or_else(|| {
                    ApiError::invalid(
                        &field("window"),
                        "per_transaction, rolling_24h, rolling_7d or rolling_30d",
                    )
                })?,
                max: Amount::parse(l.max_minor, i64::MAX)
                    .map_err(|_| ApiError::invalid(&field("max_minor"), "a positive amount"))?,
            })
        })
        .collect::<Result<Vec<_>, ApiError>>()?;
    LimitSet::new(limits).map_err(|e| ApiError::invalid("limits", e.to_string()))
}

#[utoipa::path(
    put,
    path = "/v1/admin/wallets/{id}/limits",
    tag = "admin",
    request_body = LimitsBody,
    params(("id" = String, Path, description = "the resource id")),
    responses(
        (status = 200, description = "set: the wallet's limits as they now stand (what it sent still counts)", body = views::Limits),
        WalletErrors,
        (status = 409, description = "the wallet is closed (wallet_closed)", body = Problem, content_type = PROBLEM_JSON),
        (status = 410, description = "the wallet's owner was erased (wallet_erased)", body = Problem, content_type = PROBLEM_JSON),
        JsonErrors,
        Invalid,
        ServiceErrors,
    ),
    security(("bearer" = []))
)]
pub(in crate::api) async fn set(
    State(state): State<ApiState>,
    principal: Principal,
    PathId(id): PathId,
    Json(b): Json<LimitsBody>,
) -> ApiResult {
    let wallet = wallet_id(&id)?;
    let limits = b.limits.map(limit_set).transpose()?;
    let v = state.admin.set_limits(&principal, wallet, limits).await?;
    ok(views::Limits::from(&v))
}
