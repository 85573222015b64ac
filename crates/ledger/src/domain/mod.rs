//! Wallets, transactions and the rules: every decision is a pure function of the locked state.
//!
//! Double entry: every transaction is a set of postings that sums to zero. Deposits credit the
//! wallet and debit the currency's settlement account; withdrawals the reverse; transfers move
//! between two wallets of one currency; a reversal posts the exact opposite of a transaction,
//! once, and is never itself reversed.
//!
//! Status rules: an active wallet does everything; a frozen wallet still receives (deposits,
//! incoming transfers: freezing stops money leaving, it does not bounce payments to the user)
//! but nothing moves out; a closed wallet accepts nothing and can only be closed at zero. A
//! reversal is an admin correction and is applied whatever the status, except that it cannot
//! take a wallet below zero.
//!
//! Money leaving a wallet leaves its available balance: the posted balance less its live holds
//! (`holds`), which stay reserved for their captures.

use sha2::{Digest, Sha256};

pub mod events;
pub mod holds;
pub mod limits;
pub use events::{EventData, EventId, EventKind};
pub use holds::{HoldId, HoldState, HoldStatus};
pub use limits::{Limit, LimitKind, LimitSet, LimitStatus, LimitWindow, Spending};

use crate::money::{Amount, Balance, Currency, Money, MoneyError};

/// Consecutive wrong PINs that lock a wallet's money-out operations.
pub const PIN_LOCK_THRESHOLD: u32 = 5;

use coffer_ids::id_type;
pub use coffer_ids::{IdError, UserId};

id_type!(
    /// A wallet.
    WalletId
);
id_type!(
    /// A ledger transaction.
    TransactionId
);

/// A wallet's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WalletStatus {
    /// Everything allowed.
    Active,
    /// Receives; nothing moves out.
    Frozen,
    /// Nothing at all.
    Closed,
}

impl WalletStatus {
    /// Storage name.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Frozen => "frozen",
            Self::Closed => "closed",
        }
    }

    /// Parses the storage name.
    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "active" => Some(Self::Active),
            "frozen" => Some(Self::Frozen),
            "closed" => Some(Self::Closed),
            _ => None,
        }
    }
}

/// The decrypted state of a wallet that a decision needs (the store locks, decrypts, and hands
/// this over).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalletState {
    /// Which wallet.
    pub id: WalletId,
    /// Its owner.
    pub owner: UserId,
    /// Its currency.
    pub currency: Currency,
    /// Its status.
    pub status: WalletStatus,
    /// Its balance (posted).
    pub balance: Balance,
    /// The sum of its live holds (part of `balance`, not available to spend).
    pub held: Balance,
    /// Consecutive wrong PINs.
    pub failed_pins: u32,
}

impl WalletState {
    /// What may be spent: the posted balance less the live holds (never below zero).
    #[must_use]
    pub fn available(&self) -> Balance {
        Balance::from_minor(self.balance.minor().saturating_sub(self.held.minor()))
            .unwrap_or(Balance::ZERO)
    }
}

