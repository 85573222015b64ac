//! Second factors: TOTP (RFC 6238: HMAC-SHA1, six digits, 30-second steps, one step of clock
//! skew either way) for local users, and the rule that money-out above a threshold needs a token
//! whose `amr` shows a second factor, whoever issued it.
//!
//! A code is accepted once: the step it matched is recorded (the store claims it atomically), so
//! a code seen over someone's shoulder cannot be replayed within its 90-second window.

use std::fmt;

use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

/// Seconds per TOTP step.
pub const STEP_SECS: u64 = 30;
/// Secret length in bytes (160 bits, RFC 4226's recommendation).
pub const SECRET_LEN: usize = 20;

/// A TOTP secret. Zeroized on drop; `Debug` shows nothing of it.
#[derive(Clone)]
pub struct TotpSecret(Zeroizing<Vec<u8>>);

impl fmt::Debug for TotpSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TotpSecret([REDACTED])")
    }
}

/// A stored secret of the wrong length.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("TOTP secrets are {SECRET_LEN} bytes")]
pub struct BadTotpSecret;

/// A presented code that is not six digits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("TOTP codes are six digits")]
pub struct BadTotpCode;

impl TotpSecret {
    /// A fresh secret from the thread CSPRNG (seeded by the operating system).
    #[must_use]
    pub fn generate() -> Self {
        let mut bytes = Zeroizing::new(vec![0u8; SECRET_LEN]);
        rand::fill(&mut bytes[..]);
        Self(bytes)
    }

    /// From its stored bytes (decrypted).
    ///
    /// # Errors
    /// [`BadTotpSecret`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, BadTotpSecret> {
        if bytes.len() == SECRET_LEN {
            Ok(Self(Zeroizing::new(bytes.to_vec())))
        } else {
            Err(BadTotpSecret)
        }
    }

    /// The raw secret, to be encrypted for storage.
    #[must_use]
    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    fn totp(&self) -> totp_rs::TOTP {
        totp_rs::TOTP::new_unchecked(totp_rs::Algorithm::SHA1, 6, 1, STEP_SECS, self.0.to_vec())
    }

    /// The secret in base32, as authenticator apps take it (shown once, at enrollment).
    #[must_use]
    pub fn base32(&self) -> Zeroizing<String> {
        match &totp_rs::Secret::Raw(self.0.to_vec()).to_encoded() {
            totp_rs::Secret::Encoded(s) => Zeroizing::new(s.clone()),
            totp_rs::Secret::Raw(_) => Zeroizing::new(String::new()),
        }
    }

    /// The `otpauth://` URI an authenticator app scans (Key Uri Format). `account` is a label
    /// (Coffer uses the user id, never the email: the URI may end up in a QR code screenshot).
    #[must_use]
    pub fn otpauth_uri(&self, issuer: &str, account: &str) -> Zeroizing<String> {
        let enc = |s: &str| {
            s.bytes()
                .map(|b| {
                    if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                        char::from(b).to_string()
                    } else {
                        format!("%{b:02X}")
                    }
                })
                .collect::<String>()
        };
        Zeroizing::new(format!(
            "otpauth://totp/{}:{}?secret={}&issuer={}&algorithm=SHA1&digits=6&period={STEP_SECS}",
            enc(issuer),
            enc(account),
            self.base32().as_str(),
            enc(issuer),
        ))
    }

    /// The code for the step containing `unix_secs` (tests and clients).
    #[must_use]
    pub fn code_at(&self, unix_secs: u64) -> String {
        self.totp().generate(unix_secs)
    }

    /// The step `code` is valid for at `unix_secs` (the current one or one either side), if any.
    /// Compared in constant time.
    #[must_use]
    pub fn matching_step(&self, code: &TotpCode, unix_secs: u64) -> Option<u64> {
        let totp = self.totp();
        let now = unix_secs / STEP_SECS;
        let mut found = None;
        for step in [now.saturating_sub(1), now, now + 1] {
            let expected = totp.generate(step * STEP_SECS);
            if bool::from(expected.as_bytes().ct_eq(code.0.as_bytes())) && found.is_none() {
                found = Some(step);
            }
        }
        found
    }
}

/// A presented six-digit code.
#[derive(Clone, PartialEq, Eq)]
pub struct TotpCode(String);

impl fmt::Debug for TotpCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TotpCode([REDACTED])")
    }
}

