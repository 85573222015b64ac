//! The identifiers several domain crates share. A user is one [`UserId`] everywhere: the
//! accounts' user (`coffer_auth::user::UserId`), the ledger's wallet owner and actor
//! (`coffer_ledger::UserId`) and the audit log's actor are the same value of the same type, so
//! nothing converts between them.
//!
//! Ids are UUIDs: new ones are version 7 (ordered by creation); the text form is the hyphenated
//! one, in `Display` and `Debug` alike.

use std::fmt;

use uuid::Uuid;

/// A string that is not an id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a valid {0} (a UUID)")]
pub struct IdError(pub &'static str);

/// A user's id (a UUID; the `sub` of their tokens, the owner of their wallets).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UserId(Uuid);

impl UserId {
    /// A new, time-ordered id (UUID v7).
    #[must_use]
    pub fn new() -> Self {
        Self(Uuid::now_v7())
    }

    /// Parses the hyphenated form (a token's `sub`, a path segment).
    ///
    /// # Errors
    /// [`IdError`] for anything else.
    pub fn parse(s: &str) -> Result<Self, IdError> {
        Uuid::try_parse(s).map(Self).map_err(|_| IdError("UserId"))
    }

    /// From a stored or presented UUID.
    #[must_use]
    pub fn from_uuid(u: Uuid) -> Self {
        Self(u)
    }

    /// The UUID.
    #[must_use]
    pub fn as_uuid(&self) -> &Uuid {
        &self.0
    }
}

impl Default for UserId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

impl fmt::Debug for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "UserId({})", self.0.hyphenated())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn the_text_form_round_trips_and_nothing_else_parses() {
        let id = UserId::new();
        assert_eq!(UserId::parse(&id.to_string()).unwrap(), id);
        assert_eq!(format!("{id:?}"), format!("UserId({id})"));
        for bad in ["", "not-a-uuid", "0123"] {
            assert_eq!(UserId::parse(bad), Err(IdError("UserId")));
        }
    }
}
