//! Coffer's wallet ledger: money, wallets, double-entry plans and the rules, as pure functions of
//! the locked, decrypted state (`domain`, `money`, `window`, no I/O); the storage port and its contract
//! suite (`port`, `testkit`); the requests the service takes, parsed at the edge (`request`); the
//! service that runs every use case on the ports (`service`, `sealing`, `verify`); and PIN
//! verification off the async runtime (`pin`).

pub mod domain;
pub mod error;
pub mod money;
pub mod pin;
pub mod port;
pub mod request;
pub mod sealing;
pub mod service;
#[cfg(feature = "testkit")]
pub mod testkit;
pub mod verify;
pub mod window;

pub use domain::{
    Account, EventData, EventId, EventKind, HoldId, HoldStatus, IdError, LedgerError, Limit,
    LimitKind, LimitSet, LimitStatus, LimitWindow, Original, PIN_LOCK_THRESHOLD, Plan, Posting,
    TransactionId, TransactionKind, UserId, WalletId, WalletState, WalletStatus,
};
pub use error::Error;
pub use money::{Amount, Balance, Currency, Money, MoneyError};
pub use port::LedgerStore;
pub use request::{
    HistoryCursor, IdempotencyKey, Memo, MoneyRequest, Pin, Reason, StepUp, WalletCursor, parse_pin,
};
pub use service::{
    Caller, HistoryPageView, HoldPageView, HoldView, Ledger, LedgerConfig, LimitsView,
    MemoBackfill, TransactionView, Unclaimed, WalletPageView, WalletView,
};
pub use window::RollingSum;
