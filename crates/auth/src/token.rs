//! Access tokens: RS256 JWTs in the shape of RFC 9068 (`typ: at+jwt`, `kid`, iss, aud, sub,
//! exp, iat, jti, client_id, roles, amr), issued and verified against a ring of signing keys
//! that rotates without breaking tokens in flight.
//!
//! Verification pins RS256 (so `alg: none` and an HMAC "signed" with the public key fail before
//! any key is used), requires iss, aud, exp, iat and sub and checks them with a small leeway,
//! refuses an `iat` in the future, requires `typ: at+jwt`, finds the key by `kid` among the keys
//! still in their window, and asks the revocation list about the token id, the user's epoch and
//! the global epoch. Every refusal is a [`TokenError`] with a stable reason code.
//!
//! Rotation (the dual-key scheme): a new key is published and signs from then on; the previous
//! one stops signing but stays in the JWKS, and verifies, until every token it signed has
//! expired (its retirement plus the token lifetime plus the leeway). Then it is pruned.
//!
//! [`Tokens`] reads the time from an injected [`Clock`] (the system's unless
//! [`Tokens::with_clock`] says otherwise): issue times and expiries, key windows, the JWKS and
//! the `iat` check. The `exp` check is jsonwebtoken's, against the system clock, so a test's
//! clock should stay near the present.

use std::collections::HashSet;
use std::fmt;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use coffer_clock::Clock;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rsa::RsaPrivateKey;
use rsa::pkcs1::EncodeRsaPrivateKey;
use rsa::traits::PublicKeyParts;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::revocation::{RevocationError, RevocationList, unix_secs};
use crate::store::Cause;

/// The `typ` header of access tokens (RFC 9068 §2.1).
pub const ACCESS_TOKEN_TYPE: &str = "at+jwt";

/// Token settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenConfig {
    /// `iss` of issued tokens, and the only one accepted.
    pub issuer: String,
    /// `aud` of issued tokens, and the only one accepted.
    pub audience: String,
    /// Lifetime of an access token.
    pub access_ttl: Duration,
    /// Clock skew tolerated on exp and iat.
    pub leeway: Duration,
}

impl Default for TokenConfig {
    fn default() -> Self {
        Self {
            issuer: "https://coffer.local".to_owned(),
            audience: "coffer-api".to_owned(),
            access_ttl: Duration::from_secs(3600),
            leeway: Duration::from_secs(30),
        }
    }
}

/// The claims of a Coffer access token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessClaims {
    /// Issuer.
    pub iss: String,
    /// The user.
    pub sub: String,
    /// Audience.
    pub aud: String,
    /// Expiry, seconds since the epoch.
    pub exp: u64,
    /// Issued at, seconds since the epoch.
    pub iat: u64,
    /// Token id (the denylist key).
    pub jti: String,
    /// The client the token was issued to.
    pub client_id: String,
    /// Roles (mapped to permissions by RBAC).
    pub roles: Vec<String>,
    /// Authentication methods (`pwd`, `otp`).
    pub amr: Vec<String>,
    /// The user's revocation epoch at issue.
    pub uep: u64,
    /// The global revocation epoch at issue.
    pub gep: u64,
    /// The session (refresh-token family) the token belongs to, so a logout ends both.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
}

