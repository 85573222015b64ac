//! The ledger's settings (`[ledger]`): the PIN hashing cost and how many run at once, the amount
//! limits, the wallets per user, where an erasure sweeps what is left in a user's wallets and each
//! currency's default spending limits, their defaults those of `coffer_ledger::LedgerConfig`.

use std::collections::{BTreeMap, HashMap};

use coffer_ledger::{
    Amount, Currency, Limit, LimitKind, LimitSet, LimitWindow, Unclaimed, WalletId,
};
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
    /// By currency code, kind and window: the spending limits of wallets that have none of
    /// their own, in minor units (`[ledger.limits.EUR] withdrawal = { rolling_24h = 100000 }`).
    pub limits: BTreeMap<String, BTreeMap<String, BTreeMap<String, i64>>>,
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
            limits: BTreeMap::new(),
        }
    }
}

/// The currency a setting is keyed by (`ledger.unclaimed.EUR`).
fn currency_of(setting: &str, code: &str) -> Result<Currency, ConfigError> {
    Currency::parse(code).map_err(|_| {
        error(
            setting,
            "not a currency Coffer knows",
            "use an ISO 4217 code",
        )
    })
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
            let currency = currency_of(&setting, code)?;
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

    /// The default spending limits, by currency (validated: every entry parses).
    ///
    /// # Errors
    /// The first entry with an unknown currency, kind or window, or a maximum that is not
    /// positive.
    pub fn limits(&self) -> Result<HashMap<Currency, LimitSet>, ConfigError> {
        let mut out = HashMap::new();
        for (code, kinds) in &self.limits {
            let setting = format!("ledger.limits.{code}");
            let currency = currency_of(&setting, code)?;
            let mut limits = Vec::new();
            for (kind, windows) in kinds {
                let setting = format!("{setting}.{kind}");
                let kind = LimitKind::parse(kind).ok_or_else(|| {
                    error(
                        &setting,
                        "not a kind of limit",
                        "use withdrawal, transfer or hold",
                    )
                })?;
                for (window, max) in windows {
                    let setting = format!("{setting}.{window}");
                    let window = LimitWindow::parse(window).ok_or_else(|| {
                        error(
                            &setting,
                            "not a window",
                            "use per_transaction, rolling_24h, rolling_7d or rolling_30d",
                        )
                    })?;
                    let max = Amount::parse(*max, i64::MAX).map_err(|_| {
                        error(&setting, "not positive", "use the most, in minor units")
                    })?;
                    limits.push(Limit { kind, window, max });
                }
            }
            let set = LimitSet::new(limits)
                .map_err(|e| error(&setting, e.to_string(), "name each limit once"))?;
            out.insert(currency, set);
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
        self.unclaimed()?;
        self.limits().map(|_| ())
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

    #[test]
    fn default_limits_are_read_by_currency_and_refused_by_setting_name() {
        let c = Config::from_toml(
            "[ledger.limits.EUR]\nwithdrawal = { per_transaction = 500, rolling_24h = 1000 }\n\
             hold = { rolling_30d = 9000 }\n",
        )
        .unwrap();
        let limits = c.ledger.limits().unwrap();
        let eur = &limits[&coffer_ledger::Currency::parse("EUR").unwrap()];
        let names: Vec<_> = eur
            .limits()
            .iter()
            .map(|l| (l.kind.as_str(), l.window.as_str(), l.max.minor()))
            .collect();
        assert_eq!(
            names,
            [
                ("withdrawal", "per_transaction", 500),
                ("withdrawal", "rolling_24h", 1000),
                ("hold", "rolling_30d", 9000)
            ]
        );
        for (toml, setting) in [
            (
                "[ledger.limits.EURO]\nhold = { rolling_7d = 5 }\n",
                "ledger.limits.EURO",
            ),
            (
                "[ledger.limits.EUR]\ncards = { rolling_7d = 5 }\n",
                "ledger.limits.EUR.cards",
            ),
            (
                "[ledger.limits.EUR]\nhold = { weekly = 5 }\n",
                "ledger.limits.EUR.hold.weekly",
            ),
            (
                "[ledger.limits.EUR]\nhold = { rolling_7d = 0 }\n",
                "ledger.limits.EUR.hold.rolling_7d",
            ),
        ] {
            let e = Config::from_toml(toml).unwrap().validate().unwrap_err();
            assert_eq!(e.setting, setting, "{toml}");
        }
    }
}
