//! The master key provider's settings: `[keys]` ([`KeysConfig`]: which provider, the key's id,
//! the key file, the caches), `[vault]` ([`VaultSettings`], for `vault-kv` and
//! `vault-transit`: address, `auth` token | userpass | approle, mounts, namespace, CA file,
//! timeout, KV refresh, `create_key`) and `[aws_kms]` ([`AwsKmsSettings`], for `aws-kms`:
//! region, `endpoint_url`, fixed keys or the AWS default chain, timeout).
//!
//! `keys.provider` is a [`KeyProviderKind`], parsed from its spelling (one of [`KEY_PROVIDERS`]):
//! an unknown spelling is refused while the configuration is read, the error naming
//! `keys.provider` (or its variable) and the accepted values. `keys.key_id` names the key file's id, the KV
//! secret, the Transit key or the KMS key (id, ARN or alias). `[vault]` and `[aws_kms]` are
//! checked only when `keys.provider` chooses them. Their credentials (the Vault token,
//! password and secret id, the AWS secret key) are [`SecretSetting`]s, best given in the
//! environment (`COFFER_VAULT__TOKEN`, `COFFER_VAULT__PASSWORD`, `COFFER_VAULT__SECRET_ID`,
//! `COFFER_AWS_KMS__SECRET_ACCESS_KEY`) and shown as `***`.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::{ConfigError, SecretSetting, error};

/// The master key provider `keys.provider` names, spelled `local`, `vault-kv`,
/// `vault-transit` or `aws-kms` in the file, the environment and `Display`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum KeyProviderKind {
    /// A key file, or `COFFER_MASTER_KEY`.
    #[default]
    Local,
    /// Vault or OpenBao KV v2 ([vault]).
    VaultKv,
    /// Vault or OpenBao Transit ([vault]).
    VaultTransit,
    /// AWS KMS ([aws_kms]).
    AwsKms,
}

impl KeyProviderKind {
    /// Every provider, in the order the documentation lists them.
    pub const ALL: [Self; 4] = [Self::Local, Self::VaultKv, Self::VaultTransit, Self::AwsKms];

    /// The spelling of the configuration (and of the logs).
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Local => "local",
            Self::VaultKv => "vault-kv",
            Self::VaultTransit => "vault-transit",
            Self::AwsKms => "aws-kms",
        }
    }

    /// Vault or OpenBao (`[vault]` is checked and used).
    #[must_use]
    pub const fn is_vault(self) -> bool {
        matches!(self, Self::VaultKv | Self::VaultTransit)
    }
}

impl fmt::Display for KeyProviderKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for KeyProviderKind {
    type Err = ConfigError;

    fn from_str(s: &str) -> Result<Self, ConfigError> {
        Self::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| {
                error(
                    "keys.provider",
                    format!("{s:?} is not a key provider"),
                    "use local, vault-kv, vault-transit or aws-kms",
                )
            })
    }
}

/// The master key provider.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct KeysConfig {
    /// `local` (a key file, or `COFFER_MASTER_KEY`), `vault-kv`, `vault-transit` ([vault]) or
    /// `aws-kms` ([aws_kms]).
    pub provider: KeyProviderKind,
    /// The key file.
    pub key_file: PathBuf,
    /// Create the key file on first start when it is absent.
    pub create_key_file: bool,
    /// The master key's id: the key file's id, the KV secret's name, the Transit key's name, or
    /// the KMS key id, ARN or alias.
    pub key_id: String,
    /// Unwrapped data keys kept in memory.
    pub cache_entries: usize,
    /// How long an unwrapped data key is kept, seconds.
    pub cache_ttl_secs: u64,
    /// How long the secrets manager keeps a secret's value, seconds.
    pub secrets_cache_ttl_secs: u64,
}

impl Default for KeysConfig {
    fn default() -> Self {
        Self {
            provider: KeyProviderKind::Local,
            key_file: PathBuf::from("data/master.json"),
            create_key_file: true,
            key_id: "coffer-master".to_owned(),
            cache_entries: 10_000,
            cache_ttl_secs: 300,
            secrets_cache_ttl_secs: 300,
        }
    }
}

/// How Coffer logs in to Vault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum VaultAuthMethod {
    /// `vault.token`.
    Token,
    /// `vault.username` and `vault.password`.
    Userpass,
    /// `vault.role_id` and `vault.secret_id`.
    Approle,
}