/// Why a token is refused. The reason codes are stable (API problem codes, audit details).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// Not a JWT, or claims of the wrong shape.
    #[error("malformed token")]
    Malformed,
    /// Any algorithm but RS256 (`none` and HMAC included).
    #[error("unsupported token algorithm")]
    UnsupportedAlgorithm,
    /// `typ` is not `at+jwt`.
    #[error("not an access token")]
    WrongType,
    /// No `kid`, or one this service never had or has pruned.
    #[error("unknown signing key")]
    UnknownKey,
    /// Signed by a key past its verification window.
    #[error("signing key retired")]
    KeyRetired,
    /// The signature does not verify.
    #[error("bad signature")]
    BadSignature,
    /// Expired.
    #[error("token expired")]
    Expired,
    /// Issued in the future.
    #[error("token issued in the future")]
    IssuedInFuture,
    /// Another issuer.
    #[error("wrong issuer")]
    WrongIssuer,
    /// Another audience.
    #[error("wrong audience")]
    WrongAudience,
    /// A required claim is missing.
    #[error("missing claim {0}")]
    MissingClaim(String),
    /// The token id was revoked (logout).
    #[error("token revoked")]
    Revoked,
    /// Every token of the user issued before a revoke-all.
    #[error("session revoked")]
    UserRevoked,
    /// Every token issued before an emergency revoke.
    #[error("all sessions revoked")]
    EveryoneRevoked,
    /// The revocation list cannot be asked (fail closed).
    #[error("token check unavailable: {0}")]
    Unavailable(#[source] Cause),
    /// Signing failed (a broken key; never the caller's fault).
    #[error("token signing failed: {0}")]
    Signing(#[source] Cause),
}

impl TokenError {
    /// The stable reason code.
    #[must_use]
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Malformed => "malformed",
            Self::UnsupportedAlgorithm => "unsupported_algorithm",
            Self::WrongType => "wrong_type",
            Self::UnknownKey => "unknown_key",
            Self::KeyRetired => "key_retired",
            Self::BadSignature => "bad_signature",
            Self::Expired => "expired",
            Self::IssuedInFuture => "issued_in_future",
            Self::WrongIssuer => "wrong_issuer",
            Self::WrongAudience => "wrong_audience",
            Self::MissingClaim(_) => "missing_claim",
            Self::Revoked => "revoked",
            Self::UserRevoked => "user_revoked",
            Self::EveryoneRevoked => "everyone_revoked",
            Self::Unavailable(_) => "unavailable",
            Self::Signing(_) => "signing_failed",
        }
    }
}

impl From<RevocationError> for TokenError {
    fn from(e: RevocationError) -> Self {
        Self::Unavailable(Box::new(e))
    }
}

/// One RSA signing key: its private half (PKCS#1 DER, zeroized on drop) and its public JWK.
pub struct SigningKey {
    kid: String,
    private_der: Zeroizing<Vec<u8>>,
    encoding: EncodingKey,
    decoding: DecodingKey,
    n: String,
    e: String,
}

coffer_macros::debug_non_exhaustive!(self => SigningKey { kid, private: "[REDACTED]" });

/// Why key material was refused.
#[derive(Debug, thiserror::Error)]
#[error("RSA signing key: {0}")]
pub struct KeyMaterialError(String);

