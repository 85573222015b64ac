//! The user store and the persistent revocation list on Postgres and SQLite, on sqlx.
//!
//! One body of portable SQL serves both databases: each module below holds one aggregate's
//! statements in a small macro, expanded once per database; the dialects differ only in how a
//! write transaction begins (SQLite takes the write lock up front with `BEGIN IMMEDIATE`), in the
//! audit adapter, and in Postgres announcing each revocation. Every write that changes who may do
//! what appends its audit record inside the same database transaction (the audit log's
//! `append_in`), so the change and its record commit together.
//!
//! - `rows`: column lists, row decoders, the conversions and error translation they share (a
//!   leaf);
//! - `users`: users, their data keys, roles and second factor;
//! - `refresh`: refresh families and their compare-and-swap rotation;
//! - `signing`: the token signing keys' index and the service secrets;
//! - `revocation`: the revocation lists, [`PgRevocationList`] and [`SqliteRevocationList`];
//! - `feed`: [`feed_revocations`], which relays the Postgres list's announcements on
//!   [`REVOCATION_CHANNEL`] to a process's
//!   [`CachedRevocationList`](coffer_auth::CachedRevocationList).
//!
//! This module defines the user stores, [`PgUserStore`] and [`SqliteUserStore`], and hands each
//! method of the [`UserStore`] port to its aggregate's function for the database.
//!
//! The times the stores write (`updated_at` of users, `created_at` of service secrets) and the
//! revocation lists' idea of an expired entry come from a clock: the system's from `new`,
//! another from `with_clock`.

use coffer_auth::refresh::{RefreshHash, RefreshRecord};
use coffer_auth::store::{
    LoadedUser, StoredSigningKey, TotpRecord, UserKeyRecord, UserRecord, UserStore, UserStoreError,
};
use coffer_auth::user::UserId;
use sqlx::postgres::PgPool;
use sqlx::sqlite::SqlitePool;
use uuid::Uuid;

use crate::audit::{PgAuditLog, SqliteAuditLog};

mod feed;
mod refresh;
mod revocation;
mod rows;
mod signing;
mod users;

pub use feed::feed_revocations;
pub use revocation::{PgRevocationList, REVOCATION_CHANNEL, SqliteRevocationList};

fn audit_err(e: coffer_audit::AuditError) -> UserStoreError {
    match e {
        coffer_audit::AuditError::Unavailable(m) => UserStoreError::Unavailable(m),
        other => UserStoreError::Storage(format!("audit: {other}")),
    }
}

