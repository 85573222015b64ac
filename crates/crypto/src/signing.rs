//! Wallet signing keys (Ed25519), sealed first under the PIN key and then under the data key.
//!
//! ```text
//! sealed = seal(DEK, aad‖"dek-layer", seal(PIN key, aad‖"pin-layer", ed25519 seed))
//! ```
//!
//! Opening the outer layer proves the stored bytes are intact (the DEK's tag covers the whole
//! inner envelope), so when the inner layer then fails to open the only explanation left is a
//! wrong PIN. That is how [`UnsealError::WrongPin`] is told apart from corruption.
//!
//! A [`WalletPublicKey`] is validated as a curve point when parsed, and weak (small-order) keys
//! are refused.

use std::fmt;

use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use rand::Rng;
use zeroize::Zeroizing;

use crate::envelope::{self, Aad, Envelope, EnvelopeError, KeyRef, OpenError, SealError};
use crate::secret::{DataKey, PinKey};

/// Length of an Ed25519 public key.
pub const PUBLIC_KEY_LEN: usize = 32;
/// Length of an Ed25519 signature.
pub const SIGNATURE_LEN: usize = 64;
const SEED_LEN: usize = 32;

/// A wallet's Ed25519 signing key. Zeroized on drop (by ed25519-dalek), redacted in `Debug`.
pub struct WalletSigningKey(SigningKey);

impl WalletSigningKey {
    /// A fresh random key.
    #[must_use]
    pub fn generate() -> Self {
        let mut seed = Zeroizing::new([0u8; SEED_LEN]);
        rand::rng().fill_bytes(seed.as_mut());
        Self(SigningKey::from_bytes(&seed))
    }

    /// The public half, which anyone may hold.
    #[must_use]
    pub fn public_key(&self) -> WalletPublicKey {
        WalletPublicKey(self.0.verifying_key())
    }

    /// Signs `message` (the caller's canonical bytes of a transaction).
    #[must_use]
    pub fn sign(&self, message: &[u8]) -> WalletSignature {
        WalletSignature(self.0.sign(message).to_bytes())
    }

    /// Seals the key under `pin_key`, then under `data_key` (recorded as `data_key_ref`), both
    /// bound to `aad` (which wallet this key belongs to).
    ///
    /// # Errors
    /// Never in practice: a seed is far below the envelope size limit.
    pub fn seal(
        &self,
        pin_key: &PinKey,
        data_key: &DataKey,
        data_key_ref: &KeyRef,
        aad: &Aad,
    ) -> Result<SealedSigningKey, SealError> {
        let seed = Zeroizing::new(self.0.to_bytes());
        let inner = envelope::seal(pin_key, &pin_layer_ref(), &pin_layer(aad), seed.as_ref())?;
        let outer = envelope::seal(data_key, data_key_ref, &dek_layer(aad), inner.as_bytes())?;
        Ok(SealedSigningKey(outer))
    }
}

impl fmt::Debug for WalletSigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "WalletSigningKey([REDACTED], public: {:?})",
            self.public_key()
        )
    }
}

fn pin_layer_ref() -> KeyRef {
    KeyRef::version_only(1)
}

fn pin_layer(aad: &Aad) -> Aad {
    aad.clone().with("pin-layer")
}

fn dek_layer(aad: &Aad) -> Aad {
    aad.clone().with("dek-layer")
}

/// An Ed25519 public key, validated as a curve point when parsed.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct WalletPublicKey(VerifyingKey);

/// Why a public key or signature does not check out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// The bytes are not a valid Ed25519 public key.
    #[error("invalid Ed25519 public key")]
    InvalidPublicKey,
    /// The bytes are not 64 long.
    #[error("an Ed25519 signature is {SIGNATURE_LEN} bytes, found {0}")]
    InvalidSignatureLength(usize),
    /// The signature does not verify for this message and key.
    #[error("signature does not verify")]
    Mismatch,
}

