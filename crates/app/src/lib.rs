//! Coffer's composition root, shared by the binaries: [`config`] (typed, validated
//! configuration) and [`App::build`], which picks the adapters the configuration names (SQLite or
//! Postgres; the local key provider behind its cache; the database, in-process or Redis
//! revocation list), opens the services and the HTTP router; [`serve`] runs it until a shutdown
//! signal, letting requests in flight finish. The time is an input like the adapters: one
//! [`SystemClock`] is given to every service and store that reads it.

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use coffer_audit::{Actor, AlertConfig, AuditLog, EntityId, ObservedAuditLog};
use coffer_auth::accounts::{Accounts, AccountsConfig, AccountsDeps};
use coffer_auth::password::PasswordHasher;
use coffer_auth::store::UserStore;
use coffer_auth::{
    Authenticator, CachedRevocationList, ExternalIssuers, InMemoryRevocationList, MfaRule, Rbac,
    RevocationList, TokenConfig,
};
use coffer_clock::{Clock, SystemClock};
use coffer_http::api::{ApiState, Limits, Readiness};
use coffer_http::client_ip::TrustedProxies;
use coffer_http::ratelimit::RateLimits;
use coffer_keys::{CacheConfig, CachingKeyProvider, KeyProvider, MeteredKeyProvider};
use coffer_keys_aws::{AwsKmsProvider, KmsCredentials, KmsSettings};
use coffer_keys_local::{LocalKeyProvider, LocalKeySource};
use coffer_keys_vault::{
    KvSettings, TransitSettings, VaultAuth, VaultConnection, VaultKvProvider, VaultTransitProvider,
};
use coffer_ledger::error::{Cause, context};
use coffer_ledger::{Ledger, LedgerConfig, LedgerStore};
use coffer_ratelimit::audit::LimitedRequests;
use coffer_ratelimit::policy::Policies;
use coffer_ratelimit::{Failover, InProcessLimiter, RateLimiter, RedisDownMode};
use coffer_rotation::{RotationConfig, RotationStore, Rotator, SessionRevoker};
use coffer_secrets::{SecretStore, SecretsManager};
use coffer_store::audit::{PgAuditLog, SqliteAuditLog};
use coffer_store::auth::{PgRevocationList, PgUserStore, SqliteRevocationList, SqliteUserStore};
use coffer_store::ledger::{PgLedgerStore, SqliteLedgerStore};
use coffer_store::rotation::{PgRotationStore, SqliteRotationStore};
use coffer_store::secrets::{PgSecretStore, SqliteSecretStore};
use coffer_usecases::{Account, Admin, Wallets};
use sqlx::postgres::{PgConnectOptions, PgPool};
use sqlx::sqlite::SqlitePool;

pub mod cli;
pub mod config;
pub mod tls;
pub mod usage;
pub mod worker;

pub use config::{
    Config, ConfigError, KeyProviderKind, LogFormat, RevocationBackend, VaultAuthMethod,
    WorkerConfig,
};

