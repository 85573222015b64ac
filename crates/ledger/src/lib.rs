//! Coffer's wallet ledger: money, wallets, double-entry plans and the rules, as pure functions of
//! the locked, decrypted state (`domain`, `money`, no I/O), and PIN verification off the async
//! runtime (`pin`).
//!
//! Status (issue "Wallet ledger"): the domain and the PIN verifier are here; the service, the
//! port and its contract suite, and the Postgres and SQLite adapters are not yet written.

pub mod domain;
pub mod money;
pub mod pin;

pub use domain::{
    Account, LedgerError, Original, PIN_LOCK_THRESHOLD, Plan, Posting, TransactionId,
    TransactionKind, UserId, WalletId, WalletState, WalletStatus,
};
pub use money::{Amount, Balance, Currency, Money, MoneyError};