/// Why an operation is refused. Each is a typed error the API maps to its own code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LedgerError {
    /// Not enough money.
    #[error("insufficient funds")]
    InsufficientFunds,
    /// Frozen: nothing moves out.
    #[error("wallet is frozen")]
    WalletFrozen,
    /// Closed: nothing at all.
    #[error("wallet is closed")]
    WalletClosed,
    /// A wallet can only be closed when empty.
    #[error("wallet still holds money; only an empty wallet can be closed")]
    WalletNotEmpty,
    /// The amount's currency is not the wallet's.
    #[error("currency mismatch: {expected} wallet, {found} amount")]
    CurrencyMismatch {
        /// The wallet's.
        expected: Currency,
        /// The request's.
        found: Currency,
    },
    /// A transfer to the same wallet.
    #[error("a transfer needs two different wallets")]
    SameWallet,
    /// Too many wrong PINs.
    #[error("money-out is locked after {PIN_LOCK_THRESHOLD} wrong PINs; an admin must unlock it")]
    PinLocked,
    /// Its owner was erased: its data keys are destroyed, nothing of it opens or moves again.
    #[error("the wallet's owner was erased: its data can no longer be read")]
    Erased,
    /// A wallet of a user to erase still holds money (only empty wallets are erased).
    #[error("wallet {0} still holds money: empty it before erasing its owner")]
    StillHoldsMoney(WalletId),
    /// A remainder is to be swept to the unclaimed-funds wallet of its currency, and that
    /// wallet cannot take it: none is configured under that id, or it is closed, erased or in
    /// another currency.
    #[error("the unclaimed-funds wallet for {currency} is missing, closed or of another currency")]
    UnclaimedWalletUnusable {
        /// The remainder's currency.
        currency: Currency,
    },
    /// A wallet with live holds on it, or a wallet that live holds would pay into, can be
    /// neither closed nor erased until they are resolved.
    #[error("wallet {0} has live holds: capture or void them first")]
    WalletHasHolds(WalletId),
    /// The hold's expiry has passed: it released its money and can no longer be captured.
    #[error("the hold has expired")]
    HoldExpired,
    /// The hold was captured or voided already.
    #[error("the hold was resolved already")]
    HoldResolved,
    /// A capture of more than the hold reserved.
    #[error("a capture cannot exceed the amount held")]
    CaptureExceedsHold,
    /// The owner holds the most wallets allowed.
    #[error("no more than {max} wallets per user")]
    TooManyWallets {
        /// The limit (`ledger.max_wallets_per_user`).
        max: u32,
    },
    /// A new PIN among the first an attacker tries (one digit repeated, a run, a common PIN).
    #[error("this PIN is too easy to guess: no repeated digit, run or common PIN")]
    WeakPin,
    /// Money-out that would take the wallet's rolling window above the threshold, by a caller
    /// who showed no second factor.
    #[error("this amount needs a second factor: sign in with your one-time code")]
    SecondFactorRequired,
    /// The operation would pass one of the wallet's spending limits.
    #[error("over the {} {} limit: {remaining} minor units remain", kind.as_str(), window.as_str())]
    LimitExceeded {
        /// The limit's kind.
        kind: LimitKind,
        /// Its window.
        window: LimitWindow,
        /// What one operation may still send under it.
        remaining: i64,
    },
    /// The transaction was already reversed.
    #[error("transaction already reversed")]
    AlreadyReversed,
    /// A reversal cannot be reversed.
    #[error("a reversal cannot be reversed")]
    ReversalOfReversal,
    /// A decision was asked without the state of a wallet it touches (a caller's mistake).
    #[error("wallet {0} was not loaded for this decision")]
    WalletNotLoaded(WalletId),
    /// Invalid money.
    #[error(transparent)]
    Money(#[from] MoneyError),
}

impl LedgerError {
    /// The stable code of a domain refusal (audit records and the API's problem codes).
    #[must_use]
    pub fn code(&self) -> &'static str {
        match self {
            Self::InsufficientFunds => "insufficient_funds",
            Self::WalletFrozen => "wallet_frozen",
            Self::WalletClosed => "wallet_closed",
            Self::WalletNotEmpty | Self::StillHoldsMoney(_) => "wallet_not_empty",
            Self::Erased => "wallet_erased",
            Self::UnclaimedWalletUnusable { .. } => "unclaimed_wallet_unusable",
            Self::WalletHasHolds(_) => "wallet_has_holds",
            Self::HoldExpired => "hold_expired",
            Self::HoldResolved => "hold_resolved",
            Self::CaptureExceedsHold => "capture_exceeds_hold",
            Self::CurrencyMismatch { .. } => "currency_mismatch",
            Self::SameWallet => "same_wallet",
            Self::PinLocked => "pin_locked",
            Self::WeakPin => "weak_pin",
            Self::TooManyWallets { .. } => "too_many_wallets",
            Self::SecondFactorRequired => "mfa_required",
            Self::LimitExceeded { .. } => "limit_exceeded",
            Self::AlreadyReversed => "already_reversed",
            Self::ReversalOfReversal => "reversal_of_reversal",
            Self::WalletNotLoaded(_) => "internal",
            Self::Money(m) => match m {
                MoneyError::UnknownCurrency(_) => "unknown_currency",
                MoneyError::NotPositive => "amount_not_positive",
                MoneyError::TooLarge { .. } => "amount_too_large",
                MoneyError::CurrencyMismatch { .. } => "currency_mismatch",
                MoneyError::Overflow => "amount_overflow",
            },
        }
    }
}

/// What kind of transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TransactionKind {
    /// Money in from outside.
    Deposit,
    /// Money out to outside.
    Withdrawal,
    /// Between two wallets.
    Transfer,
    /// The opposite of an earlier transaction.
    Reversal,
    /// What was left in the wallets of a user being erased, moved to the currency's
    /// unclaimed-funds wallet (by the erasure: no PIN, no signature).
    Sweep,
    /// A hold captured: money from the hold's wallet to its destination, or out (authorised by
    /// the hold's signature, so it carries none of its own).
    Capture,
}

