//! What callers get back, [`WalletView`], [`TransactionView`] and [`HistoryPageView`], and how
//! stored rows decrypt into them.
//!
//! A wallet's view carries its decrypted balance; a transaction's its decrypted amount (the size
//! of its first posting) and memo and, for money-out, the signature with the public key it was
//! made with, so anyone can check it over the canonical bytes
//! ([`TransactionView::verify_signature`], `domain::signing_bytes`). `Debug` leaves out
//! balances, amounts and memos: the database holds them only encrypted, and logs should not hold
//! them at all.
//!
//! Each posting is sealed under the data key of its own wallet, bound to transaction, line and
//! account; a settlement posting, which has no wallet, under the key of the transaction's key
//! wallet (`sealer`, used when writing too). The memo is sealed under the key wallet's key, bound
//! to the transaction, and a transfer's again under the receiver's. `transaction_view` reads
//! what the keys still open (a participant whose keys were destroyed is `erased`);
//! `open_postings`, which verification uses, opens every posting or fails.

use coffer_crypto::{WalletPublicKey, WalletSignature};

use crate::domain::{
    self, Account, HoldId, HoldStatus, LedgerError, Posting, TransactionId, TransactionKind,
    UserId, WalletId, WalletStatus,
};
use crate::error::{Error, context};
use crate::money::{Amount, Balance, Currency, Money};
use crate::port::{HoldRecord, TransactionRecord, WalletRecord};
use crate::sealing::{
    DataKeys, hold_amount_aad, hold_memo_aad, memo_aad, posting_aad, receiver_memo_aad,
};

/// A wallet as its owner sees it. `Debug` leaves the balance out: it is the owner's data, which
/// the database only holds encrypted, and logs should not hold it at all.
#[derive(Clone, PartialEq, Eq)]
pub struct WalletView {
    /// Its id.
    pub id: WalletId,
    /// Its owner.
    pub owner: UserId,
    /// Its currency.
    pub currency: Currency,
    /// Its status.
    pub status: WalletStatus,
    /// Its balance (posted).
    pub balance: Balance,
    /// What may be spent: the balance less its live holds.
    pub available: Balance,
    /// The public key its money-out transactions are signed with now.
    pub public_key: [u8; 32],
    /// Consecutive wrong PINs.
    pub failed_pins: u32,
    /// Created, microseconds since the epoch.
    pub created_at: i64,
    /// Last changed, microseconds since the epoch.
    pub updated_at: i64,
    /// When its owner was erased, microseconds since the epoch: it is closed, its balance was
    /// zero, and its data keys are destroyed.
    pub erased_at: Option<i64>,
}

coffer_macros::debug_non_exhaustive!(self => WalletView { id, owner, currency, status, failed_pins, erased_at });

/// A transaction as its participants see it (`Debug` leaves out the amount and the memo).
#[derive(Clone, PartialEq, Eq)]
pub struct TransactionView {
    /// Its id.
    pub id: TransactionId,
    /// What kind.
    pub kind: TransactionKind,
    /// How much.
    pub money: Money,
    /// Where money left.
    pub from_wallet: Option<WalletId>,
    /// Where money arrived.
    pub to_wallet: Option<WalletId>,
    /// The memo.
    pub memo: Option<String>,
    /// The wallets of the transaction whose data keys are destroyed (their owners erased): their
    /// side stays sealed for good.
    pub erased: Vec<WalletId>,
    /// When, microseconds since the epoch.
    pub at_micros: i64,
    /// The client's idempotency key (part of the signed bytes).
    pub idempotency_key: String,
    /// For a reversal, what it reversed.
    pub reverses: Option<TransactionId>,
    /// Its reversal, if any.
    pub reversed_by: Option<TransactionId>,
    /// Money-out: the signature.
    pub signature: Option<[u8; 64]>,
    /// Money-out: the signer's public key.
    pub public_key: Option<[u8; 32]>,
}

coffer_macros::debug_non_exhaustive!(self => TransactionView { id, kind, currency: self.money.currency, from_wallet, to_wallet });

impl TransactionView {
    /// The bytes the signature covers.
    #[must_use]
    pub fn signed_bytes(&self) -> Option<Vec<u8>> {
        let from = self.from_wallet?;
        Some(domain::signing_bytes(
            self.id,
            self.kind,
            from,
            self.to_wallet,
            self.money,
            self.at_micros,
            &self.idempotency_key,
        ))
    }

