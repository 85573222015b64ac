//! The secrets manager's store on Postgres and SQLite: one body of SQL for both, [`Secrets`],
//! generic over the database's [`Dialect`] (of which the store only uses how a write
//! transaction begins: SQLite takes the write lock up front with `BEGIN IMMEDIATE`). The public store types
//! ([`PgSecretStore`] in [`pg`], [`SqliteSecretStore`] in [`sqlite`]) are thin shells around
//! `Secrets<dialect>`, made by [`secret_store!`]. A rotation deactivates the version the caller
//! saw active and inserts the next in one transaction; the unique index on the active version
//! makes two rotations from the same version impossible to both commit.

use std::collections::BTreeMap;

use coffer_secrets::{RotationPolicy, SecretMeta, SecretName, SecretRecord, SecretStoreError};
use sqlx::{Database, Decode, Encode, Executor, IntoArguments, Pool, Row, Type};

use crate::db::{DbFailure, DbFailureKind};
use crate::dialect::{Conn, Dialect};

mod pg;
mod sqlite;

pub use pg::PgSecretStore;
pub use sqlite::SqliteSecretStore;

impl From<DbFailure> for SecretStoreError {
    fn from(f: DbFailure) -> Self {
        match f.kind() {
            DbFailureKind::Unavailable => Self::Unavailable(f.into_source().into()),
            DbFailureKind::Corrupt => Self::Corrupt(f.into_source().into()),
            DbFailureKind::Conflict(_) | DbFailureKind::Storage => {
                Self::Storage(f.into_source().into())
            }
        }
    }
}

fn db_err(e: sqlx::Error) -> SecretStoreError {
    DbFailure::from(e).into()
}

fn corrupt(what: &str) -> SecretStoreError {
    SecretStoreError::Corrupt(what.into())
}

const COLUMNS: &str = "name, version, active, created_at, expires_at, rotation_days, tags, \
     wrapped_key, kek_version, sealed";

/// The row's values in `COLUMNS` order, for binding.
struct Values {
    name: String,
    version: i64,
    active: bool,
    created_at: i64,
    expires_at: Option<i64>,
    rotation_days: Option<i64>,
    tags: String,
    wrapped_key: Vec<u8>,
    kek_version: i64,
    sealed: Vec<u8>,
}

