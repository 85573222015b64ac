//! Secret material: key types and decrypted bytes.
//!
//! Every type here zeroizes its bytes when dropped, prints as `[REDACTED]` in `Debug`, and has no
//! `Serialize`/`Display`. Keys are reference counted: cloning a key shares one zeroize-on-drop
//! allocation instead of copying the secret around the heap.
//!
//! Only [`DataKey`], [`MasterKey`] and [`PinKey`] seal and open envelopes: [`EnvelopeKey`] is a
//! sealed trait. Each holds its expanded AES-256-GCM key schedule next to the bytes, so a seal
//! or an open does not expand the key again.

use std::fmt;
use std::sync::Arc;

use aes_gcm::{Aes256Gcm, KeyInit};
use rand::Rng;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

/// Length in bytes of every symmetric key Coffer uses.
pub const KEY_LEN: usize = 32;

/// The error of building a key from bytes of the wrong shape.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyMaterialError {
    /// The material is not exactly 32 bytes.
    #[error("key material must be exactly {KEY_LEN} bytes, found {found}")]
    WrongLength {
        /// How many bytes were supplied.
        found: usize,
    },
    /// The material is all zero bytes: never a real key, usually an unset variable or a blank file.
    #[error("key material is all zero bytes, which is never a real key")]
    AllZero,
}

/// 32 secret bytes plus the expanded AES-256-GCM key schedule, both wiped on drop.
///
/// The schedule is kept so that sealing does not pay the key expansion on every call.
struct AeadKey {
    bytes: Zeroizing<[u8; KEY_LEN]>,
    cipher: Aes256Gcm,
}

impl AeadKey {
    fn from_array(bytes: Zeroizing<[u8; KEY_LEN]>) -> Self {
        let cipher = Aes256Gcm::new(&(*bytes).into());
        Self { bytes, cipher }
    }

    fn from_slice(bytes: &[u8]) -> Result<Self, KeyMaterialError> {
        let mut array = Zeroizing::new([0u8; KEY_LEN]);
        if bytes.len() != KEY_LEN {
            return Err(KeyMaterialError::WrongLength { found: bytes.len() });
        }
        array.copy_from_slice(bytes);
        Ok(Self::from_array(array))
    }

    fn generate() -> Self {
        let mut array = Zeroizing::new([0u8; KEY_LEN]);
        rand::rng().fill_bytes(array.as_mut());
        Self::from_array(array)
    }
}

// `Aes256Gcm` (with aes-gcm's `zeroize` feature) wipes its round keys on drop and `Zeroizing`
// wipes the raw bytes, so the whole value is zeroized on drop.
impl ZeroizeOnDrop for AeadKey {}

mod sealed {
    pub trait Sealed {}
}

/// A key that can seal and open [`Envelope`](crate::Envelope)s. Implemented by [`DataKey`],
/// [`MasterKey`] and [`PinKey`] only.
pub trait EnvelopeKey: sealed::Sealed {
    #[doc(hidden)]
    fn cipher(&self) -> &Aes256Gcm;
}

macro_rules! aead_key_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone)]
        pub struct $name(Arc<AeadKey>);

        impl $name {
            /// Builds the key from exactly 32 bytes.
            ///
            /// # Errors
            /// [`KeyMaterialError::WrongLength`] for any other length.
            pub fn from_slice(bytes: &[u8]) -> Result<Self, KeyMaterialError> {
                AeadKey::from_slice(bytes).map(|k| Self(Arc::new(k)))
            }

            /// A fresh random key from the thread's CSPRNG (seeded by the operating system).
            #[must_use]
            pub fn generate() -> Self {
                Self(Arc::new(AeadKey::generate()))
            }

            /// The raw key bytes, for wrapping by a key provider. Never log or store them as is.
            #[must_use]
            pub fn expose_secret(&self) -> &[u8; KEY_LEN] {
                &self.0.bytes
            }

            /// How many clones share this key's memory (it is zeroized when the last one drops).
            #[must_use]
            pub fn holders(&self) -> usize {
                Arc::strong_count(&self.0)
            }
        }

        impl sealed::Sealed for $name {}

        impl EnvelopeKey for $name {
            fn cipher(&self) -> &Aes256Gcm {
                &self.0.cipher
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(concat!(stringify!($name), "([REDACTED])"))
            }
        }
    };
}

