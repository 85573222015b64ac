//! The rotation store on Postgres and SQLite ([`PgRotationStore`], [`SqliteRotationStore`]):
//! wrapped data keys by KEK version in `secrets`, `user_keys` and `wallet_keys`, the rotation
//! jobs in `key_rotations`, and a lock per job name.
//!
//! Keys are paged by primary key (`(owner, version) > cursor`), so a pass over a million rows
//! is a sequence of index range scans and a job resumes from any row. A replacement is written
//! only where the row still holds the bytes that were read (`AND wrapped = old`): a key changed
//! meanwhile (a crypto-shred, another worker) is left as it is. Postgres writes a batch in one
//! statement over arrays; SQLite in one transaction.
//!
//! Locks: on Postgres a session advisory lock on a connection the lease keeps (named by schema
//! and job, so test schemas do not collide); on SQLite an exclusive `flock` on a file next to
//! the database. Both end with the process, so a killed worker never blocks the next.

use std::collections::BTreeMap;

use async_trait::async_trait;
use coffer_rotation::{
    BalanceProbe, DataKeyOwner, JobLease, JobState, KeyQuery, KeyRow, KeySet, Replacement,
    RotationJob, RotationStore, RotationStoreError, StoredKey,
};
use sqlx::Row;
use uuid::Uuid;

use crate::db::{Conflict, DbFailure, DbFailureKind};

impl From<DbFailure> for RotationStoreError {
    fn from(f: DbFailure) -> Self {
        match f.kind() {
            DbFailureKind::Unavailable => Self::Unavailable(f.message()),
            DbFailureKind::Corrupt => Self::Corrupt(f.message()),
            DbFailureKind::Conflict(Conflict::Unique) => Self::Conflict,
            DbFailureKind::Conflict(Conflict::Retry) | DbFailureKind::Storage => {
                Self::Storage(f.message())
            }
        }
    }
}

fn db_err(e: sqlx::Error) -> RotationStoreError {
    DbFailure::from(e).into()
}

fn corrupt(what: &str) -> RotationStoreError {
    RotationStoreError::Corrupt(what.to_owned())
}

