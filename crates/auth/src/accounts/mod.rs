//! The accounts service: registration, login (password, then the TOTP code if enrolled),
//! refresh-token rotation, logout, revoke-all, admin revocation and roles, the profile, TOTP
//! enrollment, password changes and resets, and the token signing keys. It runs on the user-store port, the key port (each
//! user's personal data is sealed under a data key of their own; the signing keys and the
//! blind-index key are wrapped by the KEK) and the audit log.
//!
//! What a caller can learn is deliberately little: a login fails with one error whether the
//! email is unknown, the password wrong or the code wrong, and costs one Argon2id verification
//! either way; a refresh fails with one error whether the token is unknown, expired, revoked or
//! reused.
//!
//! [`Accounts::open`] loads, creating them on first start, the email blind-index key, the
//! audit-detail hashing key and the token signing keys (the `signing_keys` module says where
//! they live). [`Accounts::verify`] checks an access token; a token under a kid this process
//! does not hold makes it read the keys again, at most once per [`KEY_RELOAD_INTERVAL`], because
//! another replica may have rotated them. Writes that change who may do what go to the store
//! with their audit record, which commits in the same database transaction; the receipt is
//! handed to the alert rules afterwards.
//!
//! One module per use case, each adding its operations to [`Accounts`]:
//! - `login`: registration and login;
//! - `password`: changing the password;
//! - `reset`: password resets an administrator issues and the user redeems;
//! - `erasure`: erasing a user (their data key destroyed, sessions and keys ended), once the
//!   ledger erased their wallets;
//! - `api_keys`: the keys of service accounts, created and revoked by an administrator, checked
//!   on every request that presents one;
//! - `sessions`: refresh rotation with reuse detection, logout, revocation, purging;
//! - `totp`: enrolling, confirming and turning off the second factor;
//! - `users`: the profile and roles;
//! - `user_keys`: a user's data key and its rotation;
//! - `signing_keys`: the token signing keys and the service's own secrets.
//!
//! Use-case modules never import from each other: they use this module (the service's state,
//! and the steps several use cases take: loading a user and unwrapping their data key, sealing a
//! field, checking a TOTP code, recording a failed login, signing a session, building an audit
//! event) and two leaves that import nothing from their siblings, `error` ([`AuthError`]) and
//! `shared` (the request context, audit details, a user field's key context and associated
//! data).
//!
//! The time is an input: the [`Clock`] in [`AccountsDeps`] dates tokens, sessions, signing keys
//! and registrations, picks the TOTP step a code is checked against and paces the key reloads.

use std::sync::Arc;
use std::time::Duration;

use coffer_audit::{
    Action, Actor, AuditEvent, AuditHasher, Code, ObservedAuditLog, Outcome, Subject,
};
use coffer_clock::Clock;
use coffer_crypto::{DataKey, Envelope, HmacKey, KeyRef, open, seal};
use coffer_keys::KeyProvider;
use coffer_secrets::SecretsManager;
use zeroize::Zeroizing;

use crate::email::Email;
use crate::guesses::{GuessBackoff, GuessTarget};
use crate::mfa::{TotpCode, TotpSecret};
use crate::password::PasswordHasher;
use crate::rbac::Rbac;
use crate::refresh::{RefreshRecord, RefreshToken};
use crate::revocation::RevocationList;
use crate::store::{LoadedUser, TotpRecord, UserStore};
use crate::token::{AccessClaims, Grant, TokenConfig, TokenError, Tokens, VerifiedToken};
use crate::user::UserId;

mod api_keys;
mod erasure;
mod error;
mod login;
mod password;
mod reset;
mod sessions;
mod shared;
mod signing_keys;
mod totp;
mod user_keys;
mod users;

pub use api_keys::{IssuedApiKey, VerifiedApiKey};
pub use error::AuthError;
pub use login::{Credentials, Registration};
pub use reset::IssuedReset;
pub use shared::{RequestContext, user_key_context};
#[cfg(feature = "testkit")]
pub(crate) use signing_keys::legacy_signing_key;
pub use totp::TotpEnrollment;
pub use users::Profile;

use error::corrupt;
use shared::{code, entity, field_aad};
use signing_keys::{load_ring, load_secret};