/// Why the application could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AppError {
    /// A setting is wrong.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The database could not be opened or migrated.
    #[error("database: {0}")]
    Database(#[source] Cause),
    /// The master key could not be loaded.
    #[error("master key: {0}")]
    Keys(#[source] Cause),
    /// A service could not open (its keys, its stored state).
    #[error("{0}")]
    Service(#[source] Cause),
}

/// The database, whichever it is.
#[derive(Debug, Clone)]
pub enum Db {
    /// SQLite.
    Sqlite(SqlitePool),
    /// Postgres.
    Postgres(PgPool),
}

impl Db {
    async fn ping(&self) -> Result<(), String> {
        let r = match self {
            Self::Sqlite(p) => sqlx::query("SELECT 1").execute(p).await.map(|_| ()),
            Self::Postgres(p) => sqlx::query("SELECT 1").execute(p).await.map(|_| ()),
        };
        r.map_err(|e| e.to_string())
    }

    /// Closes the pool (after the server stopped: in-flight transactions have finished).
    pub async fn close(&self) {
        match self {
            Self::Sqlite(p) => p.close().await,
            Self::Postgres(p) => p.close().await,
        }
    }
}

/// The composed application.
#[derive(Debug)]
pub struct App {
    /// The configuration it was built from.
    pub config: Config,
    /// The services, as the router sees them.
    pub state: ApiState,
    /// The database.
    pub db: Db,
    /// The rate-limit layer's state, when enabled.
    pub rate: Option<RateLimits>,
    /// The secrets manager, on the same database and key provider.
    pub secrets: Arc<SecretsManager>,
    /// Master key rotation (requested by the API, run by the worker).
    pub rotation: Arc<Rotator>,
    /// The audit log, behind its alert rules.
    pub audit: Arc<ObservedAuditLog>,
    /// The key provider as called under the cache (its use is audited in aggregate).
    metered: Arc<MeteredKeyProvider>,
    /// Who the aggregate records name.
    actor: Actor,
    /// The revocation cache and the database whose announcements keep it true.
    revocation_feed: Option<(PgPool, Arc<CachedRevocationList>)>,
}

fn audit_service_actor() -> Result<EntityId, AppError> {
    EntityId::parse("coffer-api").map_err(|e| AppError::Service(Box::new(e)))
}

struct Ready {
    db: Db,
    keys: Arc<dyn KeyProvider>,
    revocation: Option<Arc<dyn RevocationList>>,
}

#[async_trait]
impl Readiness for Ready {
    async fn check(&self) -> Vec<(&'static str, Result<(), String>)> {
        let mut out = vec![
            ("database", self.db.ping().await),
            (
                "key_provider",
                self.keys.health().await.map_err(|e| e.to_string()),
            ),
        ];
        if let Some(r) = &self.revocation {
            out.push((
                "redis",
                r.epochs("readyz")
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string()),
            ));
        }
        out
    }
}

fn sqlite_path(url: &str) -> Option<&Path> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next()?;
    (!path.is_empty() && path != ":memory:").then(|| Path::new(path))
}

fn create_parent(path: &Path) -> Result<(), Cause> {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => std::fs::create_dir_all(dir)
            .map_err(|e| context(format!("cannot create {}", dir.display()), e)),
        _ => Ok(()),
    }
}

