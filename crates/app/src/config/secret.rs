//! Keeping secrets out of sight. The key managers' credentials (the Vault token, password and
//! secret id, the AWS secret key: [`SECRET_KEYS`]) are [`SecretSetting`]s: `***` in `Debug`
//! and when serialised (nothing serialises one to read it back: the layers start from the
//! defaults, which hold none), zeroized on drop, and taken verbatim from the environment
//! (never parsed as TOML, so a numeric password stays a string and quotes stay). Passwords in URLs (`database.url`, the
//! Redis URLs) are masked by [`mask_url`], in the userinfo or in a `password=` query pair;
//! the sections holding them mask them in `Debug`. [`Config::masked_toml`] is the effective
//! configuration that `config check` prints, with both kinds masked.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::Config;

/// A secret setting (a token, a password): redacted in `Debug` and when serialised, zeroized on
/// drop.
#[derive(Clone, Deserialize)]
#[serde(transparent)]
pub struct SecretSetting(secrecy::SecretString);

impl SecretSetting {
    /// The value, for the one place that hands it on.
    #[must_use]
    pub fn expose(&self) -> &str {
        secrecy::ExposeSecret::expose_secret(&self.0)
    }

    /// The value as the secret type the adapters take.
    #[must_use]
    pub fn secret(&self) -> secrecy::SecretString {
        self.0.clone()
    }
}

impl From<&str> for SecretSetting {
    fn from(s: &str) -> Self {
        Self(secrecy::SecretString::from(s))
    }
}

impl fmt::Debug for SecretSetting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Serialised as `***`, never as its value: the configuration is serialised to be shown
/// ([`Config::masked_toml`]) and, defaults only, as the first layer.
impl Serialize for SecretSetting {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("***")
    }
}

/// The settings holding secrets: taken verbatim from the environment, masked when shown.
pub(super) const SECRET_KEYS: &[&str] = &["token", "password", "secret_id", "secret_access_key"];

/// A URL with its password replaced by `***`, in the userinfo (up to the last `@` before the
/// query, so a password holding `@` or `/` is masked whole) and in a `password=` query pair.
#[must_use]
pub fn mask_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let query_at = rest.find(['?', '#']).unwrap_or(rest.len());
    let (before_query, query) = rest.split_at(query_at);
    let authority = match before_query.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{user}:***@{host}"),
            None => format!("{userinfo}@{host}"),
        },
        None => before_query.to_owned(),
    };
    let mut masked_query = String::with_capacity(query.len());
    let mut rest = query;
    while let Some(sep) = rest.chars().next() {
        let body = &rest[sep.len_utf8()..];
        let end = body.find(['&', '#']).unwrap_or(body.len());
        let (pair, after) = body.split_at(end);
        masked_query.push(sep);
        match pair.split_once('=') {
            Some((k, _)) if k.eq_ignore_ascii_case("password") => {
                masked_query.push_str(k);
                masked_query.push_str("=***");
            }
            _ => masked_query.push_str(pair),
        }
        rest = after;
    }
    format!("{scheme}://{authority}{masked_query}")
}

impl Config {
    /// The effective configuration as TOML, with every secret masked (for `config check`).
    #[must_use]
    pub fn masked_toml(&self) -> String {
        let mut shown = self.clone();
        shown.database.url = mask_url(&shown.database.url);
        shown.auth.redis_url = shown.auth.redis_url.as_deref().map(mask_url);
        shown.rate_limit.redis_url = shown.rate_limit.redis_url.as_deref().map(mask_url);
        // The secrets serialise as `***` (see `SecretSetting`'s `Serialize`).
        let mut out = toml::to_string_pretty(&shown).unwrap_or_default();
        if std::env::var_os("COFFER_MASTER_KEY").is_some() {
            out.push_str("\n# COFFER_MASTER_KEY is set (***): it replaces keys.key_file\n");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    #[test]
    fn key_manager_secrets_come_from_the_environment_and_never_show() {
        let vars: std::collections::BTreeMap<String, String> = [
            ("COFFER_KEYS__PROVIDER", "vault-transit"),
            ("COFFER_VAULT__ADDRESS", "https://vault.internal:8200"),
            ("COFFER_VAULT__TOKEN", "hvs.s3cret-token"),
            ("COFFER_VAULT__PASSWORD", "123456"),
            ("COFFER_VAULT__SECRET_ID", "'quoted'"),
            ("COFFER_VAULT__USERNAME", "0123"),
            ("COFFER_AWS_KMS__ACCESS_KEY_ID", "AKIAEXAMPLE"),
            ("COFFER_AWS_KMS__SECRET_ACCESS_KEY", "aws-s3cret-key"),
            // Another generic setting after the secrets: the round trip keeps them.
            ("COFFER_LEDGER__MAX_AMOUNT_MINOR", "1000"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let c = Config::from_sources(None, &vars).unwrap();
        c.validate().unwrap();
        assert_eq!(
            c.keys.provider,
            crate::config::KeyProviderKind::VaultTransit
        );
        assert_eq!(c.vault.token.as_ref().unwrap().expose(), "hvs.s3cret-token");
        // Taken verbatim: a number stays a string, quotes stay.
        assert_eq!(c.vault.password.as_ref().unwrap().expose(), "123456");
        assert_eq!(c.vault.secret_id.as_ref().unwrap().expose(), "'quoted'");
        assert_eq!(
            c.aws_kms.secret_access_key.as_ref().unwrap().expose(),
            "aws-s3cret-key"
        );
        let shown = c.masked_toml();
        assert!(
            !shown.contains("s3cret") && !shown.contains("123456"),
            "{shown}"
        );
        assert!(shown.contains("token = \"***\""), "{shown}");
        assert!(!format!("{c:?}").contains("s3cret"));
        // Not a secret: parsed as TOML, so 0123 (not a TOML number) stays a string.
        assert_eq!(c.vault.username.as_deref(), Some("0123"));
        // Serialised, a secret is `***` whatever the serialiser.
        let tree = toml::to_string(&c).unwrap();
        assert!(
            !tree.contains("s3cret") && !tree.contains("123456"),
            "{tree}"
        );
    }

    #[test]
    fn secrets_are_taken_as_written_and_a_files_survive_the_environment() {
        for written in ["0123", "true", "[x", "'x'", "1e3", "\"q\""] {
            let vars = [("COFFER_VAULT__PASSWORD".to_owned(), written.to_owned())].into();
            let c = Config::from_sources(None, &vars).unwrap();
            assert_eq!(c.vault.password.as_ref().unwrap().expose(), written);
        }
        // A secret from the file stays when other settings come from the environment.
        let vars = [(
            "COFFER_LEDGER__MAX_AMOUNT_MINOR".to_owned(),
            "1000".to_owned(),
        )]
        .into();
        let c = Config::from_sources(
            Some("[aws_kms]\naccess_key_id = \"AKIA\"\nsecret_access_key = \"file-s3cret\"\n"),
            &vars,
        )
        .unwrap();
        assert_eq!(
            c.aws_kms.secret_access_key.as_ref().unwrap().expose(),
            "file-s3cret"
        );
        assert_eq!(c.ledger.max_amount_minor, 1000);
        // A secret of the wrong type in the file is refused without quoting it.
        let e = Config::from_toml("[vault]\npassword = 987654\n").unwrap_err();
        assert_eq!(e.setting, "vault.password");
        assert!(!e.to_string().contains("987654"), "{e}");
    }
}
