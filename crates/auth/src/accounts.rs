//! The accounts service: registration, login (password, then the TOTP code if enrolled),
//! refresh-token rotation, logout, revoke-all, admin revocation and roles, the profile, TOTP
//! enrollment, and the token signing keys. It runs on the user-store port, the key port (each
//! user's personal data is sealed under a data key of their own; the signing keys and the
//! blind-index key are wrapped by the KEK) and the audit log.
//!
//! What a caller can learn is deliberately little: a login fails with one error whether the
//! email is unknown, the password wrong or the code wrong, and costs one Argon2id verification
//! either way; a refresh fails with one error whether the token is unknown, expired, revoked or
//! reused.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use coffer_audit::{
    Action, Actor, AuditEvent, AuditHasher, Code, DetailValue, EntityId, ObservedAuditLog, Outcome,
    Subject,
};
use coffer_crypto::{Aad, DataKey, HmacKey, KeyRef, open_bytes, seal};
use coffer_keys::{KeyContext, KeyError, KeyProvider, WrappedKey};
use coffer_secrets::{SecretBytes, SecretError, SecretName, SecretsManager};
use zeroize::Zeroizing;

use crate::email::Email;
use crate::mfa::{TotpCode, TotpSecret};
use crate::password::{HashError, NewPassword, PasswordHasher};
use crate::rbac::Rbac;
use crate::refresh::{self, Decision, FAMILY_LIFETIME_SECS, RefreshRecord, RefreshToken};
use crate::revocation::{RevocationList, unix_secs};
use crate::store::{
    LoadedUser, Rotation, StoredSigningKey, TotpRecord, UserKeyRecord, UserRecord, UserStore,
    UserStoreError,
};
use crate::token::{
    AccessClaims, Grant, KeyRing, SigningKey, TokenConfig, TokenError, Tokens, VerifiedToken,
};
use crate::user::{Phone, TaxId, UserId};

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
}

impl Default for AccountsConfig {
    fn default() -> Self {
        Self {
            token: TokenConfig::default(),
            refresh_grace: Duration::from_secs(10),
            totp_issuer: "Coffer".to_owned(),
            default_roles: vec!["user".to_owned()],
        }
    }
}

/// Why an accounts operation failed. [`AuthError::code`] is the stable API problem code.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// Wrong email, password or code: never which.
    #[error("invalid email, password or code")]
    InvalidCredentials,
    /// The password was right and the account has a second factor: send the code.
    #[error("a one-time code is required")]
    MfaRequired,
    /// Registration with an email already registered.
    #[error("this email is already registered")]
    EmailTaken,
    /// A field that does not parse.
    #[error("invalid {field}: {reason}")]
    Invalid {
        /// Which field.
        field: &'static str,
        /// What is wrong (no secrets).
        reason: String,
    },
    /// The refresh token is unknown, expired, revoked or was reused.
    #[error("invalid refresh token")]
    InvalidRefreshToken,
    /// No such user.
    #[error("user not found")]
    UserNotFound,
    /// A role the configuration does not define.
    #[error("unknown role {0}")]
    UnknownRole(String),
    /// TOTP enrollment in the wrong state (already on, or not started).
    #[error("{0}")]
    MfaState(&'static str),
    /// The access token is refused.
    #[error(transparent)]
    Token(#[from] TokenError),
    /// A dependency does not answer (database, key provider, revocation list). Retry later.
    #[error("temporarily unavailable: {0}")]
    Unavailable(String),
    /// Stored data does not decrypt or decode.
    #[error("stored account data is corrupt: {0}")]
    Corrupt(String),
    /// Anything else.
    #[error("internal error: {0}")]
    Internal(String),
}

impl AuthError {
    /// The stable code.
    #[must_use]
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidCredentials => "invalid_credentials",
            Self::MfaRequired => "mfa_required",
            Self::EmailTaken => "email_taken",
            Self::Invalid { .. } => "invalid_request",
            Self::InvalidRefreshToken => "invalid_refresh_token",
            Self::UserNotFound => "user_not_found",
            Self::UnknownRole(_) => "unknown_role",
            Self::MfaState(_) => "mfa_state",
            Self::Token(t) => t.reason(),
            Self::Unavailable(_) => "unavailable",
            Self::Corrupt(_) => "corrupt",
            Self::Internal(_) => "internal",
        }
    }
}