impl App {
    /// Opens everything `config` names: the database (created and migrated when configured),
    /// the master key (the key file is created on first start when allowed), the audit log, the
    /// ledger and accounts.
    ///
    /// # Errors
    /// [`AppError`] naming what failed.
    pub async fn build(config: Config) -> Result<Self, AppError> {
        config.validate()?;
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let Keys {
            provider: keys,
            metered,
            cache,
        } = open_keys(&config, &clock).await?;
        let audit_service = audit_service_actor()?;
        let Stores {
            db,
            ledger_store,
            user_store,
            audit,
            sql_revocation,
            secrets,
        } = open_stores(&config, &keys, &clock).await?;
        let audit = Arc::new(ObservedAuditLog::new(
            audit,
            AlertConfig::default(),
            audit_service,
        ));
        let mut revocation_feed = None;
        let (revocation, redis): (Arc<dyn RevocationList>, Option<Arc<dyn RevocationList>>) =
            match config.auth.revocation {
                RevocationBackend::Database => match (&db, config.auth.revocation_cache_secs) {
                    (Db::Postgres(pool), secs) if secs > 0 => {
                        let cache = Arc::new(
                            CachedRevocationList::new(sql_revocation, Duration::from_secs(secs))
                                .with_clock(clock.clone()),
                        );
                        revocation_feed = Some((pool.clone(), cache.clone()));
                        (cache, None)
                    }
                    _ => (sql_revocation, None),
                },
                RevocationBackend::Memory => (
                    Arc::new(InMemoryRevocationList::new().with_clock(clock.clone())),
                    None,
                ),
                RevocationBackend::Redis => {
                    let url = config.auth.redis_url.as_deref().unwrap_or_default();
                    let list: Arc<dyn RevocationList> = Arc::new(
                        coffer_auth_redis::RedisRevocationList::new(
                            url,
                            "coffer:revocation",
                            coffer_auth_redis::RedisRevocationConfig::default(),
                        )
                        .map_err(|e| AppError::Service(Box::new(e)))?,
                    );
                    (list.clone(), Some(list))
                }
            };
        let issuers = config.oidc_issuers()?;
        let rbac = Rbac::default();
        for issuer in &issuers {
            issuer
                .check_roles(&rbac)
                .map_err(|e| AppError::Service(context("auth.oidc", e)))?;
        }
        let oidc: Option<Arc<dyn ExternalIssuers>> = if issuers.is_empty() {
            None
        } else {
            Some(Arc::new(
                coffer_auth_oidc::OidcIssuers::from_configs(issuers, &revocation)
                    .map_err(|e| AppError::Service(context("auth.oidc", e)))?,
            ))
        };
        let ledger = Ledger::new(
            ledger_store,
            keys.clone(),
            audit.clone(),
            LedgerConfig {
                kdf_iterations: config.ledger.kdf_iterations,
                max_amount_minor: config.ledger.max_amount_minor,
                large_transaction_major_units: config.ledger.large_transaction_major_units,
                ..LedgerConfig::default()
            },
        )
        .with_clock(clock.clone());
        let hasher = PasswordHasher::with_params(
            config.auth.argon2_memory_kib,
            config.auth.argon2_iterations,
            config.auth.password_hash_concurrency,
        )
        .map_err(|e| AppError::Service(context("password hashing", e)))?;
        let accounts = Accounts::open(
            AccountsDeps {
                store: user_store,
                keys: keys.clone(),
                hasher,
                revocation,
                audit: audit.clone(),
                rbac,
                secrets: secrets.clone(),
                clock: clock.clone(),
            },
            AccountsConfig {
                token: TokenConfig {
                    issuer: config.auth.issuer.clone(),
                    audience: config.auth.audience.clone(),
                    access_ttl: Duration::from_secs(config.auth.access_ttl_secs),
                    ..TokenConfig::default()
                },
                refresh_grace: Duration::from_secs(config.auth.refresh_grace_secs),
                ..AccountsConfig::default()
            },
        )
        .await
        .map_err(|e| AppError::Service(context("accounts", e)))?;
        let accounts = Arc::new(accounts);
        let rotation_store: Arc<dyn RotationStore> = match &db {
            Db::Sqlite(p) => Arc::new(SqliteRotationStore::new(p.clone())),
            Db::Postgres(p) => Arc::new(PgRotationStore::new(p.clone())),
        };
        // Under the cache: validation must reach the provider, and a re-wrap is never cached.
        let uncached: Arc<dyn KeyProvider> = metered.clone();
        let rotation = Arc::new(
            Rotator::new(
                rotation_store,
                uncached,
                audit.clone(),
                RotationConfig {
                    batch: config.worker.rotation_batch,
                    retire_grace: Duration::from_secs(config.worker.retire_grace_secs),
                    ..RotationConfig::default()
                },
                clock.clone(),
            )
            .with_sessions(Arc::new(RevokeEveryone(accounts.clone()))),
        );
        let ledger = Arc::new(ledger);
        let mfa = MfaRule {
            above_major_units: config.auth.mfa_above_major_units,
        };
        let state = ApiState {
            wallets: Wallets::new(ledger.clone(), accounts.rbac().clone(), mfa),
            admin: Admin::new(
                ledger.clone(),
                accounts.clone(),
                rotation.clone(),
                audit.clone(),
            ),
            account: Account::new(accounts.clone()),
            ledger,
            accounts: accounts.clone(),
            authenticator: Authenticator::new(accounts.clone(), oidc),
            metrics: Arc::new(coffer_http::api::metrics::Metrics::new(
                coffer_http::api::metrics::Sources {
                    key_provider: Some(metered.clone()),
                    cache: Some(cache),
                    audit: Some(audit.clone()),
                },
            )),
            readiness: Arc::new(Ready {
                db: db.clone(),
                keys,
                revocation: redis,
            }),
        };
        let rate = rate_limits(&config, &clock)?;
        Ok(Self {
            config,
            state,
            db,
            rate,
            secrets,
            rotation,
            audit,
            metered,
            actor: Actor::Service(audit_service_actor()?),
            revocation_feed,
        })
    }

