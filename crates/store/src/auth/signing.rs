//! The token signing keys' index and the service secrets.
//!
//! A `signing_keys` row indexes a key (kid, created, retired, dropped); a row written before the
//! secrets manager also holds the key, sealed. At most one key is current, which the schema
//! enforces with a unique index: adding a key retires the current one in the same transaction,
//! and of two processes adding one at once (several replicas' first start, or rotations) the one
//! that meets the other's key on that index adds nothing and reports it, so the caller loads the
//! winner's. A dropped key (a leaked one) is never loaded again; only a retired key can be
//! dropped. `service_secrets` holds the wrapped service secrets of databases from before the
//! secrets manager; an insert never replaces one.

use coffer_auth::store::{StoredSigningKey, UserStoreError};
use sqlx::{ColumnIndex, Database, Decode, Encode, Executor, IntoArguments, Type};

use crate::db::DbFailure;

use super::rows::{db_err, i64_of, signing_key_from};
use super::{AuthDialect, Conn, UserStoreOn};

impl<D: AuthDialect> UserStoreOn<D>
where
    for<'c> &'c mut Conn<D>: Executor<'c, Database = D::Db>,
    for<'q> <D::Db as Database>::Arguments<'q>: IntoArguments<'q, D::Db>,
    for<'q> i64: Encode<'q, D::Db> + Type<D::Db> + Decode<'q, D::Db>,
    for<'q> String: Encode<'q, D::Db> + Type<D::Db> + Decode<'q, D::Db>,
    for<'q> Vec<u8>: Encode<'q, D::Db> + Type<D::Db> + Decode<'q, D::Db>,
    for<'q> Option<Vec<u8>>: Encode<'q, D::Db>,
    for<'q> &'q str: Encode<'q, D::Db> + Type<D::Db> + ColumnIndex<<D::Db as Database>::Row>,
    for<'q> &'q [u8]: Encode<'q, D::Db> + Type<D::Db>,
    usize: ColumnIndex<<D::Db as Database>::Row>,
{
    pub(in crate::auth) async fn signing_keys(
        store: &Self,
    ) -> Result<Vec<StoredSigningKey>, UserStoreError> {
        sqlx::query(
            "SELECT kid, wrapped_dek, kek_version, sealed, created_at, retired_at \
             FROM signing_keys WHERE dropped_at IS NULL ORDER BY created_at, kid",
        )
        .fetch_all(&store.pool)
        .await
        .map_err(db_err)?
        .iter()
        .map(signing_key_from)
        .collect()
    }

    pub(in crate::auth) async fn add_signing_key(
        store: &Self,
        key: &StoredSigningKey,
        only_if_none: bool,
    ) -> Result<bool, UserStoreError> {
        let mut tx = D::begin(&store.pool).await.map_err(db_err)?;
        let current: Vec<String> =
            sqlx::query_scalar("SELECT kid FROM signing_keys WHERE retired_at IS NULL")
                .fetch_all(&mut *tx)
                .await
                .map_err(db_err)?;
        if only_if_none && !current.is_empty() {
            return Ok(false);
        }
        sqlx::query("UPDATE signing_keys SET retired_at = $1 WHERE retired_at IS NULL")
            .bind(i64_of(key.created_at))
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        let inserted = sqlx::query(
            "INSERT INTO signing_keys (kid, wrapped_dek, kek_version, sealed, created_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&key.kid)
        .bind(&key.wrapped_dek)
        .bind(i64::from(key.kek_version))
        .bind(&key.sealed)
        .bind(i64_of(key.created_at))
        .execute(&mut *tx)
        .await
        .map_err(DbFailure::from);
        match inserted {
            // Another process made a key current meanwhile.
            Err(f) if f.is_unique() => Ok(false),
            Err(f) => Err(f.into()),
            Ok(_) => {
                tx.commit().await.map_err(db_err)?;
                Ok(true)
            }
        }
    }

    pub(in crate::auth) async fn drop_signing_key(
        store: &Self,
        kid: &str,
        at: u64,
    ) -> Result<bool, UserStoreError> {
        let done = sqlx::query(
            "UPDATE signing_keys SET dropped_at = $2 \
             WHERE kid = $1 AND retired_at IS NOT NULL AND dropped_at IS NULL",
        )
        .bind(kid)
        .bind(i64_of(at))
        .execute(&store.pool)
        .await
        .map_err(db_err)?;
        Ok(D::rows_affected(&done) == 1)
    }

    pub(in crate::auth) async fn secret(
        store: &Self,
        purpose: &str,
    ) -> Result<Option<Vec<u8>>, UserStoreError> {
        sqlx::query_scalar("SELECT wrapped FROM service_secrets WHERE purpose = $1")
            .bind(purpose)
            .fetch_optional(&store.pool)
            .await
            .map_err(db_err)
    }

    pub(in crate::auth) async fn insert_secret(
        store: &Self,
        purpose: &str,
        wrapped: &[u8],
        kek_version: u32,
    ) -> Result<(), UserStoreError> {
        sqlx::query(
            "INSERT INTO service_secrets (purpose, wrapped, kek_version, created_at) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (purpose) DO NOTHING",
        )
        .bind(purpose)
        .bind(wrapped)
        .bind(i64::from(kek_version))
        .bind(store.clock.unix_micros())
        .execute(&store.pool)
        .await
        .map_err(db_err)?;
        Ok(())
    }
}