/// Vault or OpenBao (`[vault]`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct VaultSettings {
    /// `http(s)://host:port`.
    pub address: String,
    /// `token`, `userpass` or `approle`.
    pub auth: VaultAuthMethod,
    /// The auth method's mount; empty: `userpass` or `approle`.
    pub auth_mount: String,
    /// For `auth = "token"` (`COFFER_VAULT__TOKEN`).
    pub token: Option<SecretSetting>,
    /// For `auth = "userpass"`.
    pub username: Option<String>,
    /// For `auth = "userpass"` (`COFFER_VAULT__PASSWORD`).
    pub password: Option<SecretSetting>,
    /// For `auth = "approle"`.
    pub role_id: Option<String>,
    /// For `auth = "approle"` (`COFFER_VAULT__SECRET_ID`).
    pub secret_id: Option<SecretSetting>,
    /// Vault Enterprise / OpenBao namespace.
    pub namespace: Option<String>,
    /// CA certificates (PEM) for an https address.
    pub ca_file: Option<PathBuf>,
    /// Each request's timeout, milliseconds.
    pub timeout_ms: u64,
    /// The Transit mount (`vault-transit`).
    pub transit_mount: String,
    /// The KV v2 mount (`vault-kv`).
    pub kv_mount: String,
    /// The folder of master keys in the KV mount.
    pub kv_prefix: String,
    /// How often `vault-kv` re-reads the master key versions, seconds.
    pub kv_refresh_secs: u64,
    /// Create the Transit key or KV secret when missing (development; production runs
    /// `cargo xtask vault-setup`).
    pub create_key: bool,
}

impl Default for VaultSettings {
    fn default() -> Self {
        Self {
            address: "http://127.0.0.1:8200".into(),
            auth: VaultAuthMethod::Token,
            auth_mount: String::new(),
            token: None,
            username: None,
            password: None,
            role_id: None,
            secret_id: None,
            namespace: None,
            ca_file: None,
            timeout_ms: 5_000,
            transit_mount: "transit".into(),
            kv_mount: "kv".into(),
            kv_prefix: "crypto/master_keys".into(),
            kv_refresh_secs: 30,
            create_key: false,
        }
    }
}

/// AWS KMS (`[aws_kms]`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AwsKmsSettings {
    /// The region.
    pub region: String,
    /// Another endpoint (moto, LocalStack, a VPC endpoint).
    pub endpoint_url: Option<String>,
    /// With `secret_access_key`: fixed credentials. Neither: the AWS default chain
    /// (environment, profile, web identity, ECS, instance metadata).
    pub access_key_id: Option<String>,
    /// `COFFER_AWS_KMS__SECRET_ACCESS_KEY`.
    pub secret_access_key: Option<SecretSetting>,
    /// Each call's whole time, milliseconds.
    pub timeout_ms: u64,
}

impl Default for AwsKmsSettings {
    fn default() -> Self {
        Self {
            region: "us-east-1".into(),
            endpoint_url: None,
            access_key_id: None,
            secret_access_key: None,
            timeout_ms: 5_000,
        }
    }
}

/// The spellings `keys.provider` accepts, those of [`KeyProviderKind::ALL`].
pub const KEY_PROVIDERS: &[&str] = &[
    KeyProviderKind::Local.as_str(),
    KeyProviderKind::VaultKv.as_str(),
    KeyProviderKind::VaultTransit.as_str(),
    KeyProviderKind::AwsKms.as_str(),
];

impl KeysConfig {
    /// The key manager the provider chooses (`vault`, `aws_kms`), then the cache (the provider
    /// itself was checked when it was parsed).
    pub(super) fn validate(
        &self,
        vault: &VaultSettings,
        aws_kms: &AwsKmsSettings,
    ) -> Result<(), ConfigError> {
        if self.provider.is_vault() {
            vault.validate()?;
        }
        if self.provider == KeyProviderKind::AwsKms {
            aws_kms.validate()?;
        }
        if self.cache_entries == 0 {
            return Err(error(
                "keys.cache_entries",
                "0",
                "use 1 or more (10000 is the default)",
            ));
        }
        Ok(())
    }
}

