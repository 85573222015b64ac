//! Accounts and tokens (`[auth]`): the access tokens' issuer, audience and lifetime, where
//! revocations are kept ([`RevocationBackend`]; Redis needs a URL, which `COFFER_REDIS_URL`
//! also sets), second factors for large money-out, password hashing, and the external OIDC
//! issuers (`[[auth.oidc]]`, each parsed and checked as a `coffer_auth_oidc::IssuerConfig`).
//! The Redis URL may hold a password: `Debug` shows it masked.

use std::collections::BTreeMap;

use coffer_auth::accounts::NEW_ACCOUNT_ROLE;
use coffer_auth::{Rbac, RbacError};
use serde::{Deserialize, Serialize};

use super::{ConfigError, error, mask_url};

/// Where revocations are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RevocationBackend {
    /// The database (survives restarts, shared by processes on it): the default.
    Database,
    /// Process memory (one process; forgets on restart, which then refuses every token).
    Memory,
    /// Redis (several replicas).
    Redis,
}

/// Accounts and tokens.
#[derive(Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// `iss` of access tokens.
    pub issuer: String,
    /// `aud` of access tokens.
    pub audience: String,
    /// Access token lifetime, seconds.
    pub access_ttl_secs: u64,
    /// Grace window for a refresh retry, seconds (0: none).
    pub refresh_grace_secs: u64,
    /// Where revocations are kept.
    pub revocation: RevocationBackend,
    /// Redis, for `revocation = "redis"`.
    pub redis_url: Option<String>,
    /// For a `rediss://` `redis_url`: the authority (a PEM file) Redis's certificate must chain
    /// to; unset, the system's roots.
    pub redis_ca_file: Option<std::path::PathBuf>,
    /// For a `rediss://` `redis_url` to a Redis that asks clients for a certificate: this
    /// client's certificate (a PEM file), with `redis_client_key_file`.
    pub redis_client_cert_file: Option<std::path::PathBuf>,
    /// The private key of `redis_client_cert_file` (a PEM file).
    pub redis_client_key_file: Option<std::path::PathBuf>,
    /// With `revocation = "database"` on Postgres: how long a token's revocation status is
    /// remembered between requests, seconds, while the process is told of every revocation
    /// (`LISTEN`); 0: asked of the database at every request.
    pub revocation_cache_secs: u64,
    /// Money-out that takes a wallet's rolling window above this many major units needs a
    /// second factor.
    pub mfa_above_major_units: Option<u64>,
    /// The rolling window of `mfa_above_major_units`, hours (1 to 168).
    pub mfa_window_hours: u32,
    /// How long a password reset an administrator issues works, hours (1 to 168).
    pub password_reset_hours: u32,
    /// Password hashes at once.
    pub password_hash_concurrency: usize,
    /// Argon2id memory, KiB (OWASP: 19456).
    pub argon2_memory_kib: u32,
    /// Argon2id passes (OWASP: 2).
    pub argon2_iterations: u32,
    /// External OIDC issuers whose access tokens are accepted next to Coffer's own, each a
    /// `coffer_auth_oidc::IssuerConfig` (`[[auth.oidc]]`: issuer, audience, jwks = { url = … }
    /// or { file = … }, roles_claim, role_map, …).
    pub oidc: Vec<toml::Table>,
    /// Roles to permission names (`[auth.roles]`, e.g. `support = ["wallet:read",
    /// "wallet:freeze"]`); replaces the default `user` and `admin` table as a whole. Refused at
    /// start: an unknown permission, a role that administers and moves money, no role holding
    /// `user:admin`, or no `user` role (new accounts get it).
    pub roles: BTreeMap<String, Vec<String>>,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            issuer: "http://127.0.0.1:8080".to_owned(),
            audience: "coffer-api".to_owned(),
            access_ttl_secs: 3600,
            refresh_grace_secs: 10,
            revocation: RevocationBackend::Database,
            redis_url: None,
            redis_ca_file: None,
            redis_client_cert_file: None,
            redis_client_key_file: None,
            revocation_cache_secs: 60,
            mfa_above_major_units: None,
            mfa_window_hours: 24,
            password_reset_hours: 24,
            password_hash_concurrency: 4,
            argon2_memory_kib: 19 * 1024,
            argon2_iterations: 2,
            oidc: Vec::new(),
            roles: Rbac::default().to_names(),
        }
    }
}

