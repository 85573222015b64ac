//! JWKS documents: parsing them into verification keys, and the cache that refetches them.

use std::collections::HashMap;
use std::str::FromStr as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use coffer_auth::TokenError;
use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::Value;
use tokio::time::Instant;

use crate::fetch::{FetchError, JwksFetcher};

/// The algorithms a JWK may be pinned to: asymmetric signatures only.
pub const ACCEPTED_ALGORITHMS: &[Algorithm] = &[
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

/// The smallest RSA modulus accepted, in bytes (2048 bits).
const MIN_RSA_MODULUS_BYTES: usize = 256;
/// The largest, in bytes (8192 bits, the most the verifier takes).
const MAX_RSA_MODULUS_BYTES: usize = 1024;

/// The algorithm named `name`, if it is one of [`ACCEPTED_ALGORITHMS`].
#[must_use]
pub fn accepted_algorithm(name: &str) -> Option<Algorithm> {
    Algorithm::from_str(name)
        .ok()
        .filter(|alg| ACCEPTED_ALGORITHMS.contains(alg))
}

/// Why a JWKS document was refused as a whole (single keys are skipped instead).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JwksError {
    /// Fetching failed.
    #[error(transparent)]
    Fetch(#[from] FetchError),
    /// Not JSON, or no `keys` array.
    #[error("not a JWKS document: {0}")]
    Malformed(String),
    /// Every key was skipped.
    #[error("JWKS has no usable signing key ({skipped} skipped)")]
    NoUsableKey {
        /// Keys skipped.
        skipped: usize,
    },
}

/// One verification key: its `kid`, the one algorithm it verifies, and the key.
#[derive(Clone)]
pub struct JwksKey {
    kid: String,
    alg: Algorithm,
    key: DecodingKey,
}

coffer_macros::debug_non_exhaustive!(self => JwksKey { kid, alg });

impl JwksKey {
    /// Its key id.
    #[must_use]
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The one algorithm it verifies.
    #[must_use]
    pub fn algorithm(&self) -> Algorithm {
        self.alg
    }

    /// The key.
    #[must_use]
    pub fn decoding_key(&self) -> &DecodingKey {
        &self.key
    }
}

/// The usable keys of one JWKS document, by `kid`.
#[derive(Debug, Clone, Default)]
pub struct KeySet {
    keys: HashMap<String, Arc<JwksKey>>,
    skipped: usize,
}

impl KeySet {
    /// Parses a JWKS document. Keys that cannot serve (see the crate documentation) are
    /// skipped and counted, and logged at debug level.
    ///
    /// # Errors
    /// [`JwksError::Malformed`] for a document that is not a JWKS;
    /// [`JwksError::NoUsableKey`] when every key is skipped.
    pub fn parse(document: &[u8]) -> Result<Self, JwksError> {
        let doc: Value =
            serde_json::from_slice(document).map_err(|e| JwksError::Malformed(e.to_string()))?;
        let keys = doc
            .get("keys")
            .and_then(Value::as_array)
            .ok_or_else(|| JwksError::Malformed("no `keys` array".into()))?;
        let mut set = Self::default();
        for jwk in keys {
            match parse_key(jwk) {
                Ok(key) => {
                    if set.keys.contains_key(&key.kid) {
                        tracing::debug!(kid = %key.kid, "JWKS key skipped: duplicate kid");
                        set.skipped += 1;
                    } else {
                        set.keys.insert(key.kid.clone(), Arc::new(key));
                    }
                }
                Err(reason) => {
                    let kid = jwk.get("kid").and_then(Value::as_str).unwrap_or("");
                    tracing::debug!(kid, reason, "JWKS key skipped");
                    set.skipped += 1;
                }
            }
        }
        if set.keys.is_empty() {
            return Err(JwksError::NoUsableKey {
                skipped: set.skipped,
            });
        }
        Ok(set)
    }

    /// The key with this `kid`.
    #[must_use]
    pub fn get(&self, kid: &str) -> Option<&Arc<JwksKey>> {
        self.keys.get(kid)
    }

    /// Usable keys.
    #[must_use]
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether there is no usable key (never true for a parsed set).
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Keys skipped while parsing.
    #[must_use]
    pub fn skipped(&self) -> usize {
        self.skipped
    }

    /// The usable keys' ids, sorted.
    #[must_use]
    pub fn kids(&self) -> Vec<&str> {
        let mut kids: Vec<&str> = self.keys.keys().map(String::as_str).collect();
        kids.sort_unstable();
        kids
    }
}

fn str_member<'a>(jwk: &'a Value, name: &str) -> Result<Option<&'a str>, &'static str> {
    match jwk.get(name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err("a member that should be a string is not"),
    }
}

