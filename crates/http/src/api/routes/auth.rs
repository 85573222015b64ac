//! `auth`: registration, sign-in, token refresh, logout and revoking every session, changing the
//! password and redeeming a reset an administrator issued, the TOTP second factor (enroll,
//! confirm, disable), the public signing keys (`/.well-known/jwks.json`)
//! and the caller (`/v1/me`). A token from a configured external OIDC issuer signs in like
//! Coffer's own; its logout denylists the token under the issuer's key, and the routes that
//! manage sessions or factors refuse it with 409 `external_identity` (they live at its issuer).

use axum::extract::State;
use coffer_auth::Permission;
use coffer_auth::accounts::{Credentials, Registration};
use coffer_auth::password::NewPassword;
use serde::Deserialize;

use super::shared::{ApiResult, created, no_content, ok};
use crate::api::error::ApiError;
use crate::api::extract::{Ctx, Json, OptionalJson, Principal};
use crate::api::state::ApiState;
use crate::api::views;
use crate::api::views::errors::{AuthErrors, Invalid, JsonErrors, ServiceErrors};
use crate::problem::{PROBLEM_JSON, Problem};

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(in crate::api) struct RegisterBody {
    email: String,
    password: String,
    phone: Option<String>,
    tax_id: Option<String>,
}

#[utoipa::path(
    post,
    path = "/v1/auth/register",
    tag = "auth",
    request_body = RegisterBody,
    responses(
        (status = 201, description = "registered", body = views::UserCreated),
        (status = 409, description = "email taken", body = Problem, content_type = PROBLEM_JSON),
        JsonErrors,
        Invalid,
        ServiceErrors,
    )
)]
pub(in crate::api) async fn register(
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
    created(views::UserCreated::from(id))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(in crate::api) struct LoginBody {
    email: String,
    password: String,
    totp: Option<String>,
    client_id: Option<String>,
}

#[utoipa::path(
    post,
    path = "/v1/auth/login",
    tag = "auth",
    request_body = LoginBody,
    responses(
        (status = 200, description = "signed in", body = views::Tokens),
        (status = 401, description = "invalid credentials, or mfa_required", body = Problem, content_type = PROBLEM_JSON),
        JsonErrors,
        Invalid,
        ServiceErrors,
    )
)]
pub(in crate::api) async fn login(
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
pub(in crate::api) struct RefreshBody {
    refresh_token: String,
}

#[utoipa::path(
    post,
    path = "/v1/auth/refresh",
    tag = "auth",
    request_body = RefreshBody,
    responses(
        (status = 200, description = "rotated", body = views::Tokens),
        (status = 401, description = "invalid refresh token", body = Problem, content_type = PROBLEM_JSON),
        JsonErrors,
        Invalid,
        ServiceErrors,
    )
)]
pub(in crate::api) async fn refresh(
    State(state): State<ApiState>,
    Ctx(ctx): Ctx,
    Json(b): Json<RefreshBody>,
) -> ApiResult {
    let session = state.accounts.refresh(&b.refresh_token, &ctx).await?;
    ok(views::Tokens::from(&session))
}

#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(in crate::api) struct LogoutBody {
    /// Accepted for clients that send it; the session is the access token's own.
    #[serde(rename = "refresh_token")]
    _refresh_token: Option<String>,
}

#[utoipa::path(
    post,
    path = "/v1/auth/logout",
    tag = "auth",
    responses(
        (status = 204, description = "this token and its session stop working"),
        AuthErrors,
        JsonErrors,
        Invalid,
        ServiceErrors,
    ),
    security(("bearer" = []))
)]
pub(in crate::api) async fn logout(
    State(state): State<ApiState>,
    principal: Principal,
    Ctx(ctx): Ctx,
    OptionalJson(_): OptionalJson<LogoutBody>,
) -> ApiResult {
    // An external token is denylisted under its issuer's key until it expires.
    state.authenticator.logout(&principal, &ctx).await?;
    no_content()
}

