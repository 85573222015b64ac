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
//!
//! One body of SQL for both, [`Rotation`], generic over the database's [`RotationDialect`]:
//! how a batch of replacements is written and how a job lock is held ([`pg`], [`sqlite`]). The
//! public store types are thin shells around `Rotation<dialect>`, made by [`rotation_store!`].

use std::collections::BTreeMap;

use coffer_rotation::{
    BalanceProbe, DataKeyOwner, JobLease, JobState, KeyQuery, KeyRow, KeySet, Replacement,
    RotationJob, RotationStoreError, StoredKey,
};
use sqlx::{Database, Decode, Encode, Executor, IntoArguments, Pool, Row, Type};
use uuid::Uuid;

use crate::db::{Conflict, DbFailure, DbFailureKind};
use crate::dialect::Dialect;

mod pg;
mod sqlite;

pub use pg::PgRotationStore;
pub use sqlite::SqliteRotationStore;

impl From<DbFailure> for RotationStoreError {
    fn from(f: DbFailure) -> Self {
        match f.kind() {
            DbFailureKind::Unavailable => Self::Unavailable(f.into_source().into()),
            DbFailureKind::Corrupt => Self::Corrupt(f.into_source().into()),
            DbFailureKind::Conflict(Conflict::Unique) => Self::Conflict,
            DbFailureKind::Conflict(Conflict::Retry) | DbFailureKind::Storage => {
                Self::Storage(f.into_source().into())
            }
        }
    }
}

fn db_err(e: sqlx::Error) -> RotationStoreError {
    DbFailure::from(e).into()
}

