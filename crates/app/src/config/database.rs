//! The database (`[database]`): SQLite (the embedded default, under the data directory) or
//! Postgres, the pool size, and whether migrations run at start. The URL may hold a password:
//! `Debug` shows it masked ([`mask_url`]).

use std::fmt;

use serde::{Deserialize, Serialize};

use super::{ConfigError, error, mask_url};

/// The database.
#[derive(Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// `sqlite://path` (the embedded default) or `postgres://…`.
    pub url: String,
    /// Pool size (Postgres).
    pub max_connections: u32,
    /// Apply migrations at start (as the schema owner). Off when the API logs in as the
    /// application role and migrations run separately.
    pub migrate: bool,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            url: "sqlite://data/coffer.db".to_owned(),
            max_connections: 16,
            migrate: true,
        }
    }
}

impl fmt::Debug for DatabaseConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DatabaseConfig")
            .field("url", &mask_url(&self.url))
            .field("max_connections", &self.max_connections)
            .field("migrate", &self.migrate)
            .finish()
    }
}

impl DatabaseConfig {
    /// The URL names SQLite or Postgres (checked first of all settings).
    pub(super) fn validate_url(&self) -> Result<(), ConfigError> {
        let url = &self.url;
        if !(url.starts_with("sqlite:")
            || url.starts_with("postgres://")
            || url.starts_with("postgresql://"))
        {
            return Err(error(
                "database.url",
                format!("{} is neither SQLite nor Postgres", mask_url(url)),
                "use sqlite://data/coffer.db or postgres://user@host/db",
            ));
        }
        Ok(())
    }

    /// The pool has room for a connection (checked after the worker's settings).
    pub(super) fn validate_pool(&self) -> Result<(), ConfigError> {
        if self.max_connections == 0 {
            return Err(error("database.max_connections", "0", "use 1 or more"));
        }
        Ok(())
    }
}
