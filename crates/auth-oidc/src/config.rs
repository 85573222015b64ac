//! The configuration of one external issuer, as it comes from the application's configuration,
//! and its validation.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use coffer_auth::Rbac;
use reqwest::Url;
use serde::{Deserialize, Deserializer};

/// The largest clock skew accepted as `leeway`.
pub const MAX_LEEWAY: Duration = Duration::from_secs(300);
/// The longest `cache_ttl` accepted.
pub const MAX_CACHE_TTL: Duration = Duration::from_secs(24 * 3600);

/// Where an issuer's JWKS comes from.
///
/// In configuration: `jwks = { url = "https://idp.example/jwks" }` or
/// `jwks = { file = "/etc/coffer/idp-jwks.json" }`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum JwksSource {
    /// Fetched over HTTPS (plain HTTP only for localhost, 127.0.0.1 and ::1).
    Url(String),
    /// Read from a file (an issuer without a reachable JWKS endpoint, or pinned keys).
    File(PathBuf),
}

/// One external OIDC issuer whose access tokens are accepted next to Coffer's own.
///
/// Durations are seconds (`30`) or a number with a unit (`"500ms"`, `"30s"`, `"5m"`, `"1h"`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssuerConfig {
    /// The issuer identifier, compared exactly with the token's `iss`.
    pub issuer: String,
    /// The audience Coffer is known by at this issuer; the token's `aud` (a string or an
    /// array) must contain it.
    pub audience: String,
    /// Where the signing keys come from.
    pub jwks: JwksSource,
    /// The claim holding roles or scopes, as a dotted path (`realm_access.roles`, an array of
    /// strings; `scope`, a space-separated string). A top-level claim whose name is the whole
    /// path (`https://coffer.example/roles`) is looked up first.
    pub roles_claim: String,
    /// External role or scope → Coffer role names. Values not in the map are dropped; the
    /// caller turns Coffer roles into permissions with [`coffer_auth::Rbac`].
    #[serde(default)]
    pub role_map: BTreeMap<String, Vec<String>>,
    /// Clock skew tolerated on exp, nbf and iat (default 30 s, at most [`MAX_LEEWAY`]).
    #[serde(default = "default_leeway", deserialize_with = "duration")]
    pub leeway: Duration,
    /// An unknown `kid` triggers at most one JWKS refetch per this interval (default 5 min).
    #[serde(
        default = "default_refetch_min_interval",
        deserialize_with = "duration"
    )]
    pub refetch_min_interval: Duration,
    /// How long a fetched JWKS is used before it is fetched again (default 1 h, at most
    /// [`MAX_CACHE_TTL`], at least `refetch_min_interval`).
    #[serde(default = "default_cache_ttl", deserialize_with = "duration")]
    pub cache_ttl: Duration,
    /// Refuse tokens without a `jti` (default true). A token without one cannot be revoked
    /// before it expires.
    #[serde(default = "default_require_jti")]
    pub require_jti: bool,
}

fn default_leeway() -> Duration {
    Duration::from_secs(30)
}

fn default_refetch_min_interval() -> Duration {
    Duration::from_secs(300)
}

fn default_cache_ttl() -> Duration {
    Duration::from_secs(3600)
}

fn default_require_jti() -> bool {
    true
}

