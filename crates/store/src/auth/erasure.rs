//! A user's erasure: the dialect's statements (Postgres: the `coffer_erase_user` function, run
//! with the schema owner's rights; SQLite: the same statements inline) and the audit record, in
//! one transaction.

use coffer_auth::store::UserStoreError;
use coffer_auth::user::UserId;
use sqlx::{Database, Executor, IntoArguments};

use super::rows::db_err;
use super::{AuthDialect, Conn, UserStoreOn, audit_err};

impl<D: AuthDialect> UserStoreOn<D>
where
    for<'c> &'c mut Conn<D>: Executor<'c, Database = D::Db>,
    for<'q> <D::Db as Database>::Arguments<'q>: IntoArguments<'q, D::Db>,
{
    pub(in crate::auth) async fn erase_user(
        store: &Self,
        id: UserId,
        idempotency_key: &str,
        reason: &str,
        audit: &coffer_audit::AuditEvent,
    ) -> Result<Option<coffer_audit::Receipt>, UserStoreError> {
        let mut tx = D::begin(&store.pool).await.map_err(db_err)?;
        let at = store.clock.unix_micros();
        if !D::erase_user_rows(&mut tx, *id.as_uuid(), at, idempotency_key, reason).await? {
            return Ok(None);
        }
        let receipt = D::append_audit(&store.audit, &mut tx, audit)
            .await
            .map_err(audit_err)?;
        tx.commit().await.map_err(db_err)?;
        Ok(Some(receipt))
    }
}