/// Decoded length of a base64url member, which must be present.
fn b64_len(jwk: &Value, name: &str) -> Result<(String, Vec<u8>), &'static str> {
    let text = str_member(jwk, name)?.ok_or("missing key material")?;
    let bytes = URL_SAFE_NO_PAD
        .decode(text)
        .map_err(|_| "key material is not base64url")?;
    Ok((text.to_owned(), bytes))
}

/// One JWK into a key, or why it is skipped.
fn parse_key(jwk: &Value) -> Result<JwksKey, &'static str> {
    if !jwk.is_object() {
        return Err("not an object");
    }
    let kid = match str_member(jwk, "kid")? {
        Some(kid) if !kid.is_empty() => kid.to_owned(),
        _ => return Err("no kid"),
    };
    if str_member(jwk, "use")?.is_some_and(|u| u != "sig") {
        return Err("`use` is not `sig`");
    }
    if let Some(ops) = jwk.get("key_ops") {
        let verifies = ops
            .as_array()
            .is_some_and(|ops| ops.iter().any(|op| op.as_str() == Some("verify")));
        if !verifies {
            return Err("`key_ops` does not allow `verify`");
        }
    }
    let kty = str_member(jwk, "kty")?.ok_or("no kty")?;
    let crv = str_member(jwk, "crv")?;
    let alg = match str_member(jwk, "alg")? {
        Some(name) if name.starts_with("HS") => return Err("symmetric algorithm"),
        Some(name) => accepted_algorithm(name).ok_or("unknown or unaccepted alg")?,
        // RFC 7517 makes `alg` optional: a curve names its algorithm; an RSA key without one
        // is taken as RS256, the OpenID Connect default, and verifies nothing else.
        None => match (kty, crv) {
            ("RSA", _) => Algorithm::RS256,
            ("EC", Some("P-256")) => Algorithm::ES256,
            ("EC", Some("P-384")) => Algorithm::ES384,
            ("OKP", Some("Ed25519")) => Algorithm::EdDSA,
            ("oct", _) => return Err("symmetric key"),
            _ => return Err("unknown kty or curve"),
        },
    };
    let key = match (kty, alg) {
        (
            "RSA",
            Algorithm::RS256
            | Algorithm::RS384
            | Algorithm::RS512
            | Algorithm::PS256
            | Algorithm::PS384
            | Algorithm::PS512,
        ) => {
            let (n, modulus) = b64_len(jwk, "n")?;
            let (e, exponent) = b64_len(jwk, "e")?;
            let significant = modulus.iter().skip_while(|b| **b == 0).count();
            if significant < MIN_RSA_MODULUS_BYTES {
                return Err("RSA modulus shorter than 2048 bits");
            }
            if significant > MAX_RSA_MODULUS_BYTES {
                return Err("RSA modulus longer than 8192 bits");
            }
            if exponent.is_empty() || exponent.len() > 8 {
                return Err("bad RSA exponent");
            }
            DecodingKey::from_rsa_components(&n, &e).map_err(|_| "bad RSA key")?
        }
        ("EC", Algorithm::ES256 | Algorithm::ES384) => {
            let (curve, size) = if alg == Algorithm::ES256 {
                ("P-256", 32)
            } else {
                ("P-384", 48)
            };
            if crv != Some(curve) {
                return Err("EC curve does not match alg");
            }
            let (x, xb) = b64_len(jwk, "x")?;
            let (y, yb) = b64_len(jwk, "y")?;
            if xb.len() != size || yb.len() != size {
                return Err("EC coordinates of the wrong length");
            }
            DecodingKey::from_ec_components(&x, &y).map_err(|_| "bad EC key")?
        }
        ("OKP", Algorithm::EdDSA) => {
            if crv != Some("Ed25519") {
                return Err("OKP curve is not Ed25519");
            }
            let (x, xb) = b64_len(jwk, "x")?;
            if xb.len() != 32 {
                return Err("Ed25519 key of the wrong length");
            }
            DecodingKey::from_ed_components(&x).map_err(|_| "bad Ed25519 key")?
        }
        ("RSA" | "EC" | "OKP", _) => return Err("alg does not match kty"),
        ("oct", _) => return Err("symmetric key"),
        _ => return Err("unknown kty"),
    };
    Ok(JwksKey { kid, alg, key })
}

