//! The user store and the persistent revocation list on Postgres and SQLite: one body of SQL for
//! both, expanded per database by [`auth_stores!`] (the statements are portable; the dialects
//! differ only in how a write transaction begins and in the audit adapter).
//!
//! On Postgres each revocation is also announced, in its own statement, on
//! [`REVOCATION_CHANNEL`], and [`feed_revocations`] relays the announcements to a process's
//! [`CachedRevocationList`](coffer_auth::CachedRevocationList).
//!
//! Refresh rotation is a compare-and-swap: the presented token is updated only while its
//! `replaced_by` is still what the caller decided on, so of two concurrent uses of one token
//! exactly one rotates, and the other decides again on what the winner wrote (a reuse, or a
//! grace-window retry).

use coffer_auth::refresh::{RefreshHash, RefreshRecord};
use coffer_auth::revocation::RevocationError;
use coffer_auth::store::{
    LoadedUser, StoredSigningKey, TotpRecord, UserKeyRecord, UserRecord, UserStoreError,
};
use coffer_auth::user::UserId;
use sqlx::Row;
use uuid::Uuid;

fn db_err(e: sqlx::Error) -> UserStoreError {
    // Postgres names the constraint (`users_email_index_key`); SQLite only the column.
    if e.as_database_error().is_some_and(|d| {
        d.is_unique_violation()
            && (d.constraint().is_some_and(|c| c.contains("email_index"))
                || d.message().contains("email_index"))
    }) {
        return UserStoreError::DuplicateEmail;
    }
    match e {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::WorkerCrashed => UserStoreError::Unavailable(e.to_string()),
        sqlx::Error::ColumnDecode { .. } | sqlx::Error::Decode(_) => {
            UserStoreError::Corrupt(e.to_string())
        }
        other => UserStoreError::Storage(other.to_string()),
    }
}

fn audit_err(e: coffer_audit::AuditError) -> UserStoreError {
    match e {
        coffer_audit::AuditError::Unavailable(m) => UserStoreError::Unavailable(m),
        other => UserStoreError::Storage(format!("audit: {other}")),
    }
}

fn revocation_err(e: sqlx::Error) -> RevocationError {
    RevocationError::Unavailable(e.to_string())
}

fn corrupt(what: &str) -> UserStoreError {
    UserStoreError::Corrupt(what.to_owned())
}

fn i64_of(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn u64_of(v: i64, what: &str) -> Result<u64, UserStoreError> {
    u64::try_from(v).map_err(|_| corrupt(what))
}

fn u32_of(v: i64, what: &str) -> Result<u32, UserStoreError> {
    u32::try_from(v).map_err(|_| corrupt(what))
}

fn hash_of(bytes: &[u8]) -> Result<RefreshHash, UserStoreError> {
    Ok(RefreshHash(
        bytes
            .try_into()
            .map_err(|_| corrupt("refresh token hash"))?,
    ))
}

const USER_COLUMNS: &str = "id, email_index, email, phone, tax_id, password_hash, roles, \
     dek_version, totp, totp_confirmed, totp_last_step, created_at";

fn user_from<R: Row>(row: &R) -> Result<UserRecord, UserStoreError>
where
    for<'r> &'r str: sqlx::ColumnIndex<R>,
    for<'r> Uuid: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> Vec<u8>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> bool: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let get_err = db_err;
    let roles: String = row.try_get("roles").map_err(get_err)?;
    let totp: Option<Vec<u8>> = row.try_get("totp").map_err(get_err)?;
    let email_index: Vec<u8> = row.try_get("email_index").map_err(get_err)?;
    Ok(UserRecord {
        id: UserId::from_uuid(row.try_get("id").map_err(get_err)?),
        email_index: email_index
            .as_slice()
            .try_into()
            .map_err(|_| corrupt("email index"))?,
        email: row.try_get("email").map_err(get_err)?,
        phone: row.try_get("phone").map_err(get_err)?,
        tax_id: row.try_get("tax_id").map_err(get_err)?,
        password_hash: row.try_get("password_hash").map_err(get_err)?,
        roles: serde_json::from_str(&roles).map_err(|_| corrupt("roles"))?,
        dek_version: u32_of(row.try_get("dek_version").map_err(get_err)?, "dek version")?,
        totp: match totp {
            Some(sealed) => Some(TotpRecord {
                sealed,
                confirmed: row.try_get("totp_confirmed").map_err(get_err)?,
                last_step: u64_of(row.try_get("totp_last_step").map_err(get_err)?, "totp step")?,
            }),
            None => None,
        },
        created_at: row.try_get("created_at").map_err(get_err)?,
    })
}

