//! The ledger's one error type: what a caller can act on, then the opaque failures. An opaque
//! failure keeps its cause ([`Cause`], the source chain intact), with what was being done when
//! it happened ([`context`]) where that helps the reader of a log.

use coffer_keys::KeyError;

use crate::domain::{HoldId, IdError, LedgerError, TransactionId, WalletId};
use crate::money::MoneyError;

/// The cause of an opaque failure: any error, or a message (`"…".into()`).
pub type Cause = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A cause with what was being done when it happened: shown as `what: source`, and its
/// `source()` is the cause.
#[derive(Debug, thiserror::Error)]
#[error("{what}: {source}")]
pub struct Context {
    what: String,
    #[source]
    source: Cause,
}

/// `source`, with what was being done.
pub fn context(what: impl Into<String>, source: impl Into<Cause>) -> Cause {
    Box::new(Context {
        what: what.into(),
        source: source.into(),
    })
}

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
    /// No such hold, or not one the caller may see or resolve.
    #[error("hold {0} not found")]
    HoldNotFound(HoldId),
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
    Unavailable(#[source] Cause),
    /// The wallet changed between loading and locking in a way the operation cannot decide
    /// on (its PIN, or a new data key): the service tries again itself a few times, then
    /// answers this (retryable).
    #[error("the wallet changed during the operation: {0}; retry")]
    Changed(String),
    /// Stored data does not decrypt or parse: tampering, a lost key, or a bug. Never the
    /// caller's fault.
    #[error("ledger data is corrupt: {0}")]
    Corrupt(#[source] Cause),
    /// Anything else from the store.
    #[error("ledger storage error: {0}")]
    Storage(#[source] Cause),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_opaque_failure_keeps_its_cause_and_says_what_was_being_done() {
        let io = std::io::Error::other("disk on fire");
        let e = Error::Storage(context("sealing a balance", io));
        assert_eq!(
            e.to_string(),
            "ledger storage error: sealing a balance: disk on fire"
        );
        let source = std::error::Error::source(&e).map(ToString::to_string);
        assert_eq!(source.as_deref(), Some("sealing a balance: disk on fire"));
        let root = std::error::Error::source(&e)
            .and_then(std::error::Error::source)
            .map(ToString::to_string);
        assert_eq!(root.as_deref(), Some("disk on fire"));
    }
}
