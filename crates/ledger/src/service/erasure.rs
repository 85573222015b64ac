//! The ledger's part of erasing a user: every wallet of theirs closed empty and its data keys
//! destroyed, in one database transaction with a `wallet.erased` record per wallet.
//!
//! The wallets are locked in id order; under the locks each balance is decrypted and must be
//! zero (else [`LedgerError::StillHoldsMoney`] names the wallet and nothing changes). The store
//! then closes them, deletes every version of their data keys and sets `erased_at` (on Postgres
//! through a function that refuses a wallet that is not closed: the application role may not
//! delete key rows itself). The books stay: postings, transactions and signatures are kept,
//! each counterparty still reads its own side, and verification reports the erased side as
//! erased. Afterwards this process forgets the wallets' unwrapped keys and remembered PINs;
//! other processes are told through the revocation feed.
//!
//! Erasing again changes nothing and answers the same wallets, so a retried erasure finishes
//! whatever a crash interrupted.

use coffer_audit::{Action, Actor, AuditEvent, Outcome, Subject};

use crate::domain::{LedgerError, UserId, WalletId, WalletStatus};
use crate::error::Error;
use crate::money::Balance;
use crate::port::{Apply, Changes, Locked, WalletFilter, WalletRecord};
use crate::sealing::wallet_key_context;

use super::support::{again_if_changed, code, entity, rewrite, state, with};
use super::views::{WalletView, wallet_view};
use super::{Ledger, MAX_PAGE};

impl Ledger {
    /// Closes and erases every wallet of `owner`, each of which must be empty; `by` is who
    /// asked (an administrator, or the operator's command). Answers the owner's wallets, all
    /// erased.
    ///
    /// # Errors
    /// [`LedgerError::StillHoldsMoney`] for the first wallet that is not empty; storage, keys.
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
            .map(|w| wallet_view(&w.record, Balance::ZERO))
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

    /// One attempt; the ids of every wallet of `owner`.
    async fn erase_wallets_once(&self, by: &Actor, owner: UserId) -> Result<Vec<WalletId>, Error> {
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
                break;
            }
        }
        let pending: Vec<WalletId> = all
            .iter()
            .filter(|w| w.erased_at.is_none())
            .map(|w| w.id)
            .collect();
        if !pending.is_empty() {
            let (_, keys) = self.load(&pending).await?;
            let decide = |locked: &Locked<'_>| {
                let mut changes = Changes::default();
                for id in &pending {
                    let rec = locked.wallet(*id)?;
                    let s = state(&keys, rec)?;
                    if s.balance != Balance::ZERO {
                        return Err(LedgerError::StillHoldsMoney(*id).into());
                    }
                    let mut change = rewrite(&keys, rec, s.balance)?;
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
                .store
                .apply(Apply {
                    lock: pending.clone(),
                    original: None,
                    idempotency: None,
                    decide: &decide,
                })
                .await?;
            self.observe(&applied).await;
        }
        Ok(all.into_iter().map(|w| w.id).collect())
    }
}
