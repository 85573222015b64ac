//! The handlers. Each checks its permission, calls one service operation and maps the result;
//! ownership (a user reaches only their own wallets: another's answers 404) is the ledger's
//! rule, not a route's.

use axum::Json as JsonResponse;
use axum::extract::{Query, State};
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
    Ctx, IdempotencyKey, Json, OptionalJson, PathId, Principal, transaction_id, user_id, wallet_id,
};
use super::openapi::{
    AuditPageDoc, AuditVerifyDoc, KeysDoc, MeDoc, ProblemDoc, RolesDoc, RotationDoc,
    TotpEnrollmentDoc, UserCreated,
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

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RegisterBody {
    email: String,
    password: String,
    phone: Option<String>,
    tax_id: Option<String>,
}

#[utoipa::path(post, path = "/v1/auth/register", tag = "auth", request_body = RegisterBody, responses((status = 201, description = "registered", body = UserCreated), (status = 409, description = "email taken", body = ProblemDoc, content_type = "application/problem+json"), (status = 422, description = "a field is invalid", body = ProblemDoc, content_type = "application/problem+json")))]
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

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct LoginBody {
    email: String,
    password: String,
    totp: Option<String>,
    client_id: Option<String>,
}

#[utoipa::path(post, path = "/v1/auth/login", tag = "auth", request_body = LoginBody, responses((status = 200, description = "signed in", body = views::Tokens), (status = 401, description = "invalid credentials, or mfa_required", body = ProblemDoc, content_type = "application/problem+json")))]
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

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RefreshBody {
    refresh_token: String,
}

#[utoipa::path(post, path = "/v1/auth/refresh", tag = "auth", request_body = RefreshBody, responses((status = 200, description = "rotated", body = views::Tokens), (status = 401, description = "invalid refresh token", body = ProblemDoc, content_type = "application/problem+json")))]
pub(super) async fn refresh(
    State(state): State<ApiState>,
    Ctx(ctx): Ctx,
    Json(b): Json<RefreshBody>,
) -> ApiResult {
    let session = state.accounts.refresh(&b.refresh_token, &ctx).await?;
    ok(views::Tokens::from(&session))
}

#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct LogoutBody {
    /// Accepted for clients that send it; the session is the access token's own.
    #[serde(rename = "refresh_token")]
    _refresh_token: Option<String>,
}

#[utoipa::path(post, path = "/v1/auth/logout", tag = "auth", responses((status = 204, description = "this token and its session stop working"), (status = 401, description = "no valid access token", body = ProblemDoc, content_type = "application/problem+json")), security(("bearer" = [])))]
pub(super) async fn logout(
    State(state): State<ApiState>,
    principal: Principal,
    Ctx(ctx): Ctx,
    OptionalJson(_): OptionalJson<LogoutBody>,
) -> ApiResult {
    match (&principal.external, &state.oidc) {
        // An external token: denylisted under its issuer's key until it expires.
        (Some(external), Some(oidc)) => oidc.revoke(external).await?,
        _ => state.accounts.logout(&principal.claims, &ctx).await?,
    }
    no_content()
}

/// Sessions of an external identity live at its issuer.
fn not_for_external(principal: &Principal) -> Result<(), ApiError> {
    if principal.external.is_some() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "external_identity",
            "Managed by your identity provider",
        )
        .detail("this token comes from an external issuer: manage its sessions there"));
    }
    Ok(())
}