    /// Records in the audit log every minute, in aggregate: refused requests
    /// (`security.rate_limited`, one event per key and minute) and key use
    /// (`key.access_summary`, `key.secret_read`, see [`usage`]). On Postgres, also listens for
    /// revocations, which lets the revocation cache answer (`auth.revocation_cache_secs`;
    /// without this task every token is checked in the database). Abort the tasks and call
    /// [`App::shutdown`] at the end.
    #[must_use]
    pub fn spawn_background(&self) -> Vec<tokio::task::JoinHandle<()>> {
        let log: Arc<dyn AuditLog> = self.audit.clone();
        let mut tasks = vec![usage::spawn_flusher(
            self.metered.clone(),
            self.secrets.clone(),
            log.clone(),
            self.actor.clone(),
            Duration::from_secs(60),
        )];
        if let Some(rate) = &self.rate {
            tasks.push(rate.limited.spawn_flusher(log, Duration::from_secs(60)));
        }
        if let Some((pool, cache)) = &self.revocation_feed {
            tasks.push(tokio::spawn(coffer_store::auth::feed_revocations(
                pool.clone(),
                cache.clone(),
                Duration::from_secs(1),
            )));
        }
        tasks
    }

    /// Writes the key-use counts still held (all minutes, the current one included).
    pub async fn flush_key_use(&self) {
        usage::flush(
            &self.metered,
            &self.secrets,
            self.audit.as_ref(),
            &self.actor,
            true,
        )
        .await;
    }

    /// After the server stopped: writes what is still counted and closes the database.
    pub async fn shutdown(&self) {
        if let Some(rate) = &self.rate {
            rate.limited.flush(self.audit.as_ref(), true).await;
        }
        self.flush_key_use().await;
        self.db.close().await;
    }

    /// The HTTP router with the configured limits.
    pub fn router(&self) -> axum::Router {
        coffer_http::api::router(
            self.state.clone(),
            Limits {
                body_bytes: self.config.server.body_limit_bytes,
                request_timeout: Duration::from_secs(self.config.server.request_timeout_secs),
            },
            self.rate.clone(),
        )
    }
}

/// The emergency rotation's first step: every session and access token revoked.
struct RevokeEveryone(Arc<Accounts>);

#[async_trait]
impl SessionRevoker for RevokeEveryone {
    async fn revoke_all(&self) -> Result<u64, String> {
        let actor = audit_service_actor()
            .map(Actor::Service)
            .map_err(|e| e.to_string())?;
        self.0
            .revoke_everyone(actor, &coffer_auth::accounts::RequestContext::default())
            .await
            .map_err(|e| e.to_string())
    }
}

