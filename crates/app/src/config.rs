//! Typed configuration: defaults for the embedded setup (SQLite and a key file under `./data`,
//! listening on 127.0.0.1:8080), then a TOML file, then environment variables; validated once at
//! start, each error naming the setting and how to fix it.
//!
//! Environment overrides: `COFFER_LISTEN`, `COFFER_DATA_DIR` (where the embedded database and
//! key file live), `COFFER_DATABASE_URL`, `COFFER_KEY_FILE`, `COFFER_REDIS_URL` (set: the
//! revocation list and the rate limiter go to Redis), `COFFER_REVOCATION` (`database`, `memory` or `redis`), `COFFER_LOG_FORMAT`
//! (`pretty` or `json`), and `COFFER_<SECTION>__<KEY>` for every other setting.
//! `COFFER_MASTER_KEY` (inline master keys, read by the key provider) takes
//! the place of the key file when set.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

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
    /// Logging.
    pub log: LogConfig,
}

/// Rate limiting (the policies are the defaults of `coffer_ratelimit::policy::Policies`).
#[derive(Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitConfig {
    /// On unless turned off (load tests, or a gateway that limits instead).
    pub enabled: bool,
    /// Shared across replicas through Redis when set; in-process otherwise.
    pub redis_url: Option<String>,
    /// With Redis down: keep limiting in-process (`true`), or answer 503 (`false`).
    pub fail_open: bool,
    /// Proxies whose `X-Forwarded-For` is believed (CIDRs).
    pub trusted_proxies: Vec<String>,
    /// Overrides of the default policies, by name: `per_ip`, `per_user`, `per_api_key`,
    /// `login`, `register`, `refresh`, `money_out`, `write`, `read`, `admin`.
    pub policies: std::collections::BTreeMap<String, PolicySetting>,
}

/// One rate-limit policy: `limit` requests per `period_secs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PolicySetting {
    /// Requests allowed per period.
    pub limit: u32,
    /// The period, seconds.
    pub period_secs: u64,
}

/// The names of the rate-limit policies.
pub const POLICY_NAMES: [&str; 10] = [
    "per_ip",
    "per_user",
    "per_api_key",
    "login",
    "register",
    "refresh",
    "money_out",
    "write",
    "read",
    "admin",
];

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            redis_url: None,
            fail_open: true,
            trusted_proxies: Vec::new(),
            policies: std::collections::BTreeMap::new(),
        }
    }
}

impl fmt::Debug for RateLimitConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimitConfig")
            .field("enabled", &self.enabled)
            .field("redis_url", &self.redis_url.as_deref().map(mask_url))
            .field("fail_open", &self.fail_open)
            .field("trusted_proxies", &self.trusted_proxies)
            .field("policies", &self.policies)
            .finish()
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("data"),
            server: ServerConfig::default(),
            database: DatabaseConfig::default(),
            keys: KeysConfig::default(),
            vault: VaultSettings::default(),
            aws_kms: AwsKmsSettings::default(),
            auth: AuthConfig::default(),
            ledger: LedgerSettings::default(),
            rate_limit: RateLimitConfig::default(),
            worker: WorkerConfig::default(),
            log: LogConfig::default(),
        }
    }
}

/// The listener.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address and port.
    pub listen: SocketAddr,
    /// Largest request body, bytes.
    pub body_limit_bytes: usize,
    /// Longest a request may take, seconds.
    pub request_timeout_secs: u64,
    /// TLS (1.3 only) with this PEM certificate chain; off when unset (local use).
    pub tls_cert_file: Option<PathBuf>,
    /// The PEM private key of `tls_cert_file`.
    pub tls_key_file: Option<PathBuf>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            body_limit_bytes: 64 * 1024,
            request_timeout_secs: 30,
            tls_cert_file: None,
            tls_key_file: None,
        }
    }
}

/// The database.
#[derive(Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// `sqlite://path` (the embedded default) or `postgres://…`.
    pub url: String,
    /// Pool size (Postgres).
    pub max_connections: u32,
    /// Apply migrations at start (as the schema owner). Off when the API logs in as the
    /// application role and migrations run separately.
    pub migrate: bool,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            url: "sqlite://data/coffer.db".to_owned(),
            max_connections: 16,
            migrate: true,
        }
    }
}

impl fmt::Debug for DatabaseConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DatabaseConfig")
            .field("url", &mask_url(&self.url))
            .field("max_connections", &self.max_connections)
            .field("migrate", &self.migrate)
            .finish()
    }
}