fn i64_of(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn u32_of(v: i64, what: &str) -> Result<u32, RotationStoreError> {
    u32::try_from(v).map_err(|_| corrupt(what))
}

fn u64_of(v: i64, what: &str) -> Result<u64, RotationStoreError> {
    u64::try_from(v).map_err(|_| corrupt(what))
}

/// A set's table, the columns of its key and of the wrapped key.
struct Table {
    name: &'static str,
    owner: &'static str,
    wrapped: &'static str,
}

fn table(set: KeySet) -> Table {
    match set {
        KeySet::Secrets => Table {
            name: "secrets",
            owner: "name",
            wrapped: "wrapped_key",
        },
        KeySet::UserKeys => Table {
            name: "user_keys",
            owner: "user_id",
            wrapped: "wrapped",
        },
        KeySet::WalletKeys => Table {
            name: "wallet_keys",
            owner: "wallet_id",
            wrapped: "wrapped",
        },
    }
}

/// A row's key as bound: the owner (a name or an id) and the version.
enum Owner {
    Name(String),
    Id(Uuid),
}

fn owner_of(row: &KeyRow) -> (Owner, i64) {
    match row {
        KeyRow::Secret { name, version } => (Owner::Name(name.clone()), *version),
        KeyRow::User { user, version } => (Owner::Id(*user), *version),
        KeyRow::Wallet { wallet, version } => (Owner::Id(*wallet), *version),
    }
}

/// The first cursor of a set: below every row.
fn start(set: KeySet) -> KeyRow {
    match set {
        KeySet::Secrets => KeyRow::Secret {
            name: String::new(),
            version: 0,
        },
        KeySet::UserKeys => KeyRow::User {
            user: Uuid::nil(),
            version: 0,
        },
        KeySet::WalletKeys => KeyRow::Wallet {
            wallet: Uuid::nil(),
            version: 0,
        },
    }
}

/// The `SELECT` of [`RotationStore::keys`]: `$1, $2` the cursor, `$3` the version bound,
/// `$4` the limit.
fn keys_sql(query: &KeyQuery) -> String {
    let t = table(query.set);
    let probe = query.probe && query.set == KeySet::WalletKeys;
    let (probe_cols, probe_join) = if probe {
        (
            ", w.version AS row_version, w.balance",
            " LEFT JOIN wallets w ON w.id = k.wallet_id AND w.dek_version = k.version",
        )
    } else {
        ("", "")
    };
    format!(
        "SELECT k.{owner} AS owner, k.version, k.{wrapped} AS wrapped, k.kek_version{probe_cols} \
         FROM {name} k{probe_join} \
         WHERE (k.{owner}, k.version) > ($1, $2) AND k.kek_version < $3 \
         ORDER BY k.{owner}, k.version LIMIT $4",
        owner = t.owner,
        wrapped = t.wrapped,
        name = t.name,
    )
}

fn stored_key<R: Row>(set: KeySet, row: &R, probe: bool) -> Result<StoredKey, RotationStoreError>
where
    for<'c> &'c str: sqlx::ColumnIndex<R>,
    for<'c> String: sqlx::Decode<'c, R::Database> + sqlx::Type<R::Database>,
    for<'c> i64: sqlx::Decode<'c, R::Database> + sqlx::Type<R::Database>,
    for<'c> Vec<u8>: sqlx::Decode<'c, R::Database> + sqlx::Type<R::Database>,
    for<'c> Uuid: sqlx::Decode<'c, R::Database> + sqlx::Type<R::Database>,
{
    let version: i64 = row.try_get("version").map_err(db_err)?;
    let key_row = match set {
        KeySet::Secrets => KeyRow::Secret {
            name: row.try_get("owner").map_err(db_err)?,
            version,
        },
        KeySet::UserKeys => KeyRow::User {
            user: row.try_get("owner").map_err(db_err)?,
            version,
        },
        KeySet::WalletKeys => KeyRow::Wallet {
            wallet: row.try_get("owner").map_err(db_err)?,
            version,
        },
    };
    let probe = if probe && set == KeySet::WalletKeys {
        let row_version: Option<i64> = row.try_get("row_version").map_err(db_err)?;
        let balance: Option<Vec<u8>> = row.try_get("balance").map_err(db_err)?;
        row_version
            .zip(balance)
            .map(|(row_version, balance)| BalanceProbe {
                row_version,
                balance,
            })
    } else {
        None
    };
    Ok(StoredKey {
        row: key_row,
        wrapped: row.try_get("wrapped").map_err(db_err)?,
        kek_version: u32_of(row.try_get("kek_version").map_err(db_err)?, "kek_version")?,
        probe,
    })
}

const JOB_COLUMNS: &str = "id, kind, state, emergency, retire, requested_by, requested_at, \
     provider, key_id, from_version, to_version, started_at, finished_at, updated_at, total, \
     rewrapped, failed, sessions_revoked, retired_below, error";

fn job_from<R: Row>(row: &R) -> Result<RotationJob, RotationStoreError>
where
    for<'c> &'c str: sqlx::ColumnIndex<R>,
    for<'c> String: sqlx::Decode<'c, R::Database> + sqlx::Type<R::Database>,
    for<'c> i64: sqlx::Decode<'c, R::Database> + sqlx::Type<R::Database>,
    for<'c> bool: sqlx::Decode<'c, R::Database> + sqlx::Type<R::Database>,
    for<'c> Uuid: sqlx::Decode<'c, R::Database> + sqlx::Type<R::Database>,
{
    let int = |col: &str| -> Result<i64, RotationStoreError> { row.try_get(col).map_err(db_err) };
    let opt =
        |col: &str| -> Result<Option<i64>, RotationStoreError> { row.try_get(col).map_err(db_err) };
    let version = |col: &str| -> Result<Option<u32>, RotationStoreError> {
        opt(col)?.map(|v| u32_of(v, col)).transpose()
    };
    let time = |col: &str| -> Result<Option<u64>, RotationStoreError> {
        opt(col)?.map(|v| u64_of(v, col)).transpose()
    };
    let state: String = row.try_get("state").map_err(db_err)?;
    Ok(RotationJob {
        id: row.try_get("id").map_err(db_err)?,
        state: JobState::parse(&state).ok_or_else(|| corrupt("state"))?,
        emergency: row.try_get("emergency").map_err(db_err)?,
        retire: row.try_get("retire").map_err(db_err)?,
        requested_by: row.try_get("requested_by").map_err(db_err)?,
        requested_at: u64_of(int("requested_at")?, "requested_at")?,
        provider: row.try_get("provider").map_err(db_err)?,
        key_id: row.try_get("key_id").map_err(db_err)?,
        from_version: version("from_version")?,
        to_version: version("to_version")?,
        started_at: time("started_at")?,
        finished_at: time("finished_at")?,
        updated_at: u64_of(int("updated_at")?, "updated_at")?,
        total: u64_of(int("total")?, "total")?,
        rewrapped: u64_of(int("rewrapped")?, "rewrapped")?,
        failed: u64_of(int("failed")?, "failed")?,
        sessions_revoked: row.try_get("sessions_revoked").map_err(db_err)?,
        retired_below: version("retired_below")?,
        error: row.try_get("error").map_err(db_err)?,
    })
}

/// One body of SQL per database; they differ in how a batch is written and how a lock is held.
macro_rules! rotation_store {
    ($store:ident, pool = $Pool:ty, db = $db:literal) => {
        #[doc = concat!("The rotation store on ", $db, " (see the module documentation).")]
        #[derive(Clone)]
        pub struct $store {
            pool: $Pool,
        }

        impl std::fmt::Debug for $store {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct(stringify!($store)).finish_non_exhaustive()
            }
        }

        impl $store {
            /// A store on `pool` (migrated).
            #[must_use]
            pub fn new(pool: $Pool) -> Self {
                Self { pool }
            }

            async fn write_job(&self, sql: &str, job: &RotationJob) -> Result<u64, RotationStoreError> {
                let opt = |v: Option<u32>| v.map(i64::from);
                let time = |v: Option<u64>| v.map(i64_of);
                sqlx::query(sql)
                    .bind(job.id)
                    .bind("kek")
                    .bind(job.state.as_str())
                    .bind(job.emergency)
                    .bind(job.retire)
                    .bind(&job.requested_by)
                    .bind(i64_of(job.requested_at))
                    .bind(&job.provider)
                    .bind(&job.key_id)
                    .bind(opt(job.from_version))
                    .bind(opt(job.to_version))
                    .bind(time(job.started_at))
                    .bind(time(job.finished_at))
                    .bind(i64_of(job.updated_at))
                    .bind(i64_of(job.total))
                    .bind(i64_of(job.rewrapped))
                    .bind(i64_of(job.failed))
                    .bind(job.sessions_revoked)
                    .bind(opt(job.retired_below))
                    .bind(&job.error)
                    .execute(&self.pool)
                    .await
                    .map(|r| r.rows_affected())
                    .map_err(db_err)
            }
        }

        #[async_trait]
        impl RotationStore for $store {
            async fn keys(&self, query: &KeyQuery) -> Result<Vec<StoredKey>, RotationStoreError> {
                let sql = keys_sql(query);
                let after = query.after.clone().unwrap_or_else(|| start(query.set));
                if after.set() != query.set {
                    return Err(RotationStoreError::Storage(format!(
                        "a {} cursor cannot page {}",
                        after.set(),
                        query.set
                    )));
                }
                let (owner, version) = owner_of(&after);
                let q = sqlx::query(&sql);
                let q = match owner {
                    Owner::Name(n) => q.bind(n),
                    Owner::Id(id) => q.bind(id),
                };
                let rows = q
                    .bind(version)
                    .bind(query.below.map_or(i64::MAX, i64::from))
                    .bind(i64::from(query.limit))
                    .fetch_all(&self.pool)
                    .await
                    .map_err(db_err)?;
                rows.iter()
                    .map(|r| stored_key(query.set, r, query.probe))
                    .collect()
            }

            async fn replace(
                &self,
                set: KeySet,
                items: &[Replacement],
            ) -> Result<u64, RotationStoreError> {
                if items.is_empty() {
                    return Ok(0);
                }
                if let Some(bad) = items.iter().find(|i| i.row.set() != set) {
                    return Err(RotationStoreError::Storage(format!(
                        "{} is not in {set}",
                        bad.row
                    )));
                }
                self.replace_batch(set, items).await
            }

            async fn count_by_kek_version(
                &self,
                set: KeySet,
            ) -> Result<BTreeMap<u32, u64>, RotationStoreError> {
                let rows = sqlx::query(&format!(
                    "SELECT kek_version, count(*) AS n FROM {} GROUP BY kek_version",
                    table(set).name
                ))
                .fetch_all(&self.pool)
                .await
                .map_err(db_err)?;
                rows.iter()
                    .map(|r| {
                        let v: i64 = r.try_get("kek_version").map_err(db_err)?;
                        let n: i64 = r.try_get("n").map_err(db_err)?;
                        Ok((u32_of(v, "kek_version")?, u64_of(n, "count")?))
                    })
                    .collect()
            }

            async fn insert_job(&self, job: &RotationJob) -> Result<(), RotationStoreError> {
                self.write_job(
                    &format!(
                        "INSERT INTO key_rotations ({JOB_COLUMNS}) VALUES ($1, $2, $3, $4, $5, \
                         $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20)"
                    ),
                    job,
                )
                .await
                .map(|_| ())
            }

            async fn update_job(&self, job: &RotationJob) -> Result<(), RotationStoreError> {
                let changed = self
                    .write_job(
                        "UPDATE key_rotations SET kind = $2, state = $3, emergency = $4, \
                         retire = $5, requested_by = $6, requested_at = $7, provider = $8, \
                         key_id = $9, from_version = $10, to_version = $11, started_at = $12, \
                         finished_at = $13, updated_at = $14, total = $15, rewrapped = $16, \
                         failed = $17, sessions_revoked = $18, retired_below = $19, error = $20 \
                         WHERE id = $1",
                        job,
                    )
                    .await?;
                if changed == 0 {
                    return Err(RotationStoreError::Storage(format!(
                        "rotation {} is not recorded",
                        job.id
                    )));
                }
                Ok(())
            }

            async fn open_job(&self) -> Result<Option<RotationJob>, RotationStoreError> {
                sqlx::query(&format!(
                    "SELECT {JOB_COLUMNS} FROM key_rotations \
                     WHERE state IN ('requested', 'running') ORDER BY id LIMIT 1"
                ))
                .fetch_optional(&self.pool)
                .await
                .map_err(db_err)?
                .as_ref()
                .map(job_from)
                .transpose()
            }

            async fn jobs(&self, limit: u32) -> Result<Vec<RotationJob>, RotationStoreError> {
                sqlx::query(&format!(
                    "SELECT {JOB_COLUMNS} FROM key_rotations ORDER BY id DESC LIMIT $1"
                ))
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await
                .map_err(db_err)?
                .iter()
                .map(job_from)
                .collect()
            }

            async fn try_lock(&self, name: &str) -> Result<Option<JobLease>, RotationStoreError> {
                self.lock(name).await
            }

            async fn data_keys_due(
                &self,
                owner: DataKeyOwner,
                created_before_micros: i64,
                after: Option<Uuid>,
                limit: u32,
            ) -> Result<Vec<Uuid>, RotationStoreError> {
                let sql = match owner {
                    DataKeyOwner::Wallets => {
                        "SELECT w.id FROM wallets w JOIN wallet_keys k \
                         ON k.wallet_id = w.id AND k.version = w.dek_version \
                         WHERE w.status <> 'closed' AND k.created_at < $1 AND w.id > $2 \
                         ORDER BY w.id LIMIT $3"
                    }
                    DataKeyOwner::Users => {
                        "SELECT u.id FROM users u JOIN user_keys k \
                         ON k.user_id = u.id AND k.version = u.dek_version \
                         WHERE k.created_at < $1 AND u.id > $2 ORDER BY u.id LIMIT $3"
                    }
                };
                sqlx::query_scalar(sql)
                    .bind(created_before_micros)
                    .bind(after.unwrap_or_else(Uuid::nil))
                    .bind(i64::from(limit))
                    .fetch_all(&self.pool)
                    .await
                    .map_err(db_err)
            }
        }
    };
}

