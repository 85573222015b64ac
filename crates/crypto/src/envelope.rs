//! The one ciphertext format Coffer stores.
//!
//! Binary form (all integers big-endian):
//!
//! ```text
//! offset  size  field
//! 0       1     format version            (1)
//! 1       1     algorithm id              (1 = AES-256-GCM)
//! 2       1     key id length n           (0..=64)
//! 3       n     key id                    ([A-Za-z0-9._:/-])
//! 3+n     4     key version
//! 7+n     12    nonce                     (random, 96 bits)
//! 19+n    4     ciphertext length m       (plaintext length + 16)
//! 23+n    m     ciphertext with its 128-bit tag
//! ```
//!
//! Text form: [`TEXT_PREFIX`] followed by the binary form in unpadded base64url.
//!
//! The AEAD's associated data is the header (bytes `0..19+n`) followed by the caller's [`Aad`].
//! The caller's part is never stored: it is rebuilt from context when opening, so a ciphertext
//! copied to another row or field does not open. Binding the header means that no header byte can
//! be changed without the open failing.
//!
//! An [`Envelope`] keeps its encoded bytes, so storing one costs nothing. Parsing is a
//! bounds-checked reader (the crate denies `clippy::indexing_slicing`) with an explicit
//! ciphertext length: truncation and trailing bytes are parse errors ([`EnvelopeError`]), told
//! apart from a failed authentication ([`OpenError::Authentication`]).

use std::fmt;

use aes_gcm::aead::AeadInOut;
use aes_gcm::{Nonce, Tag};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::Rng;

use crate::secret::{EnvelopeKey, SecretBytes};

/// Current binary format version.
pub const FORMAT_VERSION: u8 = 1;
/// Prefix of the text form.
pub const TEXT_PREFIX: &str = "cfe1.";
/// Longest key id a [`KeyRef`] may carry.
pub const MAX_KEY_ID_LEN: usize = 64;
/// Largest plaintext an envelope may hold (16 MiB). Larger inputs are refused at both ends.
pub const MAX_PLAINTEXT_LEN: usize = 16 * 1024 * 1024;
/// Bytes an envelope adds to its plaintext when the key id is empty.
pub const MIN_OVERHEAD: usize = FIXED_HEADER + LEN_FIELD + TAG_LEN;

const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
const LEN_FIELD: usize = 4;
/// version + algorithm + key id length + key version + nonce.
const FIXED_HEADER: usize = 1 + 1 + 1 + 4 + NONCE_LEN;

/// The AEAD algorithm of an envelope.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Algorithm {
    /// AES-256-GCM with a 96-bit random nonce and a 128-bit tag.
    Aes256Gcm,
}

impl Algorithm {
    /// The id stored in the envelope.
    #[must_use]
    pub const fn id(self) -> u8 {
        match self {
            Self::Aes256Gcm => 1,
        }
    }

    fn from_id(id: u8) -> Option<Self> {
        match id {
            1 => Some(Self::Aes256Gcm),
            _ => None,
        }
    }
}

/// Which key sealed an envelope: a key id (may be empty when the context names the key, as
/// for a wallet's data key) and a version.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyRef {
    key_id: Box<str>,
    version: u32,
}

impl KeyRef {
    /// Builds a reference, checking the key id's length and characters.
    ///
    /// # Errors
    /// [`EnvelopeError::InvalidKeyId`] when the id is longer than [`MAX_KEY_ID_LEN`] or has a
    /// character outside `[A-Za-z0-9._:/-]`.
    pub fn new(key_id: &str, version: u32) -> Result<Self, EnvelopeError> {
        validate_key_id(key_id.as_bytes())?;
        Ok(Self {
            key_id: key_id.into(),
            version,
        })
    }

    /// A reference with an empty key id.
    #[must_use]
    pub fn version_only(version: u32) -> Self {
        Self {
            key_id: "".into(),
            version,
        }
    }

    /// The key id.
    #[must_use]
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// The key version.
    #[must_use]
    pub fn version(&self) -> u32 {
        self.version
    }
}

impl fmt::Debug for KeyRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyRef({self})")
    }
}

