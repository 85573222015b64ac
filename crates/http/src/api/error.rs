//! Every error a handler can meet, as a problem with its status and stable code. 4xx problems
//! say what is wrong; 5xx problems say nothing of the cause, which is logged with the request
//! id instead.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use coffer_auth::TokenError;
use coffer_auth::accounts::AuthError;
use coffer_ledger::{Error as LedgerServiceError, LedgerError};
use coffer_usecases::UseCaseError;

use crate::problem::{ExceededLimit, Problem};

/// A handler's error: the problem to answer with.
#[derive(Debug)]
pub struct ApiError {
    problem: Box<Problem>,
    /// `WWW-Authenticate` for 401s.
    challenge: Option<&'static str>,
    /// `Retry-After` seconds for 503s.
    retry_after: Option<u64>,
}

impl ApiError {
    /// A problem with `status`, `code` and `title`.
    #[must_use]
    pub fn new(status: StatusCode, code: &str, title: &str) -> Self {
        Self {
            problem: Box::new(Problem::new(status, code, title)),
            challenge: None,
            retry_after: None,
        }
    }

    /// Adds a detail.
    #[must_use]
    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.problem.detail = Some(detail.into());
        self
    }

    /// Adds an extension member.
    #[must_use]
    pub fn with(mut self, key: &str, value: impl Into<serde_json::Value>) -> Self {
        self.problem.extensions.insert(key.to_owned(), value.into());
        self
    }

    /// The problem's code.
    #[must_use]
    pub fn code(&self) -> &str {
        &self.problem.code
    }

    /// The status.
    #[must_use]
    pub fn status(&self) -> StatusCode {
        StatusCode::from_u16(self.problem.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    /// 422 `invalid_request` naming a field.
    #[must_use]
    pub fn invalid(field: &str, reason: impl Into<String>) -> Self {
        let mut e = Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
            "Invalid request",
        )
        .detail(reason);
        e.problem.field = Some(field.to_owned());
        e
    }

    /// 403: the caller's roles do not grant this.
    #[must_use]
    pub fn forbidden(permission: &str) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", "Not allowed")
            .detail(format!("this needs the {permission} permission"))
    }

    /// 401: no usable bearer token.
    #[must_use]
    pub fn unauthenticated(code: &str, detail: &str) -> Self {
        let mut e =
            Self::new(StatusCode::UNAUTHORIZED, code, "Authentication required").detail(detail);
        e.challenge = Some("Bearer error=\"invalid_token\"");
        e
    }

    /// 503 with `Retry-After`; the cause is logged, not returned.
    #[must_use]
    pub fn unavailable(cause: &dyn std::fmt::Display) -> Self {
        tracing::warn!(error = %cause, "dependency unavailable");
        let mut e = Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "Temporarily unavailable",
        )
        .detail("a dependency did not answer: retry shortly");
        e.retry_after = Some(2);
        e
    }

    /// An opaque 500; the cause is logged (with the request id, from the span).
    #[must_use]
    pub fn internal(cause: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "Internal error",
        )
        .detail("the error was logged; quote the request id when reporting it")
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (*self.problem).into_response();
        if let Some(challenge) = self.challenge {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(challenge),
            );
        }
        if let Some(secs) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

impl From<LedgerServiceError> for ApiError {
    fn from(e: LedgerServiceError) -> Self {
        use StatusCode as S;
        match e {
            LedgerServiceError::Rejected(r) => {
                let code = r.code();
                let status = match r {
                    LedgerError::WalletFrozen
                    | LedgerError::WalletClosed
                    | LedgerError::WalletNotEmpty
                    | LedgerError::AlreadyReversed
                    | LedgerError::ReversalOfReversal
                    | LedgerError::TooManyWallets { .. }
                    | LedgerError::StillHoldsMoney(_)
                    | LedgerError::UnclaimedWalletUnusable { .. }
                    | LedgerError::WalletHasHolds(_)
                    | LedgerError::HoldExpired
                    | LedgerError::HoldResolved => S::CONFLICT,
                    LedgerError::PinLocked => S::LOCKED,
                    LedgerError::Erased => S::GONE,
                    LedgerError::WalletNotLoaded(_) => return Self::internal(&r),
                    _ => S::UNPROCESSABLE_ENTITY,
                };
                let mut e = Self::new(status, code, "Refused").detail(r.to_string());
                if let LedgerError::LimitExceeded {
                    kind,
                    window,
                    remaining,
                } = r
                {
                    e.problem.limit = Some(ExceededLimit {
                        kind: kind.as_str(),
                        window: window.as_str(),
                        remaining_minor: remaining,
                    });
                }
                e
            }
            LedgerServiceError::WrongPin { attempts_left } => {
                let mut e = Self::new(S::FORBIDDEN, "pin_wrong", "Wrong PIN");
                e.problem.attempts_left = Some(attempts_left);
                e
            }
            LedgerServiceError::WalletNotFound(_) => {
                Self::new(S::NOT_FOUND, "wallet_not_found", "No such wallet")
            }
            LedgerServiceError::TransactionNotFound(_) => {
                Self::new(S::NOT_FOUND, "transaction_not_found", "No such transaction")
            }
            LedgerServiceError::HoldNotFound(_) => {
                Self::new(S::NOT_FOUND, "hold_not_found", "No such hold")
            }
            LedgerServiceError::IdempotencyConflict => Self::new(
                S::CONFLICT,
                "idempotency_conflict",
                "Idempotency key reused",
            )
            .detail("this Idempotency-Key was used with another request"),
            LedgerServiceError::Invalid { field, reason } => Self::invalid(field, reason),
            e if e.is_retryable() => Self::unavailable(&e),
            other => Self::internal(&other),
        }
    }
}

