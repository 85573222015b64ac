//! The OpenAPI 3.1 document, generated from the handlers' annotations (utoipa), served at
//! `/openapi.json` with a browsable page at `/docs`, and checked in as `docs/openapi.json` (a
//! test fails when the checked-in copy is stale).

use serde::Serialize;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

use super::{routes, views};

/// A problem (RFC 9457), as every 4xx and 5xx is.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProblemDoc {
    /// A URI naming the problem type.
    #[serde(rename = "type")]
    kind: String,
    /// A short summary.
    title: String,
    /// The HTTP status.
    status: u16,
    /// The stable code clients switch on (`insufficient_funds`, `pin_wrong`, …).
    code: String,
    /// This occurrence, in words.
    detail: Option<String>,
    /// For `invalid_request`: the field.
    field: Option<String>,
    /// For `pin_wrong`: guesses left before the PIN locks.
    attempts_left: Option<u32>,
}

/// A registration's answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct UserCreated {
    /// The new user's id.
    user_id: String,
}

/// The caller.
#[derive(Debug, Serialize, ToSchema)]
pub struct MeDoc {
    user_id: String,
    email: String,
    roles: Vec<String>,
    permissions: Vec<String>,
    mfa_enabled: bool,
}

/// A TOTP enrollment, shown once.
#[derive(Debug, Serialize, ToSchema)]
pub struct TotpEnrollmentDoc {
    /// Base32, for typing into an authenticator app.
    secret: String,
    /// `otpauth://` URI, for a QR code.
    otpauth_uri: String,
}

/// A user's roles.
#[derive(Debug, Serialize, ToSchema)]
pub struct RolesDoc {
    user_id: String,
    roles: Vec<String>,
}

/// A page of audit records.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditPageDoc {
    /// Records, newest first: id, stream, seq, time, actor, action, subject, outcome, details, MAC.
    items: Vec<serde_json::Value>,
    /// Pass as `before` for the next page.
    next_before: Option<i64>,
}

/// The audit log's verification.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditVerifyDoc {
    ok: bool,
    checked: u64,
    streams: u64,
    /// The first bad record (stream, seq, id, kind), if any.
    first_bad: Option<serde_json::Value>,
}

/// Where the master key stands (`GET /v1/admin/keys`).
#[derive(Debug, Serialize, ToSchema)]
pub struct KeysDoc {
    provider: String,
    key_id: String,
    active_version: u32,
    /// Each version: `version`, `state` (active, decrypt_only, retired), `created_at`,
    /// `age_secs`.
    versions: Vec<serde_json::Value>,
    /// Per table (`secrets`, `user_keys`, `wallet_keys`): data keys per master key version.
    keys: Vec<serde_json::Value>,
    /// Data keys under a version below the active one: what a rotation has left.
    stale: u64,
    /// The rotation requested or running (state, versions, total, rewrapped, failed, error).
    open_job: Option<serde_json::Value>,
    /// The last finished rotation.
    last_done: Option<serde_json::Value>,
}

/// A rotation request's answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct RotationDoc {
    /// Whether this request created it.
    created: bool,
    /// The rotation: id, state (requested, running, done, failed), emergency, retire,
    /// requested_by, versions, counts.
    job: serde_json::Value,
}

struct Bearer;

impl Modify for Bearer {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

/// The document.
#[derive(Debug, OpenApi)]
#[openapi(
    info(
        title = "Coffer",
        description = "A custodial wallet service: accounts, wallets, double-entry money movement. Money is integer minor units with an ISO 4217 code; every error is an application/problem+json document with a stable code; money-moving POSTs carry an Idempotency-Key.",
        license(name = "Apache-2.0")
    ),
    paths(
        routes::auth::register,
        routes::auth::login,
        routes::auth::refresh,
        routes::auth::logout,
        routes::auth::revoke_all,
        routes::auth::totp_enroll,
        routes::auth::totp_confirm,
        routes::auth::totp_disable,
        routes::auth::jwks,
        routes::auth::me,
        routes::wallets::open_wallet,
        routes::wallets::list_wallets,
        routes::wallets::get_wallet,
        routes::money::deposit,
        routes::money::withdraw,
        routes::money::transfer,
        routes::wallets::history,
        routes::wallets::get_transaction,
        routes::wallets::change_pin,
        routes::admin::freeze,
        routes::admin::unfreeze,
        routes::admin::close,
        routes::admin::unlock_pin,
        routes::admin::reset_pin,
        routes::admin::reverse,
        routes::admin::set_roles,
        routes::admin::revoke_user_sessions,
        routes::admin::keys_overview,
        routes::admin::request_rotation,
        routes::admin::audit_events,
        routes::admin::audit_verify,
        routes::health::metrics,
        routes::health::healthz,
        routes::health::readyz,
    ),
    components(schemas(views::Wallet, views::Wallets, views::Transaction, views::History, views::Tokens, ProblemDoc)),
    modifiers(&Bearer),
    tags(
        (name = "auth", description = "Registration, sessions, second factor"),
        (name = "wallets", description = "Wallets and their history"),
        (name = "money", description = "Deposits, withdrawals, transfers"),
        (name = "admin", description = "Administration: wallets, reversals, users, keys, audit"),
        (name = "health", description = "Liveness and readiness"),
    )
)]
pub struct ApiDoc;

/// The document as pretty JSON (what `/openapi.json` serves and `docs/openapi.json` holds).
#[must_use]
pub fn openapi_json() -> String {
    ApiDoc::openapi().to_pretty_json().unwrap_or_default() + "\n"
}

/// A browsable page over `/openapi.json` (Redoc, loaded from its CDN by the browser).
pub const DOCS_PAGE: &str = r#"<!doctype html>
<html>
  <head>
    <meta charset="utf-8">
    <title>Coffer API</title>
    <meta name="viewport" content="width=device-width, initial-scale=1">
  </head>
  <body>
    <redoc spec-url="/openapi.json"></redoc>
    <script src="https://cdn.redoc.ly/redoc/latest/bundles/redoc.standalone.js"></script>
  </body>
</html>
"#;

#[cfg(test)]
mod tests {
    use super::*;

    /// `docs/openapi.json` is the generated document; regenerate it with
    /// `COFFER_UPDATE_OPENAPI=1 cargo test -p coffer-http openapi`.
    #[test]
    fn the_checked_in_openapi_document_is_current() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/openapi.json");
        let generated = openapi_json();
        if std::env::var_os("COFFER_UPDATE_OPENAPI").is_some() {
            std::fs::write(path, &generated).unwrap_or_default();
        }
        let checked_in = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            checked_in == generated,
            "docs/openapi.json is stale: run COFFER_UPDATE_OPENAPI=1 cargo test -p coffer-http openapi"
        );
        let doc: serde_json::Value = serde_json::from_str(&generated).unwrap_or_default();
        assert_eq!(doc["openapi"], "3.1.0");
        assert_eq!(doc["paths"].as_object().map(serde_json::Map::len), Some(33));
    }
}