/// Applies the migrations and the application role's grants to the configured database and
/// returns (`coffer-api migrate`, run as the schema owner before replicas that log in as a
/// member of `coffer_app` with `database.migrate = false`). Opens nothing else.
///
/// # Errors
/// [`AppError::Database`].
pub async fn migrate(config: &Config) -> Result<(), AppError> {
    config.validate()?;
    if let Some(path) = sqlite_path(&config.database.url) {
        create_parent(path).map_err(AppError::Database)?;
        // Opening an SQLite database migrates it.
        let pool = coffer_store::connect_sqlite(&config.database.url)
            .await
            .map_err(|e| AppError::Database(Box::new(e)))?;
        pool.close().await;
        return Ok(());
    }
    let options = PgConnectOptions::from_str(&config.database.url).map_err(|_| {
        AppError::Database(
            format!(
                "{} is not a Postgres URL",
                config::mask_url(&config.database.url)
            )
            .into(),
        )
    })?;
    let pool = coffer_store::connect_postgres(options, 1)
        .await
        .map_err(|e| AppError::Database(Box::new(e)))?;
    let migrated = coffer_store::migrate_postgres(&pool)
        .await
        .map_err(|e| AppError::Database(Box::new(e)));
    pool.close().await;
    migrated
}

/// The database's adapters.
struct Stores {
    db: Db,
    ledger_store: Arc<dyn LedgerStore>,
    user_store: Arc<dyn UserStore>,
    audit: Arc<dyn AuditLog>,
    sql_revocation: Arc<dyn RevocationList>,
    secrets: Arc<SecretsManager>,
}

/// Opens (creating and migrating, as configured) the database and its adapters.
async fn open_stores(
    config: &Config,
    keys: &Arc<dyn KeyProvider>,
    clock: &Arc<dyn Clock>,
) -> Result<Stores, AppError> {
    let manager = |store: Arc<dyn SecretStore>| {
        Arc::new(
            SecretsManager::new(
                store,
                keys.clone(),
                Duration::from_secs(config.keys.secrets_cache_ttl_secs),
            )
            .with_clock(clock.clone()),
        )
    };
    Ok(if let Some(path) = sqlite_path(&config.database.url) {
        create_parent(path).map_err(AppError::Database)?;
        let pool = coffer_store::connect_sqlite(&config.database.url)
            .await
            .map_err(|e| AppError::Database(Box::new(e)))?;
        let secrets = manager(Arc::new(SqliteSecretStore::new(pool.clone())));
        let audit = SqliteAuditLog::open_with_secrets(pool.clone(), keys.as_ref(), &secrets)
            .await
            .map_err(|e| AppError::Service(context("audit log", e)))?
            .with_clock(clock.clone());
        Stores {
            db: Db::Sqlite(pool.clone()),
            ledger_store: Arc::new(
                SqliteLedgerStore::new(pool.clone(), audit.clone()).with_clock(clock.clone()),
            ),
            user_store: Arc::new(
                SqliteUserStore::new(pool.clone(), audit.clone()).with_clock(clock.clone()),
            ),
            audit: Arc::new(audit),
            secrets,
            sql_revocation: Arc::new(SqliteRevocationList::new(pool).with_clock(clock.clone())),
        }
    } else {
        let options = PgConnectOptions::from_str(&config.database.url).map_err(|_| {
            AppError::Database(
                format!(
                    "{} is not a Postgres URL",
                    config::mask_url(&config.database.url)
                )
                .into(),
            )
        })?;
        let pool = coffer_store::connect_postgres(options, config.database.max_connections)
            .await
            .map_err(|e| AppError::Database(Box::new(e)))?;
        if config.database.migrate {
            coffer_store::migrate_postgres(&pool)
                .await
                .map_err(|e| AppError::Database(Box::new(e)))?;
        }
        let secrets = manager(Arc::new(PgSecretStore::new(pool.clone())));
        let audit = PgAuditLog::open_with_secrets(pool.clone(), keys.as_ref(), &secrets)
            .await
            .map_err(|e| AppError::Service(context("audit log", e)))?
            .with_clock(clock.clone());
        Stores {
            db: Db::Postgres(pool.clone()),
            ledger_store: Arc::new(
                PgLedgerStore::new(pool.clone(), audit.clone()).with_clock(clock.clone()),
            ),
            user_store: Arc::new(
                PgUserStore::new(pool.clone(), audit.clone()).with_clock(clock.clone()),
            ),
            audit: Arc::new(audit),
            secrets,
            sql_revocation: Arc::new(PgRevocationList::new(pool).with_clock(clock.clone())),
        }
    })
}