/// The master key provider.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct KeysConfig {
    /// `local` (a key file, or `COFFER_MASTER_KEY`), `vault-kv`, `vault-transit` ([vault]) or
    /// `aws-kms` ([aws_kms]).
    pub provider: String,
    /// The key file.
    pub key_file: PathBuf,
    /// Create the key file on first start when it is absent.
    pub create_key_file: bool,
    /// The master key's id: the key file's id, the KV secret's name, the Transit key's name, or
    /// the KMS key id, ARN or alias.
    pub key_id: String,
    /// Unwrapped data keys kept in memory.
    pub cache_entries: usize,
    /// How long an unwrapped data key is kept, seconds.
    pub cache_ttl_secs: u64,
    /// How long the secrets manager keeps a secret's value, seconds.
    pub secrets_cache_ttl_secs: u64,
}

impl Default for KeysConfig {
    fn default() -> Self {
        Self {
            provider: "local".to_owned(),
            key_file: PathBuf::from("data/master.json"),
            create_key_file: true,
            key_id: "coffer-master".to_owned(),
            cache_entries: 10_000,
            cache_ttl_secs: 300,
            secrets_cache_ttl_secs: 300,
        }
    }
}

/// A secret setting (a token, a password): redacted in `Debug`, zeroized on drop, masked by
/// [`Config::masked_toml`].
#[derive(Clone, Deserialize)]
#[serde(transparent)]
pub struct SecretSetting(secrecy::SecretString);

impl SecretSetting {
    /// The value, for the one place that hands it on.
    #[must_use]
    pub fn expose(&self) -> &str {
        secrecy::ExposeSecret::expose_secret(&self.0)
    }

    /// The value as the secret type the adapters take.
    #[must_use]
    pub fn secret(&self) -> secrecy::SecretString {
        self.0.clone()
    }

    fn masked() -> Self {
        Self(secrecy::SecretString::from("***"))
    }
}

impl From<&str> for SecretSetting {
    fn from(s: &str) -> Self {
        Self(secrecy::SecretString::from(s))
    }
}

impl fmt::Debug for SecretSetting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Serialized as its value: only [`Config::apply_env`] round-trips the configuration through
/// TOML; what is shown goes through [`Config::masked_toml`], which masks it first.
impl Serialize for SecretSetting {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.expose())
    }
}

/// How Coffer logs in to Vault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum VaultAuthMethod {
    /// `vault.token`.
    Token,
    /// `vault.username` and `vault.password` (seeds/000).
    Userpass,
    /// `vault.role_id` and `vault.secret_id`.
    Approle,
}

/// Vault or OpenBao (`[vault]`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct VaultSettings {
    /// `http(s)://host:port`.
    pub address: String,
    /// `token`, `userpass` or `approle`.
    pub auth: VaultAuthMethod,
    /// The auth method's mount; empty: `userpass` or `approle`.
    pub auth_mount: String,
    /// For `auth = "token"` (`COFFER_VAULT__TOKEN`).
    pub token: Option<SecretSetting>,
    /// For `auth = "userpass"`.
    pub username: Option<String>,
    /// For `auth = "userpass"` (`COFFER_VAULT__PASSWORD`).
    pub password: Option<SecretSetting>,
    /// For `auth = "approle"`.
    pub role_id: Option<String>,
    /// For `auth = "approle"` (`COFFER_VAULT__SECRET_ID`).
    pub secret_id: Option<SecretSetting>,
    /// Vault Enterprise / OpenBao namespace.
    pub namespace: Option<String>,
    /// CA certificates (PEM) for an https address.
    pub ca_file: Option<PathBuf>,
    /// Each request's timeout, milliseconds.
    pub timeout_ms: u64,
    /// The Transit mount (`vault-transit`).
    pub transit_mount: String,
    /// The KV v2 mount (`vault-kv`).
    pub kv_mount: String,
    /// The folder of master keys in the KV mount.
    pub kv_prefix: String,
    /// How often `vault-kv` re-reads the master key versions, seconds.
    pub kv_refresh_secs: u64,
    /// Create the Transit key or KV secret when missing (development; production runs
    /// `cargo xtask vault-setup`).
    pub create_key: bool,
}

impl Default for VaultSettings {
    fn default() -> Self {
        Self {
            address: "http://127.0.0.1:8200".into(),
            auth: VaultAuthMethod::Token,
            auth_mount: String::new(),
            token: None,
            username: None,
            password: None,
            role_id: None,
            secret_id: None,
            namespace: None,
            ca_file: None,
            timeout_ms: 5_000,
            transit_mount: "transit".into(),
            kv_mount: "kv".into(),
            kv_prefix: "crypto/master_keys".into(),
            kv_refresh_secs: 30,
            create_key: false,
        }
    }
}

