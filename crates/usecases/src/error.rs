//! [`UseCaseError`]: why a use case refused, before or inside the domain service.

use coffer_auth::Permission;
use coffer_auth::accounts::AuthError;
use coffer_auth::mfa::MfaRequired;

/// Why a use case refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UseCaseError {
    /// The caller's roles do not grant the permission the use case needs.
    #[error("this needs the {} permission", .0.as_str())]
    Forbidden(Permission),
    /// Money-out above the threshold, by a token without a second factor.
    #[error(transparent)]
    MfaRequired(#[from] MfaRequired),
    /// The caller is an external issuer's principal: its sessions and factors live there.
    #[error("this identity is managed by its issuer")]
    ExternalIdentity,
    /// A page size outside 1 to `max`.
    #[error("a page holds 1 to {max} items")]
    PageSize {
        /// The largest page.
        max: u32,
    },
    /// The ledger refused, or could not answer.
    #[error(transparent)]
    Ledger(#[from] coffer_ledger::Error),
    /// The accounts refused, or could not answer.
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// The key rotation refused, or could not answer.
    #[error(transparent)]
    Rotation(#[from] coffer_rotation::RotationError),
    /// The audit log could not answer.
    #[error(transparent)]
    Audit(#[from] coffer_audit::AuditError),
    /// No such webhook endpoint.
    #[error("no such webhook endpoint")]
    WebhookNotFound,
    /// No such delivery of the endpoint (or its event was pruned since).
    #[error("no such delivery")]
    DeliveryNotFound,
    /// An endpoint URL this deployment does not deliver to.
    #[error(transparent)]
    WebhookUrl(coffer_outbox::UrlError),
    /// The outbox could not answer.
    #[error(transparent)]
    Outbox(#[from] coffer_outbox::OutboxError),
    /// A signing secret could not be made or read.
    #[error(transparent)]
    Secret(#[from] coffer_outbox::SecretUnavailable),
}
