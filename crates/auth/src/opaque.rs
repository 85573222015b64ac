//! Opaque bearer tokens: 256 random bits behind a prefix that names their kind (so secret
//! scanners can find leaked ones), handed to a client once and stored only as their SHA-256
//! hash. A refresh token and a password-reset token are two kinds ([`TokenKind`]); a value of
//! one kind never parses as the other.

use std::fmt;
use std::marker::PhantomData;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

/// A kind of opaque token.
pub trait TokenKind {
    /// Its prefix, e.g. `cfr1_`.
    const PREFIX: &'static str;
    /// Its name in `Debug` output.
    const NAME: &'static str;
}

/// A token as the client holds it. Zeroized on drop; `Debug` prints nothing of it.
pub struct OpaqueToken<K>(Zeroizing<String>, PhantomData<K>);

/// The stored form of a token: SHA-256 of it.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TokenHash(pub [u8; 32]);

impl fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, ..] = self.0;
        write!(f, "TokenHash({a:02x}{b:02x}{c:02x}{d:02x}…)")
    }
}

impl<K: TokenKind> fmt::Debug for OpaqueToken<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}([REDACTED])", K::NAME)
    }
}

/// A presented value that cannot be a token of the kind asked for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed token")]
pub struct MalformedToken;

impl<K: TokenKind> OpaqueToken<K> {
    /// A fresh token (32 bytes from the thread CSPRNG, seeded by the operating system).
    #[must_use]
    pub fn generate() -> Self {
        let mut bytes = Zeroizing::new([0u8; 32]);
        rand::fill(&mut bytes[..]);
        Self(
            Zeroizing::new(format!(
                "{}{}",
                K::PREFIX,
                URL_SAFE_NO_PAD.encode(&bytes[..])
            )),
            PhantomData,
        )
    }

    /// Parses a presented token.
    ///
    /// # Errors
    /// [`MalformedToken`].
    pub fn parse(s: &str) -> Result<Self, MalformedToken> {
        let body = s.strip_prefix(K::PREFIX).ok_or(MalformedToken)?;
        match URL_SAFE_NO_PAD.decode(body) {
            Ok(b) if b.len() == 32 => Ok(Self(Zeroizing::new(s.to_owned()), PhantomData)),
            _ => Err(MalformedToken),
        }
    }

    /// The value to hand to the client.
    #[must_use]
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Its stored form.
    #[must_use]
    pub fn hash(&self) -> TokenHash {
        TokenHash(Sha256::digest(self.0.as_bytes()).into())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use crate::refresh::RefreshToken;
    use crate::reset::ResetToken;

    use super::*;

    #[test]
    fn tokens_are_random_opaque_and_stored_hashed() {
        let t = RefreshToken::generate();
        assert!(t.expose().starts_with("cfr1_"));
        assert_eq!(RefreshToken::parse(t.expose()).unwrap().hash(), t.hash());
        assert_ne!(RefreshToken::generate().hash(), t.hash());
        assert_eq!(format!("{t:?}"), "RefreshToken([REDACTED])");
        for bad in [
            "",
            "cfr1_",
            "cfr1_abc",
            "xyz1_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        ] {
            assert_eq!(RefreshToken::parse(bad).unwrap_err(), MalformedToken);
        }
    }

    #[test]
    fn a_token_of_one_kind_never_parses_as_another() {
        let reset = ResetToken::generate();
        assert!(reset.expose().starts_with("cpr1_"));
        assert_eq!(format!("{reset:?}"), "ResetToken([REDACTED])");
        assert_eq!(
            RefreshToken::parse(reset.expose()).unwrap_err(),
            MalformedToken
        );
        let refresh = RefreshToken::generate();
        assert_eq!(
            ResetToken::parse(refresh.expose()).unwrap_err(),
            MalformedToken
        );
    }
}
