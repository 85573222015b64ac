//! API keys: long-lived credentials for service clients (a payout service, a Prometheus
//! scraper) that cannot do an interactive login.
//!
//! A key belongs to a user (a service account) and acts as that user with a subset of its
//! permissions: an administrator names the permissions at creation, each one the owner's roles
//! grant then, and every request intersects them again with what the owner's roles grant now,
//! so demoting the owner narrows its keys at once. Which wallets a key may touch is the owner's
//! (the ledger's ownership rule), so a key never moves another user's money.
//!
//! The secret is `ck_live_` and 256 random bits ([`ApiKeySecret`]); it is shown once and stored
//! only as its SHA-256 (its entropy makes a slow hash pointless). Every request looks the hash
//! up in the database, so a revocation or an expiry takes effect on every replica at once. The
//! flows are in [`crate::accounts`]'s `api_keys` module.

use std::collections::BTreeSet;
use std::fmt;

use crate::opaque::{OpaqueToken, TokenHash, TokenKind};
use crate::rbac::Permission;
use crate::user::UserId;

/// The prefix of Coffer API keys (secret scanners match on it).
pub const PREFIX: &str = "ck_live_";

/// Longest lifetime a key may be given, in days.
pub const MAX_LIFETIME_DAYS: u32 = 365;

/// Most requests a minute a key's own rate limit may allow.
pub const MAX_RATE_PER_MINUTE: u32 = 100_000;

/// The API-key kind of opaque token.
#[derive(Debug)]
pub enum ApiKeyKind {}

impl TokenKind for ApiKeyKind {
    const PREFIX: &'static str = PREFIX;
    const NAME: &'static str = "ApiKeySecret";
}

/// An API key's secret as its holder has it. Zeroized on drop; `Debug` prints nothing of it.
pub type ApiKeySecret = OpaqueToken<ApiKeyKind>;

coffer_ids::id_type!(
    /// An API key's id: public, it names the key in listings, audit records and rate limits.
    ApiKeyId
);

/// Why a requested key is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiKeyError {
    /// The name is empty, longer than 64 characters or has control characters.
    #[error("names are 1 to 64 characters without control characters")]
    Name,
    /// No permission, or one nobody knows.
    #[error("{0}")]
    Permissions(String),
    /// A lifetime outside 1 to [`MAX_LIFETIME_DAYS`] days.
    #[error("a key lives 1 to {MAX_LIFETIME_DAYS} days")]
    Lifetime,
    /// A rate outside 1 to [`MAX_RATE_PER_MINUTE`] a minute.
    #[error("a key's rate limit is 1 to {MAX_RATE_PER_MINUTE} requests a minute")]
    Rate,
}

impl ApiKeyError {
    /// The request field it is about.
    #[must_use]
    pub fn field(&self) -> &'static str {
        match self {
            Self::Name => "name",
            Self::Permissions(_) => "permissions",
            Self::Lifetime => "expires_in_days",
            Self::Rate => "rate_limit_per_minute",
        }
    }
}

/// A key's name, for people: 1 to 64 characters, no control characters. Not secret.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKeyName(String);

impl ApiKeyName {
    /// Parses a name (trimmed).
    ///
    /// # Errors
    /// [`ApiKeyError::Name`].
    pub fn parse(s: &str) -> Result<Self, ApiKeyError> {
        let s = s.trim();
        if s.is_empty() || s.chars().count() > 64 || s.chars().any(char::is_control) {
            return Err(ApiKeyError::Name);
        }
        Ok(Self(s.to_owned()))
    }

    /// The name.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ApiKeyName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

/// The permissions of a key: at least one, each a known name.
///
/// # Errors
/// [`ApiKeyError::Permissions`].
pub fn parse_permissions<S: AsRef<str>>(names: &[S]) -> Result<BTreeSet<Permission>, ApiKeyError> {
    let set = names
        .iter()
        .map(|n| {
            Permission::parse(n.as_ref()).ok_or_else(|| {
                ApiKeyError::Permissions(format!("unknown permission {:?}", n.as_ref()))
            })
        })
        .collect::<Result<BTreeSet<_>, _>>()?;
    if set.is_empty() {
        return Err(ApiKeyError::Permissions(
            "a key needs at least one permission".into(),
        ));
    }
    Ok(set)
}

/// A key an administrator asks for, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewApiKey {
    /// The service account it acts as.
    pub user: UserId,
    /// Its name.
    pub name: ApiKeyName,
    /// What it may do (each granted by the owner's roles).
    pub permissions: BTreeSet<Permission>,
    /// How many days it works.
    pub lifetime_days: u32,
    /// Its own requests-a-minute budget; `None` is the configured per-key policy.
    pub rate_per_minute: Option<u32>,
}