/// Why an issuer's configuration was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IssuerConfigError {
    /// `issuer` is empty.
    #[error("an OIDC issuer needs a non-empty `issuer`")]
    EmptyIssuer,
    /// `audience` is empty.
    #[error("OIDC issuer {issuer}: `audience` must not be empty")]
    EmptyAudience {
        /// The issuer.
        issuer: String,
    },
    /// The JWKS URL does not parse, is not http(s), or carries credentials. The URL itself is
    /// not repeated (it might hold a secret).
    #[error("OIDC issuer {issuer}: the JWKS URL is invalid: {reason}")]
    InvalidJwksUrl {
        /// The issuer.
        issuer: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A plain-HTTP JWKS URL whose host is not localhost, 127.0.0.1 or ::1.
    #[error(
        "OIDC issuer {issuer}: the JWKS URL {url} must use https (plain http is allowed for localhost, 127.0.0.1 and ::1 only)"
    )]
    InsecureJwksUrl {
        /// The issuer.
        issuer: String,
        /// The URL.
        url: String,
    },
    /// `roles_claim` is empty or has an empty path segment.
    #[error("OIDC issuer {issuer}: `roles_claim` {path:?} is not a dotted claim path")]
    InvalidRolesClaim {
        /// The issuer.
        issuer: String,
        /// The path.
        path: String,
    },
    /// A `role_map` entry with an empty key, no Coffer role, or an empty Coffer role name.
    #[error(
        "OIDC issuer {issuer}: `role_map` entry {external:?} needs non-empty Coffer role names"
    )]
    InvalidRoleMapping {
        /// The issuer.
        issuer: String,
        /// The external value.
        external: String,
    },
    /// A `role_map` entry naming a role the RBAC configuration does not know.
    #[error("OIDC issuer {issuer}: `role_map` maps to {role:?}, which is not a Coffer role")]
    UnknownRole {
        /// The issuer.
        issuer: String,
        /// The role.
        role: String,
    },
    /// A duration out of its range.
    #[error("OIDC issuer {issuer}: `{field}` {reason}")]
    OutOfRange {
        /// The issuer.
        issuer: String,
        /// The setting.
        field: &'static str,
        /// The rule it breaks.
        reason: &'static str,
    },
    /// Two configurations for one issuer.
    #[error("OIDC issuer {0} is configured twice")]
    DuplicateIssuer(String),
    /// The HTTP client could not be built.
    #[error("OIDC issuer {issuer}: the HTTP client could not be built: {reason}")]
    HttpClient {
        /// The issuer.
        issuer: String,
        /// The client's error.
        reason: String,
    },
}

impl IssuerConfig {
    /// A configuration with the default durations, `require_jti` and an empty role map.
    #[must_use]
    pub fn new(
        issuer: impl Into<String>,
        audience: impl Into<String>,
        jwks: JwksSource,
        roles_claim: impl Into<String>,
    ) -> Self {
        Self {
            issuer: issuer.into(),
            audience: audience.into(),
            jwks,
            roles_claim: roles_claim.into(),
            role_map: BTreeMap::new(),
            leeway: default_leeway(),
            refetch_min_interval: default_refetch_min_interval(),
            cache_ttl: default_cache_ttl(),
            require_jti: default_require_jti(),
        }
    }

    /// Checks the configuration (the verifier's constructor calls it).
    ///
    /// # Errors
    /// The first [`IssuerConfigError`] found.
    pub fn validate(&self) -> Result<(), IssuerConfigError> {
        if self.issuer.trim().is_empty() {
            return Err(IssuerConfigError::EmptyIssuer);
        }
        let issuer = || self.issuer.clone();
        if self.audience.trim().is_empty() {
            return Err(IssuerConfigError::EmptyAudience { issuer: issuer() });
        }
        if let JwksSource::Url(url) = &self.jwks {
            check_jwks_url(&self.issuer, url)?;
        }
        if self.roles_claim.is_empty() || self.roles_claim.split('.').any(str::is_empty) {
            return Err(IssuerConfigError::InvalidRolesClaim {
                issuer: issuer(),
                path: self.roles_claim.clone(),
            });
        }
        for (external, roles) in &self.role_map {
            if external.is_empty() || roles.is_empty() || roles.iter().any(|r| r.trim().is_empty())
            {
                return Err(IssuerConfigError::InvalidRoleMapping {
                    issuer: issuer(),
                    external: external.clone(),
                });
            }
        }
        let range = |field, reason| IssuerConfigError::OutOfRange {
            issuer: issuer(),
            field,
            reason,
        };
        if self.leeway > MAX_LEEWAY {
            return Err(range("leeway", "must be at most 5 minutes"));
        }
        if self.refetch_min_interval.is_zero() {
            return Err(range("refetch_min_interval", "must not be zero"));
        }
        if self.cache_ttl.is_zero() || self.cache_ttl > MAX_CACHE_TTL {
            return Err(range("cache_ttl", "must be between zero and one day"));
        }
        if self.cache_ttl < self.refetch_min_interval {
            return Err(range(
                "cache_ttl",
                "must be at least `refetch_min_interval`",
            ));
        }
        Ok(())
    }

    /// Checks that every Coffer role in `role_map` is one `rbac` knows (a typo would otherwise
    /// silently grant nothing).
    ///
    /// # Errors
    /// [`IssuerConfigError::UnknownRole`] for the first unknown role.
    pub fn check_roles(&self, rbac: &Rbac) -> Result<(), IssuerConfigError> {
        match self.role_map.values().flatten().find(|r| !rbac.knows(r)) {
            Some(role) => Err(IssuerConfigError::UnknownRole {
                issuer: self.issuer.clone(),
                role: role.clone(),
            }),
            None => Ok(()),
        }
    }
}

