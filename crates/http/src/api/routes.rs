//! The handlers. Each checks its permission, calls one service operation and maps the result;
//! ownership (a user reaches only their own wallets: another's answers 404) is the ledger's
//! rule, not a route's.

use axum::Json as JsonResponse;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use coffer_audit::{Actor, AuditQuery, EntityId};
use coffer_auth::Permission;
use coffer_auth::accounts::{Credentials, Registration};
use coffer_ledger::{Caller, MoneyRequest};
use serde::Deserialize;
use serde_json::json;

use super::ApiState;
use super::error::ApiError;
use super::extract::{
    Ctx, IdempotencyKey, Json, Principal, parse_json, transaction_id, user_id, wallet_id,
};
use super::views;

type ApiResult = Result<Response, ApiError>;

fn created(body: impl serde::Serialize) -> ApiResult {
    Ok((StatusCode::CREATED, JsonResponse(body)).into_response())
}

fn ok(body: impl serde::Serialize) -> ApiResult {
    Ok(JsonResponse(body).into_response())
}

fn no_content() -> ApiResult {
    Ok(StatusCode::NO_CONTENT.into_response())
}

// ---- auth ----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RegisterBody {
    email: String,
    password: String,
    phone: Option<String>,
    tax_id: Option<String>,
}

pub(super) async fn register(
    State(state): State<ApiState>,
    Ctx(ctx): Ctx,
    Json(b): Json<RegisterBody>,
) -> ApiResult {
    let id = state
        .accounts
        .register(
            Registration {
                email: &b.email,
                password: &b.password,
                phone: b.phone.as_deref(),
                tax_id: b.tax_id.as_deref(),
            },
            &ctx,
        )
        .await?;
    created(json!({ "user_id": id.to_string() }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct LoginBody {
    email: String,
    password: String,
    totp: Option<String>,
    client_id: Option<String>,
}

pub(super) async fn login(
    State(state): State<ApiState>,
    Ctx(ctx): Ctx,
    Json(b): Json<LoginBody>,
) -> ApiResult {
    let session = state
        .accounts
        .login(
            Credentials {
                email: &b.email,
                password: &b.password,
                totp: b.totp.as_deref(),
                client_id: b.client_id.as_deref().unwrap_or("coffer"),
            },
            &ctx,
        )
        .await?;
    ok(views::Tokens::from(&session))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RefreshBody {
    refresh_token: String,
}

pub(super) async fn refresh(
    State(state): State<ApiState>,
    Ctx(ctx): Ctx,
    Json(b): Json<RefreshBody>,
) -> ApiResult {
    let session = state.accounts.refresh(&b.refresh_token, &ctx).await?;
    ok(views::Tokens::from(&session))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct LogoutBody {
    /// Accepted for clients that send it; the session is the access token's own.
    #[serde(rename = "refresh_token")]
    _refresh_token: Option<String>,
}

pub(super) async fn logout(
    State(state): State<ApiState>,
    principal: Principal,
    Ctx(ctx): Ctx,
    body: Bytes,
) -> ApiResult {
    if !body.is_empty() {
        let _: LogoutBody = parse_json(&body)?;
    }
    state.accounts.logout(&principal.claims, &ctx).await?;
    no_content()
}

pub(super) async fn revoke_all(
    State(state): State<ApiState>,
    principal: Principal,
    Ctx(ctx): Ctx,
) -> ApiResult {
    state
        .accounts
        .revoke_sessions(
            Actor::User(entity(&principal.user.to_string())),
            principal.user,
            &ctx,
        )
        .await?;
    no_content()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PasswordBody {
    password: String,
}

pub(super) async fn totp_enroll(
    State(state): State<ApiState>,
    principal: Principal,
    Ctx(ctx): Ctx,
    Json(b): Json<PasswordBody>,
) -> ApiResult {
    let e = state
        .accounts
        .totp_enroll(principal.user, &b.password, &ctx)
        .await?;
    ok(json!({ "secret": e.secret.as_str(), "otpauth_uri": e.otpauth_uri.as_str() }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CodeBody {
    code: String,
}

pub(super) async fn totp_confirm(
    State(state): State<ApiState>,
    principal: Principal,
    Ctx(ctx): Ctx,
    Json(b): Json<CodeBody>,
) -> ApiResult {
    state
        .accounts
        .totp_confirm(principal.user, &b.code, &ctx)
        .await?;
    no_content()
}

pub(super) async fn totp_disable(
    State(state): State<ApiState>,
    principal: Principal,
    Ctx(ctx): Ctx,
    Json(b): Json<CodeBody>,
) -> ApiResult {
    state
        .accounts
        .totp_disable(principal.user, &b.code, &ctx)
        .await?;
    no_content()
}

pub(super) async fn jwks(State(state): State<ApiState>) -> ApiResult {
    ok(state.accounts.tokens().jwks())
}

pub(super) async fn me(State(state): State<ApiState>, principal: Principal) -> ApiResult {
    let profile = state.accounts.profile(principal.user).await?;
    let permissions: Vec<&str> = state
        .accounts
        .rbac()
        .permissions(&principal.claims.roles)
        .into_iter()
        .map(Permission::as_str)
        .collect();
    ok(json!({
        "user_id": profile.id.to_string(),
        "email": profile.email.expose(),
        "roles": principal.claims.roles,
        "permissions": permissions,
        "mfa_enabled": profile.mfa_enabled,
    }))
}

// ---- wallets ----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct OpenWalletBody {
    currency: String,
    pin: String,
}

pub(super) async fn open_wallet(
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

pub(super) async fn list_wallets(State(state): State<ApiState>, principal: Principal) -> ApiResult {
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

pub(super) async fn get_wallet(
    State(state): State<ApiState>,
    principal: Principal,
    Path(id): Path<String>,
) -> ApiResult {
    principal.require(&state, Permission::WalletRead)?;
    let w = state
        .ledger
        .wallet(caller(&state, &principal), wallet_id(&id)?)
        .await?;
    ok(views::Wallet::from(&w))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct DepositBody {
    amount: i64,
    currency: String,
    reference: Option<String>,
}

pub(super) async fn deposit(
    State(state): State<ApiState>,
    principal: Principal,
    Path(id): Path<String>,
    IdempotencyKey(key): IdempotencyKey,
    Json(b): Json<DepositBody>,
) -> ApiResult {
    principal.require(&state, Permission::WalletDeposit)?;
    let t = state
        .ledger
        .deposit(
            principal.ledger_user(),
            wallet_id(&id)?,
            &MoneyRequest {
                amount_minor: b.amount,
                currency: &b.currency,
                memo: b.reference.as_deref(),
                idempotency_key: &key,
            },
        )
        .await?;
    created(views::Transaction::from(&t))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct WithdrawBody {
    amount: i64,
    currency: String,
    pin: String,
    reference: Option<String>,
}

/// Money-out above the configured threshold needs a second factor in the token's `amr`.
fn check_mfa(
    state: &ApiState,
    principal: &Principal,
    amount: i64,
    currency: &str,
) -> Result<(), ApiError> {
    let Ok(c) = coffer_ledger::Currency::parse(currency) else {
        // The ledger names the bad currency.
        return Ok(());
    };
    state
        .mfa
        .check(&principal.claims.amr, amount, u32::from(c.exponent()))
        .map_err(|e| {
            ApiError::new(
                StatusCode::FORBIDDEN,
                "mfa_required",
                "Second factor required",
            )
            .detail(e.to_string())
        })
}

pub(super) async fn withdraw(
    State(state): State<ApiState>,
    principal: Principal,
    Path(id): Path<String>,
    IdempotencyKey(key): IdempotencyKey,
    Json(b): Json<WithdrawBody>,
) -> ApiResult {
    principal.require(&state, Permission::WalletWithdraw)?;
    check_mfa(&state, &principal, b.amount, &b.currency)?;
    let t = state
        .ledger
        .withdraw(
            principal.ledger_user(),
            wallet_id(&id)?,
            &b.pin,
            &MoneyRequest {
                amount_minor: b.amount,
                currency: &b.currency,
                memo: b.reference.as_deref(),
                idempotency_key: &key,
            },
        )
        .await?;
    created(views::Transaction::from(&t))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct TransferBody {
    to_wallet_id: String,
    amount: i64,
    currency: String,
    pin: String,
    memo: Option<String>,
}

pub(super) async fn transfer(
    State(state): State<ApiState>,
    principal: Principal,
    Path(id): Path<String>,
    IdempotencyKey(key): IdempotencyKey,
    Json(b): Json<TransferBody>,
) -> ApiResult {
    principal.require(&state, Permission::WalletTransfer)?;
    check_mfa(&state, &principal, b.amount, &b.currency)?;
    let to = coffer_ledger::WalletId::parse(&b.to_wallet_id)
        .map_err(|_| ApiError::invalid("to_wallet_id", "not a wallet id"))?;
    let t = state
        .ledger
        .transfer(
            principal.ledger_user(),
            wallet_id(&id)?,
            to,
            &b.pin,
            &MoneyRequest {
                amount_minor: b.amount,
                currency: &b.currency,
                memo: b.memo.as_deref(),
                idempotency_key: &key,
            },
        )
        .await?;
    created(views::Transaction::from(&t))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct HistoryQuery {
    limit: Option<u32>,
    cursor: Option<String>,
}

pub(super) async fn history(
    State(state): State<ApiState>,
    principal: Principal,
    Path(id): Path<String>,
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

pub(super) async fn get_transaction(
    State(state): State<ApiState>,
    principal: Principal,
    Path(id): Path<String>,
) -> ApiResult {
    principal.require(&state, Permission::WalletRead)?;
    let t = state
        .ledger
        .transaction(caller(&state, &principal), transaction_id(&id)?)
        .await?;
    ok(views::Transaction::from(&t))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ChangePinBody {
    old_pin: String,
    new_pin: String,
}

pub(super) async fn change_pin(
    State(state): State<ApiState>,
    principal: Principal,
    Path(id): Path<String>,
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

// ---- admin ----

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct ReasonBody {
    /// Accepted (DESIGN.md §3); the ledger's audit record names the action and the admin.
    #[serde(rename = "reason")]
    _reason: Option<String>,
}

fn optional_body<T: serde::de::DeserializeOwned + Default>(body: &Bytes) -> Result<T, ApiError> {
    if body.is_empty() {
        Ok(T::default())
    } else {
        parse_json(body)
    }
}

pub(super) async fn freeze(
    State(state): State<ApiState>,
    principal: Principal,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult {
    principal.require(&state, Permission::WalletFreeze)?;
    let _: ReasonBody = optional_body(&body)?;
    let w = state
        .ledger
        .freeze(principal.ledger_user(), wallet_id(&id)?)
        .await?;
    ok(views::Wallet::from(&w))
}

pub(super) async fn unfreeze(
    State(state): State<ApiState>,
    principal: Principal,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult {
    principal.require(&state, Permission::WalletFreeze)?;
    let _: ReasonBody = optional_body(&body)?;
    let w = state
        .ledger
        .unfreeze(principal.ledger_user(), wallet_id(&id)?)
        .await?;
    ok(views::Wallet::from(&w))
}

pub(super) async fn close(
    State(state): State<ApiState>,
    principal: Principal,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult {
    principal.require(&state, Permission::WalletClose)?;
    let _: ReasonBody = optional_body(&body)?;
    let w = state
        .ledger
        .close(principal.ledger_user(), wallet_id(&id)?)
        .await?;
    ok(views::Wallet::from(&w))
}

pub(super) async fn unlock_pin(
    State(state): State<ApiState>,
    principal: Principal,
    Path(id): Path<String>,
) -> ApiResult {
    principal.require(&state, Permission::WalletWrite)?;
    let w = state
        .ledger
        .unlock_pin(principal.ledger_user(), wallet_id(&id)?)
        .await?;
    ok(views::Wallet::from(&w))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ResetPinBody {
    new_pin: String,
}

pub(super) async fn reset_pin(
    State(state): State<ApiState>,
    principal: Principal,
    Path(id): Path<String>,
    Json(b): Json<ResetPinBody>,
) -> ApiResult {
    principal.require(&state, Permission::WalletWrite)?;
    let w = state
        .ledger
        .reset_pin(principal.ledger_user(), wallet_id(&id)?, &b.new_pin)
        .await?;
    ok(views::Wallet::from(&w))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ReversalBody {
    reason: String,
}

pub(super) async fn reverse(
    State(state): State<ApiState>,
    principal: Principal,
    Path(id): Path<String>,
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RolesBody {
    roles: Vec<String>,
}

pub(super) async fn set_roles(
    State(state): State<ApiState>,
    principal: Principal,
    Ctx(ctx): Ctx,
    Path(id): Path<String>,
    Json(b): Json<RolesBody>,
) -> ApiResult {
    principal.require(&state, Permission::UserAdmin)?;
    let user = user_id(&id)?;
    state
        .accounts
        .set_roles(principal.user, user, &b.roles, &ctx)
        .await?;
    let profile = state.accounts.profile(user).await?;
    ok(json!({ "user_id": user.to_string(), "roles": profile.roles }))
}

pub(super) async fn revoke_user_sessions(
    State(state): State<ApiState>,
    principal: Principal,
    Ctx(ctx): Ctx,
    Path(id): Path<String>,
) -> ApiResult {
    principal.require(&state, Permission::UserAdmin)?;
    let user = user_id(&id)?;
    // A user that does not exist has no sessions; say so rather than succeed quietly.
    state.accounts.profile(user).await?;
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AuditPageQuery {
    before: Option<i64>,
    limit: Option<u32>,
}

pub(super) async fn audit_events(
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

pub(super) async fn audit_verify(State(state): State<ApiState>, principal: Principal) -> ApiResult {
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

// ---- health ----

pub(super) async fn healthz() -> ApiResult {
    ok(json!({ "status": "ok" }))
}

pub(super) async fn readyz(State(state): State<ApiState>) -> ApiResult {
    let checks = state.readiness.check().await;
    let ready = checks.iter().all(|(_, r)| r.is_ok());
    let body = json!({
        "status": if ready { "ready" } else { "not_ready" },
        "checks": checks.iter().map(|(name, r)| (name.to_string(), json!(match r {
            Ok(()) => "ok",
            Err(_) => "failing",
        }))).collect::<serde_json::Map<_, _>>(),
    });
    for (name, r) in &checks {
        if let Err(e) = r {
            tracing::warn!(check = name, error = %e, "not ready");
        }
    }
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    Ok((status, JsonResponse(body)).into_response())
}

#[allow(clippy::expect_used)]
fn entity(id: &str) -> EntityId {
    EntityId::parse(id).expect("a UUID is an entity token")
}
