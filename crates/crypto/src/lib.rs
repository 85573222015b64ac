//! Coffer's cryptographic core: pure functions and types, no I/O, no async.
//!
//! - [`envelope`]: the one ciphertext format (AES-256-GCM, versioned, key reference, caller-built
//!   associated data), binary and text forms.
//! - [`secret`]: key types and decrypted bytes that zeroize on drop and redact in `Debug`.
//! - [`pin`]: the six-digit PIN and its PBKDF2-HMAC-SHA256 key.
//! - [`mac`]: HMAC-SHA256 keys and blind indexes for looking up encrypted values.
//! - [`signing`]: wallet Ed25519 keys, sealed under the PIN key and then the data key.
//!
//! Randomness comes from the thread-local CSPRNG of `rand` (ChaCha, seeded and reseeded by the
//! operating system), which keeps nonce generation off the system-call path.
#![deny(clippy::indexing_slicing)]
#![cfg_attr(test, allow(clippy::indexing_slicing))]

pub mod envelope;
pub mod mac;
pub mod pin;
pub mod secret;
pub mod signing;

pub use envelope::{
    Aad, Algorithm, Envelope, EnvelopeError, KeyRef, OpenError, SealError, open, open_bytes, seal,
};
pub use mac::{BlindIndex, HmacKey, blind_index};
pub use pin::{KdfError, KdfParams, Pin, PinError, derive_pin_key};
pub use secret::{DataKey, EnvelopeKey, KEY_LEN, KeyMaterialError, MasterKey, PinKey, SecretBytes};
pub use signing::{
    CorruptReason, SealedSigningKey, SignatureError, UnsealError, WalletPublicKey, WalletSignature,
    WalletSigningKey,
};
