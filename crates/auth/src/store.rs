//! The user-store port: users (their personal data only as envelopes under their own data key,
//! found by the email's blind index), refresh-token families, password resets, API keys, the
//! token signing keys (sealed under a data key the KEK wraps) and the service's own wrapped
//! secrets (the blind-index key).
//!
//! Every write that changes who may do what carries its audit record, appended in the same
//! database transaction (so a registration, a role change or a revoked family and its record
//! commit together); the receipt lets the service hand it to the alert rules afterwards.

use std::fmt;

use async_trait::async_trait;
use coffer_audit::{AuditEvent, Receipt};
use coffer_crypto::Envelope;
use coffer_keys::WrappedKey;

use crate::api_key::{ApiKeyId, ApiKeyOwner, ApiKeyRecord};
use crate::opaque::TokenHash;
use crate::refresh::{RefreshHash, RefreshRecord};
use crate::reset::ResetRecord;
use crate::user::UserId;

/// The cause of an opaque failure: any error, or a message (`"…".into()`); the source chain is
/// kept.
pub type Cause = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Errors of the user store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UserStoreError {
    /// Another user has this email (its blind index).
    #[error("email already registered")]
    DuplicateEmail,
    /// The change would leave no user holding any of the roles that must keep a holder.
    #[error("no user would hold an administrator's role")]
    LastHolder,
    /// The user to erase has a wallet that is not erased (opened while the erasure ran).
    #[error("the user has a wallet that is not erased")]
    WalletsRemain,
    /// The database does not answer. Retry later.
    #[error("user store unavailable: {0}")]
    Unavailable(#[source] Cause),
    /// A stored row does not decode.
    #[error("user store holds a corrupt row: {0}")]
    Corrupt(#[source] Cause),
    /// Anything else the database reported.
    #[error("user store: {0}")]
    Storage(#[source] Cause),
}

/// A user's second factor as stored.
#[derive(Clone, PartialEq, Eq)]
pub struct TotpRecord {
    /// The secret, an envelope under the user's data key.
    pub sealed: Envelope,
    /// Whether a code was entered to confirm enrollment (until then it is not asked for).
    pub confirmed: bool,
    /// The last step a code was accepted for (replays of it and earlier steps are refused).
    pub last_step: u64,
}

coffer_macros::debug_non_exhaustive!(self => TotpRecord { confirmed, last_step });

/// A user as stored. Personal data fields are envelopes (bound to the user and the field).
#[derive(Clone, PartialEq, Eq)]
pub struct UserRecord {
    /// The id.
    pub id: UserId,
    /// HMAC of the normalised email under the blind-index key (unique).
    pub email_index: [u8; 32],
    /// The email, sealed.
    pub email: Envelope,
    /// The phone number, sealed.
    pub phone: Option<Envelope>,
    /// The tax id, sealed.
    pub tax_id: Option<Envelope>,
    /// Argon2id PHC string.
    pub password_hash: String,
    /// Role names.
    pub roles: Vec<String>,
    /// The data key version the fields are sealed under.
    pub dek_version: u32,
    /// The second factor, if enrolled.
    pub totp: Option<TotpRecord>,
    /// Creation time, microseconds since the epoch.
    pub created_at: i64,
    /// Set once the user is erased: their data key is destroyed, and the fields above are
    /// cleared or sealed under it for good.
    pub erased: Option<ErasureRecord>,
}

coffer_macros::debug_non_exhaustive!(self => UserRecord { id, roles, dek_version, totp, erased });

/// When and why a user was erased, and under which idempotency key (a retry answers the first
/// result).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErasureRecord {
    /// When, microseconds since the epoch.
    pub at: i64,
    /// The request's idempotency key.
    pub idempotency_key: String,
    /// The reason code given.
    pub reason: String,
}

/// One version of a user's data key, wrapped by the KEK.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserKeyRecord {
    /// Its version.
    pub version: u32,
    /// The key, wrapped.
    pub wrapped: WrappedKey,
    /// The KEK version that wrapped it (the rotation's work list).
    pub kek_version: u32,
}

/// A user's fields sealed under a new data key version, for [`UserStore::rotate_user_key`].
#[derive(Debug)]
pub struct UserKeyRotation<'a> {
    /// Whose.
    pub user: UserId,
    /// The version the fields were sealed under when read.
    pub from: u32,
    /// The new version (wrapped).
    pub key: &'a UserKeyRecord,
    /// The email, sealed under the new version.
    pub email: &'a Envelope,
    /// The phone, likewise.
    pub phone: Option<&'a Envelope>,
    /// The tax id, likewise.
    pub tax_id: Option<&'a Envelope>,
    /// The TOTP secret, likewise.
    pub totp: Option<&'a Envelope>,
    /// The TOTP secret as read (an enrollment meanwhile makes the rotation start again).
    pub totp_was: Option<&'a Envelope>,
    /// The record of it.
    pub audit: &'a AuditEvent,
}