fn key_from<R: Row>(row: &R) -> Result<UserKeyRecord, UserStoreError>
where
    for<'r> &'r str: sqlx::ColumnIndex<R>,
    for<'r> Vec<u8>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    Ok(UserKeyRecord {
        version: u32_of(row.try_get("version").map_err(db_err)?, "key version")?,
        wrapped: row.try_get("wrapped").map_err(db_err)?,
        kek_version: u32_of(row.try_get("kek_version").map_err(db_err)?, "kek version")?,
    })
}

const REFRESH_COLUMNS: &str = "hash, family, user_id, client_id, amr, family_expires_at, \
     spent_at, replaced_by, revoked, superseded";

fn refresh_from<R: Row>(row: &R) -> Result<RefreshRecord, UserStoreError>
where
    for<'r> &'r str: sqlx::ColumnIndex<R>,
    for<'r> Uuid: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> Vec<u8>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> bool: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let hash: Vec<u8> = row.try_get("hash").map_err(db_err)?;
    let replaced_by: Option<Vec<u8>> = row.try_get("replaced_by").map_err(db_err)?;
    let user: Uuid = row.try_get("user_id").map_err(db_err)?;
    let amr: String = row.try_get("amr").map_err(db_err)?;
    let spent_at: Option<i64> = row.try_get("spent_at").map_err(db_err)?;
    Ok(RefreshRecord {
        hash: hash_of(&hash)?,
        family: row.try_get("family").map_err(db_err)?,
        user: user.to_string(),
        client_id: row.try_get("client_id").map_err(db_err)?,
        amr: serde_json::from_str(&amr).map_err(|_| corrupt("amr"))?,
        family_expires_at: u64_of(
            row.try_get("family_expires_at").map_err(db_err)?,
            "family expiry",
        )?,
        spent_at: spent_at.map(|s| u64_of(s, "spent_at")).transpose()?,
        replaced_by: replaced_by.as_deref().map(hash_of).transpose()?,
        revoked: row.try_get("revoked").map_err(db_err)?,
        superseded: row.try_get("superseded").map_err(db_err)?,
    })
}

fn signing_key_from<R: Row>(row: &R) -> Result<StoredSigningKey, UserStoreError>
where
    for<'r> &'r str: sqlx::ColumnIndex<R>,
    for<'r> Vec<u8>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let retired_at: Option<i64> = row.try_get("retired_at").map_err(db_err)?;
    Ok(StoredSigningKey {
        kid: row.try_get("kid").map_err(db_err)?,
        wrapped_dek: row.try_get("wrapped_dek").map_err(db_err)?,
        kek_version: u32_of(row.try_get("kek_version").map_err(db_err)?, "kek version")?,
        sealed: row.try_get("sealed").map_err(db_err)?,
        created_at: u64_of(row.try_get("created_at").map_err(db_err)?, "created_at")?,
        retired_at: retired_at.map(|r| u64_of(r, "retired_at")).transpose()?,
    })
}

fn loaded(record: UserRecord, keys: Vec<UserKeyRecord>) -> LoadedUser {
    LoadedUser { record, keys }
}

fn now_micros() -> i64 {
    coffer_audit::event::unix_micros(std::time::SystemTime::now())
}

