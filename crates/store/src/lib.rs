//! Coffer's database adapters, on sqlx: Postgres (production) and SQLite (the embedded
//! default). Both apply their migrations (`migrations/postgres`, `migrations/sqlite`, embedded at
//! build time) at start.
//!
//! - [`audit`]: the audit log adapters ([`audit::PgAuditLog`], [`audit::SqliteAuditLog`]) and the
//!   in-transaction append the other stores use, so a change and its audit record commit together.

use std::str::FromStr;
use std::time::Duration;

use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

pub mod audit;
#[cfg(feature = "testing")]
pub mod testing;

/// Postgres migrations.
pub static PG_MIGRATIONS: Migrator = sqlx::migrate!("../../migrations/postgres");
/// SQLite migrations.
pub static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("../../migrations/sqlite");

/// Errors of opening a database.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The URL is not one Coffer understands.
    #[error("database URL must start with postgres://, postgresql:// or sqlite: ({0})")]
    BadUrl(String),
    /// The database cannot be reached.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// Migrations failed.
    #[error("database migration failed: {0}")]
    Migration(String),
    /// The audit key could not be loaded or created.
    #[error("audit key: {0}")]
    AuditKey(String),
}

/// How long to wait for a connection before reporting the database unavailable.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Opens a Postgres pool and applies the migrations.
///
/// # Errors
/// [`StoreError::Unavailable`] or [`StoreError::Migration`].
pub async fn connect_postgres(
    options: PgConnectOptions,
    max_connections: u32,
) -> Result<PgPool, StoreError> {
    let pool = PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(CONNECT_TIMEOUT)
        .connect_with(options)
        .await
        .map_err(|e| StoreError::Unavailable(e.to_string()))?;
    PG_MIGRATIONS
        .run(&pool)
        .await
        .map_err(|e| StoreError::Migration(e.to_string()))?;
    Ok(pool)
}

/// Opens (creating if needed) an SQLite database in WAL mode and applies the migrations.
///
/// # Errors
/// [`StoreError::BadUrl`], [`StoreError::Unavailable`] or [`StoreError::Migration`].
pub async fn connect_sqlite(url: &str) -> Result<SqlitePool, StoreError> {
    let options = SqliteConnectOptions::from_str(url)
        .map_err(|e| StoreError::BadUrl(e.to_string()))?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full)
        .foreign_keys(true)
        .busy_timeout(Duration::from_secs(10));
    let pool = SqlitePoolOptions::new()
        .max_connections(8)
        .acquire_timeout(CONNECT_TIMEOUT)
        .connect_with(options)
        .await
        .map_err(|e| StoreError::Unavailable(e.to_string()))?;
    SQLITE_MIGRATIONS
        .run(&pool)
        .await
        .map_err(|e| StoreError::Migration(e.to_string()))?;
    Ok(pool)
}
