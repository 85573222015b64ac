//! Money: integer minor units of an ISO 4217 currency, every operation overflow-checked.

use std::fmt;

/// Why an amount or currency is refused. Each case is its own variant so the API can answer
/// with its own code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    /// Not an ISO 4217 code of a currency with minor units (precious metals, testing and
    /// fund codes have none and are refused too).
    #[error("{0:?} is not a supported ISO 4217 currency code")]
    UnknownCurrency(String),
    /// Zero or negative.
    #[error("amounts are positive whole numbers of minor units")]
    NotPositive,
    /// Above the configured maximum.
    #[error("amount exceeds the maximum of {max} minor units")]
    TooLarge {
        /// The maximum.
        max: i64,
    },
    /// Two amounts of different currencies were combined.
    #[error("currency mismatch: {left} and {right}")]
    CurrencyMismatch {
        /// One side.
        left: Currency,
        /// The other.
        right: Currency,
    },
    /// A sum or difference would not fit in 64 bits.
    #[error("amount arithmetic overflowed")]
    Overflow,
}

/// An ISO 4217 currency with minor units.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Currency {
    inner: iso_currency::Currency,
    exponent: u8,
}

impl Currency {
    /// Parses an upper-case three-letter code.
    ///
    /// # Errors
    /// [`MoneyError::UnknownCurrency`].
    pub fn parse(code: &str) -> Result<Self, MoneyError> {
        let unknown = || MoneyError::UnknownCurrency(code.chars().take(8).collect());
        if code.len() != 3 || !code.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(unknown());
        }
        let inner = iso_currency::Currency::from_code(code).ok_or_else(unknown)?;
        let exponent = inner
            .exponent()
            .and_then(|e| u8::try_from(e).ok())
            .ok_or_else(unknown)?;
        Ok(Self { inner, exponent })
    }

    /// The three-letter code.
    #[must_use]
    pub fn code(&self) -> &'static str {
        self.inner.code()
    }

    /// Digits after the decimal point (2 for USD, 0 for JPY, 3 for KWD).
    #[must_use]
    pub fn exponent(&self) -> u8 {
        self.exponent
    }
}

impl fmt::Debug for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// A positive amount of minor units, at most the configured maximum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Amount(i64);

impl Amount {
    /// Parses a request amount.
    ///
    /// # Errors
    /// [`MoneyError::NotPositive`] or [`MoneyError::TooLarge`].
    pub fn parse(minor: i64, max: i64) -> Result<Self, MoneyError> {
        if minor <= 0 {
            return Err(MoneyError::NotPositive);
        }
        if minor > max {
            return Err(MoneyError::TooLarge { max });
        }
        Ok(Self(minor))
    }

    /// The minor units.
    #[must_use]
    pub fn minor(self) -> i64 {
        self.0
    }
}

/// An amount in a currency.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Money {
    /// How much.
    pub amount: Amount,
    /// Of what.
    pub currency: Currency,
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scale = 10i64.pow(u32::from(self.currency.exponent));
        let minor = self.amount.minor();
        if self.currency.exponent == 0 {
            write!(f, "{minor} {}", self.currency)
        } else {
            let width = usize::from(self.currency.exponent);
            write!(
                f,
                "{}.{:0width$} {}",
                minor / scale,
                minor % scale,
                self.currency
            )
        }
    }
}

/// A wallet balance: never negative, in minor units of the wallet's currency.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Hash)]
pub struct Balance(i64);

impl Balance {
    /// Zero.
    pub const ZERO: Self = Self(0);

    /// A stored balance; `None` if negative (a corrupt or tampered value).
    #[must_use]
    pub fn from_minor(minor: i64) -> Option<Self> {
        (minor >= 0).then_some(Self(minor))
    }

    /// The minor units.
    #[must_use]
    pub fn minor(self) -> i64 {
        self.0
    }

    /// `self + amount`.
    ///
    /// # Errors
    /// [`MoneyError::Overflow`].
    pub fn credit(self, amount: Amount) -> Result<Self, MoneyError> {
        self.0
            .checked_add(amount.0)
            .map(Self)
            .ok_or(MoneyError::Overflow)
    }

    /// `self - amount`, or `None` when that would go below zero.
    #[must_use]
    pub fn debit(self, amount: Amount) -> Option<Self> {
        self.0.checked_sub(amount.0).filter(|b| *b >= 0).map(Self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn currencies_parse_with_their_exponents() {
        assert_eq!(Currency::parse("USD").unwrap().exponent(), 2);
        assert_eq!(Currency::parse("JPY").unwrap().exponent(), 0);
        assert_eq!(Currency::parse("KWD").unwrap().exponent(), 3);
        for bad in ["usd", "US", "USDD", "XXX", "XAU", "ABC", "", "€€€"] {
            assert!(
                matches!(Currency::parse(bad), Err(MoneyError::UnknownCurrency(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn amounts_are_positive_and_bounded() {
        assert_eq!(Amount::parse(0, 100), Err(MoneyError::NotPositive));
        assert_eq!(Amount::parse(-5, 100), Err(MoneyError::NotPositive));
        assert_eq!(
            Amount::parse(101, 100),
            Err(MoneyError::TooLarge { max: 100 })
        );
        assert_eq!(Amount::parse(100, 100).unwrap().minor(), 100);
    }

    #[test]
    fn money_displays_in_major_units() {
        let m = |minor, c| Money {
            amount: Amount::parse(minor, i64::MAX).unwrap(),
            currency: Currency::parse(c).unwrap(),
        };
        assert_eq!(m(1050, "USD").to_string(), "10.50 USD");
        assert_eq!(m(5, "USD").to_string(), "0.05 USD");
        assert_eq!(m(1050, "JPY").to_string(), "1050 JPY");
        assert_eq!(m(1_000_001, "KWD").to_string(), "1000.001 KWD");
    }

    #[test]
    fn balances_never_go_negative_or_overflow() {
        let b = Balance::from_minor(100).unwrap();
        let a = |n| Amount::parse(n, i64::MAX).unwrap();
        assert_eq!(b.debit(a(100)), Some(Balance::ZERO));
        assert_eq!(b.debit(a(101)), None);
        assert_eq!(
            Balance::from_minor(i64::MAX).unwrap().credit(a(1)),
            Err(MoneyError::Overflow)
        );
        assert_eq!(Balance::from_minor(-1), None);
    }

    proptest! {
        #[test]
        fn credit_then_debit_is_identity(start in 0i64..=i64::MAX / 2, n in 1i64..=i64::MAX / 2) {
            let b = Balance::from_minor(start).unwrap();
            let a = Amount::parse(n, i64::MAX).unwrap();
            prop_assert_eq!(b.credit(a).unwrap().debit(a), Some(b));
        }

        #[test]
        fn currency_parse_never_panics(s in "\\PC{0,6}") {
            let _ = Currency::parse(&s);
        }
    }
}