impl fmt::Display for KeyRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}#v{}", self.key_id, self.version)
    }
}

fn validate_key_id(id: &[u8]) -> Result<(), EnvelopeError> {
    let ok_char =
        |b: &u8| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'/' | b'-');
    if id.len() > MAX_KEY_ID_LEN || !id.iter().all(ok_char) {
        return Err(EnvelopeError::InvalidKeyId);
    }
    Ok(())
}

/// Associated data rebuilt by the caller from context: a purpose label and any number of parts
/// (wallet id, field name, row id…), each length-prefixed so that no two different lists encode
/// to the same bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct Aad {
    bytes: Vec<u8>,
    parts: usize,
}

impl Aad {
    /// Starts associated data for one purpose, such as `"wallet.balance"`.
    #[must_use]
    pub fn new(purpose: &str) -> Self {
        let mut aad = Self {
            bytes: Vec::with_capacity(64),
            parts: 0,
        };
        aad.push(purpose.as_bytes());
        aad
    }

    /// Adds one part.
    #[must_use]
    pub fn with(mut self, part: impl AsRef<[u8]>) -> Self {
        self.push(part.as_ref());
        self
    }

    fn push(&mut self, part: &[u8]) {
        // A part longer than u32::MAX bytes cannot be built in practice; saturating keeps this
        // total and the encoding stays injective for every realistic input.
        let len = u32::try_from(part.len()).unwrap_or(u32::MAX);
        self.bytes.extend_from_slice(&len.to_be_bytes());
        self.bytes.extend_from_slice(part);
        self.parts += 1;
    }

    /// The encoded bytes.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }
}

impl fmt::Debug for Aad {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Aad({} parts, {} bytes)", self.parts, self.bytes.len())
    }
}

/// Why bytes or text are not a well-formed envelope.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EnvelopeError {
    /// The input ends before the envelope does.
    #[error("envelope is truncated")]
    Truncated,
    /// Bytes follow the end of the envelope.
    #[error("envelope has {extra} unexpected trailing bytes")]
    TrailingBytes {
        /// How many.
        extra: usize,
    },
    /// The format version is not one this build reads.
    #[error("unknown envelope format version {0}")]
    UnknownVersion(u8),
    /// The algorithm id is not one this build knows.
    #[error("unknown envelope algorithm id {0}")]
    UnknownAlgorithm(u8),
    /// The key id is too long or has characters outside `[A-Za-z0-9._:/-]`.
    #[error("envelope key id is invalid")]
    InvalidKeyId,
    /// The ciphertext is larger than [`MAX_PLAINTEXT_LEN`] allows, or shorter than a tag.
    #[error("envelope ciphertext length {0} is out of range")]
    BadLength(u64),
    /// The text form does not start with [`TEXT_PREFIX`].
    #[error("text envelope must start with {TEXT_PREFIX:?}")]
    MissingPrefix,
    /// The text form is not valid unpadded base64url.
    #[error("text envelope is not valid base64url")]
    BadBase64,
}

/// Why sealing failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SealError {
    /// The plaintext is larger than [`MAX_PLAINTEXT_LEN`].
    #[error("plaintext of {0} bytes exceeds the {MAX_PLAINTEXT_LEN}-byte envelope limit")]
    TooLarge(usize),
}

/// Why opening failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// The input is not a well-formed envelope.
    #[error(transparent)]
    Malformed(#[from] EnvelopeError),
    /// Authentication failed: wrong key, wrong associated data, or the envelope was altered.
    /// AES-GCM cannot tell these apart, by design.
    #[error("envelope failed authentication (wrong key, wrong context, or tampered)")]
    Authentication,
}

/// A parsed, well-formed envelope. Holds its encoded bytes, so [`Envelope::as_bytes`] costs
/// nothing.
#[derive(Clone, PartialEq, Eq)]
pub struct Envelope {
    bytes: Vec<u8>,
    key_ref: KeyRef,
    algorithm: Algorithm,
    /// Offset of the nonce; the ciphertext starts `NONCE_LEN + LEN_FIELD` bytes later.
    nonce_at: usize,
}

