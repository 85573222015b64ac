//! Typed configuration: defaults for the embedded setup (SQLite and a key file under `./data`,
//! listening on 127.0.0.1:8080), then a TOML file, then environment variables; validated once at
//! start, each error naming the setting and how to fix it.
//!
//! Environment overrides: `COFFER_LISTEN`, `COFFER_DATA_DIR` (where the embedded database and
//! key file live), `COFFER_INSTANCE` (which replica this is, in its audit records), `COFFER_DATABASE_URL`, `COFFER_KEY_FILE`, `COFFER_REDIS_URL` (set: the
//! revocation list and the rate limiter go to Redis), `COFFER_REVOCATION` (`database`,
//! `memory` or `redis`), `COFFER_LOG_FORMAT` (`pretty` or `json`), and
//! `COFFER_<SECTION>__<KEY>` for every other setting. `COFFER_MASTER_KEY` (inline master keys,
//! read by the key provider) takes the place of the key file when set.
//!
//! [`Config`] has one field per section (and `data_dir` and `instance`), each section a type of its own module
//! with its defaults and its checks: `server` ([`ServerConfig`]), `database`
//! ([`DatabaseConfig`]), `keys` ([`KeysConfig`], with `[vault]` and `[aws_kms]` for the key
//! managers), `auth` ([`AuthConfig`]), `ledger` ([`LedgerSettings`]), `rate_limit`
//! ([`RateLimitConfig`]), `worker` ([`WorkerConfig`]), `events` ([`EventsConfig`]) and `log`
//! ([`LogConfig`]). Every section
//! refuses unknown keys and takes its defaults for the keys it is not given.
//!
//! The layers (figment, in the `env` module): [`Config::load`] reads the file and the
//! `COFFER_*` variables and hands them to [`Config::from_sources`], which merges
//! [`Config::default`], the file and the `COFFER_<SECTION>__<KEY>` variables, extracts the
//! configuration once, then applies the named variables; `load` then validates.
//! [`Config::from_toml`] is the defaults and a file alone. [`Config::validate`] runs each
//! section's checks and stops at the first wrong setting, a [`ConfigError`] naming the setting
//! (`section.name`, or the environment variable), the problem and the fix, which `config
//! check` prints; the order of the checks is the order in which settings are reported when
//! several are wrong. Secrets (the key managers' credentials, passwords in URLs) are masked
//! wherever the configuration is shown: in `Debug`, in [`Config::masked_toml`], and in any
//! serialisation (the `secret` module). [`Config::transport_warnings`] (the `transport` module)
//! names the connections that would leave the machine unencrypted or unverified; `config check`
//! prints them and a starting server logs them.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

mod auth;
mod database;
mod env;
mod events;
mod keys;
mod ledger;
mod log;
mod rate_limit;
mod secret;
mod server;
mod transport;
mod worker;

pub use auth::{AuthConfig, RevocationBackend};
pub use database::DatabaseConfig;
pub use events::{EventsConfig, NatsSettings};
pub use keys::{
    AwsKmsSettings, KEY_PROVIDERS, KeyProviderKind, KeysConfig, VaultAuthMethod, VaultSettings,
};
pub use ledger::{LedgerSettings, UnclaimedSettings};
pub use log::{LogConfig, LogFormat};
pub use rate_limit::{POLICY_NAMES, PolicySetting, RateLimitConfig};
pub use secret::{SecretSetting, mask_url};
pub use server::ServerConfig;
pub use transport::{read_redis_ca, read_redis_identity};
pub use worker::WorkerConfig;

/// A setting that is wrong, and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("configuration: {setting}: {problem} ({fix})")]
pub struct ConfigError {
    /// The setting, as `section.name` (or the environment variable).
    pub setting: String,
    /// What is wrong.
    pub problem: String,
    /// How to fix it.
    pub fix: String,
}

fn error(setting: &str, problem: impl Into<String>, fix: &str) -> ConfigError {
    ConfigError {
        setting: setting.to_owned(),
        problem: problem.into(),
        fix: fix.to_owned(),
    }
}