impl TransactionKind {
    /// Storage name.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Deposit => "deposit",
            Self::Withdrawal => "withdrawal",
            Self::Transfer => "transfer",
            Self::Reversal => "reversal",
            Self::Sweep => "sweep",
            Self::Capture => "capture",
        }
    }

    /// Parses the storage name.
    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "deposit" => Some(Self::Deposit),
            "withdrawal" => Some(Self::Withdrawal),
            "transfer" => Some(Self::Transfer),
            "reversal" => Some(Self::Reversal),
            "sweep" => Some(Self::Sweep),
            "capture" => Some(Self::Capture),
            _ => None,
        }
    }

    /// Whether money leaves a user's wallet (PIN and signature required).
    #[must_use]
    pub fn is_money_out(self) -> bool {
        matches!(self, Self::Withdrawal | Self::Transfer)
    }
}

/// An account a posting touches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Account {
    /// A user's wallet.
    Wallet(WalletId),
    /// The settlement account of a currency: the outside world. Its balance is minus the sum
    /// of all wallets of that currency.
    Settlement(Currency),
}

/// One line of a transaction: a signed amount on one account (credit positive).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Posting {
    /// Where.
    pub account: Account,
    /// How much: positive credits the account, negative debits it.
    pub delta: i64,
}

/// The outcome of a decision: the postings and each touched wallet's new balance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// What kind.
    pub kind: TransactionKind,
    /// The postings; they sum to zero.
    pub postings: Vec<Posting>,
    /// New balances of the wallets touched, in wallet-id order.
    pub balances: Vec<(WalletId, Balance)>,
}

impl Plan {
    /// Whether the postings sum to zero (always true for plans made here; checked by verify).
    #[must_use]
    pub fn is_balanced(&self) -> bool {
        self.postings
            .iter()
            .try_fold(0i64, |acc, p| acc.checked_add(p.delta))
            == Some(0)
    }
}

pub(crate) fn same_currency(wallet: &WalletState, money: &Money) -> Result<(), LedgerError> {
    if wallet.currency == money.currency {
        Ok(())
    } else {
        Err(LedgerError::CurrencyMismatch {
            expected: wallet.currency,
            found: money.currency,
        })
    }
}

pub(crate) fn can_receive(wallet: &WalletState) -> Result<(), LedgerError> {
    match wallet.status {
        WalletStatus::Closed => Err(LedgerError::WalletClosed),
        WalletStatus::Active | WalletStatus::Frozen => Ok(()),
    }
}

/// Checks status and lockout for money leaving `wallet` (the PIN itself is checked by the
/// service before the transaction: a wrong PIN never reaches a decision).
pub(crate) fn can_send(wallet: &WalletState) -> Result<(), LedgerError> {
    match wallet.status {
        WalletStatus::Closed => return Err(LedgerError::WalletClosed),
        WalletStatus::Frozen => return Err(LedgerError::WalletFrozen),
        WalletStatus::Active => {}
    }
    if wallet.failed_pins >= PIN_LOCK_THRESHOLD {
        return Err(LedgerError::PinLocked);
    }
    Ok(())
}

/// The balance of `wallet` after `amount` leaves it, out of its available balance (its live
/// holds stay reserved).
fn spend(wallet: &WalletState, amount: Amount) -> Result<Balance, LedgerError> {
    wallet
        .available()
        .debit(amount)
        .ok_or(LedgerError::InsufficientFunds)?;
    wallet
        .balance
        .debit(amount)
        .ok_or(LedgerError::InsufficientFunds)
}

/// Whether a wallet's money-out is locked by wrong PINs (checked before asking for the PIN).
#[must_use]
pub fn pin_locked(wallet: &WalletState) -> bool {
    wallet.failed_pins >= PIN_LOCK_THRESHOLD
}

/// A PIN chosen for a wallet (at creation, change or reset) is not one of the weakest.
///
/// # Errors
/// [`LedgerError::WeakPin`].
pub fn new_pin(pin: &coffer_crypto::Pin) -> Result<(), LedgerError> {
    if pin.is_weak() {
        return Err(LedgerError::WeakPin);
    }
    Ok(())
}