    /// Checks the signature with the recorded public key (what any third party can do).
    /// `Ok(false)` for a transaction that carries none (deposits, reversals).
    ///
    /// # Errors
    /// [`Error::Corrupt`] when it does not verify.
    pub fn verify_signature(&self) -> Result<bool, Error> {
        let (Some(sig), Some(pk), Some(bytes)) =
            (self.signature, self.public_key, self.signed_bytes())
        else {
            return Ok(false);
        };
        let pk = WalletPublicKey::from_bytes(&pk).map_err(|e| Error::Corrupt(e.into()))?;
        let sig = WalletSignature::from_bytes(&sig).map_err(|e| Error::Corrupt(e.into()))?;
        pk.verify(&bytes, &sig)
            .map(|()| true)
            .map_err(|e| Error::Corrupt(context(format!("transaction {}", self.id), e)))
    }
}

/// A hold as its payer, its payee, a capturing service or an administrator sees it (`Debug`
/// leaves out the amount and the memo).
#[derive(Clone, PartialEq, Eq)]
pub struct HoldView {
    /// Its id.
    pub id: HoldId,
    /// The wallet it reserves money on.
    pub wallet: WalletId,
    /// A held transfer's destination; `None` for a held withdrawal.
    pub to_wallet: Option<WalletId>,
    /// The most it may capture.
    pub money: Money,
    /// The memo.
    pub memo: Option<String>,
    /// Active, captured, voided or expired (an active hold past its expiry reads as expired).
    pub status: HoldStatus,
    /// Placed, microseconds since the epoch.
    pub created_at: i64,
    /// When it stops counting and can no longer be captured.
    pub expires_at: i64,
    /// When it was captured, voided or expired (its expiry, for one not written yet).
    pub resolved_at: Option<i64>,
    /// The capture's transaction.
    pub capture: Option<TransactionId>,
    /// The client's idempotency key (part of the signed bytes).
    pub idempotency_key: String,
    /// The payer's signature over the hold (it authorises the captures).
    pub signature: [u8; 64],
    /// The signer's public key.
    pub public_key: [u8; 32],
}

coffer_macros::debug_non_exhaustive!(self => HoldView { id, wallet, to_wallet, status, expires_at });

/// Decrypts a stored hold (its amount and memo are under its paying wallet's data key) as it
/// stands at `now`; a hold of an erased wallet (resolved before the erasure) is
/// [`LedgerError::Erased`].
pub(super) fn hold_view(keys: &DataKeys, h: &HoldRecord, now: i64) -> Result<HoldView, Error> {
    if !keys.holds(h.wallet) {
        return Err(LedgerError::Erased.into());
    }
    let amount = keys.open_i64(h.wallet, &hold_amount_aad(h.id), &h.amount, "hold amount")?;
    let memo = h
        .memo
        .as_ref()
        .map(|m| {
            let plain = keys.open(h.wallet, &hold_memo_aad(h.id), m, "hold memo")?;
            String::from_utf8(plain.expose_secret().to_vec())
                .map_err(|_| Error::Corrupt(format!("memo of hold {}", h.id).into()))
        })
        .transpose()?;
    let lapsed = h.status == HoldStatus::Active && h.expires_at <= now;
    Ok(HoldView {
        id: h.id,
        wallet: h.wallet,
        to_wallet: h.to_wallet,
        money: Money {
            amount: Amount::parse(amount, i64::MAX)
                .map_err(|_| Error::Corrupt(format!("hold {} holds nothing", h.id).into()))?,
            currency: h.currency,
        },
        memo,
        status: if lapsed {
            HoldStatus::Expired
        } else {
            h.status
        },
        created_at: h.created_at,
        expires_at: h.expires_at,
        resolved_at: if lapsed {
            Some(h.expires_at)
        } else {
            h.resolved_at
        },
        capture: h.capture,
        idempotency_key: h.placed.key.clone(),
        signature: h.signature.to_bytes(),
        public_key: h.public_key,
    })
}

/// A page of an owner's wallets.
#[derive(Debug, Clone)]
pub struct WalletPageView {
    /// Oldest first.
    pub items: Vec<WalletView>,
    /// Pass it back for the next page; `None` at the end.
    pub next_cursor: Option<String>,
}

/// A page of a wallet's holds.
#[derive(Debug, Clone)]
pub struct HoldPageView {
    /// Newest first.
    pub items: Vec<HoldView>,
    /// Pass it back for the next page; `None` at the end.
    pub next: Option<HoldId>,
}

/// A page of history.
#[derive(Debug, Clone)]
pub struct HistoryPageView {
    /// Newest first.
    pub items: Vec<TransactionView>,
    /// Pass it back for the next (older) page; `None` at the end.
    pub next_cursor: Option<String>,
    /// The page stopped at the bound on transactions read for an amount range, before it was
    /// full: `next_cursor` goes on from there.
    pub stopped_early: bool,
    /// The wallet's posted balance when the page was read.
    pub balance: Balance,
    /// Its available balance then: posted less its live holds.
    pub available: Balance,
}

