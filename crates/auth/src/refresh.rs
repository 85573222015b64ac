//! Refresh tokens: 256-bit random opaque values, stored only as SHA-256 hashes, grouped in
//! families (one login, then each rotation), 30 days absolute per family, rotated on every use.
//! What a presented token leads to is a pure decision over its stored record ([`decide`]); the
//! store applies it in one transaction.
//!
//! A spent token presented again means a copy exists: the whole family is revoked and a
//! `user.refresh_reuse_detected` audit event written. A short grace window (a client whose
//! response was lost retries) lets the immediately previous token through once more, as long
//! as its replacement has not been used: the replacement is then revoked in its place, so a
//! family never has two live tokens.

use crate::opaque::{OpaqueToken, TokenHash, TokenKind};

/// The prefix of Coffer refresh tokens (so secret scanners can find leaked ones).
pub const PREFIX: &str = "cfr1_";
/// Lifetime of a family, from its login.
pub const FAMILY_LIFETIME_SECS: u64 = 30 * 24 * 3600;

/// The refresh kind of opaque token.
#[derive(Debug)]
pub enum Refresh {}

impl TokenKind for Refresh {
    const PREFIX: &'static str = PREFIX;
    const NAME: &'static str = "RefreshToken";
}

/// A refresh token as the client holds it. Zeroized on drop; `Debug` prints nothing of it.
pub type RefreshToken = OpaqueToken<Refresh>;

/// The stored form: SHA-256 of the token.
pub type RefreshHash = TokenHash;

/// A refresh token as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshRecord {
    /// Its hash (the key).
    pub hash: RefreshHash,
    /// Its family (one login).
    pub family: uuid::Uuid,
    /// Whose (a user id).
    pub user: String,
    /// The client the family was issued to (its access tokens' `client_id`).
    pub client_id: String,
    /// How the login authenticated (its access tokens' `amr`, kept through rotations).
    pub amr: Vec<String>,
    /// When the family ends, whatever the rotations (seconds since the epoch).
    pub family_expires_at: u64,
    /// When it was used, if it was.
    pub spent_at: Option<u64>,
    /// The token that replaced it, if it was used.
    pub replaced_by: Option<RefreshHash>,
    /// Whether its family was revoked.
    pub revoked: bool,
    /// Whether it was revoked as the unused replacement a grace-window retry superseded: if it
    /// turns up, the retry was not its owner's.
    pub superseded: bool,
}

/// What presenting a token leads to. A `Rotate` keeps the presented token's `spent_at` as it
/// was (the store sets it only when it is unset), so the grace window never slides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Issue a new token in the family (expiring with the family), mark this one spent and
    /// replaced by it, and revoke `orphan` (a replacement that a grace-window retry supersedes).
    Rotate {
        /// The family.
        family: uuid::Uuid,
        /// When the new token's family ends (unchanged: rotation never extends it).
        family_expires_at: u64,
        /// A replacement to revoke.
        orphan: Option<RefreshHash>,
    },
    /// A spent token came back: revoke the family, audit `user.refresh_reuse_detected`.
    ReuseDetected {
        /// The family to revoke.
        family: uuid::Uuid,
    },
    /// Refuse: unknown, expired, or its family revoked (all answer the same to the client).
    Refuse,
}

/// Decides what `record` (the stored record of the presented token, if any) leads to at `now`,
/// given `replacement` (the stored record of its replacement, when it was spent) and a grace
/// window of `grace_secs`.
#[must_use]
pub fn decide(
    record: Option<&RefreshRecord>,
    replacement: Option<&RefreshRecord>,
    now: u64,
    grace_secs: u64,
) -> Decision {
    let Some(r) = record else {
        return Decision::Refuse;
    };
    if r.superseded {
        // The owner's copy of the replacement: the token retried in the grace window was a
        // stolen one.
        return Decision::ReuseDetected { family: r.family };
    }
    if r.revoked || now >= r.family_expires_at {
        return Decision::Refuse;
    }
    let rotate = |orphan| Decision::Rotate {
        family: r.family,
        family_expires_at: r.family_expires_at,
        orphan,
    };
    match r.spent_at {
        None => rotate(None),
        Some(spent) => {
            let replacement_unused = replacement.is_some_and(|n| {
                Some(n.hash) == r.replaced_by
                    && n.family == r.family
                    && n.spent_at.is_none()
                    && !n.revoked
            });
            if grace_secs > 0 && now.saturating_sub(spent) <= grace_secs && replacement_unused {
                rotate(r.replaced_by)
            } else {
                Decision::ReuseDetected { family: r.family }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(spent_at: Option<u64>) -> RefreshRecord {
        RefreshRecord {
            hash: RefreshToken::generate().hash(),
            family: uuid::Uuid::now_v7(),
            user: "u1".into(),
            client_id: "web".into(),
            amr: vec!["pwd".into()],
            family_expires_at: 1_000 + FAMILY_LIFETIME_SECS,
            spent_at,
            replaced_by: spent_at.map(|_| RefreshToken::generate().hash()),
            revoked: false,
            superseded: false,
        }
    }

    #[test]
    fn a_fresh_token_rotates_without_extending_its_family() {
        let r = record(None);
        assert_eq!(
            decide(Some(&r), None, 2_000, 10),
            Decision::Rotate {
                family: r.family,
                family_expires_at: r.family_expires_at,
                orphan: None
            }
        );
        assert_eq!(decide(None, None, 2_000, 10), Decision::Refuse);
        assert_eq!(
            decide(Some(&r), None, r.family_expires_at, 10),
            Decision::Refuse,
            "30 days after login, rotations or not"
        );
        let revoked = RefreshRecord {
            revoked: true,
            ..r.clone()
        };
        assert_eq!(decide(Some(&revoked), None, 2_000, 10), Decision::Refuse);
    }

    #[test]
    fn a_spent_token_presented_again_revokes_its_family() {
        let r = record(Some(2_000));
        let next = RefreshRecord {
            hash: r.replaced_by.unwrap(),
            spent_at: None,
            replaced_by: None,
            ..r.clone()
        };
        // Within the grace window, with the replacement unused: a lost response, retried.
        assert_eq!(
            decide(Some(&r), Some(&next), 2_005, 10),
            Decision::Rotate {
                family: r.family,
                family_expires_at: r.family_expires_at,
                orphan: r.replaced_by
            }
        );
        // After the window, or once the replacement was used: a copy exists.
        assert_eq!(
            decide(Some(&r), Some(&next), 2_011, 10),
            Decision::ReuseDetected { family: r.family }
        );
        let used = RefreshRecord {
            spent_at: Some(2_001),
            ..next.clone()
        };
        assert_eq!(
            decide(Some(&r), Some(&used), 2_002, 10),
            Decision::ReuseDetected { family: r.family }
        );
        assert_eq!(
            decide(Some(&r), Some(&next), 2_000, 0),
            Decision::ReuseDetected { family: r.family },
            "no grace window configured: not even within the same second"
        );
        // A "replacement" from elsewhere does not open the grace window.
        let stranger = RefreshRecord {
            hash: RefreshToken::generate().hash(),
            ..next.clone()
        };
        assert_eq!(
            decide(Some(&r), Some(&stranger), 2_005, 10),
            Decision::ReuseDetected { family: r.family }
        );
        // The thief retried in the window and the owner's replacement was superseded: when the
        // owner presents it, the family goes.
        let superseded = RefreshRecord {
            revoked: true,
            superseded: true,
            ..next
        };
        assert_eq!(
            decide(Some(&superseded), None, 2_006, 10),
            Decision::ReuseDetected { family: r.family }
        );
    }
}