aead_key_type!(
    /// A data-encryption key (DEK): one per wallet or user and version, stored only wrapped by a
    /// master key.
    DataKey
);

aead_key_type!(
    /// Master key (KEK) material held in process memory by providers that wrap locally (the key
    /// file, Vault KV). Providers such as Vault Transit and AWS KMS never hand it out.
    MasterKey
);

impl MasterKey {
    /// Like [`MasterKey::from_slice`], and also refuses 32 zero bytes, which is what an unset or
    /// blanked configuration value usually decodes to.
    ///
    /// # Errors
    /// [`KeyMaterialError::WrongLength`] or [`KeyMaterialError::AllZero`].
    pub fn from_configured(bytes: &[u8]) -> Result<Self, KeyMaterialError> {
        if bytes.len() == KEY_LEN && bytes.iter().all(|b| *b == 0) {
            return Err(KeyMaterialError::AllZero);
        }
        Self::from_slice(bytes)
    }
}

/// The key derived from a wallet PIN (see [`crate::pin`]). It seals the wallet's signing key.
pub struct PinKey(AeadKey);

impl PinKey {
    pub(crate) fn from_array(bytes: Zeroizing<[u8; KEY_LEN]>) -> Self {
        Self(AeadKey::from_array(bytes))
    }
}

impl sealed::Sealed for PinKey {}

impl EnvelopeKey for PinKey {
    fn cipher(&self) -> &Aes256Gcm {
        &self.0.cipher
    }
}

impl fmt::Debug for PinKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PinKey([REDACTED])")
    }
}

/// Decrypted bytes: zeroized on drop, redacted in `Debug`.
#[derive(Clone, Default, PartialEq, Eq, Zeroize, ZeroizeOnDrop)]
pub struct SecretBytes(Vec<u8>);

impl SecretBytes {
    /// Takes ownership of `bytes`; they are wiped when this value is dropped.
    #[must_use]
    pub fn new(bytes: Vec<u8>) -> Self {
        Self(bytes)
    }

    /// The plaintext. Do not log it.
    #[must_use]
    pub fn expose_secret(&self) -> &[u8] {
        &self.0
    }

    pub(crate) fn expose_secret_mut(&mut self) -> &mut [u8] {
        &mut self.0
    }

    /// Number of bytes.
    #[must_use]
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are no bytes.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretBytes([REDACTED; {} bytes])", self.0.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_never_shows_key_bytes() {
        let key = DataKey::from_slice(&[0xAB; KEY_LEN]).unwrap();
        let master = MasterKey::from_slice(&[0xCD; KEY_LEN]).unwrap();
        let secret = SecretBytes::new(b"hunter2-hunter2".to_vec());
        assert_eq!(format!("{key:?}"), "DataKey([REDACTED])");
        assert_eq!(format!("{master:?}"), "MasterKey([REDACTED])");
        assert_eq!(format!("{secret:?}"), "SecretBytes([REDACTED; 15 bytes])");
        // Derived Debug of a struct holding a key redacts too.
        #[derive(Debug)]
        #[allow(dead_code)]
        struct Holder {
            key: DataKey,
        }
        assert!(!format!("{:?}", Holder { key }).contains("171"));
    }

    #[test]
    fn wrong_length_and_all_zero_material_are_refused() {
        assert_eq!(
            DataKey::from_slice(&[1; 31]).unwrap_err(),
            KeyMaterialError::WrongLength { found: 31 }
        );
        assert_eq!(
            MasterKey::from_configured(&[0; KEY_LEN]).unwrap_err(),
            KeyMaterialError::AllZero
        );
        assert!(MasterKey::from_configured(&[7; KEY_LEN]).is_ok());
    }

    #[test]
    fn generated_keys_differ() {
        assert_ne!(
            DataKey::generate().expose_secret(),
            DataKey::generate().expose_secret()
        );
    }
}