/// Expands to the user store `$store` on one database: the type, and the port, each method
/// running its aggregate's function for the database (`users::$sql`, `refresh::$sql`,
/// `signing::$sql`).
macro_rules! user_store {
    ($store:ident, pool = $Pool:ty, audit = $Audit:ty, db = $db:literal, sql = $sql:ident) => {
        #[doc = concat!("The user store on ", $db, " (see the module documentation).")]
        #[derive(Clone)]
        pub struct $store {
            pool: $Pool,
            audit: $Audit,
            clock: std::sync::Arc<dyn coffer_clock::Clock>,
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
                Self {
                    pool,
                    audit,
                    clock: coffer_clock::system(),
                }
            }

            /// The same store, reading the time from `clock`.
            #[must_use]
            pub fn with_clock(mut self, clock: std::sync::Arc<dyn coffer_clock::Clock>) -> Self {
                self.clock = clock;
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
                users::$sql::create_user(self, user, key, audit).await
            }

            async fn user(&self, id: UserId) -> Result<Option<LoadedUser>, UserStoreError> {
                users::$sql::user(self, id).await
            }

            async fn user_by_email(
                &self,
                index: &[u8; 32],
            ) -> Result<Option<LoadedUser>, UserStoreError> {
                users::$sql::user_by_email(self, index).await
            }

            async fn set_roles(
                &self,
                id: UserId,
                roles: &[String],
                audit: &coffer_audit::AuditEvent,
            ) -> Result<Option<coffer_audit::Receipt>, UserStoreError> {
                users::$sql::set_roles(self, id, roles, audit).await
            }

            async fn set_totp(
                &self,
                id: UserId,
                totp: Option<&TotpRecord>,
                expect_confirmed: bool,
                dek_version: u32,
                audit: &coffer_audit::AuditEvent,
            ) -> Result<Option<coffer_audit::Receipt>, UserStoreError> {
                users::$sql::set_totp(self, id, totp, expect_confirmed, dek_version, audit).await
            }

            async fn rotate_user_key(
                &self,
                r: &coffer_auth::store::UserKeyRotation<'_>,
            ) -> Result<Option<coffer_audit::Receipt>, UserStoreError> {
                users::$sql::rotate_user_key(self, r).await
            }

            async fn claim_totp_step(&self, id: UserId, step: u64) -> Result<bool, UserStoreError> {
                users::$sql::claim_totp_step(self, id, step).await
            }

            async fn start_family(
                &self,
                first: &RefreshRecord,
                audit: &coffer_audit::AuditEvent,
            ) -> Result<coffer_audit::Receipt, UserStoreError> {
                refresh::$sql::start_family(self, first, audit).await
            }

            async fn refresh_token(
                &self,
                hash: &RefreshHash,
            ) -> Result<Option<RefreshRecord>, UserStoreError> {
                refresh::$sql::refresh_token(self, hash).await
            }

            async fn rotate_refresh(
                &self,
                r: &coffer_auth::store::Rotation<'_>,
            ) -> Result<bool, UserStoreError> {
                refresh::$sql::rotate_refresh(self, r).await
            }

            async fn revoke_family(
                &self,
                family: Uuid,
                audit: Option<&coffer_audit::AuditEvent>,
            ) -> Result<(u64, Option<coffer_audit::Receipt>), UserStoreError> {
                refresh::$sql::revoke_family(self, family, audit).await
            }

            async fn revoke_user_families(
                &self,
                user: UserId,
                audit: &coffer_audit::AuditEvent,
            ) -> Result<coffer_audit::Receipt, UserStoreError> {
                refresh::$sql::revoke_user_families(self, user, audit).await
            }

            async fn revoke_every_family(
                &self,
                audit: &coffer_audit::AuditEvent,
            ) -> Result<coffer_audit::Receipt, UserStoreError> {
                refresh::$sql::revoke_every_family(self, audit).await
            }

            async fn purge_families(&self, before: u64) -> Result<u64, UserStoreError> {
                refresh::$sql::purge_families(self, before).await
            }

            async fn signing_keys(&self) -> Result<Vec<StoredSigningKey>, UserStoreError> {
                signing::$sql::signing_keys(self).await
            }

            async fn add_signing_key(
                &self,
                key: &StoredSigningKey,
                only_if_none: bool,
            ) -> Result<bool, UserStoreError> {
                signing::$sql::add_signing_key(self, key, only_if_none).await
            }

            async fn drop_signing_key(&self, kid: &str, at: u64) -> Result<bool, UserStoreError> {
                signing::$sql::drop_signing_key(self, kid, at).await
            }

            async fn secret(&self, purpose: &str) -> Result<Option<Vec<u8>>, UserStoreError> {
                signing::$sql::secret(self, purpose).await
            }

            async fn insert_secret(
                &self,
                purpose: &str,
                wrapped: &[u8],
                kek_version: u32,
            ) -> Result<(), UserStoreError> {
                signing::$sql::insert_secret(self, purpose, wrapped, kek_version).await
            }
        }
    };
}

user_store!(
    PgUserStore,
    pool = PgPool,
    audit = PgAuditLog,
    db = "Postgres",
    sql = pg
);
user_store!(
    SqliteUserStore,
    pool = SqlitePool,
    audit = SqliteAuditLog,
    db = "SQLite",
    sql = sqlite
);
