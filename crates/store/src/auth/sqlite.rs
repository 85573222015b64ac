//! The user store's and the revocation list's dialect on SQLite: a write transaction begins
//! with `BEGIN IMMEDIATE`, taking the database's one write lock up front; revocations are not
//! announced. Audit records are appended through
//! [`SqliteAuditLog`](crate::audit::SqliteAuditLog).

use coffer_audit::{AuditError, AuditEvent, Receipt};
use sqlx::sqlite::SqlitePool;
use sqlx::{Sqlite, SqliteConnection, Transaction};

use super::AuthDialect;
use crate::audit::SqliteAuditLog;

/// The user store's Sqlite dialect.
#[derive(Debug, Clone, Copy)]
pub(super) struct SqliteDialect;

impl AuthDialect for SqliteDialect {
    type Db = Sqlite;
    type Audit = SqliteAuditLog;

    const ANNOUNCE: bool = false;

    async fn begin(pool: &SqlitePool) -> Result<Transaction<'static, Sqlite>, sqlx::Error> {
        pool.begin_with("BEGIN IMMEDIATE").await
    }

    async fn append_audit(
        audit: &SqliteAuditLog,
        conn: &mut SqliteConnection,
        event: &AuditEvent,
    ) -> Result<Receipt, AuditError> {
        audit.append_in(conn, event).await
    }

    fn rows_affected(done: &sqlx::sqlite::SqliteQueryResult) -> u64 {
        done.rows_affected()
    }
}
