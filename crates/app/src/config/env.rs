//! The layers, in [figment](https://docs.rs/figment): [`Config::default`] (a
//! `Serialized` provider), then the file (figment's `Data` provider with the [`Toml`] format
//! below), then the `COFFER_<SECTION>__<KEY>` variables ([`SettingVars`], a provider of ours),
//! merged in that order and extracted once, so every value is checked against its type
//! whatever layer gave it, and every section still refuses unknown keys (`deny_unknown_fields`)
//! and takes its defaults. The named variables of the [module documentation](super) are
//! applied over the extracted configuration ([`Config::from_sources`]).
//!
//! Two small adapters keep what figment alone would not:
//! - [`SettingVars`] instead of figment's `Env`: a variable's value is parsed as TOML, as the
//!   file's values are (a bare word, or anything that does not parse, is a string), while a
//!   secret ([`SECRET_KEYS`]) is taken verbatim (`0123`, `true` or `[x` stay as written);
//!   only variables with `__` are settings (`COFFER_LISTEN`, `COFFER_MASTER_KEY`… are the
//!   named ones, `COFFER_TEST_*` none); and an error is reported under the variable that gave
//!   the value (or the unknown key), not the merged tree's path alone ([`config_error`]).
//! - [`Toml`] reads with the workspace's `toml` (figment's `toml` feature would bring a
//!   second, older one) and reports a syntax error by message and line, never quoting the
//!   line, which may hold a secret.
//!
//! The named variables come after, and win over the generic ones. `data_dir` (from the file or
//! `COFFER_DATA_DIR`) then moves the embedded database and key file, wherever `database.url`
//! and `keys.key_file` still have their defaults, before `COFFER_DATABASE_URL` and
//! `COFFER_KEY_FILE` are applied; `COFFER_REDIS_URL` sends both the
//! revocation list and the rate limiter to Redis.

use std::collections::BTreeMap;
use std::path::PathBuf;

use figment::error::Kind;
use figment::providers::{Data, Format, Serialized};
use figment::value::{Dict, Map, Value};
use figment::{Figment, Metadata, Profile, Provider};
use serde::de::DeserializeOwned;

use super::secret::SECRET_KEYS;
use super::{Config, ConfigError, LogFormat, RevocationBackend, error};

/// TOML for figment's `Data` provider, read with the workspace's `toml`. A syntax error keeps
/// the parser's message and the line number, not the text of the line.
pub(super) struct Toml;

impl Format for Toml {
    type Error = figment::Error;

    const NAME: &'static str = "TOML";

    fn from_str<T: DeserializeOwned>(text: &str) -> Result<T, figment::Error> {
        toml::from_str(text).map_err(|e| {
            let line = e
                .span()
                .and_then(|span| text.get(..span.start))
                .map_or(1, |before| before.matches('\n').count() + 1);
            figment::Error::from(format!("{} (line {line})", e.message().trim_end()))
        })
    }
}

/// One `COFFER_<SECTION>__<KEY>` variable: its name, the setting it gives and its value.
struct SettingVar {
    name: String,
    path: [String; 2],
    value: String,
}

/// The `COFFER_<SECTION>__<KEY>` variables as a figment provider: each value parsed as TOML
/// (a string when it does not parse), a secret taken verbatim.
pub(super) struct SettingVars(Vec<SettingVar>);

impl SettingVars {
    /// The variables of `vars` that name a setting, `COFFER_<SECTION>__<KEY>` (lowercased).
    pub(super) fn new(vars: &BTreeMap<String, String>) -> Self {
        Self(
            vars.iter()
                .filter_map(|(name, value)| {
                    let (section, key) = name.strip_prefix("COFFER_")?.split_once("__")?;
                    Some(SettingVar {
                        name: name.clone(),
                        path: [section.to_lowercase(), key.to_lowercase()],
                        value: value.clone(),
                    })
                })
                .collect(),
        )
    }

    /// The variable that gave the value at `path` (or the unknown key ending it): the one
    /// whose setting is `path`, inside it, or holds it.
    fn naming(&self, path: &[String]) -> Option<&SettingVar> {
        self.0.iter().find(|v| {
            let n = v.path.len().min(path.len());
            n > 0 && v.path[..n] == path[..n]
        })
    }
}

/// A value as the file would have it: TOML (`900`, `false`, `["10.0.0.0/8"]`), else a string.
fn parse_value(text: &str) -> Value {
    Toml::from_str::<Dict>(&format!("v = {text}"))
        .ok()
        .and_then(|mut d| d.remove("v"))
        .unwrap_or_else(|| Value::from(text.to_owned()))
}