#[utoipa::path(post, path = "/v1/auth/sessions/revoke-all", tag = "auth", responses((status = 204, description = "every session of the caller stops working"), (status = 401, description = "no valid access token", body = ProblemDoc, content_type = "application/problem+json")), security(("bearer" = [])))]
pub(super) async fn revoke_all(
    State(state): State<ApiState>,
    principal: Principal,
    Ctx(ctx): Ctx,
) -> ApiResult {
    not_for_external(&principal)?;
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

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct PasswordBody {
    password: String,
}

#[utoipa::path(post, path = "/v1/auth/totp/enroll", tag = "auth", request_body = PasswordBody, responses((status = 200, description = "the secret, shown once", body = TotpEnrollmentDoc), (status = 401, description = "no valid access token", body = ProblemDoc, content_type = "application/problem+json"), (status = 409, description = "a factor is already on", body = ProblemDoc, content_type = "application/problem+json")), security(("bearer" = [])))]
pub(super) async fn totp_enroll(
    State(state): State<ApiState>,
    principal: Principal,
    Ctx(ctx): Ctx,
    Json(b): Json<PasswordBody>,
) -> ApiResult {
    not_for_external(&principal)?;
    let e = state
        .accounts
        .totp_enroll(principal.user, &b.password, &ctx)
        .await?;
    ok(json!({ "secret": e.secret.as_str(), "otpauth_uri": e.otpauth_uri.as_str() }))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct CodeBody {
    code: String,
}

#[utoipa::path(post, path = "/v1/auth/totp/confirm", tag = "auth", request_body = CodeBody, responses((status = 204, description = "logins now need a code"), (status = 401, description = "no valid access token", body = ProblemDoc, content_type = "application/problem+json"), (status = 409, description = "no enrollment to confirm", body = ProblemDoc, content_type = "application/problem+json")), security(("bearer" = [])))]
pub(super) async fn totp_confirm(
    State(state): State<ApiState>,
    principal: Principal,
    Ctx(ctx): Ctx,
    Json(b): Json<CodeBody>,
) -> ApiResult {
    not_for_external(&principal)?;
    state
        .accounts
        .totp_confirm(principal.user, &b.code, &ctx)
        .await?;
    no_content()
}

#[utoipa::path(post, path = "/v1/auth/totp/disable", tag = "auth", request_body = CodeBody, responses((status = 204, description = "the factor is off"), (status = 401, description = "no valid access token", body = ProblemDoc, content_type = "application/problem+json")), security(("bearer" = [])))]
pub(super) async fn totp_disable(
    State(state): State<ApiState>,
    principal: Principal,
    Ctx(ctx): Ctx,
    Json(b): Json<CodeBody>,
) -> ApiResult {
    not_for_external(&principal)?;
    state
        .accounts
        .totp_disable(principal.user, &b.code, &ctx)
        .await?;
    no_content()
}

#[utoipa::path(get, path = "/.well-known/jwks.json", tag = "auth", responses((status = 200, description = "current and still-valid public signing keys", body = Object)))]
pub(super) async fn jwks(State(state): State<ApiState>) -> ApiResult {
    ok(state.accounts.tokens().jwks())
}

#[utoipa::path(get, path = "/v1/me", tag = "auth", responses((status = 200, description = "the caller", body = MeDoc), (status = 401, description = "no valid access token", body = ProblemDoc, content_type = "application/problem+json")), security(("bearer" = [])))]
pub(super) async fn me(State(state): State<ApiState>, principal: Principal) -> ApiResult {
    let permissions: Vec<&str> = state
        .accounts
        .rbac()
        .permissions(&principal.claims.roles)
        .into_iter()
        .map(Permission::as_str)
        .collect();
    if let Some(external) = &principal.external {
        return ok(json!({
            "user_id": principal.user.to_string(),
            "issuer": external.issuer,
            "subject": external.subject,
            "roles": principal.claims.roles,
            "permissions": permissions,
        }));
    }
    let profile = state.accounts.profile(principal.user).await?;
    ok(json!({
        "user_id": profile.id.to_string(),
        "email": profile.email.expose(),
        "roles": principal.claims.roles,
        "permissions": permissions,
        "mfa_enabled": profile.mfa_enabled,
    }))
}

// ---- wallets ----

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct OpenWalletBody {
    currency: String,
    pin: String,
}

#[utoipa::path(post, path = "/v1/wallets", tag = "wallets", request_body = OpenWalletBody, responses((status = 201, description = "opened", body = views::Wallet), (status = 401, description = "no valid access token", body = ProblemDoc, content_type = "application/problem+json"), (status = 403, description = "the role lacks the permission", body = ProblemDoc, content_type = "application/problem+json"), (status = 422, description = "a field is invalid", body = ProblemDoc, content_type = "application/problem+json")), security(("bearer" = [])))]
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

#[utoipa::path(get, path = "/v1/wallets", tag = "wallets", responses((status = 200, description = "the caller's wallets", body = views::Wallets), (status = 401, description = "no valid access token", body = ProblemDoc, content_type = "application/problem+json"), (status = 403, description = "the role lacks the permission", body = ProblemDoc, content_type = "application/problem+json")), security(("bearer" = [])))]
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

#[utoipa::path(get, path = "/v1/wallets/{id}", tag = "wallets", params(("id" = String, Path, description = "the resource id")), responses((status = 200, description = "the wallet", body = views::Wallet), (status = 401, description = "no valid access token", body = ProblemDoc, content_type = "application/problem+json"), (status = 403, description = "the role lacks the permission", body = ProblemDoc, content_type = "application/problem+json"), (status = 404, description = "no such wallet (or not the caller's)", body = ProblemDoc, content_type = "application/problem+json")), security(("bearer" = [])))]
pub(super) async fn get_wallet(
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
pub(super) struct DepositBody {
    amount: i64,
    currency: String,
    reference: Option<String>,
}

#[utoipa::path(post, path = "/v1/wallets/{id}/deposits", tag = "money", request_body = DepositBody, params(("id" = String, Path, description = "the resource id"), ("Idempotency-Key" = String, Header, description = "replays the first answer for the same body")), responses((status = 201, description = "deposited (or the replay of the first answer)", body = views::Transaction), (status = 401, description = "no valid access token", body = ProblemDoc, content_type = "application/problem+json"), (status = 403, description = "the role lacks the permission", body = ProblemDoc, content_type = "application/problem+json"), (status = 404, description = "no such wallet (or not the caller's)", body = ProblemDoc, content_type = "application/problem+json"), (status = 409, description = "frozen, closed, or idempotency conflict", body = ProblemDoc, content_type = "application/problem+json"), (status = 422, description = "a field is invalid", body = ProblemDoc, content_type = "application/problem+json")), security(("bearer" = [])))]
pub(super) async fn deposit(
    State(state): State<ApiState>,
    principal: Principal,
    PathId(id): PathId,
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

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct WithdrawBody {
    amount: i64,
    currency: String,
    pin: String,
    reference: Option<String>,
}

/// Money-out above the configured threshold needs a second factor in the token's `amr`. A
/// wallet that is not the caller's is a 404 first, as everywhere.
async fn check_mfa(
    state: &ApiState,
    principal: &Principal,
    wallet: coffer_ledger::WalletId,
    amount: i64,
    currency: &str,
) -> Result<(), ApiError> {
    let Ok(c) = coffer_ledger::Currency::parse(currency) else {
        // The ledger names the bad currency.
        return Ok(());
    };
    let Err(e) = state
        .mfa
        .check(&principal.claims.amr, amount, u32::from(c.exponent()))
    else {
        return Ok(());
    };
    state
        .ledger
        .wallet(Caller::User(principal.ledger_user()), wallet)
        .await?;
    Err(ApiError::new(
        StatusCode::FORBIDDEN,
        "mfa_required",
        "Second factor required",
    )
    .detail(e.to_string()))
}

#[utoipa::path(post, path = "/v1/wallets/{id}/withdrawals", tag = "money", request_body = WithdrawBody, params(("id" = String, Path, description = "the resource id"), ("Idempotency-Key" = String, Header, description = "replays the first answer for the same body")), responses((status = 201, description = "withdrawn (or the replay)", body = views::Transaction), (status = 401, description = "no valid access token", body = ProblemDoc, content_type = "application/problem+json"), (status = 403, description = "forbidden, pin_wrong or mfa_required", body = ProblemDoc, content_type = "application/problem+json"), (status = 404, description = "no such wallet (or not the caller's)", body = ProblemDoc, content_type = "application/problem+json"), (status = 409, description = "frozen, closed, or idempotency conflict", body = ProblemDoc, content_type = "application/problem+json"), (status = 423, description = "pin_locked", body = ProblemDoc, content_type = "application/problem+json"), (status = 422, description = "a field is invalid", body = ProblemDoc, content_type = "application/problem+json")), security(("bearer" = [])))]
pub(super) async fn withdraw(
    State(state): State<ApiState>,
    principal: Principal,
    PathId(id): PathId,
    IdempotencyKey(key): IdempotencyKey,
    Json(b): Json<WithdrawBody>,
) -> ApiResult {
    principal.require(&state, Permission::WalletWithdraw)?;
    check_mfa(&state, &principal, wallet_id(&id)?, b.amount, &b.currency).await?;
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

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct TransferBody {
    to_wallet_id: String,
    amount: i64,
    currency: String,
    pin: String,
    memo: Option<String>,
}

#[utoipa::path(post, path = "/v1/wallets/{id}/transfers", tag = "money", request_body = TransferBody, params(("id" = String, Path, description = "the resource id"), ("Idempotency-Key" = String, Header, description = "replays the first answer for the same body")), responses((status = 201, description = "transferred (or the replay)", body = views::Transaction), (status = 401, description = "no valid access token", body = ProblemDoc, content_type = "application/problem+json"), (status = 403, description = "forbidden, pin_wrong or mfa_required", body = ProblemDoc, content_type = "application/problem+json"), (status = 404, description = "no such wallet (or not the caller's)", body = ProblemDoc, content_type = "application/problem+json"), (status = 409, description = "frozen, closed, or idempotency conflict", body = ProblemDoc, content_type = "application/problem+json"), (status = 423, description = "pin_locked", body = ProblemDoc, content_type = "application/problem+json"), (status = 422, description = "a field is invalid", body = ProblemDoc, content_type = "application/problem+json")), security(("bearer" = [])))]
pub(super) async fn transfer(
    State(state): State<ApiState>,
    principal: Principal,
    PathId(id): PathId,
    IdempotencyKey(key): IdempotencyKey,
    Json(b): Json<TransferBody>,
) -> ApiResult {
    principal.require(&state, Permission::WalletTransfer)?;
    check_mfa(&state, &principal, wallet_id(&id)?, b.amount, &b.currency).await?;
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

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct HistoryQuery {
    limit: Option<u32>,
    cursor: Option<String>,
}

#[utoipa::path(get, path = "/v1/wallets/{id}/transactions", tag = "wallets", params(("id" = String, Path, description = "the resource id"), ("limit" = Option<u32>, Query, description = "1 to 200, default 50"), ("cursor" = Option<String>, Query, description = "next_cursor of the previous page")), responses((status = 200, description = "newest first", body = views::History), (status = 401, description = "no valid access token", body = ProblemDoc, content_type = "application/problem+json"), (status = 403, description = "the role lacks the permission", body = ProblemDoc, content_type = "application/problem+json"), (status = 404, description = "no such wallet (or not the caller's)", body = ProblemDoc, content_type = "application/problem+json"), (status = 422, description = "a field is invalid", body = ProblemDoc, content_type = "application/problem+json")), security(("bearer" = [])))]
pub(super) async fn history(
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

#[utoipa::path(get, path = "/v1/transactions/{id}", tag = "wallets", params(("id" = String, Path, description = "the resource id")), responses((status = 200, description = "with signature and signer key", body = views::Transaction), (status = 401, description = "no valid access token", body = ProblemDoc, content_type = "application/problem+json"), (status = 403, description = "the role lacks the permission", body = ProblemDoc, content_type = "application/problem+json"), (status = 404, description = "no such transaction", body = ProblemDoc, content_type = "application/problem+json")), security(("bearer" = [])))]
pub(super) async fn get_transaction(
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
pub(super) struct ChangePinBody {
    old_pin: String,
    new_pin: String,
}

#[utoipa::path(put, path = "/v1/wallets/{id}/pin", tag = "wallets", request_body = ChangePinBody, params(("id" = String, Path, description = "the resource id")), responses((status = 204, description = "changed"), (status = 401, description = "no valid access token", body = ProblemDoc, content_type = "application/problem+json"), (status = 403, description = "forbidden or pin_wrong", body = ProblemDoc, content_type = "application/problem+json"), (status = 404, description = "no such wallet (or not the caller's)", body = ProblemDoc, content_type = "application/problem+json"), (status = 422, description = "a field is invalid", body = ProblemDoc, content_type = "application/problem+json")), security(("bearer" = [])))]
pub(super) async fn change_pin(
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

// ---- admin ----

#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct ReasonBody {
    /// Accepted (DESIGN.md §3); the ledger's audit record names the action and the admin.
    #[serde(rename = "reason")]
    _reason: Option<String>,
}

#[utoipa::path(post, path = "/v1/admin/wallets/{id}/freeze", tag = "admin", request_body = ReasonBody, params(("id" = String, Path, description = "the resource id")), responses((status = 200, description = "frozen", body = views::Wallet), (status = 401, description = "no valid access token", body = ProblemDoc, content_type = "application/problem+json"), (status = 403, description = "the role lacks the permission", body = ProblemDoc, content_type = "application/problem+json"), (status = 404, description = "no such wallet (or not the caller's)", body = ProblemDoc, content_type = "application/problem+json")), security(("bearer" = [])))]
pub(super) async fn freeze(
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
pub(super) async fn unfreeze(
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
pub(super) async fn close(
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
pub(super) async fn unlock_pin(
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
pub(super) struct ResetPinBody {
    new_pin: String,
}

#[utoipa::path(post, path = "/v1/admin/wallets/{id}/pin/reset", tag = "admin", request_body = ResetPinBody, params(("id" = String, Path, description = "the resource id")), responses((status = 200, description = "a new PIN and signing key", body = views::Wallet), (status = 401, description = "no valid access token", body = ProblemDoc, content_type = "application/problem+json"), (status = 403, description = "the role lacks the permission", body = ProblemDoc, content_type = "application/problem+json"), (status = 404, description = "no such wallet (or not the caller's)", body = ProblemDoc, content_type = "application/problem+json"), (status = 422, description = "a field is invalid", body = ProblemDoc, content_type = "application/problem+json")), security(("bearer" = [])))]
pub(super) async fn reset_pin(
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
pub(super) struct ReversalBody {
    reason: String,
}

#[utoipa::path(post, path = "/v1/admin/transactions/{id}/reversal", tag = "admin", request_body = ReversalBody, params(("id" = String, Path, description = "the resource id"), ("Idempotency-Key" = String, Header, description = "replays the first answer for the same body")), responses((status = 201, description = "reversed", body = views::Transaction), (status = 401, description = "no valid access token", body = ProblemDoc, content_type = "application/problem+json"), (status = 403, description = "the role lacks the permission", body = ProblemDoc, content_type = "application/problem+json"), (status = 404, description = "no such transaction", body = ProblemDoc, content_type = "application/problem+json"), (status = 409, description = "already reversed", body = ProblemDoc, content_type = "application/problem+json")), security(("bearer" = [])))]
pub(super) async fn reverse(
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
pub(super) struct RolesBody {
    roles: Vec<String>,
}

#[utoipa::path(post, path = "/v1/admin/users/{id}/roles", tag = "admin", request_body = RolesBody, params(("id" = String, Path, description = "the resource id")), responses((status = 200, description = "the user's roles", body = RolesDoc), (status = 401, description = "no valid access token", body = ProblemDoc, content_type = "application/problem+json"), (status = 403, description = "the role lacks the permission", body = ProblemDoc, content_type = "application/problem+json"), (status = 404, description = "no such user", body = ProblemDoc, content_type = "application/problem+json"), (status = 422, description = "a field is invalid", body = ProblemDoc, content_type = "application/problem+json")), security(("bearer" = [])))]
pub(super) async fn set_roles(
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
pub(super) async fn revoke_user_sessions(
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
pub(super) async fn keys_overview(
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
pub(super) struct RotateBody {
    /// Revoke every session first, re-wrap every key, retire the old versions.
    #[serde(default)]
    emergency: bool,
    /// Retire the old versions once every key has moved.
    #[serde(default)]
    retire: bool,
}

#[utoipa::path(post, path = "/v1/admin/keys/rotate", tag = "admin", request_body(content = Option<RotateBody>, description = "optional: {\"emergency\": bool, \"retire\": bool}"), responses((status = 202, description = "requested: a worker rotates the master key and re-wraps every data key; follow it at GET /v1/admin/keys", body = RotationDoc), (status = 200, description = "a rotation was already requested or running: that one", body = RotationDoc), (status = 401, description = "no valid access token", body = ProblemDoc, content_type = "application/problem+json"), (status = 403, description = "the role lacks the permission", body = ProblemDoc, content_type = "application/problem+json"), (status = 422, description = "the provider cannot rotate (or retire) its key", body = ProblemDoc, content_type = "application/problem+json"), (status = 503, description = "the key provider or the database does not answer", body = ProblemDoc, content_type = "application/problem+json")), security(("bearer" = [])))]
pub(super) async fn request_rotation(
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
pub(super) struct AuditPageQuery {
    before: Option<i64>,
    limit: Option<u32>,
}

#[utoipa::path(get, path = "/v1/admin/audit", tag = "admin", params(("before" = Option<i64>, Query, description = "next_before of the previous page"), ("limit" = Option<u32>, Query, description = "1 to 1000, default 100")), responses((status = 200, description = "newest first", body = AuditPageDoc), (status = 401, description = "no valid access token", body = ProblemDoc, content_type = "application/problem+json"), (status = 403, description = "the role lacks the permission", body = ProblemDoc, content_type = "application/problem+json"), (status = 422, description = "a field is invalid", body = ProblemDoc, content_type = "application/problem+json")), security(("bearer" = [])))]
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

#[utoipa::path(get, path = "/v1/admin/audit/verify", tag = "admin", responses((status = 200, description = "the verification report", body = AuditVerifyDoc), (status = 401, description = "no valid access token", body = ProblemDoc, content_type = "application/problem+json"), (status = 403, description = "the role lacks the permission", body = ProblemDoc, content_type = "application/problem+json")), security(("bearer" = [])))]
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

// ---- operations ----

#[utoipa::path(get, path = "/metrics", tag = "health", responses((status = 200, description = "Prometheus text format", body = String, content_type = "text/plain"), (status = 401, description = "no valid access token", body = ProblemDoc, content_type = "application/problem+json"), (status = 403, description = "the role lacks the permission", body = ProblemDoc, content_type = "application/problem+json")), security(("bearer" = [])))]
pub(super) async fn metrics(State(state): State<ApiState>, principal: Principal) -> ApiResult {
    principal.require(&state, Permission::SystemMetrics)?;
    let text = state.metrics.render(state.ledger.pins().queue_depth());
    Ok((
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response())
}

// ---- health ----

#[utoipa::path(get, path = "/healthz", tag = "health", responses((status = 200, description = "alive", body = Object)))]
pub(super) async fn healthz() -> ApiResult {
    ok(json!({ "status": "ok" }))
}

#[utoipa::path(get, path = "/readyz", tag = "health", responses((status = 200, description = "ready", body = Object), (status = 503, description = "a dependency does not answer", body = Object)))]
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