impl SigningKey {
    /// A fresh 2048-bit RSA key.
    ///
    /// # Errors
    /// [`KeyMaterialError`] if the system's randomness fails.
    pub fn generate() -> Result<Self, KeyMaterialError> {
        let key = RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048)
            .map_err(|e| KeyMaterialError(e.to_string()))?;
        Self::from_private(&key)
    }

    /// From stored PKCS#1 DER (which the caller keeps encrypted under the KEK).
    ///
    /// # Errors
    /// [`KeyMaterialError`] for bytes that are not an RSA private key.
    pub fn from_pkcs1_der(der: &[u8]) -> Result<Self, KeyMaterialError> {
        use rsa::pkcs1::DecodeRsaPrivateKey;
        let key =
            RsaPrivateKey::from_pkcs1_der(der).map_err(|e| KeyMaterialError(e.to_string()))?;
        Self::from_private(&key)
    }

    fn from_private(key: &RsaPrivateKey) -> Result<Self, KeyMaterialError> {
        if key.size() < 256 {
            return Err(KeyMaterialError("shorter than 2048 bits".into()));
        }
        let der = key
            .to_pkcs1_der()
            .map_err(|e| KeyMaterialError(e.to_string()))?;
        let private_der = Zeroizing::new(der.as_bytes().to_vec());
        let n = URL_SAFE_NO_PAD.encode(key.n().to_bytes_be());
        let e = URL_SAFE_NO_PAD.encode(key.e().to_bytes_be());
        // RFC 7638 thumbprint: SHA-256 over the required members in lexicographic order.
        let thumbprint = Sha256::digest(format!(r#"{{"e":"{e}","kty":"RSA","n":"{n}"}}"#));
        Ok(Self {
            kid: URL_SAFE_NO_PAD.encode(thumbprint),
            encoding: EncodingKey::from_rsa_der(&private_der),
            decoding: DecodingKey::from_rsa_components(&n, &e)
                .map_err(|e| KeyMaterialError(e.to_string()))?,
            private_der,
            n,
            e,
        })
    }

    /// Its key id (the RFC 7638 thumbprint).
    #[must_use]
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The private key as PKCS#1 DER, to be sealed for storage.
    #[must_use]
    pub fn expose_pkcs1_der(&self) -> &[u8] {
        &self.private_der
    }

    /// The public JWK.
    #[must_use]
    pub fn jwk(&self) -> serde_json::Value {
        serde_json::json!({
            "kty": "RSA",
            "use": "sig",
            "alg": "RS256",
            "kid": self.kid,
            "n": self.n,
            "e": self.e,
        })
    }
}

struct RingEntry {
    key: Arc<SigningKey>,
    /// When it stopped signing, seconds since the epoch.
    retired_at: Option<u64>,
}

/// The signing keys: the current one (signs) and earlier ones still in their window.
pub struct TokenKeys {
    entries: Vec<RingEntry>,
    window: u64,
}

impl fmt::Debug for TokenKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenKeys")
            .field(
                "kids",
                &self.entries.iter().map(|e| e.key.kid()).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl TokenKeys {
    /// A ring whose current key is `current`; `config` sets how long a retired key verifies.
    #[must_use]
    pub fn new(current: SigningKey, config: &TokenConfig) -> Self {
        Self {
            entries: vec![RingEntry {
                key: Arc::new(current),
                retired_at: None,
            }],
            window: (config.access_ttl + config.leeway).as_secs(),
        }
    }

    /// A ring as stored: keys oldest first with when each stopped signing (`None` for the
    /// current one). Keys past their window at `now` are left out. `None` if no key signs.
    #[must_use]
    pub fn restore(
        keys: Vec<(SigningKey, Option<u64>)>,
        config: &TokenConfig,
        now: SystemTime,
    ) -> Option<Self> {
        let mut ring = Self {
            entries: Vec::with_capacity(keys.len()),
            window: (config.access_ttl + config.leeway).as_secs(),
        };
        let now = unix_secs(now);
        for (key, retired_at) in keys {
            let entry = RingEntry {
                key: Arc::new(key),
                retired_at,
            };
            if ring.in_window(&entry, now) {
                ring.entries.push(entry);
            }
        }
        ring.current()?;
        Some(ring)
    }

    /// The kid of the signing key.
    #[must_use]
    pub fn current_kid(&self) -> Option<&str> {
        self.current().map(|k| k.kid())
    }

    fn current(&self) -> Option<&Arc<SigningKey>> {
        self.entries
            .iter()
            .rev()
            .find(|e| e.retired_at.is_none())
            .map(|e| &e.key)
    }

    fn in_window(&self, e: &RingEntry, now: u64) -> bool {
        e.retired_at
            .is_none_or(|at| now <= at.saturating_add(self.window))
    }

    /// Makes `next` the signing key at `now`; the current one keeps verifying for its window.
    /// Keys past their window are pruned.
    pub fn rotate(&mut self, next: SigningKey, now: SystemTime) {
        let now = unix_secs(now);
        for e in &mut self.entries {
            e.retired_at.get_or_insert(now);
        }
        let window = self.window;
        self.entries.retain(|e| {
            e.retired_at
                .is_none_or(|at| now <= at.saturating_add(window))
        });
        self.entries.push(RingEntry {
            key: Arc::new(next),
            retired_at: None,
        });
    }

    /// The JWKS document: every key still in its window.
    #[must_use]
    pub fn jwks(&self, now: SystemTime) -> serde_json::Value {
        let now = unix_secs(now);
        let keys: Vec<_> = self
            .entries
            .iter()
            .filter(|e| self.in_window(e, now))
            .map(|e| e.key.jwk())
            .collect();
        serde_json::json!({ "keys": keys })
    }
}

/// A part of a token (0: header, 1: claims) as JSON, read without verifying anything: only
/// to name the reason of a refusal.
fn raw_part(token: &str, index: usize) -> Option<serde_json::Value> {
    let part = token.split('.').nth(index)?;
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).ok()?).ok()
}

/// How the JWT library's refusal of `token` reads as a reason, for both verifiers (Coffer's own
/// tokens here, an external issuer's in `coffer-auth-oidc`). A verifier with more to say about a
/// kind (an issuer's key the crypto library refuses, `nbf`) matches it before calling this.
#[must_use]
pub fn refusal_of(token: &str, kind: &ErrorKind) -> TokenError {
    match kind {
        ErrorKind::InvalidSignature => TokenError::BadSignature,
        ErrorKind::ExpiredSignature => TokenError::Expired,
        ErrorKind::InvalidIssuer => TokenError::WrongIssuer,
        ErrorKind::InvalidAudience => TokenError::WrongAudience,
        // The library also calls a claim of the wrong type (exp as a string) missing.
        ErrorKind::MissingRequiredClaim(c) => {
            if raw_part(token, 1).is_some_and(|claims| claims.get(c).is_some()) {
                TokenError::Malformed
            } else {
                TokenError::MissingClaim(c.clone())
            }
        }
        ErrorKind::InvalidAlgorithm
        | ErrorKind::InvalidAlgorithmName
        | ErrorKind::UnsupportedAlgorithm => TokenError::UnsupportedAlgorithm,
        _ => TokenError::Malformed,
    }
}

