//! Wallet PINs and the key derived from them.
//!
//! PIN key = PBKDF2-HMAC-SHA256(PIN, 16-byte random salt, iterations). The iteration count and
//! salt are stored with what the key protects ([`KdfParams::to_bytes`]), so the cost can be
//! raised for new wallets without breaking old ones.
//!
//! A [`Pin`] is exactly six ASCII digits, nothing else. [`KdfParams`] has a storage form of
//! [`KDF_PARAMS_LEN`] bytes (an algorithm byte, the iterations, the salt), parsed without panics.

use std::fmt;

use rand::Rng;
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::secret::{KEY_LEN, PinKey};

/// OWASP's figure for PBKDF2-HMAC-SHA256 (Password Storage Cheat Sheet).
pub const DEFAULT_ITERATIONS: u32 = 600_000;
/// The lowest cost accepted, from configuration or from storage. Low enough for fast tests,
/// too low for production: configuration validation warns below [`DEFAULT_ITERATIONS`].
pub const MIN_ITERATIONS: u32 = 1_000;
/// The highest cost accepted from storage: stops a corrupted record from pinning a core for
/// minutes.
pub const MAX_ITERATIONS: u32 = 10_000_000;
/// Salt length in bytes.
pub const SALT_LEN: usize = 16;
/// Length of [`KdfParams::to_bytes`].
pub const KDF_PARAMS_LEN: usize = 1 + 4 + SALT_LEN;

const PBKDF2_HMAC_SHA256_ID: u8 = 1;

/// Six-digit PINs that people choose most often and that are neither one repeated digit nor a
/// run (those are refused by rule): pairs and triples repeated, mirrored runs, keypad shapes.
pub const COMMON_PINS: &[&str] = &[
    "101010", "102030", "111222", "112233", "121212", "123123", "123321", "131313", "147258",
    "159357", "159753", "202020", "212121", "232323", "252525", "258456", "456123", "520520",
    "654123", "696969", "789456", "987987",
];

/// A wallet PIN: exactly six ASCII digits. Zeroized on drop, redacted in `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct Pin(Zeroizing<[u8; 6]>);

/// Why a string is not a PIN. Never contains the input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PinError {
    /// Not exactly six characters long.
    #[error("a PIN is exactly 6 digits")]
    WrongLength,
    /// Six characters, but not all ASCII digits.
    #[error("a PIN contains only the digits 0-9")]
    NotDigits,
}

impl Pin {
    /// Parses a PIN, accepting exactly six ASCII digits and nothing else (no spaces, no signs, no
    /// other Unicode digits).
    ///
    /// # Errors
    /// [`PinError::WrongLength`] or [`PinError::NotDigits`].
    pub fn parse(input: &str) -> Result<Self, PinError> {
        let bytes = input.as_bytes();
        if bytes.len() != 6 {
            // A multi-byte character makes bytes.len() differ from the character count; either
            // way this is not six ASCII digits. Report the length only if the char count is off.
            return Err(if input.chars().count() == 6 {
                PinError::NotDigits
            } else {
                PinError::WrongLength
            });
        }
        if !bytes.iter().all(u8::is_ascii_digit) {
            return Err(PinError::NotDigits);
        }
        let mut digits = Zeroizing::new([0u8; 6]);
        digits.copy_from_slice(bytes);
        Ok(Self(digits))
    }

    /// Whether this PIN is among the first an attacker tries: one digit six times, a run of
    /// consecutive digits up or down (wrapping from 9 to 0), or one of [`COMMON_PINS`].
    ///
    /// A new PIN is refused when weak (wallet creation, change and reset); a PIN given to
    /// unlock a key is never judged, only checked.
    #[must_use]
    pub fn is_weak(&self) -> bool {
        let d = self.expose_secret();
        let step = |up: bool| {
            d.iter().zip(d.iter().skip(1)).all(|(a, b)| {
                let (a, b) = (a - b'0', b - b'0');
                if up {
                    b == (a + 1) % 10
                } else {
                    a == (b + 1) % 10
                }
            })
        };
        d.iter().all(|c| *c == d[0])
            || step(true)
            || step(false)
            || COMMON_PINS.iter().any(|p| p.as_bytes() == d.as_slice())
    }

    /// The six digits as bytes. Do not log them.
    #[must_use]
    pub fn expose_secret(&self) -> &[u8; 6] {
        &self.0
    }
}

impl fmt::Debug for Pin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Pin([REDACTED])")
    }
}

/// The parameters of one PIN-key derivation, stored next to what the key protects.
#[derive(Clone, PartialEq, Eq)]
pub struct KdfParams {
    iterations: u32,
    salt: [u8; SALT_LEN],
}