/// AWS KMS (`[aws_kms]`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AwsKmsSettings {
    /// The region.
    pub region: String,
    /// Another endpoint (moto, LocalStack, a VPC endpoint).
    pub endpoint_url: Option<String>,
    /// With `secret_access_key`: fixed credentials. Neither: the AWS default chain
    /// (environment, profile, web identity, ECS, instance metadata).
    pub access_key_id: Option<String>,
    /// `COFFER_AWS_KMS__SECRET_ACCESS_KEY`.
    pub secret_access_key: Option<SecretSetting>,
    /// Each call's whole time, milliseconds.
    pub timeout_ms: u64,
}

impl Default for AwsKmsSettings {
    fn default() -> Self {
        Self {
            region: "us-east-1".into(),
            endpoint_url: None,
            access_key_id: None,
            secret_access_key: None,
            timeout_ms: 5_000,
        }
    }
}

/// The settings holding secrets: taken verbatim from the environment, masked when shown.
const SECRET_KEYS: &[&str] = &["token", "password", "secret_id", "secret_access_key"];

/// The key providers `keys.provider` may name.
pub const KEY_PROVIDERS: &[&str] = &["local", "vault-kv", "vault-transit", "aws-kms"];

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
    /// With `revocation = "database"` on Postgres: how long a token's revocation status is
    /// remembered between requests, seconds, while the process is told of every revocation
    /// (`LISTEN`); 0: asked of the database at every request.
    pub revocation_cache_secs: u64,
    /// Money-out above this many major units needs a second factor.
    pub mfa_above_major_units: Option<u64>,
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
            revocation_cache_secs: 60,
            mfa_above_major_units: None,
            password_hash_concurrency: 4,
            argon2_memory_kib: 19 * 1024,
            argon2_iterations: 2,
            oidc: Vec::new(),
        }
    }
}

impl fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthConfig")
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("revocation", &self.revocation)
            .field("redis_url", &self.redis_url.as_deref().map(mask_url))
            .finish_non_exhaustive()
    }
}

/// The ledger.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LedgerSettings {
    /// PBKDF2 iterations for new PINs.
    pub kdf_iterations: u32,
    /// Largest amount per operation, minor units.
    pub max_amount_minor: i64,
    /// Transactions above this many major units are flagged `large` in the audit log.
    pub large_transaction_major_units: i64,
}

impl Default for LedgerSettings {
    fn default() -> Self {
        let d = coffer_ledger::LedgerConfig::default();
        Self {
            kdf_iterations: d.kdf_iterations,
            max_amount_minor: d.max_amount_minor,
            large_transaction_major_units: d.large_transaction_major_units,
        }
    }
}

/// The worker's schedules and the rotation's tuning.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct WorkerConfig {
    /// How often the worker looks for work: rotations requested through the API, schedules.
    pub poll_secs: u64,
    /// Rotate the master key when its active version is older than this many days (0: never
    /// by schedule). The worker also needs the provider to report creation times.
    pub kek_rotation_days: u64,
    /// Retire the old master key versions once a scheduled or requested rotation moved every
    /// key (an emergency rotation always retires, where the provider can).
    pub retire_after_rotation: bool,
    /// Data keys re-wrapped per batch (one read, one provider call, one write).
    pub rotation_batch: u32,
    /// Seconds between the last re-wrap and retiring the old versions (requests in flight and
    /// replicas that have not seen the new version finish first).
    pub retire_grace_secs: u64,
    /// Rotate the token signing key when it is older than this many days (0: never by
    /// schedule). The previous key keeps verifying until its tokens expire.
    pub jwt_rotation_days: u64,
    /// Rotate a wallet's or user's data key when it is older than this many days (0: never by
    /// schedule); at most `dek_rotations_per_poll` per poll.
    pub dek_rotation_days: u64,
    /// Data keys rotated per poll at most (the schedule spreads the work).
    pub dek_rotations_per_poll: u64,
    /// Seal an audit checkpoint this often (0: never).
    pub audit_checkpoint_secs: u64,
    /// Delete ended sessions' refresh tokens this often (0: never).
    pub cleanup_secs: u64,
    /// Where the worker serves `/metrics` (Prometheus text, no authentication: bind it to a
    /// private address). Unset: no listener.
    pub metrics_listen: Option<SocketAddr>,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            poll_secs: 5,
            kek_rotation_days: 90,
            retire_after_rotation: false,
            rotation_batch: 1000,
            retire_grace_secs: 30,
            jwt_rotation_days: 90,
            dek_rotation_days: 365,
            dek_rotations_per_poll: 1000,
            audit_checkpoint_secs: 60,
            cleanup_secs: 3600,
            metrics_listen: None,
        }
    }
}