impl WalletPublicKey {
    /// Parses 32 bytes.
    ///
    /// # Errors
    /// [`SignatureError::InvalidPublicKey`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, SignatureError> {
        let arr: &[u8; PUBLIC_KEY_LEN] = bytes
            .try_into()
            .map_err(|_| SignatureError::InvalidPublicKey)?;
        let key = VerifyingKey::from_bytes(arr).map_err(|_| SignatureError::InvalidPublicKey)?;
        if key.is_weak() {
            return Err(SignatureError::InvalidPublicKey);
        }
        Ok(Self(key))
    }

    /// The 32 bytes.
    #[must_use]
    pub fn to_bytes(&self) -> [u8; PUBLIC_KEY_LEN] {
        self.0.to_bytes()
    }

    /// Verifies `signature` over `message` (strict: rejects malleable and small-order forms).
    ///
    /// # Errors
    /// [`SignatureError::Mismatch`].
    pub fn verify(
        &self,
        message: &[u8],
        signature: &WalletSignature,
    ) -> Result<(), SignatureError> {
        let sig = ed25519_dalek::Signature::from_bytes(&signature.0);
        self.0
            .verify_strict(message, &sig)
            .map_err(|_| SignatureError::Mismatch)
    }
}

impl fmt::Debug for WalletPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0.to_bytes();
        write!(f, "WalletPublicKey(")?;
        for byte in b {
            write!(f, "{byte:02x}")?;
        }
        write!(f, ")")
    }
}

/// An Ed25519 signature.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct WalletSignature([u8; SIGNATURE_LEN]);

impl WalletSignature {
    /// Parses 64 bytes.
    ///
    /// # Errors
    /// [`SignatureError::InvalidSignatureLength`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, SignatureError> {
        bytes
            .try_into()
            .map(Self)
            .map_err(|_| SignatureError::InvalidSignatureLength(bytes.len()))
    }

    /// The 64 bytes.
    #[must_use]
    pub fn to_bytes(&self) -> [u8; SIGNATURE_LEN] {
        self.0
    }
}

impl fmt::Debug for WalletSignature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, ..] = self.0;
        write!(f, "WalletSignature({a:02x}{b:02x}{c:02x}{d:02x}…)")
    }
}

/// A signing key sealed by [`WalletSigningKey::seal`]: the outer envelope's binary form.
#[derive(Clone, PartialEq, Eq)]
pub struct SealedSigningKey(Envelope);

/// Why a sealed signing key did not open.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnsealError {
    /// The stored bytes are intact but the PIN key does not open them: the PIN is wrong.
    #[error("wrong PIN")]
    WrongPin,
    /// The stored bytes are damaged, belong to another wallet, or the data key is wrong.
    #[error("sealed signing key is corrupt: {0}")]
    Corrupt(CorruptReason),
}

/// What exactly is wrong with a corrupt sealed key (for operators; never secret).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CorruptReason {
    /// The outer envelope did not authenticate under the data key with this wallet's context.
    #[error("outer layer does not authenticate under the data key")]
    OuterLayer,
    /// The inner envelope is not well formed.
    #[error("inner layer is malformed: {0}")]
    InnerMalformed(EnvelopeError),
    /// The inner layer opened to something that is not a 32-byte seed.
    #[error("inner layer holds {0} bytes, not a 32-byte seed")]
    BadSeedLength(usize),
    /// The key opened but its public key is not the one recorded for the wallet.
    #[error("opened key does not match the wallet's public key")]
    PublicKeyMismatch,
}

impl SealedSigningKey {
    /// Parses stored bytes.
    ///
    /// # Errors
    /// An [`EnvelopeError`] when the bytes are not an envelope.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, EnvelopeError> {
        Envelope::from_bytes(bytes).map(Self)
    }

    /// The bytes to store.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }

    /// Which data-key version sealed the outer layer.
    #[must_use]
    pub fn data_key_ref(&self) -> &KeyRef {
        self.0.key_ref()
    }

    /// The same key under another data key (a data-key rotation): the outer layer is opened
    /// with `old` and the PIN-sealed inner layer, untouched, is sealed again under `new`. No PIN
    /// is needed and the seed is never exposed.
    ///
    /// # Errors
    /// [`UnsealError::Corrupt`] when `old` does not open the outer layer.
    pub fn reseal_data_layer(
        &self,
        old: &DataKey,
        new: &DataKey,
        new_ref: &KeyRef,
        aad: &Aad,
    ) -> Result<SealedSigningKey, UnsealError> {
        let inner = envelope::open(old, &dek_layer(aad), &self.0)
            .map_err(|_| UnsealError::Corrupt(CorruptReason::OuterLayer))?;
        let outer = envelope::seal(new, new_ref, &dek_layer(aad), inner.expose_secret())
            .map_err(|_| UnsealError::Corrupt(CorruptReason::OuterLayer))?;
        Ok(SealedSigningKey(outer))
    }

    /// Opens both layers and checks the result against the wallet's recorded public key.
    ///
    /// # Errors
    /// [`UnsealError::WrongPin`] when only the PIN layer fails; [`UnsealError::Corrupt`]
    /// otherwise.
    pub fn unseal(
        &self,
        pin_key: &PinKey,
        data_key: &DataKey,
        aad: &Aad,
        expected: &WalletPublicKey,
    ) -> Result<WalletSigningKey, UnsealError> {
        let inner = envelope::open(data_key, &dek_layer(aad), &self.0)
            .map_err(|_| UnsealError::Corrupt(CorruptReason::OuterLayer))?;
        let inner = Envelope::from_bytes(inner.expose_secret())
            .map_err(|e| UnsealError::Corrupt(CorruptReason::InnerMalformed(e)))?;
        let seed = match envelope::open(pin_key, &pin_layer(aad), &inner) {
            Ok(seed) => seed,
            Err(OpenError::Authentication) => return Err(UnsealError::WrongPin),
            Err(OpenError::Malformed(e)) => {
                return Err(UnsealError::Corrupt(CorruptReason::InnerMalformed(e)));
            }
        };
        let seed: &[u8; SEED_LEN] = seed
            .expose_secret()
            .try_into()
            .map_err(|_| UnsealError::Corrupt(CorruptReason::BadSeedLength(seed.len())))?;
        let key = WalletSigningKey(SigningKey::from_bytes(seed));
        if key.public_key() != *expected {
            return Err(UnsealError::Corrupt(CorruptReason::PublicKeyMismatch));
        }
        Ok(key)
    }
}

