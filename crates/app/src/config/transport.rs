//! What `config check` and a starting server warn of: connections that would leave the machine
//! unencrypted or unverified. A Postgres URL to another host without `sslmode=verify-full` (or
//! `verify-ca`) travels in the clear or to a server nobody checked (`prefer`, sqlx's default,
//! falls back to plaintext silently); a `redis://` URL to another host travels in the clear (use
//! `rediss://`, with `redis_ca_file` for a private authority). Loopback and Unix sockets are
//! never warned of. The module also checks the Redis TLS settings (the authority, and the client
//! certificate a Redis with `tls-auth-clients` asks for) and reads their files.

use std::net::IpAddr;
use std::path::Path;
use std::str::FromStr;

use sqlx::postgres::{PgConnectOptions, PgSslMode};

use super::{Config, ConfigError, error, mask_url};

fn loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.is_empty()
        || host.starts_with('/')
        || host.eq_ignore_ascii_case("localhost")
        || IpAddr::from_str(host).is_ok_and(|ip| ip.is_loopback())
}

/// The host of a `scheme://[user[:password]@]host[:port][/…]` URL.
fn host_of(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?']).next().unwrap_or(rest);
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    match host_port.rsplit_once(':') {
        Some((host, port)) if !host.ends_with(':') && port.bytes().all(|b| b.is_ascii_digit()) => {
            host
        }
        _ => host_port,
    }
}

impl Config {
    /// Connections this configuration would make unencrypted or unverified, one sentence each.
    #[must_use]
    pub fn transport_warnings(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        let url = &self.database.url;
        let postgres = url
            .starts_with("postgres")
            .then(|| PgConnectOptions::from_str(url).ok())
            .flatten();
        if let Some(options) = postgres {
            let remote = options.get_socket().is_none() && !loopback(options.get_host());
            let verified = matches!(
                options.get_ssl_mode(),
                PgSslMode::VerifyCa | PgSslMode::VerifyFull
            );
            if remote && !verified {
                warnings.push(format!(
                    "database.url ({}) reaches another host without a verified TLS \
                     connection: add sslmode=verify-full&sslrootcert=<the server's CA file>",
                    mask_url(url)
                ));
            }
        }
        for (setting, redis) in [
            ("auth.redis_url", &self.auth.redis_url),
            ("rate_limit.redis_url", &self.rate_limit.redis_url),
        ] {
            let plain_remote = |r: &&str| r.starts_with("redis://") && !loopback(host_of(r));
            if let Some(redis) = redis.as_deref().filter(plain_remote) {
                warnings.push(format!(
                    "{setting} ({}) reaches another host unencrypted: use rediss:// (with \
                     the matching redis_ca_file for a private authority)",
                    mask_url(redis)
                ));
            }
        }
        warnings
    }
}

/// A Redis connection's TLS files, as section `section` (`auth`, `rate_limit`) names them:
/// `redis_ca_file`, `redis_client_cert_file` and `redis_client_key_file`.
pub(super) struct RedisTlsFiles<'a> {
    pub(super) section: &'static str,
    pub(super) url: Option<&'a str>,
    pub(super) ca: Option<&'a Path>,
    pub(super) cert: Option<&'a Path>,
    pub(super) key: Option<&'a Path>,
}

impl RedisTlsFiles<'_> {
    /// Each file is for a `rediss://` URL only, and a client certificate comes with its key.
    pub(super) fn check(&self) -> Result<(), ConfigError> {
        let tls = self.url.is_some_and(|u| u.starts_with("rediss://"));
        for (name, file) in [
            ("redis_ca_file", self.ca),
            ("redis_client_cert_file", self.cert),
            ("redis_client_key_file", self.key),
        ] {
            if file.is_some() && !tls {
                return Err(error(
                    &format!("{}.{name}", self.section),
                    "set without a rediss:// URL beside it",
                    "use a rediss:// URL, or remove the setting",
                ));
            }
        }
        match (self.cert, self.key) {
            (Some(_), None) | (None, Some(_)) => Err(error(
                &format!(
                    "{}.{}",
                    self.section,
                    if self.cert.is_some() {
                        "redis_client_key_file"
                    } else {
                        "redis_client_cert_file"
                    }
                ),
                "a client certificate without its key, or a key without its certificate",
                "set both redis_client_cert_file and redis_client_key_file, or neither",
            )),
            _ => Ok(()),
        }
    }
}

