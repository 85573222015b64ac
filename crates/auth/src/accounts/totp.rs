//! The second factor: TOTP enrollment, confirmation and removal.
//!
//! Enrolling needs the password again, so an access token alone (a stolen one) cannot put a
//! factor of its holder's on the account and lock its owner out; a wrong password is audited as a
//! failed login. The new secret is sealed under the user's data key and is not asked for at login
//! until a code from the app confirms it; turning the factor off needs a current code. Every
//! password and code given here is a guess paced per user ([`crate::guesses`]), and a wrong
//! one is audited as a failed login (it feeds the failed-logins alert). Codes are
//! RFC 6238 ([`crate::mfa`]) and each is accepted once: its step must be later than the last one
//! claimed, and the claim is a compare-and-swap in the store
//! ([`UserStore::claim_totp_step`](crate::store::UserStore::claim_totp_step)), so two requests
//! with one code cannot both win. Checking a code is shared with login and lives in the parent
//! module.
//!
//! The factor is written only while its confirmed state is still the one read (an enrollment
//! never overwrites a factor confirmed meanwhile) and the user's data key is still the one it was
//! sealed under (a data-key rotation in between would leave it unreadable); otherwise
//! [`AuthError::MfaState`] asks the caller to read it again.

use std::fmt;

use coffer_audit::{Action, Actor, Outcome};
use zeroize::Zeroizing;

use super::error::AuthError;
use super::shared::{RequestContext, code, entity};
use super::{Accounts, seal_field};
use crate::mfa::TotpSecret;
use crate::store::{LoadedUser, TotpRecord};
use crate::user::UserId;

/// A started TOTP enrollment: shown to the user once.
pub struct TotpEnrollment {
    /// The secret in base32.
    pub secret: Zeroizing<String>,
    /// The `otpauth://` URI.
    pub otpauth_uri: Zeroizing<String>,
}

impl fmt::Debug for TotpEnrollment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TotpEnrollment([REDACTED])")
    }
}

impl Accounts {
    /// Starts TOTP enrollment: a new secret, not asked for at login until confirmed. Needs
    /// the password again: an access token alone (a stolen one) cannot put a factor of its
    /// holder's on the account and lock its owner out.
    ///
    /// # Errors
    /// [`AuthError::InvalidCredentials`] for a wrong password (audited as a failed login),
    /// [`AuthError::MfaState`] if a confirmed factor exists, dependencies.
    pub async fn totp_enroll(
        &self,
        user: UserId,
        password: &str,
        ctx: &RequestContext,
    ) -> Result<TotpEnrollment, AuthError> {
        let u = self.password_again(user, password, ctx).await?;
        if u.record.totp.as_ref().is_some_and(|t| t.confirmed) {
            return Err(AuthError::MfaState(
                "a second factor is already on: turn it off first",
            ));
        }
        let secret = TotpSecret::generate();
        let dek = self.user_key(&u).await?;
        let record = TotpRecord {
            sealed: seal_field(&dek, user, "totp", secret.expose())?,
            confirmed: false,
            last_step: 0,
        };
        self.write_totp(&u, Some(&record), false, "enrolled", ctx)
            .await?;
        Ok(TotpEnrollment {
            secret: secret.base32(),
            otpauth_uri: secret.otpauth_uri(&self.config.totp_issuer, &user.to_string()),
        })
    }

    /// Confirms enrollment with a code from the app; from then on logins need a code.
    ///
    /// # Errors
    /// [`AuthError::InvalidCredentials`] for a wrong code, [`AuthError::MfaState`].
    pub async fn totp_confirm(
        &self,
        user: UserId,
        presented: &str,
        ctx: &RequestContext,
    ) -> Result<(), AuthError> {
        let u = self.load_user(user).await?;
        let totp = match &u.record.totp {
            Some(t) if !t.confirmed => t.clone(),
            _ => return Err(AuthError::MfaState("no enrollment to confirm")),
        };
        if !self.check_totp(&u, &totp, presented).await? {
            self.login_failed(Some(&u), None, "bad_otp", ctx).await;
            return Err(AuthError::InvalidCredentials);
        }
        // The step the code claimed stays claimed: the store keeps the higher last step.
        let confirmed = TotpRecord {
            confirmed: true,
            ..totp
        };
        self.write_totp(&u, Some(&confirmed), false, "confirmed", ctx)
            .await
    }

    /// Turns the second factor off; needs a current code.
    ///
    /// # Errors
    /// [`AuthError::InvalidCredentials`] for a wrong code, [`AuthError::MfaState`].
    pub async fn totp_disable(
        &self,
        user: UserId,
        presented: &str,
        ctx: &RequestContext,
    ) -> Result<(), AuthError> {
        let u = self.load_user(user).await?;
        let Some(totp) = u.record.totp.clone().filter(|t| t.confirmed) else {
            return Err(AuthError::MfaState("no second factor is on"));
        };
        if !self.check_totp(&u, &totp, presented).await? {
            self.login_failed(Some(&u), None, "bad_otp", ctx).await;
            return Err(AuthError::InvalidCredentials);
        }
        self.write_totp(&u, None, true, "disabled", ctx).await
    }

    async fn write_totp(
        &self,
        u: &LoadedUser,
        totp: Option<&TotpRecord>,
        expect_confirmed: bool,
        change: &str,
        ctx: &RequestContext,
    ) -> Result<(), AuthError> {
        let user = u.record.id;
        let mut event = self.event(
            Actor::User(entity(user)),
            Action::UserMfaUpdate,
            Some(user),
            Outcome::Success,
            ctx,
        );
        let _ = event.details.insert("change", code(change));
        let receipt = self
            .store
            .set_totp(user, totp, expect_confirmed, u.record.dek_version, &event)
            .await?
            .ok_or(AuthError::MfaState(
                "the second factor changed meanwhile: read it again",
            ))?;
        self.audit.committed_elsewhere(&[(event, receipt)]).await;
        Ok(())
    }
}