impl TotpCode {
    /// Parses six ASCII digits (spaces allowed between them, as apps display `123 456`).
    ///
    /// # Errors
    /// [`BadTotpCode`].
    pub fn parse(input: &str) -> Result<Self, BadTotpCode> {
        let digits: String = input.chars().filter(|c| *c != ' ').collect();
        if digits.len() == 6 && digits.bytes().all(|b| b.is_ascii_digit()) {
            Ok(Self(digits))
        } else {
            Err(BadTotpCode)
        }
    }
}

/// The authentication methods that count as a second factor (RFC 8176: `mfa`, `otp`; `hwk`
/// and `swk` are proof-of-possession keys).
pub const SECOND_FACTORS: &[&str] = &["mfa", "otp", "hwk", "swk"];

/// The step-up rule for money-out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
pub struct MfaRule {
    /// Money-out that takes a wallet's rolling window (the sum that left it over the last
    /// `window_hours`, the request included) above this many major units (whole dollars, euros,
    /// yen) needs a second factor; `None` turns the rule off.
    pub above_major_units: Option<u64>,
}

/// Money-out that needs a second factor the token does not show.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("this amount needs a second factor: sign in with your one-time code")]
pub struct MfaRequired;

impl MfaRule {
    /// The most, in minor units of a currency with `exponent` minor digits, a wallet's rolling
    /// window may hold for a token whose `amr` is `amr` without a second factor; `None` when no
    /// cap applies (the rule is off, or the token shows a second factor).
    #[must_use]
    pub fn cap_minor<S: AsRef<str>>(&self, amr: &[S], exponent: u32) -> Option<i64> {
        let limit = self.above_major_units?;
        if amr.iter().any(|m| SECOND_FACTORS.contains(&m.as_ref())) {
            return None;
        }
        let minor = u128::from(limit) * 10u128.pow(exponent.min(18));
        Some(i64::try_from(minor).unwrap_or(i64::MAX))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_6238_vectors_match() {
        // RFC 6238 appendix B, SHA-1, secret "12345678901234567890", last six digits.
        let s = TotpSecret::from_bytes(b"12345678901234567890").unwrap();
        for (t, code) in [
            (59, "287082"),
            (1_111_111_109, "081804"),
            (1_234_567_890, "005924"),
            (2_000_000_000, "279037"),
        ] {
            assert_eq!(s.code_at(t), code, "t={t}");
        }
        assert_eq!(s.base32().as_str(), "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ");
        assert_eq!(format!("{s:?}"), "TotpSecret([REDACTED])");
    }

    #[test]
    fn a_code_matches_its_step_and_one_either_side_only() {
        let s = TotpSecret::generate();
        let t = 1_700_000_000;
        let code = TotpCode::parse(&s.code_at(t)).unwrap();
        assert_eq!(s.matching_step(&code, t), Some(t / STEP_SECS));
        assert_eq!(s.matching_step(&code, t + STEP_SECS), Some(t / STEP_SECS));
        assert_eq!(s.matching_step(&code, t - STEP_SECS), Some(t / STEP_SECS));
        assert_eq!(s.matching_step(&code, t + 2 * STEP_SECS), None);
        assert_eq!(
            TotpCode::parse("12 34 56").unwrap(),
            TotpCode::parse("123456").unwrap()
        );
        for bad in ["", "12345", "1234567", "12345a"] {
            assert_eq!(TotpCode::parse(bad), Err(BadTotpCode));
        }
        let uri = s.otpauth_uri("Coffer Wallet", "0190-ab");
        assert!(uri.starts_with("otpauth://totp/Coffer%20Wallet:0190-ab?secret="));
        assert!(uri.contains("&issuer=Coffer%20Wallet&algorithm=SHA1&digits=6&period=30"));
    }

    #[test]
    fn money_out_above_the_threshold_needs_a_second_factor() {
        let rule = MfaRule {
            above_major_units: Some(1_000),
        };
        assert_eq!(rule.cap_minor(&["pwd"], 2), Some(100_000), "1,000.00");
        assert_eq!(
            rule.cap_minor(&["pwd"], 0),
            Some(1_000),
            "yen have no minor unit"
        );
        assert_eq!(rule.cap_minor(&["pwd", "otp"], 2), None);
        assert_eq!(rule.cap_minor(&["mfa"], 2), None);
        assert_eq!(rule.cap_minor::<&str>(&[], 3), Some(1_000_000));
        assert_eq!(MfaRule::default().cap_minor::<&str>(&[], 2), None);
        let huge = MfaRule {
            above_major_units: Some(u64::MAX),
        };
        assert_eq!(huge.cap_minor::<&str>(&[], 2), Some(i64::MAX));
    }
}