/// A deposit of `money` into `wallet`.
///
/// # Errors
/// [`LedgerError::WalletClosed`], [`LedgerError::CurrencyMismatch`], overflow.
pub fn deposit(wallet: &WalletState, money: Money) -> Result<Plan, LedgerError> {
    same_currency(wallet, &money)?;
    can_receive(wallet)?;
    let m = money.amount.minor();
    Ok(Plan {
        kind: TransactionKind::Deposit,
        postings: vec![
            Posting {
                account: Account::Wallet(wallet.id),
                delta: m,
            },
            Posting {
                account: Account::Settlement(money.currency),
                delta: -m,
            },
        ],
        balances: vec![(wallet.id, wallet.balance.credit(money.amount)?)],
    })
}

/// A withdrawal of `money` from `wallet`.
///
/// # Errors
/// Status, lockout, currency, [`LedgerError::InsufficientFunds`].
pub fn withdrawal(wallet: &WalletState, money: Money) -> Result<Plan, LedgerError> {
    same_currency(wallet, &money)?;
    can_send(wallet)?;
    let balance = spend(wallet, money.amount)?;
    let m = money.amount.minor();
    Ok(Plan {
        kind: TransactionKind::Withdrawal,
        postings: vec![
            Posting {
                account: Account::Wallet(wallet.id),
                delta: -m,
            },
            Posting {
                account: Account::Settlement(money.currency),
                delta: m,
            },
        ],
        balances: vec![(wallet.id, balance)],
    })
}

/// A transfer of `money` from `from` to `to`.
///
/// # Errors
/// [`LedgerError::SameWallet`], either wallet's currency, sender's status, lockout and funds,
/// receiver closed.
pub fn transfer(from: &WalletState, to: &WalletState, money: Money) -> Result<Plan, LedgerError> {
    if from.id == to.id {
        return Err(LedgerError::SameWallet);
    }
    same_currency(from, &money)?;
    same_currency(to, &money)?;
    can_send(from)?;
    can_receive(to)?;
    let from_balance = spend(from, money.amount)?;
    let to_balance = to.balance.credit(money.amount)?;
    let m = money.amount.minor();
    let mut balances = vec![(from.id, from_balance), (to.id, to_balance)];
    balances.sort_by_key(|(id, _)| *id);
    Ok(Plan {
        kind: TransactionKind::Transfer,
        postings: vec![
            Posting {
                account: Account::Wallet(from.id),
                delta: -m,
            },
            Posting {
                account: Account::Wallet(to.id),
                delta: m,
            },
        ],
        balances,
    })
}

/// What a reversal needs to know of the original transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Original {
    /// Its kind.
    pub kind: TransactionKind,
    /// Its postings.
    pub postings: Vec<Posting>,
    /// Whether a reversal of it exists already.
    pub reversed: bool,
}

/// The reversal of `original`, applied to the current state of the wallets it touched.
///
/// # Errors
/// [`LedgerError::ReversalOfReversal`], [`LedgerError::AlreadyReversed`],
/// [`LedgerError::WalletClosed`] when a wallet it touched is closed (the money would be stuck
/// there: reverse before closing), [`LedgerError::InsufficientFunds`] when a wallet no longer
/// holds what it received.
pub fn reversal(original: &Original, wallets: &[WalletState]) -> Result<Plan, LedgerError> {
    if original.kind == TransactionKind::Reversal {
        return Err(LedgerError::ReversalOfReversal);
    }
    if original.reversed {
        return Err(LedgerError::AlreadyReversed);
    }
    let mut postings = Vec::with_capacity(original.postings.len());
    let mut balances = Vec::new();
    for p in &original.postings {
        let delta = p.delta.checked_neg().ok_or(MoneyError::Overflow)?;
        postings.push(Posting {
            account: p.account,
            delta,
        });
        if let Account::Wallet(id) = p.account {
            let w = wallets
                .iter()
                .find(|w| w.id == id)
                .ok_or(LedgerError::WalletNotLoaded(id))?;
            can_receive(w)?;
            let amount = Amount::parse(delta.abs(), i64::MAX)?;
            let new = if delta >= 0 {
                w.balance.credit(amount)?
            } else {
                spend(w, amount)?
            };
            balances.push((id, new));
        }
    }
    balances.sort_by_key(|(id, _)| *id);
    Ok(Plan {
        kind: TransactionKind::Reversal,
        postings,
        balances,
    })
}