impl From<UserStoreError> for AuthError {
    fn from(e: UserStoreError) -> Self {
        match e {
            UserStoreError::DuplicateEmail => Self::EmailTaken,
            UserStoreError::Unavailable(m) => Self::Unavailable(m),
            UserStoreError::Corrupt(m) => Self::Corrupt(m),
            other => Self::Internal(other.to_string()),
        }
    }
}

impl From<KeyError> for AuthError {
    fn from(e: KeyError) -> Self {
        match e {
            KeyError::Unavailable { .. } => Self::Unavailable(e.to_string()),
            KeyError::Corrupt(m) => Self::Corrupt(m),
            other => Self::Internal(other.to_string()),
        }
    }
}

impl From<SecretError> for AuthError {
    fn from(e: SecretError) -> Self {
        match e {
            SecretError::Keys(k) => Self::from(k),
            SecretError::Store(coffer_secrets::SecretStoreError::Unavailable(m)) => {
                Self::Unavailable(m)
            }
            SecretError::Corrupt { .. } => Self::Corrupt(e.to_string()),
            other => Self::Internal(other.to_string()),
        }
    }
}

impl From<HashError> for AuthError {
    fn from(e: HashError) -> Self {
        match e {
            HashError::Unavailable => Self::Unavailable(e.to_string()),
            HashError::Corrupt(m) => Self::Corrupt(format!("password hash: {m}")),
        }
    }
}

fn invalid(field: &'static str, e: impl fmt::Display) -> AuthError {
    AuthError::Invalid {
        field,
        reason: e.to_string(),
    }
}

fn corrupt(e: impl fmt::Display) -> AuthError {
    AuthError::Corrupt(e.to_string())
}

/// Where a request came from (for the audit log and the alert rules).
#[derive(Debug, Clone, Default)]
pub struct RequestContext {
    /// The client's address.
    pub client_ip: Option<IpAddr>,
    /// The request id.
    pub request_id: Option<String>,
}

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

impl fmt::Debug for Credentials<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
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

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("sub", &self.claims.sub)
            .field("expires_in", &self.expires_in)
            .finish_non_exhaustive()
    }
}

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

impl fmt::Debug for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Profile")
            .field("id", &self.id)
            .field("email", &self.email)
            .field("roles", &self.roles)
            .field("mfa_enabled", &self.mfa_enabled)
            .finish_non_exhaustive()
    }
}

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

/// The key context of a user's data key.
#[must_use]
pub fn user_key_context(user: UserId) -> KeyContext {
    KeyContext::new()
        .with("purpose", "user-dek")
        .with("user_id", user.to_string())
}

fn signing_key_context(kid: &str) -> KeyContext {
    KeyContext::new()
        .with("purpose", "token-signing-key")
        .with("kid", kid)
}

fn field_aad(user: UserId, field: &str) -> Aad {
    Aad::new("user.field").with(user.to_string()).with(field)
}

fn signing_key_aad(kid: &str) -> Aad {
    Aad::new("auth.signing_key").with(kid)
}

#[allow(clippy::expect_used)]
fn entity(id: impl fmt::Display) -> EntityId {
    EntityId::parse(&id.to_string()).expect("UUIDs and kids are entity tokens")
}

/// A token detail (codes, UUIDs, addresses); anything else is recorded as `unrepresentable`
/// rather than failing the operation it describes.
#[allow(clippy::expect_used)]
fn code(s: &str) -> DetailValue {
    DetailValue::Code(
        Code::parse(s)
            .unwrap_or_else(|_| Code::parse("unrepresentable").expect("a constant token")),
    )
}

fn now_secs() -> u64 {
    unix_secs(SystemTime::now())
}

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
}