fn corrupt(what: &str) -> RotationStoreError {
    RotationStoreError::Corrupt(what.into())
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

/// What the rotation store does differently on each database; everything else is
/// [`Rotation`]'s.
pub(super) trait RotationDialect: Dialect {
    /// Writes a batch of replacements (all of one set), each only where the row still holds
    /// its `old` bytes; how many rows changed.
    async fn replace_batch(
        pool: &Pool<Self::Db>,
        set: KeySet,
        items: &[Replacement],
    ) -> Result<u64, RotationStoreError>;

    /// Takes the lock of the job `name` unless another holder has it.
    async fn lock(
        pool: &Pool<Self::Db>,
        name: &str,
    ) -> Result<Option<JobLease>, RotationStoreError>;
}

/// The rotation store on the database of `D`.
pub(super) struct Rotation<D: RotationDialect> {
    pool: Pool<D::Db>,
}

impl<D: RotationDialect> Clone for Rotation<D> {
    fn clone(&self) -> Self {
        Self {
            pool: self.pool.clone(),
        }
    }
}

/// What the statements need of a database: sqlx's executor and argument traits, and the types
/// they bind and read. Postgres and SQLite both have them all.
impl<D: RotationDialect> Rotation<D>
where
    for<'c> &'c mut <D::Db as Database>::Connection: Executor<'c, Database = D::Db>,
    for<'q> <D::Db as Database>::Arguments<'q>: IntoArguments<'q, D::Db>,
    for<'q> Uuid: Encode<'q, D::Db> + Type<D::Db> + Decode<'q, D::Db>,
    for<'q> i64: Encode<'q, D::Db> + Type<D::Db> + Decode<'q, D::Db>,
    for<'q> Option<i64>: Encode<'q, D::Db>,
    for<'q> bool: Encode<'q, D::Db> + Type<D::Db> + Decode<'q, D::Db>,
    for<'q> String: Encode<'q, D::Db> + Type<D::Db> + Decode<'q, D::Db>,
    for<'q> Option<String>: Encode<'q, D::Db>,
    for<'q> Vec<u8>: Type<D::Db> + Decode<'q, D::Db>,
    for<'q> &'q str: Encode<'q, D::Db> + Type<D::Db> + sqlx::ColumnIndex<<D::Db as Database>::Row>,
    usize: sqlx::ColumnIndex<<D::Db as Database>::Row>,
{
    /// A store on `pool` (migrated).
    pub(super) fn new(pool: Pool<D::Db>) -> Self {
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
            .map(|r| D::rows_affected(&r))
            .map_err(db_err)
    }

    pub(super) async fn keys(
        &self,
        query: &KeyQuery,
    ) -> Result<Vec<StoredKey>, RotationStoreError> {
        let sql = keys_sql(query);
        let after = query.after.clone().unwrap_or_else(|| start(query.set));
        if after.set() != query.set {
            return Err(RotationStoreError::Storage(
                format!("a {} cursor cannot page {}", after.set(), query.set).into(),
            ));
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

    pub(super) async fn replace(
        &self,
        set: KeySet,
        items: &[Replacement],
    ) -> Result<u64, RotationStoreError> {
        if items.is_empty() {
            return Ok(0);
        }
        if let Some(bad) = items.iter().find(|i| i.row.set() != set) {
            return Err(RotationStoreError::Storage(
                format!("{} is not in {set}", bad.row).into(),
            ));
        }
        D::replace_batch(&self.pool, set, items).await
    }

    pub(super) async fn count_by_kek_version(
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

    pub(super) async fn insert_job(&self, job: &RotationJob) -> Result<(), RotationStoreError> {
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

    pub(super) async fn update_job(&self, job: &RotationJob) -> Result<(), RotationStoreError> {
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
            return Err(RotationStoreError::Storage(
                format!("rotation {} is not recorded", job.id).into(),
            ));
        }
        Ok(())
    }

    pub(super) async fn open_job(&self) -> Result<Option<RotationJob>, RotationStoreError> {
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

    pub(super) async fn jobs(&self, limit: u32) -> Result<Vec<RotationJob>, RotationStoreError> {
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

    pub(super) async fn try_lock(
        &self,
        name: &str,
    ) -> Result<Option<JobLease>, RotationStoreError> {
        D::lock(&self.pool, name).await
    }

    pub(super) async fn data_keys_due(
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

/// The public store type `$store` for one dialect: a thin shell that implements
/// [`RotationStore`](coffer_rotation::RotationStore) by calling its [`Rotation`].
macro_rules! rotation_store {
    ($store:ident, dialect = $D:ty, pool = $Pool:ty, db = $db:literal) => {
        #[doc = concat!("The rotation store on ", $db, " (see the module documentation).")]
        #[derive(Clone)]
        pub struct $store(super::Rotation<$D>);

        coffer_macros::debug_non_exhaustive!(self => $store {});

        impl $store {
            /// A store on `pool` (migrated).
            #[must_use]
            pub fn new(pool: $Pool) -> Self {
                Self(super::Rotation::new(pool))
            }
        }

        #[async_trait::async_trait]
        impl coffer_rotation::RotationStore for $store {
            async fn keys(
                &self,
                query: &coffer_rotation::KeyQuery,
            ) -> Result<Vec<coffer_rotation::StoredKey>, coffer_rotation::RotationStoreError> {
                self.0.keys(query).await
            }

            async fn replace(
                &self,
                set: coffer_rotation::KeySet,
                items: &[coffer_rotation::Replacement],
            ) -> Result<u64, coffer_rotation::RotationStoreError> {
                self.0.replace(set, items).await
            }

            async fn count_by_kek_version(
                &self,
                set: coffer_rotation::KeySet,
            ) -> Result<std::collections::BTreeMap<u32, u64>, coffer_rotation::RotationStoreError>
            {
                self.0.count_by_kek_version(set).await
            }

            async fn insert_job(
                &self,
                job: &coffer_rotation::RotationJob,
            ) -> Result<(), coffer_rotation::RotationStoreError> {
                self.0.insert_job(job).await
            }

            async fn update_job(
                &self,
                job: &coffer_rotation::RotationJob,
            ) -> Result<(), coffer_rotation::RotationStoreError> {
                self.0.update_job(job).await
            }

            async fn open_job(
                &self,
            ) -> Result<Option<coffer_rotation::RotationJob>, coffer_rotation::RotationStoreError>
            {
                self.0.open_job().await
            }

            async fn jobs(
                &self,
                limit: u32,
            ) -> Result<Vec<coffer_rotation::RotationJob>, coffer_rotation::RotationStoreError>
            {
                self.0.jobs(limit).await
            }

            async fn try_lock(
                &self,
                name: &str,
            ) -> Result<Option<coffer_rotation::JobLease>, coffer_rotation::RotationStoreError>
            {
                self.0.try_lock(name).await
            }

            async fn data_keys_due(
                &self,
                owner: coffer_rotation::DataKeyOwner,
                created_before_micros: i64,
                after: Option<uuid::Uuid>,
                limit: u32,
            ) -> Result<Vec<uuid::Uuid>, coffer_rotation::RotationStoreError> {
                self.0
                    .data_keys_due(owner, created_before_micros, after, limit)
                    .await
            }
        }
    };
}

use rotation_store;
