//! The secrets manager's store on SQLite ([`SqliteSecretStore`]) and its dialect
//! ([`SqliteDialect`]): a write transaction begins with `BEGIN IMMEDIATE`, taking the database's
//! one write lock up front, so write transactions do not interleave.

use sqlx::sqlite::SqlitePool;
use sqlx::{Sqlite, Transaction};

use super::{SecretsDialect, secret_store};

/// The secrets store's SQLite dialect.
#[derive(Debug, Clone, Copy)]
pub(super) struct SqliteDialect;

impl SecretsDialect for SqliteDialect {
    type Db = Sqlite;

    async fn begin(pool: &SqlitePool) -> Result<Transaction<'static, Sqlite>, sqlx::Error> {
        pool.begin_with("BEGIN IMMEDIATE").await
    }

    fn rows_affected(done: &sqlx::sqlite::SqliteQueryResult) -> u64 {
        done.rows_affected()
    }
}

secret_store!(
    SqliteSecretStore,
    dialect = SqliteDialect,
    pool = SqlitePool,
    db = "SQLite"
);
