//! The user store's and the revocation list's dialect on Postgres: a write transaction
//! begins with a plain `BEGIN`, and each revocation is announced with `pg_notify`. Audit
//! records are appended through [`PgAuditLog`](crate::audit::PgAuditLog).

use coffer_audit::{AuditError, AuditEvent, Receipt};
use sqlx::postgres::PgPool;
use sqlx::{PgConnection, Postgres, Transaction};

use super::AuthDialect;
use crate::audit::PgAuditLog;

/// The user store's Postgres dialect.
#[derive(Debug, Clone, Copy)]
pub(super) struct PgDialect;

impl AuthDialect for PgDialect {
    type Db = Postgres;
    type Audit = PgAuditLog;

    const ANNOUNCE: bool = true;

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

    fn rows_affected(done: &sqlx::postgres::PgQueryResult) -> u64 {
        done.rows_affected()
    }
}
