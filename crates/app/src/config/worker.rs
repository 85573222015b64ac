//! The worker's settings (`[worker]`, read by `coffer-worker`): how often it polls, the
//! rotation schedules of the master key, the token signing key and the data keys, the
//! rotation's batches and grace, the audit checkpoints and cleanup, the holds it expires, and its
//! metrics listener.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use super::{ConfigError, error};

/// The worker's schedules and the rotation's tuning.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct WorkerConfig {
    /// How often the worker looks for work: rotations requested through the API, schedules.
    pub poll_secs: u64,
    /// Rotate the master key when its active version is older than this many days (0: never
    /// by schedule). The worker also needs the provider to report creation times.
    pub kek_rotation_days: u64,
    /// Retire the old master key versions once a scheduled or requested rotation moved every
    /// key (an emergency rotation always retires, where the provider can).
    pub retire_after_rotation: bool,
    /// Data keys re-wrapped per batch (one read, one provider call, one write).
    pub rotation_batch: u32,
    /// Seconds between the last re-wrap and retiring the old versions (requests in flight and
    /// replicas that have not seen the new version finish first).
    pub retire_grace_secs: u64,
    /// Rotate the token signing key when it is older than this many days (0: never by
    /// schedule). The previous key keeps verifying until its tokens expire.
    pub jwt_rotation_days: u64,
    /// Rotate a wallet's or user's data key when it is older than this many days (0: never by
    /// schedule); at most `dek_rotations_per_poll` per poll.
    pub dek_rotation_days: u64,
    /// Data keys rotated per poll at most (the schedule spreads the work).
    pub dek_rotations_per_poll: u64,
    /// Seal an audit checkpoint this often (0: never).
    pub audit_checkpoint_secs: u64,
    /// Delete ended sessions' refresh tokens this often (0: never).
    pub cleanup_secs: u64,
    /// Wallets whose lapsed holds are written expired per poll at most (0: none by the worker;
    /// the next operation on a wallet still does).
    pub hold_expiries_per_poll: u32,
    /// Where the worker serves `/metrics` (Prometheus text, no authentication: bind it to a
    /// private address). Unset: no listener.
    pub metrics_listen: Option<SocketAddr>,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            poll_secs: 5,
            kek_rotation_days: 90,
            retire_after_rotation: false,
            rotation_batch: 1000,
            retire_grace_secs: 30,
            jwt_rotation_days: 90,
            dek_rotation_days: 365,
            dek_rotations_per_poll: 1000,
            audit_checkpoint_secs: 60,
            cleanup_secs: 3600,
            hold_expiries_per_poll: 500,
            metrics_listen: None,
        }
    }
}

impl WorkerConfig {
    /// A poll interval, and a rotation batch of 1 to 10000.
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if self.poll_secs == 0 {
            return Err(error("worker.poll_secs", "0", "use 1 or more"));
        }
        if self.rotation_batch == 0 || self.rotation_batch > 10_000 {
            return Err(error(
                "worker.rotation_batch",
                self.rotation_batch.to_string(),
                "use 1 to 10000",
            ));
        }
        Ok(())
    }
}
