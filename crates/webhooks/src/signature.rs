//! Standard Webhooks signatures (standardwebhooks.com): a delivery carries `webhook-id`,
//! `webhook-timestamp` (Unix seconds) and `webhook-signature`, a space-separated list of
//! `v1,<base64 of HMAC-SHA256(secret, "<id>.<timestamp>.<body>")>`; a receiver accepts the
//! delivery when any of them verifies. The secret is shown as `whsec_` and its base64.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use rand::Rng;
use sha2::Sha256;
use zeroize::Zeroizing;

const PREFIX: &str = "whsec_";
/// Fewest bytes of a secret (the specification's minimum).
pub const MIN_SECRET_BYTES: usize = 24;
/// Most bytes of a secret.
pub const MAX_SECRET_BYTES: usize = 64;
/// Bytes of a secret Coffer makes.
pub const NEW_SECRET_BYTES: usize = 32;

/// A secret that is not one: what is wrong with it, never the secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    /// It does not start with `whsec_`.
    #[error("a signing secret starts with whsec_")]
    Prefix,
    /// What follows is not base64.
    #[error("a signing secret is whsec_ and base64")]
    Encoding,
    /// Too short or too long.
    #[error("a signing secret holds {MIN_SECRET_BYTES} to {MAX_SECRET_BYTES} bytes, not {0}")]
    Length(usize),
}

/// An endpoint's signing secret. Its `Debug` is redacted and its bytes are zeroed on drop.
pub struct SigningSecret(Zeroizing<Vec<u8>>);

impl fmt::Debug for SigningSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SigningSecret([REDACTED])")
    }
}

impl SigningSecret {
    /// A new random secret.
    #[must_use]
    pub fn generate() -> Self {
        let mut bytes = Zeroizing::new(vec![0u8; NEW_SECRET_BYTES]);
        rand::rng().fill_bytes(bytes.as_mut_slice());
        Self(bytes)
    }

    /// Reads `whsec_<base64>`.
    ///
    /// # Errors
    /// [`SecretError`] saying what is wrong, never echoing the text.
    pub fn parse(text: &str) -> Result<Self, SecretError> {
        let encoded = text.strip_prefix(PREFIX).ok_or(SecretError::Prefix)?;
        let bytes = Zeroizing::new(
            STANDARD
                .decode(encoded)
                .map_err(|_| SecretError::Encoding)?,
        );
        if !(MIN_SECRET_BYTES..=MAX_SECRET_BYTES).contains(&bytes.len()) {
            return Err(SecretError::Length(bytes.len()));
        }
        Ok(Self(bytes))
    }

    /// Its text form, `whsec_<base64>`: what an administrator is shown once and a receiver
    /// configures.
    #[must_use]
    pub fn expose_text(&self) -> Zeroizing<String> {
        Zeroizing::new(format!("{PREFIX}{}", STANDARD.encode(self.0.as_slice())))
    }

    /// The signature of one delivery: `v1,<base64>`.
    #[must_use]
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        #[allow(clippy::expect_used)]
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.0)
            .expect("HMAC takes a key of any length");
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
    }
}

/// The `webhook-signature` header of a delivery signed with each of `secrets` (the current one,
/// and while a rotation's overlap lasts the previous one), space-separated.
#[must_use]
pub fn signature_header(
    secrets: &[&SigningSecret],
    id: &str,
    timestamp: i64,
    body: &[u8],
) -> String {
    secrets
        .iter()
        .map(|s| s.sign(id, timestamp, body))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    // The specification's reference libraries' test vector.
    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const TIMESTAMP: i64 = 1_614_265_330;
    const BODY: &[u8] = br#"{"test": 2432232314}"#;
    const SIGNATURE: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    #[test]
    fn signs_as_the_specification_does() {
        let secret = SigningSecret::parse(SECRET).unwrap();
        assert_eq!(secret.sign(ID, TIMESTAMP, BODY), SIGNATURE);
        assert_ne!(secret.sign(ID, TIMESTAMP + 1, BODY), SIGNATURE);
        assert_ne!(secret.sign("msg_other", TIMESTAMP, BODY), SIGNATURE);
        assert_eq!(secret.expose_text().as_str(), SECRET);
    }

    #[test]
    fn a_rotation_sends_both_signatures() {
        let old = SigningSecret::parse(SECRET).unwrap();
        let new = SigningSecret::generate();
        let header = signature_header(&[&new, &old], ID, TIMESTAMP, BODY);
        let parts: Vec<&str> = header.split(' ').collect();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[1], SIGNATURE);
        assert_eq!(parts[0], new.sign(ID, TIMESTAMP, BODY));
        assert_ne!(parts[0], parts[1]);
    }

    #[test]
    fn secrets_are_checked_and_never_shown() {
        assert_eq!(
            SigningSecret::parse("MfKQ9r8G").unwrap_err(),
            SecretError::Prefix
        );
        assert_eq!(
            SigningSecret::parse("whsec_!!").unwrap_err(),
            SecretError::Encoding
        );
        assert_eq!(
            SigningSecret::parse("whsec_AAAA").unwrap_err(),
            SecretError::Length(3)
        );
        let made = SigningSecret::generate();
        let text = made.expose_text();
        assert!(text.starts_with(PREFIX));
        let again = SigningSecret::parse(&text).unwrap();
        assert_eq!(
            again.sign(ID, TIMESTAMP, BODY),
            made.sign(ID, TIMESTAMP, BODY)
        );
        assert_eq!(format!("{made:?}"), "SigningSecret([REDACTED])");
        assert_ne!(
            SigningSecret::generate().expose_text(),
            SigningSecret::generate().expose_text()
        );
    }
}
