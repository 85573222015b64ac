//! Verifying external access tokens: one [`OidcVerifier`] per issuer, [`OidcIssuers`] to pick
//! one by `iss`.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use coffer_auth::authenticator::subject_key;
pub use coffer_auth::authenticator::{ExternalPrincipal, revocation_key};
use coffer_auth::revocation::unix_secs;
use coffer_auth::{ExternalIssuers, RevocationList, TokenError};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{AlgorithmFamily, Validation};
use serde::Deserialize;
use serde_json::Value;

use crate::config::{IssuerConfig, IssuerConfigError, JwksSource};
use crate::fetch::{FileJwksFetcher, HttpFetcherConfig, HttpJwksFetcher, JwksFetcher};
use crate::jwks::{JwksCache, accepted_algorithm};

/// Tokens longer than this are refused before any parsing.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// `typ` header values accepted (case-insensitive); any other `typ` (a logout token, a DPoP
/// proof) is [`TokenError::WrongType`]. No `typ` at all is accepted.
const ACCEPTED_TYPES: &[&str] = &["JWT", "at+jwt", "application/at+jwt"];

/// A part of a token (0: header, 1: claims) as JSON, read without verifying anything.
fn raw_part(token: &str, index: usize) -> Option<Value> {
    let part = token.split('.').nth(index)?;
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).ok()?).ok()
}

/// The `iss` of a token, read WITHOUT verifying anything: only to choose between Coffer's own
/// verifier and the external issuers, never to trust.
#[must_use]
pub fn unverified_issuer(token: &str) -> Option<String> {
    if token.len() > MAX_TOKEN_BYTES {
        return None;
    }
    raw_part(token, 1)?.get("iss")?.as_str().map(str::to_owned)
}

/// The `iss` of an unverified token, or why there is none.
fn claimed_issuer(token: &str) -> Result<String, TokenError> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(TokenError::Malformed);
    }
    let claims = raw_part(token, 1).ok_or(TokenError::Malformed)?;
    match claims.as_object().ok_or(TokenError::Malformed)?.get("iss") {
        None => Err(TokenError::MissingClaim("iss".into())),
        Some(Value::String(iss)) => Ok(iss.clone()),
        Some(_) => Err(TokenError::Malformed),
    }
}

/// The claims read after the signature and the registered claims were checked.
#[derive(Deserialize)]
struct Claims {
    sub: String,
    exp: u64,
    iat: Option<u64>,
    jti: Option<String>,
    client_id: Option<String>,
    azp: Option<String>,
    amr: Option<Vec<String>>,
}

/// Verifies the access tokens of one external issuer.
#[derive(Debug)]
pub struct OidcVerifier {
    config: IssuerConfig,
    jwks: JwksCache,
    revocation: Arc<dyn RevocationList>,
    /// Everything but the algorithm, which is pinned per key.
    validation: Validation,
}

impl OidcVerifier {
    /// A verifier fetching keys from the configured source (HTTPS with
    /// [`HttpFetcherConfig::default`], or the file).
    ///
    /// # Errors
    /// [`IssuerConfigError`] for an invalid configuration.
    pub fn new(
        config: IssuerConfig,
        revocation: Arc<dyn RevocationList>,
    ) -> Result<Self, IssuerConfigError> {
        config.validate()?;
        let fetcher: Arc<dyn JwksFetcher> = match &config.jwks {
            JwksSource::Url(url) => Arc::new(HttpJwksFetcher::new(
                &config.issuer,
                url,
                HttpFetcherConfig::default(),
            )?),
            JwksSource::File(path) => Arc::new(FileJwksFetcher::new(path.clone())),
        };
        Self::with_fetcher(config, fetcher, revocation)
    }

    /// A verifier with the caller's fetcher (`config.jwks` is then only checked, not used).
    ///
    /// # Errors
    /// [`IssuerConfigError`] for an invalid configuration.
    pub fn with_fetcher(
        config: IssuerConfig,
        fetcher: Arc<dyn JwksFetcher>,
        revocation: Arc<dyn RevocationList>,
    ) -> Result<Self, IssuerConfigError> {
        config.validate()?;
        let mut validation = Validation::new(jsonwebtoken::Algorithm::RS256);
        validation.leeway = config.leeway.as_secs();
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.validate_aud = true;
        validation.set_issuer(&[&config.issuer]);
        validation.set_audience(&[&config.audience]);
        // Setting iss and aud does not make them required: name every claim that is. (iat is
        // not one the library checks; it is checked below.)
        validation.required_spec_claims = ["exp", "iss", "aud", "sub"]
            .into_iter()
            .map(str::to_owned)
            .collect::<HashSet<_>>();
        Ok(Self {
            jwks: JwksCache::new(
                config.issuer.clone(),
                fetcher,
                config.cache_ttl,
                config.refetch_min_interval,
            ),
            config,
            revocation,
            validation,
        })
    }

    /// The issuer.
    #[must_use]
    pub fn issuer(&self) -> &str {
        &self.config.issuer
    }

