//! Registration and login.
//!
//! Registration (email, password, phone and tax id optional) generates the user's own data key
//! through the key port and seals each personal field under it, bound to the user and the field;
//! the user is found again by the email's blind index (an HMAC under the service's blind-index
//! key), never by the email itself. The user, their first data key and the `user.register`
//! record commit together.
//!
//! A login costs one Argon2id verification whether or not the email exists (an unknown address is
//! checked against a dummy hash, as long as a wrong password takes); then, if the account has a
//! confirmed second factor, the TOTP code, each accepted once. The session's `amr` says what was
//! shown, `["pwd"]` or `["pwd","otp"]`. Every refusal is the one
//! [`AuthError::InvalidCredentials`] and is audited as `user.login_failed` with the user, or an
//! unknown address's keyed hash (attempts on one address correlate without storing it), and the
//! client IP: what the `failed_logins` alert counts. The access token is signed before the new
//! refresh family is stored, so a failure to sign leaves no session behind.

use std::fmt;

use coffer_audit::{Action, Actor, Code, Outcome};

use super::error::{AuthError, invalid};
use super::shared::{RequestContext, entity, user_key_context};
use super::{Accounts, Session, seal_field};
use crate::email::Email;
use crate::guesses::GuessTarget;
use crate::password::NewPassword;
use crate::refresh::{FAMILY_LIFETIME_SECS, RefreshRecord, RefreshToken};
use crate::store::{UserKeyRecord, UserRecord};
use crate::user::{Phone, TaxId, UserId};

/// A registration.
#[derive(Clone, Copy)]
pub struct Registration<'a> {
    /// Email.
    pub email: &'a str,
    /// Password.
    pub password: &'a str,
    /// Phone number, international form.
    pub phone: Option<&'a str>,
    /// Tax id.
    pub tax_id: Option<&'a str>,
}

impl fmt::Debug for Registration<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Registration([REDACTED])")
    }
}

/// A login.
#[derive(Clone, Copy)]
pub struct Credentials<'a> {
    /// Email.
    pub email: &'a str,
    /// Password.
    pub password: &'a str,
    /// The TOTP code, for accounts with a second factor.
    pub totp: Option<&'a str>,
    /// The client logging in (its tokens' `client_id`).
    pub client_id: &'a str,
}

