//! The ledger's part of erasing a user: every wallet of theirs closed empty and its data keys
//! destroyed, in one database transaction with a `wallet.erased` record per wallet.
//!
//! The wallets are locked in id order; under the locks each balance is decrypted. What is left
//! in them is swept, when the configuration names an unclaimed-funds wallet for its currency
//! ([`Unclaimed`]) and each remainder is at most its bound: one `sweep` transaction per currency
//! debits each non-empty wallet of the user and credits the unclaimed-funds wallet (locked with
//! them, in the same id order), with a `transaction.sweep` record on that wallet's stream. A
//! remainder above the bound, in a frozen wallet or in a currency without one is
//! [`LedgerError::StillHoldsMoney`], naming the wallet, and nothing changes. So is a live hold
//! in either direction, [`LedgerError::WalletHasHolds`]: one on a wallet of the user reserves its
//! money, and one paying into it would capture into an erased wallet (the store hands over the
//! holds paying into the locked wallets; placing one locks its payee too). The store then
//! closes the wallets, deletes every version of their data keys and sets `erased_at` (on
//! Postgres through a function that refuses a wallet that is not closed: the application role
//! may not delete key rows itself). The books stay: postings, transactions and signatures are
//! kept, each counterparty still reads its own side, and verification reports the erased side as
//! erased. Afterwards this process forgets the wallets' unwrapped keys and remembered PINs;
//! other processes are told through the revocation feed.
//!
//! Erasing again changes nothing and answers the same wallets, so a retried erasure finishes
//! whatever a crash interrupted (the sweep and the erasure commit together or not at all).

use coffer_audit::{Action, Actor, AuditEvent, Outcome, Subject};

use crate::domain::{self, LedgerError, TransactionId, UserId, WalletId, WalletStatus};
use crate::error::Error;
use crate::money::{Balance, Currency};
use crate::port::{Apply, Changes, Idempotency, Locked, WalletFilter, WalletRecord};
use crate::sealing::{DataKeys, wallet_key_context};

use super::draft::{self, Draft};
use super::support::{again_if_changed, code, entity, rewrite, state, wallet_stream, with};
use super::views::{WalletView, wallet_view};
use super::{Ledger, MAX_PAGE};

/// Where an erasure sweeps what is left in the erased user's wallets of one currency
/// (`ledger.unclaimed`): an ordinary wallet, usually of an operator's account, that the
/// remainders accumulate in until they are dealt with as the law of unclaimed property asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unclaimed {
    /// The unclaimed-funds wallet (active or frozen, in the currency it is configured for).
    pub wallet: WalletId,
    /// The largest remainder swept from one wallet, in minor units; more refuses the erasure.
    pub up_to_minor: i64,
}

impl Ledger {
    /// Closes and erases every wallet of `owner`, each of which must be empty or hold no more
    /// than its currency's unclaimed-funds bound (which is swept); `by` is who asked (an
    /// administrator, or the operator's command). Answers the owner's wallets, all erased.
    ///
    /// # Errors
    /// [`LedgerError::StillHoldsMoney`] for the first wallet whose money cannot be swept;
    /// [`LedgerError::UnclaimedWalletUnusable`] when the configured unclaimed-funds wallet
    /// cannot take it; storage, keys.
    pub async fn erase_wallets(&self, by: &Actor, owner: UserId) -> Result<Vec<WalletView>, Error> {
        let ids = again_if_changed(|| self.erase_wallets_once(by, owner)).await?;
        for id in &ids {
            self.forget_wallet(*id);
        }
        let mut views = self
            .store
            .load_wallets(&ids)
            .await?
            .iter()
            .map(|w| wallet_view(&w.record, (Balance::ZERO, Balance::ZERO)))
            .collect::<Vec<_>>();
        views.sort_by_key(|v| (v.created_at, v.id));
        Ok(views)
    }

    /// Forgets what this process keeps in memory of an erased wallet: its unwrapped data keys
    /// (a caching key provider's) and its remembered PINs.
    pub fn forget_wallet(&self, wallet: WalletId) {
        self.keys.forget(&wallet_key_context(wallet));
        self.pins.forget(wallet);
    }

