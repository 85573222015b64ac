//! Coffer's authentication and authorisation.
//!
//! - [`token`]: RS256 access tokens (RFC 9068 shape), issued and verified against a key ring
//!   that rotates without breaking tokens in flight, with the JWKS document.
//! - [`revocation`]: the revocation-list port (token denylist, per-user and global epochs) and
//!   its in-memory adapter; [`testkit`] holds its contract suite.
//! - [`rbac`]: roles to permissions, configurable, with the defaults of DESIGN.md §3.
//! - [`email`]: normalised addresses and their blind index.
//! - [`password`]: the password policy and Argon2id hashing off the runtime.
//! - [`refresh`]: refresh tokens (opaque, stored hashed) and the rotation and reuse decision.
//!
//! The Redis revocation adapter is `coffer-auth-redis`. Status (issue "Authentication and
//! RBAC"): the user service, the stores (users, refresh families, signing keys sealed under the
//! KEK), OIDC issuers and TOTP are not written yet.

pub mod accounts;
pub mod email;
pub mod mfa;
pub mod password;
pub mod rbac;
pub mod refresh;
pub mod revocation;
pub mod store;
#[cfg(feature = "testkit")]
pub mod testkit;
pub mod token;
pub mod user;

pub use rbac::{Permission, Rbac, RbacError};
pub use revocation::{InMemoryRevocationList, RevocationError, RevocationList, RevocationStatus};
pub use token::{
    AccessClaims, Grant, KeyRing, SigningKey, TokenConfig, TokenError, Tokens, VerifiedToken,
};