coffer_macros::debug_non_exhaustive!(self => Credentials<'_> { client_id });

impl Accounts {
    /// Registers a user with the default roles. A taken email is refused before anything is
    /// generated or hashed, so registering one costs no key provider call and no Argon2 run
    /// (the unique index still decides a race between two registrations).
    ///
    /// # Errors
    /// [`AuthError::Invalid`] naming the field, [`AuthError::EmailTaken`], dependencies.
    pub async fn register(
        &self,
        r: Registration<'_>,
        ctx: &RequestContext,
    ) -> Result<UserId, AuthError> {
        let email = Email::parse(r.email).map_err(|e| invalid("email", e))?;
        let password = NewPassword::parse(r.password).map_err(|e| invalid("password", e))?;
        let phone = r
            .phone
            .map(Phone::parse)
            .transpose()
            .map_err(|e| invalid("phone", e))?;
        let tax_id = r
            .tax_id
            .map(TaxId::parse)
            .transpose()
            .map_err(|e| invalid("tax_id", e))?;
        let email_index = *email.blind_index(&self.index_key).as_bytes();
        if self.store.user_by_email(&email_index).await?.is_some() {
            return Err(AuthError::EmailTaken);
        }
        let id = UserId::new();
        let generated = self.keys.generate_data_key(&user_key_context(id)).await?;
        let dek = &generated.plaintext;
        let password_hash = self.hasher.hash(&password).await?;
        let record = UserRecord {
            id,
            email_index,
            email: seal_field(dek, id, "email", email.expose().as_bytes())?,
            phone: phone
                .map(|p| seal_field(dek, id, "phone", p.expose().as_bytes()))
                .transpose()?,
            tax_id: tax_id
                .map(|t| seal_field(dek, id, "tax_id", t.expose().as_bytes()))
                .transpose()?,
            password_hash,
            roles: self.config.default_roles.clone(),
            dek_version: 1,
            totp: None,
            created_at: self.clock.unix_micros(),
            erased: None,
        };
        let audit = self.event(
            Actor::Anonymous,
            Action::UserRegister,
            Some(id),
            Outcome::Success,
            ctx,
        );
        let receipt = self
            .store
            .create_user(
                &record,
                &UserKeyRecord {
                    version: 1,
                    kek_version: generated.wrapped.version,
                    wrapped: generated.wrapped.clone(),
                },
                &audit,
            )
            .await?;
        self.audit.committed_elsewhere(&[(audit, receipt)]).await;
        Ok(id)
    }

    /// Logs in: the password, then the code when the account has a second factor.
    ///
    /// # Errors
    /// [`AuthError::InvalidCredentials`] (audited as `user.login_failed`),
    /// [`AuthError::MfaRequired`], dependencies.
    pub async fn login(
        &self,
        c: Credentials<'_>,
        ctx: &RequestContext,
    ) -> Result<Session, AuthError> {
        if c.client_id.is_empty() || Code::parse(c.client_id).is_err() {
            return Err(invalid("client_id", "1-64 characters of [A-Za-z0-9._:-]"));
        }
        let email = Email::parse(c.email).ok();
        let index = email
            .as_ref()
            .map(|e| *e.blind_index(&self.index_key).as_bytes());
        // Guesses at one email are paced whether or not it has an account; an email that
        // does not parse has none, and the per-address limits pace those.
        let target = index.map(GuessTarget::Email);
        if let Some(target) = target {
            self.admit_guess(target)?;
        }
        let user = match &index {
            Some(index) => self.store.user_by_email(index).await?,
            None => None,
        };
        let stored = user.as_ref().map(|u| u.record.password_hash.as_str());
        // Unknown accounts verify against the dummy hash: the same time as a wrong password.
        let right = self.hasher.verify(c.password, stored).await?;
        if let Some(target) = target {
            self.guessed(target, right);
        }
        if !right {
            self.login_failed(user.as_ref(), email.as_ref(), "bad_password", ctx)
                .await;
            return Err(AuthError::InvalidCredentials);
        }
        let Some(user) = user else {
            return Err(AuthError::InvalidCredentials);
        };
        let mut amr = vec!["pwd".to_owned()];
        if let Some(totp) = user.record.totp.as_ref().filter(|t| t.confirmed) {
            let Some(presented) = c.totp else {
                // The right password alone is not a login: audited like a failure (it feeds
                // the failed-logins alert), since it tells whoever sent it the password.
                self.login_failed(Some(&user), email.as_ref(), "mfa_required", ctx)
                    .await;
                return Err(AuthError::MfaRequired);
            };
            if !self.check_totp(&user, totp, presented).await? {
                self.login_failed(Some(&user), email.as_ref(), "bad_otp", ctx)
                    .await;
                return Err(AuthError::InvalidCredentials);
            }
            amr.push("otp".to_owned());
        }
        let now = self.clock.unix_secs();
        let token = RefreshToken::generate();
        let record = RefreshRecord {
            hash: token.hash(),
            family: uuid::Uuid::now_v7(),
            user: user.record.id.to_string(),
            client_id: c.client_id.to_owned(),
            amr,
            family_expires_at: now + FAMILY_LIFETIME_SECS,
            spent_at: None,
            replaced_by: None,
            revoked: false,
            superseded: false,
        };
        let audit = self.event(
            Actor::User(entity(user.record.id)),
            Action::UserLogin,
            Some(user.record.id),
            Outcome::Success,
            ctx,
        );
        // Signed first: a failure to sign leaves no session behind.
        let session = self.session(user.record.id, &record, token).await?;
        let receipt = self.store.start_family(&record, &audit).await?;
        self.audit.committed_elsewhere(&[(audit, receipt)]).await;
        Ok(session)
    }
}
