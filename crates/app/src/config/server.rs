//! The listener (`[server]`): the address, the request limits, and TLS (1.3 only, from PEM
//! files) when a certificate and its key are both given.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{ConfigError, error};

/// The listener.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address and port.
    pub listen: SocketAddr,
    /// Largest request body, bytes.
    pub body_limit_bytes: usize,
    /// Longest a request may take, seconds.
    pub request_timeout_secs: u64,
    /// TLS (1.3 only) with this PEM certificate chain; off when unset (local use).
    pub tls_cert_file: Option<PathBuf>,
    /// The PEM private key of `tls_cert_file`.
    pub tls_key_file: Option<PathBuf>,
    /// How long `/readyz` remembers the key provider's answer, seconds (it is public, and each
    /// provider call goes to Vault or KMS).
    pub readiness_cache_secs: u64,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            body_limit_bytes: 64 * 1024,
            request_timeout_secs: 30,
            tls_cert_file: None,
            tls_key_file: None,
            readiness_cache_secs: 5,
        }
    }
}

impl ServerConfig {
    /// The body limit, TLS's certificate and key together, the request timeout.
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if self.body_limit_bytes < 1024 {
            return Err(error("server.body_limit_bytes", "below 1 KiB", "use 65536"));
        }
        if self.tls_cert_file.is_some() != self.tls_key_file.is_some() {
            return Err(error(
                "server.tls_cert_file",
                "a certificate without a key, or a key without a certificate",
                "set both server.tls_cert_file and server.tls_key_file, or neither",
            ));
        }
        if self.request_timeout_secs == 0 {
            return Err(error("server.request_timeout_secs", "0", "use 30"));
        }
        if self.readiness_cache_secs > 300 {
            return Err(error(
                "server.readiness_cache_secs",
                format!(
                    "{} s: readiness would lag the provider",
                    self.readiness_cache_secs
                ),
                "use 0 to 300 (5 by default)",
            ));
        }
        Ok(())
    }
}