    /// The configuration.
    #[must_use]
    pub fn config(&self) -> &IssuerConfig {
        &self.config
    }

    /// The key cache (counters, an eager load at start-up).
    #[must_use]
    pub fn jwks(&self) -> &JwksCache {
        &self.jwks
    }

    /// Verifies a token of this issuer (see the crate documentation for the checks and their
    /// order).
    ///
    /// # Errors
    /// [`TokenError`], with the first reason found.
    pub async fn verify(&self, token: &str) -> Result<ExternalPrincipal, TokenError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(TokenError::Malformed);
        }
        let header = jsonwebtoken::decode_header(token).map_err(|_| {
            // A header naming an algorithm the library does not know (`none` among them) is an
            // algorithm refusal, not mere garbage.
            let alg = raw_part(token, 0).and_then(|h| h.get("alg").cloned());
            match alg {
                Some(Value::String(alg)) if accepted_algorithm(&alg).is_none() => {
                    TokenError::UnsupportedAlgorithm
                }
                _ => TokenError::Malformed,
            }
        })?;
        if header.alg.family() == AlgorithmFamily::Hmac {
            return Err(TokenError::UnsupportedAlgorithm);
        }
        // No extension is understood (RFC 7515 §4.1.11), and an encrypted token is not a JWS.
        if header.crit.is_some() || header.enc.is_some() || header.zip.is_some() {
            return Err(TokenError::Malformed);
        }
        if header
            .typ
            .as_deref()
            .is_some_and(|t| !ACCEPTED_TYPES.iter().any(|a| a.eq_ignore_ascii_case(t)))
        {
            return Err(TokenError::WrongType);
        }
        let kid = header.kid.ok_or(TokenError::UnknownKey)?;
        // Tokens of other issuers never make this one's keys be fetched.
        if claimed_issuer(token)? != self.config.issuer {
            return Err(TokenError::WrongIssuer);
        }
        let key = self.jwks.key(&kid).await?;
        // The key's algorithm, and only it: a header naming another is refused.
        if header.alg != key.algorithm() {
            return Err(TokenError::UnsupportedAlgorithm);
        }
        let mut validation = self.validation.clone();
        validation.algorithms = vec![key.algorithm()];
        let data = jsonwebtoken::decode::<Value>(token, key.decoding_key(), &validation)
            .map_err(|e| self.refusal(token, &kid, e.kind()))?;
        let claims = Claims::deserialize(&data.claims).map_err(|_| TokenError::Malformed)?;
        let now = unix_secs(SystemTime::now());
        let iat = claims
            .iat
            .ok_or_else(|| TokenError::MissingClaim("iat".into()))?;
        if iat > now.saturating_add(self.config.leeway.as_secs()) {
            return Err(TokenError::IssuedInFuture);
        }
        if claims.sub.is_empty() {
            return Err(TokenError::Malformed);
        }
        match claims.jti.as_deref() {
            Some("") => return Err(TokenError::Malformed),
            Some(jti) => {
                let status = self
                    .revocation
                    .status(
                        &revocation_key(&self.config.issuer, jti),
                        &subject_key(&self.config.issuer, &claims.sub),
                    )
                    .await?;
                if status.token_revoked {
                    return Err(TokenError::Revoked);
                }
            }
            // Nothing to look up: such a token lives until it expires.
            None if !self.config.require_jti => {}
            None => return Err(TokenError::MissingClaim("jti".into())),
        }
        Ok(ExternalPrincipal {
            issuer: self.config.issuer.clone(),
            roles: self.roles(&data.claims),
            subject: claims.sub,
            amr: claims.amr.unwrap_or_default(),
            jti: claims.jti,
            expires_at: claims.exp,
            client_id: claims.client_id.or(claims.azp),
        })
    }

    /// Maps the library's refusal to a reason.
    fn refusal(&self, token: &str, kid: &str, kind: &ErrorKind) -> TokenError {
        match kind {
            // nbf in the future: not valid yet, the closest reason there is.
            ErrorKind::ImmatureSignature => TokenError::IssuedInFuture,
            // The issuer published key material the crypto library refuses: nothing verifies
            // with it.
            ErrorKind::InvalidEcdsaKey
            | ErrorKind::InvalidEddsaKey
            | ErrorKind::InvalidRsaKey(_)
            | ErrorKind::InvalidKeyFormat => {
                tracing::warn!(issuer = %self.config.issuer, kid, "JWKS key refused by the crypto library");
                TokenError::BadSignature
            }
            _ => coffer_auth::token::refusal_of(token, kind),
        }
    }

    /// The Coffer roles of verified claims: the values of the configured claim, mapped.
    fn roles(&self, claims: &Value) -> Vec<String> {
        let path = &self.config.roles_claim;
        let found = claims.get(path.as_str()).or_else(|| {
            path.split('.')
                .try_fold(claims, |value, segment| value.get(segment))
        });
        let values: Vec<&str> = match found {
            Some(Value::String(s)) => s.split_whitespace().collect(),
            Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        values
            .into_iter()
            .filter_map(|v| self.config.role_map.get(v))
            .flatten()
            .cloned()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect()
    }

    /// Revokes this token until it would have expired, with a margin of twice the leeway.
    ///
    /// # Errors
    /// [`TokenError::WrongIssuer`] for another issuer's principal;
    /// [`TokenError::MissingClaim`] for a token without `jti`;
    /// [`TokenError::Unavailable`] when the list cannot be written.
    pub async fn revoke(&self, principal: &ExternalPrincipal) -> Result<(), TokenError> {
        if principal.issuer != self.config.issuer {
            return Err(TokenError::WrongIssuer);
        }
        let key = principal
            .revocation_key()
            .ok_or_else(|| TokenError::MissingClaim("jti".into()))?;
        let margin = 2 * self.config.leeway.as_secs() + 1;
        let until = SystemTime::UNIX_EPOCH
            + Duration::from_secs(principal.expires_at.saturating_add(margin));
        self.revocation.revoke_token(&key, until).await?;
        Ok(())
    }
}