/// Log format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// Human-readable (development).
    Pretty,
    /// One JSON object per line (production).
    Json,
}

/// Logging.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// Format.
    pub format: LogFormat,
    /// `tracing` filter (`info`, `coffer=debug,info`…).
    pub filter: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::Pretty,
            filter: "info".to_owned(),
        }
    }
}

/// A URL with its password replaced by `***`, in the userinfo (up to the last `@` before the
/// query, so a password holding `@` or `/` is masked whole) and in a `password=` query pair.
#[must_use]
pub fn mask_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let query_at = rest.find(['?', '#']).unwrap_or(rest.len());
    let (before_query, query) = rest.split_at(query_at);
    let authority = match before_query.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{user}:***@{host}"),
            None => format!("{userinfo}@{host}"),
        },
        None => before_query.to_owned(),
    };
    let mut masked_query = String::with_capacity(query.len());
    let mut rest = query;
    while let Some(sep) = rest.chars().next() {
        let body = &rest[sep.len_utf8()..];
        let end = body.find(['&', '#']).unwrap_or(body.len());
        let (pair, after) = body.split_at(end);
        masked_query.push(sep);
        match pair.split_once('=') {
            Some((k, _)) if k.eq_ignore_ascii_case("password") => {
                masked_query.push_str(k);
                masked_query.push_str("=***");
            }
            _ => masked_query.push_str(pair),
        }
        rest = after;
    }
    format!("{scheme}://{authority}{masked_query}")
}