fn now_secs() -> u64 {
    coffer_auth::revocation::unix_secs(std::time::SystemTime::now())
}

/// Denylist entries are swept once every this many insertions.
const SWEEP_EVERY: u64 = 256;

/// Expands to the user store `$store` and the revocation list `$revocation` for one database.
macro_rules! auth_stores {
    (
        $store:ident, $revocation:ident, db_type = $Db:ty, conn = $Conn:ty, pool = $Pool:ty,
        audit = $Audit:ty, begin = $begin:literal, db = $db:literal, announce = $announce:literal
    ) => {
        #[doc = concat!("The user store on ", $db, " (see the module documentation).")]
        #[derive(Clone)]
        pub struct $store {
            pool: $Pool,
            audit: $Audit,
        }

        impl std::fmt::Debug for $store {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct(stringify!($store)).finish_non_exhaustive()
            }
        }

        impl $store {
            /// A store on `pool` (migrated), appending its audit records through `audit` (on
            /// the same database).
            #[must_use]
            pub fn new(pool: $Pool, audit: $Audit) -> Self {
                Self { pool, audit }
            }

            /// The user `q` selects (`USER_COLUMNS`), with their keys.
            async fn load<'q>(
                &self,
                q: sqlx::query::Query<'q, $Db, <$Db as sqlx::Database>::Arguments<'q>>,
            ) -> Result<Option<LoadedUser>, UserStoreError> {
                let Some(row) = q.fetch_optional(&self.pool).await.map_err(db_err)? else {
                    return Ok(None);
                };
                let record = user_from(&row)?;
                let keys = sqlx::query(
                    "SELECT version, wrapped, kek_version FROM user_keys WHERE user_id = $1 \
                     ORDER BY version",
                )
                .bind(*record.id.as_uuid())
                .fetch_all(&self.pool)
                .await
                .map_err(db_err)?
                .iter()
                .map(key_from)
                .collect::<Result<Vec<_>, _>>()?;
                Ok(Some(loaded(record, keys)))
            }

            /// Inserts one refresh token inside the caller's transaction.
            async fn insert_refresh(
                conn: &mut $Conn,
                r: &RefreshRecord,
            ) -> Result<(), UserStoreError> {
                let user = Uuid::parse_str(&r.user).map_err(|_| corrupt("refresh token user"))?;
                let amr = serde_json::to_string(&r.amr)
                    .map_err(|e| UserStoreError::Storage(e.to_string()))?;
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

            /// Revokes the live refresh tokens `filter` selects (`$1` is `id`, if given), again
            /// and again until none is left: on Postgres each statement sees what committed
            /// before it began, so a rotation that committed while the previous statement
            /// waited for its row is caught by the next one; a rotation needs a live token, so
            /// the loop ends.
            async fn revoke_live(
                conn: &mut $Conn,
                filter: &str,
                id: Option<Uuid>,
            ) -> Result<u64, UserStoreError> {
                let sql = format!(
                    "UPDATE refresh_tokens SET revoked = true WHERE revoked = false AND {filter}"
                );
                let mut total = 0;
                loop {
                    let q = sqlx::query(&sql);
                    let q = match id {
                        Some(id) => q.bind(id),
                        None => q,
                    };
                    let n = q.execute(&mut *conn).await.map_err(db_err)?.rows_affected();
                    if n == 0 {
                        return Ok(total);
                    }
                    total += n;
                }
            }

            /// Runs the update `q` and appends the audit record in one transaction; `None`
            /// (nothing written) when no user row matched.
            async fn update_user<'q>(
                &self,
                q: sqlx::query::Query<'q, $Db, <$Db as sqlx::Database>::Arguments<'q>>,
                audit: &coffer_audit::AuditEvent,
            ) -> Result<Option<coffer_audit::Receipt>, UserStoreError> {
                let mut tx = self.pool.begin_with($begin).await.map_err(db_err)?;
                let done = q
                    .execute(&mut *tx)
                    .await
                    .map_err(db_err)?;
                if done.rows_affected() == 0 {
                    return Ok(None);
                }
                let receipt = self.audit.append_in(&mut tx, audit).await.map_err(audit_err)?;
                tx.commit().await.map_err(db_err)?;
                Ok(Some(receipt))
            }
        }

        #[async_trait::async_trait]
        impl coffer_auth::store::UserStore for $store {
            async fn create_user(
                &self,
                user: &UserRecord,
                key: &UserKeyRecord,
                audit: &coffer_audit::AuditEvent,
            ) -> Result<coffer_audit::Receipt, UserStoreError> {
                let mut tx = self.pool.begin_with($begin).await.map_err(db_err)?;
                let roles = serde_json::to_string(&user.roles).map_err(|e| UserStoreError::Storage(e.to_string()))?;
                let totp = user.totp.as_ref();
                sqlx::query(
                    "INSERT INTO users (id, email_index, email, phone, tax_id, password_hash, \
                     roles, dek_version, totp, totp_confirmed, totp_last_step, created_at, \
                     updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $12)",
                )
                .bind(*user.id.as_uuid())
                .bind(user.email_index.to_vec())
                .bind(&user.email)
                .bind(&user.phone)
                .bind(&user.tax_id)
                .bind(&user.password_hash)
                .bind(roles)
                .bind(i64::from(user.dek_version))
                .bind(totp.map(|t| t.sealed.clone()))
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
                .bind(&key.wrapped)
                .bind(i64::from(key.kek_version))
                .bind(user.created_at)
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
                let receipt = self.audit.append_in(&mut tx, audit).await.map_err(audit_err)?;
                tx.commit().await.map_err(db_err)?;
                Ok(receipt)
            }

            async fn user(&self, id: UserId) -> Result<Option<LoadedUser>, UserStoreError> {
                let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1");
                self.load(sqlx::query(&sql).bind(*id.as_uuid())).await
            }

            async fn user_by_email(
                &self,
                index: &[u8; 32],
            ) -> Result<Option<LoadedUser>, UserStoreError> {
                let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE email_index = $1");
                self.load(sqlx::query(&sql).bind(index.to_vec())).await
            }

            async fn set_roles(
                &self,
                id: UserId,
                roles: &[String],
                audit: &coffer_audit::AuditEvent,
            ) -> Result<Option<coffer_audit::Receipt>, UserStoreError> {
                let roles = serde_json::to_string(roles).map_err(|e| UserStoreError::Storage(e.to_string()))?;
                let q = sqlx::query("UPDATE users SET roles = $2, updated_at = $3 WHERE id = $1")
                    .bind(*id.as_uuid())
                    .bind(roles)
                    .bind(now_micros());
                self.update_user(q, audit).await
            }

            async fn set_totp(
                &self,
                id: UserId,
                totp: Option<&TotpRecord>,
                expect_confirmed: bool,
                dek_version: u32,
                audit: &coffer_audit::AuditEvent,
            ) -> Result<Option<coffer_audit::Receipt>, UserStoreError> {
                let sealed = totp.map(|t| t.sealed.clone());
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
                .bind(now_micros())
                .bind(expect_confirmed)
                .bind(i64::from(dek_version));
                self.update_user(q, audit).await
            }

            async fn rotate_user_key(
                &self,
                r: &coffer_auth::store::UserKeyRotation<'_>,
            ) -> Result<Option<coffer_audit::Receipt>, UserStoreError> {
                let now = now_micros();
                let q = sqlx::query(
                    "UPDATE users SET dek_version = $2, email = $3, phone = $4, tax_id = $5, \
                     totp = $6, updated_at = $7 \
                     WHERE id = $1 AND dek_version = $8 AND totp IS NOT DISTINCT FROM $9",
                )
                .bind(*r.user.as_uuid())
                .bind(i64::from(r.key.version))
                .bind(r.email)
                .bind(r.phone)
                .bind(r.tax_id)
                .bind(r.totp)
                .bind(now)
                .bind(i64::from(r.from))
                .bind(r.totp_was);
                let mut tx = self.pool.begin_with($begin).await.map_err(db_err)?;
                if q.execute(&mut *tx).await.map_err(db_err)?.rows_affected() == 0 {
                    return Ok(None);
                }
                sqlx::query(
                    "INSERT INTO user_keys (user_id, version, wrapped, kek_version, created_at) \
                     VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(*r.user.as_uuid())
                .bind(i64::from(r.key.version))
                .bind(&r.key.wrapped)
                .bind(i64::from(r.key.kek_version))
                .bind(now)
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
                let receipt = self.audit.append_in(&mut tx, r.audit).await.map_err(audit_err)?;
                tx.commit().await.map_err(db_err)?;
                Ok(Some(receipt))
            }

            async fn claim_totp_step(&self, id: UserId, step: u64) -> Result<bool, UserStoreError> {
                let done = sqlx::query(
                    "UPDATE users SET totp_last_step = $2 WHERE id = $1 AND totp_last_step < $2",
                )
                .bind(*id.as_uuid())
                .bind(i64_of(step))
                .execute(&self.pool)
                .await
                .map_err(db_err)?;
                Ok(done.rows_affected() == 1)
            }

            async fn start_family(
                &self,
                first: &RefreshRecord,
                audit: &coffer_audit::AuditEvent,
            ) -> Result<coffer_audit::Receipt, UserStoreError> {
                let mut tx = self.pool.begin_with($begin).await.map_err(db_err)?;
                Self::insert_refresh(&mut tx, first).await?;
                let receipt = self.audit.append_in(&mut tx, audit).await.map_err(audit_err)?;
                tx.commit().await.map_err(db_err)?;
                Ok(receipt)
            }

            async fn refresh_token(
                &self,
                hash: &RefreshHash,
            ) -> Result<Option<RefreshRecord>, UserStoreError> {
                let sql = format!("SELECT {REFRESH_COLUMNS} FROM refresh_tokens WHERE hash = $1");
                sqlx::query(&sql)
                    .bind(hash.0.to_vec())
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(db_err)?
                    .as_ref()
                    .map(refresh_from)
                    .transpose()
            }

            async fn rotate_refresh(
                &self,
                r: &coffer_auth::store::Rotation<'_>,
            ) -> Result<bool, UserStoreError> {
                let mut tx = self.pool.begin_with($begin).await.map_err(db_err)?;
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
                if swapped.rows_affected() != 1 {
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
                    if superseded.rows_affected() != 1 {
                        return Ok(false);
                    }
                }
                Self::insert_refresh(&mut tx, r.next).await?;
                tx.commit().await.map_err(db_err)?;
                Ok(true)
            }

            async fn revoke_family(
                &self,
                family: Uuid,
                audit: Option<&coffer_audit::AuditEvent>,
            ) -> Result<(u64, Option<coffer_audit::Receipt>), UserStoreError> {
                let mut tx = self.pool.begin_with($begin).await.map_err(db_err)?;
                let revoked = Self::revoke_live(&mut tx, "family = $1", Some(family)).await?;
                let receipt = match audit {
                    Some(event) => {
                        Some(self.audit.append_in(&mut tx, event).await.map_err(audit_err)?)
                    }
                    None => None,
                };
                tx.commit().await.map_err(db_err)?;
                Ok((revoked, receipt))
            }

            async fn revoke_user_families(
                &self,
                user: UserId,
                audit: &coffer_audit::AuditEvent,
            ) -> Result<coffer_audit::Receipt, UserStoreError> {
                let mut tx = self.pool.begin_with($begin).await.map_err(db_err)?;
                Self::revoke_live(&mut tx, "user_id = $1", Some(*user.as_uuid())).await?;
                let receipt = self.audit.append_in(&mut tx, audit).await.map_err(audit_err)?;
                tx.commit().await.map_err(db_err)?;
                Ok(receipt)
            }

            async fn revoke_every_family(
                &self,
                audit: &coffer_audit::AuditEvent,
            ) -> Result<coffer_audit::Receipt, UserStoreError> {
                let mut tx = self.pool.begin_with($begin).await.map_err(db_err)?;
                Self::revoke_live(&mut tx, "true", None).await?;
                let receipt = self.audit.append_in(&mut tx, audit).await.map_err(audit_err)?;
                tx.commit().await.map_err(db_err)?;
                Ok(receipt)
            }

            async fn purge_families(&self, before: u64) -> Result<u64, UserStoreError> {
                let done = sqlx::query("DELETE FROM refresh_tokens WHERE family_expires_at < $1")
                    .bind(i64_of(before))
                    .execute(&self.pool)
                    .await
                    .map_err(db_err)?;
                Ok(done.rows_affected())
            }

            async fn signing_keys(&self) -> Result<Vec<StoredSigningKey>, UserStoreError> {
                sqlx::query(
                    "SELECT kid, wrapped_dek, kek_version, sealed, created_at, retired_at \
                     FROM signing_keys WHERE dropped_at IS NULL ORDER BY created_at, kid",
                )
                .fetch_all(&self.pool)
                .await
                .map_err(db_err)?
                .iter()
                .map(signing_key_from)
                .collect()
            }

            async fn add_signing_key(
                &self,
                key: &StoredSigningKey,
                only_if_none: bool,
            ) -> Result<bool, UserStoreError> {
                let mut tx = self.pool.begin_with($begin).await.map_err(db_err)?;
                let current: Vec<String> = sqlx::query_scalar(
                    "SELECT kid FROM signing_keys WHERE retired_at IS NULL",
                )
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
                .await;
                match inserted {
                    // Another process made a key current meanwhile.
                    Err(e) if e.as_database_error().is_some_and(|d| d.is_unique_violation()) => {
                        Ok(false)
                    }
                    Err(e) => Err(db_err(e)),
                    Ok(_) => {
                        tx.commit().await.map_err(db_err)?;
                        Ok(true)
                    }
                }
            }

            async fn drop_signing_key(&self, kid: &str, at: u64) -> Result<bool, UserStoreError> {
                let done = sqlx::query(
                    "UPDATE signing_keys SET dropped_at = $2 \
                     WHERE kid = $1 AND retired_at IS NOT NULL AND dropped_at IS NULL",
                )
                .bind(kid)
                .bind(i64_of(at))
                .execute(&self.pool)
                .await
                .map_err(db_err)?;
                Ok(done.rows_affected() == 1)
            }

            async fn secret(&self, purpose: &str) -> Result<Option<Vec<u8>>, UserStoreError> {
                sqlx::query_scalar("SELECT wrapped FROM service_secrets WHERE purpose = $1")
                    .bind(purpose)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(db_err)
            }

            async fn insert_secret(
                &self,
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
                .bind(now_micros())
                .execute(&self.pool)
                .await
                .map_err(db_err)?;
                Ok(())
            }
        }

        #[doc = concat!(
            "The revocation list on ", $db, ": logouts and revocations survive restarts and ",
            "are shared by every process on the database."
        )]
        #[derive(Clone)]
        pub struct $revocation {
            pool: $Pool,
            inserts: std::sync::Arc<std::sync::atomic::AtomicU64>,
        }

        impl std::fmt::Debug for $revocation {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct(stringify!($revocation)).finish_non_exhaustive()
            }
        }

        impl $revocation {
            /// A list on `pool` (migrated).
            #[must_use]
            pub fn new(pool: $Pool) -> Self {
                Self {
                    pool,
                    inserts: std::sync::Arc::default(),
                }
            }

            /// Denylist rows held now (expired ones are swept as new ones arrive).
            ///
            /// # Errors
            /// [`RevocationError::Unavailable`].
            pub async fn denied_len(&self) -> Result<u64, RevocationError> {
                let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM revoked_tokens")
                    .fetch_one(&self.pool)
                    .await
                    .map_err(revocation_err)?;
                Ok(u64::try_from(n).unwrap_or(0))
            }

            async fn bump(&self, subject: &str) -> Result<u64, RevocationError> {
                const BUMP: &str = "INSERT INTO revocation_epochs (subject, epoch) \
                     VALUES ($1, 1) \
                     ON CONFLICT (subject) DO UPDATE SET epoch = revocation_epochs.epoch + 1 \
                     RETURNING epoch";
                let sql = if $announce {
                    format!(
                        "WITH b AS ({BUMP}) \
                         SELECT epoch FROM b, pg_notify('{REVOCATION_CHANNEL}', $1)"
                    )
                } else {
                    BUMP.to_owned()
                };
                let epoch: i64 = sqlx::query_scalar(&sql)
                .bind(subject)
                .fetch_one(&self.pool)
                .await
                .map_err(revocation_err)?;
                Ok(u64::try_from(epoch).unwrap_or(0))
            }
        }

        #[async_trait::async_trait]
        impl coffer_auth::RevocationList for $revocation {
            async fn revoke_token(
                &self,
                jti: &str,
                expires: std::time::SystemTime,
            ) -> Result<(), RevocationError> {
                check("jti", jti)?;
                let now = now_secs();
                let until = coffer_auth::revocation::unix_secs(expires);
                if until <= now {
                    return Ok(());
                }
                const INSERT: &str = "INSERT INTO revoked_tokens (jti, expires_at) \
                     VALUES ($1, $2) ON CONFLICT (jti) DO UPDATE SET expires_at = CASE \
                     WHEN excluded.expires_at > revoked_tokens.expires_at \
                     THEN excluded.expires_at ELSE revoked_tokens.expires_at END";
                // On Postgres the revocation is announced to every process's cache when it
                // commits (crate::auth::feed_revocations).
                let sql = if $announce {
                    format!(
                        "WITH r AS ({INSERT} RETURNING 1) \
                         SELECT pg_notify('{REVOCATION_CHANNEL}', 'token:' || $1) FROM r"
                    )
                } else {
                    INSERT.to_owned()
                };
                sqlx::query(&sql)
                .bind(jti)
                .bind(i64_of(until))
                .execute(&self.pool)
                .await
                .map_err(revocation_err)?;
                let n = self
                    .inserts
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if n.is_multiple_of(SWEEP_EVERY) {
                    sqlx::query("DELETE FROM revoked_tokens WHERE expires_at <= $1")
                        .bind(i64_of(now))
                        .execute(&self.pool)
                        .await
                        .map_err(revocation_err)?;
                }
                Ok(())
            }

            async fn revoke_user(&self, user: &str) -> Result<u64, RevocationError> {
                check("user", user)?;
                self.bump(&format!("user:{user}")).await
            }

            async fn revoke_everyone(&self) -> Result<u64, RevocationError> {
                self.bump("global").await
            }

            async fn epochs(&self, user: &str) -> Result<(u64, u64), RevocationError> {
                let s = self.status("-", user).await?;
                Ok((s.user_epoch, s.global_epoch))
            }

            async fn status(
                &self,
                jti: &str,
                user: &str,
            ) -> Result<coffer_auth::RevocationStatus, RevocationError> {
                check("jti", jti)?;
                check("user", user)?;
                let row = sqlx::query(
                    "SELECT \
                     (SELECT expires_at FROM revoked_tokens WHERE jti = $1) AS denied_until, \
                     (SELECT epoch FROM revocation_epochs WHERE subject = $2) AS user_epoch, \
                     (SELECT epoch FROM revocation_epochs WHERE subject = 'global') AS global_epoch",
                )
                .bind(jti)
                .bind(format!("user:{user}"))
                .fetch_one(&self.pool)
                .await
                .map_err(revocation_err)?;
                let get = |c: &str| -> Result<u64, RevocationError> {
                    let v: Option<i64> = row.try_get(c).map_err(revocation_err)?;
                    Ok(v.map_or(0, |v| u64::try_from(v).unwrap_or(0)))
                };
                Ok(coffer_auth::RevocationStatus {
                    token_revoked: get("denied_until")? > now_secs(),
                    user_epoch: get("user_epoch")?,
                    global_epoch: get("global_epoch")?,
                })
            }
        }
    };
}