/// Fetch counters (for metrics and tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct JwksStats {
    /// Fetch attempts, successful or not.
    pub fetches: u64,
    /// Attempts that failed (fetch or parse); the previous keys kept serving.
    pub failures: u64,
    /// Refetches triggered by an unknown `kid`.
    pub unknown_kid_refetches: u64,
    /// Usable keys held now.
    pub keys: usize,
    /// Keys skipped in the document held now.
    pub skipped: usize,
}

#[derive(Debug, Default)]
struct State {
    keys: Option<Arc<KeySet>>,
    /// The last successful load.
    loaded_at: Option<Instant>,
    /// The last refetch triggered by an unknown kid (set before it starts).
    last_refetch: Option<Instant>,
    /// The last failed attempt and why, cleared by a success.
    last_failure: Option<(Instant, JwksError)>,
}

/// Why a fetch is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Trigger {
    /// No keys yet, or the ones held are older than the TTL.
    Load,
    /// A token names a kid the keys held do not have.
    UnknownKid,
}

/// An issuer's keys, fetched through a [`JwksFetcher`] and cached.
///
/// - Keys are used for `cache_ttl`; then the next verification loads them again. A stale key
///   that is still needed keeps serving while one task refreshes, and if that refresh fails.
/// - An unknown `kid` triggers one refetch, at most once per `refetch_min_interval`:
///   concurrent verifications wait for the same fetch (single flight), then look again.
/// - After a failed attempt, loads are not retried for `min(refetch_min_interval, 30 s)`.
/// - A failure is only reported ([`TokenError::Unavailable`]) when a token needs a key that
///   is not held and the latest attempt failed; otherwise a missing key is
///   [`TokenError::UnknownKey`].
pub struct JwksCache {
    issuer: String,
    fetcher: Arc<dyn JwksFetcher>,
    ttl: Duration,
    refetch_min_interval: Duration,
    retry_after_failure: Duration,
    state: RwLock<State>,
    refresh: tokio::sync::Mutex<()>,
    fetches: AtomicU64,
    failures: AtomicU64,
    unknown_kid_refetches: AtomicU64,
}

coffer_macros::debug_non_exhaustive!(self => JwksCache {
    issuer, fetcher, ttl, refetch_min_interval, stats: self.stats(),
});

/// The longest pause after a failed fetch before a load is tried again.
const MAX_RETRY_AFTER_FAILURE: Duration = Duration::from_secs(30);

impl JwksCache {
    /// An empty cache; the first verification loads the keys. `issuer` names it in logs and
    /// errors.
    #[must_use]
    pub fn new(
        issuer: impl Into<String>,
        fetcher: Arc<dyn JwksFetcher>,
        ttl: Duration,
        refetch_min_interval: Duration,
    ) -> Self {
        Self {
            issuer: issuer.into(),
            fetcher,
            ttl,
            refetch_min_interval,
            retry_after_failure: refetch_min_interval.min(MAX_RETRY_AFTER_FAILURE),
            state: RwLock::new(State::default()),
            refresh: tokio::sync::Mutex::new(()),
            fetches: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            unknown_kid_refetches: AtomicU64::new(0),
        }
    }

    /// The counters.
    #[must_use]
    pub fn stats(&self) -> JwksStats {
        let (keys, skipped) = self
            .state
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .keys
            .as_ref()
            .map_or((0, 0), |k| (k.len(), k.skipped()));
        JwksStats {
            fetches: self.fetches.load(Ordering::Relaxed),
            failures: self.failures.load(Ordering::Relaxed),
            unknown_kid_refetches: self.unknown_kid_refetches.load(Ordering::Relaxed),
            keys,
            skipped,
        }
    }

    /// The keys held now, if any.
    #[must_use]
    pub fn current(&self) -> Option<Arc<KeySet>> {
        self.read_state().keys.clone()
    }

    /// Loads the keys now, whatever the cache holds (at start-up, to fail early). Not rate
    /// limited: do not call it per request.
    ///
    /// # Errors
    /// [`JwksError`]; the keys held before keep serving.
    pub async fn refresh_now(&self) -> Result<Arc<KeySet>, JwksError> {
        let _flight = self.refresh.lock().await;
        self.fetch_and_store().await
    }