impl Config {
    /// Defaults, then `file` (if given), then the environment; validated.
    ///
    /// # Errors
    /// [`ConfigError`] naming the setting.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        let mut config = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    error(
                        "--config",
                        format!("cannot read {}: {e}", path.display()),
                        "pass an existing TOML file, or none for the defaults",
                    )
                })?;
                Self::from_toml(&text)?
            }
            None => Self::default(),
        };
        let vars: std::collections::BTreeMap<String, String> = std::env::vars()
            .filter(|(k, _)| k.starts_with("COFFER_"))
            .collect();
        config.apply_env(&vars)?;
        config.validate()?;
        Ok(config)
    }

    /// Parses TOML (no environment, not validated).
    ///
    /// # Errors
    /// [`ConfigError`] with the parser's message (it names the key and line).
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        toml::from_str(text).map_err(|e| {
            error(
                "config file",
                e.message().to_owned(),
                "see docs/CONFIGURATION in README for the settings",
            )
        })
    }

    /// Applies environment overrides: the named variables of the module documentation, then
    /// `COFFER_<SECTION>__<KEY>` for every other setting (`COFFER_AUTH__ACCESS_TTL_SECS=900`,
    /// `COFFER_RATE_LIMIT__ENABLED=false`; values in TOML syntax, bare words as strings).
    ///
    /// # Errors
    /// [`ConfigError`] naming the variable.
    pub fn apply_env(
        &mut self,
        vars: &std::collections::BTreeMap<String, String>,
    ) -> Result<(), ConfigError> {
        let get = |k: &str| vars.get(k).cloned();
        // Generic settings first, so the named variables below win over them.
        let mut tree = toml::Table::try_from(&*self)
            .map_err(|e| error("configuration", e.to_string(), "report this as a bug"))?;
        let mut generic = false;
        for (name, value) in vars {
            let Some((section, key)) = name
                .strip_prefix("COFFER_")
                .and_then(|rest| rest.split_once("__"))
            else {
                continue;
            };
            let (section, key) = (section.to_lowercase(), key.to_lowercase());
            let unknown = || {
                error(
                    name,
                    format!("no setting {section}.{key}"),
                    "see the configuration sections in README",
                )
            };
            let table = tree
                .get_mut(&section)
                .and_then(toml::Value::as_table_mut)
                .ok_or_else(unknown)?;
            let optional = [
                "redis_url",
                "mfa_above_major_units",
                "tls_cert_file",
                "tls_key_file",
                "token",
                "username",
                "password",
                "role_id",
                "secret_id",
                "namespace",
                "ca_file",
                "endpoint_url",
                "access_key_id",
                "secret_access_key",
                "metrics_listen",
            ];
            if !table.contains_key(&key) && !optional.contains(&key.as_str()) {
                return Err(unknown());
            }
            // Secrets are taken as they are: parsed as TOML, `123456` would be a number whose
            // type error quotes it, and `'x'` would quietly lose its quotes.
            let parsed = if SECRET_KEYS.contains(&key.as_str()) {
                toml::Value::String(value.clone())
            } else {
                toml::from_str::<toml::Table>(&format!("v = {value}"))
                    .ok()
                    .and_then(|mut t| t.remove("v"))
                    .unwrap_or_else(|| toml::Value::String(value.clone()))
            };
            table.insert(key, parsed);
            generic = true;
        }
        if generic {
            *self = tree.try_into().map_err(|e: toml::de::Error| {
                error(
                    "COFFER_<SECTION>__<KEY>",
                    e.message().to_owned(),
                    "give each setting a value of its type",
                )
            })?;
        }
        if let Some(v) = get("COFFER_LISTEN") {
            self.server.listen = v.parse().map_err(|_| {
                error(
                    "COFFER_LISTEN",
                    format!("{v:?} is not an address"),
                    "use host:port, e.g. 0.0.0.0:8080",
                )
            })?;
        }
        if let Some(v) = get("COFFER_DATA_DIR") {
            self.data_dir = PathBuf::from(v);
        }
        // The data directory holds the embedded database and key file unless they are set.
        let defaults = Self::default();
        if self.database.url == defaults.database.url {
            self.database.url = format!("sqlite://{}", self.data_dir.join("coffer.db").display());
        }
        if self.keys.key_file == defaults.keys.key_file {
            self.keys.key_file = self.data_dir.join("master.json");
        }
        if let Some(v) = get("COFFER_DATABASE_URL") {
            self.database.url = v;
        }
        if let Some(v) = get("COFFER_KEY_FILE") {
            self.keys.key_file = PathBuf::from(v);
        }
        // Redis, when given, shares revocations and rate limits across replicas.
        if let Some(v) = get("COFFER_REDIS_URL") {
            self.auth.redis_url = Some(v.clone());
            self.auth.revocation = RevocationBackend::Redis;
            self.rate_limit.redis_url = Some(v);
        }
        if let Some(v) = get("COFFER_REVOCATION") {
            self.auth.revocation = match v.as_str() {
                "database" => RevocationBackend::Database,
                "memory" => RevocationBackend::Memory,
                "redis" => RevocationBackend::Redis,
                _ => {
                    return Err(error(
                        "COFFER_REVOCATION",
                        format!("{v:?} is not a revocation backend"),
                        "use database, memory or redis",
                    ));
                }
            };
        }
        if let Some(v) = get("COFFER_LOG_FORMAT") {
            self.log.format = match v.as_str() {
                "pretty" => LogFormat::Pretty,
                "json" => LogFormat::Json,
                _ => {
                    return Err(error(
                        "COFFER_LOG_FORMAT",
                        format!("{v:?} is not a log format"),
                        "use pretty or json",
                    ));
                }
            };
        }
        Ok(())
    }

    /// Checks every setting.
    ///
    /// # Errors
    /// The first [`ConfigError`].
    pub fn validate(&self) -> Result<(), ConfigError> {
        let url = &self.database.url;
        if !(url.starts_with("sqlite:")
            || url.starts_with("postgres://")
            || url.starts_with("postgresql://"))
        {
            return Err(error(
                "database.url",
                format!("{} is neither SQLite nor Postgres", mask_url(url)),
                "use sqlite://data/coffer.db or postgres://user@host/db",
            ));
        }
        if self.worker.poll_secs == 0 {
            return Err(error("worker.poll_secs", "0", "use 1 or more"));
        }
        if self.worker.rotation_batch == 0 || self.worker.rotation_batch > 10_000 {
            return Err(error(
                "worker.rotation_batch",
                self.worker.rotation_batch.to_string(),
                "use 1 to 10000",
            ));
        }
        if self.database.max_connections == 0 {
            return Err(error("database.max_connections", "0", "use 1 or more"));
        }
        if !KEY_PROVIDERS.contains(&self.keys.provider.as_str()) {
            return Err(error(
                "keys.provider",
                format!("{:?} is not a key provider", self.keys.provider),
                "use local, vault-kv, vault-transit or aws-kms",
            ));
        }
        if self.keys.provider.starts_with("vault-") {
            self.validate_vault()?;
        }
        if self.keys.provider == "aws-kms" {
            let kms = &self.aws_kms;
            if kms.region.is_empty() {
                return Err(error("aws_kms.region", "empty", "set the key's region"));
            }
            if kms.access_key_id.is_some() != kms.secret_access_key.is_some() {
                return Err(error(
                    "aws_kms.access_key_id",
                    "an access key id without a secret key, or the other way round",
                    "set both (COFFER_AWS_KMS__SECRET_ACCESS_KEY for the secret), or neither for the AWS default chain",
                ));
            }
            if kms.timeout_ms == 0 {
                return Err(error("aws_kms.timeout_ms", "0", "use 5000"));
            }
        }
        if self.keys.cache_entries == 0 {
            return Err(error(
                "keys.cache_entries",
                "0",
                "use 1 or more (10000 is the default)",
            ));
        }
        if self.server.body_limit_bytes < 1024 {
            return Err(error("server.body_limit_bytes", "below 1 KiB", "use 65536"));
        }
        if self.server.tls_cert_file.is_some() != self.server.tls_key_file.is_some() {
            return Err(error(
                "server.tls_cert_file",
                "a certificate without a key, or a key without a certificate",
                "set both server.tls_cert_file and server.tls_key_file, or neither",
            ));
        }
        if self.server.request_timeout_secs == 0 {
            return Err(error("server.request_timeout_secs", "0", "use 30"));
        }
        if self.auth.revocation == RevocationBackend::Redis && self.auth.redis_url.is_none() {
            return Err(error(
                "auth.redis_url",
                "revocation = \"redis\" without a Redis URL",
                "set auth.redis_url or COFFER_REDIS_URL",
            ));
        }
        if self.auth.access_ttl_secs < 60 || self.auth.access_ttl_secs > 24 * 3600 {
            return Err(error(
                "auth.access_ttl_secs",
                "outside 60..=86400",
                "use 3600",
            ));
        }
        if self.auth.password_hash_concurrency == 0 {
            return Err(error(
                "auth.password_hash_concurrency",
                "0",
                "use the number of cores",
            ));
        }
        self.oidc_issuers()?;
        if self.ledger.kdf_iterations < coffer_crypto::pin::MIN_ITERATIONS {
            return Err(error(
                "ledger.kdf_iterations",
                format!(
                    "below the minimum of {}",
                    coffer_crypto::pin::MIN_ITERATIONS
                ),
                "use 600000",
            ));
        }
        for (name, p) in &self.rate_limit.policies {
            if !POLICY_NAMES.contains(&name.as_str()) {
                return Err(error(
                    "rate_limit.policies",
                    format!("no policy {name:?}"),
                    "use per_ip, per_user, per_api_key, login, register, refresh, money_out, write, read or admin",
                ));
            }
            if p.limit == 0 || p.period_secs == 0 {
                return Err(error(
                    &format!("rate_limit.policies.{name}"),
                    "a zero limit or period",
                    "give both a positive value (turn rate limiting off with rate_limit.enabled)",
                ));
            }
        }
        for cidr in &self.rate_limit.trusted_proxies {
            if coffer_http::client_ip::parse_cidrs(cidr).is_err() {
                return Err(error(
                    "rate_limit.trusted_proxies",
                    format!("{cidr:?} is not a CIDR"),
                    "use entries such as 10.0.0.0/8 or 192.0.2.7/32",
                ));
            }
        }
        if self.ledger.max_amount_minor <= 0 {
            return Err(error(
                "ledger.max_amount_minor",
                "not positive",
                "use a positive amount",
            ));
        }
        Ok(())
    }

    fn validate_vault(&self) -> Result<(), ConfigError> {
        let v = &self.vault;
        if !(v.address.starts_with("http://") || v.address.starts_with("https://")) {
            return Err(error(
                "vault.address",
                format!("{:?} is not an http(s) URL", v.address),
                "use https://vault.example:8200",
            ));
        }
        let missing = |setting: &str, fix: &str| error(setting, "missing", fix);
        match v.auth {
            VaultAuthMethod::Token if v.token.is_none() => {
                return Err(missing(
                    "vault.token",
                    "set COFFER_VAULT__TOKEN, or use auth = \"userpass\" or \"approle\"",
                ));
            }
            VaultAuthMethod::Userpass if v.username.is_none() || v.password.is_none() => {
                return Err(missing(
                    "vault.username",
                    "set vault.username and COFFER_VAULT__PASSWORD",
                ));
            }
            VaultAuthMethod::Approle if v.role_id.is_none() || v.secret_id.is_none() => {
                return Err(missing(
                    "vault.role_id",
                    "set vault.role_id and COFFER_VAULT__SECRET_ID",
                ));
            }
            _ => {}
        }
        if v.timeout_ms == 0 {
            return Err(error("vault.timeout_ms", "0", "use 5000"));
        }
        if v.kv_refresh_secs == 0 {
            return Err(error("vault.kv_refresh_secs", "0", "use 30"));
        }
        Ok(())
    }

    /// The configured external issuers, parsed and checked.
    ///
    /// # Errors
    /// [`ConfigError`] naming the entry.
    pub fn oidc_issuers(&self) -> Result<Vec<coffer_auth_oidc::IssuerConfig>, ConfigError> {
        self.auth
            .oidc
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

    /// The effective configuration as TOML, with every secret masked (for `config check`).
    #[must_use]
    pub fn masked_toml(&self) -> String {
        let mut shown = self.clone();
        shown.database.url = mask_url(&shown.database.url);
        shown.auth.redis_url = shown.auth.redis_url.as_deref().map(mask_url);
        shown.rate_limit.redis_url = shown.rate_limit.redis_url.as_deref().map(mask_url);
        for secret in [
            &mut shown.vault.token,
            &mut shown.vault.password,
            &mut shown.vault.secret_id,
            &mut shown.aws_kms.secret_access_key,
        ] {
            if secret.is_some() {
                *secret = Some(SecretSetting::masked());
            }
        }
        let mut out = toml::to_string_pretty(&shown).unwrap_or_default();
        if std::env::var_os("COFFER_MASTER_KEY").is_some() {
            out.push_str("\n# COFFER_MASTER_KEY is set (***): it replaces keys.key_file\n");
        }
        out
    }
}

