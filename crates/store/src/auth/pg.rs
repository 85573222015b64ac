//! The user store's and the revocation list's steps on Postgres beyond the common
//! [`Dialect`](crate::dialect::Dialect) (a plain `BEGIN`): each revocation is announced with
//! `pg_notify`, role changes take an advisory lock, and an erasure runs the
//! `coffer_erase_user` function.

use coffer_auth::store::UserStoreError;
use sqlx::PgConnection;
use uuid::Uuid;

use super::AuthDialect;
use super::rows::db_err;
use crate::dialect::Pg;

impl AuthDialect for Pg {
    const ANNOUNCE: bool = true;
    // Role changes take one transaction-scoped advisory lock, so the count of administrators
    // each change reads is never stale.
    const SERIALIZE_ROLE_CHANGES: Option<&'static str> =
        Some("SELECT pg_advisory_xact_lock(hashtext('coffer.user_roles'))");

    async fn erase_user_rows(
        conn: &mut PgConnection,
        id: Uuid,
        at: i64,
        idempotency_key: &str,
        reason: &str,
    ) -> Result<bool, UserStoreError> {
        // The application role has no DELETE on `user_keys`: the function (migration 0010)
        // destroys them, refusing while a wallet of the user is not erased.
        sqlx::query_scalar("SELECT coffer_erase_user($1, $2, $3, $4)")
            .bind(id)
            .bind(at)
            .bind(idempotency_key)
            .bind(reason)
            .fetch_one(conn)
            .await
            .map_err(|e| match e.as_database_error().and_then(|d| d.code()) {
                // The function's refusal (check_violation).
                Some(code) if code == "23514" => UserStoreError::WalletsRemain,
                _ => db_err(e),
            })
    }
}