fn rate_limits(config: &Config, clock: &Arc<dyn Clock>) -> Result<Option<RateLimits>, AppError> {
    let c = &config.rate_limit;
    if !c.enabled {
        return Ok(None);
    }
    let in_process: Arc<dyn RateLimiter> = Arc::new(InProcessLimiter::with_clock(clock.clone()));
    let limiter: Arc<dyn RateLimiter> = match &c.redis_url {
        Some(url) => {
            let redis = coffer_ratelimit_redis::RedisLimiter::new(
                url,
                "coffer:ratelimit",
                coffer_ratelimit_redis::RedisLimiterConfig::default(),
            )
            .map_err(|e| AppError::Service(context("rate limiter", e)))?;
            let mode = if c.fail_open {
                RedisDownMode::FailOpen
            } else {
                RedisDownMode::FailClosed
            };
            Arc::new(Failover::new(Arc::new(redis), in_process, mode))
        }
        None => in_process,
    };
    let mut nets = Vec::new();
    for cidr in &c.trusted_proxies {
        nets.extend(
            coffer_http::client_ip::parse_cidrs(cidr)
                .map_err(|e| AppError::Service(context("rate_limit.trusted_proxies", e)))?,
        );
    }
    let mut policies =
        Policies::defaults().map_err(|e| AppError::Service(context("rate limits", e)))?;
    for (name, setting) in &c.policies {
        let policy = coffer_ratelimit::Policy::new(
            name,
            setting.limit,
            Duration::from_secs(setting.period_secs),
        )
        .map_err(|e| AppError::Service(context(format!("rate_limit.policies.{name}"), e)))?;
        let slot = match name.as_str() {
            "per_ip" => &mut policies.per_ip,
            "per_user" => &mut policies.per_user,
            "per_api_key" => &mut policies.per_api_key,
            "login" => &mut policies.login,
            "register" => &mut policies.register,
            "refresh" => &mut policies.refresh,
            "money_out" => &mut policies.money_out,
            "write" => &mut policies.write,
            "read" => &mut policies.read,
            _ => &mut policies.admin,
        };
        *slot = policy;
    }
    Ok(Some(RateLimits {
        limiter,
        policies: Arc::new(policies),
        proxies: Arc::new(TrustedProxies::new(nets)),
        limited: Arc::new(LimitedRequests::new()),
        classify: Arc::new(coffer_http::api::classify),
    }))
}

/// The master key provider as the services use it: the configured provider, metered, behind
/// the unwrap cache (so the meter counts what reaches the key manager).
struct Keys {
    provider: Arc<dyn KeyProvider>,
    metered: Arc<MeteredKeyProvider>,
    cache: Arc<CachingKeyProvider>,
}