impl fmt::Debug for Accounts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Accounts")
            .field("store", &self.store)
            .field("tokens", &self.tokens)
            .finish_non_exhaustive()
    }
}

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
        )
        .await?;
        let audit_hasher = AuditHasher::new(load_secret(&deps, "audit-detail-hash").await?);
        Ok(Self {
            tokens: Tokens::new(config.token.clone(), ring, deps.revocation.clone()),
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
                    if !last.is_some_and(|t| t.elapsed() < KEY_RELOAD_INTERVAL) {
                        // Counted before the attempt: a failing store is not asked again for
                        // every forged kid.
                        *last = Some(std::time::Instant::now());
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

    // ---- registration and login ----

    /// Registers a user with the default roles.
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
        let id = UserId::new();
        let generated = self.keys.generate_data_key(&user_key_context(id)).await?;
        let dek = &generated.plaintext;
        let password_hash = self.hasher.hash(&password).await?;
        let record = UserRecord {
            id,
            email_index: *email.blind_index(&self.index_key).as_bytes(),
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
            created_at: coffer_audit::event::unix_micros(SystemTime::now()),
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
                    wrapped: generated.wrapped.to_bytes(),
                    kek_version: generated.wrapped.version,
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
        let user = match &email {
            Some(e) => {
                self.store
                    .user_by_email(e.blind_index(&self.index_key).as_bytes())
                    .await?
            }
            None => None,
        };
        let stored = user.as_ref().map(|u| u.record.password_hash.as_str());
        // Unknown accounts verify against the dummy hash: the same time as a wrong password.
        if !self.hasher.verify(c.password, stored).await? {
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
                return Err(AuthError::MfaRequired);
            };
            if !self.check_totp(&user, totp, presented).await? {
                self.login_failed(Some(&user), email.as_ref(), "bad_otp", ctx)
                    .await;
                return Err(AuthError::InvalidCredentials);
            }
            amr.push("otp".to_owned());
        }
        let now = now_secs();
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

    /// Whether `presented` is a fresh code of `totp` (and claims its step).
    async fn check_totp(
        &self,
        user: &LoadedUser,
        totp: &TotpRecord,
        presented: &str,
    ) -> Result<bool, AuthError> {
        let Ok(code) = TotpCode::parse(presented) else {
            return Ok(false);
        };
        let secret = self.totp_secret(user, totp).await?;
        match secret.matching_step(&code, now_secs()) {
            Some(step) if step > totp.last_step => {
                Ok(self.store.claim_totp_step(user.record.id, step).await?)
            }
            _ => Ok(false),
        }
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

    async fn load_user(&self, user: UserId) -> Result<LoadedUser, AuthError> {
        self.store.user(user).await?.ok_or(AuthError::UserNotFound)
    }

    // ---- refresh, logout, revocation ----

    /// Rotates a refresh token: a new access token and a new refresh token in the same family
    /// (ending when the family does). A spent token presented again revokes its family.
    ///
    /// # Errors
    /// [`AuthError::InvalidRefreshToken`], dependencies.
    pub async fn refresh(
        &self,
        presented: &str,
        ctx: &RequestContext,
    ) -> Result<Session, AuthError> {
        let presented =
            RefreshToken::parse(presented).map_err(|_| AuthError::InvalidRefreshToken)?;
        let hash = presented.hash();
        // A lost compare-and-swap means a concurrent use changed the records: decide again.
        for _ in 0..16 {
            let record = self.store.refresh_token(&hash).await?;
            let replacement = match record.as_ref().and_then(|r| r.replaced_by) {
                Some(next) => self.store.refresh_token(&next).await?,
                None => None,
            };
            // The two reads are not one snapshot: a concurrent retry may have superseded the
            // replacement between them, which would look like reuse. The presented token
            // changes in the same transaction, so reading it unchanged makes the pair
            // consistent; otherwise decide again.
            if replacement.is_some() && self.store.refresh_token(&hash).await? != record {
                continue;
            }
            let now = now_secs();
            match refresh::decide(
                record.as_ref(),
                replacement.as_ref(),
                now,
                self.config.refresh_grace.as_secs(),
            ) {
                Decision::Refuse => return Err(AuthError::InvalidRefreshToken),
                Decision::ReuseDetected { family } => {
                    let user = record.as_ref().and_then(|r| UserId::parse(&r.user).ok());
                    let mut event = self.event(
                        Actor::Anonymous,
                        Action::UserRefreshReuseDetected,
                        user,
                        Outcome::Denied,
                        ctx,
                    );
                    let _ = event.details.insert("session", code(&family.to_string()));
                    let (_, receipt) = self.store.revoke_family(family, Some(&event)).await?;
                    if let Some(receipt) = receipt {
                        self.audit.committed_elsewhere(&[(event, receipt)]).await;
                    }
                    return Err(AuthError::InvalidRefreshToken);
                }
                Decision::Rotate {
                    family,
                    family_expires_at,
                    orphan,
                } => {
                    let Some(record) = record else {
                        return Err(AuthError::InvalidRefreshToken);
                    };
                    let user_id =
                        UserId::parse(&record.user).map_err(|_| corrupt("refresh token user"))?;
                    let token = RefreshToken::generate();
                    let next = RefreshRecord {
                        hash: token.hash(),
                        family,
                        family_expires_at,
                        spent_at: None,
                        replaced_by: None,
                        revoked: false,
                        superseded: false,
                        ..record
                    };
                    // Signed before the rotation commits: a failure to sign spends nothing (a
                    // retry is not mistaken for reuse); a lost race throws the token away.
                    let session = match self.session(user_id, &next, token).await {
                        Err(AuthError::UserNotFound) => return Err(AuthError::InvalidRefreshToken),
                        other => other?,
                    };
                    let rotated = self
                        .store
                        .rotate_refresh(&Rotation {
                            presented: hash,
                            expected_replaced_by: orphan,
                            next: &next,
                            now,
                        })
                        .await?;
                    if rotated {
                        return Ok(session);
                    }
                }
            }
        }
        Err(AuthError::Unavailable(
            "refresh token contended: retry".to_owned(),
        ))
    }

    /// Logout: this access token stops working now, and so does its session (refresh family).
    ///
    /// # Errors
    /// Dependencies.
    pub async fn logout(
        &self,
        claims: &AccessClaims,
        ctx: &RequestContext,
    ) -> Result<(), AuthError> {
        let user = UserId::parse(&claims.sub).ok();
        let actor = user.map_or(Actor::Anonymous, |u| Actor::User(entity(u)));
        let event = self.event(actor, Action::UserLogout, user, Outcome::Success, ctx);
        let family = claims
            .sid
            .as_deref()
            .and_then(|s| uuid::Uuid::parse_str(s).ok());
        // The session first: if the token's revocation then fails, a retry revokes it; the
        // other order could leave a session that mints new tokens.
        match family {
            Some(family) => {
                let (_, receipt) = self.store.revoke_family(family, Some(&event)).await?;
                if let Some(receipt) = receipt {
                    self.audit.committed_elsewhere(&[(event, receipt)]).await;
                }
            }
            None => {
                coffer_audit::AuditLog::append(self.audit.as_ref(), &event)
                    .await
                    .map_err(|e| AuthError::Unavailable(e.to_string()))?;
            }
        }
        self.tokens.revoke(claims).await?;
        Ok(())
    }

    /// Every session of `user` stops working: access tokens (the user's epoch) and refresh
    /// families. Called by the user (revoke-all) or an admin (`actor`).
    ///
    /// # Errors
    /// Dependencies.
    pub async fn revoke_sessions(
        &self,
        actor: Actor,
        user: UserId,
        ctx: &RequestContext,
    ) -> Result<(), AuthError> {
        // No sessions to end for a user that does not exist: say so (no record is written).
        self.load_user(user).await?;
        // Sessions first (with the record), then the epoch: a failure in between leaves the
        // user's access tokens working until the retry, never sessions minting new ones.
        let event = self.event(
            actor,
            Action::UserSessionRevoked,
            Some(user),
            Outcome::Success,
            ctx,
        );
        let receipt = self.store.revoke_user_families(user, &event).await?;
        self.audit.committed_elsewhere(&[(event, receipt)]).await;
        self.revocation
            .revoke_user(&user.to_string())
            .await
            .map_err(TokenError::from)?;
        Ok(())
    }

    /// The emergency revoke: every session (refresh family), then every access token issued so
    /// far (the global epoch), stops working. Everyone logs in again.
    ///
    /// # Errors
    /// Dependencies.
    pub async fn revoke_everyone(
        &self,
        actor: Actor,
        ctx: &RequestContext,
    ) -> Result<u64, AuthError> {
        let mut event = AuditEvent::new(
            actor,
            Action::UserSessionRevoked,
            Subject::System,
            Outcome::Success,
        );
        self.add_context(&mut event, ctx);
        let _ = event.details.insert("scope", code("everyone"));
        let receipt = self.store.revoke_every_family(&event).await?;
        self.audit.committed_elsewhere(&[(event, receipt)]).await;
        Ok(self
            .revocation
            .revoke_everyone()
            .await
            .map_err(TokenError::from)?)
    }

    // ---- users ----

    /// A user's own data, decrypted.
    ///
    /// # Errors
    /// [`AuthError::UserNotFound`], dependencies.
    pub async fn profile(&self, user: UserId) -> Result<Profile, AuthError> {
        let u = self.load_user(user).await?;
        let dek = self.user_key(&u).await?;
        let text = |field: &str, sealed: &[u8]| -> Result<Zeroizing<String>, AuthError> {
            let plain = open_bytes(&dek, &field_aad(user, field), sealed).map_err(corrupt)?;
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
                .as_deref()
                .map(|s| Phone::parse(&text("phone", s)?).map_err(corrupt))
                .transpose()?,
            tax_id: u
                .record
                .tax_id
                .as_deref()
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
    /// [`AuthError::UnknownRole`], [`AuthError::UserNotFound`], dependencies.
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
            .set_roles(user, &roles, &event)
            .await?
            .ok_or(AuthError::UserNotFound)?;
        self.audit.committed_elsewhere(&[(event, receipt)]).await;
        self.revocation
            .revoke_user(&user.to_string())
            .await
            .map_err(TokenError::from)?;
        Ok(roles)
    }

    // ---- TOTP ----

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
        let u = self.load_user(user).await?;
        if !self
            .hasher
            .verify(password, Some(&u.record.password_hash))
            .await?
        {
            self.login_failed(Some(&u), None, "bad_password", ctx).await;
            return Err(AuthError::InvalidCredentials);
        }
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

    async fn totp_secret(
        &self,
        u: &LoadedUser,
        totp: &TotpRecord,
    ) -> Result<TotpSecret, AuthError> {
        let dek = self.user_key(u).await?;
        let plain =
            open_bytes(&dek, &field_aad(u.record.id, "totp"), &totp.sealed).map_err(corrupt)?;
        TotpSecret::from_bytes(plain.expose_secret()).map_err(corrupt)
    }

    // ---- signing keys ----

    /// Rotates the token signing key: a new key signs from now on, the previous one keeps
    /// verifying (and stays in the JWKS) until its tokens have expired. Returns the kid that
    /// signs now (another process's, if it rotated at the same moment).
    ///
    /// # Errors
    /// Store or key provider failures.
    pub async fn rotate_signing_key(&self) -> Result<String, AuthError> {
        let stored = new_signing_key(&self.secrets).await?;
        self.store.add_signing_key(&stored, false).await?;
        self.reload_signing_keys().await?;
        self.tokens
            .current_kid()
            .ok_or_else(|| corrupt("no signing key is current"))
    }

    /// Rotates a user's data key: a new version, generated and wrapped by the key provider,
    /// becomes current and every personal field (email, phone, tax id, TOTP secret) is sealed
    /// under it in one conditional write; the previous versions stay stored. A user changed
    /// meanwhile (an enrollment, another rotation) is read again, a few times. Returns the new
    /// version.
    ///
    /// # Errors
    /// [`AuthError::UserNotFound`], dependencies; [`AuthError::Unavailable`] when the user kept
    /// changing.
    pub async fn rotate_user_key(&self, user: UserId) -> Result<u32, AuthError> {
        for _ in 0..5 {
            let u = self.load_user(user).await?;
            let old = self.user_key(&u).await?;
            let next = u
                .keys
                .iter()
                .map(|k| k.version)
                .max()
                .unwrap_or(u.record.dek_version)
                .saturating_add(1);
            let generated = self.keys.generate_data_key(&user_key_context(user)).await?;
            let new = &generated.plaintext;
            let move_field = |field: &str, sealed: &[u8]| -> Result<Vec<u8>, AuthError> {
                let plain = open_bytes(&old, &field_aad(user, field), sealed).map_err(corrupt)?;
                seal_field(new, user, field, plain.expose_secret())
            };
            let email = move_field("email", &u.record.email)?;
            let phone = u
                .record
                .phone
                .as_deref()
                .map(|p| move_field("phone", p))
                .transpose()?;
            let tax_id = u
                .record
                .tax_id
                .as_deref()
                .map(|t| move_field("tax_id", t))
                .transpose()?;
            let totp_was = u.record.totp.as_ref().map(|t| t.sealed.as_slice());
            let totp = totp_was.map(|t| move_field("totp", t)).transpose()?;
            let key = UserKeyRecord {
                version: next,
                wrapped: generated.wrapped.to_bytes(),
                kek_version: generated.wrapped.version,
            };
            let mut event = AuditEvent::new(
                Actor::Service(entity("coffer-auth")),
                Action::KeyDataKeyCreated,
                Subject::User(entity(user)),
                Outcome::Success,
            );
            let _ = event
                .details
                .insert("version", DetailValue::Int(i64::from(next)));
            let receipt = self
                .store
                .rotate_user_key(&crate::store::UserKeyRotation {
                    user,
                    from: u.record.dek_version,
                    key: &key,
                    email: &email,
                    phone: phone.as_deref(),
                    tax_id: tax_id.as_deref(),
                    totp: totp.as_deref(),
                    totp_was,
                    audit: &event,
                })
                .await?;
            if let Some(receipt) = receipt {
                self.audit.committed_elsewhere(&[(event, receipt)]).await;
                return Ok(next);
            }
        }
        Err(AuthError::Unavailable(format!(
            "user {user} kept changing during a data-key rotation; try again later"
        )))
    }

    /// When the key that signs now started signing (the worker rotates it by age).
    ///
    /// # Errors
    /// Store failures.
    pub async fn current_signing_key_created_at(&self) -> Result<Option<u64>, AuthError> {
        Ok(self
            .store
            .signing_keys()
            .await?
            .iter()
            .filter(|k| k.retired_at.is_none())
            .map(|k| k.created_at)
            .max())
    }

    /// Deletes the refresh tokens of sessions that ended (expired families), the worker's
    /// cleanup. Returns how many tokens went.
    ///
    /// # Errors
    /// Store failures.
    pub async fn purge_ended_sessions(&self) -> Result<u64, AuthError> {
        Ok(self.store.purge_families(now_secs()).await?)
    }

    /// Drops a retired signing key for good (it leaked): tokens it signed stop verifying now,
    /// here and, at their next reload, in every other process. The current key cannot be
    /// dropped: rotate first.
    ///
    /// # Errors
    /// [`AuthError::Invalid`] for the current or an unknown key, dependencies.
    pub async fn drop_signing_key(&self, kid: &str) -> Result<(), AuthError> {
        if !self.store.drop_signing_key(kid, now_secs()).await? {
            return Err(invalid("kid", "not a retired signing key: rotate first"));
        }
        self.tokens.drop_key(kid);
        Ok(())
    }

    /// Reads the signing keys again (another replica rotated them).
    ///
    /// # Errors
    /// Store or key provider failures.
    pub async fn reload_signing_keys(&self) -> Result<(), AuthError> {
        let ring = load_ring(
            self.store.as_ref(),
            self.keys.as_ref(),
            &self.secrets,
            &self.config.token,
        )
        .await?;
        self.tokens.replace_ring(ring);
        Ok(())
    }

    // ---- helpers ----

    async fn user_key(&self, u: &LoadedUser) -> Result<DataKey, AuthError> {
        let k = u
            .keys
            .iter()
            .find(|k| k.version == u.record.dek_version)
            .ok_or_else(|| corrupt("the user's data key version is missing"))?;
        let wrapped = WrappedKey::from_bytes(&k.wrapped).map_err(corrupt)?;
        Ok(self
            .keys
            .unwrap_data_key(&wrapped, &user_key_context(u.record.id))
            .await?)
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
) -> Result<Vec<u8>, AuthError> {
    seal(
        dek,
        &KeyRef::version_only(1),
        &field_aad(user, field),
        plain,
    )
    .map(coffer_crypto::Envelope::into_bytes)
    .map_err(|e| AuthError::Internal(e.to_string()))
}

/// The service secret `purpose`, kept by the secrets manager as `coffer/<purpose>` (listed,
/// backed up and restored with the others). Made on first start: adopted from the
/// `service_secrets` row of a database from before the secrets manager (the same bytes, so
/// blind indexes and audit hashes still match), or 32 random bytes.
async fn load_secret(deps: &AccountsDeps, purpose: &str) -> Result<HmacKey, AuthError> {
    let name = SecretName::parse(&format!("coffer/{purpose}")).map_err(corrupt)?;
    let tags = BTreeMap::from([("owner".to_owned(), "coffer-auth".to_owned())]);
    let value = deps
        .secrets
        .get_or_init(&name, &tags, || async {
            let context = KeyContext::new().with("purpose", purpose);
            match deps.store.secret(purpose).await.map_err(secret_store_err)? {
                Some(stored) => {
                    let key =
                        coffer_secrets::unwrap_legacy_key(deps.keys.as_ref(), &stored, &context)
                            .await?;
                    tracing::info!(secret = %name, "adopted a service secret into the secrets manager");
                    Ok(key)
                }
                None => Ok(SecretBytes::new(DataKey::generate().expose_secret().to_vec())),
            }
        })
        .await?;
    HmacKey::from_slice(value.expose_secret()).map_err(corrupt)
}

/// A user-store failure met while adopting a legacy secret, in the secrets manager's terms.
fn secret_store_err(e: UserStoreError) -> SecretError {
    SecretError::Store(match e {
        UserStoreError::Unavailable(m) => coffer_secrets::SecretStoreError::Unavailable(m),
        other => coffer_secrets::SecretStoreError::Storage(other.to_string()),
    })
}

/// The secrets manager's name for a signing key's private key.
fn signing_secret(kid: &str) -> Result<SecretName, AuthError> {
    SecretName::parse(&format!("coffer/jwt-signing/{kid}")).map_err(corrupt)
}

fn signing_tags() -> BTreeMap<String, String> {
    BTreeMap::from([
        ("owner".to_owned(), "coffer-auth".to_owned()),
        ("purpose".to_owned(), "jwt-signing".to_owned()),
    ])
}

/// A new signing key: its private key (PKCS#1 DER) a secret of the secrets manager, its row in
/// `signing_keys` the index (kid, when it signed, retired, dropped) with no material.
async fn new_signing_key(secrets: &SecretsManager) -> Result<StoredSigningKey, AuthError> {
    let key = tokio::task::spawn_blocking(SigningKey::generate)
        .await
        .map_err(|e| AuthError::Internal(e.to_string()))?
        .map_err(|e| AuthError::Internal(e.to_string()))?;
    let options = coffer_secrets::SetOptions {
        tags: signing_tags(),
        ..coffer_secrets::SetOptions::default()
    };
    secrets
        .set(
            &signing_secret(key.kid())?,
            key.expose_pkcs1_der(),
            &options,
        )
        .await?;
    Ok(StoredSigningKey {
        kid: key.kid().to_owned(),
        wrapped_dek: Vec::new(),
        kek_version: 0,
        sealed: Vec::new(),
        created_at: now_secs(),
        retired_at: None,
    })
}

/// A signing key as releases before the secrets manager stored it: the private key sealed in
/// its row under a data key of its own. Such rows still load (and are adopted); tests make them
/// through the testkit.
#[cfg(feature = "testkit")]
pub(crate) async fn legacy_signing_key(
    keys: &dyn KeyProvider,
) -> Result<StoredSigningKey, AuthError> {
    let key = tokio::task::spawn_blocking(SigningKey::generate)
        .await
        .map_err(|e| AuthError::Internal(e.to_string()))?
        .map_err(|e| AuthError::Internal(e.to_string()))?;
    let generated = keys
        .generate_data_key(&signing_key_context(key.kid()))
        .await?;
    let sealed = seal(
        &generated.plaintext,
        &KeyRef::version_only(1),
        &signing_key_aad(key.kid()),
        key.expose_pkcs1_der(),
    )
    .map_err(|e| AuthError::Internal(e.to_string()))?;
    Ok(StoredSigningKey {
        kid: key.kid().to_owned(),
        wrapped_dek: generated.wrapped.to_bytes(),
        kek_version: generated.wrapped.version,
        sealed: sealed.into_bytes(),
        created_at: now_secs(),
        retired_at: None,
    })
}

/// A signing key's private key: from the secrets manager, or, for a row from before it, opened
/// from the row and adopted into the secrets manager with the same bytes.
async fn signing_key_der(
    keys: &dyn KeyProvider,
    secrets: &SecretsManager,
    k: &StoredSigningKey,
) -> Result<SecretBytes, AuthError> {
    let name = signing_secret(&k.kid)?;
    if k.sealed.is_empty() {
        return Ok(secrets.get(&name).await?);
    }
    let tags = signing_tags();
    Ok(secrets
        .get_or_init(&name, &tags, || async {
            let wrapped = WrappedKey::from_bytes(&k.wrapped_dek)
                .map_err(|e| SecretError::Keys(KeyError::Corrupt(e.to_string())))?;
            let dek = keys
                .unwrap_data_key(&wrapped, &signing_key_context(&k.kid))
                .await?;
            open_bytes(&dek, &signing_key_aad(&k.kid), &k.sealed)
                .map_err(|e| SecretError::Keys(KeyError::Corrupt(e.to_string())))
        })
        .await?)
}

/// The signing keys from the store (generating the first one on first start).
async fn load_ring(
    store: &dyn UserStore,
    keys: &dyn KeyProvider,
    secrets: &SecretsManager,
    config: &TokenConfig,
) -> Result<KeyRing, AuthError> {
    let mut stored = store.signing_keys().await?;
    if !stored.iter().any(|k| k.retired_at.is_none()) {
        let first = new_signing_key(secrets).await?;
        store.add_signing_key(&first, true).await?;
        stored = store.signing_keys().await?;
    }
    let now = SystemTime::now();
    let window = (config.access_ttl + config.leeway).as_secs();
    let mut ring = Vec::with_capacity(stored.len());
    for k in stored {
        // Keys past their window are not even unwrapped.
        if k.retired_at
            .is_some_and(|at| unix_secs(now) > at.saturating_add(window))
        {
            continue;
        }
        let der = signing_key_der(keys, secrets, &k).await?;
        let key = SigningKey::from_pkcs1_der(der.expose_secret()).map_err(corrupt)?;
        if key.kid() != k.kid {
            return Err(corrupt("a signing key does not match its kid"));
        }
        ring.push((key, k.retired_at));
    }
    KeyRing::restore(ring, config, now).ok_or_else(|| corrupt("no signing key is current"))
}
