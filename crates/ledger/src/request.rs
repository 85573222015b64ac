//! What the service takes: requests parsed at the edge. A driving adapter (the HTTP API, a CLI,
//! a test acting as a client) turns what it received into these types before it calls
//! [`Ledger`](crate::Ledger), so the service never parses a string. Each `parse` answers the
//! same [`Error`] the service answered when it parsed the strings itself, so a client sees the
//! same refusal whichever adapter it went through:
//!
//! - [`MoneyRequest::parse`]: the currency, then the amount (positive, at most the configured
//!   maximum), then the [`IdempotencyKey`], then the [`Memo`], in that order;
//! - [`parse_pin`]: a wallet PIN ([`Pin`], six digits, zeroized on drop);
//! - [`Reason`]: why an administrator reversed a transaction, a short token that the audit log
//!   stores as it is;
//! - [`HistoryCursor`]: where the next page of a wallet's history starts, and [`WalletCursor`]
//!   where the next page of an owner's wallets does.
//!
//! The service still refuses an amount above its configured maximum, whatever the adapter
//! parsed it against.

use std::fmt;

use crate::domain::WalletId;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use coffer_audit::Code;
pub use coffer_crypto::Pin;

use crate::error::Error;
use crate::money::{Amount, Currency, Money};

/// Longest memo, in characters.
pub const MAX_MEMO_CHARS: usize = 256;
/// Longest idempotency key, in bytes.
pub const MAX_IDEMPOTENCY_KEY_LEN: usize = 255;

/// Where a page of a wallet's history starts: the postings below one of the wallet's row
/// versions. Opaque to clients (a format byte and the row version, base64url), so a page never
/// shifts when new activity arrives; its `Display` is what a page's `next_cursor` hands out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistoryCursor(pub(crate) i64);

impl HistoryCursor {
    /// Parses a cursor this service handed out.
    ///
    /// # Errors
    /// [`Error::Invalid`] on the field `cursor`.
    pub fn parse(s: &str) -> Result<Self, Error> {
        cursor_payload(s, 1).map(|seq| Self(i64::from_be_bytes(seq)))
    }

    /// The row version the page stops below.
    pub(crate) fn seq(self) -> i64 {
        self.0
    }
}

impl fmt::Display for HistoryCursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&cursor_text(1, &self.0.to_be_bytes()))
    }
}

/// Where a page of an owner's wallets starts: after one of their wallets. Opaque to clients
/// (a format byte and the wallet id, base64url), in the shape of [`HistoryCursor`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WalletCursor(pub(crate) WalletId);

impl WalletCursor {
    /// Parses a cursor this service handed out.
    ///
    /// # Errors
    /// [`Error::Invalid`] on the field `cursor`.
    pub fn parse(s: &str) -> Result<Self, Error> {
        cursor_payload(s, 2).map(|id| Self(WalletId::from_uuid(uuid::Uuid::from_bytes(id))))
    }
}

impl fmt::Display for WalletCursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&cursor_text(2, self.0.as_uuid().as_bytes()))
    }
}

/// A cursor's text: its format byte and payload, base64url.
fn cursor_text(format: u8, payload: &[u8]) -> String {
    let mut b = vec![format];
    b.extend_from_slice(payload);
    URL_SAFE_NO_PAD.encode(b)
}

/// The `N`-byte payload of a cursor of `format`.
fn cursor_payload<const N: usize>(s: &str, format: u8) -> Result<[u8; N], Error> {
    let bad = || Error::invalid("cursor", "not a cursor this service issued");
    let b = URL_SAFE_NO_PAD.decode(s).map_err(|_| bad())?;
    match b.split_first() {
        Some((f, rest)) if *f == format => <[u8; N]>::try_from(rest).map_err(|_| bad()),
        _ => Err(bad()),
    }
}

