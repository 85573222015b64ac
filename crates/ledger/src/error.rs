//! The ledger's one error type: what a caller can act on, then the opaque failures.

use coffer_keys::KeyError;

use crate::domain::{IdError, LedgerError, TransactionId, WalletId};
use crate::money::MoneyError;

/// Why a ledger operation did not happen. Nothing was written when it is returned (except the
/// wrong-PIN count of [`Error::WrongPin`], which is the point).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A rule refused it (funds, status, lockout, currency, reversal rules).
    #[error(transparent)]
    Rejected(#[from] LedgerError),
    /// The PIN is wrong; `attempts_left` more before money-out locks.
    #[error("wrong PIN ({attempts_left} attempts left before money-out locks)")]
    WrongPin {
        /// Wrong PINs left before the lock.
        attempts_left: u32,
    },
    /// No such wallet, or not the caller's.
    #[error("wallet {0} not found")]
    WalletNotFound(WalletId),
    /// No such transaction, or not the caller's.
    #[error("transaction {0} not found")]
    TransactionNotFound(TransactionId),
    /// The idempotency key was used for a different request.
    #[error("idempotency key already used for a different request")]
    IdempotencyConflict,
    /// A request field is malformed (memo, idempotency key, cursor, PIN, id).
    #[error("invalid {field}: {reason}")]
    Invalid {
        /// Which field.
        field: &'static str,
        /// Why.
        reason: String,
    },
    /// A wallet with this id exists already.
    #[error("wallet {0} already exists")]
    DuplicateWallet(WalletId),
    /// The key provider failed (retryable when it says so).
    #[error("key provider: {0}")]
    Keys(#[from] KeyError),
    /// The database is unreachable or timed out.
    #[error("ledger storage unavailable: {0}")]
    Unavailable(String),
    /// The wallet changed between loading and locking in a way the operation cannot decide
    /// on (its PIN, or a new data key): the service tries again itself a few times, then
    /// answers this (retryable).
    #[error("the wallet changed during the operation: {0}; retry")]
    Changed(String),
    /// Stored data does not decrypt or parse: tampering, a lost key, or a bug. Never the
    /// caller's fault.
    #[error("ledger data is corrupt: {0}")]
    Corrupt(String),
    /// Anything else from the store.
    #[error("ledger storage error: {0}")]
    Storage(String),
}

impl Error {
    /// An invalid-field error.
    #[must_use]
    pub fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        Self::Invalid {
            field,
            reason: reason.into(),
        }
    }

    /// Whether trying again later may succeed.
    #[must_use]
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Unavailable(_) | Self::Changed(_) => true,
            Self::Keys(k) => k.is_retryable(),
            _ => false,
        }
    }
}

impl From<MoneyError> for Error {
    fn from(e: MoneyError) -> Self {
        Self::Rejected(LedgerError::Money(e))
    }
}

impl From<IdError> for Error {
    fn from(e: IdError) -> Self {
        Self::invalid("id", e.to_string())
    }
}