    /// Every wallet of `owner`, in id order.
    async fn every_wallet_of(&self, owner: UserId) -> Result<Vec<WalletRecord>, Error> {
        let filter = WalletFilter {
            owner: Some(owner),
            ..WalletFilter::default()
        };
        let mut all = Vec::new();
        loop {
            let after = all.last().map(|w: &WalletRecord| w.id);
            let page = self.store.wallets_where(&filter, after, MAX_PAGE).await?;
            let full = page.len() == MAX_PAGE as usize;
            all.extend(page);
            if !full {
                return Ok(all);
            }
        }
    }

    /// One attempt; the ids of every wallet of `owner`.
    async fn erase_wallets_once(&self, by: &Actor, owner: UserId) -> Result<Vec<WalletId>, Error> {
        let all = self.every_wallet_of(owner).await?;
        let pending: Vec<WalletId> = all
            .iter()
            .filter(|w| w.erased_at.is_none())
            .map(|w| w.id)
            .collect();
        if pending.is_empty() {
            return Ok(all.into_iter().map(|w| w.id).collect());
        }
        let (loaded, mut keys) = self.load(&pending).await?;
        // The unclaimed-funds wallets of the currencies that have money left, as loaded (an
        // existing one is locked with the owner's; its data keys are unwrapped now, not under
        // the locks). Money arriving after this load finds no unclaimed-funds wallet locked for
        // its currency, and the attempt runs again.
        let mut owed: Vec<Currency> = Vec::new();
        for w in &loaded {
            if state(&keys, &w.record)?.balance != Balance::ZERO
                && !owed.contains(&w.record.currency)
            {
                owed.push(w.record.currency);
            }
        }
        let targets: Vec<WalletId> = owed
            .iter()
            .filter_map(|c| self.config.unclaimed.get(c))
            .map(|u| u.wallet)
            .filter(|u| !pending.contains(u))
            .collect();
        let unclaimed = self.store.load_wallets(&targets).await?;
        keys.unwrap(self.keys.as_ref(), &unclaimed).await?;
        let mut lock = pending.clone();
        lock.extend(unclaimed.iter().map(|w| w.record.id));
        let at_micros = self.now_micros();
        let decide = |locked: &Locked<'_>| {
            // Live holds paying into the owner's wallets would capture into an erased wallet.
            if let Some(to) = locked.incoming.iter().find_map(|h| {
                h.to_wallet
                    .filter(|to| h.expires_at > at_micros && pending.contains(to))
            }) {
                return Err(LedgerError::WalletHasHolds(to).into());
            }
            let mut changes = Changes::default();
            for currency in currencies(locked, &pending) {
                let owed = owed.contains(&currency);
                let sweep = Sweep {
                    by,
                    owner,
                    pending: &pending,
                    currency,
                    owed,
                    at_micros,
                };
                self.sweep(&keys, locked, &sweep, &mut changes)?;
            }
            for id in &pending {
                let rec = locked.wallet(*id)?;
                let mut change = match changes.wallets.iter().position(|c| c.id == *id) {
                    Some(swept) => changes.wallets.remove(swept),
                    None if state(&keys, rec)?.balance == Balance::ZERO => {
                        rewrite(&keys, rec, Balance::ZERO)?
                    }
                    None => return Err(LedgerError::StillHoldsMoney(*id).into()),
                };
                change.status = WalletStatus::Closed;
                changes.wallets.push(change);
                changes.erase.push(*id);
                changes.audit.push(with(
                    AuditEvent::new(
                        by.clone(),
                        Action::WalletErased,
                        Subject::Wallet(entity(id.as_uuid())),
                        Outcome::Success,
                    ),
                    "owner",
                    code(&owner.to_string()),
                ));
            }
            Ok(changes)
        };
        let applied = self
            .apply(
                Apply {
                    lock,
                    original: None,
                    hold: None,
                    incoming: true,
                    idempotency: None,
                    decide: &decide,
                },
                &keys,
            )
            .await?;
        self.observe(&applied).await;
        Ok(all.into_iter().map(|w| w.id).collect())
    }

    /// Adds to `changes` the sweep of what is left in the owner's wallets of one currency, when
    /// any is left (on the locked rows).
    fn sweep(
        &self,
        keys: &DataKeys,
        locked: &Locked<'_>,
        sweep: &Sweep<'_>,
        changes: &mut Changes,
    ) -> Result<(), Error> {
        let currency = sweep.currency;
        let mut states = Vec::new();
        for id in sweep.pending {
            let rec = locked.wallet(*id)?;
            if rec.currency == currency {
                states.push(state(keys, rec)?);
            }
        }
        let Some(first) = states.iter().find(|s| s.balance != Balance::ZERO) else {
            return Ok(());
        };
        let Some(target) = self.config.unclaimed.get(&currency) else {
            return Err(LedgerError::StillHoldsMoney(first.id).into());
        };
        let unusable = LedgerError::UnclaimedWalletUnusable { currency };
        let rec = match locked.wallets.iter().find(|w| w.id == target.wallet) {
            Some(rec) if rec.erased_at.is_none() && !sweep.pending.contains(&rec.id) => rec,
            Some(_) => return Err(unusable.into()),
            // Money was left when the wallets were loaded, and there is no such wallet.
            None if sweep.owed => return Err(unusable.into()),
            None => {
                return Err(Error::Changed(
                    "money reached a wallet of the user being erased".into(),
                ));
            }
        };
        let plan = domain::sweep(&states, &state(keys, rec)?, target.up_to_minor)?;
        let idempotency = Idempotency {
            scope: format!("erasure:{}", sweep.owner),
            // A wallet is swept once: it is erased in the same transaction.
            key: format!("sweep:{}", first.id),
            fingerprint: domain::request_fingerprint(&[
                b"sweep",
                sweep.owner.as_uuid().as_bytes(),
                currency.code().as_bytes(),
            ]),
        };
        let draft = Draft {
            id: TransactionId::new(),
            at_micros: sweep.at_micros,
            from: None,
            to: Some(target.wallet),
            key_wallet: target.wallet,
            reverses: None,
            hold: None,
            idempotency: &idempotency,
            memo: None,
            signature: None,
        };
        let mut event = AuditEvent::new(
            sweep.by.clone(),
            Action::TransactionSweep,
            Subject::Transaction(entity(draft.id.as_uuid())),
            Outcome::Success,
        )
        .at(sweep.at_micros)
        .on_stream(wallet_stream(target.wallet));
        event = with(event, "currency", code(currency.code()));
        event = with(event, "to", code(&target.wallet.to_string()));
        event = with(event, "owner", code(&sweep.owner.to_string()));
        let mut written = draft::changes(keys, locked, &plan, &draft, currency, event, None)?;
        changes.wallets.append(&mut written.wallets);
        changes.transactions.append(&mut written.transactions);
        changes.audit.append(&mut written.audit);
        Ok(())
    }
}

/// One currency's sweep in an erasure.
struct Sweep<'a> {
    /// Who erases.
    by: &'a Actor,
    /// Whose wallets.
    owner: UserId,
    /// Their wallets not erased yet.
    pending: &'a [WalletId],
    /// Which currency.
    currency: Currency,
    /// Whether money was left in this currency when the wallets were loaded (its
    /// unclaimed-funds wallet was then locked, if it exists).
    owed: bool,
    /// The transaction's time.
    at_micros: i64,
}

/// The currencies of the `pending` wallets, each once, in the order of their first wallet.
fn currencies(locked: &Locked<'_>, pending: &[WalletId]) -> Vec<Currency> {
    let mut out = Vec::new();
    for w in locked.wallets.iter().filter(|w| pending.contains(&w.id)) {
        if !out.contains(&w.currency) {
            out.push(w.currency);
        }
    }
    out
}
