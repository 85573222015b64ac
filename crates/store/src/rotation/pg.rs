//! The rotation store on Postgres ([`PgRotationStore`]) and its [`RotationDialect`] steps: a
//! batch of replacements is one `UPDATE … FROM UNNEST` over arrays; a job's lock is a session
//! advisory lock on a connection the lease keeps.

use coffer_rotation::{JobLease, KeySet, Replacement, RotationStoreError};
use sqlx::PgPool;
use sqlx::pool::PoolConnection;
use sqlx::postgres::Postgres;

use crate::dialect::Pg;

use super::{Owner, RotationDialect, db_err, owner_of, rotation_store, table};

rotation_store!(
    PgRotationStore,
    dialect = Pg,
    pool = PgPool,
    db = "Postgres"
);

/// A connection holding a session advisory lock; unlocks when dropped (or when the process
/// dies and the server ends the session).
struct AdvisoryLock {
    conn: Option<PoolConnection<Postgres>>,
    key: i64,
}

impl Drop for AdvisoryLock {
    fn drop(&mut self) {
        let Some(mut conn) = self.conn.take() else {
            return;
        };
        let key = self.key;
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                rt.spawn(async move {
                    let unlocked = sqlx::query("SELECT pg_advisory_unlock($1)")
                        .bind(key)
                        .execute(&mut *conn)
                        .await;
                    if unlocked.is_err() {
                        // Closing the session releases it.
                        drop(conn.detach());
                    }
                });
            }
            Err(_) => drop(conn.detach()),
        }
    }
}

impl RotationDialect for Pg {
    async fn replace_batch(
        pool: &PgPool,
        set: KeySet,
        items: &[Replacement],
    ) -> Result<u64, RotationStoreError> {
        let t = table(set);
        let mut versions = Vec::with_capacity(items.len());
        let mut olds = Vec::with_capacity(items.len());
        let mut news = Vec::with_capacity(items.len());
        let mut keks = Vec::with_capacity(items.len());
        let mut names = Vec::new();
        let mut ids = Vec::new();
        for item in items {
            let (owner, version) = owner_of(&item.row);
            match owner {
                Owner::Name(n) => names.push(n),
                Owner::Id(id) => ids.push(id),
            }
            versions.push(version);
            olds.push(item.old.clone());
            news.push(item.new.clone());
            keks.push(i64::from(item.kek_version));
        }
        let owner_type = if set == KeySet::Secrets {
            "text"
        } else {
            "uuid"
        };
        let sql = format!(
            "UPDATE {name} AS k SET {wrapped} = u.new, kek_version = u.kek \
             FROM UNNEST($1::{owner_type}[], $2::bigint[], $3::bytea[], $4::bytea[], $5::bigint[]) \
               AS u(owner, version, old, new, kek) \
             WHERE k.{owner} = u.owner AND k.version = u.version AND k.{wrapped} = u.old",
            name = t.name,
            wrapped = t.wrapped,
            owner = t.owner,
        );
        let q = sqlx::query(&sql);
        let q = if set == KeySet::Secrets {
            q.bind(names)
        } else {
            q.bind(ids)
        };
        q.bind(versions)
            .bind(olds)
            .bind(news)
            .bind(keks)
            .execute(pool)
            .await
            .map(|r| r.rows_affected())
            .map_err(db_err)
    }

    async fn lock(pool: &PgPool, name: &str) -> Result<Option<JobLease>, RotationStoreError> {
        let mut conn = pool.acquire().await.map_err(db_err)?;
        let key: i64 =
            sqlx::query_scalar("SELECT hashtextextended(current_schema() || ':' || $1, 0)")
                .bind(name)
                .fetch_one(&mut *conn)
                .await
                .map_err(db_err)?;
        let got: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
            .bind(key)
            .fetch_one(&mut *conn)
            .await
            .map_err(db_err)?;
        Ok(got.then(|| {
            JobLease::new(AdvisoryLock {
                conn: Some(conn),
                key,
            })
        }))
    }
}