impl NewApiKey {
    /// Checks the lifetime and the rate.
    ///
    /// # Errors
    /// [`ApiKeyError::Lifetime`], [`ApiKeyError::Rate`].
    pub fn new(
        user: UserId,
        name: ApiKeyName,
        permissions: BTreeSet<Permission>,
        lifetime_days: u32,
        rate_per_minute: Option<u32>,
    ) -> Result<Self, ApiKeyError> {
        if !(1..=MAX_LIFETIME_DAYS).contains(&lifetime_days) {
            return Err(ApiKeyError::Lifetime);
        }
        if rate_per_minute.is_some_and(|r| !(1..=MAX_RATE_PER_MINUTE).contains(&r)) {
            return Err(ApiKeyError::Rate);
        }
        Ok(Self {
            user,
            name,
            permissions,
            lifetime_days,
            rate_per_minute,
        })
    }
}

/// An API key as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyRecord {
    /// Its id.
    pub id: ApiKeyId,
    /// The user it acts as.
    pub user: UserId,
    /// Its name.
    pub name: ApiKeyName,
    /// Its secret's hash.
    pub hash: TokenHash,
    /// What it may do.
    pub permissions: BTreeSet<Permission>,
    /// Its own rate limit, requests a minute.
    pub rate_per_minute: Option<u32>,
    /// The administrator who created it.
    pub created_by: UserId,
    /// When, seconds since the epoch.
    pub created_at: u64,
    /// When it stops working.
    pub expires_at: u64,
    /// When it was revoked.
    pub revoked_at: Option<u64>,
}

impl ApiKeyRecord {
    /// Whether it works at `now` (seconds since the epoch).
    #[must_use]
    pub fn live_at(&self, now: u64) -> bool {
        self.revoked_at.is_none() && now < self.expires_at
    }
}

/// A key and its owner's roles now, as a request's lookup reads them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyOwner {
    /// The key.
    pub key: ApiKeyRecord,
    /// The owner's roles.
    pub roles: Vec<String>,
}

/// What a request made with a key carries beside its user: the key, never its secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyGrant {
    /// Its id.
    pub id: ApiKeyId,
    /// Its name.
    pub name: ApiKeyName,
    /// What it may do (the owner's roles are asked too).
    pub permissions: BTreeSet<Permission>,
    /// Its own rate limit, requests a minute.
    pub rate_per_minute: Option<u32>,
    /// When it stops working.
    pub expires_at: u64,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::reset::ResetToken;

    #[test]
    fn secrets_are_recognisable_and_never_another_kind() {
        let key = ApiKeySecret::generate();
        assert!(key.expose().starts_with("ck_live_"));
        assert_eq!(format!("{key:?}"), "ApiKeySecret([REDACTED])");
        assert!(ResetToken::parse(key.expose()).is_err());
        assert!(ApiKeySecret::parse(ResetToken::generate().expose()).is_err());
        assert_eq!(
            ApiKeySecret::parse(key.expose()).unwrap().hash(),
            key.hash()
        );
    }

    #[test]
    fn requests_are_parsed_strictly() {
        assert_eq!(ApiKeyName::parse("  payouts ").unwrap().as_str(), "payouts");
        for bad in ["", "   ", "a\nb", &"x".repeat(65)] {
            assert_eq!(ApiKeyName::parse(bad), Err(ApiKeyError::Name));
        }
        assert_eq!(
            parse_permissions(&["wallet:read", "wallet:read"])
                .unwrap()
                .len(),
            1
        );
        assert!(parse_permissions::<&str>(&[]).is_err());
        assert_eq!(
            parse_permissions(&["wallet:steal"]).unwrap_err().field(),
            "permissions"
        );
        let name = ApiKeyName::parse("k").unwrap();
        let perms = parse_permissions(&["system:metrics"]).unwrap();
        let user = UserId::new();
        for (days, rate, err) in [
            (0, None, Some(ApiKeyError::Lifetime)),
            (366, None, Some(ApiKeyError::Lifetime)),
            (365, Some(0), Some(ApiKeyError::Rate)),
            (365, Some(100_001), Some(ApiKeyError::Rate)),
            (1, Some(1), None),
        ] {
            let got = NewApiKey::new(user, name.clone(), perms.clone(), days, rate);
            assert_eq!(got.err(), err, "{days} days, {rate:?} a minute");
        }
    }

    #[test]
    fn a_key_works_until_it_expires_or_is_revoked() {
        let mut key = ApiKeyRecord {
            id: ApiKeyId::new(),
            user: UserId::new(),
            name: ApiKeyName::parse("k").unwrap(),
            hash: ApiKeySecret::generate().hash(),
            permissions: parse_permissions(&["wallet:read"]).unwrap(),
            rate_per_minute: None,
            created_by: UserId::new(),
            created_at: 100,
            expires_at: 200,
            revoked_at: None,
        };
        assert!(key.live_at(199));
        assert!(!key.live_at(200));
        key.revoked_at = Some(150);
        assert!(!key.live_at(120));
    }
}
