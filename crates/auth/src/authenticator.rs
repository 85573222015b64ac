//! Who is calling: the [`Authenticator`] turns a bearer token into a [`Principal`], for every
//! driving adapter (the HTTP API today).
//!
//! A value with the API-key prefix (`ck_live_`) is an API key ([`crate::api_key`]): the accounts
//! service looks it up, and the principal is its owner with the owner's roles now and the key's
//! permissions as a further limit ([`Principal::allows`]); it has no session and no second
//! factor.
//!
//! A token is Coffer's own unless its issuer, read without verification, is one of the
//! configured external issuers (and not Coffer's own issuer name): then the [`ExternalIssuers`]
//! port verifies it against that issuer's keys (`coffer-auth-oidc` implements the port with
//! OIDC discovery and JWKS). The unverified `iss` only chooses the verifier; nothing is trusted
//! before the chosen verifier has checked the signature and the claims.
//!
//! An external subject becomes a Coffer user with a stable id, UUIDv5 over its issuer and
//! subject in [`EXTERNAL_SUBJECTS`]: the same person at the same issuer always owns the same
//! wallets, and the same subject at another issuer is someone else. Its claims are mapped into
//! Coffer's [`AccessClaims`] shape (roles, `amr`, `jti`, expiry); it has no session epochs,
//! since its sessions live at its issuer. Its revocations are keyed in the revocation list by
//! [`revocation_key`] and [`subject_key`], namespaced so that they never meet Coffer's own
//! token ids.

use std::collections::BTreeSet;
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::accounts::{Accounts, AuthError, RequestContext};
use crate::api_key::{self, ApiKeyGrant};
use crate::rbac::{Permission, Rbac};
use crate::token::{AccessClaims, TokenError};
use crate::user::UserId;

/// The namespace of the user ids derived for external subjects.
pub const EXTERNAL_SUBJECTS: Uuid = Uuid::from_u128(0x6f1c_3a52_8e0d_4b7a_9c21_5d4e_0f7b_2a19);

/// Who an external token speaks for. Holds no token, so it is fine to log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalPrincipal {
    /// The issuer (`iss`).
    pub issuer: String,
    /// The subject at that issuer (`sub`).
    pub subject: String,
    /// Coffer roles, mapped from the configured claim, deduplicated and sorted.
    pub roles: Vec<String>,
    /// Authentication methods (`amr`), empty when the token has none.
    pub amr: Vec<String>,
    /// Token id (`jti`).
    pub jti: Option<String>,
    /// Expiry, seconds since the epoch.
    pub expires_at: u64,
    /// The client (`client_id`, else `azp`).
    pub client_id: Option<String>,
}

impl ExternalPrincipal {
    /// The key this token has in the revocation list (see [`revocation_key`]), if it has a
    /// `jti`.
    #[must_use]
    pub fn revocation_key(&self) -> Option<String> {
        self.jti
            .as_deref()
            .map(|jti| revocation_key(&self.issuer, jti))
    }
}

/// The revocation-list key of token `jti` of `issuer`: `oidc:` and the base64url SHA-256 of
/// both (length-prefixed). Token ids are unique per issuer only, and Coffer's own are bare
/// UUIDs, so external ids are namespaced; hashing bounds the length.
#[must_use]
pub fn revocation_key(issuer: &str, jti: &str) -> String {
    format!("oidc:{}", namespaced_digest(issuer, jti))
}

/// The "user" the revocation list is asked about for `subject` of `issuer`.
#[must_use]
pub fn subject_key(issuer: &str, subject: &str) -> String {
    format!("oidc-sub:{}", namespaced_digest(issuer, subject))
}

fn namespaced_digest(issuer: &str, value: &str) -> String {
    let mut h = Sha256::new();
    h.update((issuer.len() as u64).to_be_bytes());
    h.update(issuer.as_bytes());
    h.update(value.as_bytes());
    URL_SAFE_NO_PAD.encode(h.finalize())
}

/// The port to external token issuers.
///
/// An adapter MUST verify the signature and the registered claims (issuer, audience, expiry)
/// before answering a principal, and MUST answer [`TokenError::Revoked`] for a token revoked
/// through [`ExternalIssuers::revoke`].
#[async_trait]
pub trait ExternalIssuers: Send + Sync + fmt::Debug {
    /// The configured issuer `token` claims to come from (its `iss`, read WITHOUT verifying
    /// anything), if it claims one of them.
    fn claimed_issuer(&self, token: &str) -> Option<String>;

    /// Verifies `token` against its issuer's keys.
    ///
    /// # Errors
    /// [`TokenError`] with the reason; [`TokenError::Unavailable`] when the issuer's keys
    /// cannot be fetched.
    async fn verify(&self, token: &str) -> Result<ExternalPrincipal, TokenError>;

    /// Denylists the token of `principal` until it expires.
    ///
    /// # Errors
    /// [`TokenError::Unavailable`] when the revocation list cannot be written.
    async fn revoke(&self, principal: &ExternalPrincipal) -> Result<(), TokenError>;
}

