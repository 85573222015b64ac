//! Refresh families: a login's first token, lookups by hash, the rotation, revocations and the
//! purge of families that ended.
//!
//! Rotation is a compare-and-swap: the presented token is marked spent and replaced only while it
//! is not revoked and its `replaced_by` is still what the caller decided on, and the
//! grace-window orphan is revoked as superseded only while it was never used; otherwise nothing
//! changes and the caller decides again. So of two concurrent uses of one token exactly one
//! rotates, and the other decides again on what the winner wrote (a reuse, or a grace-window
//! retry).
//!
//! A revocation (one family, a user's, everyone's) repeats its update until no live token is
//! left, so a rotation racing it cannot leave a token behind (`revoke_live` says why the loop is
//! needed on Postgres and why it ends). A login and a revocation append their audit record in the
//! same transaction.

use coffer_auth::refresh::{RefreshHash, RefreshRecord};
use coffer_auth::store::UserStoreError;
use coffer_auth::user::UserId;
use sqlx::{ColumnIndex, Database, Decode, Encode, Executor, IntoArguments, Type};
use uuid::Uuid;

use super::rows::{REFRESH_COLUMNS, corrupt, db_err, i64_of, refresh_from};
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
    /// Inserts one refresh token inside the caller's transaction.
    async fn insert_refresh(conn: &mut Conn<D>, r: &RefreshRecord) -> Result<(), UserStoreError> {
        let user = Uuid::parse_str(&r.user).map_err(|_| corrupt("refresh token user"))?;
        let amr = serde_json::to_string(&r.amr).map_err(|e| UserStoreError::Storage(e.into()))?;
        sqlx::query(
            "INSERT INTO refresh_tokens (hash, family, user_id, client_id, amr, \
             family_expires_at, spent_at, replaced_by, revoked, superseded) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(r.hash.0.to_vec())
        .bind(r.family)
        .bind(user)
        .bind(&r.client_id)
        .bind(amr)
        .bind(i64_of(r.family_expires_at))
        .bind(r.spent_at.map(i64_of))
        .bind(r.replaced_by.map(|h| h.0.to_vec()))
        .bind(r.revoked)
        .bind(r.superseded)
        .execute(&mut *conn)
        .await
        .map_err(db_err)?;
        Ok(())
    }

    /// Revokes the live refresh tokens `filter` selects (`$1`, `$2`, ... are `ids`), again
    /// and again until none is left: on Postgres each statement sees what committed
    /// before it began, so a rotation that committed while the previous statement
    /// waited for its row is caught by the next one; a rotation needs a live token, so
    /// the loop ends.
    pub(in crate::auth) async fn revoke_live(
        conn: &mut Conn<D>,
        filter: &str,
        ids: &[Uuid],
    ) -> Result<u64, UserStoreError> {
        let sql =
            format!("UPDATE refresh_tokens SET revoked = true WHERE revoked = false AND {filter}");
        let mut total = 0;
        loop {
            let q = ids.iter().fold(sqlx::query(&sql), |q, id| q.bind(*id));
            let n = D::rows_affected(&q.execute(&mut *conn).await.map_err(db_err)?);
            if n == 0 {
                return Ok(total);
            }
            total += n;
        }
    }

    pub(in crate::auth) async fn start_family(
        store: &Self,
        first: &RefreshRecord,
        audit: &coffer_audit::AuditEvent,
    ) -> Result<coffer_audit::Receipt, UserStoreError> {
        let mut tx = D::begin(&store.pool).await.map_err(db_err)?;
        Self::insert_refresh(&mut tx, first).await?;
        let receipt = D::append_audit(&store.audit, &mut tx, audit)
            .await
            .map_err(audit_err)?;
        tx.commit().await.map_err(db_err)?;
        Ok(receipt)
    }

    pub(in crate::auth) async fn refresh_token(
        store: &Self,
        hash: &RefreshHash,
    ) -> Result<Option<RefreshRecord>, UserStoreError> {
        let sql = format!("SELECT {REFRESH_COLUMNS} FROM refresh_tokens WHERE hash = $1");
        sqlx::query(&sql)
            .bind(hash.0.to_vec())
            .fetch_optional(&store.pool)
            .await
            .map_err(db_err)?
            .as_ref()
            .map(refresh_from)
            .transpose()
    }

    pub(in crate::auth) async fn rotate_refresh(
        store: &Self,
        r: &coffer_auth::store::Rotation<'_>,
    ) -> Result<bool, UserStoreError> {
        let mut tx = D::begin(&store.pool).await.map_err(db_err)?;
        let swapped = sqlx::query(
            "UPDATE refresh_tokens SET spent_at = COALESCE(spent_at, $2), replaced_by = $3 \
             WHERE hash = $1 AND revoked = false AND replaced_by IS NOT DISTINCT FROM $4",
        )
        .bind(r.presented.0.to_vec())
        .bind(i64_of(r.now))
        .bind(r.next.hash.0.to_vec())
        .bind(r.expected_replaced_by.map(|h| h.0.to_vec()))
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        if D::rows_affected(&swapped) != 1 {
            return Ok(false);
        }
        if let Some(orphan) = r.expected_replaced_by {
            let superseded = sqlx::query(
                "UPDATE refresh_tokens SET revoked = true, superseded = true \
                 WHERE hash = $1 AND spent_at IS NULL AND revoked = false",
            )
            .bind(orphan.0.to_vec())
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
            if D::rows_affected(&superseded) != 1 {
                return Ok(false);
            }
        }
        Self::insert_refresh(&mut tx, r.next).await?;
        tx.commit().await.map_err(db_err)?;
        Ok(true)
    }

    pub(in crate::auth) async fn revoke_family(
        store: &Self,
        family: Uuid,
        audit: Option<&coffer_audit::AuditEvent>,
    ) -> Result<(u64, Option<coffer_audit::Receipt>), UserStoreError> {
        let mut tx = D::begin(&store.pool).await.map_err(db_err)?;
        let revoked = Self::revoke_live(&mut tx, "family = $1", &[family]).await?;
        let receipt = match audit {
            Some(event) => Some(
                D::append_audit(&store.audit, &mut tx, event)
                    .await
                    .map_err(audit_err)?,
            ),
            None => None,
        };
        tx.commit().await.map_err(db_err)?;
        Ok((revoked, receipt))
    }

    pub(in crate::auth) async fn revoke_user_families(
        store: &Self,
        user: UserId,
        audit: &coffer_audit::AuditEvent,
    ) -> Result<coffer_audit::Receipt, UserStoreError> {
        let mut tx = D::begin(&store.pool).await.map_err(db_err)?;
        Self::revoke_live(&mut tx, "user_id = $1", &[*user.as_uuid()]).await?;
        let receipt = D::append_audit(&store.audit, &mut tx, audit)
            .await
            .map_err(audit_err)?;
        tx.commit().await.map_err(db_err)?;
        Ok(receipt)
    }

    pub(in crate::auth) async fn revoke_every_family(
        store: &Self,
        audit: &coffer_audit::AuditEvent,
    ) -> Result<coffer_audit::Receipt, UserStoreError> {
        let mut tx = D::begin(&store.pool).await.map_err(db_err)?;
        Self::revoke_live(&mut tx, "true", &[]).await?;
        let receipt = D::append_audit(&store.audit, &mut tx, audit)
            .await
            .map_err(audit_err)?;
        tx.commit().await.map_err(db_err)?;
        Ok(receipt)
    }

    pub(in crate::auth) async fn purge_families(
        store: &Self,
        before: u64,
    ) -> Result<u64, UserStoreError> {
        let done = sqlx::query("DELETE FROM refresh_tokens WHERE family_expires_at < $1")
            .bind(i64_of(before))
            .execute(&store.pool)
            .await
            .map_err(db_err)?;
        Ok(D::rows_affected(&done))
    }
}
