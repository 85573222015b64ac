//! Token revocation: the port, and its in-memory adapter (the embedded default; a Redis adapter
//! serves several API replicas).
//!
//! Three mechanisms, each as cheap to check as the token it revokes:
//! - a denylist of token ids (`jti`), each entry kept only until that token would expire anyway
//!   (logout);
//! - a per-user epoch: every token carries the epoch of its user at issue, and bumping the epoch
//!   invalidates every earlier token of that user (revoke-all, admin revoke);
//! - a global epoch, carried and checked the same way (the emergency revoke of every session).
//!
//! The in-memory list tells an expired denylist entry by an injected [`Clock`] (the system's
//! unless [`InMemoryRevocationList::with_clock`] says otherwise).

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use coffer_clock::Clock;

/// Errors of the revocation port.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RevocationError {
    /// The backing store does not answer (the caller fails closed: no token is accepted that
    /// cannot be checked).
    #[error("revocation list unavailable: {0}")]
    Unavailable(#[source] crate::store::Cause),
    /// A bad argument (an empty token id or user).
    #[error("invalid revocation request: {0}")]
    Invalid(&'static str),
}

/// What verification needs to know, in one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RevocationStatus {
    /// The token id is denylisted.
    pub token_revoked: bool,
    /// The user's current epoch.
    pub user_epoch: u64,
    /// The current global epoch.
    pub global_epoch: u64,
}

/// The revocation-list port. Used as `Arc<dyn RevocationList>`.
#[async_trait]
pub trait RevocationList: Send + Sync + fmt::Debug {
    /// Denylists a token id until `expires` (when the token would stop working anyway).
    async fn revoke_token(&self, jti: &str, expires: SystemTime) -> Result<(), RevocationError>;

    /// Bumps a user's epoch (every token issued before stops working); returns the new epoch.
    async fn revoke_user(&self, user: &str) -> Result<u64, RevocationError>;

    /// Bumps the global epoch (every token issued before stops working); returns it.
    async fn revoke_everyone(&self) -> Result<u64, RevocationError>;

    /// The epochs to put into a new token of `user`.
    async fn epochs(&self, user: &str) -> Result<(u64, u64), RevocationError>;

    /// Everything verification needs about `jti` of `user`.
    async fn status(&self, jti: &str, user: &str) -> Result<RevocationStatus, RevocationError>;
}

fn check(what: &'static str, s: &str) -> Result<(), RevocationError> {
    if s.is_empty() || s.len() > 256 {
        Err(RevocationError::Invalid(what))
    } else {
        Ok(())
    }
}

/// Seconds since the epoch (for expiries).
#[must_use]
pub fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

#[derive(Debug, Default)]
struct State {
    denied: HashMap<String, u64>,
    users: HashMap<String, u64>,
    global: u64,
    inserts: u64,
}

/// The in-process revocation list: one API process. Expired denylist entries are dropped as
/// new ones arrive, so memory is bounded by the tokens revoked within one token lifetime.
#[derive(Debug)]
pub struct InMemoryRevocationList {
    state: Mutex<State>,
    clock: Arc<dyn Clock>,
}

impl Default for InMemoryRevocationList {
    fn default() -> Self {
        Self {
            state: Mutex::default(),
            clock: coffer_clock::system(),
        }
    }
}

impl InMemoryRevocationList {
    /// An empty list.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// The same, reading the time from `clock`.
    #[must_use]
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Denylist entries held now (a metric, and how tests see expiry work).
    #[must_use]
    pub fn denied_len(&self) -> usize {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .denied
            .len()
    }
}

#[async_trait]
impl RevocationList for InMemoryRevocationList {
    async fn revoke_token(&self, jti: &str, expires: SystemTime) -> Result<(), RevocationError> {
        check("jti", jti)?;
        let now = self.clock.unix_secs();
        let until = unix_secs(expires);
        let mut s = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        s.inserts += 1;
        if s.inserts.is_multiple_of(256) {
            s.denied.retain(|_, until| *until > now);
        }
        if until > now {
            let entry = s.denied.entry(jti.to_owned()).or_insert(until);
            *entry = (*entry).max(until);
        }
        Ok(())
    }

    async fn revoke_user(&self, user: &str) -> Result<u64, RevocationError> {
        check("user", user)?;
        let mut s = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let epoch = s.users.entry(user.to_owned()).or_insert(0);
        *epoch += 1;
        Ok(*epoch)
    }

    async fn revoke_everyone(&self) -> Result<u64, RevocationError> {
        let mut s = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        s.global += 1;
        Ok(s.global)
    }

    async fn epochs(&self, user: &str) -> Result<(u64, u64), RevocationError> {
        check("user", user)?;
        let s = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        Ok((s.users.get(user).copied().unwrap_or(0), s.global))
    }

    async fn status(&self, jti: &str, user: &str) -> Result<RevocationStatus, RevocationError> {
        check("jti", jti)?;
        check("user", user)?;
        let now = self.clock.unix_secs();
        let s = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        Ok(RevocationStatus {
            token_revoked: s.denied.get(jti).is_some_and(|until| *until > now),
            user_epoch: s.users.get(user).copied().unwrap_or(0),
            global_epoch: s.global,
        })
    }
}