impl Envelope {
    /// Parses the binary form. Never panics, whatever the bytes.
    ///
    /// # Errors
    /// An [`EnvelopeError`] naming the first problem found.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, EnvelopeError> {
        Self::parse(bytes.to_vec())
    }

    /// Like [`Envelope::from_bytes`], taking ownership without copying.
    ///
    /// # Errors
    /// An [`EnvelopeError`] naming the first problem found.
    pub fn from_vec(bytes: Vec<u8>) -> Result<Self, EnvelopeError> {
        Self::parse(bytes)
    }

    /// Parses the text form.
    ///
    /// # Errors
    /// [`EnvelopeError::MissingPrefix`], [`EnvelopeError::BadBase64`], or any error of
    /// [`Envelope::from_bytes`].
    pub fn from_text(text: &str) -> Result<Self, EnvelopeError> {
        let body = text
            .strip_prefix(TEXT_PREFIX)
            .ok_or(EnvelopeError::MissingPrefix)?;
        // Refuse before decoding anything that could not be a valid envelope.
        if body.len() > (MAX_PLAINTEXT_LEN + MIN_OVERHEAD + MAX_KEY_ID_LEN) * 4 / 3 + 4 {
            return Err(EnvelopeError::BadLength(body.len() as u64));
        }
        let bytes = URL_SAFE_NO_PAD
            .decode(body)
            .map_err(|_| EnvelopeError::BadBase64)?;
        Self::parse(bytes)
    }

    fn parse(bytes: Vec<u8>) -> Result<Self, EnvelopeError> {
        let mut r = Reader::new(&bytes);
        let version = r.u8()?;
        if version != FORMAT_VERSION {
            return Err(EnvelopeError::UnknownVersion(version));
        }
        let alg_id = r.u8()?;
        let algorithm =
            Algorithm::from_id(alg_id).ok_or(EnvelopeError::UnknownAlgorithm(alg_id))?;
        let id_len = usize::from(r.u8()?);
        let key_id = r.take(id_len)?;
        validate_key_id(key_id)?;
        let key_id = std::str::from_utf8(key_id).map_err(|_| EnvelopeError::InvalidKeyId)?;
        let key_ref = KeyRef {
            key_id: key_id.into(),
            version: r.u32()?,
        };
        let nonce_at = r.pos;
        r.take(NONCE_LEN)?;
        let ct_len = r.u32()?;
        let ct_len_usize =
            usize::try_from(ct_len).map_err(|_| EnvelopeError::BadLength(ct_len.into()))?;
        if !(TAG_LEN..=MAX_PLAINTEXT_LEN + TAG_LEN).contains(&ct_len_usize) {
            return Err(EnvelopeError::BadLength(ct_len.into()));
        }
        r.take(ct_len_usize)?;
        let extra = bytes.len() - r.pos;
        if extra != 0 {
            return Err(EnvelopeError::TrailingBytes { extra });
        }
        Ok(Self {
            bytes,
            key_ref,
            algorithm,
            nonce_at,
        })
    }

    /// Which key sealed this envelope; look that key up, then [`open`] with it.
    #[must_use]
    pub fn key_ref(&self) -> &KeyRef {
        &self.key_ref
    }

    /// The AEAD algorithm.
    #[must_use]
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The binary form.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The binary form, by value.
    #[must_use]
    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }

    /// The text form: [`TEXT_PREFIX`] and unpadded base64url.
    #[must_use]
    pub fn to_text(&self) -> String {
        let mut text = String::with_capacity(TEXT_PREFIX.len() + self.bytes.len() * 4 / 3 + 4);
        text.push_str(TEXT_PREFIX);
        URL_SAFE_NO_PAD.encode_string(&self.bytes, &mut text);
        text
    }

    /// Length of the plaintext this envelope holds.
    #[must_use]
    pub fn plaintext_len(&self) -> usize {
        self.bytes.len() - self.ciphertext_at() - TAG_LEN
    }

    fn ciphertext_at(&self) -> usize {
        self.nonce_at + NONCE_LEN + LEN_FIELD
    }
}

