//! The OpenAPI 3.1 document, generated from the handlers' annotations (utoipa), served at
//! `/openapi.json` with a browsable page at `/docs`, and checked in as `docs/openapi.json` (a
//! test fails when the checked-in copy is stale).
//!
//! A leaf aggregator: it names the handlers of `routes` and the bodies of `views`, and nothing
//! imports from it but the router (which serves the document). The bodies are the types the
//! handlers return; the problems each operation can answer are the error sets of
//! `views::errors`.

use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::{routes, views};
use crate::problem::Problem;

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
                    .description(Some(
                        "An access token (a JWT from /v1/auth/login), or a service account's API \
                         key (ck_live_…, from /v1/admin/api-keys), which may also be sent as \
                         X-API-Key",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "api_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "X-API-Key",
                "A service account's API key (ck_live_…): accepted wherever a bearer token is",
            ))),
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
        routes::auth::change_password,
        routes::auth::reset_password,
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
        routes::holds::place,
        routes::holds::list,
        routes::holds::get,
        routes::holds::capture,
        routes::holds::void,
        routes::wallets::history,
        routes::limits::get,
        routes::wallets::get_transaction,
        routes::wallets::change_pin,
        routes::admin::search_wallets,
        routes::admin::freeze,
        routes::admin::unfreeze,
        routes::admin::close,
        routes::limits::set,
        routes::admin::unlock_pin,
        routes::admin::reset_pin,
        routes::admin::reverse,
        routes::admin::set_roles,
        routes::erasure::erase_user,
        routes::admin::issue_password_reset,
        routes::admin::revoke_user_sessions,
        routes::api_keys::create,
        routes::api_keys::list,
        routes::api_keys::get,
        routes::api_keys::revoke,
        routes::webhooks::create,
        routes::webhooks::list,
        routes::webhooks::get,
        routes::webhooks::update,
        routes::webhooks::delete,
        routes::webhooks::rotate_secret,
        routes::webhooks::deliveries,
        routes::webhooks::retry,
        routes::webhooks::test,
        routes::admin::keys_overview,
        routes::admin::request_rotation,
        routes::admin::audit_events,
        routes::admin::audit_verify,
        routes::health::metrics,
        routes::health::healthz,
        routes::health::readyz,
    ),
    components(schemas(
        views::Wallet,
        views::Wallets,
        views::Transaction,
        views::History,
        views::Tokens,
        Problem
    )),
    modifiers(&Bearer),
    tags(
        (name = "auth", description = "Registration, sessions, second factor"),
        (name = "wallets", description = "Wallets and their history"),
        (name = "money", description = "Deposits, withdrawals, transfers"),
        (name = "holds", description = "Money reserved for a later capture: placed, captured, voided, expired"),
        (name = "admin", description = "Administration: wallets, reversals, users, API keys, webhooks, keys, audit"),
        (name = "health", description = "Liveness and readiness"),
    )
)]
pub struct ApiDoc;

/// The document as pretty JSON (what `/openapi.json` serves and `docs/openapi.json` holds).
#[must_use]
pub fn openapi_json() -> String {
    ApiDoc::openapi().to_pretty_json().unwrap_or_default() + "\n"
}

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
        assert_eq!(doc["paths"].as_object().map(serde_json::Map::len), Some(52));
    }
}
