//! The secrets manager's store on SQLite ([`SqliteSecretStore`]): a write transaction begins
//! with `BEGIN IMMEDIATE`, taking the database's one write lock up front, so write
//! transactions do not interleave.

use sqlx::sqlite::SqlitePool;

use super::secret_store;
use crate::dialect::Sqlite;

secret_store!(
    SqliteSecretStore,
    dialect = Sqlite,
    pool = SqlitePool,
    db = "SQLite"
);
