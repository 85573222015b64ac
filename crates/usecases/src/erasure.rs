//! Erasing a user (`user:erase`), for an administrator or the operator's command: the ledger
//! closes and erases every wallet of theirs (each must be empty, or hold no more than the
//! remainder an erasure sweeps to its currency's unclaimed-funds wallet), then the accounts erase
//! the user. Two database transactions, in that order, each with its audit records: a crash between
//! them leaves the wallets erased and the user not, and the same request again finishes it
//! (both steps are idempotent; the user's erasure keeps the first idempotency key). A wallet the
//! user opens in between makes the second step refuse, and both run again.

use coffer_audit::Actor;
use coffer_auth::Principal;
use coffer_auth::accounts::{AuthError, RequestContext};
use coffer_auth::rbac::Permission;
use coffer_auth::user::UserId;
use coffer_ledger::{IdempotencyKey, Reason, WalletView};

use crate::UseCaseError;
use crate::admin::Admin;
use crate::shared::actor;

/// A user's erasure, as done (or as first done, for a retry).
#[derive(Debug, Clone)]
pub struct UserErasure {
    /// Who was erased.
    pub user: UserId,
    /// When, microseconds since the epoch.
    pub erased_at: i64,
    /// The reason given.
    pub reason: String,
    /// Their wallets, every one closed and erased.
    pub wallets: Vec<WalletView>,
}

impl Admin {
    /// Erases a user (`user:erase`); see the [module documentation](self).
    ///
    /// # Errors
    /// [`UseCaseError::Forbidden`]; not found; the last administrator (`last_admin`); a wallet
    /// that still holds money not swept (`wallet_not_empty`, naming it); an unclaimed-funds
    /// wallet that cannot take a remainder (`unclaimed_wallet_unusable`); the user erased under another key
    /// (`user_erased`); the key used with another reason.
    pub async fn erase_user(
        &self,
        principal: &Principal,
        user: UserId,
        reason: &Reason,
        idempotency_key: &IdempotencyKey,
        ctx: &RequestContext,
    ) -> Result<UserErasure, UseCaseError> {
        self.require(principal, Permission::UserErase)?;
        let by = Actor::Admin(actor(principal));
        self.erase(by, user, reason, idempotency_key, ctx).await
    }

    /// Erases a user as `by` (the operator's command, which asks no permission: it runs with
    /// the service's configuration); as [`Admin::erase_user`].
    ///
    /// # Errors
    /// As [`Admin::erase_user`], without the permission.
    pub async fn erase(
        &self,
        by: Actor,
        user: UserId,
        reason: &Reason,
        idempotency_key: &IdempotencyKey,
        ctx: &RequestContext,
    ) -> Result<UserErasure, UseCaseError> {
        // Not found, the last administrator, or erased under another key: before anything
        // changes.
        if let Some(done) = self.accounts.check_erasable(user).await?
            && done.idempotency_key != idempotency_key.as_str()
        {
            return Err(AuthError::UserErased.into());
        }
        // A wallet opened while the wallets were erased makes the user's step refuse: erase
        // again (a few times at most; the user's sessions still work until the last step).
        let mut tries = 0;
        let (wallets, done) = loop {
            let wallets = self.ledger.erase_wallets(&by, user).await?;
            match self
                .accounts
                .erase_user(
                    by.clone(),
                    user,
                    idempotency_key.as_str(),
                    reason.code(),
                    ctx,
                )
                .await
            {
                Err(AuthError::WalletsRemain) if tries < 3 => tries += 1,
                other => break (wallets, other?),
            }
        };
        Ok(UserErasure {
            user,
            erased_at: done.at,
            reason: done.reason,
            wallets,
        })
    }
}
