//! The user store's and the revocation list's steps on SQLite beyond the common
//! [`Dialect`](crate::dialect::Dialect) (`BEGIN IMMEDIATE`): revocations are not announced
//! (there is no other process to tell but through the database), and an erasure runs the
//! statements of Postgres's `coffer_erase_user` inline.

use coffer_auth::store::UserStoreError;
use sha2::{Digest, Sha256};
use sqlx::SqliteConnection;
use uuid::Uuid;

use super::AuthDialect;
use super::rows::db_err;
use crate::dialect::Sqlite;

impl AuthDialect for Sqlite {
    const ANNOUNCE: bool = false;
    // Its transactions begin IMMEDIATE: one writer at a time already.
    const SERIALIZE_ROLE_CHANGES: Option<&'static str> = None;

    async fn erase_user_rows(
        conn: &mut SqliteConnection,
        id: Uuid,
        at: i64,
        idempotency_key: &str,
        reason: &str,
    ) -> Result<bool, UserStoreError> {
        // What Postgres's `coffer_erase_user` (migration 0010) does.
        let pending: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM wallets WHERE owner_id = $1 AND erased_at IS NULL",
        )
        .bind(id)
        .fetch_one(&mut *conn)
        .await
        .map_err(db_err)?;
        if pending > 0 {
            return Err(UserStoreError::WalletsRemain);
        }
        let index = Sha256::digest(format!("coffer.erased:{id}").as_bytes()).to_vec();
        let done = sqlx::query(
            "UPDATE users SET email_index = $2, phone = NULL, tax_id = NULL, totp = NULL, \
             totp_confirmed = 0, password_hash = '', roles = '[]', updated_at = $3, \
             erased_at = COALESCE(erased_at, $3), erasure_key = COALESCE(erasure_key, $4), \
             erasure_reason = COALESCE(erasure_reason, $5) WHERE id = $1",
        )
        .bind(id)
        .bind(index)
        .bind(at)
        .bind(idempotency_key)
        .bind(reason)
        .execute(&mut *conn)
        .await
        .map_err(db_err)?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        for table in ["user_keys", "password_resets", "refresh_tokens"] {
            sqlx::query(&format!("DELETE FROM {table} WHERE user_id = $1"))
                .bind(id)
                .execute(&mut *conn)
                .await
                .map_err(db_err)?;
        }
        // API keys count seconds.
        sqlx::query("UPDATE api_keys SET revoked_at = COALESCE(revoked_at, $2 / 1000000) WHERE user_id = $1")
            .bind(id)
            .bind(at)
            .execute(&mut *conn)
            .await
            .map_err(db_err)?;
        Ok(true)
    }
}
