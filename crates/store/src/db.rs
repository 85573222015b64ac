//! The one classifier of driver errors. Every adapter turns a [`sqlx::Error`] into a
//! [`DbFailure`]: what kind of failure it is ([`DbFailureKind`]) with the driver's error kept as
//! its [`source`](std::error::Error::source). Each port's error type has one conversion from it
//! (beside the port's adapter), which picks the port's variant by the kind; a port that gives a
//! constraint a meaning of its own (a duplicate e-mail, a second reversal) asks
//! [`DbFailure::is_unique_on`] first.
//!
//! The kinds, in the order they are told apart:
//! - unavailable: the database cannot be reached (the pool timed out or is closed, I/O, TLS, the
//!   SQLite worker died); retrying later may succeed.
//! - conflict: the database refused the statement because of another transaction: a unique
//!   violation ([`Conflict::Unique`]), or on Postgres a serialization failure (40001) or a
//!   deadlock (40P01) ([`Conflict::Retry`]: the whole transaction may run again).
//! - corrupt: a stored value cannot be decoded into the type the adapter reads.
//! - storage: anything else.

use std::fmt;

/// A driver error, classified; see the module documentation.
#[derive(Debug)]
pub(crate) struct DbFailure {
    kind: DbFailureKind,
    source: sqlx::Error,
}

/// What kind of failure a [`DbFailure`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DbFailureKind {
    /// The database cannot be reached.
    Unavailable,
    /// Another transaction won.
    Conflict(Conflict),
    /// A stored value cannot be decoded.
    Corrupt,
    /// Anything else.
    Storage,
}

/// How another transaction won.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Conflict {
    /// A unique constraint or index refused the row.
    Unique,
    /// A serialization failure or a deadlock: the transaction may run again.
    Retry,
}

impl DbFailure {
    /// The kind of failure.
    pub(crate) fn kind(&self) -> DbFailureKind {
        self.kind
    }

    /// Whether this is a unique violation (on any constraint or index).
    pub(crate) fn is_unique(&self) -> bool {
        self.kind == DbFailureKind::Conflict(Conflict::Unique)
    }

    /// Whether this is a unique violation on a constraint or index whose name contains `what`
    /// (Postgres names the constraint; SQLite only says it in the message, by its columns).
    pub(crate) fn is_unique_on(&self, what: &str) -> bool {
        self.is_unique()
            && self.source.as_database_error().is_some_and(|d| {
                d.constraint().is_some_and(|c| c.contains(what)) || d.message().contains(what)
            })
    }

    /// The driver's error.
    pub(crate) fn into_source(self) -> sqlx::Error {
        self.source
    }
}

impl From<sqlx::Error> for DbFailure {
    fn from(source: sqlx::Error) -> Self {
        let kind = match &source {
            sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::WorkerCrashed => DbFailureKind::Unavailable,
            sqlx::Error::ColumnDecode { .. } | sqlx::Error::Decode(_) => DbFailureKind::Corrupt,
            sqlx::Error::Database(d) if d.is_unique_violation() => {
                DbFailureKind::Conflict(Conflict::Unique)
            }
            // 40001 serialization_failure, 40P01 deadlock_detected.
            sqlx::Error::Database(d) if d.code().is_some_and(|c| c == "40001" || c == "40P01") => {
                DbFailureKind::Conflict(Conflict::Retry)
            }
            _ => DbFailureKind::Storage,
        };
        Self { kind, source }
    }
}

impl fmt::Display for DbFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.kind {
            DbFailureKind::Unavailable => "database unavailable",
            DbFailureKind::Conflict(Conflict::Unique) => "unique constraint violated",
            DbFailureKind::Conflict(Conflict::Retry) => {
                "transaction conflicted with a concurrent one"
            }
            DbFailureKind::Corrupt => "stored value cannot be decoded",
            DbFailureKind::Storage => "database error",
        })
    }
}

impl std::error::Error for DbFailure {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// Decodes a stored value into its domain type (an envelope, a wrapped key): what does not
/// decode is the cause of the port's `Corrupt`, named `stored {what}`.
pub(crate) fn decode<T, E>(
    parse: impl FnOnce(&[u8]) -> Result<T, E>,
    v: &[u8],
    what: &str,
) -> Result<T, coffer_ledger::error::Cause>
where
    E: std::error::Error + Send + Sync + 'static,
{
    parse(v).map_err(|e| coffer_ledger::error::context(format!("stored {what}"), e))
}