#[cfg(test)]
mod tests {
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
    fn file_then_environment_and_errors_name_the_setting() {
        let mut c = Config::from_toml(
            "[server]\nlisten = \"0.0.0.0:9000\"\n[database]\nurl = \"postgres://coffer:s3cret@db/coffer\"\n",
        )
        .unwrap();
        assert_eq!(c.server.listen.port(), 9000);
        let env = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect::<std::collections::BTreeMap<_, _>>()
        };
        c.apply_env(&env(&[
            ("COFFER_LISTEN", "127.0.0.1:7000"),
            ("COFFER_AUTH__ACCESS_TTL_SECS", "900"),
            ("COFFER_RATE_LIMIT__ENABLED", "false"),
            ("COFFER_AUTH__ISSUER", "https://wallet.example"),
        ]))
        .unwrap();
        assert_eq!(c.server.listen.port(), 7000);
        assert_eq!(c.auth.access_ttl_secs, 900);
        assert!(!c.rate_limit.enabled);
        assert_eq!(c.auth.issuer, "https://wallet.example");
        let mut d = Config::default();
        d.apply_env(&env(&[
            ("COFFER_DATA_DIR", "/var/lib/coffer"),
            ("COFFER_REDIS_URL", "redis://r:6379"),
        ]))
        .unwrap();
        assert_eq!(d.database.url, "sqlite:///var/lib/coffer/coffer.db");
        assert_eq!(
            d.keys.key_file,
            PathBuf::from("/var/lib/coffer/master.json")
        );
        assert_eq!(d.auth.revocation, RevocationBackend::Redis);
        assert_eq!(d.rate_limit.redis_url.as_deref(), Some("redis://r:6379"));
        for bad in [
            ("COFFER_AUTH__NOPE", "1"),
            ("COFFER_NOPE__X", "1"),
            ("COFFER_AUTH__ACCESS_TTL_SECS", "soon"),
        ] {
            let e = Config::default().apply_env(&env(&[bad])).unwrap_err();
            assert!(e.setting.starts_with("COFFER_"), "{e}");
        }
        let shown = c.masked_toml();
        assert!(shown.contains("postgres://coffer:***@db/coffer"), "{shown}");
        assert!(!shown.contains("s3cret"));
        assert!(!format!("{c:?}").contains("s3cret"));
        for (url, shown) in [
            ("postgres://u:p@ss/w@rd@db/x", "postgres://u:***@db/x"),
            (
                "postgres://db/x?user=u&password=s3cret&sslmode=require",
                "postgres://db/x?user=u&password=***&sslmode=require",
            ),
            ("redis://r:6379", "redis://r:6379"),
            ("sqlite://data/coffer.db", "sqlite://data/coffer.db"),
        ] {
            assert_eq!(mask_url(url), shown);
        }

