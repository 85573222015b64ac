//! Password resets, for a user who cannot log in: an administrator (`user:admin`, checked by
//! the caller) issues a one-time token for the user ([`crate::reset`]), hands it over through a
//! channel of the operator's choosing, and the user redeems it for a new password without the
//! old one.
//!
//! What a reset does not do: it never stands in for a confirmed second factor (redeeming asks for
//! a current code, a guess paced per user like every code, and a wrong or missing one is audited
//! as a failed login); it never shows the administrator the new password, nor the token again;
//! an administrator cannot issue one for their own account (that is a password change, which
//! needs the current password: a stolen access token alone must not take over its holder's
//! account). Issuing replaces the user's pending reset and is audited as
//! `user.password_reset_issued`; redeeming deletes it with the new password, ends every session
//! of the user (refresh families, then access tokens through the epoch) and is audited as
//! `user.password_reset`. A token that is unknown, expired, replaced or redeemed already is the
//! one [`AuthError::InvalidResetToken`].

use coffer_audit::{Action, Actor, Outcome};

use super::Accounts;
use super::error::AuthError;
use super::shared::{RequestContext, entity};
use crate::password::NewPassword;
use crate::reset::{ResetRecord, ResetToken};
use crate::token::TokenError;
use crate::user::UserId;

/// An issued reset: its token, shown once, and when it stops working.
#[derive(Debug)]
pub struct IssuedReset {
    /// The token to hand to the user.
    pub token: ResetToken,
    /// When it stops working, seconds since the epoch.
    pub expires_at: u64,
}

impl Accounts {
    /// Issues a password reset for `user` on `admin`'s behalf, replacing any pending one.
    ///
    /// # Errors
    /// [`AuthError::Invalid`] for the administrator's own account, [`AuthError::UserNotFound`],
    /// [`AuthError::UserErased`], dependencies.
    pub async fn issue_password_reset(
        &self,
        admin: UserId,
        user: UserId,
        ctx: &RequestContext,
    ) -> Result<IssuedReset, AuthError> {
        if admin == user {
            return Err(AuthError::Invalid {
                field: "id",
                reason: "is your own account: change your password with the current one".into(),
            });
        }
        // An erased user's is refused for what it is (the store also refuses it: not found).
        self.load_user(user).await?;
        let token = ResetToken::generate();
        let expires_at = self.clock.unix_secs() + self.config.password_reset_lifetime.as_secs();
        let record = ResetRecord {
            hash: token.hash(),
            user,
            issued_by: admin,
            expires_at,
        };
        let audit = self.event(
            Actor::Admin(entity(admin)),
            Action::UserPasswordResetIssued,
            Some(user),
            Outcome::Success,
            ctx,
        );
        let receipt = self
            .store
            .issue_password_reset(&record, &audit)
            .await?
            .ok_or(AuthError::UserNotFound)?;
        self.audit.committed_elsewhere(&[(audit, receipt)]).await;
        Ok(IssuedReset { token, expires_at })
    }

    /// Redeems a reset token for `new` password; `totp`, a current code, when the user has a
    /// second factor.
    ///
    /// # Errors
    /// [`AuthError::InvalidResetToken`], [`AuthError::MfaRequired`] without a code,
    /// [`AuthError::InvalidCredentials`] for a wrong one, [`AuthError::TooManyGuesses`],
    /// dependencies.
    pub async fn reset_password(
        &self,
        token: &str,
        new: &NewPassword,
        totp: Option<&str>,
        ctx: &RequestContext,
    ) -> Result<(), AuthError> {
        let token = ResetToken::parse(token).map_err(|_| AuthError::InvalidResetToken)?;
        let now = self.clock.unix_secs();
        let reset = self
            .store
            .password_reset(&token.hash())
            .await?
            .filter(|r| r.expires_at > now)
            .ok_or(AuthError::InvalidResetToken)?;
        let u = self.load_user(reset.user).await?;
        if let Some(factor) = u.record.totp.as_ref().filter(|t| t.confirmed) {
            let Some(presented) = totp else {
                self.login_failed(Some(&u), None, "mfa_required", ctx).await;
                return Err(AuthError::MfaRequired);
            };
            if !self.check_totp(&u, factor, presented).await? {
                self.login_failed(Some(&u), None, "bad_otp", ctx).await;
                return Err(AuthError::InvalidCredentials);
            }
        }
        let hash = self.hasher.hash(new).await?;
        let audit = self.event(
            Actor::User(entity(reset.user)),
            Action::UserPasswordReset,
            Some(reset.user),
            Outcome::Success,
            ctx,
        );
        let receipt = self
            .store
            .redeem_password_reset(&reset, &hash, now, &audit)
            .await?
            .ok_or(AuthError::InvalidResetToken)?;
        self.audit.committed_elsewhere(&[(audit, receipt)]).await;
        self.revocation
            .revoke_user(&reset.user.to_string())
            .await
            .map_err(TokenError::from)?;
        Ok(())
    }

    /// Deletes the password resets that expired, the worker's cleanup; how many went.
    ///
    /// # Errors
    /// Store failures.
    pub async fn purge_expired_resets(&self) -> Result<u64, AuthError> {
        Ok(self
            .store
            .purge_password_resets(self.clock.unix_secs())
            .await?)
    }
}