/// The role a new account gets (and that the default roles table defines).
pub const NEW_ACCOUNT_ROLE: &str = "user";

/// The purpose the blind-index key is stored under.
const INDEX_KEY: &str = "email-blind-index";
/// A token naming a signing key this process does not hold makes it read the keys again (another
/// replica rotated), at most this often.
pub const KEY_RELOAD_INTERVAL: Duration = Duration::from_secs(5);

/// Settings.
#[derive(Debug, Clone)]
pub struct AccountsConfig {
    /// Access tokens.
    pub token: TokenConfig,
    /// How long after a refresh token was used the same token may be presented again and
    /// rotate (a lost response retried); zero turns retries off.
    pub refresh_grace: Duration,
    /// The issuer name shown in authenticator apps.
    pub totp_issuer: String,
    /// Roles of a new user.
    pub default_roles: Vec<String>,
    /// How long an issued password reset works.
    pub password_reset_lifetime: Duration,
}

impl Default for AccountsConfig {
    fn default() -> Self {
        Self {
            token: TokenConfig::default(),
            refresh_grace: Duration::from_secs(10),
            totp_issuer: "Coffer".to_owned(),
            default_roles: vec![NEW_ACCOUNT_ROLE.to_owned()],
            password_reset_lifetime: Duration::from_secs(24 * 3600),
        }
    }
}

/// What a login or refresh returns.
pub struct Session {
    /// The access token (a JWT).
    pub access_token: Zeroizing<String>,
    /// Seconds until it expires.
    pub expires_in: u64,
    /// The refresh token.
    pub refresh_token: RefreshToken,
    /// The access token's claims.
    pub claims: AccessClaims,
}

coffer_macros::debug_non_exhaustive!(self => Session { sub: self.claims.sub, expires_in });

/// The accounts service.
pub struct Accounts {
    store: Arc<dyn UserStore>,
    keys: Arc<dyn KeyProvider>,
    index_key: HmacKey,
    hasher: PasswordHasher,
    tokens: Tokens,
    revocation: Arc<dyn RevocationList>,
    audit: Arc<ObservedAuditLog>,
    audit_hasher: AuditHasher,
    rbac: Rbac,
    config: AccountsConfig,
    last_key_reload: tokio::sync::Mutex<Option<std::time::Instant>>,
    secrets: Arc<SecretsManager>,
    clock: Arc<dyn Clock>,
    guesses: GuessBackoff,
}

coffer_macros::debug_non_exhaustive!(self => Accounts { store, tokens });

/// What [`Accounts::open`] needs.
#[derive(Debug)]
pub struct AccountsDeps {
    /// Users, sessions, signing keys.
    pub store: Arc<dyn UserStore>,
    /// The KEK provider (behind its cache).
    pub keys: Arc<dyn KeyProvider>,
    /// Argon2id.
    pub hasher: PasswordHasher,
    /// The revocation list.
    pub revocation: Arc<dyn RevocationList>,
    /// The audit log, with its alert rules.
    pub audit: Arc<ObservedAuditLog>,
    /// Roles to permissions.
    pub rbac: Rbac,
    /// Where the service's own secrets live (the blind-index and audit-hashing keys).
    pub secrets: Arc<SecretsManager>,
    /// The time (`coffer_clock::system()` in production).
    pub clock: Arc<dyn Clock>,
}

impl Accounts {
    /// Opens the service: loads (creating on first start) the blind-index key and the token
    /// signing keys.
    ///
    /// # Errors
    /// Store or key provider failures; [`AuthError::Corrupt`] for stored keys that do not open.
    pub async fn open(deps: AccountsDeps, config: AccountsConfig) -> Result<Self, AuthError> {
        for role in &config.default_roles {
            if !deps.rbac.knows(role) {
                return Err(AuthError::UnknownRole(role.clone()));
            }
        }
        let index_key = load_secret(&deps, INDEX_KEY).await?;
        let ring = load_ring(
            deps.store.as_ref(),
            deps.keys.as_ref(),
            &deps.secrets,
            &config.token,
            deps.clock.as_ref(),
        )
        .await?;
        let audit_hasher = AuditHasher::new(load_secret(&deps, "audit-detail-hash").await?);
        Ok(Self {
            tokens: Tokens::new(config.token.clone(), ring, deps.revocation.clone())
                .with_clock(deps.clock.clone()),
            store: deps.store,
            keys: deps.keys,
            index_key,
            hasher: deps.hasher,
            revocation: deps.revocation,
            audit: deps.audit,
            audit_hasher,
            rbac: deps.rbac,
            config,
            last_key_reload: tokio::sync::Mutex::new(None),
            secrets: deps.secrets,
            guesses: GuessBackoff::new(deps.clock.clone()),
            clock: deps.clock,
        })
    }