/// The client certificate and key a section names (PEM files), read for a Redis client that a
/// server asks for one.
///
/// # Errors
/// [`ConfigError`] naming the setting whose file does not read.
pub fn read_redis_identity(
    section: &str,
    cert: Option<&Path>,
    key: Option<&Path>,
) -> Result<Option<(Vec<u8>, coffer_crypto::SecretBytes)>, ConfigError> {
    let (Some(cert), Some(key)) = (cert, key) else {
        return Ok(None);
    };
    let cert = read_redis_ca(&format!("{section}.redis_client_cert_file"), Some(cert))?;
    let key = read_redis_ca(&format!("{section}.redis_client_key_file"), Some(key))?;
    Ok(cert.zip(key.map(coffer_crypto::SecretBytes::new)))
}

/// The authority in `ca_file` (PEM), read for a Redis client (and any other PEM file a Redis
/// setting names).
///
/// # Errors
/// [`ConfigError`] naming `setting` when the file does not read.
pub fn read_redis_ca(
    setting: &str,
    ca_file: Option<&Path>,
) -> Result<Option<Vec<u8>>, ConfigError> {
    ca_file
        .map(|path| {
            std::fs::read(path).map_err(|e| {
                error(
                    setting,
                    format!("{} does not read: {e}", path.display()),
                    "give the path of a PEM file",
                )
            })
        })
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn warned(database: &str, redis: Option<&str>) -> Vec<String> {
        let mut c = Config::default();
        c.database.url = database.to_owned();
        c.auth.redis_url = redis.map(str::to_owned);
        c.transport_warnings()
    }

    #[test]
    fn only_remote_connections_without_verified_tls_are_warned_of() {
        for quiet in [
            "sqlite://data/coffer.db",
            "postgres://coffer@127.0.0.1/coffer",
            "postgres://coffer@localhost:5432/coffer",
            "postgres://coffer@[::1]:5432/coffer",
            "postgres://coffer@db.internal/coffer?sslmode=verify-full&sslrootcert=/ca.pem",
            "postgres://coffer@db.internal/coffer?sslmode=verify-ca&sslrootcert=/ca.pem",
        ] {
            assert!(warned(quiet, None).is_empty(), "{quiet}");
        }
        for loud in [
            "postgres://coffer:secret@db.internal/coffer",
            "postgres://coffer@10.0.0.5/coffer?sslmode=require",
            "postgres://coffer@db.internal/coffer?sslmode=disable",
        ] {
            let w = warned(loud, None);
            assert_eq!(w.len(), 1, "{loud}");
            assert!(w[0].starts_with("database.url"));
            assert!(!w[0].contains("secret"), "the password is masked: {}", w[0]);
        }
        assert!(warned("sqlite://x", Some("redis://127.0.0.1:6379")).is_empty());
        assert!(warned("sqlite://x", Some("redis://localhost")).is_empty());
        let w = warned("sqlite://x", Some("redis://:pw@cache.internal:6379/0"));
        assert_eq!(w.len(), 1);
        assert!(w[0].starts_with("auth.redis_url") && !w[0].contains("pw@"));
        assert!(warned("sqlite://x", Some("rediss://cache.internal:6380")).is_empty());
    }

    #[test]
    fn a_redis_authority_goes_with_a_rediss_url() {
        let mut c = Config::default();
        c.auth.redis_ca_file = Some("/ca.pem".into());
        c.auth.redis_url = Some("redis://cache.internal".to_owned());
        assert_eq!(c.validate().unwrap_err().setting, "auth.redis_ca_file");
        c.auth.redis_url = Some("rediss://cache.internal".to_owned());
        c.validate().unwrap();
        assert!(
            read_redis_ca("auth.redis_ca_file", Some(Path::new("/nonexistent/ca.pem"))).is_err()
        );
    }

    #[test]
    fn a_redis_client_certificate_comes_with_its_key_and_a_rediss_url() {
        let mut c = Config::default();
        c.rate_limit.redis_url = Some("redis://cache.internal".to_owned());
        c.rate_limit.redis_client_cert_file = Some("/client.pem".into());
        c.rate_limit.redis_client_key_file = Some("/client.key".into());
        assert_eq!(
            c.validate().unwrap_err().setting,
            "rate_limit.redis_client_cert_file"
        );
        c.rate_limit.redis_url = Some("rediss://cache.internal".to_owned());
        c.validate().unwrap();
        c.rate_limit.redis_client_key_file = None;
        assert_eq!(
            c.validate().unwrap_err().setting,
            "rate_limit.redis_client_key_file"
        );
        c.rate_limit.redis_client_cert_file = None;
        c.rate_limit.redis_client_key_file = Some("/client.key".into());
        assert_eq!(
            c.validate().unwrap_err().setting,
            "rate_limit.redis_client_cert_file"
        );
        let missing = read_redis_identity(
            "auth",
            Some(Path::new("/nonexistent/client.pem")),
            Some(Path::new("/nonexistent/client.key")),
        );
        assert_eq!(missing.unwrap_err().setting, "auth.redis_client_cert_file");
    }
}
