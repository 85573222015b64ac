//! Coffer's authentication and authorisation.
//!
//! - [`accounts`]: the accounts service (registration, login with TOTP, refresh rotation,
//!   logout, revocation, roles, profile, signing keys) on the [`store`] port.
//! - [`token`]: RS256 access tokens (RFC 9068 shape), issued and verified against a key ring
//!   that rotates without breaking tokens in flight, with the JWKS document.
//! - [`revocation`]: the revocation-list port (token denylist, per-user and global epochs) and
//!   its in-memory adapter; [`revocation_cache`]: answers remembered while an invalidation feed
//!   reports every revocation.
//! - [`authenticator`]: a bearer token to a [`Principal`], Coffer's own or an external
//!   issuer's through the [`ExternalIssuers`] port.
//! - [`api_key`]: API keys, a service account's long-lived credential with a subset of its
//!   permissions.
//! - [`rbac`]: roles to permissions, configurable, with Coffer's default user and admin roles.
//! - [`mfa`]: TOTP and the step-up rule for money-out.
//! - [`email`], [`user`]: personal data newtypes; [`password`]: the policy and Argon2id off the
//!   runtime; [`refresh`]: refresh tokens and the rotation and reuse decision.
//! - `testkit` (feature): the contract suites of the revocation and user-store ports.
//!
//! Adapters: the SQL user store and revocation list in `coffer-store`, the Redis revocation
//! list in `coffer-auth-redis`, external OIDC issuers in `coffer-auth-oidc`.

pub mod accounts;
pub mod api_key;
pub mod authenticator;
pub mod email;
pub mod guesses;
pub mod mfa;
pub mod opaque;
pub mod password;
pub mod rbac;
pub mod refresh;
pub mod reset;
pub mod revocation;
pub mod revocation_cache;
pub mod store;
#[cfg(feature = "testkit")]
pub mod testkit;
pub mod token;
pub mod user;

pub use authenticator::{Authenticator, ExternalIssuers, ExternalPrincipal, Principal};
pub use mfa::MfaRule;
pub use rbac::{Permission, Rbac, RbacError};
pub use revocation::{InMemoryRevocationList, RevocationError, RevocationList, RevocationStatus};
pub use revocation_cache::CachedRevocationList;
pub use token::{
    AccessClaims, Grant, SigningKey, TokenConfig, TokenError, TokenKeys, Tokens, VerifiedToken,
};