impl fmt::Debug for SealedSigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("SealedSigningKey")
            .field(self.0.key_ref())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pin::{KdfParams, MIN_ITERATIONS, Pin, derive_pin_key};

    struct Wallet {
        params: KdfParams,
        dek: DataKey,
        dek_ref: KeyRef,
        aad: Aad,
        public: WalletPublicKey,
        sealed: SealedSigningKey,
    }

    fn wallet(pin: &str) -> Wallet {
        let params = KdfParams::generate(MIN_ITERATIONS).unwrap();
        let dek = DataKey::generate();
        let dek_ref = KeyRef::version_only(1);
        let aad = Aad::new("wallet.signing_key").with("wallet-1");
        let key = WalletSigningKey::generate();
        let pin_key = derive_pin_key(&Pin::parse(pin).unwrap(), &params);
        let sealed = key.seal(&pin_key, &dek, &dek_ref, &aad).unwrap();
        Wallet {
            params,
            dek,
            dek_ref,
            aad,
            public: key.public_key(),
            sealed,
        }
    }

    fn pin_key(w: &Wallet, pin: &str) -> PinKey {
        derive_pin_key(&Pin::parse(pin).unwrap(), &w.params)
    }

    #[test]
    fn sealed_key_unseals_and_signatures_verify_with_the_public_key_alone() {
        let w = wallet("123456");
        let stored = SealedSigningKey::from_bytes(w.sealed.as_bytes()).unwrap();
        assert_eq!(stored.data_key_ref(), &w.dek_ref);
        let key = stored
            .unseal(&pin_key(&w, "123456"), &w.dek, &w.aad, &w.public)
            .unwrap();
        let sig = key.sign(b"canonical transaction bytes");
        let public = WalletPublicKey::from_bytes(&w.public.to_bytes()).unwrap();
        let sig = WalletSignature::from_bytes(&sig.to_bytes()).unwrap();
        assert_eq!(public.verify(b"canonical transaction bytes", &sig), Ok(()));
        assert_eq!(
            public.verify(b"canonical transaction bytez", &sig),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            WalletPublicKey::from_bytes(&WalletSigningKey::generate().public_key().to_bytes())
                .unwrap()
                .verify(b"canonical transaction bytes", &sig),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn wrong_pin_is_distinguished_from_corruption() {
        let w = wallet("123456");
        assert_eq!(
            w.sealed
                .unseal(&pin_key(&w, "123457"), &w.dek, &w.aad, &w.public)
                .unwrap_err(),
            UnsealError::WrongPin
        );
        // A flipped byte anywhere in the stored bytes is corruption, not a wrong PIN, whether the
        // PIN supplied is right or wrong.
        let good = pin_key(&w, "123456");
        for i in 0..w.sealed.as_bytes().len() {
            let mut bytes = w.sealed.as_bytes().to_vec();
            bytes[i] ^= 0x01;
            match SealedSigningKey::from_bytes(&bytes) {
                Err(_) => {} // malformed outer envelope: caught at parse
                Ok(s) => assert!(matches!(
                    s.unseal(&good, &w.dek, &w.aad, &w.public),
                    Err(UnsealError::Corrupt(_))
                )),
            }
        }
    }

    #[test]
    fn another_wallets_context_or_data_key_is_corruption() {
        let w = wallet("123456");
        let good = pin_key(&w, "123456");
        let other_aad = Aad::new("wallet.signing_key").with("wallet-2");
        assert_eq!(
            w.sealed
                .unseal(&good, &w.dek, &other_aad, &w.public)
                .unwrap_err(),
            UnsealError::Corrupt(CorruptReason::OuterLayer)
        );
        assert_eq!(
            w.sealed
                .unseal(&good, &DataKey::generate(), &w.aad, &w.public)
                .unwrap_err(),
            UnsealError::Corrupt(CorruptReason::OuterLayer)
        );
        let other = WalletSigningKey::generate().public_key();
        assert_eq!(
            w.sealed.unseal(&good, &w.dek, &w.aad, &other).unwrap_err(),
            UnsealError::Corrupt(CorruptReason::PublicKeyMismatch)
        );
    }

    #[test]
    fn changing_the_pin_reseals_the_same_key() {
        let w = wallet("111111");
        let key = w
            .sealed
            .unseal(&pin_key(&w, "111111"), &w.dek, &w.aad, &w.public)
            .unwrap();
        let params = KdfParams::generate(MIN_ITERATIONS).unwrap();
        let new_pin_key = derive_pin_key(&Pin::parse("222222").unwrap(), &params);
        let resealed = key.seal(&new_pin_key, &w.dek, &w.dek_ref, &w.aad).unwrap();
        let again = resealed
            .unseal(&new_pin_key, &w.dek, &w.aad, &w.public)
            .unwrap();
        assert_eq!(again.public_key(), w.public);
        let old_pin_key = derive_pin_key(&Pin::parse("111111").unwrap(), &params);
        assert_eq!(
            resealed
                .unseal(&old_pin_key, &w.dek, &w.aad, &w.public)
                .unwrap_err(),
            UnsealError::WrongPin
        );
    }

    #[test]
    fn a_data_key_rotation_reseals_the_outer_layer_without_the_pin() {
        let w = wallet("123456");
        let new_dek = DataKey::generate();
        let new_ref = KeyRef::version_only(2);
        let moved = w
            .sealed
            .reseal_data_layer(&w.dek, &new_dek, &new_ref, &w.aad)
            .unwrap();
        assert_eq!(moved.data_key_ref(), &new_ref);
        let key = moved
            .unseal(&pin_key(&w, "123456"), &new_dek, &w.aad, &w.public)
            .unwrap();
        assert_eq!(key.public_key(), w.public);
        // The old data key no longer opens it; the PIN still decides the inner layer.
        assert_eq!(
            moved
                .unseal(&pin_key(&w, "123456"), &w.dek, &w.aad, &w.public)
                .unwrap_err(),
            UnsealError::Corrupt(CorruptReason::OuterLayer)
        );
        assert_eq!(
            moved
                .unseal(&pin_key(&w, "654321"), &new_dek, &w.aad, &w.public)
                .unwrap_err(),
            UnsealError::WrongPin
        );
        // The wrong old key, or another wallet's context, is refused.
        assert!(
            w.sealed
                .reseal_data_layer(&DataKey::generate(), &new_dek, &new_ref, &w.aad)
                .is_err()
        );
        let other = Aad::new("wallet.signing_key").with("wallet-2");
        assert!(
            w.sealed
                .reseal_data_layer(&w.dek, &new_dek, &new_ref, &other)
                .is_err()
        );
    }

    #[test]
    fn bad_public_keys_and_signatures_are_typed_errors() {
        assert_eq!(
            WalletPublicKey::from_bytes(&[0u8; 31]).unwrap_err(),
            SignatureError::InvalidPublicKey
        );
        // The identity point is a small-order (weak) key.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        assert_eq!(
            WalletPublicKey::from_bytes(&identity).unwrap_err(),
            SignatureError::InvalidPublicKey
        );
        assert_eq!(
            WalletSignature::from_bytes(&[0u8; 63]).unwrap_err(),
            SignatureError::InvalidSignatureLength(63)
        );
    }

    #[test]
    fn debug_never_shows_the_private_key() {
        let key = WalletSigningKey::generate();
        let shown = format!("{key:?}");
        assert!(shown.starts_with("WalletSigningKey([REDACTED]"));
        let seed_hex: String = key
            .0
            .to_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert!(!shown.contains(&seed_hex[..16]));
    }
}