/// Why KDF parameters are refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KdfError {
    /// The iteration count is outside `MIN_ITERATIONS..=MAX_ITERATIONS`.
    #[error("PBKDF2 iterations {0} outside the accepted range {MIN_ITERATIONS}..={MAX_ITERATIONS}")]
    IterationsOutOfRange(u32),
    /// Stored parameters have the wrong length.
    #[error("stored KDF parameters must be {KDF_PARAMS_LEN} bytes, found {0}")]
    BadLength(usize),
    /// Stored parameters name an algorithm this build does not know.
    #[error("unknown KDF algorithm id {0}")]
    UnknownAlgorithm(u8),
}

impl KdfParams {
    /// Fresh parameters: a random salt and the given cost.
    ///
    /// # Errors
    /// [`KdfError::IterationsOutOfRange`].
    pub fn generate(iterations: u32) -> Result<Self, KdfError> {
        let mut salt = [0u8; SALT_LEN];
        rand::rng().fill_bytes(&mut salt);
        Self::new(iterations, salt)
    }

    /// Parameters from their parts.
    ///
    /// # Errors
    /// [`KdfError::IterationsOutOfRange`].
    pub fn new(iterations: u32, salt: [u8; SALT_LEN]) -> Result<Self, KdfError> {
        if !(MIN_ITERATIONS..=MAX_ITERATIONS).contains(&iterations) {
            return Err(KdfError::IterationsOutOfRange(iterations));
        }
        Ok(Self { iterations, salt })
    }

    /// The iteration count.
    #[must_use]
    pub fn iterations(&self) -> u32 {
        self.iterations
    }

    /// The salt.
    #[must_use]
    pub fn salt(&self) -> &[u8; SALT_LEN] {
        &self.salt
    }

    /// Storage form: algorithm id, iterations (big-endian u32), salt.
    #[must_use]
    pub fn to_bytes(&self) -> [u8; KDF_PARAMS_LEN] {
        let mut out = [0u8; KDF_PARAMS_LEN];
        let (alg, rest) = out.split_at_mut(1);
        let (iter, salt) = rest.split_at_mut(4);
        alg.copy_from_slice(&[PBKDF2_HMAC_SHA256_ID]);
        iter.copy_from_slice(&self.iterations.to_be_bytes());
        salt.copy_from_slice(&self.salt);
        out
    }

    /// Parses the storage form.
    ///
    /// # Errors
    /// [`KdfError::BadLength`], [`KdfError::UnknownAlgorithm`] or
    /// [`KdfError::IterationsOutOfRange`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, KdfError> {
        let arr: &[u8; KDF_PARAMS_LEN] = bytes
            .try_into()
            .map_err(|_| KdfError::BadLength(bytes.len()))?;
        let (alg, rest) = arr.split_at(1);
        let (iter, salt) = rest.split_at(4);
        if alg != [PBKDF2_HMAC_SHA256_ID] {
            return Err(KdfError::UnknownAlgorithm(
                alg.first().copied().unwrap_or_default(),
            ));
        }
        let mut it = [0u8; 4];
        it.copy_from_slice(iter);
        let mut s = [0u8; SALT_LEN];
        s.copy_from_slice(salt);
        Self::new(u32::from_be_bytes(it), s)
    }
}

coffer_macros::debug_non_exhaustive!(self => KdfParams {
    algorithm: "PBKDF2-HMAC-SHA256", iterations,
});

/// Derives the PIN key. Costs `iterations` HMAC-SHA256 pairs: hundreds of milliseconds at the
/// default cost, so never call it on an async runtime's worker threads.
#[must_use]
pub fn derive_pin_key(pin: &Pin, params: &KdfParams) -> PinKey {
    let mut out = Zeroizing::new([0u8; KEY_LEN]);
    pbkdf2_hmac_sha256(
        pin.expose_secret(),
        &params.salt,
        params.iterations,
        out.as_mut(),
    );
    PinKey::from_array(out)
}

