//! [`Account`]: what a signed-in user does to their own account: end every session, change the
//! password, and enrol, confirm or turn off the second factor. An external issuer's principal has no account here:
//! its sessions and factors live at its issuer ([`UseCaseError::ExternalIdentity`]).

use std::sync::Arc;

use coffer_audit::Actor;
use coffer_auth::Principal;
use coffer_auth::accounts::{Accounts, AuthError, RequestContext, TotpEnrollment};
use coffer_auth::password::NewPassword;

use crate::UseCaseError;
use crate::shared::actor;

/// The own-account use cases.
#[derive(Clone)]
pub struct Account {
    accounts: Arc<Accounts>,
}

impl std::fmt::Debug for Account {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Account").finish_non_exhaustive()
    }
}

/// Refuses a principal of an external issuer, and an API key (it has no session, password or
/// factor of its own).
fn own(principal: &Principal) -> Result<(), UseCaseError> {
    if principal.external.is_some() {
        return Err(UseCaseError::ExternalIdentity);
    }
    if principal.api_key.is_some() {
        return Err(AuthError::ApiKeyCredential.into());
    }
    Ok(())
}

impl Account {
    /// The use cases over `accounts`.
    #[must_use]
    pub fn new(accounts: Arc<Accounts>) -> Self {
        Self { accounts }
    }

    /// Ends every session of the caller.
    ///
    /// # Errors
    /// [`UseCaseError::ExternalIdentity`]; the accounts' errors.
    pub async fn revoke_all_sessions(
        &self,
        principal: &Principal,
        ctx: &RequestContext,
    ) -> Result<(), UseCaseError> {
        own(principal)?;
        let user = Actor::User(actor(principal));
        Ok(self
            .accounts
            .revoke_sessions(user, principal.user, ctx)
            .await?)
    }

    /// Changes the caller's password (the current one again); every other session ends, and
    /// this one continues after a refresh.
    ///
    /// # Errors
    /// [`UseCaseError::ExternalIdentity`]; the accounts' refusals.
    pub async fn change_password(
        &self,
        principal: &Principal,
        current: &str,
        new: &NewPassword,
        ctx: &RequestContext,
    ) -> Result<(), UseCaseError> {
        own(principal)?;
        let session = principal
            .claims
            .sid
            .as_deref()
            .and_then(|sid| uuid::Uuid::parse_str(sid).ok());
        Ok(self
            .accounts
            .change_password(principal.user, current, new, session, ctx)
            .await?)
    }

    /// Starts a TOTP enrolment (the password again); the secret is shown once.
    ///
    /// # Errors
    /// [`UseCaseError::ExternalIdentity`]; the accounts' refusals.
    pub async fn totp_enroll(
        &self,
        principal: &Principal,
        password: &str,
        ctx: &RequestContext,
    ) -> Result<TotpEnrollment, UseCaseError> {
        own(principal)?;
        Ok(self
            .accounts
            .totp_enroll(principal.user, password, ctx)
            .await?)
    }

    /// Confirms the enrolment with a first code: logins need a code from then on.
    ///
    /// # Errors
    /// [`UseCaseError::ExternalIdentity`]; the accounts' refusals.
    pub async fn totp_confirm(
        &self,
        principal: &Principal,
        code: &str,
        ctx: &RequestContext,
    ) -> Result<(), UseCaseError> {
        own(principal)?;
        Ok(self
            .accounts
            .totp_confirm(principal.user, code, ctx)
            .await?)
    }

    /// Turns the second factor off (a current code).
    ///
    /// # Errors
    /// [`UseCaseError::ExternalIdentity`]; the accounts' refusals.
    pub async fn totp_disable(
        &self,
        principal: &Principal,
        code: &str,
        ctx: &RequestContext,
    ) -> Result<(), UseCaseError> {
        own(principal)?;
        Ok(self
            .accounts
            .totp_disable(principal.user, code, ctx)
            .await?)
    }
}