/// A user with every version of their data key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadedUser {
    /// The row.
    pub record: UserRecord,
    /// Its keys.
    pub keys: Vec<UserKeyRecord>,
}

/// A token signing key as stored: its private half sealed under a data key of its own, which
/// the KEK wraps.
#[derive(Clone, PartialEq, Eq)]
pub struct StoredSigningKey {
    /// RFC 7638 thumbprint.
    pub kid: String,
    /// The data key, `WrappedKey::to_bytes`.
    pub wrapped_dek: Vec<u8>,
    /// The KEK version that wrapped it.
    pub kek_version: u32,
    /// The PKCS#1 DER private key, an envelope under the data key.
    pub sealed: Vec<u8>,
    /// When it started signing, seconds since the epoch.
    pub created_at: u64,
    /// When it stopped signing.
    pub retired_at: Option<u64>,
}

coffer_macros::debug_non_exhaustive!(self => StoredSigningKey { kid, created_at, retired_at });

/// One refresh rotation, applied atomically or not at all.
#[derive(Debug, Clone)]
pub struct Rotation<'a> {
    /// The presented token.
    pub presented: RefreshHash,
    /// What its `replaced_by` must still be (compare-and-swap): `None` for a first use, the
    /// orphan for a grace-window retry.
    pub expected_replaced_by: Option<RefreshHash>,
    /// The new token (its `spent_at` and `replaced_by` unset).
    pub next: &'a RefreshRecord,
    /// Now, seconds since the epoch (the presented token's `spent_at`, if unset).
    pub now: u64,
}

/// The user-store port. Used as `Arc<dyn UserStore>`.
#[async_trait]
pub trait UserStore: Send + Sync + fmt::Debug {
    /// Inserts a user with its first data key and the registration's audit record.
    ///
    /// # Errors
    /// [`UserStoreError::DuplicateEmail`] when the email's index is taken.
    async fn create_user(
        &self,
        user: &UserRecord,
        key: &UserKeyRecord,
        audit: &AuditEvent,
    ) -> Result<Receipt, UserStoreError>;

    /// A user by id.
    async fn user(&self, id: UserId) -> Result<Option<LoadedUser>, UserStoreError>;

    /// A user by the blind index of their email.
    async fn user_by_email(&self, index: &[u8; 32]) -> Result<Option<LoadedUser>, UserStoreError>;

    /// Erases a user whose wallets are all erased already: every version of their data key
    /// destroyed, their personal fields, password, roles and second factor cleared, the email's
    /// blind index replaced by one no email has, their sessions and password resets deleted,
    /// their API keys revoked, `erased` recorded (an erased user's first erasure is kept), with
    /// `audit`, in one transaction. `None` if there is no such user. Refused with
    /// [`UserStoreError::LastHolder`] (nothing written) when afterwards no user would hold any of
    /// `keep_held`, serialized with role changes as [`UserStore::set_roles`] is. On Postgres the
    /// key rows go through a function the application role may execute, never a `DELETE` of its
    /// own. Refused with [`UserStoreError::WalletsRemain`] (nothing written) while a wallet of
    /// the user is not erased.
    async fn erase_user(
        &self,
        id: UserId,
        idempotency_key: &str,
        reason: &str,
        keep_held: &[String],
        audit: &AuditEvent,
    ) -> Result<Option<Receipt>, UserStoreError>;

