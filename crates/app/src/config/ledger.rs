//! The ledger's settings (`[ledger]`): the PIN hashing cost and how many run at once, the amount
//! limits and the wallets per user, their defaults those of `coffer_ledger::LedgerConfig`.

use serde::{Deserialize, Serialize};

use super::{ConfigError, error};

/// The ledger.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LedgerSettings {
    /// PBKDF2 iterations for new PINs.
    pub kdf_iterations: u32,
    /// Largest amount per operation, minor units.
    pub max_amount_minor: i64,
    /// Transactions above this many major units are flagged `large` in the audit log.
    pub large_transaction_major_units: i64,
    /// PIN key derivations (PBKDF2) run at once: the cores given to PIN checks and new PINs.
    pub pin_checks_in_flight: usize,
    /// Requests that may wait for a derivation; more are answered 503 at once.
    pub pin_checks_queued: usize,
    /// Most wallets one user may hold (open, frozen or closed).
    pub max_wallets_per_user: u32,
}

impl Default for LedgerSettings {
    fn default() -> Self {
        let d = coffer_ledger::LedgerConfig::default();
        Self {
            kdf_iterations: d.kdf_iterations,
            max_amount_minor: d.max_amount_minor,
            large_transaction_major_units: d.large_transaction_major_units,
            pin_checks_in_flight: d.pins.max_in_flight,
            pin_checks_queued: d.pins.max_queued,
            max_wallets_per_user: d.max_wallets_per_user,
        }
    }
}

impl LedgerSettings {
    /// PINs hashed with at least the minimum iterations (checked before the rate limits).
    pub(super) fn validate_pin_kdf(&self) -> Result<(), ConfigError> {
        if self.kdf_iterations < coffer_crypto::pin::MIN_ITERATIONS {
            return Err(error(
                "ledger.kdf_iterations",
                format!(
                    "below the minimum of {}",
                    coffer_crypto::pin::MIN_ITERATIONS
                ),
                "use 600000",
            ));
        }
        Ok(())
    }

    /// A positive largest amount, PIN checks and wallets (checked last of all settings).
    pub(super) fn validate_amounts(&self) -> Result<(), ConfigError> {
        if self.max_amount_minor <= 0 {
            return Err(error(
                "ledger.max_amount_minor",
                "not positive",
                "use a positive amount",
            ));
        }
        if self.pin_checks_in_flight == 0 {
            return Err(error(
                "ledger.pin_checks_in_flight",
                "0: no PIN could be checked",
                "use the number of cores to give to PIN checks (2)",
            ));
        }
        if self.max_wallets_per_user == 0 {
            return Err(error(
                "ledger.max_wallets_per_user",
                "0: no one could open a wallet",
                "use 20",
            ));
        }
        Ok(())
    }
}
