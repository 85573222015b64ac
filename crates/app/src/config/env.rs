//! The environment layer, [`Config::apply_env`], read over the defaults and the file. Every
//! setting has a `COFFER_<SECTION>__<KEY>` form: the configuration is turned into a TOML tree,
//! each such variable's value is parsed as TOML (a bare word is taken as a string, a secret
//! verbatim, see [`SECRET_KEYS`]) and put in its place, and the tree is read back, so values
//! are checked against their types as the file's are. A variable naming no setting is refused;
//! optional settings, absent from the tree while unset, are listed so they can be given.
//!
//! The named variables of the [module documentation](super) come after, and win over the
//! generic ones. `data_dir` (from the file or `COFFER_DATA_DIR`) then moves the embedded
//! database and key file, wherever `database.url` and `keys.key_file` still have their
//! defaults, before `COFFER_DATABASE_URL` and `COFFER_KEY_FILE` are applied;
//! `COFFER_REDIS_URL` sends both the revocation list and the rate limiter to Redis.

use std::path::PathBuf;

use super::secret::SECRET_KEYS;
use super::{Config, ConfigError, LogFormat, RevocationBackend, error};

impl Config {
    /// Applies environment overrides: the named variables of the module documentation, then
    /// `COFFER_<SECTION>__<KEY>` for every other setting (`COFFER_AUTH__ACCESS_TTL_SECS=900`,
    /// `COFFER_RATE_LIMIT__ENABLED=false`; values in TOML syntax, bare words as strings).
    ///
    /// # Errors
    /// [`ConfigError`] naming the variable.
    pub fn apply_env(
        &mut self,
        vars: &std::collections::BTreeMap<String, String>,
    ) -> Result<(), ConfigError> {
        let get = |k: &str| vars.get(k).cloned();
        // Generic settings first, so the named variables below win over them.
        let mut tree = toml::Table::try_from(&*self)
            .map_err(|e| error("configuration", e.to_string(), "report this as a bug"))?;
        let mut generic = false;
        for (name, value) in vars {
            let Some((section, key)) = name
                .strip_prefix("COFFER_")
                .and_then(|rest| rest.split_once("__"))
            else {
                continue;
            };
            let (section, key) = (section.to_lowercase(), key.to_lowercase());
            let unknown = || {
                error(
                    name,
                    format!("no setting {section}.{key}"),
                    "see the configuration sections in README",
                )
            };
            let table = tree
                .get_mut(&section)
                .and_then(toml::Value::as_table_mut)
                .ok_or_else(unknown)?;
            let optional = [
                "redis_url",
                "mfa_above_major_units",
                "tls_cert_file",
                "tls_key_file",
                "token",
                "username",
                "password",
                "role_id",
                "secret_id",
                "namespace",
                "ca_file",
                "endpoint_url",
                "access_key_id",
                "secret_access_key",
                "metrics_listen",
            ];
            if !table.contains_key(&key) && !optional.contains(&key.as_str()) {
                return Err(unknown());
            }
            // Secrets are taken as they are: parsed as TOML, `123456` would be a number whose
            // type error quotes it, and `'x'` would quietly lose its quotes.
            let parsed = if SECRET_KEYS.contains(&key.as_str()) {
                toml::Value::String(value.clone())
            } else {
                toml::from_str::<toml::Table>(&format!("v = {value}"))
                    .ok()
                    .and_then(|mut t| t.remove("v"))
                    .unwrap_or_else(|| toml::Value::String(value.clone()))
            };
            table.insert(key, parsed);
            generic = true;
        }
        if generic {
            *self = tree.try_into().map_err(|e: toml::de::Error| {
                error(
                    "COFFER_<SECTION>__<KEY>",
                    e.message().to_owned(),
                    "give each setting a value of its type",
                )
            })?;
        }
        if let Some(v) = get("COFFER_LISTEN") {
            self.server.listen = v.parse().map_err(|_| {
                error(
                    "COFFER_LISTEN",
                    format!("{v:?} is not an address"),
                    "use host:port, e.g. 0.0.0.0:8080",
                )
            })?;
        }
        if let Some(v) = get("COFFER_DATA_DIR") {
            self.data_dir = PathBuf::from(v);
        }
        // The data directory holds the embedded database and key file unless they are set.
        let defaults = Self::default();
        if self.database.url == defaults.database.url {
            self.database.url = format!("sqlite://{}", self.data_dir.join("coffer.db").display());
        }
        if self.keys.key_file == defaults.keys.key_file {
            self.keys.key_file = self.data_dir.join("master.json");
        }
        if let Some(v) = get("COFFER_DATABASE_URL") {
            self.database.url = v;
        }
        if let Some(v) = get("COFFER_KEY_FILE") {
            self.keys.key_file = PathBuf::from(v);
        }
        // Redis, when given, shares revocations and rate limits across replicas.
        if let Some(v) = get("COFFER_REDIS_URL") {
            self.auth.redis_url = Some(v.clone());
            self.auth.revocation = RevocationBackend::Redis;
            self.rate_limit.redis_url = Some(v);
        }
        if let Some(v) = get("COFFER_REVOCATION") {
            self.auth.revocation = match v.as_str() {
                "database" => RevocationBackend::Database,
                "memory" => RevocationBackend::Memory,
                "redis" => RevocationBackend::Redis,
                _ => {
                    return Err(error(
                        "COFFER_REVOCATION",
                        format!("{v:?} is not a revocation backend"),
                        "use database, memory or redis",
                    ));
                }
            };
        }
        if let Some(v) = get("COFFER_LOG_FORMAT") {
            self.log.format = match v.as_str() {
                "pretty" => LogFormat::Pretty,
                "json" => LogFormat::Json,
                _ => {
                    return Err(error(
                        "COFFER_LOG_FORMAT",
                        format!("{v:?} is not a log format"),
                        "use pretty or json",
                    ));
                }
            };
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use crate::config::{AuthConfig, Config, DatabaseConfig, RevocationBackend, mask_url};

    #[test]
    fn file_then_environment_and_errors_name_the_setting() {
        let mut c = Config::from_toml(
            "[server]\nlisten = \"0.0.0.0:9000\"\n[database]\nurl = \"postgres://coffer:s3cret@db/coffer\"\n",
        )
        .unwrap();
        assert_eq!(c.server.listen.port(), 9000);
        let env = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect::<std::collections::BTreeMap<_, _>>()
        };
        c.apply_env(&env(&[
            ("COFFER_LISTEN", "127.0.0.1:7000"),
            ("COFFER_AUTH__ACCESS_TTL_SECS", "900"),
            ("COFFER_RATE_LIMIT__ENABLED", "false"),
            ("COFFER_AUTH__ISSUER", "https://wallet.example"),
        ]))
        .unwrap();
        assert_eq!(c.server.listen.port(), 7000);
        assert_eq!(c.auth.access_ttl_secs, 900);
        assert!(!c.rate_limit.enabled);
        assert_eq!(c.auth.issuer, "https://wallet.example");
        let mut d = Config::default();
        d.apply_env(&env(&[
            ("COFFER_DATA_DIR", "/var/lib/coffer"),
            ("COFFER_REDIS_URL", "redis://r:6379"),
        ]))
        .unwrap();
        assert_eq!(d.database.url, "sqlite:///var/lib/coffer/coffer.db");
        assert_eq!(
            d.keys.key_file,
            PathBuf::from("/var/lib/coffer/master.json")
        );
        assert_eq!(d.auth.revocation, RevocationBackend::Redis);
        assert_eq!(d.rate_limit.redis_url.as_deref(), Some("redis://r:6379"));
        for bad in [
            ("COFFER_AUTH__NOPE", "1"),
            ("COFFER_NOPE__X", "1"),
            ("COFFER_AUTH__ACCESS_TTL_SECS", "soon"),
        ] {
            let e = Config::default().apply_env(&env(&[bad])).unwrap_err();
            assert!(e.setting.starts_with("COFFER_"), "{e}");
        }
        let shown = c.masked_toml();
        assert!(shown.contains("postgres://coffer:***@db/coffer"), "{shown}");
        assert!(!shown.contains("s3cret"));
        assert!(!format!("{c:?}").contains("s3cret"));
        for (url, shown) in [
            ("postgres://u:p@ss/w@rd@db/x", "postgres://u:***@db/x"),
            (
                "postgres://db/x?user=u&password=s3cret&sslmode=require",
                "postgres://db/x?user=u&password=***&sslmode=require",
            ),
            ("redis://r:6379", "redis://r:6379"),
            ("sqlite://data/coffer.db", "sqlite://data/coffer.db"),
        ] {
            assert_eq!(mask_url(url), shown);
        }

        let e = Config::from_toml("[server]\nlisen = \"x\"\n").unwrap_err();
        assert!(e.problem.contains("lisen"), "{e}");
        let e = c
            .apply_env(&env(&[("COFFER_REVOCATION", "etcd")]))
            .unwrap_err();
        assert_eq!(e.setting, "COFFER_REVOCATION");
        let bad = Config {
            database: DatabaseConfig {
                url: "mysql://x".into(),
                ..DatabaseConfig::default()
            },
            ..Config::default()
        };
        assert_eq!(bad.validate().unwrap_err().setting, "database.url");
        let redis_without_url = Config {
            auth: AuthConfig {
                revocation: RevocationBackend::Redis,
                ..AuthConfig::default()
            },
            ..Config::default()
        };
        assert_eq!(
            redis_without_url.validate().unwrap_err().setting,
            "auth.redis_url"
        );
    }
}