/// Parses a JWKS URL and checks it is https, or http on a loopback host.
pub(crate) fn check_jwks_url(issuer: &str, url: &str) -> Result<Url, IssuerConfigError> {
    let invalid = |reason| IssuerConfigError::InvalidJwksUrl {
        issuer: issuer.to_owned(),
        reason,
    };
    let parsed = Url::parse(url).map_err(|_| invalid("not a URL"))?;
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(invalid("it carries credentials"));
    }
    check_url_scheme(&parsed).map_err(|e| match e {
        UrlRefusal::Scheme => invalid("only https (or http on localhost) is supported"),
        UrlRefusal::Insecure => IssuerConfigError::InsecureJwksUrl {
            issuer: issuer.to_owned(),
            url: url.to_owned(),
        },
    })?;
    Ok(parsed)
}

#[derive(Debug, Clone, Copy)]
pub(crate) enum UrlRefusal {
    Scheme,
    Insecure,
}

/// https anywhere; http only on localhost, 127.0.0.1 and ::1 (also applied to redirects).
pub(crate) fn check_url_scheme(url: &Url) -> Result<(), UrlRefusal> {
    match url.scheme() {
        "https" if url.host().is_some() => Ok(()),
        // The URL parser writes hosts in canonical form: lower-case names, dotted-quad IPv4
        // (`0x7f.1` is `127.0.0.1`), compressed IPv6 in brackets.
        "http" => match url.host_str() {
            Some("localhost" | "127.0.0.1" | "[::1]") => Ok(()),
            _ => Err(UrlRefusal::Insecure),
        },
        _ => Err(UrlRefusal::Scheme),
    }
}

/// A duration in configuration: seconds, or a number with `ms`, `s`, `m` or `h`.
fn duration<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Secs(u64),
        Text(String),
    }
    match Raw::deserialize(deserializer)? {
        Raw::Secs(s) => Ok(Duration::from_secs(s)),
        Raw::Text(t) => parse_duration(&t).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "invalid duration {t:?}: expected seconds or a number with ms, s, m or h"
            ))
        }),
    }
}

fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    let digits = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(digits);
    let n: u64 = number.parse().ok()?;
    match unit.trim() {
        "" | "s" => Some(Duration::from_secs(n)),
        "ms" => Some(Duration::from_millis(n)),
        "m" => n.checked_mul(60).map(Duration::from_secs),
        "h" => n.checked_mul(3600).map(Duration::from_secs),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("30"), Some(Duration::from_secs(30)));
        assert_eq!(parse_duration("30s"), Some(Duration::from_secs(30)));
        assert_eq!(parse_duration("5m"), Some(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        for bad in ["", "s", "5 days", "-1s", "1.5s"] {
            assert_eq!(parse_duration(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn url_rules() {
        let ok = [
            "https://idp.example/jwks",
            "http://localhost:8080/jwks",
            "http://LOCALHOST/jwks",
            "http://127.0.0.1:9/jwks",
            "http://0x7f.0.0.1/jwks",
            "http://[::1]:9/jwks",
        ];
        for url in ok {
            assert!(check_jwks_url("i", url).is_ok(), "{url}");
        }
        let insecure = [
            "http://idp.example/jwks",
            "http://127.0.0.2/jwks",
            "http://10.0.0.1/jwks",
            "http://localhost.evil.example/jwks",
        ];
        for url in insecure {
            assert!(
                matches!(
                    check_jwks_url("i", url),
                    Err(IssuerConfigError::InsecureJwksUrl { .. })
                ),
                "{url}"
            );
        }
        for url in ["ftp://idp.example/jwks", "not a url", "file:///etc/jwks"] {
            assert!(
                matches!(
                    check_jwks_url("i", url),
                    Err(IssuerConfigError::InvalidJwksUrl { .. })
                ),
                "{url}"
            );
        }
        let with_password = check_jwks_url("i", "https://u:secret@idp.example/jwks");
        assert!(matches!(
            with_password,
            Err(IssuerConfigError::InvalidJwksUrl { .. })
        ));
        assert!(!format!("{:?}", with_password).contains("secret"));
    }
}
