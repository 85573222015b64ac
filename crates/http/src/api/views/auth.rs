//! The `auth` tag's bodies: a registration's answer, the caller (`/v1/me`) and a TOTP
//! enrollment. Tokens are in the parent module (shared with the refresh).

use coffer_auth::accounts::{Profile, TotpEnrollment as Enrollment};
use coffer_auth::{ExternalPrincipal, Principal};
use serde::Serialize;

/// A registration's answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct UserCreated {
    /// The new user's id.
    user_id: String,
}

impl From<coffer_auth::user::UserId> for UserCreated {
    fn from(id: coffer_auth::user::UserId) -> Self {
        Self {
            user_id: id.to_string(),
        }
    }
}

/// The caller.
///
/// Two shapes share it: a Coffer user has `email` and `mfa_enabled`; the caller of an external
/// issuer's token has `issuer` and `subject` instead (its email and factors live at the issuer).
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = MeDoc, description = "The caller.")]
pub struct Me {
    /// The user id (for an external caller, derived from its issuer and subject).
    user_id: String,
    /// A Coffer user's email (absent for an external caller).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = String)]
    email: Option<String>,
    /// The external issuer (`iss`), for an external caller only.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = String)]
    issuer: Option<String>,
    /// The subject at that issuer (`sub`), for an external caller only.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = String)]
    subject: Option<String>,
    roles: Vec<String>,
    permissions: Vec<&'static str>,
    /// Whether a Coffer user's second factor is on (absent for an external caller).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = bool)]
    mfa_enabled: Option<bool>,
    /// The API key the request presented, when it presented one (`permissions` are then what
    /// both the key and the roles allow).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = String)]
    api_key_id: Option<String>,
}

coffer_macros::debug_non_exhaustive!(self => Me { user_id, roles });

impl Me {
    /// A Coffer user, with their profile.
    #[must_use]
    pub fn user(profile: &Profile, roles: &[String], permissions: Vec<&'static str>) -> Self {
        Self {
            user_id: profile.id.to_string(),
            email: Some(profile.email.expose().to_owned()),
            issuer: None,
            subject: None,
            roles: roles.to_vec(),
            permissions,
            mfa_enabled: Some(profile.mfa_enabled),
            api_key_id: None,
        }
    }

    /// The same caller, authenticated with the API key `id`.
    #[must_use]
    pub fn with_api_key(mut self, id: Option<String>) -> Self {
        self.api_key_id = id;
        self
    }

    /// The caller of an external issuer's token.
    #[must_use]
    pub fn external(
        principal: &Principal,
        external: &ExternalPrincipal,
        permissions: Vec<&'static str>,
    ) -> Self {
        Self {
            user_id: principal.user.to_string(),
            email: None,
            issuer: Some(external.issuer.clone()),
            subject: Some(external.subject.clone()),
            roles: principal.claims.roles.clone(),
            permissions,
            mfa_enabled: None,
            api_key_id: None,
        }
    }
}

/// A TOTP enrollment, shown once.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = TotpEnrollmentDoc)]
pub struct TotpEnrollment {
    /// Base32, for typing into an authenticator app.
    secret: String,
    /// `otpauth://` URI, for a QR code.
    otpauth_uri: String,
}

impl std::fmt::Debug for TotpEnrollment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TotpEnrollment([REDACTED])")
    }
}

impl From<&Enrollment> for TotpEnrollment {
    fn from(e: &Enrollment) -> Self {
        Self {
            secret: e.secret.as_str().to_owned(),
            otpauth_uri: e.otpauth_uri.as_str().to_owned(),
        }
    }
}