/// The channel on which the Postgres revocation list announces each revocation it commits
/// (payload `token:<jti>`, `user:<id>` or `global`), for [`feed_revocations`].
pub const REVOCATION_CHANNEL: &str = "coffer_revocations";

fn check(what: &'static str, s: &str) -> Result<(), RevocationError> {
    if s.is_empty() || s.len() > 256 {
        Err(RevocationError::Invalid(what))
    } else {
        Ok(())
    }
}

mod pg {
    use super::*;
    use crate::audit::PgAuditLog;
    use sqlx::postgres::PgPool;

    auth_stores!(
        PgUserStore,
        PgRevocationList,
        db_type = sqlx::Postgres,
        conn = sqlx::PgConnection,
        pool = PgPool,
        audit = PgAuditLog,
        begin = "BEGIN",
        db = "Postgres",
        announce = true
    );

    /// Keeps `cache` told of every revocation committed on `pool`'s database, by any process:
    /// `LISTEN`s on [`REVOCATION_CHANNEL`] on a connection of its own, marks the cache live
    /// once listening and not live whenever that connection is lost (reconnecting after
    /// `retry`), and when the task ends. Runs until aborted.
    pub async fn feed_revocations(
        pool: PgPool,
        cache: std::sync::Arc<coffer_auth::CachedRevocationList>,
        retry: std::time::Duration,
    ) {
        /// Not live once the feed is gone, however it ends.
        struct Stop<'a>(&'a coffer_auth::CachedRevocationList);
        impl Drop for Stop<'_> {
            fn drop(&mut self) {
                self.0.set_live(false);
            }
        }
        let _stop = Stop(&cache);
        loop {
            let listening = async {
                let mut listener = sqlx::postgres::PgListener::connect_with(&pool).await?;
                listener.listen(REVOCATION_CHANNEL).await?;
                Ok::<_, sqlx::Error>(listener)
            };
            match listening.await {
                Ok(mut listener) => {
                    cache.set_live(true);
                    tracing::debug!("revocation feed listening");
                    while let Ok(Some(n)) = listener.try_recv().await {
                        forget(&cache, n.payload());
                    }
                    cache.set_live(false);
                    tracing::warn!(
                        "revocation feed lost its connection; every token is checked in the \
                         database until it is back"
                    );
                }
                Err(e) => tracing::warn!(error = %e, "revocation feed cannot listen; retrying"),
            }
            tokio::time::sleep(retry).await;
        }
    }

    /// What an announcement says was revoked; anything else forgets everything.
    fn forget(cache: &coffer_auth::CachedRevocationList, payload: &str) {
        if let Some(jti) = payload.strip_prefix("token:") {
            cache.forget_token(jti);
        } else if let Some(user) = payload.strip_prefix("user:") {
            cache.forget_user(user);
        } else if payload == "global" {
            cache.forget_everyone();
        } else {
            // Still live; everything remembered is forgotten.
            cache.set_live(true);
        }
    }
}

mod sqlite {
    use super::*;
    use crate::audit::SqliteAuditLog;
    use sqlx::sqlite::SqlitePool;

    auth_stores!(
        SqliteUserStore,
        SqliteRevocationList,
        db_type = sqlx::Sqlite,
        conn = sqlx::SqliteConnection,
        pool = SqlitePool,
        audit = SqliteAuditLog,
        begin = "BEGIN IMMEDIATE",
        db = "SQLite",
        announce = false
    );
}

pub use pg::{PgRevocationList, PgUserStore, feed_revocations};
pub use sqlite::{SqliteRevocationList, SqliteUserStore};
