//! [`UseCaseError`]: why a use case refused, before or inside the domain service.

use coffer_auth::Permission;
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
    /// The ledger refused, or could not answer.
    #[error(transparent)]
    Ledger(#[from] coffer_ledger::Error),
}
