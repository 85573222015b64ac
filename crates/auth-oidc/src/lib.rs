//! Access tokens from configured external OpenID Connect issuers, accepted next to Coffer's
//! own (`coffer_auth::Tokens`).
//!
//! # Shape
//!
//! - [`IssuerConfig`] (serde, from the application's configuration): the exact `iss`, the
//!   audience, where the JWKS comes from ([`JwksSource`]: an https URL, plain http only on
//!   localhost, or a file), which claim holds roles or scopes and how they map to Coffer roles,
//!   and the timings. [`IssuerConfig::validate`] (run by the constructors) refuses a bad one
//!   with a [`IssuerConfigError`]; [`IssuerConfig::check_roles`] checks the mapped roles against the
//!   RBAC configuration.
//! - [`JwksFetcher`], the port that fetches a JWKS document, with [`HttpJwksFetcher`]
//!   (reqwest on rustls: connect and total timeouts, a size limit, non-2xx is an error,
//!   redirects only to https) and [`FileJwksFetcher`].
//! - [`JwksCache`]: the parsed keys of one issuer, cached for `cache_ttl`.
//! - [`OidcVerifier`], one per issuer, and [`OidcIssuers`], which picks one by the token's
//!   `iss`. A verified token is an [`ExternalPrincipal`]; a refusal is a
//!   [`coffer_auth::TokenError`] with the same stable reason codes as Coffer's own tokens.
//!
//! The caller tells the two kinds of token apart by their issuer ([`unverified_issuer`]):
//! Coffer's own issuer goes to `coffer_auth::Tokens::verify`, a configured external one to
//! [`OidcIssuers::verify`]. Roles come back as Coffer role names; permissions are the caller's
//! business (`coffer_auth::Rbac`).
//!
//! # Keys
//!
//! A JWKS is parsed key by key, and a key that cannot serve is skipped (counted, logged at
//! debug level), never fatal: a `kty` other than RSA, EC and OKP; a symmetric key (`oct`) or
//! algorithm (HS*); an `alg` that is not one of RS256/384/512, PS256/384/512, ES256, ES384 and
//! EdDSA, or does not fit the key type and curve; `use` other than `sig`; `key_ops` without
//! `verify`; no `kid`, or a repeated one; an RSA modulus under 2048 or over 8192 bits; EC or Ed25519
//! coordinates of the wrong length. A key without `alg` takes its curve's algorithm (ES256,
//! ES384, EdDSA), and an RSA key without one is RS256, the OpenID Connect default. A document
//! with no usable key at all is an error, and the keys held before keep serving.
//!
//! The cache loads on first use and again once `cache_ttl` has passed. A token naming a `kid`
//! the cache does not hold triggers one refetch (rotation at the issuer), at most once per
//! `refetch_min_interval`, so a stream of forged kids costs the issuer one request per
//! interval; concurrent verifications needing that refetch share it (single flight: a Tokio
//! mutex around the refresh, and a second look once it is held). When a fetch fails the
//! previous keys keep serving (stale beats down), loads pause for
//! `min(refetch_min_interval, 30 s)`, and the failure surfaces as `TokenError::Unavailable`
//! only for a token whose key is missing. [`JwksCache::stats`] counts fetches and failures.
//!
//! # Verification, in order
//!
//! 1. At most [`MAX_TOKEN_BYTES`]; a JWS header: `alg: none`, an algorithm the library does not
//!    know and any HMAC are `unsupported_algorithm`; `crit`, `enc` or `zip` is `malformed`; a
//!    `typ` other than `JWT` or `at+jwt` is `wrong_type`; no `kid` is `unknown_key`.
//! 2. The unverified `iss` must be this issuer (so other issuers' tokens never fetch keys).
//! 3. The key by `kid`, fetched as above. The algorithm is pinned to that key's: a header
//!    naming another is `unsupported_algorithm`. `jku`, `x5u` and embedded `jwk` headers are
//!    never used.
//! 4. jsonwebtoken checks the signature, exp, nbf, iss and aud (a string or an array holding
//!    the audience) with the leeway; exp, iss, aud and sub are required through
//!    `required_spec_claims`, since setting iss and aud does not make the library require
//!    them. A claim of the wrong type (exp as a string) is `malformed`. An nbf in the future is
//!    reported as `issued_in_future`.
//! 5. iat is required and may not be in the future beyond the leeway.
//! 6. The `jti` (required unless `require_jti = false`) is looked up in the revocation list
//!    under [`revocation_key`] (the issuer and the id hashed together: ids are unique per
//!    issuer only): revoked is `revoked`; a list that cannot answer is `unavailable` (fail
//!    closed). A token without `jti` cannot be revoked before it expires.
//! 7. Roles: the configured claim (a dotted path; an array of strings, or a space-separated
//!    string such as `scope`) mapped through `role_map`; unmapped values are dropped.
//!
//! No I/O happens in verification besides the key fetch and the revocation list.

mod config;
mod fetch;
mod jwks;
mod verify;

pub use config::{IssuerConfig, IssuerConfigError, JwksSource, MAX_CACHE_TTL, MAX_LEEWAY};
pub use fetch::{
    DEFAULT_MAX_JWKS_BYTES, FetchError, FileJwksFetcher, HttpFetcherConfig, HttpJwksFetcher,
    JwksFetcher,
};
pub use jwks::{
    ACCEPTED_ALGORITHMS, JwksCache, JwksError, JwksKey, JwksStats, KeySet, accepted_algorithm,
};
pub use verify::{
    ExternalPrincipal, MAX_TOKEN_BYTES, OidcIssuers, OidcVerifier, revocation_key,
    unverified_issuer,
};
