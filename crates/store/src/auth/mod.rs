//! The user store and the persistent revocation list on Postgres and SQLite, on sqlx.
//!
//! One body of portable SQL serves both databases: each aggregate's module below holds its
//! statements in an `impl` block on [`UserStoreOn`], generic over the database's
//! [`AuthDialect`]; the dialects differ only in how a write transaction begins (SQLite takes the
//! write lock up front with `BEGIN IMMEDIATE`) and in the audit adapter (both every store's,
//! [`crate::dialect`]), and Postgres announces each revocation ([`pg`], [`sqlite`]). Every write
//! that changes who may do what appends its audit record inside the same database transaction
//! (the audit log's `append_in`), so the change and its record commit together.
//!
//! - `pg`, `sqlite`: [`AuthDialect`]'s two implementations;
//! - `rows`: column lists, row decoders, the conversions and error translation they share (a
//!   leaf);
//! - `users`: users, their data keys, roles and second factor, and their erasure;
//! - `refresh`: refresh families and their compare-and-swap rotation;
//! - `resets`: pending password resets and their one-time redemption;
//! - `api_keys`: service accounts' API keys, found by their secret's hash;
//! - `signing`: the token signing keys' index and the service secrets;
//! - `revocation`: the revocation lists, [`PgRevocationList`] and [`SqliteRevocationList`];
//! - `feed`: [`feed_revocations`], which relays the Postgres list's announcements on
//!   [`REVOCATION_CHANNEL`] to a process's
//!   [`CachedRevocationList`](coffer_auth::CachedRevocationList).
//!
//! This module defines the dialect trait, [`UserStoreOn`], and the user stores, [`PgUserStore`]
//! and [`SqliteUserStore`]: thin shells (made by `user_store!`) that hand each method of the
//! [`UserStore`] port to its aggregate's function on `UserStoreOn<dialect>`.
//!
//! The times the stores write (`updated_at` of users, `created_at` of service secrets) and the
//! revocation lists' idea of an expired entry come from a clock: the system's from `new`,
//! another from `with_clock`.

use coffer_auth::api_key::{ApiKeyId, ApiKeyOwner, ApiKeyRecord};
use coffer_auth::opaque::TokenHash;
use coffer_auth::refresh::{RefreshHash, RefreshRecord};
use coffer_auth::reset::ResetRecord;
use coffer_auth::store::{
    LoadedUser, StoredSigningKey, TotpRecord, UserKeyRecord, UserRecord, UserStore, UserStoreError,
};
use coffer_auth::user::UserId;
use sqlx::Pool;
use sqlx::postgres::PgPool;
use sqlx::sqlite::SqlitePool;
use uuid::Uuid;

use crate::audit::{PgAuditLog, SqliteAuditLog};
use crate::dialect::{Conn, Dialect};

mod api_keys;
mod feed;
mod pg;
mod refresh;
mod resets;
mod revocation;
mod rows;
mod signing;
mod sqlite;
mod users;

pub use feed::{ERASED_WALLET, FeedListeners, feed_revocations};
pub use revocation::{PgRevocationList, REVOCATION_CHANNEL, SqliteRevocationList};

/// What the user store and the revocation list do differently on each database, beyond the
/// [`Dialect`] ([`pg`], [`sqlite`]); everything else is the aggregates' (`users`, `refresh`,
/// `signing`, on [`UserStoreOn`]) and the revocation list's.
pub(super) trait AuthDialect: Dialect {
    /// Whether each revocation is announced on [`REVOCATION_CHANNEL`] (Postgres' `pg_notify`).
    const ANNOUNCE: bool;
    /// What a role change runs first in its transaction so that role changes happen one at a
    /// time (`None` where the transaction already holds the database's write lock).
    const SERIALIZE_ROLE_CHANGES: Option<&'static str>;

    /// The rows of a user's erasure (`UserStore::erase_user`), without the audit record: false
    /// when there is no such user.
    async fn erase_user_rows(
        conn: &mut Conn<Self>,
        id: Uuid,
        at: i64,
        idempotency_key: &str,
        reason: &str,
    ) -> Result<bool, UserStoreError>;
}

/// The user store on the database of `D`: its pool, audit log and clock; each aggregate's
/// module adds its statements.
pub(super) struct UserStoreOn<D: AuthDialect> {
    pool: Pool<D::Db>,
    audit: D::Audit,
    clock: std::sync::Arc<dyn coffer_clock::Clock>,
}

impl<D: AuthDialect> Clone for UserStoreOn<D> {
    fn clone(&self) -> Self {
        Self {
            pool: self.pool.clone(),
            audit: self.audit.clone(),
            clock: std::sync::Arc::clone(&self.clock),
        }
    }
}