        let e = Config::from_toml("[server]\nlisen = \"x\"\n").unwrap_err();
        assert!(e.problem.contains("lisen"), "{e}");
        let e = c
            .apply_env(&env(&[("COFFER_REVOCATION", "etcd")]))
            .unwrap_err();
        assert_eq!(e.setting, "COFFER_REVOCATION");
        let bad = Config {
            database: DatabaseConfig {
                url: "mysql://x".into(),
                ..DatabaseConfig::default()
            },
            ..Config::default()
        };
        assert_eq!(bad.validate().unwrap_err().setting, "database.url");
        let redis_without_url = Config {
            auth: AuthConfig {
                revocation: RevocationBackend::Redis,
                ..AuthConfig::default()
            },
            ..Config::default()
        };
        assert_eq!(
            redis_without_url.validate().unwrap_err().setting,
            "auth.redis_url"
        );
    }

    #[test]
    fn rate_limit_policies_can_be_overridden_by_name() {
        let policies =
            Config::from_toml("[rate_limit.policies.money_out]\nlimit = 600\nperiod_secs = 60\n")
                .unwrap();
        policies.validate().unwrap();
        assert_eq!(policies.rate_limit.policies["money_out"].limit, 600);
        let unknown =
            Config::from_toml("[rate_limit.policies.transfers]\nlimit = 1\nperiod_secs = 60\n")
                .unwrap();
        assert_eq!(
            unknown.validate().unwrap_err().setting,
            "rate_limit.policies"
        );
        let zero = Config::from_toml("[rate_limit.policies.login]\nlimit = 0\nperiod_secs = 60\n")
            .unwrap();
        assert_eq!(
            zero.validate().unwrap_err().setting,
            "rate_limit.policies.login"
        );
    }

    #[test]
    fn key_manager_secrets_come_from_the_environment_and_never_show() {
        let vars: std::collections::BTreeMap<String, String> = [
            ("COFFER_KEYS__PROVIDER", "vault-transit"),
            ("COFFER_VAULT__ADDRESS", "https://vault.internal:8200"),
            ("COFFER_VAULT__TOKEN", "hvs.s3cret-token"),
            ("COFFER_VAULT__PASSWORD", "123456"),
            ("COFFER_VAULT__SECRET_ID", "'quoted'"),
            ("COFFER_AWS_KMS__ACCESS_KEY_ID", "AKIAEXAMPLE"),
            ("COFFER_AWS_KMS__SECRET_ACCESS_KEY", "aws-s3cret-key"),
            // Another generic setting after the secrets: the round trip keeps them.
            ("COFFER_LEDGER__MAX_AMOUNT_MINOR", "1000"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let mut c = Config::default();
        c.apply_env(&vars).unwrap();
        c.validate().unwrap();
        assert_eq!(c.keys.provider, "vault-transit");
        assert_eq!(c.vault.token.as_ref().unwrap().expose(), "hvs.s3cret-token");
        // Taken verbatim: a number stays a string, quotes stay.
        assert_eq!(c.vault.password.as_ref().unwrap().expose(), "123456");
        assert_eq!(c.vault.secret_id.as_ref().unwrap().expose(), "'quoted'");
        assert_eq!(
            c.aws_kms.secret_access_key.as_ref().unwrap().expose(),
            "aws-s3cret-key"
        );
        let shown = c.masked_toml();
        assert!(
            !shown.contains("s3cret") && !shown.contains("123456"),
            "{shown}"
        );
        assert!(shown.contains("token = \"***\""), "{shown}");
        assert!(!format!("{c:?}").contains("s3cret"));
    }

    #[test]
    fn a_key_manager_without_its_credentials_is_refused_by_name() {
        let mut c = Config::default();
        c.keys.provider = "hsm".into();
        assert_eq!(c.validate().unwrap_err().setting, "keys.provider");
        c.keys.provider = "vault-kv".into();
        assert_eq!(c.validate().unwrap_err().setting, "vault.token");
        c.vault.auth = VaultAuthMethod::Userpass;
        c.vault.username = Some("coffer-api".into());
        assert_eq!(c.validate().unwrap_err().setting, "vault.username");
        c.vault.password = Some("pw".into());
        c.validate().unwrap();
        c.vault.address = "vault:8200".into();
        assert_eq!(c.validate().unwrap_err().setting, "vault.address");
        let mut k = Config::default();
        k.keys.provider = "aws-kms".into();
        k.validate().unwrap(); // the AWS default chain
        k.aws_kms.access_key_id = Some("AKIAEXAMPLE".into());
        assert_eq!(k.validate().unwrap_err().setting, "aws_kms.access_key_id");
    }

    /// docs/OPERATIONS.md's configuration reference names every setting, and no other.
    #[test]
    fn the_operations_guide_documents_every_setting() {
        let doc = include_str!("../../../docs/OPERATIONS.md");
        let mut c = Config::default();
        // Every optional setting given, so that it appears in the serialised tree.
        let secret = || Some(SecretSetting(secrecy::SecretString::from("x")));
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
        c.auth.redis_url = Some("redis://r".into());
        c.auth.mfa_above_major_units = Some(1);
        c.rate_limit.redis_url = Some("redis://r".into());
        c.worker.metrics_listen = Some(SocketAddr::from(([127, 0, 0, 1], 1)));
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