/// What is left in `wallets` (one owner's, being erased), moved to `unclaimed`, the
/// unclaimed-funds wallet of their currency: a debit of each non-empty wallet's whole balance
/// and one credit of their sum. Each remainder must be at most `up_to` minor units and its
/// wallet active (a frozen wallet's money stays where it is).
///
/// # Errors
/// [`LedgerError::WalletHasHolds`] for a wallet with live holds (its money is reserved);
/// [`LedgerError::StillHoldsMoney`] for a remainder above `up_to` or in a wallet that is not
/// active; [`LedgerError::UnclaimedWalletUnusable`] when `unclaimed` is one of `wallets`, in
/// another currency or closed; overflow.
pub fn sweep(
    wallets: &[WalletState],
    unclaimed: &WalletState,
    up_to: i64,
) -> Result<Plan, LedgerError> {
    let mut postings = Vec::with_capacity(wallets.len() + 1);
    let mut balances = Vec::with_capacity(wallets.len() + 1);
    let mut total = Balance::ZERO;
    if let Some(w) = wallets.iter().find(|w| w.held != Balance::ZERO) {
        return Err(LedgerError::WalletHasHolds(w.id));
    }
    for w in wallets.iter().filter(|w| w.balance != Balance::ZERO) {
        let unusable = LedgerError::UnclaimedWalletUnusable {
            currency: w.currency,
        };
        if unclaimed.id == w.id || unclaimed.currency != w.currency {
            return Err(unusable);
        }
        can_receive(unclaimed).map_err(|_| unusable)?;
        let m = w.balance.minor();
        if m > up_to || w.status != WalletStatus::Active {
            return Err(LedgerError::StillHoldsMoney(w.id));
        }
        total = total.credit(Amount::parse(m, i64::MAX)?)?;
        postings.push(Posting {
            account: Account::Wallet(w.id),
            delta: -m,
        });
        balances.push((w.id, Balance::ZERO));
    }
    if postings.is_empty() {
        return Err(MoneyError::NotPositive.into());
    }
    let credit = Amount::parse(total.minor(), i64::MAX)?;
    postings.push(Posting {
        account: Account::Wallet(unclaimed.id),
        delta: total.minor(),
    });
    balances.push((unclaimed.id, unclaimed.balance.credit(credit)?));
    balances.sort_by_key(|(id, _)| *id);
    Ok(Plan {
        kind: TransactionKind::Sweep,
        postings,
        balances,
    })
}

/// Checks that `wallet` may be closed.
///
/// # Errors
/// [`LedgerError::WalletClosed`], [`LedgerError::WalletHasHolds`] or
/// [`LedgerError::WalletNotEmpty`].
pub fn close(wallet: &WalletState) -> Result<(), LedgerError> {
    if wallet.status == WalletStatus::Closed {
        return Err(LedgerError::WalletClosed);
    }
    if wallet.held != Balance::ZERO {
        return Err(LedgerError::WalletHasHolds(wallet.id));
    }
    if wallet.balance != Balance::ZERO {
        return Err(LedgerError::WalletNotEmpty);
    }
    Ok(())
}

/// The bytes a money-out transaction's signature covers: a domain tag and every field,
/// length-prefixed, so no two different transactions share them.
#[must_use]
pub fn signing_bytes(
    id: TransactionId,
    kind: TransactionKind,
    from: WalletId,
    to: Option<WalletId>,
    money: Money,
    at_micros: i64,
    idempotency_key: &str,
) -> Vec<u8> {
    framed(&[
        b"coffer.transaction.v1",
        id.as_uuid().as_bytes(),
        kind.as_str().as_bytes(),
        from.as_uuid().as_bytes(),
        to.as_ref().map_or(&[][..], |t| t.as_uuid().as_bytes()),
        &money.amount.minor().to_be_bytes(),
        money.currency.code().as_bytes(),
        &at_micros.to_be_bytes(),
        idempotency_key.as_bytes(),
    ])
}

/// Signed bytes: each field length-prefixed (4 bytes, big-endian), the first a domain tag.
pub(crate) fn framed(fields: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::with_capacity(160);
    for b in fields {
        out.extend_from_slice(&u32::try_from(b.len()).unwrap_or(u32::MAX).to_be_bytes());
        out.extend_from_slice(b);
    }
    out
}

/// The fingerprint of a request under an idempotency key: the same key with another request
/// (another fingerprint) is a conflict.
#[must_use]
pub fn request_fingerprint(parts: &[&[u8]]) -> [u8; 32] {
    let mut h = Sha256::new();
    for p in parts {
        h.update(u32::try_from(p.len()).unwrap_or(u32::MAX).to_be_bytes());
        h.update(p);
    }
    h.finalize().into()
}

#[cfg(test)]
mod tests;
