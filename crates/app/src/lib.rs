//! Coffer's composition root, shared by the binaries: [`config`] (typed, validated
//! configuration) and [`App::build`], which picks the adapters the configuration names (SQLite or
//! Postgres; the local key provider behind its cache; the database, in-process or Redis
//! revocation list), opens the services and the HTTP router; [`serve`] runs it until a shutdown
//! signal, letting requests in flight finish. The time is an input like the adapters: one
//! [`SystemClock`] is given to every service and store that reads it.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use coffer_audit::{Actor, AlertConfig, AuditLog, EntityId, ObservedAuditLog};
use coffer_auth::accounts::{Accounts, AccountsConfig, AccountsDeps};
use coffer_auth::password::PasswordHasher;
use coffer_auth::{
    Authenticator, CachedRevocationList, ExternalIssuers, InMemoryRevocationList, MfaRule,
    RevocationList, TokenConfig,
};
use coffer_clock::{Clock, SystemClock};
use coffer_http::api::{ApiState, Limits};
use coffer_http::ratelimit::{AdminAllowlist, RateLimits};
use coffer_keys::{KeyProvider, MeteredKeyProvider};
use coffer_ledger::error::{Cause, context};
use coffer_ledger::{Ledger, LedgerConfig};
use coffer_outbox::{Dispatcher, OutboxStore};
use coffer_ratelimit::InProcessLimiter;
use coffer_rotation::{RotationConfig, RotationStore, Rotator, SessionRevoker};
use coffer_secrets::SecretsManager;
use coffer_store::rotation::{PgRotationStore, SqliteRotationStore};
use coffer_usecases::{Account, Admin, Wallets, Webhooks};
use sqlx::postgres::PgPool;
use sqlx::sqlite::SqlitePool;

pub mod cli;
pub mod config;
mod delivery;
mod key_provider;
mod outbox;
mod rate_limits;
mod readiness;
mod stores;
pub mod tls;
pub mod usage;
pub mod worker;

use key_provider::{Keys, open_keys};
use rate_limits::{admin_allowlist, rate_limits};
use readiness::{ProviderHealth, Ready};
pub use stores::migrate;
use stores::{Stores, open_stores};

pub use config::{
    Config, ConfigError, EventsConfig, KeyProviderKind, LogFormat, NatsSettings, RevocationBackend,
    VaultAuthMethod, WorkerConfig,
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
    /// The networks allowed on the operators' routes, when restricted.
    admin: Option<AdminAllowlist>,
    /// The in-process limiter in it (the limiter, or Redis's fallback).
    in_process: Option<Arc<InProcessLimiter>>,
    /// The secrets manager, on the same database and key provider.
    pub secrets: Arc<SecretsManager>,
    /// Master key rotation (requested by the API, run by the worker).
    pub rotation: Arc<Rotator>,
    /// The outbox's delivery (run by the worker).
    pub outbox: Arc<Dispatcher>,
    /// The outbox's store (the worker prunes it and reports its backlog).
    pub outbox_store: Arc<dyn OutboxStore>,
    /// The time.
    clock: Arc<dyn Clock>,
    /// The audit log, behind its alert rules.
    pub audit: Arc<ObservedAuditLog>,
    /// The key provider as called under the cache (its use is audited in aggregate).
    metered: Arc<MeteredKeyProvider>,
    /// Who the aggregate records name.
    actor: Actor,
    /// On Postgres, the database whose announcements keep the revocation cache (when there is
    /// one) true and tell which wallets were erased.
    revocation_feed: Option<(PgPool, Option<Arc<CachedRevocationList>>)>,
}

/// The service actor of a process's own audit records: the binary's name, with the configured
/// instance after a colon when there is one (`coffer-worker:node-2`).
fn service_actor(binary: &str, config: &Config) -> Result<EntityId, AppError> {
    let name = if config.instance.is_empty() {
        binary.to_owned()
    } else {
        format!("{binary}:{}", config.instance)
    };
    EntityId::parse(&name).map_err(|e| AppError::Service(Box::new(e)))
}

impl App {
    /// Opens everything `config` names: the database (created and migrated when configured),
    /// the master key (the key file is created on first start when allowed), the audit log, the
    /// ledger and accounts. `binary` (`coffer-api`, `coffer-worker`) is who the process's own
    /// audit records name, with the configured `instance`.
    ///
    /// # Errors
    /// [`AppError`] naming what failed.
    pub async fn build(config: Config, binary: &str) -> Result<Self, AppError> {
        Self::build_with_clock(config, binary, Arc::new(SystemClock)).await
    }