coffer_macros::debug_non_exhaustive!(self => AuthConfig {
    issuer, audience, revocation, redis_url: self.redis_url.as_deref().map(mask_url),
});

impl AuthConfig {
    /// Redis revocation with its URL, the token lifetime, the hashing concurrency, then each
    /// OIDC issuer.
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if self.revocation == RevocationBackend::Redis && self.redis_url.is_none() {
            return Err(error(
                "auth.redis_url",
                "revocation = \"redis\" without a Redis URL",
                "set auth.redis_url or COFFER_REDIS_URL",
            ));
        }
        super::transport::RedisTlsFiles {
            section: "auth",
            url: self.redis_url.as_deref(),
            ca: self.redis_ca_file.as_deref(),
            cert: self.redis_client_cert_file.as_deref(),
            key: self.redis_client_key_file.as_deref(),
        }
        .check()?;
        if self.access_ttl_secs < 60 || self.access_ttl_secs > 24 * 3600 {
            return Err(error(
                "auth.access_ttl_secs",
                "outside 60..=86400",
                "use 3600",
            ));
        }
        if !(1..=168).contains(&self.mfa_window_hours) {
            return Err(error("auth.mfa_window_hours", "outside 1..=168", "use 24"));
        }
        if !(1..=168).contains(&self.password_reset_hours) {
            return Err(error(
                "auth.password_reset_hours",
                "outside 1..=168",
                "use 24",
            ));
        }
        if self.password_hash_concurrency == 0 {
            return Err(error(
                "auth.password_hash_concurrency",
                "0",
                "use the number of cores",
            ));
        }
        self.oidc_issuers()?;
        self.rbac()?;
        Ok(())
    }

    /// The roles table, checked (behind [`Config::rbac`](super::Config::rbac)).
    pub(super) fn rbac(&self) -> Result<Rbac, ConfigError> {
        let fix = "see docs/SECURITY.md, \"Roles\"";
        let rbac = Rbac::from_config(
            self.roles
                .iter()
                .map(|(role, ps)| (role.as_str(), ps.iter().map(String::as_str).collect())),
        )
        .map_err(|e| {
            let setting = match &e {
                RbacError::UnknownPermission { role, .. }
                | RbacError::AdminMovesMoney { role, .. } => {
                    format!("auth.roles.{role}")
                }
                _ => "auth.roles".to_owned(),
            };
            error(&setting, e.to_string(), fix)
        })?;
        if !rbac.knows(NEW_ACCOUNT_ROLE) {
            return Err(error(
                "auth.roles",
                format!("no {NEW_ACCOUNT_ROLE:?} role, which new accounts get"),
                fix,
            ));
        }
        Ok(rbac)
    }

    /// The configured external issuers, parsed and checked (behind
    /// [`Config::oidc_issuers`](super::Config::oidc_issuers)).
    pub(super) fn oidc_issuers(&self) -> Result<Vec<coffer_auth_oidc::IssuerConfig>, ConfigError> {
        self.oidc
            .iter()
            .enumerate()
            .map(|(i, table)| {
                let setting = format!("auth.oidc[{i}]");
                let c: coffer_auth_oidc::IssuerConfig =
                    table.clone().try_into().map_err(|e: toml::de::Error| {
                        error(
                            &setting,
                            e.message().to_owned(),
                            "see coffer-auth-oidc's IssuerConfig",
                        )
                    })?;
                c.validate()
                    .map_err(|e| error(&setting, e.to_string(), "fix the issuer entry"))?;
                Ok(c)
            })
            .collect()
    }
}