/// Everything Coffer is configured by.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Where the embedded setup keeps its database and key file (`COFFER_DATA_DIR`).
    pub data_dir: PathBuf,
    /// Which replica this process is, when several run (`COFFER_INSTANCE`): its own audit
    /// records name it as `coffer-worker:<instance>`. Letters, digits, `.`, `_` and `-`.
    pub instance: String,
    /// The listener.
    pub server: ServerConfig,
    /// The database.
    pub database: DatabaseConfig,
    /// The master key provider.
    pub keys: KeysConfig,
    /// Vault or OpenBao, for `keys.provider = "vault-kv"` or `"vault-transit"`.
    pub vault: VaultSettings,
    /// AWS KMS, for `keys.provider = "aws-kms"`.
    pub aws_kms: AwsKmsSettings,
    /// Accounts and tokens.
    pub auth: AuthConfig,
    /// The ledger.
    pub ledger: LedgerSettings,
    /// Rate limiting.
    pub rate_limit: RateLimitConfig,
    /// The worker (`coffer-worker`): schedules and rotation.
    pub worker: WorkerConfig,
    /// The outbox's delivery to webhook endpoints.
    pub events: EventsConfig,
    /// Logging.
    pub log: LogConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("data"),
            instance: String::new(),
            server: ServerConfig::default(),
            database: DatabaseConfig::default(),
            keys: KeysConfig::default(),
            vault: VaultSettings::default(),
            aws_kms: AwsKmsSettings::default(),
            auth: AuthConfig::default(),
            ledger: LedgerSettings::default(),
            rate_limit: RateLimitConfig::default(),
            worker: WorkerConfig::default(),
            events: EventsConfig::default(),
            log: LogConfig::default(),
        }
    }
}

