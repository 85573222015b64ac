//! What every port's adapter does differently on each database, and the two databases as types:
//! [`Pg`] and [`Sqlite`] implement [`Dialect`] (how a write transaction begins, how the audit
//! log appends inside it, how many rows a statement changed). A port whose dialects differ in
//! more has its own trait extending this one (`LedgerDialect`, `RotationDialect`,
//! `AuthDialect`), implemented for the same two types beside its adapters.

use coffer_audit::{AuditError, AuditEvent, Receipt};
use sqlx::postgres::{PgPool, PgQueryResult};
use sqlx::sqlite::{SqlitePool, SqliteQueryResult};
use sqlx::{Database, PgConnection, Pool, Postgres, SqliteConnection, Transaction};

use crate::audit::{PgAuditLog, SqliteAuditLog};

/// A database connection of the dialect `D`.
pub(crate) type Conn<D> = <<D as Dialect>::Db as Database>::Connection;

/// What every adapter does differently on each database.
pub(crate) trait Dialect: Send + Sync + 'static {
    /// The database.
    type Db: Database;
    /// The audit log on it, which appends inside the adapters' transactions.
    type Audit: Clone + Send + Sync + 'static;

    /// Begins a write transaction.
    async fn begin(pool: &Pool<Self::Db>) -> Result<Transaction<'static, Self::Db>, sqlx::Error>;

    /// Appends `event` inside the transaction on `conn`.
    async fn append_audit(
        audit: &Self::Audit,
        conn: &mut Conn<Self>,
        event: &AuditEvent,
    ) -> Result<Receipt, AuditError>;

    /// How many rows a statement changed.
    fn rows_affected(done: &<Self::Db as Database>::QueryResult) -> u64;
}

/// Postgres: a write transaction begins with a plain `BEGIN` (rows are locked as they are
/// written, or `FOR UPDATE`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Pg;

impl Dialect for Pg {
    type Db = Postgres;
    type Audit = PgAuditLog;

    async fn begin(pool: &PgPool) -> Result<Transaction<'static, Postgres>, sqlx::Error> {
        pool.begin_with("BEGIN").await
    }

    async fn append_audit(
        audit: &PgAuditLog,
        conn: &mut PgConnection,
        event: &AuditEvent,
    ) -> Result<Receipt, AuditError> {
        audit.append_in(conn, event).await
    }

    fn rows_affected(done: &PgQueryResult) -> u64 {
        done.rows_affected()
    }
}

/// SQLite: a write transaction begins with `BEGIN IMMEDIATE`, taking the database's one write
/// lock up front, so write transactions do not interleave.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Sqlite;

impl Dialect for Sqlite {
    type Db = sqlx::Sqlite;
    type Audit = SqliteAuditLog;

    async fn begin(pool: &SqlitePool) -> Result<Transaction<'static, sqlx::Sqlite>, sqlx::Error> {
        pool.begin_with("BEGIN IMMEDIATE").await
    }

    async fn append_audit(
        audit: &SqliteAuditLog,
        conn: &mut SqliteConnection,
        event: &AuditEvent,
    ) -> Result<Receipt, AuditError> {
        audit.append_in(conn, event).await
    }

    fn rows_affected(done: &SqliteQueryResult) -> u64 {
        done.rows_affected()
    }
}
