//! The ledger's settings (`[ledger]`): the PIN hashing cost and how many run at once, the amount
//! limits, the wallets per user and where an erasure sweeps what is left in a user's wallets,
//! their defaults those of `coffer_ledger::LedgerConfig`.

use std::collections::{BTreeMap, HashMap};

use coffer_ledger::{Currency, Unclaimed, WalletId};
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
    /// A hold's lifetime when its request names none, in seconds.
    pub hold_expiry_secs: u32,
    /// The longest lifetime a hold may ask for, in seconds.
    pub max_hold_expiry_secs: u32,
    /// By currency code: the unclaimed-funds wallet an erasure sweeps a user's remainders into,
    /// and the largest remainder it sweeps from one wallet (`[ledger.unclaimed.EUR]`).
    pub unclaimed: BTreeMap<String, UnclaimedSettings>,
}

/// One currency's unclaimed-funds wallet.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct UnclaimedSettings {
    /// The wallet's id.
    pub wallet: String,
    /// The largest remainder swept from one wallet, in minor units.
    pub up_to_minor: i64,
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
            hold_expiry_secs: d.hold_expiry_secs,
            max_hold_expiry_secs: d.max_hold_expiry_secs,
            unclaimed: BTreeMap::new(),
        }
    }
}

impl LedgerSettings {
    /// The unclaimed-funds wallets, by currency (validated: every entry parses).
    ///
    /// # Errors
    /// The first entry with an unknown currency, a malformed wallet id or a bound that is not
    /// positive or above `ledger.max_amount_minor`.
    pub fn unclaimed(&self) -> Result<HashMap<Currency, Unclaimed>, ConfigError> {
        let mut out = HashMap::new();
        for (code, u) in &self.unclaimed {
            let setting = format!("ledger.unclaimed.{code}");
            let currency = Currency::parse(code).map_err(|_| {
                error(
                    &setting,
                    "not a currency Coffer knows",
                    "use an ISO 4217 code",
                )
            })?;
            let wallet = WalletId::parse(&u.wallet).map_err(|_| {
                error(
                    &format!("{setting}.wallet"),
                    "not a wallet id",
                    "use the id of a wallet in that currency (a UUID)",
                )
            })?;
            if u.up_to_minor <= 0 || u.up_to_minor > self.max_amount_minor {
                return Err(error(
                    &format!("{setting}.up_to_minor"),
                    "not positive, or above ledger.max_amount_minor",
                    "use the largest remainder to sweep from one wallet, in minor units (500)",
                ));
            }
            out.insert(
                currency,
                Unclaimed {
                    wallet,
                    up_to_minor: u.up_to_minor,
                },
            );
        }
        Ok(out)
    }

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
        if self.hold_expiry_secs == 0 || self.hold_expiry_secs > self.max_hold_expiry_secs {
            return Err(error(
                "ledger.hold_expiry_secs",
                "0, or above ledger.max_hold_expiry_secs",
                "use 604800 (7 days)",
            ));
        }
        self.unclaimed().map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::super::Config;

    #[test]
    fn unclaimed_wallets_are_read_by_currency_and_refused_by_setting_name() {
        let wallet = "0190f3c2-7b8a-7c1d-9e2f-0a1b2c3d4e5f";
        let c = Config::from_toml(&format!(
            "[ledger.unclaimed.EUR]\nwallet = \"{wallet}\"\nup_to_minor = 500\n"
        ))
        .unwrap();
        let unclaimed = c.ledger.unclaimed().unwrap();
        let eur = unclaimed[&coffer_ledger::Currency::parse("EUR").unwrap()];
        assert_eq!(
            (eur.wallet.to_string(), eur.up_to_minor),
            (wallet.to_owned(), 500)
        );
        for (toml, setting) in [
            (
                format!("[ledger.unclaimed.EURO]\nwallet = \"{wallet}\"\nup_to_minor = 5\n"),
                "ledger.unclaimed.EURO",
            ),
            (
                "[ledger.unclaimed.EUR]\nwallet = \"treasury\"\nup_to_minor = 5\n".to_owned(),
                "ledger.unclaimed.EUR.wallet",
            ),
            (
                format!("[ledger.unclaimed.EUR]\nwallet = \"{wallet}\"\nup_to_minor = 0\n"),
                "ledger.unclaimed.EUR.up_to_minor",
            ),
        ] {
            let e = Config::from_toml(&toml).unwrap().validate().unwrap_err();
            assert_eq!(e.setting, setting, "{toml}");
        }
    }
}
