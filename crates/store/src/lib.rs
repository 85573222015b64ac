//! Coffer's database adapters, on sqlx: Postgres (production) and SQLite (the embedded
//! default). Migrations (`migrations/postgres`, `migrations/sqlite`) are embedded at build time;
//! SQLite applies them on open (with foreign keys off while they run, so a migration may rebuild a
//! table), Postgres by [`migrate_postgres`], run as the schema owner,
//! because the application's role may not change the schema. `tests/upgrade.rs` opens a database
//! an older release wrote (`tests/fixtures/`) with today's migrations and code.
//!
//! - [`audit`]: the audit log adapters ([`audit::PgAuditLog`], [`audit::SqliteAuditLog`]) and the
//!   in-transaction append the other stores use, so a change and its audit record commit together.
//! - [`ledger`]: the ledger store ([`ledger::PgLedgerStore`], [`ledger::SqliteLedgerStore`]).
//! - [`auth`]: the user store ([`auth::PgUserStore`], [`auth::SqliteUserStore`]) and the
//!   persistent revocation list ([`auth::PgRevocationList`], [`auth::SqliteRevocationList`]).
//! - [`secrets`]: the secrets manager's store ([`secrets::PgSecretStore`],
//!   [`secrets::SqliteSecretStore`]).
//! - [`rotation`]: the rotation store ([`rotation::PgRotationStore`],
//!   [`rotation::SqliteRotationStore`]): wrapped keys by KEK version, rotation jobs, job locks.
//!
//! Every adapter classifies the driver's errors in one place, `db` (unavailable, conflict,
//! corrupt, storage, the driver's error kept as the source), and each port's error has one
//! conversion from that classification.
//!
//! Each store is one body of SQL generic over its database's dialect: `dialect` has the two
//! databases as types (`Pg`, `Sqlite`) and what every store does differently on them (how a
//! write transaction begins, the audit append inside it); a port whose dialects differ in more
//! has a trait of its own extending it, implemented in its `pg.rs` and `sqlite.rs`. The public
//! store types are thin shells around the generic store.

use std::str::FromStr;
use std::time::Duration;

use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

pub mod audit;
pub mod auth;
mod db;
mod dialect;
pub mod ledger;
pub mod outbox;
pub mod rotation;
pub mod secrets;
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

/// The application role's privileges, applied after every migration run (idempotent): the
/// role `coffer_app` (created when the migrating role may) reads and appends audit rows,
/// transactions and postings and never changes or removes them (but for setting a transfer's
/// receiver memo, which the backfill writes); it inserts holds and changes only how they
/// resolved; it inserts events (the outbox) and never changes or removes them; it updates wallets and users,
/// deletes only refresh tokens and denylist entries (expired ones), and never changes a stored
/// service secret. The API and worker log in as a member of it; migrations run separately as
/// the schema owner ([`migrate_postgres`]).
pub const APP_ROLE_GRANTS: &str = r"
DO $$
BEGIN
    CREATE ROLE coffer_app NOLOGIN;
EXCEPTION
    WHEN duplicate_object OR unique_violation THEN NULL;
    WHEN insufficient_privilege THEN
        RAISE NOTICE 'role coffer_app not created (no CREATEROLE): create it and migrate again';
