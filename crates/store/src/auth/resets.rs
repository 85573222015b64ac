//! Password resets: at most one pending per user (issuing upserts on the user's row, so a new
//! reset replaces the pending one), found by the token's hash. Redeeming deletes the pending row
//! (only while it is the one presented and unexpired: of two redemptions at once, one deletes
//! it and the other changes nothing), sets the password hash and revokes every refresh family of
//! the user, with the audit record, in one transaction. The worker's cleanup deletes the resets
//! that expired.

use coffer_auth::opaque::TokenHash;
use coffer_auth::reset::ResetRecord;
use coffer_auth::store::UserStoreError;
use sqlx::{ColumnIndex, Database, Decode, Encode, Executor, IntoArguments, Type};
use uuid::Uuid;

use super::rows::{RESET_COLUMNS, db_err, i64_of, reset_from};
use super::{AuthDialect, Conn, UserStoreOn, audit_err};

impl<D: AuthDialect> UserStoreOn<D>
where
    for<'c> &'c mut Conn<D>: Executor<'c, Database = D::Db>,
    for<'q> <D::Db as Database>::Arguments<'q>: IntoArguments<'q, D::Db>,
    for<'q> Uuid: Encode<'q, D::Db> + Type<D::Db> + Decode<'q, D::Db>,
    for<'q> i64: Encode<'q, D::Db> + Type<D::Db> + Decode<'q, D::Db>,
    for<'q> bool: Encode<'q, D::Db> + Type<D::Db> + Decode<'q, D::Db>,
    for<'q> String: Encode<'q, D::Db> + Type<D::Db> + Decode<'q, D::Db>,
    for<'q> Vec<u8>: Encode<'q, D::Db> + Type<D::Db> + Decode<'q, D::Db>,
    for<'q> Option<i64>: Encode<'q, D::Db>,
    for<'q> Option<Vec<u8>>: Encode<'q, D::Db>,
    for<'q> &'q str: Encode<'q, D::Db> + Type<D::Db> + ColumnIndex<<D::Db as Database>::Row>,
    usize: ColumnIndex<<D::Db as Database>::Row>,
{
    pub(in crate::auth) async fn issue_password_reset(
        store: &Self,
        reset: &ResetRecord,
        audit: &coffer_audit::AuditEvent,
    ) -> Result<Option<coffer_audit::Receipt>, UserStoreError> {
        let mut tx = D::begin(&store.pool).await.map_err(db_err)?;
        // `WHERE EXISTS` also settles SQLite's parse of an upsert from a SELECT.
        let done = sqlx::query(
            "INSERT INTO password_resets (user_id, token_hash, issued_by, expires_at) \
             SELECT $1, $2, $3, $4 WHERE EXISTS (SELECT 1 FROM users WHERE id = $1 AND erased_at IS NULL) \
             ON CONFLICT (user_id) DO UPDATE SET token_hash = excluded.token_hash, \
             issued_by = excluded.issued_by, expires_at = excluded.expires_at",
        )
        .bind(*reset.user.as_uuid())
        .bind(reset.hash.0.to_vec())
        .bind(*reset.issued_by.as_uuid())
        .bind(i64_of(reset.expires_at))
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

    pub(in crate::auth) async fn password_reset(
        store: &Self,
        hash: &TokenHash,
    ) -> Result<Option<ResetRecord>, UserStoreError> {
        let sql = format!("SELECT {RESET_COLUMNS} FROM password_resets WHERE token_hash = $1");
        sqlx::query(&sql)
            .bind(hash.0.to_vec())
            .fetch_optional(&store.pool)
            .await
            .map_err(db_err)?
            .as_ref()
            .map(reset_from)
            .transpose()
    }

    pub(in crate::auth) async fn redeem_password_reset(
        store: &Self,
        reset: &ResetRecord,
        new_hash: &str,
        now: u64,
        audit: &coffer_audit::AuditEvent,
    ) -> Result<Option<coffer_audit::Receipt>, UserStoreError> {
        let user = *reset.user.as_uuid();
        let mut tx = D::begin(&store.pool).await.map_err(db_err)?;
        let gone = sqlx::query(
            "DELETE FROM password_resets \
             WHERE token_hash = $1 AND user_id = $2 AND expires_at > $3",
        )
        .bind(reset.hash.0.to_vec())
        .bind(user)
        .bind(i64_of(now))
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        if D::rows_affected(&gone) == 0 {
            return Ok(None);
        }
        sqlx::query("UPDATE users SET password_hash = $2, updated_at = $3 WHERE id = $1")
            .bind(user)
            .bind(new_hash)
            .bind(store.clock.unix_micros())
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        Self::revoke_live(&mut tx, "user_id = $1", &[user]).await?;
        let receipt = D::append_audit(&store.audit, &mut tx, audit)
            .await
            .map_err(audit_err)?;
        tx.commit().await.map_err(db_err)?;
        Ok(Some(receipt))
    }

    pub(in crate::auth) async fn purge_password_resets(
        store: &Self,
        now: u64,
    ) -> Result<u64, UserStoreError> {
        let done = sqlx::query("DELETE FROM password_resets WHERE expires_at <= $1")
            .bind(i64_of(now))
            .execute(&store.pool)
            .await
            .map_err(db_err)?;
        Ok(D::rows_affected(&done))
    }
}