fn audit_err(e: coffer_audit::AuditError) -> UserStoreError {
    match e {
        coffer_audit::AuditError::Unavailable(m) => UserStoreError::Unavailable(m),
        other => UserStoreError::Storage(other.into()),
    }
}

/// Expands to the user store `$store` on one dialect: a thin shell around [`UserStoreOn`] that
/// implements the port, each method running its aggregate's statements (`users`, `refresh`,
/// `signing`).
macro_rules! user_store {
    ($store:ident, dialect = $D:ty, pool = $Pool:ty, audit = $Audit:ty, db = $db:literal) => {
        #[doc = concat!("The user store on ", $db, " (see the module documentation).")]
        #[derive(Clone)]
        pub struct $store(UserStoreOn<$D>);

        coffer_macros::debug_non_exhaustive!(self => $store {});

        impl $store {
            /// A store on `pool` (migrated), appending its audit records through `audit` (on
            /// the same database).
            #[must_use]
            pub fn new(pool: $Pool, audit: $Audit) -> Self {
                Self(UserStoreOn {
                    pool,
                    audit,
                    clock: coffer_clock::system(),
                })
            }

            /// The same store, reading the time from `clock`.
            #[must_use]
            pub fn with_clock(mut self, clock: std::sync::Arc<dyn coffer_clock::Clock>) -> Self {
                self.0.clock = clock;
                self
            }
        }

        #[async_trait::async_trait]
        impl UserStore for $store {
            async fn create_user(
                &self,
                user: &UserRecord,
                key: &UserKeyRecord,
                audit: &coffer_audit::AuditEvent,
            ) -> Result<coffer_audit::Receipt, UserStoreError> {
                UserStoreOn::create_user(&self.0, user, key, audit).await
            }

            async fn user(&self, id: UserId) -> Result<Option<LoadedUser>, UserStoreError> {
                UserStoreOn::user(&self.0, id).await
            }

            async fn user_by_email(
                &self,
                index: &[u8; 32],
            ) -> Result<Option<LoadedUser>, UserStoreError> {
                UserStoreOn::user_by_email(&self.0, index).await
            }

            async fn erase_user(
                &self,
                id: UserId,
                idempotency_key: &str,
                reason: &str,
                keep_held: &[String],
                audit: &coffer_audit::AuditEvent,
            ) -> Result<Option<coffer_audit::Receipt>, UserStoreError> {
                UserStoreOn::erase_user(&self.0, id, idempotency_key, reason, keep_held, audit)
                    .await
            }

            async fn role_holders(&self, roles: &[String]) -> Result<u64, UserStoreError> {
                UserStoreOn::role_holders(&self.0, roles).await
            }

            async fn set_roles(
                &self,
                id: UserId,
                roles: &[String],
                keep_held: &[String],
                audit: &coffer_audit::AuditEvent,
            ) -> Result<Option<coffer_audit::Receipt>, UserStoreError> {
                UserStoreOn::set_roles(&self.0, id, roles, keep_held, audit).await
            }

            async fn set_totp(
                &self,
                id: UserId,
                totp: Option<&TotpRecord>,
                expect_confirmed: bool,
                dek_version: u32,
                audit: &coffer_audit::AuditEvent,
            ) -> Result<Option<coffer_audit::Receipt>, UserStoreError> {
                UserStoreOn::set_totp(&self.0, id, totp, expect_confirmed, dek_version, audit).await
            }

            async fn change_password(
                &self,
                id: UserId,
                new_hash: &str,
                expect_hash: &str,
                keep_family: Option<Uuid>,
                audit: &coffer_audit::AuditEvent,
            ) -> Result<Option<coffer_audit::Receipt>, UserStoreError> {
                UserStoreOn::change_password(&self.0, id, new_hash, expect_hash, keep_family, audit)
                    .await
            }

            async fn issue_password_reset(
                &self,
                reset: &ResetRecord,
                audit: &coffer_audit::AuditEvent,
            ) -> Result<Option<coffer_audit::Receipt>, UserStoreError> {
                UserStoreOn::issue_password_reset(&self.0, reset, audit).await
            }

            async fn password_reset(
                &self,
                hash: &TokenHash,
            ) -> Result<Option<ResetRecord>, UserStoreError> {
                UserStoreOn::password_reset(&self.0, hash).await
            }

            async fn redeem_password_reset(
                &self,
                reset: &ResetRecord,
                new_hash: &str,
                now: u64,
                audit: &coffer_audit::AuditEvent,
            ) -> Result<Option<coffer_audit::Receipt>, UserStoreError> {
                UserStoreOn::redeem_password_reset(&self.0, reset, new_hash, now, audit).await
            }

            async fn purge_password_resets(&self, now: u64) -> Result<u64, UserStoreError> {
                UserStoreOn::purge_password_resets(&self.0, now).await
            }

            async fn create_api_key(
                &self,
                key: &ApiKeyRecord,
                audit: &coffer_audit::AuditEvent,
            ) -> Result<Option<coffer_audit::Receipt>, UserStoreError> {
                UserStoreOn::create_api_key(&self.0, key, audit).await
            }

            async fn api_key_by_hash(
                &self,
                hash: &TokenHash,
            ) -> Result<Option<ApiKeyOwner>, UserStoreError> {
                UserStoreOn::api_key_by_hash(&self.0, hash).await
            }

            async fn api_key(&self, id: ApiKeyId) -> Result<Option<ApiKeyRecord>, UserStoreError> {
                UserStoreOn::api_key(&self.0, id).await
            }

            async fn api_keys(
                &self,
                user: Option<UserId>,
                after: Option<ApiKeyId>,
                limit: u32,
            ) -> Result<Vec<ApiKeyRecord>, UserStoreError> {
                UserStoreOn::api_keys(&self.0, user, after, limit).await
            }

            async fn revoke_api_key(
                &self,
                id: ApiKeyId,
                at: u64,
                audit: &coffer_audit::AuditEvent,
            ) -> Result<Option<coffer_audit::Receipt>, UserStoreError> {
                UserStoreOn::revoke_api_key(&self.0, id, at, audit).await
            }

            async fn rotate_user_key(
                &self,
                r: &coffer_auth::store::UserKeyRotation<'_>,
            ) -> Result<Option<coffer_audit::Receipt>, UserStoreError> {
                UserStoreOn::rotate_user_key(&self.0, r).await
            }

            async fn claim_totp_step(&self, id: UserId, step: u64) -> Result<bool, UserStoreError> {
                UserStoreOn::claim_totp_step(&self.0, id, step).await
            }

            async fn start_family(
                &self,
                first: &RefreshRecord,
                audit: &coffer_audit::AuditEvent,
            ) -> Result<coffer_audit::Receipt, UserStoreError> {
                UserStoreOn::start_family(&self.0, first, audit).await
            }

            async fn refresh_token(
                &self,
                hash: &RefreshHash,
            ) -> Result<Option<RefreshRecord>, UserStoreError> {
                UserStoreOn::refresh_token(&self.0, hash).await
            }

            async fn rotate_refresh(
                &self,
                r: &coffer_auth::store::Rotation<'_>,
            ) -> Result<bool, UserStoreError> {
                UserStoreOn::rotate_refresh(&self.0, r).await
            }

            async fn revoke_family(
                &self,
                family: Uuid,
                audit: Option<&coffer_audit::AuditEvent>,
            ) -> Result<(u64, Option<coffer_audit::Receipt>), UserStoreError> {
                UserStoreOn::revoke_family(&self.0, family, audit).await
            }

            async fn revoke_user_families(
                &self,
                user: UserId,
                audit: &coffer_audit::AuditEvent,
            ) -> Result<coffer_audit::Receipt, UserStoreError> {
                UserStoreOn::revoke_user_families(&self.0, user, audit).await
            }

            async fn revoke_every_family(
                &self,
                audit: &coffer_audit::AuditEvent,
            ) -> Result<coffer_audit::Receipt, UserStoreError> {
                UserStoreOn::revoke_every_family(&self.0, audit).await
            }

            async fn purge_families(&self, before: u64) -> Result<u64, UserStoreError> {
                UserStoreOn::purge_families(&self.0, before).await
            }

            async fn signing_keys(&self) -> Result<Vec<StoredSigningKey>, UserStoreError> {
                UserStoreOn::signing_keys(&self.0).await
            }

            async fn add_signing_key(
                &self,
                key: &StoredSigningKey,
                only_if_none: bool,
            ) -> Result<bool, UserStoreError> {
                UserStoreOn::add_signing_key(&self.0, key, only_if_none).await
            }

            async fn drop_signing_key(&self, kid: &str, at: u64) -> Result<bool, UserStoreError> {
                UserStoreOn::drop_signing_key(&self.0, kid, at).await
            }

            async fn secret(&self, purpose: &str) -> Result<Option<Vec<u8>>, UserStoreError> {
                UserStoreOn::secret(&self.0, purpose).await
            }

            async fn insert_secret(
                &self,
                purpose: &str,
                wrapped: &[u8],
                kek_version: u32,
            ) -> Result<(), UserStoreError> {
                UserStoreOn::insert_secret(&self.0, purpose, wrapped, kek_version).await
            }
        }
    };
}

user_store!(
    PgUserStore,
    dialect = crate::dialect::Pg,
    pool = PgPool,
    audit = PgAuditLog,
    db = "Postgres"
);
user_store!(
    SqliteUserStore,
    dialect = crate::dialect::Sqlite,
    pool = SqlitePool,
    audit = SqliteAuditLog,
    db = "SQLite"
);