END
$$;
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'coffer_app') THEN
        EXECUTE format('GRANT USAGE ON SCHEMA %I TO coffer_app', current_schema());
        GRANT SELECT, INSERT ON audit_events, audit_checkpoints TO coffer_app;
        GRANT SELECT, INSERT, UPDATE ON audit_heads, audit_key TO coffer_app;
        REVOKE UPDATE, DELETE, TRUNCATE ON audit_events, audit_checkpoints FROM coffer_app;
        GRANT SELECT, INSERT, UPDATE ON wallets, wallet_keys TO coffer_app;
        GRANT SELECT, INSERT ON wallet_public_keys, transactions, postings TO coffer_app;
        REVOKE UPDATE, DELETE, TRUNCATE ON wallet_public_keys, transactions, postings FROM coffer_app;
        GRANT UPDATE (receiver_memo) ON transactions TO coffer_app;
        GRANT SELECT, INSERT ON holds, events TO coffer_app;
        REVOKE UPDATE, DELETE, TRUNCATE ON events FROM coffer_app;
        REVOKE UPDATE, DELETE, TRUNCATE ON holds FROM coffer_app;
        GRANT UPDATE (status, resolved_at, capture_transaction, resolve_scope, resolve_key,
            resolve_fingerprint) ON holds TO coffer_app;
        GRANT SELECT, INSERT, UPDATE ON users, user_keys, signing_keys, revocation_epochs TO coffer_app;
        GRANT SELECT, INSERT ON service_secrets TO coffer_app;
        GRANT SELECT, INSERT ON secrets TO coffer_app;
        REVOKE UPDATE, DELETE, TRUNCATE ON secrets FROM coffer_app;
        GRANT UPDATE (active, wrapped_key, kek_version) ON secrets TO coffer_app;
        GRANT SELECT, INSERT, UPDATE ON key_rotations TO coffer_app;
        REVOKE DELETE, TRUNCATE ON key_rotations FROM coffer_app;
        GRANT SELECT, INSERT, UPDATE, DELETE ON refresh_tokens, revoked_tokens, password_resets TO coffer_app;
        GRANT SELECT, INSERT ON api_keys TO coffer_app;
        REVOKE DELETE, TRUNCATE ON api_keys FROM coffer_app;
        GRANT UPDATE (revoked_at) ON api_keys TO coffer_app;
        REVOKE DELETE, TRUNCATE ON wallet_keys, user_keys FROM coffer_app;
        GRANT SELECT, INSERT, UPDATE, DELETE ON outbox_sinks, outbox_cursors TO coffer_app;
        GRANT SELECT, UPDATE ON outbox_scan TO coffer_app;
        GRANT SELECT, INSERT ON outbox_attempts TO coffer_app;
        REVOKE UPDATE, DELETE, TRUNCATE ON outbox_attempts FROM coffer_app;
        GRANT EXECUTE ON FUNCTION coffer_prune_events(bigint, bigint, integer) TO coffer_app;
        GRANT EXECUTE ON FUNCTION coffer_erase_wallets(uuid[], bigint),
            coffer_erase_user(uuid, bigint, text, text) TO coffer_app;
        EXECUTE format('GRANT USAGE ON ALL SEQUENCES IN SCHEMA %I TO coffer_app', current_schema());
    END IF;
END
$$;
";

/// Opens a Postgres pool. It does not migrate: the application's role may not.
///
/// # Errors
/// [`StoreError::Unavailable`].
pub async fn connect_postgres(
    options: PgConnectOptions,
    max_connections: u32,
) -> Result<PgPool, StoreError> {
    PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(CONNECT_TIMEOUT)
        .connect_with(options)
        .await
        .map_err(|e| StoreError::Unavailable(e.to_string()))
}

/// Applies the migrations and the application role's grants; run as the schema owner (the
/// `migrate` command, or at start in the embedded single-user setup).
///
/// # Errors
/// [`StoreError::Migration`].
pub async fn migrate_postgres(pool: &PgPool) -> Result<(), StoreError> {
    PG_MIGRATIONS
        .run(pool)
        .await
        .map_err(|e| StoreError::Migration(e.to_string()))?;
    sqlx::raw_sql(APP_ROLE_GRANTS)
        .execute(pool)
        .await
        .map_err(|e| StoreError::Migration(e.to_string()))?;
    Ok(())
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
    migrate_sqlite(&pool).await?;
    Ok(pool)
}

/// Applies the SQLite migrations on one connection with foreign keys off, as SQLite's procedure
/// for rebuilding a table asks (a migration that changes a constraint makes a new table, copies
/// the rows, drops the old one and renames the new), then checks every reference and turns the
/// checks back on.
async fn migrate_sqlite(pool: &SqlitePool) -> Result<(), StoreError> {
    let failed = |e: &dyn std::fmt::Display| StoreError::Migration(e.to_string());
    let mut conn = pool.acquire().await.map_err(|e| failed(&e))?;
    sqlx::query("PRAGMA foreign_keys = OFF")
        .execute(&mut *conn)
        .await
        .map_err(|e| failed(&e))?;
    SQLITE_MIGRATIONS
        .run(&mut *conn)
        .await
        .map_err(|e| failed(&e))?;
    let broken = sqlx::query("PRAGMA foreign_key_check")
        .fetch_all(&mut *conn)
        .await
        .map_err(|e| failed(&e))?;
    if !broken.is_empty() {
        // The connection (foreign keys off) goes with the pool, which the caller drops.
        return Err(failed(&format_args!(
            "{} rows reference rows that do not exist after the migrations",
            broken.len()
        )));
    }
    sqlx::query("PRAGMA foreign_keys = ON")
        .execute(&mut *conn)
        .await
        .map_err(|e| failed(&e))?;
    Ok(())
}