/// The `alg` of a token's header.
fn raw_alg(token: &str) -> Option<String> {
    raw_part(token, 0)?.get("alg")?.as_str().map(str::to_owned)
}

/// A verified access token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedToken {
    /// Its claims.
    pub claims: AccessClaims,
}

/// Issues and verifies access tokens.
#[derive(Debug)]
pub struct Tokens {
    config: TokenConfig,
    ring: RwLock<TokenKeys>,
    revocation: Arc<dyn RevocationList>,
    validation: Validation,
    clock: Arc<dyn Clock>,
}

/// What to put in a new token.
#[derive(Debug, Clone)]
pub struct Grant<'a> {
    /// The user.
    pub subject: &'a str,
    /// The client.
    pub client_id: &'a str,
    /// Roles.
    pub roles: &'a [String],
    /// Authentication methods.
    pub amr: &'a [String],
    /// The session (refresh-token family), if any.
    pub session: Option<&'a str>,
    /// The user's and the global revocation epoch, when the caller read them (before the
    /// roles, so a revocation in between is never outlived); `None` reads them now.
    pub epochs: Option<(u64, u64)>,
}

impl Tokens {
    /// Tokens signed by `ring`, checked against `revocation`.
    #[must_use]
    pub fn new(config: TokenConfig, ring: TokenKeys, revocation: Arc<dyn RevocationList>) -> Self {
        let mut validation = Validation::new(Algorithm::RS256);
        validation.algorithms = vec![Algorithm::RS256];
        validation.leeway = config.leeway.as_secs();
        validation.validate_exp = true;
        validation.validate_aud = true;
        validation.set_issuer(&[&config.issuer]);
        validation.set_audience(&[&config.audience]);
        // Setting iss and aud does not make them required: name every claim that is.
        validation.required_spec_claims = ["exp", "iat", "iss", "aud", "sub"]
            .into_iter()
            .map(str::to_owned)
            .collect::<HashSet<_>>();
        Self {
            config,
            ring: RwLock::new(ring),
            revocation,
            validation,
            clock: coffer_clock::system(),
        }
    }

    /// The same, reading the time from `clock`.
    #[must_use]
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The settings.
    #[must_use]
    pub fn config(&self) -> &TokenConfig {
        &self.config
    }

    /// Rotates the signing key (see the module documentation).
    pub fn rotate(&self, next: SigningKey) {
        self.ring
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .rotate(next, self.clock.now());
    }

    /// Replaces the ring (another replica rotated: the keys were read again from the store).
    pub fn replace_ring(&self, ring: TokenKeys) {
        *self.ring.write().unwrap_or_else(PoisonError::into_inner) = ring;
    }

    /// The kid of the signing key.
    #[must_use]
    pub fn current_kid(&self) -> Option<String> {
        self.ring
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .current_kid()
            .map(str::to_owned)
    }

    /// Drops a key at once (a compromised key): tokens it signed stop verifying now, not at
    /// the end of its window. Returns whether it was there. The current key cannot be dropped;
    /// rotate first. In memory only: with stored keys, drop through
    /// `Accounts::drop_signing_key`, which also keeps it out of every later load.
    pub fn drop_key(&self, kid: &str) -> bool {
        let mut ring = self.ring.write().unwrap_or_else(PoisonError::into_inner);
        let before = ring.entries.len();
        ring.entries
            .retain(|e| e.key.kid() != kid || e.retired_at.is_none());
        ring.entries.len() != before
    }

    /// The JWKS document.
    #[must_use]
    pub fn jwks(&self) -> serde_json::Value {
        self.ring
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .jwks(self.clock.now())
    }

