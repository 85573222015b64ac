//! The accounts' part of erasing a user, after the ledger erased their wallets: every version of
//! their data key destroyed (their email, phone, tax id and second factor no longer open), the
//! email's blind index replaced (the address can register again), password and roles dropped,
//! sessions, password resets and API keys ended, with a `user.erased` record, in one database
//! transaction (the store's `erase_user`). Then every access token of theirs is revoked and this
//! process forgets their unwrapped data key.
//!
//! An erasure is recorded with its idempotency key and reason: the same request again answers
//! the first erasure (and repeats the revocation, which a crash may have cut off); another key
//! is [`AuthError::UserErased`], the same key with another reason
//! [`AuthError::IdempotencyConflict`].

use coffer_audit::{Action, Actor, Code, Outcome};

use super::Accounts;
use super::error::AuthError;
use super::shared::{RequestContext, user_key_context};
use crate::rbac::Permission;
use crate::store::{ErasureRecord, LoadedUser};
use crate::token::TokenError;
use crate::user::UserId;

impl Accounts {
    /// The user's erasure, if they were erased; [`AuthError::UserNotFound`] if there is no such
    /// user.
    async fn erasure(&self, user: UserId) -> Result<Option<ErasureRecord>, AuthError> {
        Ok(self.any_user(user).await?.record.erased)
    }

    /// A user, erased or not.
    async fn any_user(&self, user: UserId) -> Result<LoadedUser, AuthError> {
        self.store.user(user).await?.ok_or(AuthError::UserNotFound)
    }

    /// What the use case asks before it erases anything of `user`: their erasure if they were
    /// erased, else whether they may be. The last user holding an administrator's role may not
    /// ([`AuthError::LastAdmin`]: give the role to someone else first); the erasure itself
    /// checks that again, serialized with role changes.
    ///
    /// # Errors
    /// [`AuthError::UserNotFound`], [`AuthError::LastAdmin`], the store's.
    pub async fn check_erasable(&self, user: UserId) -> Result<Option<ErasureRecord>, AuthError> {
        let u = self.any_user(user).await?;
        if u.record.erased.is_some() {
            return Ok(u.record.erased);
        }
        let admins = self.rbac.roles_allowing(Permission::UserAdmin);
        if u.record.roles.iter().any(|r| admins.contains(r))
            && self.store.role_holders(&admins).await? <= 1
        {
            return Err(AuthError::LastAdmin);
        }
        Ok(None)
    }

    /// Erases `user` (whose wallets are all erased), `by` an administrator or the operator's
    /// command; see the [module documentation](self).
    ///
    /// # Errors
    /// [`AuthError::UserNotFound`], [`AuthError::UserErased`] under another key,
    /// [`AuthError::IdempotencyConflict`], [`AuthError::LastAdmin`], dependencies.
    pub async fn erase_user(
        &self,
        by: Actor,
        user: UserId,
        idempotency_key: &str,
        reason: &Code,
        ctx: &RequestContext,
    ) -> Result<ErasureRecord, AuthError> {
        if let Some(done) = self.erasure(user).await? {
            if done.idempotency_key != idempotency_key {
                return Err(AuthError::UserErased);
            }
            if done.reason != reason.as_str() {
                return Err(AuthError::IdempotencyConflict);
            }
        } else {
            let mut event = self.event(by, Action::UserErased, Some(user), Outcome::Success, ctx);
            let _ = event
                .details
                .insert("reason", coffer_audit::DetailValue::Code(reason.clone()));
            let admins = self.rbac.roles_allowing(Permission::UserAdmin);
            let receipt = self
                .store
                .erase_user(user, idempotency_key, reason.as_str(), &admins, &event)
                .await?
                .ok_or(AuthError::UserNotFound)?;
            self.audit.committed_elsewhere(&[(event, receipt)]).await;
        }
        self.revocation
            .revoke_user(&user.to_string())
            .await
            .map_err(TokenError::from)?;
        self.keys.forget(&user_key_context(user));
        let done = self.erasure(user).await?.ok_or(AuthError::UserNotFound)?;
        // Two erasures under different keys racing: the first recorded is the one.
        if done.idempotency_key != idempotency_key {
            return Err(AuthError::UserErased);
        }
        Ok(done)
    }
}
