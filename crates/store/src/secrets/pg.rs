//! The secrets manager's store on Postgres ([`PgSecretStore`]) and its dialect ([`PgDialect`]):
//! a write transaction begins with a plain `BEGIN`; the unique index on the active version
//! decides between concurrent rotations.

use sqlx::postgres::PgPool;
use sqlx::{Postgres, Transaction};

use super::{SecretsDialect, secret_store};

/// The secrets store's Postgres dialect.
#[derive(Debug, Clone, Copy)]
pub(super) struct PgDialect;

impl SecretsDialect for PgDialect {
    type Db = Postgres;

    async fn begin(pool: &PgPool) -> Result<Transaction<'static, Postgres>, sqlx::Error> {
        pool.begin_with("BEGIN").await
    }

    fn rows_affected(done: &sqlx::postgres::PgQueryResult) -> u64 {
        done.rows_affected()
    }
}

secret_store!(
    PgSecretStore,
    dialect = PgDialect,
    pool = PgPool,
    db = "Postgres"
);
