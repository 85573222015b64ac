//! The database and its adapters: [`migrate`] (`coffer-api migrate`), and the opening of
//! SQLite or Postgres (created and migrated, as configured) with every store on it, the audit
//! log and the secrets manager included.

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use coffer_audit::AuditLog;
use coffer_auth::RevocationList;
use coffer_auth::store::UserStore;
use coffer_clock::Clock;
use coffer_keys::KeyProvider;
use coffer_ledger::LedgerStore;
use coffer_ledger::error::{Cause, context};
use coffer_secrets::{SecretStore, SecretsManager};
use coffer_store::audit::{PgAuditLog, SqliteAuditLog};
use coffer_store::auth::{PgRevocationList, PgUserStore, SqliteRevocationList, SqliteUserStore};
use coffer_store::ledger::{PgLedgerStore, SqliteLedgerStore};
use coffer_store::secrets::{PgSecretStore, SqliteSecretStore};
use sqlx::postgres::{PgConnectOptions, PgPool};
use sqlx::sqlite::SqlitePool;

use crate::config::{self, Config};
use crate::{AppError, Db};

pub(crate) fn sqlite_path(url: &str) -> Option<&Path> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next()?;
    (!path.is_empty() && path != ":memory:").then(|| Path::new(path))
}

pub(crate) fn create_parent(path: &Path) -> Result<(), Cause> {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => std::fs::create_dir_all(dir)
            .map_err(|e| context(format!("cannot create {}", dir.display()), e)),
        _ => Ok(()),
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
        // Opening an SQLite database migrates it.
        open_sqlite(config, path).await?.close().await;
        return Ok(());
    }
    let pool = open_postgres(config, 1).await?;
    let migrated = coffer_store::migrate_postgres(&pool)
        .await
        .map_err(|e| AppError::Database(Box::new(e)));
    pool.close().await;
    migrated
}

/// The SQLite database at `path` (its directory created), migrated.
async fn open_sqlite(config: &Config, path: &Path) -> Result<SqlitePool, AppError> {
    create_parent(path).map_err(AppError::Database)?;
    coffer_store::connect_sqlite(&config.database.url)
        .await
        .map_err(|e| AppError::Database(Box::new(e)))
}

/// A pool of `max` connections to the configured Postgres (not migrated).
async fn open_postgres(config: &Config, max: u32) -> Result<PgPool, AppError> {
    let options = PgConnectOptions::from_str(&config.database.url).map_err(|_| {
        AppError::Database(
            format!(
                "{} is not a Postgres URL",
                config::mask_url(&config.database.url)
            )
            .into(),
        )
    })?;
    coffer_store::connect_postgres(options, max)
        .await
        .map_err(|e| AppError::Database(Box::new(e)))
}

/// The database's adapters.
pub(crate) struct Stores {
    pub(crate) db: Db,
    pub(crate) ledger_store: Arc<dyn LedgerStore>,
    pub(crate) user_store: Arc<dyn UserStore>,
    pub(crate) audit: Arc<dyn AuditLog>,
    pub(crate) sql_revocation: Arc<dyn RevocationList>,
    pub(crate) secrets: Arc<SecretsManager>,
}

/// Opens (creating and migrating, as configured) the database and its adapters.
pub(crate) async fn open_stores(
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
        let pool = open_sqlite(config, path).await?;
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
        let pool = open_postgres(config, config.database.max_connections).await?;
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
