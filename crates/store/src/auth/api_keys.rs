//! API keys: one row per key, found by its secret's hash (unique) or its id; the owner's roles
//! are joined in on the hash lookup, so a request's check is one statement. Revoking sets
//! `revoked_at` once, with the audit record; rows are never deleted (a revoked key stays
//! listed, and its id keeps naming it in audit records).

use coffer_auth::api_key::{ApiKeyId, ApiKeyOwner, ApiKeyRecord};
use coffer_auth::opaque::TokenHash;
use coffer_auth::store::UserStoreError;
use coffer_auth::user::UserId;
use sqlx::{ColumnIndex, Database, Decode, Encode, Executor, IntoArguments, Row, Type};
use uuid::Uuid;

use super::rows::{API_KEY_COLUMNS, api_key_from, corrupt, db_err, i64_of};
use super::{AuthDialect, Conn, UserStoreOn, audit_err};

impl<D: AuthDialect> UserStoreOn<D>
where
    for<'c> &'c mut Conn<D>: Executor<'c, Database = D::Db>,
    for<'q> <D::Db as Database>::Arguments<'q>: IntoArguments<'q, D::Db>,
    for<'q> Uuid: Encode<'q, D::Db> + Type<D::Db> + Decode<'q, D::Db>,
    for<'q> i64: Encode<'q, D::Db> + Type<D::Db> + Decode<'q, D::Db>,
    for<'q> String: Encode<'q, D::Db> + Type<D::Db> + Decode<'q, D::Db>,
    for<'q> Vec<u8>: Encode<'q, D::Db> + Type<D::Db> + Decode<'q, D::Db>,
    for<'q> Option<i64>: Encode<'q, D::Db>,
    for<'q> Option<Uuid>: Encode<'q, D::Db>,
    for<'q> &'q str: Encode<'q, D::Db> + Type<D::Db> + ColumnIndex<<D::Db as Database>::Row>,
    usize: ColumnIndex<<D::Db as Database>::Row>,
{
    pub(in crate::auth) async fn create_api_key(
        store: &Self,
        key: &ApiKeyRecord,
        audit: &coffer_audit::AuditEvent,
    ) -> Result<Option<coffer_audit::Receipt>, UserStoreError> {
        let permissions: Vec<&str> = key.permissions.iter().map(|p| p.as_str()).collect();
        let permissions =
            serde_json::to_string(&permissions).map_err(|e| UserStoreError::Storage(e.into()))?;
        let mut tx = D::begin(&store.pool).await.map_err(db_err)?;
        let done = sqlx::query(
            "INSERT INTO api_keys (id, user_id, name, token_hash, permissions, rate_per_minute, \
             created_by, created_at, expires_at, revoked_at) \
             SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, NULL \
             WHERE EXISTS (SELECT 1 FROM users WHERE id = $2 AND erased_at IS NULL)",
        )
        .bind(*key.id.as_uuid())
        .bind(*key.user.as_uuid())
        .bind(key.name.as_str())
        .bind(key.hash.0.to_vec())
        .bind(permissions)
        .bind(key.rate_per_minute.map(i64::from))
        .bind(*key.created_by.as_uuid())
        .bind(i64_of(key.created_at))
        .bind(i64_of(key.expires_at))
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        if D::rows_affected(&done) == 0 {
            return Ok(None);
        }
        let receipt = D::append_audit(&store.audit, &mut tx, audit)
            .await
            .map_err(audit_err)?;
        tx.commit().await.map_err(db_err)?;
        Ok(Some(receipt))
    }

    pub(in crate::auth) async fn api_key_by_hash(
        store: &Self,
        hash: &TokenHash,
    ) -> Result<Option<ApiKeyOwner>, UserStoreError> {
        // The owner's roles beside the key: one statement per request.
        let sql = format!(
            "SELECT {API_KEY_COLUMNS}, \
             (SELECT roles FROM users WHERE users.id = api_keys.user_id) AS owner_roles \
             FROM api_keys WHERE token_hash = $1"
        );
        let Some(row) = sqlx::query(&sql)
            .bind(hash.0.to_vec())
            .fetch_optional(&store.pool)
            .await
            .map_err(db_err)?
        else {
            return Ok(None);
        };
        let roles: String = row.try_get("owner_roles").map_err(db_err)?;
        Ok(Some(ApiKeyOwner {
            key: api_key_from(&row)?,
            roles: serde_json::from_str(&roles).map_err(|_| corrupt("roles"))?,
        }))
    }

    pub(in crate::auth) async fn api_key(
        store: &Self,
        id: ApiKeyId,
    ) -> Result<Option<ApiKeyRecord>, UserStoreError> {
        let sql = format!("SELECT {API_KEY_COLUMNS} FROM api_keys WHERE id = $1");
        sqlx::query(&sql)
            .bind(*id.as_uuid())
            .fetch_optional(&store.pool)
            .await
            .map_err(db_err)?
            .as_ref()
            .map(api_key_from)
            .transpose()
    }

    pub(in crate::auth) async fn api_keys(
        store: &Self,
        user: Option<UserId>,
        after: Option<ApiKeyId>,
        limit: u32,
    ) -> Result<Vec<ApiKeyRecord>, UserStoreError> {
        let sql = format!(
            "SELECT {API_KEY_COLUMNS} FROM api_keys \
             WHERE ($1 IS NULL OR user_id = $1) AND ($2 IS NULL OR id > $2) \
             ORDER BY id LIMIT $3"
        );
        sqlx::query(&sql)
            .bind(user.map(|u| *u.as_uuid()))
            .bind(after.map(|a| *a.as_uuid()))
            .bind(i64::from(limit))
            .fetch_all(&store.pool)
            .await
            .map_err(db_err)?
            .iter()
            .map(api_key_from)
            .collect()
    }

    pub(in crate::auth) async fn revoke_api_key(
        store: &Self,
        id: ApiKeyId,
        at: u64,
        audit: &coffer_audit::AuditEvent,
    ) -> Result<Option<coffer_audit::Receipt>, UserStoreError> {
        let mut tx = D::begin(&store.pool).await.map_err(db_err)?;
        let done =
            sqlx::query("UPDATE api_keys SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL")
                .bind(*id.as_uuid())
                .bind(i64_of(at))
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
        if D::rows_affected(&done) == 0 {
            return Ok(None);
        }
        let receipt = D::append_audit(&store.audit, &mut tx, audit)
            .await
            .map_err(audit_err)?;
        tx.commit().await.map_err(db_err)?;
        Ok(Some(receipt))
    }
}
