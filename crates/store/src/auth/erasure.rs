//! A user's erasure: the dialect's statements (Postgres: the `coffer_erase_user` function, run
//! with the schema owner's rights; SQLite: the same statements inline) and the audit record, in
//! one transaction, serialized with role changes and refused when it would take the last
//! administrator's role.

use coffer_auth::store::UserStoreError;
use coffer_auth::user::UserId;
use sqlx::{ColumnIndex, Database, Decode, Encode, Executor, IntoArguments, Type};
use uuid::Uuid;

use super::rows::db_err;
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
    for<'q> Option<String>: Encode<'q, D::Db>,
    for<'q> Option<Vec<u8>>: Encode<'q, D::Db>,
    for<'q> &'q str: Encode<'q, D::Db> + Type<D::Db> + ColumnIndex<<D::Db as Database>::Row>,
    for<'q> &'q [u8]: Encode<'q, D::Db> + Type<D::Db>,
    for<'q> Option<&'q [u8]>: Encode<'q, D::Db>,
    usize: ColumnIndex<<D::Db as Database>::Row>,
{
    pub(in crate::auth) async fn erase_user(
        store: &Self,
        id: UserId,
        idempotency_key: &str,
        reason: &str,
        keep_held: &[String],
        audit: &coffer_audit::AuditEvent,
    ) -> Result<Option<coffer_audit::Receipt>, UserStoreError> {
        let mut tx = D::begin(&store.pool).await.map_err(db_err)?;
        // Its roles go: counted like a role change, so the last administrator stays.
        if let Some(lock) = D::SERIALIZE_ROLE_CHANGES {
            sqlx::query(lock).execute(&mut *tx).await.map_err(db_err)?;
        }
        let before = Self::holders(&mut tx, keep_held).await?;
        let at = store.clock.unix_micros();
        if !D::erase_user_rows(&mut tx, *id.as_uuid(), at, idempotency_key, reason).await? {
            return Ok(None);
        }
        if before > 0 && Self::holders(&mut tx, keep_held).await? == 0 {
            return Err(UserStoreError::LastHolder);
        }
        let receipt = D::append_audit(&store.audit, &mut tx, audit)
            .await
            .map_err(audit_err)?;
        tx.commit().await.map_err(db_err)?;
        Ok(Some(receipt))
    }
}
