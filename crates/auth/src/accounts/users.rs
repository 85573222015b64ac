//! A user's profile and roles, and finding a user by email.
//!
//! The profile is the user's personal data, opened under their data key. A role change (an
//! admin's) is stored with its audit record and then bumps the user's revocation epoch: their
//! current access tokens stop at once, and their sessions refresh into tokens with the new roles.
//! A token's epochs are read before its roles, so a change committing in between yields a token
//! that is already revoked, never one that outlives the change with the old roles.

use coffer_audit::{Action, Actor, Outcome};
use coffer_crypto::{Envelope, open};
use zeroize::Zeroizing;

use super::Accounts;
use super::error::{AuthError, corrupt};
use super::shared::{RequestContext, code, entity, field_aad};
use crate::email::Email;
use crate::rbac::Permission;
use crate::token::TokenError;
use crate::user::{Phone, TaxId, UserId};

/// A user's own data, decrypted.
#[derive(Clone)]
pub struct Profile {
    /// The id.
    pub id: UserId,
    /// Email.
    pub email: Email,
    /// Phone.
    pub phone: Option<Phone>,
    /// Tax id.
    pub tax_id: Option<TaxId>,
    /// Roles.
    pub roles: Vec<String>,
    /// Whether a second factor is on.
    pub mfa_enabled: bool,
}

coffer_macros::debug_non_exhaustive!(self => Profile { id, email, roles, mfa_enabled });

impl Accounts {
    /// The user registered with `email`, found through its blind index (the caller decides who
    /// may ask: an operator looking for a customer).
    ///
    /// # Errors
    /// The store's.
    pub async fn user_with_email(&self, email: &Email) -> Result<Option<UserId>, AuthError> {
        let index = email.blind_index(&self.index_key);
        Ok(self
            .store
            .user_by_email(index.as_bytes())
            .await?
            .map(|u| u.record.id))
    }

    /// A user's own data, decrypted.
    ///
    /// # Errors
    /// [`AuthError::UserNotFound`], dependencies.
    pub async fn profile(&self, user: UserId) -> Result<Profile, AuthError> {
        let u = self.load_user(user).await?;
        let dek = self.user_key(&u).await?;
        let text = |field: &str, sealed: &Envelope| -> Result<Zeroizing<String>, AuthError> {
            let plain = open(&dek, &field_aad(user, field), sealed).map_err(corrupt)?;
            String::from_utf8(plain.expose_secret().to_vec())
                .map(Zeroizing::new)
                .map_err(corrupt)
        };
        Ok(Profile {
            id: user,
            email: Email::parse(&text("email", &u.record.email)?).map_err(corrupt)?,
            phone: u
                .record
                .phone
                .as_ref()
                .map(|s| Phone::parse(&text("phone", s)?).map_err(corrupt))
                .transpose()?,
            tax_id: u
                .record
                .tax_id
                .as_ref()
                .map(|s| TaxId::parse(&text("tax_id", s)?).map_err(corrupt))
                .transpose()?,
            roles: u.record.roles.clone(),
            mfa_enabled: u.record.totp.as_ref().is_some_and(|t| t.confirmed),
        })
    }

    /// Replaces a user's roles (admin). The user's current access tokens stop working, so the
    /// change takes effect now; their sessions refresh into tokens with the new roles.
    ///
    /// # Errors
    /// [`AuthError::UnknownRole`], [`AuthError::UserNotFound`], [`AuthError::UserErased`],
    /// dependencies.
    pub async fn set_roles(
        &self,
        admin: UserId,
        user: UserId,
        roles: &[String],
        ctx: &RequestContext,
    ) -> Result<Vec<String>, AuthError> {
        if let Some(unknown) = roles.iter().find(|r| !self.rbac.knows(r)) {
            return Err(AuthError::UnknownRole(unknown.clone()));
        }
        // An erased user's is refused for what it is (the store also refuses it: not found).
        self.load_user(user).await?;
        let mut roles = roles.to_vec();
        roles.sort();
        roles.dedup();
        let mut event = self.event(
            Actor::Admin(entity(admin)),
            Action::UserRolesChanged,
            Some(user),
            Outcome::Success,
            ctx,
        );
        let _ = event.details.insert("roles", code(&roles.join(":")));
        let receipt = self
            .store
            .set_roles(
                user,
                &roles,
                &self.rbac.roles_allowing(Permission::UserAdmin),
                &event,
            )
            .await?
            .ok_or(AuthError::UserNotFound)?;
        self.audit.committed_elsewhere(&[(event, receipt)]).await;
        self.revocation
            .revoke_user(&user.to_string())
            .await
            .map_err(TokenError::from)?;
        Ok(roles)
    }
}