    /// The access tokens (verification, JWKS).
    #[must_use]
    pub fn tokens(&self) -> &Tokens {
        &self.tokens
    }

    /// Verifies a Coffer access token. A `kid` this process does not hold may be a key another
    /// replica has just rotated in: the keys are read again from the store, at most once per
    /// [`KEY_RELOAD_INTERVAL`] (concurrent requests wait for that one reload), and the token is
    /// checked again. A stream of forged kids costs one read per interval.
    ///
    /// # Errors
    /// [`AuthError::Token`] with the reason; [`AuthError::Unavailable`] if the reload fails.
    pub async fn verify(&self, token: &str) -> Result<VerifiedToken, AuthError> {
        match self.tokens.verify(token).await {
            Err(TokenError::UnknownKey) => {
                {
                    let mut last = self.last_key_reload.lock().await;
                    let now = self.clock.monotonic();
                    if !last.is_some_and(|t| now.saturating_duration_since(t) < KEY_RELOAD_INTERVAL)
                    {
                        // Counted before the attempt: a failing store is not asked again for
                        // every forged kid.
                        *last = Some(now);
                        self.reload_signing_keys().await?;
                    }
                }
                Ok(self.tokens.verify(token).await?)
            }
            other => Ok(other?),
        }
    }

    /// Roles to permissions.
    #[must_use]
    pub fn rbac(&self) -> &Rbac {
        &self.rbac
    }

    // ---- steps several use cases share ----

    /// A user who exists and is not erased.
    async fn load_user(&self, user: UserId) -> Result<LoadedUser, AuthError> {
        match self.store.user(user).await? {
            None => Err(AuthError::UserNotFound),
            Some(u) if u.record.erased.is_some() => Err(AuthError::UserErased),
            Some(u) => Ok(u),
        }
    }

    /// A signed-in user's password given again (to enrol a factor, to change it): a guess
    /// paced per user, a wrong one audited as a failed login. Returns the user as read.
    async fn password_again(
        &self,
        user: UserId,
        password: &str,
        ctx: &RequestContext,
    ) -> Result<LoadedUser, AuthError> {
        let u = self.load_user(user).await?;
        let target = GuessTarget::User(user);
        self.admit_guess(target)?;
        let right = self
            .hasher
            .verify(password, Some(&u.record.password_hash))
            .await?;
        self.guessed(target, right);
        if !right {
            self.login_failed(Some(&u), None, "bad_password", ctx).await;
            return Err(AuthError::InvalidCredentials);
        }
        Ok(u)
    }

    async fn user_key(&self, u: &LoadedUser) -> Result<DataKey, AuthError> {
        let k = u
            .keys
            .iter()
            .find(|k| k.version == u.record.dek_version)
            .ok_or_else(|| corrupt("the user's data key version is missing"))?;
        Ok(self
            .keys
            .unwrap_data_key(&k.wrapped, &user_key_context(u.record.id))
            .await?)
    }

    /// Whether `presented` is a fresh code of `totp` (and claims its step): one guess at the
    /// user's account ([`crate::guesses`]).
    ///
    /// # Errors
    /// [`AuthError::TooManyGuesses`] while the account is closed to guesses, dependencies.
    async fn check_totp(
        &self,
        user: &LoadedUser,
        totp: &TotpRecord,
        presented: &str,
    ) -> Result<bool, AuthError> {
        let target = GuessTarget::User(user.record.id);
        self.admit_guess(target)?;
        let right = match TotpCode::parse(presented) {
            Ok(code) => {
                let secret = self.totp_secret(user, totp).await?;
                match secret.matching_step(&code, self.clock.unix_secs()) {
                    Some(step) if step > totp.last_step => {
                        self.store.claim_totp_step(user.record.id, step).await?
                    }
                    _ => false,
                }
            }
            Err(_) => false,
        };
        self.guessed(target, right);
        Ok(right)
    }

