//! Passwords: the policy (at least 12 characters, at most 128, not a well-known password) and
//! Argon2id hashing with OWASP's parameters (m = 19 MiB, t = 2, p = 1), run on tokio's blocking
//! pool behind a semaphore so a burst of logins queues instead of starving request handling.
//! A login for an unknown email verifies against a fixed dummy hash, so it costs the same time
//! as a wrong password and does not tell whether the account exists.

use std::fmt;
use std::sync::Arc;

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier as _, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use tokio::sync::Semaphore;
use zeroize::Zeroizing;

/// Shortest password, in characters.
pub const MIN_CHARS: usize = 12;
/// Longest password, in characters (bounds the hashing input).
pub const MAX_CHARS: usize = 128;

/// Well-known passwords of policy length: refused whatever their case.
const COMMON: &[&str] = &[
    "123456789012",
    "1234567890123",
    "12345678901234",
    "123456789012345",
    "1234567890abc",
    "password1234",
    "password12345",
    "password123456",
    "passwordpassword",
    "qwertyuiop12",
    "qwertyuiopasdf",
    "qwertyuiopasdfgh",
    "qwerty123456",
    "qwerty1234567",
    "1q2w3e4r5t6y",
    "1qaz2wsx3edc",
    "zaq12wsxcde3",
    "iloveyou1234",
    "letmein12345",
    "welcome12345",
    "administrator",
    "administrator1",
    "changeme1234",
    "monkey123456",
    "football1234",
    "baseball1234",
    "sunshine1234",
    "princess1234",
    "abcdefghijkl",
    "abcdefghijklm",
    "abc123456789",
    "aaaaaaaaaaaa",
    "trustno1trustno1",
    "correcthorsebatterystaple",
];

/// Why a new password is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PasswordError {
    /// Fewer than [`MIN_CHARS`] characters.
    #[error("passwords have at least {MIN_CHARS} characters")]
    TooShort,
    /// More than [`MAX_CHARS`] characters.
    #[error("passwords have at most {MAX_CHARS} characters")]
    TooLong,
    /// A well-known password, or one character repeated.
    #[error("this password is too common")]
    TooCommon,
}

/// A password that meets the policy (for registration and changes). Zeroized on drop; `Debug`
/// prints nothing of it.
#[derive(Clone)]
pub struct NewPassword(Zeroizing<String>);

impl NewPassword {
    /// Checks the policy.
    ///
    /// # Errors
    /// [`PasswordError`].
    pub fn parse(input: &str) -> Result<Self, PasswordError> {
        let chars = input.chars().count();
        if chars < MIN_CHARS {
            return Err(PasswordError::TooShort);
        }
        if chars > MAX_CHARS {
            return Err(PasswordError::TooLong);
        }
        let lower = input.to_lowercase();
        let mut distinct = lower.chars().collect::<Vec<_>>();
        distinct.sort_unstable();
        distinct.dedup();
        if distinct.len() <= 2 || COMMON.contains(&lower.as_str()) {
            return Err(PasswordError::TooCommon);
        }
        Ok(Self(Zeroizing::new(input.to_owned())))
    }

    /// The password, for hashing.
    #[must_use]
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for NewPassword {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("NewPassword([REDACTED])")
    }
}

/// Hashing failed (never the user's fault).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HashError {
    /// The blocking pool is gone (shutting down).
    #[error("password hashing unavailable")]
    Unavailable,
    /// The stored hash does not parse, or Argon2 refused its parameters.
    #[error("password hash: {0}")]
    Corrupt(String),
}

/// Argon2id at OWASP's parameters, off the runtime, bounded.
pub struct PasswordHasher {
    argon: Arc<Argon2<'static>>,
    permits: Arc<Semaphore>,
    dummy: Arc<String>,
}

coffer_macros::debug_non_exhaustive!(self => PasswordHasher {
    in_flight: self.permits.available_permits(),
});

impl PasswordHasher {
    /// OWASP: m = 19 MiB, t = 2, p = 1; at most `max_in_flight` hashes at once.
    ///
    /// # Errors
    /// [`HashError::Corrupt`] only if the parameters were refused (they are constants).
    pub fn new(max_in_flight: usize) -> Result<Self, HashError> {
        Self::with_params(19 * 1024, 2, max_in_flight)
    }