/// A client's idempotency key: 1 to [`MAX_IDEMPOTENCY_KEY_LEN`] printable ASCII bytes, no space.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    /// Parses a key.
    ///
    /// # Errors
    /// [`Error::Invalid`] on the field `idempotency_key`.
    pub fn parse(key: &str) -> Result<Self, Error> {
        if key.is_empty() || key.len() > MAX_IDEMPOTENCY_KEY_LEN {
            return Err(Error::invalid(
                "idempotency_key",
                format!("must be 1 to {MAX_IDEMPOTENCY_KEY_LEN} bytes"),
            ));
        }
        if !key.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(Error::invalid(
                "idempotency_key",
                "must be printable ASCII without spaces",
            ));
        }
        Ok(Self(key.to_owned()))
    }

    /// The key as the client sent it.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A transaction's memo: at most [`MAX_MEMO_CHARS`] characters, no control characters. Stored
/// sealed; `Debug` leaves it out.
#[derive(Clone, PartialEq, Eq)]
pub struct Memo(String);

impl Memo {
    /// Parses a memo.
    ///
    /// # Errors
    /// [`Error::Invalid`] on the field `memo`.
    pub fn parse(memo: &str) -> Result<Self, Error> {
        if memo.chars().count() > MAX_MEMO_CHARS {
            return Err(Error::invalid(
                "memo",
                format!("longer than {MAX_MEMO_CHARS} characters"),
            ));
        }
        if memo.chars().any(char::is_control) {
            return Err(Error::invalid("memo", "contains control characters"));
        }
        Ok(Self(memo.to_owned()))
    }

    /// The memo's text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Memo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Memo(..)")
    }
}

/// Why an administrator reversed a transaction: a short token (letters, digits, `. _ : -`),
/// written to the audit log as it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reason(Code);

impl Reason {
    /// Parses a reason.
    ///
    /// # Errors
    /// [`Error::Invalid`] on the field `reason`.
    pub fn parse(reason: &str) -> Result<Self, Error> {
        Code::parse(reason)
            .map(Self)
            .map_err(|_| Error::invalid("reason", "a short token (letters, digits, . _ : -)"))
    }

    /// The reason as an audit detail.
    #[must_use]
    pub fn code(&self) -> &Code {
        &self.0
    }

    /// The reason's text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

/// Parses a wallet PIN.
///
/// # Errors
/// [`Error::Invalid`] on the field `pin`.
pub fn parse_pin(pin: &str) -> Result<Pin, Error> {
    Pin::parse(pin).map_err(|e| Error::invalid("pin", e.to_string()))
}

/// How far money-out may take its wallet's rolling window (the sum that left it over the last
/// [`LedgerConfig::outflow_window_hours`](crate::LedgerConfig::outflow_window_hours), this
/// request included) without a second factor. The application layer derives it from the
/// caller's token and the configured threshold; the ledger applies it under the wallet's lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StepUp {
    /// The most the window may hold, in minor units of the request's currency; `None`: no cap
    /// (the caller showed a second factor, or no threshold is configured).
    pub cap_minor: Option<i64>,
}

/// A money request: what every money-moving operation takes (`Debug` leaves out the amount
/// and the memo).
#[derive(Clone)]
pub struct MoneyRequest {
    /// How much, of what.
    pub money: Money,
    /// The memo, if any.
    pub memo: Option<Memo>,
    /// The client's idempotency key.
    pub idempotency_key: IdempotencyKey,
}

impl MoneyRequest {
    /// Parses a request as a client sends it: the currency (ISO 4217), the amount in minor units
    /// (positive, at most `max_amount_minor`: the ledger's [`LedgerConfig::max_amount_minor`](
    /// crate::LedgerConfig::max_amount_minor)), the idempotency key and the memo, refusing the
    /// first that is malformed.
    ///
    /// # Errors
    /// [`Error::Rejected`] for the money ([`MoneyError`](crate::MoneyError)), [`Error::Invalid`]
    /// for the key or the memo.
    pub fn parse(
        amount_minor: i64,
        currency: &str,
        memo: Option<&str>,
        idempotency_key: &str,
        max_amount_minor: i64,
    ) -> Result<Self, Error> {
        let money = Money {
            currency: Currency::parse(currency)?,
            amount: Amount::parse(amount_minor, max_amount_minor)?,
        };
        let idempotency_key = IdempotencyKey::parse(idempotency_key)?;
        let memo = memo.map(Memo::parse).transpose()?;
        Ok(Self {
            money,
            memo,
            idempotency_key,
        })
    }
}