    /// How many users hold one of `roles`.
    async fn role_holders(&self, roles: &[String]) -> Result<u64, UserStoreError>;

    /// Replaces a user's roles; `None` if there is no such user. Refused with
    /// [`UserStoreError::LastHolder`] (nothing written) when afterwards no user would hold any of
    /// `keep_held` (the administrators' roles). Role changes are serialized, so two concurrent
    /// changes cannot each remove one of the last two holders.
    async fn set_roles(
        &self,
        id: UserId,
        roles: &[String],
        keep_held: &[String],
        audit: &AuditEvent,
    ) -> Result<Option<Receipt>, UserStoreError>;

    /// Sets or removes a user's second factor, only while its confirmed state is still
    /// `expect_confirmed` (an enrollment never overwrites a factor confirmed meanwhile) and the
    /// user's data key is still `dek_version`, the one `totp` is sealed under (a data-key
    /// rotation in between would leave it unreadable); `None` when no row matched.
    async fn set_totp(
        &self,
        id: UserId,
        totp: Option<&TotpRecord>,
        expect_confirmed: bool,
        dek_version: u32,
        audit: &AuditEvent,
    ) -> Result<Option<Receipt>, UserStoreError>;

    /// Replaces a user's password hash, only while it is still `expect_hash` (the one the
    /// current password was checked against: of two changes at once, one wins), and revokes
    /// every refresh family of the user but `keep_family` (the session that asked), with the
    /// audit record, in one transaction. `None` (nothing written) when the hash changed
    /// meanwhile or there is no such user.
    async fn change_password(
        &self,
        id: UserId,
        new_hash: &str,
        expect_hash: &str,
        keep_family: Option<uuid::Uuid>,
        audit: &AuditEvent,
    ) -> Result<Option<Receipt>, UserStoreError>;

    /// Stores `reset` as its user's one pending password reset (one pending before stops
    /// working), with the audit record. `None` (nothing written) when there is no such user.
    async fn issue_password_reset(
        &self,
        reset: &ResetRecord,
        audit: &AuditEvent,
    ) -> Result<Option<Receipt>, UserStoreError>;

    /// The pending password reset whose token hashes to `hash`.
    async fn password_reset(&self, hash: &TokenHash)
    -> Result<Option<ResetRecord>, UserStoreError>;

    /// Redeems the pending reset `hash` of `reset.user` while it is still pending and not expired
    /// at `now` (seconds since the epoch): deletes it, sets the user's password hash to
    /// `new_hash` and revokes every refresh family of the user, with the audit record, in one
    /// transaction. `None` (nothing written) when it was redeemed, replaced or expired meanwhile:
    /// a token works once.
    async fn redeem_password_reset(
        &self,
        reset: &ResetRecord,
        new_hash: &str,
        now: u64,
        audit: &AuditEvent,
    ) -> Result<Option<Receipt>, UserStoreError>;

    /// Deletes the password resets no longer working at `now` (seconds since the epoch): those
    /// whose `expires_at` is not later; how many went.
    async fn purge_password_resets(&self, now: u64) -> Result<u64, UserStoreError>;

    /// Stores a new API key with the audit record. `None` (nothing written) when there is no
    /// such user.
    async fn create_api_key(
        &self,
        key: &ApiKeyRecord,
        audit: &AuditEvent,
    ) -> Result<Option<Receipt>, UserStoreError>;

    /// The API key whose secret hashes to `hash`, with its owner's roles now (revoked and
    /// expired keys too: the caller tells them apart).
    async fn api_key_by_hash(
        &self,
        hash: &TokenHash,
    ) -> Result<Option<ApiKeyOwner>, UserStoreError>;

    /// An API key by id.
    async fn api_key(&self, id: ApiKeyId) -> Result<Option<ApiKeyRecord>, UserStoreError>;

    /// Up to `limit` API keys with ids after `after`, in id order; only `user`'s when given.
    async fn api_keys(
        &self,
        user: Option<UserId>,
        after: Option<ApiKeyId>,
        limit: u32,
    ) -> Result<Vec<ApiKeyRecord>, UserStoreError>;