/// A wallet's view, with its posted and available balances.
pub(super) fn wallet_view(
    rec: &WalletRecord,
    (balance, available): (Balance, Balance),
) -> WalletView {
    WalletView {
        id: rec.id,
        owner: rec.owner,
        currency: rec.currency,
        status: rec.status,
        balance,
        available,
        public_key: rec.public_key,
        failed_pins: rec.failed_pins,
        created_at: rec.created_at,
        updated_at: rec.updated_at,
        erased_at: rec.erased_at,
    }
}

/// The wallet whose data key seals a posting on `account` of a transaction keyed by `key_wallet`.
pub(super) fn sealer(account: Option<WalletId>, key_wallet: WalletId) -> WalletId {
    account.unwrap_or(key_wallet)
}

/// Decrypts the postings of a stored transaction.
pub(crate) fn open_postings(keys: &DataKeys, t: &TransactionRecord) -> Result<Vec<Posting>, Error> {
    t.postings
        .iter()
        .map(|p| {
            let account = p
                .wallet
                .map_or(Account::Settlement(t.currency), Account::Wallet);
            let delta = keys.open_i64(
                sealer(p.wallet, t.key_wallet),
                &posting_aad(t.id, p.line, account),
                &p.amount,
                "posting",
            )?;
            Ok(Posting { account, delta })
        })
        .collect()
}

/// Decrypts a stored transaction with the keys the keyring holds (it was given every wallet's).
///
/// A wallet whose data keys are gone (destroyed: its owner erased) is named in `erased` and its
/// postings are left sealed: the amount comes from any posting that opens (every posting of a
/// transaction moves the same amount), the memo from the key wallet's envelope, else from the
/// receiver's copy. So each participant reads its own side whatever became of the other. A
/// posting or memo whose key is held and does not open is corrupt; a transaction of which every
/// side is erased is [`LedgerError::Erased`].
pub(crate) fn transaction_view(
    keys: &DataKeys,
    t: &TransactionRecord,
) -> Result<TransactionView, Error> {
    let mut amount = None;
    let mut erased = Vec::new();
    for p in &t.postings {
        let by = sealer(p.wallet, t.key_wallet);
        if !keys.holds(by) {
            if !erased.contains(&by) {
                erased.push(by);
            }
            continue;
        }
        let account = p
            .wallet
            .map_or(Account::Settlement(t.currency), Account::Wallet);
        let delta = keys.open_i64(
            by,
            &posting_aad(t.id, p.line, account),
            &p.amount,
            "posting",
        )?;
        amount.get_or_insert(delta.unsigned_abs());
    }
    let amount = match amount {
        Some(a) => i64::try_from(a)
            .map_err(|_| Error::Corrupt(format!("transaction {} moves too much", t.id).into()))?,
        // Every side of it was erased (a deposit to an erased wallet, say).
        None if !erased.is_empty() => return Err(LedgerError::Erased.into()),
        None => {
            return Err(Error::Corrupt(
                format!("transaction {} has no posting", t.id).into(),
            ));
        }
    };
    let memo = match (&t.memo, &t.receiver_memo, t.to_wallet) {
        (Some(m), _, _) if keys.holds(t.key_wallet) => {
            Some(keys.open(t.key_wallet, &memo_aad(t.id), m, "memo")?)
        }
        (_, Some(m), Some(to)) if keys.holds(to) => {
            Some(keys.open(to, &receiver_memo_aad(t.id, to), m, "receiver's memo")?)
        }
        _ => None,
    }
    .map(|plain| {
        String::from_utf8(plain.expose_secret().to_vec())
            .map_err(|_| Error::Corrupt(format!("memo of transaction {}", t.id).into()))
    })
    .transpose()?;
    Ok(TransactionView {
        id: t.id,
        kind: t.kind,
        money: Money {
            amount: Amount::parse(amount, i64::MAX).map_err(|_| {
                Error::Corrupt(format!("transaction {} moves nothing", t.id).into())
            })?,
            currency: t.currency,
        },
        from_wallet: t.from_wallet,
        to_wallet: t.to_wallet,
        memo,
        erased,
        at_micros: t.at_micros,
        idempotency_key: t.idempotency_key.clone(),
        reverses: t.reverses,
        reversed_by: t.reversed_by,
        signature: t.signature.map(|s| s.to_bytes()),
        public_key: t.public_key,
    })
}