fn i64_of(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn values(r: &SecretRecord, active: bool) -> Result<Values, SecretStoreError> {
    let m = &r.meta;
    Ok(Values {
        name: m.name.as_str().to_owned(),
        version: i64::from(m.version),
        active,
        created_at: i64_of(m.created_at),
        expires_at: m.expires_at.map(i64_of),
        rotation_days: match m.rotation {
            RotationPolicy::Manual => None,
            RotationPolicy::EveryDays(d) => Some(i64::from(d)),
        },
        tags: serde_json::to_string(&m.tags).map_err(|e| SecretStoreError::Storage(e.into()))?,
        wrapped_key: r.wrapped_key.clone(),
        kek_version: i64::from(r.kek_version),
        sealed: r.sealed.clone(),
    })
}

fn meta_from<R: Row>(row: &R) -> Result<SecretMeta, SecretStoreError>
where
    for<'c> &'c str: sqlx::ColumnIndex<R>,
    for<'c> String: sqlx::Decode<'c, R::Database> + sqlx::Type<R::Database>,
    for<'c> i64: sqlx::Decode<'c, R::Database> + sqlx::Type<R::Database>,
    for<'c> bool: sqlx::Decode<'c, R::Database> + sqlx::Type<R::Database>,
{
    let get_u32 = |col: &str| -> Result<u32, SecretStoreError> {
        let v: i64 = row.try_get(col).map_err(db_err)?;
        u32::try_from(v).map_err(|_| corrupt(col))
    };
    let get_u64 = |v: i64, col: &str| u64::try_from(v).map_err(|_| corrupt(col));
    let name: String = row.try_get("name").map_err(db_err)?;
    let tags: String = row.try_get("tags").map_err(db_err)?;
    let expires_at: Option<i64> = row.try_get("expires_at").map_err(db_err)?;
    let rotation_days: Option<i64> = row.try_get("rotation_days").map_err(db_err)?;
    Ok(SecretMeta {
        name: SecretName::parse(&name).map_err(|_| corrupt("name"))?,
        version: get_u32("version")?,
        active: row.try_get("active").map_err(db_err)?,
        created_at: get_u64(row.try_get("created_at").map_err(db_err)?, "created_at")?,
        expires_at: expires_at.map(|v| get_u64(v, "expires_at")).transpose()?,
        rotation: match rotation_days {
            None => RotationPolicy::Manual,
            Some(d) => {
                RotationPolicy::EveryDays(u32::try_from(d).map_err(|_| corrupt("rotation_days"))?)
            }
        },
        tags: serde_json::from_str::<BTreeMap<String, String>>(&tags)
            .map_err(|_| corrupt("tags"))?,
    })
}

fn record_from<R: Row>(row: &R) -> Result<SecretRecord, SecretStoreError>
where
    for<'c> &'c str: sqlx::ColumnIndex<R>,
    for<'c> String: sqlx::Decode<'c, R::Database> + sqlx::Type<R::Database>,
    for<'c> i64: sqlx::Decode<'c, R::Database> + sqlx::Type<R::Database>,
    for<'c> bool: sqlx::Decode<'c, R::Database> + sqlx::Type<R::Database>,
    for<'c> Vec<u8>: sqlx::Decode<'c, R::Database> + sqlx::Type<R::Database>,
{
    let kek: i64 = row.try_get("kek_version").map_err(db_err)?;
    Ok(SecretRecord {
        meta: meta_from(row)?,
        wrapped_key: row.try_get("wrapped_key").map_err(db_err)?,
        kek_version: u32::try_from(kek).map_err(|_| corrupt("kek_version"))?,
        sealed: row.try_get("sealed").map_err(db_err)?,
    })
}

/// The secrets store on the database of `D`.
pub(super) struct Secrets<D: Dialect> {
    pool: Pool<D::Db>,
}

impl<D: Dialect> Clone for Secrets<D> {
    fn clone(&self) -> Self {
        Self {
            pool: self.pool.clone(),
        }
    }
}

/// What the statements need of a database: sqlx's executor and argument traits, and the types
/// they bind and read. Postgres and SQLite both have them all.
impl<D: Dialect> Secrets<D>
where
    for<'c> &'c mut Conn<D>: Executor<'c, Database = D::Db>,
    for<'q> <D::Db as Database>::Arguments<'q>: IntoArguments<'q, D::Db>,
    for<'q> i64: Encode<'q, D::Db> + Type<D::Db> + Decode<'q, D::Db>,
    for<'q> Option<i64>: Encode<'q, D::Db>,
    for<'q> bool: Encode<'q, D::Db> + Type<D::Db> + Decode<'q, D::Db>,
    for<'q> String: Encode<'q, D::Db> + Type<D::Db> + Decode<'q, D::Db>,
    for<'q> Vec<u8>: Encode<'q, D::Db> + Type<D::Db> + Decode<'q, D::Db>,
    for<'q> &'q str: Encode<'q, D::Db> + Type<D::Db> + sqlx::ColumnIndex<<D::Db as Database>::Row>,
    for<'q> &'q [u8]: Encode<'q, D::Db> + Type<D::Db>,
    usize: sqlx::ColumnIndex<<D::Db as Database>::Row>,
{
    /// A store on `pool` (migrated).
    pub(super) fn new(pool: Pool<D::Db>) -> Self {
        Self { pool }
    }

    async fn insert(conn: &mut Conn<D>, v: &Values) -> Result<(), DbFailure> {
        sqlx::query(&format!(
            "INSERT INTO secrets ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
        ))
        .bind(&v.name)
        .bind(v.version)
        .bind(v.active)
        .bind(v.created_at)
        .bind(v.expires_at)
        .bind(v.rotation_days)
        .bind(&v.tags)
        .bind(&v.wrapped_key)
        .bind(v.kek_version)
        .bind(&v.sealed)
        .execute(conn)
        .await
        .map(drop)
        .map_err(DbFailure::from)
    }

    pub(super) async fn insert_first(&self, record: &SecretRecord) -> Result<(), SecretStoreError> {
        let v = values(record, true)?;
        let mut conn = self.pool.acquire().await.map_err(db_err)?;
        match Self::insert(&mut conn, &v).await {
            Err(f) if f.is_unique() => Err(SecretStoreError::Exists(record.meta.name.clone())),
            other => other.map_err(SecretStoreError::from),
        }
    }

    pub(super) async fn rotate(
        &self,
        expected_active: u32,
        record: &SecretRecord,
    ) -> Result<(), SecretStoreError> {
        let name = &record.meta.name;
        let v = values(record, true)?;
        let mut tx = D::begin(&self.pool).await.map_err(db_err)?;
        let moved = sqlx::query(
            "UPDATE secrets SET active = $3 WHERE name = $1 AND version = $2 AND active",
        )
        .bind(name.as_str())
        .bind(i64::from(expected_active))
        .bind(false)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        if D::rows_affected(&moved) != 1 {
            let exists: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM secrets WHERE name = $1")
                .bind(name.as_str())
                .fetch_one(&mut *tx)
                .await
                .map_err(db_err)?;
            return Err(if exists == 0 {
                SecretStoreError::NotFound(name.clone())
            } else {
                SecretStoreError::Conflict {
                    name: name.clone(),
                    expected: expected_active,
                }
            });
        }
        match Self::insert(&mut tx, &v).await {
            // The version exists (restored, or inserted by a rotation that won).
            Err(f) if f.is_unique() => {
                return Err(SecretStoreError::Conflict {
                    name: name.clone(),
                    expected: expected_active,
                });
            }
            other => other.map_err(SecretStoreError::from)?,
        }
        tx.commit().await.map_err(db_err)
    }

    pub(super) async fn get(
        &self,
        name: &SecretName,
        version: Option<u32>,
    ) -> Result<Option<SecretRecord>, SecretStoreError> {
        let row = match version {
            None => {
                sqlx::query(&format!(
                    "SELECT {COLUMNS} FROM secrets WHERE name = $1 AND active"
                ))
                .bind(name.as_str())
                .fetch_optional(&self.pool)
                .await
            }
            Some(v) => {
                sqlx::query(&format!(
                    "SELECT {COLUMNS} FROM secrets WHERE name = $1 AND version = $2"
                ))
                .bind(name.as_str())
                .bind(i64::from(v))
                .fetch_optional(&self.pool)
                .await
            }
        }
        .map_err(db_err)?;
        row.as_ref().map(record_from).transpose()
    }

    pub(super) async fn list(&self) -> Result<Vec<SecretMeta>, SecretStoreError> {
        sqlx::query(
            "SELECT name, version, active, created_at, expires_at, rotation_days, tags \
             FROM secrets ORDER BY name, version",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?
        .iter()
        .map(meta_from)
        .collect()
    }

    pub(super) async fn export(&self) -> Result<Vec<SecretRecord>, SecretStoreError> {
        sqlx::query(&format!(
            "SELECT {COLUMNS} FROM secrets ORDER BY name, version"
        ))
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?
        .iter()
        .map(record_from)
        .collect()
    }

    pub(super) async fn restore(&self, record: &SecretRecord) -> Result<bool, SecretStoreError> {
        let mut tx = D::begin(&self.pool).await.map_err(db_err)?;
        let present: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM secrets WHERE name = $1 AND version = $2")
                .bind(record.meta.name.as_str())
                .bind(i64::from(record.meta.version))
                .fetch_one(&mut *tx)
                .await
                .map_err(db_err)?;
        if present > 0 {
            return Ok(false);
        }
        let other_active: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM secrets WHERE name = $1 AND active")
                .bind(record.meta.name.as_str())
                .fetch_one(&mut *tx)
                .await
                .map_err(db_err)?;
        let v = values(record, record.meta.active && other_active == 0)?;
        match Self::insert(&mut tx, &v).await {
            // Another process restored or activated a version meanwhile (Postgres; SQLite's
            // write transactions do not interleave): say so rather than count it skipped.
            // Restoring again is harmless.
            Err(f) if f.is_unique() => {
                return Err(SecretStoreError::Conflict {
                    name: record.meta.name.clone(),
                    expected: record.meta.version,
                });
            }
            other => other.map_err(SecretStoreError::from)?,
        }
        tx.commit().await.map_err(db_err)?;
        Ok(true)
    }

    pub(super) async fn rewrap(
        &self,
        name: &SecretName,
        version: u32,
        wrapped_key: &[u8],
        kek_version: u32,
    ) -> Result<(), SecretStoreError> {
        let done = sqlx::query(
            "UPDATE secrets SET wrapped_key = $3, kek_version = $4 \
             WHERE name = $1 AND version = $2",
        )
        .bind(name.as_str())
        .bind(i64::from(version))
        .bind(wrapped_key)
        .bind(i64::from(kek_version))
        .execute(&self.pool)
        .await
        .map_err(db_err)?;
        if D::rows_affected(&done) == 1 {
            Ok(())
        } else {
            Err(SecretStoreError::NotFound(name.clone()))
        }
    }
}

/// The public store type `$store` for one dialect: a thin shell that implements
/// [`SecretStore`](coffer_secrets::SecretStore) by calling its [`Secrets`].
macro_rules! secret_store {
    ($store:ident, dialect = $D:ty, pool = $Pool:ty, db = $db:literal) => {
        #[doc = concat!("The secrets manager's store on ", $db, " (see the module documentation).")]
        #[derive(Clone)]
        pub struct $store(super::Secrets<$D>);

        coffer_macros::debug_non_exhaustive!(self => $store {});

        impl $store {
            /// A store on `pool` (migrated).
            #[must_use]
            pub fn new(pool: $Pool) -> Self {
                Self(super::Secrets::new(pool))
            }
        }

        #[async_trait::async_trait]
        impl coffer_secrets::SecretStore for $store {
            async fn insert_first(
                &self,
                record: &coffer_secrets::SecretRecord,
            ) -> Result<(), coffer_secrets::SecretStoreError> {
                self.0.insert_first(record).await
            }

            async fn rotate(
                &self,
                expected_active: u32,
                record: &coffer_secrets::SecretRecord,
            ) -> Result<(), coffer_secrets::SecretStoreError> {
                self.0.rotate(expected_active, record).await
            }

            async fn get(
                &self,
                name: &coffer_secrets::SecretName,
                version: Option<u32>,
            ) -> Result<Option<coffer_secrets::SecretRecord>, coffer_secrets::SecretStoreError>
            {
                self.0.get(name, version).await
            }

            async fn list(
                &self,
            ) -> Result<Vec<coffer_secrets::SecretMeta>, coffer_secrets::SecretStoreError> {
                self.0.list().await
            }

            async fn export(
                &self,
            ) -> Result<Vec<coffer_secrets::SecretRecord>, coffer_secrets::SecretStoreError> {
                self.0.export().await
            }

            async fn restore(
                &self,
                record: &coffer_secrets::SecretRecord,
            ) -> Result<bool, coffer_secrets::SecretStoreError> {
                self.0.restore(record).await
            }

            async fn rewrap(
                &self,
                name: &coffer_secrets::SecretName,
                version: u32,
                wrapped_key: &[u8],
                kek_version: u32,
            ) -> Result<(), coffer_secrets::SecretStoreError> {
                self.0.rewrap(name, version, wrapped_key, kek_version).await
            }
        }
    };
}

use secret_store;