impl Config {
    /// Defaults, then `file` (if given), then the environment; validated.
    ///
    /// # Errors
    /// [`ConfigError`] naming the setting.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        let text = file
            .map(|path| {
                std::fs::read_to_string(path).map_err(|e| {
                    error(
                        "--config",
                        format!("cannot read {}: {e}", path.display()),
                        "pass an existing TOML file, or none for the defaults",
                    )
                })
            })
            .transpose()?;
        let vars: std::collections::BTreeMap<String, String> = std::env::vars()
            .filter(|(k, _)| k.starts_with("COFFER_"))
            .collect();
        let config = Self::from_sources(text.as_deref(), &vars)?;
        config.validate()?;
        Ok(config)
    }

    /// The defaults with a TOML file over them (no environment, not validated).
    ///
    /// # Errors
    /// [`ConfigError`] naming the setting (or `config file` for a syntax error, with its line).
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        let none = env::SettingVars::new(&std::collections::BTreeMap::new());
        env::layers(Some(text))
            .extract()
            .map_err(|e| env::config_error(&e, &none))
    }

    /// Checks every setting.
    ///
    /// # Errors
    /// The first [`ConfigError`].
    pub fn validate(&self) -> Result<(), ConfigError> {
        // This order decides which setting is reported when several are wrong; keeping it puts
        // the worker's checks between the database's two and the rate limits' between the
        // ledger's two.
        self.validate_instance()?;
        self.database.validate_url()?;
        self.worker.validate()?;
        self.database.validate_pool()?;
        self.keys.validate(&self.vault, &self.aws_kms)?;
        self.server.validate()?;
        self.auth.validate()?;
        self.ledger.validate_pin_kdf()?;
        self.rate_limit.validate()?;
        self.ledger.validate_amounts()?;
        self.events.validate()?;
        Ok(())
    }

    fn validate_instance(&self) -> Result<(), ConfigError> {
        let ok = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-');
        if self.instance.len() <= 64 && self.instance.bytes().all(ok) {
            Ok(())
        } else {
            Err(error(
                "instance",
                format!("{:?} is not an instance name", self.instance),
                "use up to 64 letters, digits, '.', '_' or '-' (e.g. the host name)",
            ))
        }
    }

    /// The configured external issuers, parsed and checked.
    ///
    /// # Errors
    /// [`ConfigError`] naming the entry.
    pub fn oidc_issuers(&self) -> Result<Vec<coffer_auth_oidc::IssuerConfig>, ConfigError> {
        self.auth.oidc_issuers()
    }

    /// The roles table (`auth.roles`), checked.
    ///
    /// # Errors
    /// [`ConfigError`] naming the role.
    pub fn rbac(&self) -> Result<coffer_auth::Rbac, ConfigError> {
        self.auth.rbac()
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use super::*;

    #[test]
    fn defaults_are_the_embedded_setup_and_valid() {
        let c = Config::default();
        assert_eq!(c.server.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(c.database.url, "sqlite://data/coffer.db");
        assert_eq!(c.keys.key_file, PathBuf::from("data/master.json"));
        assert_eq!(c.auth.revocation, RevocationBackend::Database);
        c.validate().unwrap();
    }

    #[test]
    fn the_second_factor_window_and_a_reset_last_an_hour_to_a_week() {
        for (hours, ok) in [(0, false), (1, true), (24, true), (168, true), (169, false)] {
            let mut c = Config::default();
            c.auth.mfa_window_hours = hours;
            assert_eq!(c.validate().is_ok(), ok, "{hours} hours");
            let mut c = Config::default();
            c.auth.password_reset_hours = hours;
            assert_eq!(c.validate().is_ok(), ok, "{hours} hours");
        }
    }

    /// docs/OPERATIONS.md's configuration reference names every setting, and no other.
    #[test]
    fn the_operations_guide_documents_every_setting() {
        let doc = include_str!("../../../../docs/OPERATIONS.md");
        let mut c = Config::default();
        // Every optional setting given, so that it appears in the serialised tree.
        let secret = || Some(SecretSetting::from("x"));
        c.server.tls_cert_file = Some(PathBuf::from("c"));
        c.server.tls_key_file = Some(PathBuf::from("k"));
        c.vault.token = secret();
        c.vault.username = Some("u".into());
        c.vault.password = secret();
        c.vault.role_id = Some("r".into());
        c.vault.secret_id = secret();
        c.vault.namespace = Some("n".into());
        c.vault.ca_file = Some(PathBuf::from("ca"));
        c.aws_kms.endpoint_url = Some("e".into());
        c.aws_kms.access_key_id = Some("a".into());
        c.aws_kms.secret_access_key = secret();
        c.auth.redis_url = Some("rediss://r".into());
        c.auth.redis_ca_file = Some(PathBuf::from("c"));
        c.auth.redis_client_cert_file = Some(PathBuf::from("c"));
        c.auth.redis_client_key_file = Some(PathBuf::from("k"));
        c.auth.mfa_above_major_units = Some(1);
        c.rate_limit.redis_url = Some("rediss://r".into());
        c.rate_limit.redis_ca_file = Some(PathBuf::from("c"));
        c.rate_limit.redis_client_cert_file = Some(PathBuf::from("c"));
        c.rate_limit.redis_client_key_file = Some(PathBuf::from("k"));
        c.worker.metrics_listen = Some(SocketAddr::from(([127, 0, 0, 1], 1)));
        c.log.file = Some(PathBuf::from("l"));
        c.events.nats = Some(events::NatsSettings::default());
        let tree = toml::Table::try_from(&c).unwrap();
        let mut settings = Vec::new();
        for (section, value) in &tree {
            match value.as_table() {
                Some(table) => {
                    settings.extend(table.keys().map(|k| format!("{section}.{k}")));
                }
                None => settings.push(section.clone()),
            }
        }
        for s in &settings {
            assert!(
                doc.contains(&format!("| `{s}` |")),
                "docs/OPERATIONS.md's configuration reference lacks `{s}`"
            );
        }
        let reference = doc
            .split("## Configuration reference")
            .nth(1)
            .and_then(|rest| rest.split("\n## ").next())
            .unwrap();
        for row in reference.lines().filter(|l| l.starts_with("| `")) {
            let name = row.split('`').nth(1).unwrap();
            assert!(
                settings.iter().any(|s| s == name),
                "docs/OPERATIONS.md documents `{name}`, which is not a setting"
            );
        }
    }
}