impl VaultSettings {
    /// An http(s) address, the chosen auth method's credentials, the timings.
    fn validate(&self) -> Result<(), ConfigError> {
        let v = self;
        if !(v.address.starts_with("http://") || v.address.starts_with("https://")) {
            return Err(error(
                "vault.address",
                format!("{:?} is not an http(s) URL", v.address),
                "use https://vault.example:8200",
            ));
        }
        let missing = |setting: &str, fix: &str| error(setting, "missing", fix);
        match v.auth {
            VaultAuthMethod::Token if v.token.is_none() => {
                return Err(missing(
                    "vault.token",
                    "set COFFER_VAULT__TOKEN, or use auth = \"userpass\" or \"approle\"",
                ));
            }
            VaultAuthMethod::Userpass if v.username.is_none() || v.password.is_none() => {
                return Err(missing(
                    "vault.username",
                    "set vault.username and COFFER_VAULT__PASSWORD",
                ));
            }
            VaultAuthMethod::Approle if v.role_id.is_none() || v.secret_id.is_none() => {
                return Err(missing(
                    "vault.role_id",
                    "set vault.role_id and COFFER_VAULT__SECRET_ID",
                ));
            }
            _ => {}
        }
        if v.timeout_ms == 0 {
            return Err(error("vault.timeout_ms", "0", "use 5000"));
        }
        if v.kv_refresh_secs == 0 {
            return Err(error("vault.kv_refresh_secs", "0", "use 30"));
        }
        Ok(())
    }
}

impl AwsKmsSettings {
    /// A region, both fixed credentials or neither, a timeout.
    fn validate(&self) -> Result<(), ConfigError> {
        let kms = self;
        if kms.region.is_empty() {
            return Err(error("aws_kms.region", "empty", "set the key's region"));
        }
        if kms.access_key_id.is_some() != kms.secret_access_key.is_some() {
            return Err(error(
                "aws_kms.access_key_id",
                "an access key id without a secret key, or the other way round",
                "set both (COFFER_AWS_KMS__SECRET_ACCESS_KEY for the secret), or neither for the AWS default chain",
            ));
        }
        if kms.timeout_ms == 0 {
            return Err(error("aws_kms.timeout_ms", "0", "use 5000"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    #[test]
    fn a_key_manager_without_its_credentials_is_refused_by_name() {
        // An unknown provider is refused while parsing, naming the setting and the fix.
        let e = Config::from_toml("[keys]\nprovider = \"hsm\"\n").unwrap_err();
        let shown = e.to_string();
        assert!(shown.contains("keys.provider"), "{shown}");
        assert!(
            shown.contains("local, vault-kv, vault-transit or aws-kms"),
            "{shown}"
        );
        assert_eq!(
            "hsm".parse::<KeyProviderKind>().unwrap_err().setting,
            "keys.provider"
        );
        let mut c = Config::default();
        c.keys.provider = KeyProviderKind::VaultKv;
        assert_eq!(c.validate().unwrap_err().setting, "vault.token");
        c.vault.auth = VaultAuthMethod::Userpass;
        c.vault.username = Some("coffer-api".into());
        assert_eq!(c.validate().unwrap_err().setting, "vault.username");
        c.vault.password = Some("pw".into());
        c.validate().unwrap();
        c.vault.address = "vault:8200".into();
        assert_eq!(c.validate().unwrap_err().setting, "vault.address");
        let mut k = Config::default();
        k.keys.provider = KeyProviderKind::AwsKms;
        k.validate().unwrap(); // the AWS default chain
        k.aws_kms.access_key_id = Some("AKIAEXAMPLE".into());
        assert_eq!(k.validate().unwrap_err().setting, "aws_kms.access_key_id");
    }

    #[test]
    fn key_providers_keep_their_spelling_both_ways() {
        for (p, spelled) in KeyProviderKind::ALL.into_iter().zip(KEY_PROVIDERS) {
            assert_eq!(p.to_string(), *spelled);
            assert_eq!(spelled.parse::<KeyProviderKind>().unwrap(), p);
            let c = Config::from_toml(&format!("[keys]\nprovider = \"{spelled}\"\n")).unwrap();
            assert_eq!(c.keys.provider, p);
            let tree = toml::Table::try_from(&c.keys).unwrap();
            assert_eq!(tree["provider"].as_str(), Some(*spelled));
        }
        assert_eq!(KeyProviderKind::default(), KeyProviderKind::Local);
    }
}