coffer_macros::debug_non_exhaustive!(self => Envelope {
    key_ref, algorithm, len: self.bytes.len(),
});

/// Bounds-checked cursor: every read returns `Truncated` instead of panicking.
struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Self { bytes, pos: 0 }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], EnvelopeError> {
        let end = self.pos.checked_add(n).ok_or(EnvelopeError::Truncated)?;
        let out = self
            .bytes
            .get(self.pos..end)
            .ok_or(EnvelopeError::Truncated)?;
        self.pos = end;
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8, EnvelopeError> {
        Ok(self.take(1)?.first().copied().unwrap_or_default())
    }

    fn u32(&mut self) -> Result<u32, EnvelopeError> {
        let b = self.take(4)?;
        let mut a = [0u8; 4];
        a.copy_from_slice(b);
        Ok(u32::from_be_bytes(a))
    }
}

fn full_aad(header: &[u8], aad: &Aad) -> Vec<u8> {
    let mut full = Vec::with_capacity(header.len() + aad.as_bytes().len());
    full.extend_from_slice(header);
    full.extend_from_slice(aad.as_bytes());
    full
}

/// Seals `plaintext` under `key`, recording `key_ref` in the envelope and binding `aad`.
///
/// # Errors
/// [`SealError::TooLarge`] when the plaintext exceeds [`MAX_PLAINTEXT_LEN`].
pub fn seal<K: EnvelopeKey + ?Sized>(
    key: &K,
    key_ref: &KeyRef,
    aad: &Aad,
    plaintext: &[u8],
) -> Result<Envelope, SealError> {
    if plaintext.len() > MAX_PLAINTEXT_LEN {
        return Err(SealError::TooLarge(plaintext.len()));
    }
    let id = key_ref.key_id.as_bytes();
    let header_len = FIXED_HEADER + id.len();
    let ct_at = header_len + LEN_FIELD;
    let mut out = Vec::with_capacity(ct_at + plaintext.len() + TAG_LEN);
    out.push(FORMAT_VERSION);
    out.push(Algorithm::Aes256Gcm.id());
    // KeyRef's constructors guarantee id.len() <= MAX_KEY_ID_LEN < 256.
    out.push(u8::try_from(id.len()).unwrap_or(u8::MAX));
    out.extend_from_slice(id);
    out.extend_from_slice(&key_ref.version.to_be_bytes());
    let nonce_at = out.len();
    let mut nonce = [0u8; NONCE_LEN];
    rand::rng().fill_bytes(&mut nonce);
    out.extend_from_slice(&nonce);
    // plaintext.len() + TAG_LEN <= MAX_PLAINTEXT_LEN + 16 fits in u32.
    let ct_len = u32::try_from(plaintext.len() + TAG_LEN).unwrap_or(u32::MAX);
    out.extend_from_slice(&ct_len.to_be_bytes());
    out.extend_from_slice(plaintext);

    let (head, body) = out.split_at_mut(ct_at);
    let header = head.get(..header_len).unwrap_or_default();
    let tag = key
        .cipher()
        .encrypt_inout_detached(&Nonce::from(nonce), &full_aad(header, aad), body.into())
        // aes-gcm fails only for inputs beyond 2^36 bytes, which MAX_PLAINTEXT_LEN excludes.
        .map_err(|_| SealError::TooLarge(plaintext.len()))?;
    out.extend_from_slice(tag.as_slice());
    Ok(Envelope {
        bytes: out,
        key_ref: key_ref.clone(),
        algorithm: Algorithm::Aes256Gcm,
        nonce_at,
    })
}