coffer_macros::debug_non_exhaustive!(self => MoneyRequest {
    currency: self.money.currency, idempotency_key,
});

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::{LedgerError, MoneyError};

    fn invalid_field(e: Error) -> &'static str {
        match e {
            Error::Invalid { field, .. } => field,
            other => panic!("not an invalid field: {other:?}"),
        }
    }

    #[test]
    fn a_cursor_reads_back_and_others_are_refused() {
        for seq in [1, 42, i64::MAX] {
            let handed_out = HistoryCursor(seq).to_string();
            assert_eq!(HistoryCursor::parse(&handed_out).unwrap().seq(), seq);
        }
        // Not base64url; another format byte; a short body.
        for bad in ["garbage!", "AgAAAAAAAAAq", "AQAA"] {
            assert_eq!(
                invalid_field(HistoryCursor::parse(bad).unwrap_err()),
                "cursor"
            );
        }
        let wallet = WalletId::new();
        let handed_out = WalletCursor(wallet).to_string();
        assert_eq!(WalletCursor::parse(&handed_out).unwrap().0, wallet);
        let history = HistoryCursor(7).to_string();
        for bad in [history.as_str(), "garbage!", "AgAA"] {
            assert_eq!(
                invalid_field(WalletCursor::parse(bad).unwrap_err()),
                "cursor",
                "a history cursor is not a wallet cursor"
            );
        }
    }

    #[test]
    fn the_first_malformed_part_is_named_in_the_order_the_ledger_checks() {
        let parse =
            |amount, currency, memo, key| MoneyRequest::parse(amount, currency, memo, key, 100);
        assert!(matches!(
            parse(0, "ZZZ", Some("\u{7}"), ""),
            Err(Error::Rejected(LedgerError::Money(
                MoneyError::UnknownCurrency(_)
            )))
        ));
        assert!(matches!(
            parse(101, "USD", Some("\u{7}"), ""),
            Err(Error::Rejected(LedgerError::Money(MoneyError::TooLarge {
                max: 100
            })))
        ));
        assert_eq!(
            invalid_field(parse(5, "USD", Some("\u{7}"), "").unwrap_err()),
            "idempotency_key"
        );
        assert_eq!(
            invalid_field(parse(5, "USD", Some("\u{7}"), "k").unwrap_err()),
            "memo"
        );
        let ok = parse(5, "USD", Some("rent"), "k").unwrap();
        assert_eq!(
            (ok.money.amount.minor(), ok.memo.unwrap().as_str()),
            (5, "rent")
        );
    }

    #[test]
    fn debug_leaves_out_the_amount_and_the_memo() {
        let r = MoneyRequest::parse(31_415, "USD", Some("memo-canary"), "key-1", 100_000).unwrap();
        let printed = format!("{r:?}");
        assert!(
            printed.contains("key-1") && printed.contains("USD"),
            "{printed}"
        );
        assert!(
            !printed.contains("31415") && !printed.contains("memo-canary"),
            "{printed}"
        );
    }

    #[test]
    fn keys_reasons_and_pins_refuse_what_the_ledger_refused() {
        assert_eq!(
            invalid_field(IdempotencyKey::parse("a b").unwrap_err()),
            "idempotency_key"
        );
        assert_eq!(
            invalid_field(IdempotencyKey::parse(&"k".repeat(256)).unwrap_err()),
            "idempotency_key"
        );
        assert_eq!(
            IdempotencyKey::parse(&"k".repeat(255))
                .unwrap()
                .as_str()
                .len(),
            255
        );
        assert_eq!(
            invalid_field(Memo::parse(&"x".repeat(257)).unwrap_err()),
            "memo"
        );
        assert!(Memo::parse(&"é".repeat(256)).is_ok());
        assert_eq!(
            invalid_field(Reason::parse("two words").unwrap_err()),
            "reason"
        );
        assert_eq!(Reason::parse("chargeback").unwrap().as_str(), "chargeback");
        assert_eq!(invalid_field(parse_pin("12").unwrap_err()), "pin");
        assert!(parse_pin("493817").is_ok());
    }
}
