//! Logging (`[log]`): the format (`pretty` for development, `json` for production; also
//! `COFFER_LOG_FORMAT`) and the `tracing` filter. Nothing here is checked beyond its type.

use serde::{Deserialize, Serialize};

/// Log format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// Human-readable (development).
    Pretty,
    /// One JSON object per line (production).
    Json,
}

/// Logging.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// Format.
    pub format: LogFormat,
    /// `tracing` filter (`info`, `coffer=debug,info`…).
    pub filter: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::Pretty,
            filter: "info".to_owned(),
        }
    }
}