mod pg {
    use super::*;
    use sqlx::PgPool;
    use sqlx::pool::PoolConnection;
    use sqlx::postgres::Postgres;

    rotation_store!(PgRotationStore, pool = PgPool, db = "Postgres");

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

    impl PgRotationStore {
        async fn replace_batch(
            &self,
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
                .execute(&self.pool)
                .await
                .map(|r| r.rows_affected())
                .map_err(db_err)
        }

        async fn lock(&self, name: &str) -> Result<Option<JobLease>, RotationStoreError> {
            let mut conn = self.pool.acquire().await.map_err(db_err)?;
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
}

mod sqlite {
    use super::*;
    use sqlx::SqlitePool;

    rotation_store!(SqliteRotationStore, pool = SqlitePool, db = "SQLite");

    impl SqliteRotationStore {
        async fn replace_batch(
            &self,
            set: KeySet,
            items: &[Replacement],
        ) -> Result<u64, RotationStoreError> {
            let t = table(set);
            let sql = format!(
                "UPDATE {name} SET {wrapped} = $1, kek_version = $2 \
                 WHERE {owner} = $3 AND version = $4 AND {wrapped} = $5",
                name = t.name,
                wrapped = t.wrapped,
                owner = t.owner,
            );
            let mut tx = self.pool.begin().await.map_err(db_err)?;
            let mut changed = 0;
            for item in items {
                let (owner, version) = owner_of(&item.row);
                let q = sqlx::query(&sql)
                    .bind(&item.new)
                    .bind(i64::from(item.kek_version));
                let q = match owner {
                    Owner::Name(n) => q.bind(n),
                    Owner::Id(id) => q.bind(id),
                };
                changed += q
                    .bind(version)
                    .bind(&item.old)
                    .execute(&mut *tx)
                    .await
                    .map_err(db_err)?
                    .rows_affected();
            }
            tx.commit().await.map_err(db_err)?;
            Ok(changed)
        }

        /// An exclusive `flock` on `<database>.lock-<name>`.
        async fn lock(&self, name: &str) -> Result<Option<JobLease>, RotationStoreError> {
            if !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                return Err(RotationStoreError::Storage(format!(
                    "lock name {name:?} is not [A-Za-z0-9_-]"
                )));
            }
            let file: String =
                sqlx::query_scalar("SELECT file FROM pragma_database_list WHERE name = 'main'")
                    .fetch_one(&self.pool)
                    .await
                    .map_err(db_err)?;
            if file.is_empty() {
                return Err(RotationStoreError::Storage(
                    "an in-memory database has no file to lock next to".into(),
                ));
            }
            let path = format!("{file}.lock-{name}");
            let opened = std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)
                .map_err(|e| RotationStoreError::Unavailable(format!("{path}: {e}")))?;
            match opened.try_lock() {
                Ok(()) => Ok(Some(JobLease::new(opened))),
                Err(std::fs::TryLockError::WouldBlock) => Ok(None),
                Err(std::fs::TryLockError::Error(e)) => {
                    Err(RotationStoreError::Unavailable(format!("{path}: {e}")))
                }
            }
        }
    }
}

pub use pg::PgRotationStore;
pub use sqlite::SqliteRotationStore;