/// Opens `envelope` with `key` and the caller's rebuilt `aad`.
///
/// # Errors
/// [`OpenError::Authentication`] for a wrong key, wrong associated data or altered envelope.
pub fn open<K: EnvelopeKey + ?Sized>(
    key: &K,
    aad: &Aad,
    envelope: &Envelope,
) -> Result<SecretBytes, OpenError> {
    let ct_at = envelope.ciphertext_at();
    let bytes = envelope.as_bytes();
    let header = bytes
        .get(..envelope.nonce_at + NONCE_LEN)
        .unwrap_or_default();
    let nonce = bytes
        .get(envelope.nonce_at..envelope.nonce_at + NONCE_LEN)
        .and_then(|n| <[u8; NONCE_LEN]>::try_from(n).ok())
        .ok_or(EnvelopeError::Truncated)?;
    let body = bytes.get(ct_at..).ok_or(EnvelopeError::Truncated)?;
    let split = body
        .len()
        .checked_sub(TAG_LEN)
        .ok_or(EnvelopeError::Truncated)?;
    let (ciphertext, tag) = body.split_at(split);
    let tag = Tag::try_from(tag).map_err(|_| EnvelopeError::Truncated)?;

    let mut plaintext = SecretBytes::new(ciphertext.to_vec());
    key.cipher()
        .decrypt_inout_detached(
            &Nonce::from(nonce),
            &full_aad(header, aad),
            plaintext.expose_secret_mut().into(),
            &tag,
        )
        .map_err(|_| OpenError::Authentication)?;
    Ok(plaintext)
}