    /// Other cost parameters (tests use a cheap one; production uses [`PasswordHasher::new`]).
    ///
    /// # Errors
    /// [`HashError::Corrupt`] for parameters Argon2 refuses.
    pub fn with_params(
        memory_kib: u32,
        iterations: u32,
        max_in_flight: usize,
    ) -> Result<Self, HashError> {
        let params = Params::new(memory_kib, iterations, 1, None)
            .map_err(|e| HashError::Corrupt(e.to_string()))?;
        let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
        let salt = SaltString::generate(&mut OsRng);
        let dummy = argon
            .hash_password(b"coffer dummy password for unknown accounts", &salt)
            .map_err(|e| HashError::Corrupt(e.to_string()))?
            .to_string();
        Ok(Self {
            argon: Arc::new(argon),
            permits: Arc::new(Semaphore::new(max_in_flight.max(1))),
            dummy: Arc::new(dummy),
        })
    }

    /// Hashes a new password into a PHC string (`$argon2id$v=19$m=19456,t=2,p=1$…`).
    ///
    /// # Errors
    /// [`HashError`].
    pub async fn hash(&self, password: &NewPassword) -> Result<String, HashError> {
        let argon = self.argon.clone();
        let password = password.clone();
        self.blocking(move || {
            let salt = SaltString::generate(&mut OsRng);
            argon
                .hash_password(password.expose().as_bytes(), &salt)
                .map(|h| h.to_string())
                .map_err(|e| HashError::Corrupt(e.to_string()))
        })
        .await
    }

    /// Whether `password` matches `stored`. With `stored` = `None` (no such account) it checks
    /// against the dummy hash, taking as long, and answers `false`.
    ///
    /// # Errors
    /// [`HashError`] for a stored hash that does not parse.
    pub async fn verify(&self, password: &str, stored: Option<&str>) -> Result<bool, HashError> {
        let argon = self.argon.clone();
        let password = Zeroizing::new(password.to_owned());
        let known = stored.is_some();
        let stored = stored.map_or_else(|| (*self.dummy).clone(), str::to_owned);
        let matches = self
            .blocking(move || {
                let parsed =
                    PasswordHash::new(&stored).map_err(|e| HashError::Corrupt(e.to_string()))?;
                Ok(argon.verify_password(password.as_bytes(), &parsed).is_ok())
            })
            .await?;
        Ok(known && matches)
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> Result<T, HashError> + Send + 'static,
    ) -> Result<T, HashError> {
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| HashError::Unavailable)?;
        // The permit goes with the job: a caller that gives up (a dropped request) does not
        // free a slot while its hash still runs.
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            f()
        })
        .await
        .map_err(|_| HashError::Unavailable)?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_policy_refuses_short_long_and_common_passwords() {
        assert_eq!(
            NewPassword::parse("short-pass1").unwrap_err(),
            PasswordError::TooShort
        );
        assert_eq!(
            NewPassword::parse(&"x1".repeat(65)).unwrap_err(),
            PasswordError::TooLong
        );
        for common in [
            "Password1234",
            "QWERTY123456",
            "aaaaaaaaaaaaaaaa",
            "abababababab",
        ] {
            assert_eq!(
                NewPassword::parse(common).unwrap_err(),
                PasswordError::TooCommon,
                "{common}"
            );
        }
        // Twelve characters, counted as characters, not bytes.
        assert!(NewPassword::parse("ünïcødé-pässwörd").is_ok());
        let p = NewPassword::parse("plum tart at noon").unwrap();
        assert_eq!(format!("{p:?}"), "NewPassword([REDACTED])");
    }

    #[tokio::test]
    async fn hashes_verify_and_unknown_accounts_never_do() {
        let h = PasswordHasher::with_params(1024, 1, 2).unwrap();
        let p = NewPassword::parse("plum tart at noon").unwrap();
        let stored = h.hash(&p).await.unwrap();
        assert!(stored.starts_with("$argon2id$v=19$m=1024,t=1,p=1$"));
        assert!(h.verify("plum tart at noon", Some(&stored)).await.unwrap());
        assert!(!h.verify("plum tart at nine", Some(&stored)).await.unwrap());
        assert!(!h.verify("plum tart at noon", None).await.unwrap());
        assert!(matches!(
            h.verify("x", Some("not a hash")).await,
            Err(HashError::Corrupt(_))
        ));
        assert_ne!(stored, h.hash(&p).await.unwrap(), "a fresh salt each time");
    }

    #[test]
    fn production_parameters_are_owasps() {
        let h = PasswordHasher::new(1).unwrap();
        assert!(h.dummy.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
    }
}
