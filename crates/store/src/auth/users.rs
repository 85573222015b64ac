//! Users: registration, lookups by id or by the email's blind index (each with every version of
//! the user's data key), roles, the TOTP factor, the data-key rotation and erasure.
//!
//! The conditional writes keep concurrent requests honest: a TOTP step is claimed in one
//! statement, only if it is later than the last one claimed (`claim_totp_step`: a code is
//! accepted once, even by two requests at the same moment); a factor is written only while its
//! confirmed state and the user's data key version are still what the caller read (`set_totp`);
//! a data-key rotation rewrites the sealed fields and stores the new key version only while the
//! user's key version and TOTP secret are still the ones read (`rotate_user_key`). A
//! registration, a role or factor change and a rotation append their audit record in the same
//! transaction.

use coffer_auth::store::{LoadedUser, TotpRecord, UserKeyRecord, UserRecord, UserStoreError};
use coffer_auth::user::UserId;
use coffer_crypto::Envelope;
use sqlx::{ColumnIndex, Database, Decode, Encode, Executor, IntoArguments, Type};
use uuid::Uuid;

use super::rows::{USER_COLUMNS, db_err, i64_of, key_from, loaded, user_from};
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
    /// The user `q` selects (`USER_COLUMNS`), with their keys.
    async fn load<'q>(
        store: &Self,
        q: sqlx::query::Query<'q, D::Db, <D::Db as sqlx::Database>::Arguments<'q>>,
    ) -> Result<Option<LoadedUser>, UserStoreError> {
        let Some(row) = q.fetch_optional(&store.pool).await.map_err(db_err)? else {
            return Ok(None);
        };
        let record = user_from(&row)?;
        let keys = sqlx::query(
            "SELECT version, wrapped, kek_version FROM user_keys WHERE user_id = $1 \
             ORDER BY version",
        )
        .bind(*record.id.as_uuid())
        .fetch_all(&store.pool)
        .await
        .map_err(db_err)?
        .iter()
        .map(key_from)
        .collect::<Result<Vec<_>, _>>()?;
        Ok(Some(loaded(record, keys)))
    }

    /// Runs the update `q` and appends the audit record in one transaction; `None`
    /// (nothing written) when no user row matched.
    async fn update_user<'q>(
        store: &Self,
        q: sqlx::query::Query<'q, D::Db, <D::Db as sqlx::Database>::Arguments<'q>>,
        audit: &coffer_audit::AuditEvent,
    ) -> Result<Option<coffer_audit::Receipt>, UserStoreError> {
        let mut tx = D::begin(&store.pool).await.map_err(db_err)?;
        let done = q.execute(&mut *tx).await.map_err(db_err)?;
        if D::rows_affected(&done) == 0 {
            return Ok(None);
        }
        let receipt = D::append_audit(&store.audit, &mut tx, audit)
            .await
            .map_err(audit_err)?;
        tx.commit().await.map_err(db_err)?;
        Ok(Some(receipt))
    }

    pub(in crate::auth) async fn create_user(
        store: &Self,
        user: &UserRecord,
        key: &UserKeyRecord,
        audit: &coffer_audit::AuditEvent,
    ) -> Result<coffer_audit::Receipt, UserStoreError> {
        let mut tx = D::begin(&store.pool).await.map_err(db_err)?;
        let roles =
            serde_json::to_string(&user.roles).map_err(|e| UserStoreError::Storage(e.into()))?;
        let totp = user.totp.as_ref();
        sqlx::query(
            "INSERT INTO users (id, email_index, email, phone, tax_id, password_hash, \
             roles, dek_version, totp, totp_confirmed, totp_last_step, created_at, \
             updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $12)",
        )
        .bind(*user.id.as_uuid())
        .bind(user.email_index.to_vec())
        .bind(user.email.as_bytes())
        .bind(user.phone.as_ref().map(Envelope::as_bytes))
        .bind(user.tax_id.as_ref().map(Envelope::as_bytes))
        .bind(&user.password_hash)
        .bind(roles)
        .bind(i64::from(user.dek_version))
        .bind(totp.map(|t| t.sealed.as_bytes()))
        .bind(totp.is_some_and(|t| t.confirmed))
        .bind(i64_of(totp.map_or(0, |t| t.last_step)))
        .bind(user.created_at)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        sqlx::query(
            "INSERT INTO user_keys (user_id, version, wrapped, kek_version, created_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(*user.id.as_uuid())
        .bind(i64::from(key.version))
        .bind(key.wrapped.to_bytes())
        .bind(i64::from(key.kek_version))
        .bind(user.created_at)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        let receipt = D::append_audit(&store.audit, &mut tx, audit)
            .await
            .map_err(audit_err)?;
        tx.commit().await.map_err(db_err)?;
        Ok(receipt)
    }

    pub(in crate::auth) async fn user(
        store: &Self,
        id: UserId,
    ) -> Result<Option<LoadedUser>, UserStoreError> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1");
        Self::load(store, sqlx::query(&sql).bind(*id.as_uuid())).await
    }

    pub(in crate::auth) async fn user_by_email(
        store: &Self,
        index: &[u8; 32],
    ) -> Result<Option<LoadedUser>, UserStoreError> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE email_index = $1");
        Self::load(store, sqlx::query(&sql).bind(index.to_vec())).await
    }

    /// Replaces the roles, counting the users holding one of `keep_held` before and after (roles
    /// are stored as a JSON array of names, matched as `"name"`): a change that takes the count
    /// to zero is rolled back.
    pub(in crate::auth) async fn set_roles(
        store: &Self,
        id: UserId,
        roles: &[String],
        keep_held: &[String],
        audit: &coffer_audit::AuditEvent,
    ) -> Result<Option<coffer_audit::Receipt>, UserStoreError> {
        let roles = serde_json::to_string(roles).map_err(|e| UserStoreError::Storage(e.into()))?;
        let mut tx = D::begin(&store.pool).await.map_err(db_err)?;
        let before = Self::start_role_change(&mut tx, keep_held).await?;
        let done = sqlx::query(
            "UPDATE users SET roles = $2, updated_at = $3 WHERE id = $1 AND erased_at IS NULL",
        )
        .bind(*id.as_uuid())
        .bind(roles)
        .bind(store.clock.unix_micros())
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        if D::rows_affected(&done) == 0 {
            return Ok(None);
        }
        Self::end_role_change(&mut tx, keep_held, before).await?;
        let receipt = D::append_audit(&store.audit, &mut tx, audit)
            .await
            .map_err(audit_err)?;
        tx.commit().await.map_err(db_err)?;
        Ok(Some(receipt))
    }

    /// Erases a user (the dialect's statements: Postgres's `coffer_erase_user` function, run with
    /// the schema owner's rights, or the same statements inline on SQLite) with its audit record,
    /// in one transaction. Its roles go too, so it is guarded like a role change.
    pub(in crate::auth) async fn erase_user(
        store: &Self,
        id: UserId,
        idempotency_key: &str,
        reason: &str,
        keep_held: &[String],
        audit: &coffer_audit::AuditEvent,
    ) -> Result<Option<coffer_audit::Receipt>, UserStoreError> {
        let mut tx = D::begin(&store.pool).await.map_err(db_err)?;
        let before = Self::start_role_change(&mut tx, keep_held).await?;
        let at = store.clock.unix_micros();
        if !D::erase_user_rows(&mut tx, *id.as_uuid(), at, idempotency_key, reason).await? {
            return Ok(None);
        }
        Self::end_role_change(&mut tx, keep_held, before).await?;
        let receipt = D::append_audit(&store.audit, &mut tx, audit)
            .await
            .map_err(audit_err)?;
        tx.commit().await.map_err(db_err)?;
        Ok(Some(receipt))
    }

    /// The start of a change that may take roles away: role changes one at a time, and the
    /// users holding one of `keep_held` counted before.
    async fn start_role_change(
        conn: &mut Conn<D>,
        keep_held: &[String],
    ) -> Result<i64, UserStoreError> {
        if let Some(lock) = D::SERIALIZE_ROLE_CHANGES {
            sqlx::query(lock)
                .execute(&mut *conn)
                .await
                .map_err(db_err)?;
        }
        Self::holders(conn, keep_held).await
    }

    /// [`UserStoreError::LastHolder`] when the change took the count of `keep_held` holders from
    /// `before` to zero (the caller's transaction is then rolled back).
    async fn end_role_change(
        conn: &mut Conn<D>,
        keep_held: &[String],
        before: i64,
    ) -> Result<(), UserStoreError> {
        if before > 0 && Self::holders(conn, keep_held).await? == 0 {
            return Err(UserStoreError::LastHolder);
        }
        Ok(())
    }

    /// Users holding one of `roles`, on the pool.
    pub(in crate::auth) async fn role_holders(
        store: &Self,
        roles: &[String],
    ) -> Result<u64, UserStoreError> {
        let mut conn = store.pool.acquire().await.map_err(db_err)?;
        let n = Self::holders(&mut conn, roles).await?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// Users holding one of `roles` (0 for none).
    async fn holders(conn: &mut Conn<D>, roles: &[String]) -> Result<i64, UserStoreError> {
        if roles.is_empty() {
            return Ok(0);
        }
        let matches: Vec<String> = (1..=roles.len())
            .map(|i| format!("roles LIKE ${i} ESCAPE '!'"))
            .collect();
        let sql = format!("SELECT COUNT(*) FROM users WHERE {}", matches.join(" OR "));
        let mut q = sqlx::query_scalar::<_, i64>(&sql);
        for role in roles {
            // Role names are letters, digits, `-` and `_`; `_` is LIKE's wildcard.
            q = q.bind(format!("%\"{}\"%", role.replace('_', "!_")));
        }
        q.fetch_one(&mut *conn).await.map_err(db_err)
    }

    pub(in crate::auth) async fn set_totp(
        store: &Self,
        id: UserId,
        totp: Option<&TotpRecord>,
        expect_confirmed: bool,
        dek_version: u32,
        audit: &coffer_audit::AuditEvent,
    ) -> Result<Option<coffer_audit::Receipt>, UserStoreError> {
        let sealed = totp.map(|t| t.sealed.as_bytes());
        let confirmed = totp.is_some_and(|t| t.confirmed);
        let step = i64_of(totp.map_or(0, |t| t.last_step));
        let q = sqlx::query(
            "UPDATE users SET totp = $2, totp_confirmed = $3, \
             totp_last_step = CASE WHEN totp_last_step > $4 THEN totp_last_step ELSE $4 END, \
             updated_at = $5 WHERE id = $1 AND totp_confirmed = $6 AND dek_version = $7",
        )
        .bind(*id.as_uuid())
        .bind(sealed)
        .bind(confirmed)
        .bind(step)
        .bind(store.clock.unix_micros())
        .bind(expect_confirmed)
        .bind(i64::from(dek_version));
        Self::update_user(store, q, audit).await
    }

    pub(in crate::auth) async fn change_password(
        store: &Self,
        id: UserId,
        new_hash: &str,
        expect_hash: &str,
        keep_family: Option<Uuid>,
        audit: &coffer_audit::AuditEvent,
    ) -> Result<Option<coffer_audit::Receipt>, UserStoreError> {
        let mut tx = D::begin(&store.pool).await.map_err(db_err)?;
        let done = sqlx::query(
            "UPDATE users SET password_hash = $2, updated_at = $3 \
             WHERE id = $1 AND password_hash = $4",
        )
        .bind(*id.as_uuid())
        .bind(new_hash)
        .bind(store.clock.unix_micros())
        .bind(expect_hash)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        if D::rows_affected(&done) == 0 {
            return Ok(None);
        }
        // Every other session ends with the old password (the nil family matches none).
        Self::revoke_live(
            &mut tx,
            "user_id = $1 AND family <> $2",
            &[*id.as_uuid(), keep_family.unwrap_or(Uuid::nil())],
        )
        .await?;
        let receipt = D::append_audit(&store.audit, &mut tx, audit)
            .await
            .map_err(audit_err)?;
        tx.commit().await.map_err(db_err)?;
        Ok(Some(receipt))
    }

    pub(in crate::auth) async fn rotate_user_key(
        store: &Self,
        r: &coffer_auth::store::UserKeyRotation<'_>,
    ) -> Result<Option<coffer_audit::Receipt>, UserStoreError> {
        let now = store.clock.unix_micros();
        let q = sqlx::query(
            "UPDATE users SET dek_version = $2, email = $3, phone = $4, tax_id = $5, \
             totp = $6, updated_at = $7 \
             WHERE id = $1 AND dek_version = $8 AND totp IS NOT DISTINCT FROM $9",
        )
        .bind(*r.user.as_uuid())
        .bind(i64::from(r.key.version))
        .bind(r.email.as_bytes())
        .bind(r.phone.map(Envelope::as_bytes))
        .bind(r.tax_id.map(Envelope::as_bytes))
        .bind(r.totp.map(Envelope::as_bytes))
        .bind(now)
        .bind(i64::from(r.from))
        .bind(r.totp_was.map(Envelope::as_bytes));
        let mut tx = D::begin(&store.pool).await.map_err(db_err)?;
        if D::rows_affected(&q.execute(&mut *tx).await.map_err(db_err)?) == 0 {
            return Ok(None);
        }
        sqlx::query(
            "INSERT INTO user_keys (user_id, version, wrapped, kek_version, created_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(*r.user.as_uuid())
        .bind(i64::from(r.key.version))
        .bind(r.key.wrapped.to_bytes())
        .bind(i64::from(r.key.kek_version))
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        let receipt = D::append_audit(&store.audit, &mut tx, r.audit)
            .await
            .map_err(audit_err)?;
        tx.commit().await.map_err(db_err)?;
        Ok(Some(receipt))
    }

    pub(in crate::auth) async fn claim_totp_step(
        store: &Self,
        id: UserId,
        step: u64,
    ) -> Result<bool, UserStoreError> {
        let done = sqlx::query(
            "UPDATE users SET totp_last_step = $2 WHERE id = $1 AND totp_last_step < $2",
        )
        .bind(*id.as_uuid())
        .bind(i64_of(step))
        .execute(&store.pool)
        .await
        .map_err(db_err)?;
        Ok(D::rows_affected(&done) == 1)
    }
}