    /// Issues an access token for `grant` at `now`.
    ///
    /// # Errors
    /// [`TokenError::Unavailable`] when the revocation epochs cannot be read;
    /// [`TokenError::Signing`] for a broken key.
    pub async fn issue_at(
        &self,
        grant: &Grant<'_>,
        now: SystemTime,
    ) -> Result<(String, AccessClaims), TokenError> {
        let (uep, gep) = match grant.epochs {
            Some(epochs) => epochs,
            None => self.revocation.epochs(grant.subject).await?,
        };
        let iat = unix_secs(now);
        let claims = AccessClaims {
            iss: self.config.issuer.clone(),
            sub: grant.subject.to_owned(),
            aud: self.config.audience.clone(),
            exp: iat + self.config.access_ttl.as_secs(),
            iat,
            jti: uuid::Uuid::new_v4().to_string(),
            client_id: grant.client_id.to_owned(),
            roles: grant.roles.to_vec(),
            amr: grant.amr.to_vec(),
            uep,
            gep,
            sid: grant.session.map(str::to_owned),
        };
        let key = self
            .ring
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .current()
            .cloned()
            .ok_or_else(|| TokenError::Signing("no current signing key".into()))?;
        let mut header = Header::new(Algorithm::RS256);
        header.typ = Some(ACCESS_TOKEN_TYPE.to_owned());
        header.kid = Some(key.kid().to_owned());
        let token = jsonwebtoken::encode(&header, &claims, &key.encoding)
            .map_err(|e| TokenError::Signing(Box::new(e)))?;
        Ok((token, claims))
    }

    /// Issues an access token now.
    ///
    /// # Errors
    /// As [`Tokens::issue_at`].
    pub async fn issue(&self, grant: &Grant<'_>) -> Result<(String, AccessClaims), TokenError> {
        self.issue_at(grant, self.clock.now()).await
    }

    /// Verifies a token (see the module documentation).
    ///
    /// # Errors
    /// [`TokenError`], with the first reason found.
    pub async fn verify(&self, token: &str) -> Result<VerifiedToken, TokenError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| {
            // A header naming an algorithm the library does not know (`none` among them) is an
            // algorithm refusal, not mere garbage.
            if raw_alg(token).is_some_and(|alg| alg != "RS256") {
                TokenError::UnsupportedAlgorithm
            } else {
                TokenError::Malformed
            }
        })?;
        if header.alg != Algorithm::RS256 {
            return Err(TokenError::UnsupportedAlgorithm);
        }
        if !header
            .typ
            .as_deref()
            .is_some_and(|t| t.eq_ignore_ascii_case(ACCESS_TOKEN_TYPE))
        {
            return Err(TokenError::WrongType);
        }
        let kid = header.kid.ok_or(TokenError::UnknownKey)?;
        let now = self.clock.unix_secs();
        let key = {
            let ring = self.ring.read().unwrap_or_else(PoisonError::into_inner);
            let entry = ring
                .entries
                .iter()
                .find(|e| e.key.kid() == kid)
                .ok_or(TokenError::UnknownKey)?;
            if !ring.in_window(entry, now) {
                return Err(TokenError::KeyRetired);
            }
            entry.key.clone()
        };
        // Decoded loosely first, so the library's claim checks name a missing claim; then into
        // the strict shape.
        let data =
            jsonwebtoken::decode::<serde_json::Value>(token, &key.decoding, &self.validation)
                .map_err(|e| refusal_of(token, e.kind()))?;
        let claims: AccessClaims =
            serde_json::from_value(data.claims).map_err(|_| TokenError::Malformed)?;
        if claims.iat > now.saturating_add(self.config.leeway.as_secs()) {
            return Err(TokenError::IssuedInFuture);
        }
        let status = self.revocation.status(&claims.jti, &claims.sub).await?;
        if status.token_revoked {
            return Err(TokenError::Revoked);
        }
        // An epoch above the current one means the list lost its counters (a restart of an
        // unpersisted store): every such token is refused rather than trusted.
        if claims.uep != status.user_epoch {
            return Err(TokenError::UserRevoked);
        }
        if claims.gep != status.global_epoch {
            return Err(TokenError::EveryoneRevoked);
        }
        Ok(VerifiedToken { claims })
    }

    /// Logout: revokes this token until it would have expired, with a margin of twice the
    /// leeway for clocks that disagree (the list's and the verifiers').
    ///
    /// # Errors
    /// [`TokenError::Unavailable`].
    pub async fn revoke(&self, claims: &AccessClaims) -> Result<(), TokenError> {
        let margin = 2 * self.config.leeway.as_secs() + 1;
        let expires =
            SystemTime::UNIX_EPOCH + Duration::from_secs(claims.exp.saturating_add(margin));
        self.revocation.revoke_token(&claims.jti, expires).await?;
        Ok(())
    }
}
