//! The secrets manager's store on Postgres ([`PgSecretStore`]): a write transaction begins
//! with a plain `BEGIN`; the unique index on the active version decides between concurrent
//! rotations.

use sqlx::postgres::PgPool;

use super::secret_store;
use crate::dialect::Pg;

secret_store!(PgSecretStore, dialect = Pg, pool = PgPool, db = "Postgres");
