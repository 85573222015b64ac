//! Changing a password: the user gives the current one (a guess, paced per user like every
//! password given after login, and audited as a failed login when wrong) and a new one that
//! meets the same rules as at registration. The new hash is written only while the stored hash
//! is still the one the current password was checked against, together with the revocation of
//! every other session's refresh family and the `user.password_change` record; then the user's
//! access tokens are revoked (the epoch), so a session opened with the old password ends within
//! one request. The session that asked keeps its refresh token and continues after a refresh.

use coffer_audit::{Action, Actor, Outcome};

use super::Accounts;
use super::error::AuthError;
use super::shared::{RequestContext, entity};
use crate::password::NewPassword;
use crate::token::TokenError;
use crate::user::UserId;

impl Accounts {
    /// Changes `user`'s password from `current` to `new`, ending every session but `session`
    /// (the asking session's refresh family, the token's `sid`).
    ///
    /// # Errors
    /// [`AuthError::TooManyGuesses`], [`AuthError::InvalidCredentials`] for a wrong current
    /// password (audited as a failed login; also when another change won meanwhile: the
    /// password given is no longer the current one), [`AuthError::Invalid`] when the new
    /// password is the current one, dependencies.
    pub async fn change_password(
        &self,
        user: UserId,
        current: &str,
        new: &NewPassword,
        session: Option<uuid::Uuid>,
        ctx: &RequestContext,
    ) -> Result<(), AuthError> {
        let u = self.password_again(user, current, ctx).await?;
        if new.expose() == current {
            return Err(AuthError::Invalid {
                field: "new_password",
                reason: "is the current password".into(),
            });
        }
        let hash = self.hasher.hash(new).await?;
        let audit = self.event(
            Actor::User(entity(user)),
            Action::UserPasswordChange,
            Some(user),
            Outcome::Success,
            ctx,
        );
        let receipt = self
            .store
            .change_password(user, &hash, &u.record.password_hash, session, &audit)
            .await?
            .ok_or(AuthError::InvalidCredentials)?;
        self.audit.committed_elsewhere(&[(audit, receipt)]).await;
        self.revocation
            .revoke_user(&user.to_string())
            .await
            .map_err(TokenError::from)?;
        Ok(())
    }
}