/// Several external issuers, chosen by the token's `iss`.
#[derive(Debug, Default)]
pub struct OidcIssuers {
    by_issuer: HashMap<String, OidcVerifier>,
}

impl OidcIssuers {
    /// The issuers from their verifiers.
    ///
    /// # Errors
    /// [`IssuerConfigError::DuplicateIssuer`].
    pub fn new(
        verifiers: impl IntoIterator<Item = OidcVerifier>,
    ) -> Result<Self, IssuerConfigError> {
        let mut by_issuer = HashMap::new();
        for v in verifiers {
            let issuer = v.issuer().to_owned();
            if by_issuer.insert(issuer.clone(), v).is_some() {
                return Err(IssuerConfigError::DuplicateIssuer(issuer));
            }
        }
        Ok(Self { by_issuer })
    }

    /// The issuers from configuration, each with its configured key source.
    ///
    /// # Errors
    /// [`IssuerConfigError`] for the first invalid configuration.
    pub fn from_configs(
        configs: impl IntoIterator<Item = IssuerConfig>,
        revocation: &Arc<dyn RevocationList>,
    ) -> Result<Self, IssuerConfigError> {
        let verifiers = configs
            .into_iter()
            .map(|c| OidcVerifier::new(c, revocation.clone()))
            .collect::<Result<Vec<_>, _>>()?;
        Self::new(verifiers)
    }

    /// The verifier of `issuer`.
    #[must_use]
    pub fn get(&self, issuer: &str) -> Option<&OidcVerifier> {
        self.by_issuer.get(issuer)
    }

    /// Whether `issuer` is configured.
    #[must_use]
    pub fn contains(&self, issuer: &str) -> bool {
        self.by_issuer.contains_key(issuer)
    }

    /// Issuers configured.
    #[must_use]
    pub fn len(&self) -> usize {
        self.by_issuer.len()
    }

    /// Whether none is.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.by_issuer.is_empty()
    }

    /// The configured issuers, sorted.
    #[must_use]
    pub fn issuers(&self) -> Vec<&str> {
        let mut issuers: Vec<&str> = self.by_issuer.keys().map(String::as_str).collect();
        issuers.sort_unstable();
        issuers
    }

    /// Verifies a token with the verifier of its `iss` (read unverified only to choose it).
    ///
    /// # Errors
    /// [`TokenError::WrongIssuer`] for an issuer not configured; [`TokenError::Malformed`] or
    /// [`TokenError::MissingClaim`] when there is no `iss` to read; else as
    /// [`OidcVerifier::verify`].
    pub async fn verify(&self, token: &str) -> Result<ExternalPrincipal, TokenError> {
        let issuer = claimed_issuer(token)?;
        self.by_issuer
            .get(&issuer)
            .ok_or(TokenError::WrongIssuer)?
            .verify(token)
            .await
    }

    /// Revokes a principal's token with its issuer's verifier.
    ///
    /// # Errors
    /// As [`OidcVerifier::revoke`].
    pub async fn revoke(&self, principal: &ExternalPrincipal) -> Result<(), TokenError> {
        self.by_issuer
            .get(&principal.issuer)
            .ok_or(TokenError::WrongIssuer)?
            .revoke(principal)
            .await
    }
}

/// The port the [`Authenticator`](coffer_auth::Authenticator) verifies external tokens through.
#[async_trait]
impl ExternalIssuers for OidcIssuers {
    fn claimed_issuer(&self, token: &str) -> Option<String> {
        unverified_issuer(token).filter(|issuer| self.contains(issuer))
    }

    async fn verify(&self, token: &str) -> Result<ExternalPrincipal, TokenError> {
        OidcIssuers::verify(self, token).await
    }

    async fn revoke(&self, principal: &ExternalPrincipal) -> Result<(), TokenError> {
        OidcIssuers::revoke(self, principal).await
    }
}