/// Parses and opens the binary form in one step.
///
/// # Errors
/// [`OpenError::Malformed`] for bytes that are not an envelope, else as [`open`].
pub fn open_bytes<K: EnvelopeKey + ?Sized>(
    key: &K,
    aad: &Aad,
    bytes: &[u8],
) -> Result<SecretBytes, OpenError> {
    open(key, aad, &Envelope::from_bytes(bytes)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DataKey;

    fn aad() -> Aad {
        Aad::new("wallet.balance").with("wallet-1").with("row-7")
    }

    fn sealed(pt: &[u8]) -> (DataKey, Envelope) {
        let key = DataKey::generate();
        let env = seal(&key, &KeyRef::new("dek", 3).unwrap(), &aad(), pt).unwrap();
        (key, env)
    }

    #[test]
    fn round_trips_binary_and_text() {
        let (key, env) = sealed(b"1050 USD");
        assert_eq!(env.key_ref(), &KeyRef::new("dek", 3).unwrap());
        assert_eq!(env.plaintext_len(), 8);
        let parsed = Envelope::from_bytes(env.as_bytes()).unwrap();
        assert_eq!(
            open(&key, &aad(), &parsed).unwrap().expose_secret(),
            b"1050 USD"
        );
        let text = env.to_text();
        assert!(text.starts_with(TEXT_PREFIX));
        let parsed = Envelope::from_text(&text).unwrap();
        assert_eq!(
            open(&key, &aad(), &parsed).unwrap().expose_secret(),
            b"1050 USD"
        );
    }

    #[test]
    fn empty_plaintext_round_trips() {
        let (key, env) = sealed(b"");
        assert_eq!(env.as_bytes().len(), MIN_OVERHEAD + 3);
        assert!(open(&key, &aad(), &env).unwrap().is_empty());
    }

    #[test]
    fn same_plaintext_gives_different_ciphertexts() {
        let key = DataKey::generate();
        let r = KeyRef::version_only(1);
        let a = seal(&key, &r, &aad(), b"same").unwrap();
        let b = seal(&key, &r, &aad(), b"same").unwrap();
        assert_ne!(a.as_bytes(), b.as_bytes());
    }

    #[test]
    fn wrong_key_is_an_authentication_error() {
        let (_, env) = sealed(b"secret");
        assert_eq!(
            open(&DataKey::generate(), &aad(), &env).unwrap_err(),
            OpenError::Authentication
        );
    }

    #[test]
    fn wrong_aad_is_an_authentication_error() {
        let (key, env) = sealed(b"secret");
        for other in [
            Aad::new("wallet.balance").with("wallet-2").with("row-7"),
            Aad::new("wallet.memo").with("wallet-1").with("row-7"),
            Aad::new("wallet.balance").with("wallet-1"),
            // Same concatenated bytes, different split: the length prefixes tell them apart.
            Aad::new("wallet.balance").with("wallet-1r").with("ow-7"),
        ] {
            assert_eq!(
                open(&key, &other, &env).unwrap_err(),
                OpenError::Authentication
            );
        }
    }

    #[test]
    fn every_single_bit_flip_is_detected_with_a_typed_error() {
        let (key, env) = sealed(b"ten bytes!");
        let bytes = env.as_bytes();
        for i in 0..bytes.len() * 8 {
            let mut flipped = bytes.to_vec();
            flipped[i / 8] ^= 1 << (i % 8);
            let err = open_bytes(&key, &aad(), &flipped).unwrap_err();
            match i / 8 {
                0 => assert!(matches!(
                    err,
                    OpenError::Malformed(EnvelopeError::UnknownVersion(_))
                )),
                1 => assert!(matches!(
                    err,
                    OpenError::Malformed(EnvelopeError::UnknownAlgorithm(_))
                )),
                _ => {} // any typed error; the proptest covers the rest
            }
        }
    }

    #[test]
    fn truncation_and_extension_are_malformed() {
        let (key, env) = sealed(b"secret");
        let bytes = env.as_bytes();
        for cut in 0..bytes.len() {
            let err = open_bytes(&key, &aad(), &bytes[..cut]).unwrap_err();
            assert!(
                matches!(err, OpenError::Malformed(EnvelopeError::Truncated)),
                "cut at {cut}: {err:?}"
            );
        }
        let mut longer = bytes.to_vec();
        longer.push(0);
        assert_eq!(
            open_bytes(&key, &aad(), &longer).unwrap_err(),
            OpenError::Malformed(EnvelopeError::TrailingBytes { extra: 1 })
        );
    }

    #[test]
    fn unknown_version_and_algorithm_are_named() {
        let (_, env) = sealed(b"x");
        let mut b = env.as_bytes().to_vec();
        b[0] = 9;
        assert_eq!(
            Envelope::from_bytes(&b).unwrap_err(),
            EnvelopeError::UnknownVersion(9)
        );
        let mut b = env.as_bytes().to_vec();
        b[1] = 200;
        assert_eq!(
            Envelope::from_bytes(&b).unwrap_err(),
            EnvelopeError::UnknownAlgorithm(200)
        );
    }

    #[test]
    fn oversized_inputs_are_refused() {
        let key = DataKey::generate();
        let big = vec![0u8; MAX_PLAINTEXT_LEN + 1];
        assert_eq!(
            seal(&key, &KeyRef::version_only(1), &aad(), &big).unwrap_err(),
            SealError::TooLarge(MAX_PLAINTEXT_LEN + 1)
        );
        // A header that claims a 4 GiB ciphertext is refused before anything is read.
        let (_, env) = sealed(b"x");
        let mut b = env.as_bytes().to_vec();
        let len_at = FIXED_HEADER + 3;
        b[len_at..len_at + 4].copy_from_slice(&u32::MAX.to_be_bytes());
        assert_eq!(
            Envelope::from_bytes(&b).unwrap_err(),
            EnvelopeError::BadLength(u64::from(u32::MAX))
        );
    }

    #[test]
    fn text_form_errors_are_typed() {
        assert_eq!(
            Envelope::from_text("AAAA").unwrap_err(),
            EnvelopeError::MissingPrefix
        );
        assert_eq!(
            Envelope::from_text(&format!("{TEXT_PREFIX}!!!")).unwrap_err(),
            EnvelopeError::BadBase64
        );
        assert_eq!(
            Envelope::from_text(TEXT_PREFIX).unwrap_err(),
            EnvelopeError::Truncated
        );
    }

    #[test]
    fn key_ids_are_checked() {
        assert!(KeyRef::new("coffer-master", 1).is_ok());
        assert!(KeyRef::new("arn:aws:kms:eu-west-1:1/abc_d.e", 1).is_ok());
        assert_eq!(
            KeyRef::new("bad id", 1).unwrap_err(),
            EnvelopeError::InvalidKeyId
        );
        assert_eq!(
            KeyRef::new(&"k".repeat(MAX_KEY_ID_LEN + 1), 1).unwrap_err(),
            EnvelopeError::InvalidKeyId
        );
    }
}