    fn read_state(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write_state(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// The key with this `kid`, loading or refetching as the rules above allow.
    ///
    /// # Errors
    /// [`TokenError::UnknownKey`], or [`TokenError::Unavailable`] when the key is missing and
    /// the latest fetch failed.
    pub async fn key(&self, kid: &str) -> Result<Arc<JwksKey>, TokenError> {
        let now = Instant::now();
        let (held, fresh) = self.lookup(kid, now);
        if let Some(key) = held {
            if fresh || self.in_failure_backoff(now) {
                return Ok(key);
            }
            // Stale but present: one task refreshes; the others keep using the stale key
            // rather than wait.
            let Ok(_flight) = self.refresh.try_lock() else {
                return Ok(key);
            };
            let (_, fresh) = self.lookup(kid, now);
            if !fresh {
                // A failure keeps the stale keys (logged and counted in fetch_and_store).
                let _ = self.fetch_and_store().await;
            }
            return match self.lookup(kid, Instant::now()).0 {
                Some(key) => Ok(key),
                // The refreshed set no longer has it: the issuer removed the key.
                None => Err(TokenError::UnknownKey),
            };
        }

        // Missing: one fetch at a time; whoever waited looks again before fetching.
        let _flight = self.refresh.lock().await;
        let now = Instant::now();
        let (held, fresh) = self.lookup(kid, now);
        if let Some(key) = held {
            return Ok(key);
        }
        if let Some(trigger) = self.fetch_allowed(fresh, now) {
            if trigger == Trigger::UnknownKid {
                self.write_state().last_refetch = Some(now);
                self.unknown_kid_refetches.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(issuer = %self.issuer, kid, "unknown kid: refetching the JWKS");
            }
            // On failure the outcome is read from the state below.
            let _ = self.fetch_and_store().await;
        }
        let state = self.read_state();
        if let Some(key) = state.keys.as_ref().and_then(|k| k.get(kid)) {
            return Ok(key.clone());
        }
        match &state.last_failure {
            Some((_, error)) => Err(TokenError::Unavailable(
                format!("keys of issuer {}: {error}", self.issuer).into(),
            )),
            None => Err(TokenError::UnknownKey),
        }
    }

    /// The key if held, and whether the keys held are within their TTL.
    fn lookup(&self, kid: &str, now: Instant) -> (Option<Arc<JwksKey>>, bool) {
        let state = self.read_state();
        let fresh = state
            .loaded_at
            .is_some_and(|at| now.saturating_duration_since(at) < self.ttl);
        (state.keys.as_ref().and_then(|k| k.get(kid)).cloned(), fresh)
    }

    fn in_failure_backoff(&self, now: Instant) -> bool {
        self.read_state()
            .last_failure
            .as_ref()
            .is_some_and(|(at, _)| now.saturating_duration_since(*at) < self.retry_after_failure)
    }

    /// Whether a fetch may be made for a missing kid, and why.
    fn fetch_allowed(&self, fresh: bool, now: Instant) -> Option<Trigger> {
        if self.in_failure_backoff(now) {
            return None;
        }
        if !fresh {
            return Some(Trigger::Load);
        }
        let state = self.read_state();
        let allowed = state
            .last_refetch
            .is_none_or(|at| now.saturating_duration_since(at) >= self.refetch_min_interval);
        allowed.then_some(Trigger::UnknownKid)
    }

    /// One fetch; on success the new keys replace the old, on failure the old stay.
    async fn fetch_and_store(&self) -> Result<Arc<KeySet>, JwksError> {
        self.fetches.fetch_add(1, Ordering::Relaxed);
        let result = match self.fetcher.fetch().await {
            Ok(bytes) => KeySet::parse(&bytes),
            Err(e) => Err(JwksError::Fetch(e)),
        };
        let mut state = self.write_state();
        match result {
            Ok(set) => {
                tracing::debug!(
                    issuer = %self.issuer,
                    keys = set.len(),
                    skipped = set.skipped(),
                    "JWKS loaded"
                );
                let set = Arc::new(set);
                state.keys = Some(set.clone());
                state.loaded_at = Some(Instant::now());
                state.last_failure = None;
                Ok(set)
            }
            Err(error) => {
                self.failures.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    issuer = %self.issuer,
                    %error,
                    keeping = state.keys.as_ref().map_or(0, |k| k.len()),
                    "JWKS fetch failed; keeping the keys held"
                );
                state.last_failure = Some((Instant::now(), error.clone()));
                Err(error)
            }
        }
    }
}