    /// Marks a key revoked at `at` (seconds since the epoch), with the audit record, while it
    /// is not revoked yet. `None` (nothing written) when it is revoked already or unknown.
    async fn revoke_api_key(
        &self,
        id: ApiKeyId,
        at: u64,
        audit: &AuditEvent,
    ) -> Result<Option<Receipt>, UserStoreError>;

    /// Moves a user to a new data key version: stores `key` and the user's fields sealed under
    /// it, with the audit record, only while the user's data key is still `from` and the second
    /// factor still `totp_was`. `None` (nothing written) when the user changed meanwhile.
    async fn rotate_user_key(
        &self,
        rotation: &UserKeyRotation<'_>,
    ) -> Result<Option<Receipt>, UserStoreError>;

    /// Claims TOTP step `step` for a user: true only if it is later than the last step claimed
    /// (one statement, so two requests with one code cannot both win).
    async fn claim_totp_step(&self, id: UserId, step: u64) -> Result<bool, UserStoreError>;

    /// Stores the first token of a new family (a login) with the login's audit record.
    async fn start_family(
        &self,
        first: &RefreshRecord,
        audit: &AuditEvent,
    ) -> Result<Receipt, UserStoreError>;

    /// A refresh token by hash.
    async fn refresh_token(
        &self,
        hash: &RefreshHash,
    ) -> Result<Option<RefreshRecord>, UserStoreError>;

    /// Applies a rotation: the presented token is marked spent (its `spent_at` only if unset)
    /// and replaced by `next`, but only if it is not revoked and its `replaced_by` is still
    /// `expected_replaced_by`; the orphan (if expected) is revoked as superseded, but only if it
    /// was never used; `next` is inserted. False, changing nothing, when a condition failed (a
    /// concurrent use won): the caller decides again on fresh records.
    async fn rotate_refresh(&self, rotation: &Rotation<'_>) -> Result<bool, UserStoreError>;

    /// Revokes every token of a family, with an audit record if given; how many were live.
    /// Tokens that a rotation racing the revocation inserts are revoked too: when this returns,
    /// nothing in the family is live.
    async fn revoke_family(
        &self,
        family: uuid::Uuid,
        audit: Option<&AuditEvent>,
    ) -> Result<(u64, Option<Receipt>), UserStoreError>;

    /// Revokes every family of a user, with an audit record.
    async fn revoke_user_families(
        &self,
        user: UserId,
        audit: &AuditEvent,
    ) -> Result<Receipt, UserStoreError>;

    /// Revokes every family of every user (the emergency revoke), with an audit record.
    async fn revoke_every_family(&self, audit: &AuditEvent) -> Result<Receipt, UserStoreError>;

    /// Deletes the tokens of families that ended before `before` (seconds since the epoch);
    /// how many rows went.
    async fn purge_families(&self, before: u64) -> Result<u64, UserStoreError>;

    /// Every stored signing key not dropped, oldest first.
    async fn signing_keys(&self) -> Result<Vec<StoredSigningKey>, UserStoreError>;

    /// Drops a retired signing key for good (compromised): no later load returns it. False if
    /// there is no such retired key (the current one cannot be dropped: rotate first).
    async fn drop_signing_key(&self, kid: &str, at: u64) -> Result<bool, UserStoreError>;

    /// Adds `key` as the signing key, retiring the current one at `key.created_at`. False,
    /// changing nothing, when another key became current meanwhile (at most one key is current,
    /// which the schema enforces) or, with `only_if_none`, when a key is already signing: the
    /// first start of several replicas at once makes one key.
    async fn add_signing_key(
        &self,
        key: &StoredSigningKey,
        only_if_none: bool,
    ) -> Result<bool, UserStoreError>;

    /// The service secret stored under `purpose` (a wrapped data key), if created.
    async fn secret(&self, purpose: &str) -> Result<Option<Vec<u8>>, UserStoreError>;

    /// Stores a service secret unless one exists for `purpose` (whoever wins a creation race,
    /// everyone then reads the stored one).
    async fn insert_secret(
        &self,
        purpose: &str,
        wrapped: &[u8],
        kek_version: u32,
    ) -> Result<(), UserStoreError>;
}
