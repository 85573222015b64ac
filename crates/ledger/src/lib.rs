//! Coffer's wallet ledger, domain part: money, wallets, double-entry plans and the rules, as
//! pure functions of the locked, decrypted state. No I/O.
//!
//! Status (issue "Wallet ledger"): the domain is here; the service (PIN verification off the
//! runtime, PIN cache, signing), the port and its contract suite, and the Postgres and SQLite
//! adapters are not yet written.

pub mod domain;
pub mod money;

pub use domain::{
    Account, LedgerError, Original, PIN_LOCK_THRESHOLD, Plan, Posting, TransactionId,
    TransactionKind, UserId, WalletId, WalletState, WalletStatus,
};
pub use money::{Amount, Balance, Currency, Money, MoneyError};
