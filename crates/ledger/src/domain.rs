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

use sha2::{Digest, Sha256};

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
    /// Its balance.
    pub balance: Balance,
    /// Consecutive wrong PINs.
    pub failed_pins: u32,
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
            Self::CurrencyMismatch { .. } => "currency_mismatch",
            Self::SameWallet => "same_wallet",
            Self::PinLocked => "pin_locked",
            Self::WeakPin => "weak_pin",
            Self::TooManyWallets { .. } => "too_many_wallets",
            Self::SecondFactorRequired => "mfa_required",
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

fn same_currency(wallet: &WalletState, money: &Money) -> Result<(), LedgerError> {
    if wallet.currency == money.currency {
        Ok(())
    } else {
        Err(LedgerError::CurrencyMismatch {
            expected: wallet.currency,
            found: money.currency,
        })
    }
}

fn can_receive(wallet: &WalletState) -> Result<(), LedgerError> {
    match wallet.status {
        WalletStatus::Closed => Err(LedgerError::WalletClosed),
        WalletStatus::Active | WalletStatus::Frozen => Ok(()),
    }
}

/// Checks status and lockout for money leaving `wallet` (the PIN itself is checked by the
/// service before the transaction: a wrong PIN never reaches a decision).
fn can_send(wallet: &WalletState) -> Result<(), LedgerError> {
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
    let balance = wallet
        .balance
        .debit(money.amount)
        .ok_or(LedgerError::InsufficientFunds)?;
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
    let from_balance = from
        .balance
        .debit(money.amount)
        .ok_or(LedgerError::InsufficientFunds)?;
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
                w.balance
                    .debit(amount)
                    .ok_or(LedgerError::InsufficientFunds)?
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

/// Checks that `wallet` may be closed.
///
/// # Errors
/// [`LedgerError::WalletClosed`] or [`LedgerError::WalletNotEmpty`].
pub fn close(wallet: &WalletState) -> Result<(), LedgerError> {
    if wallet.status == WalletStatus::Closed {
        return Err(LedgerError::WalletClosed);
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
    let mut out = Vec::with_capacity(160);
    let mut field = |b: &[u8]| {
        out.extend_from_slice(&u32::try_from(b.len()).unwrap_or(u32::MAX).to_be_bytes());
        out.extend_from_slice(b);
    };
    field(b"coffer.transaction.v1");
    field(id.as_uuid().as_bytes());
    field(kind.as_str().as_bytes());
    field(from.as_uuid().as_bytes());
    field(to.as_ref().map_or(&[][..], |t| t.as_uuid().as_bytes()));
    field(&money.amount.minor().to_be_bytes());
    field(money.currency.code().as_bytes());
    field(&at_micros.to_be_bytes());
    field(idempotency_key.as_bytes());
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
mod tests {
    use super::*;

    fn usd(minor: i64) -> Money {
        Money {
            amount: Amount::parse(minor, i64::MAX).unwrap(),
            currency: Currency::parse("USD").unwrap(),
        }
    }

    fn wallet(balance: i64, status: WalletStatus) -> WalletState {
        WalletState {
            id: WalletId::new(),
            owner: UserId::new(),
            currency: Currency::parse("USD").unwrap(),
            status,
            balance: Balance::from_minor(balance).unwrap(),
            failed_pins: 0,
        }
    }

    #[test]
    fn deposits_and_withdrawals_are_balanced_against_settlement() {
        let w = wallet(0, WalletStatus::Active);
        let p = deposit(&w, usd(1050)).unwrap();
        assert!(p.is_balanced());
        assert_eq!(p.balances, vec![(w.id, Balance::from_minor(1050).unwrap())]);
        let w = WalletState {
            balance: Balance::from_minor(1050).unwrap(),
            ..w
        };
        let p = withdrawal(&w, usd(50)).unwrap();
        assert!(p.is_balanced());
        assert_eq!(p.balances[0].1.minor(), 1000);
        assert_eq!(
            withdrawal(&w, usd(1051)),
            Err(LedgerError::InsufficientFunds)
        );
    }

    #[test]
    fn transfers_move_between_two_wallets_of_one_currency() {
        let a = wallet(100, WalletStatus::Active);
        let b = wallet(5, WalletStatus::Active);
        let p = transfer(&a, &b, usd(60)).unwrap();
        assert!(p.is_balanced());
        let get = |id| p.balances.iter().find(|(w, _)| *w == id).unwrap().1.minor();
        assert_eq!((get(a.id), get(b.id)), (40, 65));
        assert!(
            p.balances.windows(2).all(|w| w[0].0 < w[1].0),
            "sorted by wallet id"
        );
        assert_eq!(transfer(&a, &a, usd(1)), Err(LedgerError::SameWallet));
        assert_eq!(
            transfer(&a, &b, usd(101)),
            Err(LedgerError::InsufficientFunds)
        );
        let eur = WalletState {
            currency: Currency::parse("EUR").unwrap(),
            ..wallet(0, WalletStatus::Active)
        };
        assert!(matches!(
            transfer(&a, &eur, usd(1)),
            Err(LedgerError::CurrencyMismatch { .. })
        ));
        assert!(matches!(
            deposit(&eur, usd(1)),
            Err(LedgerError::CurrencyMismatch { .. })
        ));
    }

    #[test]
    fn frozen_wallets_receive_but_nothing_leaves() {
        let frozen = wallet(100, WalletStatus::Frozen);
        let active = wallet(100, WalletStatus::Active);
        assert!(deposit(&frozen, usd(1)).is_ok());
        assert!(
            transfer(&active, &frozen, usd(1)).is_ok(),
            "a transfer into a frozen wallet lands"
        );
        assert_eq!(withdrawal(&frozen, usd(1)), Err(LedgerError::WalletFrozen));
        assert_eq!(
            transfer(&frozen, &active, usd(1)),
            Err(LedgerError::WalletFrozen)
        );
    }

    #[test]
    fn closed_wallets_accept_nothing_and_close_only_empty() {
        let closed = wallet(0, WalletStatus::Closed);
        let active = wallet(100, WalletStatus::Active);
        assert_eq!(deposit(&closed, usd(1)), Err(LedgerError::WalletClosed));
        assert_eq!(
            transfer(&active, &closed, usd(1)),
            Err(LedgerError::WalletClosed)
        );
        assert_eq!(withdrawal(&closed, usd(1)), Err(LedgerError::WalletClosed));
        assert_eq!(close(&active), Err(LedgerError::WalletNotEmpty));
        assert_eq!(close(&closed), Err(LedgerError::WalletClosed));
        assert_eq!(close(&wallet(0, WalletStatus::Frozen)), Ok(()));
    }

    #[test]
    fn a_reversal_touching_a_closed_wallet_is_refused() {
        // b received 30 and paid it out again, then closed: reversing the payout would credit a
        // closed wallet, where nothing could ever move the money again.
        let b = wallet(0, WalletStatus::Active);
        let payout = withdrawal(&wallet(30, WalletStatus::Active), usd(30)).unwrap();
        let original = Original {
            kind: payout.kind,
            postings: payout
                .postings
                .iter()
                .map(|p| Posting {
                    account: match p.account {
                        Account::Wallet(_) => Account::Wallet(b.id),
                        other => other,
                    },
                    delta: p.delta,
                })
                .collect(),
            reversed: false,
        };
        assert!(reversal(&original, std::slice::from_ref(&b)).is_ok());
        let closed = WalletState {
            status: WalletStatus::Closed,
            ..b
        };
        assert_eq!(
            reversal(&original, &[closed]),
            Err(LedgerError::WalletClosed)
        );
    }

    #[test]
    fn five_wrong_pins_lock_money_out_only() {
        let locked = WalletState {
            failed_pins: PIN_LOCK_THRESHOLD,
            ..wallet(100, WalletStatus::Active)
        };
        assert!(pin_locked(&locked));
        assert_eq!(withdrawal(&locked, usd(1)), Err(LedgerError::PinLocked));
        assert_eq!(
            transfer(&locked, &wallet(0, WalletStatus::Active), usd(1)),
            Err(LedgerError::PinLocked)
        );
        assert!(deposit(&locked, usd(1)).is_ok());
        let four = WalletState {
            failed_pins: PIN_LOCK_THRESHOLD - 1,
            ..locked
        };
        assert!(withdrawal(&four, usd(1)).is_ok());
    }

    #[test]
    fn a_reversal_posts_the_opposite_once_and_is_never_reversed() {
        let a = wallet(100, WalletStatus::Active);
        let b = wallet(0, WalletStatus::Frozen);
        let t = transfer(&a, &b, usd(30)).unwrap();
        let a2 = WalletState {
            balance: Balance::from_minor(70).unwrap(),
            ..a.clone()
        };
        let b2 = WalletState {
            balance: Balance::from_minor(30).unwrap(),
            ..b.clone()
        };
        let original = Original {
            kind: t.kind,
            postings: t.postings.clone(),
            reversed: false,
        };
        let r = reversal(&original, &[a2.clone(), b2.clone()]).unwrap();
        assert!(r.is_balanced());
        for (p, q) in t.postings.iter().zip(&r.postings) {
            assert_eq!(p.account, q.account);
            assert_eq!(p.delta, -q.delta);
        }
        let get = |id| r.balances.iter().find(|(w, _)| *w == id).unwrap().1.minor();
        assert_eq!(
            (get(a.id), get(b.id)),
            (100, 0),
            "applies to a frozen wallet too"
        );
        assert_eq!(
            reversal(
                &Original {
                    reversed: true,
                    ..original.clone()
                },
                &[a2.clone(), b2.clone()]
            ),
            Err(LedgerError::AlreadyReversed)
        );
        let of_reversal = Original {
            kind: TransactionKind::Reversal,
            postings: r.postings,
            reversed: false,
        };
        assert_eq!(
            reversal(&of_reversal, &[a2.clone(), b2]),
            Err(LedgerError::ReversalOfReversal)
        );
        // The receiver spent the money meanwhile: the reversal cannot take it below zero.
        let spent = WalletState {
            balance: Balance::from_minor(10).unwrap(),
            ..b
        };
        assert_eq!(
            reversal(&original, &[a2, spent]),
            Err(LedgerError::InsufficientFunds)
        );
    }

    #[test]
    fn signing_bytes_and_fingerprints_differ_for_different_requests() {
        let (id, from, to) = (TransactionId::new(), WalletId::new(), WalletId::new());
        let base = signing_bytes(
            id,
            TransactionKind::Transfer,
            from,
            Some(to),
            usd(5),
            7,
            "k1",
        );
        assert_ne!(
            base,
            signing_bytes(
                id,
                TransactionKind::Transfer,
                from,
                Some(to),
                usd(6),
                7,
                "k1"
            )
        );
        assert_ne!(
            base,
            signing_bytes(
                id,
                TransactionKind::Transfer,
                to,
                Some(from),
                usd(5),
                7,
                "k1"
            )
        );
        assert_ne!(
            base,
            signing_bytes(id, TransactionKind::Withdrawal, from, None, usd(5), 7, "k1")
        );
        assert_ne!(
            base,
            signing_bytes(
                id,
                TransactionKind::Transfer,
                from,
                Some(to),
                usd(5),
                7,
                "k2"
            )
        );
        assert_eq!(
            request_fingerprint(&[b"a", b"bc"]),
            request_fingerprint(&[b"a", b"bc"])
        );
        assert_ne!(
            request_fingerprint(&[b"a", b"bc"]),
            request_fingerprint(&[b"ab", b"c"])
        );
    }

    #[test]
    fn ids_parse_and_refuse_garbage() {
        let w = WalletId::new();
        assert_eq!(WalletId::parse(&w.to_string()).unwrap(), w);
        assert_eq!(WalletId::parse("not-a-uuid"), Err(IdError("WalletId")));
        assert!(TransactionId::new() < TransactionId::new(), "time-ordered");
    }
}