#[utoipa::path(
    post,
    path = "/v1/auth/sessions/revoke-all",
    tag = "auth",
    responses(
        (status = 204, description = "every session of the caller stops working"),
        AuthErrors,
        (status = 409, description = "external_identity: the sessions live at the token's issuer", body = Problem, content_type = PROBLEM_JSON),
        ServiceErrors,
    ),
    security(("bearer" = []))
)]
pub(in crate::api) async fn revoke_all(
    State(state): State<ApiState>,
    principal: Principal,
    Ctx(ctx): Ctx,
) -> ApiResult {
    state.account.revoke_all_sessions(&principal, &ctx).await?;
    no_content()
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(in crate::api) struct PasswordChangeBody {
    current_password: String,
    new_password: String,
}

#[utoipa::path(
    post,
    path = "/v1/auth/password",
    tag = "auth",
    request_body = PasswordChangeBody,
    responses(
        (status = 204, description = "changed: every other session stops working, this one continues after a refresh"),
        AuthErrors,
        (status = 409, description = "external_identity: the password lives at the token's issuer", body = Problem, content_type = PROBLEM_JSON),
        JsonErrors,
        Invalid,
        ServiceErrors,
    ),
    security(("bearer" = []))
)]
pub(in crate::api) async fn change_password(
    State(state): State<ApiState>,
    principal: Principal,
    Ctx(ctx): Ctx,
    Json(b): Json<PasswordChangeBody>,
) -> ApiResult {
    let new = NewPassword::parse(&b.new_password)
        .map_err(|e| ApiError::invalid("new_password", e.to_string()))?;
    state
        .account
        .change_password(&principal, &b.current_password, &new, &ctx)
        .await?;
    no_content()
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(in crate::api) struct PasswordResetBody {
    /// The token an administrator issued (`cpr1_…`).
    reset_token: String,
    new_password: String,
    /// A current code, for accounts with a second factor.
    totp: Option<String>,
}

#[utoipa::path(
    post,
    path = "/v1/auth/password/reset",
    tag = "auth",
    request_body = PasswordResetBody,
    responses(
        (status = 204, description = "the new password is set; every session of the user stops working"),
        (status = 401, description = "invalid_reset_token (unknown, expired, replaced or used), mfa_required, or invalid_credentials (a wrong code)", body = Problem, content_type = PROBLEM_JSON),
        JsonErrors,
        Invalid,
        ServiceErrors,
    )
)]
pub(in crate::api) async fn reset_password(
    State(state): State<ApiState>,
    Ctx(ctx): Ctx,
    Json(b): Json<PasswordResetBody>,
) -> ApiResult {
    let new = NewPassword::parse(&b.new_password)
        .map_err(|e| ApiError::invalid("new_password", e.to_string()))?;
    state
        .accounts
        .reset_password(&b.reset_token, &new, b.totp.as_deref(), &ctx)
        .await?;
    no_content()
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(in crate::api) struct PasswordBody {
    password: String,
}

#[utoipa::path(
    post,
    path = "/v1/auth/totp/enroll",
    tag = "auth",
    request_body = PasswordBody,
    responses(
        (status = 200, description = "the secret, shown once", body = views::TotpEnrollment),
        AuthErrors,
        (status = 409, description = "a factor is already on", body = Problem, content_type = PROBLEM_JSON),
        JsonErrors,
        Invalid,
        ServiceErrors,
    ),
    security(("bearer" = []))
)]
pub(in crate::api) async fn totp_enroll(
    State(state): State<ApiState>,
    principal: Principal,
    Ctx(ctx): Ctx,
    Json(b): Json<PasswordBody>,
) -> ApiResult {
    let e = state
        .account
        .totp_enroll(&principal, &b.password, &ctx)
        .await?;
    ok(views::TotpEnrollment::from(&e))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(in crate::api) struct CodeBody {
    code: String,
}

#[utoipa::path(
    post,
    path = "/v1/auth/totp/confirm",
    tag = "auth",
    request_body = CodeBody,
    responses(
        (status = 204, description = "logins now need a code"),
        AuthErrors,
        (status = 409, description = "no enrollment to confirm", body = Problem, content_type = PROBLEM_JSON),
        JsonErrors,
        Invalid,
        ServiceErrors,
    ),
    security(("bearer" = []))
)]
pub(in crate::api) async fn totp_confirm(
    State(state): State<ApiState>,
    principal: Principal,
    Ctx(ctx): Ctx,
    Json(b): Json<CodeBody>,
) -> ApiResult {
    state
        .account
        .totp_confirm(&principal, &b.code, &ctx)
        .await?;
    no_content()
}

#[utoipa::path(
    post,
    path = "/v1/auth/totp/disable",
    tag = "auth",
    request_body = CodeBody,
    responses(
        (status = 204, description = "the factor is off"),
        AuthErrors,
        (status = 409, description = "no factor is on, or external_identity", body = Problem, content_type = PROBLEM_JSON),
        JsonErrors,
        Invalid,
        ServiceErrors,
    ),
    security(("bearer" = []))
)]
pub(in crate::api) async fn totp_disable(
    State(state): State<ApiState>,
    principal: Principal,
    Ctx(ctx): Ctx,
    Json(b): Json<CodeBody>,
) -> ApiResult {
    state
        .account
        .totp_disable(&principal, &b.code, &ctx)
        .await?;
    no_content()
}

#[utoipa::path(
    get,
    path = "/.well-known/jwks.json",
    tag = "auth",
    responses(
        (status = 200, description = "current and still-valid public signing keys", body = Object),
        ServiceErrors,
    )
)]
pub(in crate::api) async fn jwks(State(state): State<ApiState>) -> ApiResult {
    ok(state.accounts.tokens().jwks())
}

#[utoipa::path(
    get,
    path = "/v1/me",
    tag = "auth",
    responses(
        (status = 200, description = "the caller", body = views::Me),
        AuthErrors,
        ServiceErrors,
    ),
    security(("bearer" = []))
)]
pub(in crate::api) async fn me(State(state): State<ApiState>, principal: Principal) -> ApiResult {
    let permissions: Vec<&str> = principal
        .permissions(state.accounts.rbac())
        .into_iter()
        .map(Permission::as_str)
        .collect();
    if let Some(external) = &principal.external {
        return ok(views::Me::external(&principal, external, permissions));
    }
    let profile = state.accounts.profile(principal.user).await?;
    let key = principal.api_key.as_ref().map(|k| k.id.to_string());
    ok(views::Me::user(&profile, &principal.claims.roles, permissions).with_api_key(key))
}
