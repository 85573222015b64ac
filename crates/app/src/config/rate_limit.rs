//! Rate limiting (`[rate_limit]`): on or off, in-process or shared through Redis (and what to
//! do when Redis is down), the proxies whose `X-Forwarded-For` is believed, and overrides of
//! the default policies by name ([`POLICY_NAMES`]; each a [`PolicySetting`]). The Redis URL may
//! hold a password: `Debug` shows it masked.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::{ConfigError, error, mask_url};

/// Rate limiting (the policies are the defaults of `coffer_ratelimit::policy::Policies`).
#[derive(Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitConfig {
    /// On unless turned off (load tests, or a gateway that limits instead).
    pub enabled: bool,
    /// Shared across replicas through Redis when set; in-process otherwise.
    pub redis_url: Option<String>,
    /// For a `rediss://` `redis_url`: the authority (a PEM file) Redis's certificate must chain
    /// to; unset, the system's roots.
    pub redis_ca_file: Option<std::path::PathBuf>,
    /// For a `rediss://` `redis_url` to a Redis that asks clients for a certificate: this
    /// client's certificate (a PEM file), with `redis_client_key_file`.
    pub redis_client_cert_file: Option<std::path::PathBuf>,
    /// The private key of `redis_client_cert_file` (a PEM file).
    pub redis_client_key_file: Option<std::path::PathBuf>,
    /// With Redis down: keep limiting in-process (`true`), or answer 503 (`false`).
    pub fail_open: bool,
    /// Proxies whose `X-Forwarded-For` is believed (CIDRs).
    pub trusted_proxies: Vec<String>,
    /// Networks allowed on the operators' routes, `/v1/admin/…` and `/metrics` (CIDRs); empty:
    /// every network.
    pub admin_allowlist: Vec<String>,
    /// Overrides of the default policies, by name: `per_ip`, `per_user`, `per_api_key`,
    /// `login`, `register`, `refresh`, `money_out`, `open_wallet`, `write`, `read`, `admin`.
    pub policies: std::collections::BTreeMap<String, PolicySetting>,
}

/// One rate-limit policy: `limit` requests per `period_secs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PolicySetting {
    /// Requests allowed per period.
    pub limit: u32,
    /// The period, seconds.
    pub period_secs: u64,
}

/// The names of the rate-limit policies.
pub const POLICY_NAMES: [&str; 11] = [
    "per_ip",
    "per_user",
    "per_api_key",
    "login",
    "register",
    "refresh",
    "money_out",
    "open_wallet",
    "write",
    "read",
    "admin",
];

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            redis_url: None,
            redis_ca_file: None,
            redis_client_cert_file: None,
            redis_client_key_file: None,
            fail_open: true,
            trusted_proxies: Vec::new(),
            admin_allowlist: Vec::new(),
            policies: std::collections::BTreeMap::new(),
        }
    }
}

impl fmt::Debug for RateLimitConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimitConfig")
            .field("enabled", &self.enabled)
            .field("redis_url", &self.redis_url.as_deref().map(mask_url))
            .field("redis_ca_file", &self.redis_ca_file)
            .field("redis_client_cert_file", &self.redis_client_cert_file)
            .field("redis_client_key_file", &self.redis_client_key_file)
            .field("fail_open", &self.fail_open)
            .field("trusted_proxies", &self.trusted_proxies)
            .field("admin_allowlist", &self.admin_allowlist)
            .field("policies", &self.policies)
            .finish()
    }
}

impl RateLimitConfig {
    /// Each policy override names a policy and gives a positive limit and period; each trusted
    /// proxy is a CIDR.
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        super::transport::RedisTlsFiles {
            section: "rate_limit",
            url: self.redis_url.as_deref(),
            ca: self.redis_ca_file.as_deref(),
            cert: self.redis_client_cert_file.as_deref(),
            key: self.redis_client_key_file.as_deref(),
        }
        .check()?;
        for (name, p) in &self.policies {
            if !POLICY_NAMES.contains(&name.as_str()) {
                return Err(error(
                    "rate_limit.policies",
                    format!("no policy {name:?}"),
                    "use per_ip, per_user, per_api_key, login, register, refresh, money_out, open_wallet, write, read or admin",
                ));
            }
            if p.limit == 0 || p.period_secs == 0 {
                return Err(error(
                    &format!("rate_limit.policies.{name}"),
                    "a zero limit or period",
                    "give both a positive value (turn rate limiting off with rate_limit.enabled)",
                ));
            }
        }
        for (setting, list) in [
            ("rate_limit.trusted_proxies", &self.trusted_proxies),
            ("rate_limit.admin_allowlist", &self.admin_allowlist),
        ] {
            if let Some(cidr) = list
                .iter()
                .find(|c| coffer_http::client_ip::parse_cidrs(c).is_err())
            {
                return Err(error(
                    setting,
                    format!("{cidr:?} is not a CIDR"),
                    "use entries such as 10.0.0.0/8 or 192.0.2.7/32",
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    #[test]
    fn rate_limit_policies_can_be_overridden_by_name() {
        let policies =
            Config::from_toml("[rate_limit.policies.money_out]\nlimit = 600\nperiod_secs = 60\n")
                .unwrap();
        policies.validate().unwrap();
        assert_eq!(policies.rate_limit.policies["money_out"].limit, 600);
        let unknown =
            Config::from_toml("[rate_limit.policies.transfers]\nlimit = 1\nperiod_secs = 60\n")
                .unwrap();
        assert_eq!(
            unknown.validate().unwrap_err().setting,
            "rate_limit.policies"
        );
        let zero = Config::from_toml("[rate_limit.policies.login]\nlimit = 0\nperiod_secs = 60\n")
            .unwrap();
        assert_eq!(
            zero.validate().unwrap_err().setting,
            "rate_limit.policies.login"
        );
    }

    #[test]
    fn the_admin_allowlist_takes_cidrs() {
        let listed = Config::from_toml(
            "[rate_limit]\nadmin_allowlist = [\"10.0.0.0/8\", \"2001:db8::/32\"]\n",
        )
        .unwrap();
        listed.validate().unwrap();
        let bad = Config::from_toml("[rate_limit]\nadmin_allowlist = [\"office\"]\n").unwrap();
        assert_eq!(
            bad.validate().unwrap_err().setting,
            "rate_limit.admin_allowlist"
        );
    }
}