    /// Whether `target` takes a guess now.
    ///
    /// # Errors
    /// [`AuthError::TooManyGuesses`].
    fn admit_guess(&self, target: GuessTarget) -> Result<(), AuthError> {
        self.guesses
            .admit(target)
            .map_err(|retry_after| AuthError::TooManyGuesses { retry_after })
    }

    /// Records a guess at `target` as `right` or wrong.
    fn guessed(&self, target: GuessTarget, right: bool) {
        if right {
            self.guesses.right(target);
        } else {
            self.guesses.wrong(target);
        }
    }

    async fn totp_secret(
        &self,
        u: &LoadedUser,
        totp: &TotpRecord,
    ) -> Result<TotpSecret, AuthError> {
        let dek = self.user_key(u).await?;
        let plain = open(&dek, &field_aad(u.record.id, "totp"), &totp.sealed).map_err(corrupt)?;
        TotpSecret::from_bytes(plain.expose_secret()).map_err(corrupt)
    }

    async fn login_failed(
        &self,
        user: Option<&LoadedUser>,
        email: Option<&Email>,
        reason: &str,
        ctx: &RequestContext,
    ) {
        let mut event = self.event(
            Actor::Anonymous,
            Action::UserLoginFailed,
            user.map(|u| u.record.id),
            Outcome::Denied,
            ctx,
        );
        if user.is_none() {
            // Unknown account: correlate attempts on one address without storing it.
            let hashed = email.map_or_else(
                || code("malformed"),
                |e| self.audit_hasher.hash("email", e.expose()),
            );
            let _ = event.details.insert("email", hashed);
        }
        let _ = event.details.insert("reason", code(reason));
        if let Err(e) = coffer_audit::AuditLog::append(self.audit.as_ref(), &event).await {
            tracing::error!(error = %e, "could not record a failed login in the audit log");
        }
    }

    /// Signs the session's access token. The user's epochs are read before their roles: a
    /// role change or revocation committing in between yields a token that is already revoked,
    /// never one that outlives it with the old roles.
    async fn session(
        &self,
        user: UserId,
        record: &RefreshRecord,
        token: RefreshToken,
    ) -> Result<Session, AuthError> {
        let subject = user.to_string();
        let epochs = self
            .revocation
            .epochs(&subject)
            .await
            .map_err(TokenError::from)?;
        let roles = self.load_user(user).await?.record.roles;
        let sid = record.family.to_string();
        let (access, claims) = self
            .tokens
            .issue(&Grant {
                subject: &subject,
                client_id: &record.client_id,
                roles: &roles,
                amr: &record.amr,
                session: Some(&sid),
                epochs: Some(epochs),
            })
            .await?;
        Ok(Session {
            access_token: Zeroizing::new(access),
            expires_in: claims.exp.saturating_sub(claims.iat),
            refresh_token: token,
            claims,
        })
    }

    fn event(
        &self,
        actor: Actor,
        action: Action,
        user: Option<UserId>,
        outcome: Outcome,
        ctx: &RequestContext,
    ) -> AuditEvent {
        let subject = user.map_or(Subject::System, |u| Subject::User(entity(u)));
        let mut event = AuditEvent::new(actor, action, subject, outcome);
        self.add_context(&mut event, ctx);
        event
    }

    fn add_context(&self, event: &mut AuditEvent, ctx: &RequestContext) {
        if let Some(ip) = ctx.client_ip {
            let _ = event.details.insert("client_ip", code(&ip.to_string()));
        }
        event.request_id = ctx.request_id.as_deref().and_then(|r| Code::parse(r).ok());
    }
}

fn seal_field(
    dek: &DataKey,
    user: UserId,
    field: &str,
    plain: &[u8],
) -> Result<Envelope, AuthError> {
    seal(
        dek,
        &KeyRef::version_only(1),
        &field_aad(user, field),
        plain,
    )
    .map_err(|e| AuthError::Internal(e.into()))
}