    /// As [`App::build`], reading the time from `clock` (tests drive it).
    ///
    /// # Errors
    /// As [`App::build`].
    pub async fn build_with_clock(
        config: Config,
        binary: &str,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, AppError> {
        config.validate()?;
        let service_id = service_actor(binary, &config)?;
        let service = Actor::Service(service_id.clone());
        let Keys {
            provider: keys,
            metered,
            cache,
        } = open_keys(&config, &clock).await?;
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
            service_id.clone(),
        ));
        // On Postgres the feed runs whatever the revocation backend: it also announces erasures.
        let mut revocation_feed = match &db {
            Db::Postgres(pool) => Some((pool.clone(), None)),
            Db::Sqlite(_) => None,
        };
        let (revocation, redis): (Arc<dyn RevocationList>, Option<Arc<dyn RevocationList>>) =
            match config.auth.revocation {
                RevocationBackend::Database => match (&db, config.auth.revocation_cache_secs) {
                    (Db::Postgres(pool), secs) if secs > 0 => {
                        let cache = Arc::new(
                            CachedRevocationList::new(sql_revocation, Duration::from_secs(secs))
                                .with_clock(clock.clone()),
                        );
                        revocation_feed = Some((pool.clone(), Some(cache.clone())));
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
                            coffer_auth_redis::RedisRevocationConfig {
                                tls_ca: crate::config::read_redis_ca(
                                    "auth.redis_ca_file",
                                    config.auth.redis_ca_file.as_deref(),
                                )?,
                                tls_client: crate::config::read_redis_identity(
                                    "auth",
                                    config.auth.redis_client_cert_file.as_deref(),
                                    config.auth.redis_client_key_file.as_deref(),
                                )?,
                                ..coffer_auth_redis::RedisRevocationConfig::default()
                            },
                        )
                        .map_err(|e| AppError::Service(Box::new(e)))?,
                    );
                    (list.clone(), Some(list))
                }
            };
        let issuers = config.oidc_issuers()?;
        let rbac = config.rbac()?;
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
                max_wallets_per_user: config.ledger.max_wallets_per_user,
                outflow_window_hours: config.auth.mfa_window_hours,
                hold_expiry_secs: config.ledger.hold_expiry_secs,
                max_hold_expiry_secs: config.ledger.max_hold_expiry_secs,
                unclaimed: config
                    .ledger
                    .unclaimed()
                    .map_err(|e| AppError::Service(context("ledger.unclaimed", e)))?,
                limits: config
                    .ledger
                    .limits()
                    .map_err(|e| AppError::Service(context("ledger.limits", e)))?,
                pins: coffer_ledger::pin::PinVerifierConfig {
                    max_in_flight: config.ledger.pin_checks_in_flight,
                    max_queued: config.ledger.pin_checks_queued,
                    ..coffer_ledger::pin::PinVerifierConfig::default()
                },
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
                password_reset_lifetime: Duration::from_secs(
                    u64::from(config.auth.password_reset_hours) * 3600,
                ),
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
            .with_sessions(Arc::new(RevokeEveryone {
                accounts: accounts.clone(),
                actor: service.clone(),
            })),
        );
        let ledger = Arc::new(ledger);
        let outbox = outbox::open_outbox(
            &config,
            &db,
            ledger.clone(),
            secrets.clone(),
            audit.clone(),
            clock.clone(),
            service_id.clone(),
        )
        .await?;
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
            webhooks: Webhooks::new(
                outbox.store.clone(),
                outbox.secrets,
                outbox.dispatcher.clone(),
                audit.clone(),
                accounts.rbac().clone(),
                clock.clone(),
                config.events.allow_http,
                config.events.secret_overlap(),
            ),
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
                keys: ProviderHealth::new(
                    keys,
                    Duration::from_secs(config.server.readiness_cache_secs),
                    clock.clone(),
                ),
                revocation: redis,
            }),
        };
        let (rate, in_process) = rate_limits(&config, &clock)?.unzip();
        Ok(Self {
            admin: admin_allowlist(&config)?,
            config,
            state,
            db,
            rate,
            in_process,
            secrets,
            rotation,
            outbox: outbox.dispatcher,
            outbox_store: outbox.store,
            clock,
            audit,
            metered,
            actor: service,
            revocation_feed,
        })
    }

    /// Records in the audit log every minute, in aggregate: refused requests
    /// (`security.rate_limited`, one event per key and minute) and key use
    /// (`key.access_summary`, `key.secret_read`, see [`usage`]). Every minute, the in-process
    /// limiter forgets the clients whose budgets are full again, so its memory follows the
    /// clients of the last minutes, not every client ever seen. On Postgres, also listens for
    /// revocations, which lets the revocation cache answer (`auth.revocation_cache_secs`;
    /// without this task every token is checked in the database), and for wallets erased by
    /// any process, whose unwrapped keys and PINs it forgets. Abort the tasks and call
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
        if let Some(limiter) = &self.in_process {
            tasks.push(limiter.spawn_evictor(rate_limits::EVICT_EVERY));
        }
        if let Some((pool, cache)) = &self.revocation_feed {
            let ledger = self.state.ledger.clone();
            let listeners = coffer_store::auth::FeedListeners {
                revocations: cache.clone(),
                erased_wallet: Arc::new(move |id| {
                    ledger.forget_wallet(coffer_ledger::WalletId::from_uuid(id));
                }),
            };
            tasks.push(tokio::spawn(coffer_store::auth::feed_revocations(
                pool.clone(),
                listeners,
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

    /// Who this process's own audit records name (`coffer-api`, `coffer-worker:<instance>`).
    #[must_use]
    pub fn actor(&self) -> &Actor {
        &self.actor
    }

    /// Clients the in-process rate limiter holds state for (0 when rate limiting is off).
    #[must_use]
    pub fn rate_limited_clients(&self) -> usize {
        self.in_process.as_ref().map_or(0, |l| l.len())
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
            self.admin.clone(),
        )
    }
}

/// The emergency rotation's first step: every session and access token revoked.
struct RevokeEveryone {
    accounts: Arc<Accounts>,
    actor: Actor,
}

#[async_trait]
impl SessionRevoker for RevokeEveryone {
    async fn revoke_all(&self) -> Result<u64, String> {
        self.accounts
            .revoke_everyone(
                self.actor.clone(),
                &coffer_auth::accounts::RequestContext::default(),
            )
            .await
            .map_err(|e| e.to_string())
    }
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
