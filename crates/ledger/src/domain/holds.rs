//! Holds: money reserved on a wallet for a later capture. A hold is placed against the wallet's
//! available balance (its posted balance less its live holds) and posts nothing; it then
//! resolves exactly once: captured (in full or in part, posting a `capture` transaction from the
//! payer to the hold's destination, or to the settlement account for a held withdrawal; the rest
//! is released), voided, or expired. A hold whose expiry has passed is no longer live: it counts
//! against nothing and cannot be captured, whether or not its expiry has been written yet.

use super::{
    Account, LedgerError, Plan, Posting, TransactionKind, WalletId, WalletState, WalletStatus,
    can_receive, can_send, framed, same_currency,
};
use crate::money::{Amount, Balance, Money};

coffer_ids::id_type!(
    /// A hold.
    HoldId
);

/// Where a hold is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HoldStatus {
    /// Placed, not resolved: it counts against the wallet's available balance until it expires.
    Active,
    /// Captured (in full or in part; the rest was released).
    Captured,
    /// Voided: released in full.
    Voided,
    /// Its expiry passed: released in full.
    Expired,
}

impl HoldStatus {
    /// Storage name.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Captured => "captured",
            Self::Voided => "voided",
            Self::Expired => "expired",
        }
    }

    /// Parses the storage name.
    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "active" => Some(Self::Active),
            "captured" => Some(Self::Captured),
            "voided" => Some(Self::Voided),
            "expired" => Some(Self::Expired),
            _ => None,
        }
    }
}

/// The decrypted state of a hold that a decision needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HoldState {
    /// Which hold.
    pub id: HoldId,
    /// The wallet it reserves money on (the payer).
    pub wallet: WalletId,
    /// A held transfer's destination; `None` for a held withdrawal (a payout).
    pub to: Option<WalletId>,
    /// The most it may capture.
    pub money: Money,
    /// Its status as stored.
    pub status: HoldStatus,
    /// When it stops counting and can no longer be captured, microseconds since the epoch.
    pub expires_at: i64,
}

impl HoldState {
    /// Whether it still reserves money at `now`: active, and its expiry not reached.
    #[must_use]
    pub fn live(&self, now: i64) -> bool {
        self.status == HoldStatus::Active && self.expires_at > now
    }

    /// Whether it is active as stored but its expiry has passed: it is to be written expired.
    #[must_use]
    pub fn lapsed(&self, now: i64) -> bool {
        self.status == HoldStatus::Active && self.expires_at <= now
    }

    /// Checks that it can be resolved at `now` (captured or voided).
    ///
    /// # Errors
    /// [`LedgerError::HoldExpired`] when its expiry has passed (written or not);
    /// [`LedgerError::HoldResolved`] when it was captured or voided.
    pub fn resolvable(&self, now: i64) -> Result<(), LedgerError> {
        match self.status {
            HoldStatus::Active if self.expires_at > now => Ok(()),
            HoldStatus::Active | HoldStatus::Expired => Err(LedgerError::HoldExpired),
            HoldStatus::Captured | HoldStatus::Voided => Err(LedgerError::HoldResolved),
        }
    }
}

/// The sum of the live holds among `holds` on `wallet` at `now`.
///
/// # Errors
/// [`crate::MoneyError::Overflow`].
pub fn held(wallet: WalletId, holds: &[HoldState], now: i64) -> Result<Balance, LedgerError> {
    let mut sum = Balance::ZERO;
    for h in holds.iter().filter(|h| h.wallet == wallet && h.live(now)) {
        sum = sum.credit(h.money.amount)?;
    }
    Ok(sum)
}

/// A new hold of `money` on `payer`, for `to` (a held transfer) or for a payout (`None`): the
/// same rules as the transfer or withdrawal it will post, against the available balance. It
/// posts nothing.
///
/// # Errors
/// [`LedgerError::SameWallet`], either wallet's currency, the payer's status, lockout and
/// available funds, the destination closed.
pub fn place_hold(
    payer: &WalletState,
    to: Option<&WalletState>,
    money: Money,
) -> Result<(), LedgerError> {
    same_currency(payer, &money)?;
    can_send(payer)?;
    if let Some(to) = to {
        if to.id == payer.id {
            return Err(LedgerError::SameWallet);
        }
        same_currency(to, &money)?;
        can_receive(to)?;
    }
    payer
        .available()
        .debit(money.amount)
        .ok_or(LedgerError::InsufficientFunds)?;
    Ok(())
}

/// The capture of `amount` of `hold` at `now`: a `capture` transaction from the payer to the
/// hold's destination (or the settlement account); what is not captured is released with it.
/// The payer's live holds (this one included) are in `payer.held`.
///
/// # Errors
/// The hold expired or resolved; [`LedgerError::CaptureExceedsHold`]; the payer frozen (a
/// frozen wallet's holds can only be voided); the destination closed; overflow.
pub fn capture(
    hold: &HoldState,
    payer: &WalletState,
    to: Option<&WalletState>,
    amount: Amount,
    now: i64,
) -> Result<Plan, LedgerError> {
    hold.resolvable(now)?;
    if amount > hold.money.amount {
        return Err(LedgerError::CaptureExceedsHold);
    }
    if payer.status == WalletStatus::Frozen {
        return Err(LedgerError::WalletFrozen);
    }
    let from_balance = payer
        .balance
        .debit(amount)
        .ok_or(LedgerError::InsufficientFunds)?;
    let m = amount.minor();
    let (credit, mut balances) = match (hold.to, to) {
        (Some(id), Some(to)) if to.id == id => {
            can_receive(to)?;
            (
                Account::Wallet(id),
                vec![(to.id, to.balance.credit(amount)?)],
            )
        }
        (Some(id), _) => return Err(LedgerError::WalletNotLoaded(id)),
        (None, _) => (Account::Settlement(hold.money.currency), Vec::new()),
    };
    balances.push((payer.id, from_balance));
    balances.sort_by_key(|(id, _)| *id);
    Ok(Plan {
        kind: TransactionKind::Capture,
        postings: vec![
            Posting {
                account: Account::Wallet(payer.id),
                delta: -m,
            },
            Posting {
                account: credit,
                delta: m,
            },
        ],
        balances,
    })
}

/// The bytes a hold's signature covers: the hold, its wallet and destination, the most it may
/// capture, its expiry and the key it was placed under. The signature authorises its captures.
#[must_use]
pub fn hold_signing_bytes(
    id: HoldId,
    wallet: WalletId,
    to: Option<WalletId>,
    money: Money,
    expires_at: i64,
    idempotency_key: &str,
) -> Vec<u8> {
    framed(&[
        b"coffer.hold.v1",
        id.as_uuid().as_bytes(),
        wallet.as_uuid().as_bytes(),
        to.as_ref().map_or(&[][..], |t| t.as_uuid().as_bytes()),
        &money.amount.minor().to_be_bytes(),
        money.currency.code().as_bytes(),
        &expires_at.to_be_bytes(),
        idempotency_key.as_bytes(),
    ])
}