impl Provider for SettingVars {
    fn metadata(&self) -> Metadata {
        Metadata::named("COFFER_<SECTION>__<KEY> variables")
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        let mut tree = Dict::new();
        for var in &self.0 {
            let [section, key] = &var.path;
            // Secrets are taken as they are: parsed as TOML, `123456` would be a number whose
            // type error quotes it, and `'x'` would quietly lose its quotes.
            let value = if SECRET_KEYS.contains(&key.as_str()) {
                Value::from(var.value.clone())
            } else {
                parse_value(&var.value)
            };
            let entry = tree
                .entry(section.clone())
                .or_insert_with(|| Value::from(Dict::new()));
            if let Value::Dict(_, table) = entry {
                table.insert(key.clone(), value);
            }
        }
        Ok(Profile::Default.collect(tree))
    }
}

/// The defaults, with the file over them (the defaults hold no secret, so serialising them
/// loses nothing to [`SecretSetting`](super::SecretSetting)'s redaction).
pub(super) fn layers(file: Option<&str>) -> Figment {
    let figment = Figment::from(Serialized::defaults(Config::default()));
    match file {
        Some(text) => figment.merge(Data::<Toml>::string(text)),
        None => figment,
    }
}

/// `a, b or c`.
fn one_of(values: &[&str]) -> String {
    match values.split_last() {
        Some((last, [])) => (*last).to_owned(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
        None => String::new(),
    }
}

/// figment's first error as a [`ConfigError`]: under the variable that gave the value when one
/// did (the problem naming the setting), else under the setting (`section.key`). The value of
/// a secret is never quoted.
pub(super) fn config_error(e: &figment::Error, vars: &SettingVars) -> ConfigError {
    let mut path = e.path.clone();
    // figment's path of an unknown key ends with it, but not everywhere: make sure it does.
    if let Kind::UnknownField(field, _) = &e.kind
        && path.last() != Some(field)
    {
        path.push(field.clone());
    }
    let setting = path.join(".");
    let secret = path
        .last()
        .is_some_and(|key| SECRET_KEYS.contains(&key.as_str()));
    let problem = match &e.kind {
        Kind::InvalidType(_, expected) | Kind::InvalidValue(_, expected) if secret => {
            format!("not {expected}")
        }
        Kind::UnknownField(field, _) => format!("no setting {field:?} here"),
        Kind::UnknownVariant(given, _) => format!("{given:?} is not accepted"),
        kind => kind.to_string(),
    };
    let fix = match &e.kind {
        Kind::UnknownField(..) => {
            "see the configuration reference in docs/OPERATIONS.md".to_owned()
        }
        Kind::UnknownVariant(_, accepted) => format!("use {}", one_of(accepted)),
        Kind::Message(_) if path.is_empty() => "fix the TOML at that line".to_owned(),
        _ => "give the setting a value of its type (docs/OPERATIONS.md)".to_owned(),
    };
    match vars.naming(&path) {
        Some(var) => error(&var.name, format!("{setting}: {problem}"), &fix),
        None if path.is_empty() => error("config file", problem, &fix),
        None => error(&setting, problem, &fix),
    }
}

impl Config {
    /// The defaults, then `file` (TOML text, if given), then the `COFFER_<SECTION>__<KEY>`
    /// variables of `vars`, then its named variables (`COFFER_LISTEN`, `COFFER_DATA_DIR`…);
    /// not validated. [`Config::load`] calls it with the file's text and the process's
    /// `COFFER_*` variables.
    ///
    /// # Errors
    /// [`ConfigError`] naming the variable, or the setting of the file.
    pub fn from_sources(
        file: Option<&str>,
        vars: &BTreeMap<String, String>,
    ) -> Result<Self, ConfigError> {
        let settings = SettingVars::new(vars);
        let mut config: Self = layers(file)
            .merge(&settings)
            .extract()
            .map_err(|e| config_error(&e, &settings))?;
        config.apply_named(vars)?;
        Ok(config)
    }

    /// The named variables of the module documentation, over the layers.
    fn apply_named(&mut self, vars: &BTreeMap<String, String>) -> Result<(), ConfigError> {
        let get = |k: &str| vars.get(k).cloned();
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
        if let Some(v) = get("COFFER_INSTANCE") {
            self.instance = v;
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
    use std::collections::BTreeMap;
    use std::path::PathBuf;

    use crate::config::{
        AuthConfig, Config, DatabaseConfig, KeyProviderKind, RevocationBackend, mask_url,
    };

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn file_then_environment_and_errors_name_the_setting() {
        let file = "[server]\nlisten = \"0.0.0.0:9000\"\n[database]\nurl = \"postgres://coffer:s3cret@db/coffer\"\n";
        let c = Config::from_toml(file).unwrap();
        assert_eq!(c.server.listen.port(), 9000);
        let c = Config::from_sources(
            Some(file),
            &env(&[
                ("COFFER_LISTEN", "127.0.0.1:7000"),
                ("COFFER_AUTH__ACCESS_TTL_SECS", "900"),
                ("COFFER_RATE_LIMIT__ENABLED", "false"),
                ("COFFER_AUTH__ISSUER", "https://wallet.example"),
            ]),
        )
        .unwrap();
        assert_eq!(c.server.listen.port(), 7000);
        assert_eq!(c.auth.access_ttl_secs, 900);
        assert!(!c.rate_limit.enabled);
        assert_eq!(c.auth.issuer, "https://wallet.example");
        let d = Config::from_sources(
            None,
            &env(&[
                ("COFFER_DATA_DIR", "/var/lib/coffer"),
                ("COFFER_REDIS_URL", "redis://r:6379"),
            ]),
        )
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
            let e = Config::from_sources(None, &env(&[bad])).unwrap_err();
            assert!(e.setting.starts_with("COFFER_"), "{e}");
            // The variable itself is named.
            assert_eq!(e.setting, bad.0, "{e}");
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
        assert_eq!(e.setting, "server.lisen");
        let e =
            Config::from_sources(Some(file), &env(&[("COFFER_REVOCATION", "etcd")])).unwrap_err();
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

    #[test]
    fn named_variables_win_and_the_data_directory_moves_the_defaults() {
        let c = Config::from_sources(
            Some("data_dir = \"/srv/coffer\"\n[keys]\nkey_file = \"/etc/coffer/master.json\"\n"),
            &env(&[
                ("COFFER_SERVER__LISTEN", "\"10.0.0.1:1\""),
                ("COFFER_LISTEN", "10.0.0.2:2"),
                ("COFFER_AUTH__REDIS_URL", "redis://generic"),
                ("COFFER_REDIS_URL", "redis://named"),
                ("COFFER_LOG__FORMAT", "pretty"),
                ("COFFER_LOG_FORMAT", "json"),
            ]),
        )
        .unwrap();
        assert_eq!(c.server.listen.to_string(), "10.0.0.2:2");
        assert_eq!(c.auth.redis_url.as_deref(), Some("redis://named"));
        assert_eq!(c.log.format, crate::config::LogFormat::Json);
        // From the file's data_dir: the database moves, the key file set in the file stays.
        assert_eq!(c.database.url, "sqlite:///srv/coffer/coffer.db");
        assert_eq!(c.keys.key_file, PathBuf::from("/etc/coffer/master.json"));
        // Without data_dir, the defaults stay where they were.
        let d = Config::from_sources(None, &env(&[])).unwrap();
        assert_eq!(d.database.url, Config::default().database.url);
    }

    #[test]
    fn values_parse_as_the_files_and_are_checked_against_their_types() {
        let c = Config::from_sources(
            None,
            &env(&[
                ("COFFER_RATE_LIMIT__TRUSTED_PROXIES", "[\"10.0.0.0/8\"]"),
                (
                    "COFFER_RATE_LIMIT__POLICIES",
                    "{ login = { limit = 3, period_secs = 60 } }",
                ),
                ("COFFER_AUTH__AUDIENCE", "'quoted'"),
                ("COFFER_KEYS__PROVIDER", "vault-kv"),
                ("COFFER_WORKER__METRICS_LISTEN", "127.0.0.1:9100"),
                // Variables without `__` are not settings, and are left to the named ones.
                ("COFFER_TEST_SOMETHING", "x"),
            ]),
        )
        .unwrap();
        assert_eq!(c.rate_limit.trusted_proxies, vec!["10.0.0.0/8".to_owned()]);
        assert_eq!(c.rate_limit.policies["login"].limit, 3);
        assert_eq!(c.auth.audience, "quoted");
        assert_eq!(c.keys.provider, KeyProviderKind::VaultKv);
        assert_eq!(c.worker.metrics_listen.unwrap().port(), 9100);
        let e =
            Config::from_sources(None, &env(&[("COFFER_SERVER__LISTEN", "nowhere")])).unwrap_err();
        assert_eq!(e.setting, "COFFER_SERVER__LISTEN");
        assert!(e.problem.contains("server.listen"), "{e}");
        let e = Config::from_toml("[worker]\npoll_secs = \"often\"\n").unwrap_err();
        assert_eq!(e.setting, "worker.poll_secs");
        let e = Config::from_toml("[worker\n").unwrap_err();
        assert_eq!(e.setting, "config file");
        assert!(e.problem.contains("line 1"), "{e}");
    }

    #[test]
    fn an_unknown_key_provider_names_the_setting_and_the_accepted_values() {
        let e = Config::from_toml("[keys]\nprovider = \"hsm\"\n").unwrap_err();
        assert_eq!(e.setting, "keys.provider");
        assert!(
            e.to_string()
                .contains("local, vault-kv, vault-transit or aws-kms"),
            "{e}"
        );
        let e = Config::from_sources(None, &env(&[("COFFER_KEYS__PROVIDER", "hsm")])).unwrap_err();
        assert_eq!(e.setting, "COFFER_KEYS__PROVIDER");
        let shown = e.to_string();
        assert!(shown.contains("keys.provider"), "{shown}");
        assert!(
            shown.contains("local, vault-kv, vault-transit or aws-kms"),
            "{shown}"
        );
    }
}