/// Raw PBKDF2-HMAC-SHA256, exposed for the published test vectors and benchmarks.
pub fn pbkdf2_hmac_sha256(password: &[u8], salt: &[u8], iterations: u32, out: &mut [u8]) {
    pbkdf2::pbkdf2_hmac::<Sha256>(password, salt, iterations, out);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn accepts_exactly_six_ascii_digits() {
        assert!(Pin::parse("000000").is_ok());
        assert!(Pin::parse("123456").is_ok());
        assert_eq!(Pin::parse("12345").unwrap_err(), PinError::WrongLength);
        assert_eq!(Pin::parse("1234567").unwrap_err(), PinError::WrongLength);
        assert_eq!(Pin::parse("").unwrap_err(), PinError::WrongLength);
        assert_eq!(Pin::parse("12345a").unwrap_err(), PinError::NotDigits);
        assert_eq!(Pin::parse(" 12345").unwrap_err(), PinError::NotDigits);
        assert_eq!(Pin::parse("-12345").unwrap_err(), PinError::NotDigits);
        // Arabic-Indic digits are digits to Unicode, not to a PIN pad.
        assert_eq!(Pin::parse("١٢٣٤٥٦").unwrap_err(), PinError::NotDigits);
    }

    #[test]
    fn repeated_digits_runs_and_common_pins_are_weak() {
        let weak = [
            "000000", "777777", "123456", "456789", "890123", "987654", "210987", "121212",
            "159753", "112233",
        ];
        for p in weak {
            assert!(Pin::parse(p).unwrap().is_weak(), "{p}");
        }
        for p in [
            "493817", "582914", "720564", "123457", "111112", "135791", "019283",
        ] {
            assert!(!Pin::parse(p).unwrap().is_weak(), "{p}");
        }
    }

    #[test]
    fn pin_debug_is_redacted() {
        let shown = format!("{:?}", Pin::parse("424242").unwrap());
        assert_eq!(shown, "Pin([REDACTED])");
    }

    proptest! {
        #[test]
        fn parse_accepts_iff_six_ascii_digits(s in "\\PC{0,8}") {
            let expected = s.len() == 6 && s.bytes().all(|b| b.is_ascii_digit());
            prop_assert_eq!(Pin::parse(&s).is_ok(), expected);
        }

        #[test]
        fn kdf_params_round_trip(iter in MIN_ITERATIONS..=MAX_ITERATIONS, salt in any::<[u8; SALT_LEN]>()) {
            let p = KdfParams::new(iter, salt).unwrap();
            prop_assert_eq!(KdfParams::from_bytes(&p.to_bytes()).unwrap(), p);
        }

        #[test]
        fn kdf_params_parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..40)) {
            let _ = KdfParams::from_bytes(&bytes);
        }
    }

    /// RFC 7914 §11, the PBKDF2-HMAC-SHA256 test vectors.
    #[test]
    fn pbkdf2_matches_rfc7914_vectors() {
        let mut out = [0u8; 64];
        pbkdf2_hmac_sha256(b"passwd", b"salt", 1, &mut out);
        assert_eq!(
            hex::encode(out),
            "55ac046e56e3089fec1691c22544b605f94185216dde0465e68b9d57c20dacbc\
             49ca9cccf179b645991664b39d77ef317c71b845b1e30bd509112041d3a19783"
        );
        pbkdf2_hmac_sha256(b"Password", b"NaCl", 80_000, &mut out);
        assert_eq!(
            hex::encode(out),
            "4ddcd8f60b98be21830cee5ef22701f9641a4418d04c0414aeff08876b34ab56\
             a1d425a1225833549adb841b51c9b3176a272bdebba1d078478f62b397f33c8d"
        );
    }

    #[test]
    fn params_out_of_range_and_bad_storage_are_refused() {
        assert_eq!(
            KdfParams::generate(999).unwrap_err(),
            KdfError::IterationsOutOfRange(999)
        );
        assert_eq!(
            KdfParams::new(MAX_ITERATIONS + 1, [0; SALT_LEN]).unwrap_err(),
            KdfError::IterationsOutOfRange(MAX_ITERATIONS + 1)
        );
        assert_eq!(
            KdfParams::from_bytes(&[1; 3]).unwrap_err(),
            KdfError::BadLength(3)
        );
        let mut b = KdfParams::generate(MIN_ITERATIONS).unwrap().to_bytes();
        b[0] = 7;
        assert_eq!(
            KdfParams::from_bytes(&b).unwrap_err(),
            KdfError::UnknownAlgorithm(7)
        );
    }

    #[test]
    fn salts_are_random_and_change_the_key() {
        let a = KdfParams::generate(MIN_ITERATIONS).unwrap();
        let b = KdfParams::generate(MIN_ITERATIONS).unwrap();
        assert_ne!(a.salt(), b.salt());
        let pin = Pin::parse("123456").unwrap();
        let ka = derive_pin_key(&pin, &a);
        let kb = derive_pin_key(&pin, &b);
        // Keys are opaque; compare them by what they seal.
        let aad = crate::Aad::new("t");
        let r = crate::KeyRef::version_only(1);
        let env = crate::seal(&ka, &r, &aad, b"x").unwrap();
        assert!(crate::open(&ka, &aad, &env).is_ok());
        assert!(crate::open(&kb, &aad, &env).is_err());
    }
}
