//! Logging (`[log]`): the format (`pretty` for development, `json` for production; also
//! `COFFER_LOG_FORMAT`), the `tracing` filter, and where operator commands write their log
//! lines (`file`). Nothing here is checked beyond its type.

use std::path::PathBuf;

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
    /// Where operator commands (`coffer-worker keys …`, `ledger verify`, `coffer-api secrets
    /// …`) append their log lines, the audit records' among them (`COFFER_LOG__FILE`). Unset:
    /// standard error, without the audit records' lines when that is a terminal (the records
    /// are in the audit log either way), so the command's progress and result stay readable.
    /// The server always logs to standard output.
    pub file: Option<PathBuf>,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::Pretty,
            filter: "info".to_owned(),
            file: None,
        }
    }
}
