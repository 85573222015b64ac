//! [`AuthError`], the accounts service's one error type, and how the errors of its ports (user
//! store, key provider, secrets manager, password hasher) map onto it.
//!
//! [`AuthError::code`] is the stable API problem code. It says deliberately little: every
//! refused login is `invalid_credentials` (unknown email, wrong password and wrong code alike),
//! every refused refresh `invalid_refresh_token` (unknown, expired, revoked or reused), every
//! refused password-reset token `invalid_reset_token` (likewise). A dependency that does not
//! answer is `unavailable` (retry later), stored data that does not open or decode `corrupt`.

use std::fmt;

use coffer_keys::KeyError;
use coffer_secrets::SecretError;

use crate::password::HashError;
use crate::store::UserStoreError;
use crate::token::TokenError;

pub use crate::store::Cause;

/// Why an accounts operation failed. [`AuthError::code`] is the stable API problem code.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// Wrong email, password or code: never which.
    #[error("invalid email, password or code")]
    InvalidCredentials,
    /// Too many wrong guesses at this account lately: try again after `retry_after` (the same
    /// answer whether or not the account exists).
    #[error("too many wrong attempts; try again in {}s", retry_after.as_secs())]
    TooManyGuesses {
        /// How long until a guess is taken again.
        retry_after: std::time::Duration,
    },
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
    /// The password-reset token is unknown, expired, replaced or was redeemed already.
    #[error("invalid password-reset token")]
    InvalidResetToken,
    /// The API key is unknown (or not one at all).
    #[error("invalid API key")]
    InvalidApiKey,
    /// No such API key.
    #[error("API key not found")]
    ApiKeyNotFound,
    /// The caller presented an API key where a signed-in session is needed (sessions, password,
    /// second factor): a key has none of these, and an administrator revokes it.
    #[error("an API key has no session, password or second factor")]
    ApiKeyCredential,
    /// The user was erased: their data can no longer be read, and nothing more is done to them
    /// (another erasure under a different idempotency key included).
    #[error("the user was erased")]
    UserErased,
    /// The user to erase has a wallet that is not erased (opened while the erasure ran): erase
    /// their wallets again, then the user.
    #[error("the user has a wallet that is not erased")]
    WalletsRemain,
    /// An erasure's idempotency key was used with another reason.
    #[error("idempotency key already used for a different request")]
    IdempotencyConflict,
    /// No such user.
    #[error("user not found")]
    UserNotFound,
    /// A role the configuration does not define.
    #[error("unknown role {0}")]
    UnknownRole(String),
    /// The change would leave nobody able to administer users (`user:admin`).
    #[error(
        "the last administrator keeps the role: give another user an administrator's role first"
    )]
    LastAdmin,
    /// TOTP enrollment in the wrong state (already on, or not started).
    #[error("{0}")]
    MfaState(&'static str),
    /// The access token is refused.
    #[error(transparent)]
    Token(#[from] TokenError),
    /// A dependency does not answer (database, key provider, revocation list). Retry later.
    #[error("temporarily unavailable: {0}")]
    Unavailable(#[source] Cause),
    /// Stored data does not decrypt or decode.
    #[error("stored account data is corrupt: {0}")]
    Corrupt(#[source] Cause),
    /// Anything else.
    #[error("internal error: {0}")]
    Internal(#[source] Cause),
}

impl AuthError {
    /// The stable code.
    #[must_use]
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidCredentials => "invalid_credentials",
            Self::TooManyGuesses { .. } => "rate_limited",
            Self::MfaRequired => "mfa_required",
            Self::EmailTaken => "email_taken",
            Self::Invalid { .. } => "invalid_request",
            Self::InvalidRefreshToken => "invalid_refresh_token",
            Self::InvalidResetToken => "invalid_reset_token",
            Self::InvalidApiKey => "invalid_api_key",
            Self::ApiKeyNotFound => "api_key_not_found",
            Self::ApiKeyCredential => "api_key_credential",
            Self::UserNotFound => "user_not_found",
            Self::UserErased => "user_erased",
            Self::WalletsRemain => "wallet_not_erased",
            Self::IdempotencyConflict => "idempotency_conflict",
            Self::UnknownRole(_) => "unknown_role",
            Self::LastAdmin => "last_admin",
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
            UserStoreError::LastHolder => Self::LastAdmin,
            UserStoreError::WalletsRemain => Self::WalletsRemain,
            UserStoreError::Unavailable(_) => Self::Unavailable(e.into()),
            UserStoreError::Corrupt(_) => Self::Corrupt(e.into()),
            other => Self::Internal(other.into()),
        }
    }
}

impl From<KeyError> for AuthError {
    fn from(e: KeyError) -> Self {
        match e {
            KeyError::Unavailable { .. } => Self::Unavailable(e.into()),
            KeyError::Corrupt(_) => Self::Corrupt(e.into()),
            other => Self::Internal(other.into()),
        }
    }
}

impl From<SecretError> for AuthError {
    fn from(e: SecretError) -> Self {
        match e {
            SecretError::Keys(k) => Self::from(k),
            SecretError::Store(coffer_secrets::SecretStoreError::Unavailable(_)) => {
                Self::Unavailable(e.into())
            }
            SecretError::Corrupt { .. } => Self::Corrupt(e.into()),
            other => Self::Internal(other.into()),
        }
    }
}

impl From<HashError> for AuthError {
    fn from(e: HashError) -> Self {
        match e {
            HashError::Unavailable => Self::Unavailable(e.into()),
            HashError::Corrupt(m) => Self::Corrupt(format!("password hash: {m}").into()),
        }
    }
}

pub(super) fn invalid(field: &'static str, e: impl fmt::Display) -> AuthError {
    AuthError::Invalid {
        field,
        reason: e.to_string(),
    }
}

pub(super) fn corrupt(e: impl fmt::Display) -> AuthError {
    AuthError::Corrupt(e.to_string().into())
}