impl From<UseCaseError> for ApiError {
    fn from(e: UseCaseError) -> Self {
        match e {
            UseCaseError::Forbidden(permission) => Self::forbidden(permission.as_str()),
            UseCaseError::MfaRequired(refused) => Self::new(
                StatusCode::FORBIDDEN,
                "mfa_required",
                "Second factor required",
            )
            .detail(refused.to_string()),
            UseCaseError::ExternalIdentity => Self::new(
                StatusCode::CONFLICT,
                "external_identity",
                "Managed by your identity provider",
            )
            .detail("this token comes from an external issuer: manage its sessions there"),
            UseCaseError::PageSize { max } => Self::invalid("limit", format!("1 to {max}")),
            UseCaseError::Ledger(e) => e.into(),
            UseCaseError::Auth(e) => e.into(),
            UseCaseError::Rotation(e) => match &e {
                coffer_rotation::RotationError::Refused(reason) => Self::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    e.code(),
                    "the rotation cannot be done as asked",
                )
                .detail(reason.clone()),
                _ => Self::unavailable(&e),
            },
            UseCaseError::Audit(e) => Self::unavailable(&e),
            UseCaseError::WebhookNotFound => Self::new(
                StatusCode::NOT_FOUND,
                "webhook_not_found",
                "No such webhook endpoint",
            ),
            UseCaseError::DeliveryNotFound => Self::new(
                StatusCode::NOT_FOUND,
                "delivery_not_found",
                "No such delivery",
            ),
            UseCaseError::WebhookUrl(e) => Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                e.code(),
                "The endpoint URL is not allowed",
            )
            .detail(e.to_string())
            .with("field", "url"),
            UseCaseError::Outbox(e) => Self::unavailable(&e),
            UseCaseError::Secret(e) => Self::unavailable(&e),
            other => Self::internal(&other),
        }
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        use StatusCode as S;
        let code = e.code();
        match e {
            AuthError::InvalidCredentials | AuthError::MfaRequired => {
                Self::new(S::UNAUTHORIZED, code, "Login failed").detail(e.to_string())
            }
            AuthError::InvalidRefreshToken => {
                Self::new(S::UNAUTHORIZED, code, "Invalid refresh token")
            }
            AuthError::InvalidResetToken => {
                Self::new(S::UNAUTHORIZED, code, "Invalid password-reset token")
            }
            AuthError::TooManyGuesses { retry_after } => {
                let secs = retry_after.as_secs().max(1);
                let mut e = Self::new(S::TOO_MANY_REQUESTS, code, "Too many requests").detail(
                    format!("too many wrong attempts at this account; retry after {secs} s"),
                );
                e.retry_after = Some(secs);
                e
            }
            AuthError::EmailTaken => Self::new(S::CONFLICT, code, "Email taken"),
            AuthError::Invalid { field, reason } => Self::invalid(field, reason),
            AuthError::UnknownRole(role) => Self::invalid("roles", format!("unknown role {role}")),
            AuthError::LastAdmin => {
                Self::new(S::CONFLICT, code, "Last administrator").detail(e.to_string())
            }
            AuthError::UserNotFound => Self::new(S::NOT_FOUND, code, "No such user"),
            AuthError::UserErased => Self::new(S::GONE, code, "User erased").detail(e.to_string()),
            AuthError::WalletsRemain => {
                Self::new(S::CONFLICT, code, "Erasure incomplete").detail(e.to_string())
            }
            AuthError::IdempotencyConflict => {
                Self::new(S::CONFLICT, code, "Idempotency key reused")
                    .detail("this Idempotency-Key was used with another request")
            }
            AuthError::InvalidApiKey => Self::unauthenticated(code, "invalid API key"),
            AuthError::ApiKeyNotFound => Self::new(S::NOT_FOUND, code, "No such API key"),
            AuthError::ApiKeyCredential => {
                Self::new(S::CONFLICT, code, "Not with an API key").detail(e.to_string())
            }
            AuthError::MfaState(m) => Self::new(S::CONFLICT, code, "Second factor").detail(m),
            AuthError::Token(t) => t.into(),
            AuthError::Unavailable(_) => Self::unavailable(&e),
            other => Self::internal(&other),
        }
    }
}

impl From<TokenError> for ApiError {
    fn from(e: TokenError) -> Self {
        match e {
            TokenError::Unavailable(_) => Self::unavailable(&e),
            TokenError::Signing(_) => Self::internal(&e),
            other => Self::unauthenticated(other.reason(), &other.to_string()),
        }
    }
}