/// The configured master key provider, connected and checked.
async fn open_provider(config: &Config) -> Result<Arc<dyn KeyProvider>, AppError> {
    let keys = &config.keys;
    let failed = |e: coffer_keys::KeyError| {
        AppError::Keys(context(format!("key provider {}", keys.provider), e))
    };
    match keys.provider {
        KeyProviderKind::VaultKv | KeyProviderKind::VaultTransit => {
            let v = &config.vault;
            let mount = |default: &str| {
                if v.auth_mount.is_empty() {
                    default.to_owned()
                } else {
                    v.auth_mount.clone()
                }
            };
            // validate() made sure the method's settings are there.
            let secret = |s: &Option<crate::config::SecretSetting>| {
                s.as_ref()
                    .map(crate::config::SecretSetting::secret)
                    .unwrap_or_default()
            };
            let auth = match v.auth {
                VaultAuthMethod::Token => VaultAuth::Token(secret(&v.token)),
                VaultAuthMethod::Userpass => VaultAuth::Userpass {
                    mount: mount("userpass"),
                    username: v.username.clone().unwrap_or_default(),
                    password: secret(&v.password),
                },
                VaultAuthMethod::Approle => VaultAuth::AppRole {
                    mount: mount("approle"),
                    role_id: v.role_id.clone().unwrap_or_default(),
                    secret_id: secret(&v.secret_id),
                },
            };
            let mut conn = VaultConnection::new(v.address.clone(), auth);
            conn.namespace.clone_from(&v.namespace);
            conn.ca_file.clone_from(&v.ca_file);
            conn.timeout = Duration::from_millis(v.timeout_ms);
            if keys.provider == KeyProviderKind::VaultKv {
                let mut s = KvSettings::new(&keys.key_id);
                s.mount.clone_from(&v.kv_mount);
                s.prefix.clone_from(&v.kv_prefix);
                s.create_if_missing = v.create_key;
                s.refresh = Duration::from_secs(v.kv_refresh_secs);
                Ok(Arc::new(
                    VaultKvProvider::connect(conn, s).await.map_err(failed)?,
                ))
            } else {
                let mut s = TransitSettings::new(&keys.key_id);
                s.mount.clone_from(&v.transit_mount);
                s.create_if_missing = v.create_key;
                Ok(Arc::new(
                    VaultTransitProvider::connect(conn, s)
                        .await
                        .map_err(failed)?,
                ))
            }
        }
        KeyProviderKind::AwsKms => {
            let k = &config.aws_kms;
            let mut s = KmsSettings::new(&keys.key_id, &k.region);
            s.endpoint_url.clone_from(&k.endpoint_url);
            s.timeout = Duration::from_millis(k.timeout_ms);
            if let (Some(id), Some(secret)) = (&k.access_key_id, &k.secret_access_key) {
                s.credentials = KmsCredentials::Static {
                    access_key_id: id.clone(),
                    secret_access_key: secret.secret(),
                };
            }
            Ok(Arc::new(AwsKmsProvider::connect(s).await.map_err(failed)?))
        }
        KeyProviderKind::Local => {
            let source = match std::env::var("COFFER_MASTER_KEY") {
                Ok(inline) => LocalKeySource::Inline(zeroize::Zeroizing::new(inline)),
                Err(_) => {
                    create_parent(&keys.key_file).map_err(AppError::Keys)?;
                    LocalKeySource::File {
                        path: keys.key_file.clone(),
                        create_if_missing: keys.create_key_file,
                    }
                }
            };
            let local = LocalKeyProvider::open(source, &keys.key_id)
                .map_err(|e| AppError::Keys(Box::new(e)))?;
            Ok(Arc::new(local))
        }
    }
}

async fn open_keys(config: &Config, clock: &Arc<dyn Clock>) -> Result<Keys, AppError> {
    let provider = open_provider(config).await?;
    let metered = Arc::new(MeteredKeyProvider::new(provider));
    let cache = CacheConfig {
        max_entries: std::num::NonZeroUsize::new(config.keys.cache_entries)
            .unwrap_or(std::num::NonZeroUsize::MIN),
        max_age: Duration::from_secs(config.keys.cache_ttl_secs),
    };
    let cache = Arc::new(CachingKeyProvider::with_clock(
        metered.clone(),
        cache,
        clock.clone(),
    ));
    Ok(Keys {
        provider: cache.clone(),
        metered,
        cache,
    })
}

/// Serves `router` on `listener` until `shutdown` resolves; requests in flight finish first.
///
/// # Errors
/// The listener's I/O errors.
pub async fn serve(
    router: axum::Router,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(
        listener,
        router.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}

/// As [`serve`], over TLS (see [`tls`]).
///
/// # Errors
/// The listener's I/O errors.
pub async fn serve_tls(
    router: axum::Router,
    listener: tls::TlsListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use axum::serve::ListenerExt as _;
    axum::serve(
        listener.tap_io(|_| {}),
        router.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
    tracing::info!("shutting down: finishing requests in flight");
}
