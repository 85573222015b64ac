//! The rotation store on SQLite ([`SqliteRotationStore`]) and its [`RotationDialect`] steps:
//! a batch of replacements is one `UPDATE` a row in one transaction; a job's lock is an
//! exclusive `flock` on a file next to the database.

use coffer_rotation::{JobLease, KeySet, Replacement, RotationStoreError};
use sqlx::sqlite::SqlitePool;

use crate::dialect::Sqlite;

use super::{Owner, RotationDialect, db_err, owner_of, rotation_store, table};

rotation_store!(
    SqliteRotationStore,
    dialect = Sqlite,
    pool = SqlitePool,
    db = "SQLite"
);

impl RotationDialect for Sqlite {
    async fn replace_batch(
        pool: &SqlitePool,
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
        let mut tx = pool.begin().await.map_err(db_err)?;
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
    async fn lock(pool: &SqlitePool, name: &str) -> Result<Option<JobLease>, RotationStoreError> {
        if !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(RotationStoreError::Storage(
                format!("lock name {name:?} is not [A-Za-z0-9_-]").into(),
            ));
        }
        let file: String =
            sqlx::query_scalar("SELECT file FROM pragma_database_list WHERE name = 'main'")
                .fetch_one(pool)
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
            .map_err(|e| RotationStoreError::Unavailable(format!("{path}: {e}").into()))?;
        match opened.try_lock() {
            Ok(()) => Ok(Some(JobLease::new(opened))),
            Err(std::fs::TryLockError::WouldBlock) => Ok(None),
            Err(std::fs::TryLockError::Error(e)) => Err(RotationStoreError::Unavailable(
                format!("{path}: {e}").into(),
            )),
        }
    }
}