/// A verified caller.
#[derive(Debug, Clone)]
pub struct Principal {
    /// The user: Coffer's own, or for an external subject a stable id derived from its issuer
    /// and subject (UUIDv5), which owns its wallets like any user.
    pub user: UserId,
    /// The token's claims (for an external token: its roles, `amr`, `jti` and expiry mapped
    /// into Coffer's shape).
    pub claims: AccessClaims,
    /// The external identity, when the token came from a configured external issuer.
    pub external: Option<ExternalPrincipal>,
    /// The API key, when the request presented one instead of a token: the principal may do
    /// only what both the key and its user's roles allow.
    pub api_key: Option<ApiKeyGrant>,
}

impl Principal {
    /// Whether the principal may do `permission`: its roles grant it and, for an API key, the
    /// key names it. Every use case asks this.
    #[must_use]
    pub fn allows(&self, rbac: &Rbac, permission: Permission) -> bool {
        rbac.allows(&self.claims.roles, permission)
            && self
                .api_key
                .as_ref()
                .is_none_or(|key| key.permissions.contains(&permission))
    }

    /// Everything the principal may do (see [`Principal::allows`]).
    #[must_use]
    pub fn permissions(&self, rbac: &Rbac) -> BTreeSet<Permission> {
        let mut granted = rbac.permissions(&self.claims.roles);
        if let Some(key) = &self.api_key {
            granted.retain(|p| key.permissions.contains(p));
        }
        granted
    }
}

/// Turns bearer tokens into principals: Coffer's own tokens through [`Accounts`], external
/// ones through the [`ExternalIssuers`] port.
#[derive(Debug, Clone)]
pub struct Authenticator {
    accounts: Arc<Accounts>,
    external: Option<Arc<dyn ExternalIssuers>>,
}

impl Authenticator {
    /// Coffer's own tokens, and those of `external` issuers when configured.
    #[must_use]
    pub fn new(accounts: Arc<Accounts>, external: Option<Arc<dyn ExternalIssuers>>) -> Self {
        Self { accounts, external }
    }

    /// Verifies `token` (signature, claims, revocation).
    ///
    /// # Errors
    /// [`AuthError::Token`] with the reason; [`AuthError::Unavailable`] when a dependency
    /// cannot be asked.
    pub async fn authenticate(&self, token: &str) -> Result<Principal, AuthError> {
        let own = &self.accounts.tokens().config();
        if token.starts_with(api_key::PREFIX) {
            let key = self.accounts.verify_api_key(token).await?;
            let id = format!("api_key:{}", key.grant.id);
            let claims = AccessClaims {
                iss: own.issuer.clone(),
                sub: key.user.to_string(),
                aud: own.audience.clone(),
                exp: key.grant.expires_at,
                iat: key.created_at,
                jti: id.clone(),
                client_id: id,
                roles: key.roles,
                amr: Vec::new(),
                uep: 0,
                gep: 0,
                sid: None,
            };
            return Ok(Principal {
                user: key.user,
                claims,
                external: None,
                api_key: Some(key.grant),
            });
        }
        if let Some(external) = &self.external
            && let Some(issuer) = external.claimed_issuer(token)
            && issuer != own.issuer
        {
            let principal = external.verify(token).await?;
            let user = UserId::from_uuid(Uuid::new_v5(
                &EXTERNAL_SUBJECTS,
                format!("{}\u{0}{}", principal.issuer, principal.subject).as_bytes(),
            ));
            let claims = AccessClaims {
                iss: principal.issuer.clone(),
                sub: user.to_string(),
                aud: own.audience.clone(),
                exp: principal.expires_at,
                iat: 0,
                jti: principal.jti.clone().unwrap_or_default(),
                client_id: principal.client_id.clone().unwrap_or_default(),
                roles: principal.roles.clone(),
                amr: principal.amr.clone(),
                uep: 0,
                gep: 0,
                sid: None,
            };
            return Ok(Principal {
                user,
                claims,
                external: Some(principal),
                api_key: None,
            });
        }
        let verified = self.accounts.verify(token).await?;
        let user = UserId::parse(&verified.claims.sub).map_err(|_| TokenError::Malformed)?;
        Ok(Principal {
            user,
            claims: verified.claims,
            external: None,
            api_key: None,
        })
    }

    /// Ends the session of `principal`'s token: an external token is denylisted under its
    /// issuer's key until it expires; Coffer's own ends its refresh family too.
    ///
    /// # Errors
    /// [`AuthError::ApiKeyCredential`] for an API key (it has no session: an administrator
    /// revokes it); [`AuthError::Token`] or [`AuthError::Unavailable`] when the revocation cannot
    /// be written.
    pub async fn logout(
        &self,
        principal: &Principal,
        ctx: &RequestContext,
    ) -> Result<(), AuthError> {
        if principal.api_key.is_some() {
            return Err(AuthError::ApiKeyCredential);
        }
        match (&principal.external, &self.external) {
            (Some(external), Some(issuers)) => Ok(issuers.revoke(external).await?),
            _ => self.accounts.logout(&principal.claims, ctx).await,
        }
    }
}
