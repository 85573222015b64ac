//! The receiver-memo backfill. A transfer's memo is sealed under the sender's data key and,
//! since the receiver copy exists, again under the receiver's, so the receiver reads it without
//! the sender's key. Transfers written before then have no copy: this pass reads transactions
//! in id order, a batch at a time, opens each memo under the sender's key and writes the copy
//! under the receiver's (only where none is stored, so a rerun or a second worker writes nothing
//! twice). A transfer whose sender or receiver has no data key left (erased) cannot be copied
//! and is counted as such. Each batch returns the last id it read: pass it back to go on, after
//! a crash too.

use crate::domain::{TransactionId, WalletId};
use crate::error::Error;
use crate::sealing::{DataKeys, memo_aad, receiver_memo_aad};

use super::Ledger;

/// What one batch of the backfill did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemoBackfill {
    /// Transactions read.
    pub scanned: u64,
    /// Receiver copies written.
    pub copied: u64,
    /// Transfers that want a copy and cannot get one: a participant's data keys are gone.
    pub unreadable: u64,
    /// The last transaction read: where the next batch starts; `None` when none was left.
    pub last: Option<TransactionId>,
}

impl Ledger {
    /// Backfills the receiver copies of up to `limit` transactions after `after` (see the
    /// module documentation).
    ///
    /// # Errors
    /// The store's and the key provider's; [`Error::Corrupt`] for a memo that does not open.
    pub async fn backfill_receiver_memos(
        &self,
        after: Option<TransactionId>,
        limit: u32,
    ) -> Result<MemoBackfill, Error> {
        let batch = self.store.transactions_after(after, limit).await?;
        let wanting: Vec<_> = batch
            .iter()
            .filter_map(|t| match (&t.memo, t.to_wallet) {
                (Some(memo), Some(to)) if to != t.key_wallet && t.receiver_memo.is_none() => {
                    Some((t, memo, to))
                }
                _ => None,
            })
            .collect();
        let mut wallets: Vec<WalletId> = wanting
            .iter()
            .flat_map(|(t, _, to)| [t.key_wallet, *to])
            .collect();
        wallets.sort();
        wallets.dedup();
        let loaded = self.store.load_wallets(&wallets).await?;
        let mut keys = DataKeys::default();
        keys.unwrap(self.keys.as_ref(), &loaded).await?;
        let mut done = MemoBackfill {
            scanned: batch.len() as u64,
            last: batch.last().map(|t| t.id),
            ..MemoBackfill::default()
        };
        for (t, memo, to) in wanting {
            let receiver = loaded.iter().find(|w| w.record.id == to);
            let (Some(receiver), true) = (receiver, keys.holds(t.key_wallet) && keys.holds(to))
            else {
                done.unreadable += 1;
                continue;
            };
            let plain = keys.open(t.key_wallet, &memo_aad(t.id), memo, "memo")?;
            let copy = keys.seal(
                to,
                receiver.record.dek_version,
                &receiver_memo_aad(t.id, to),
                plain.expose_secret(),
            )?;
            if self.store.set_receiver_memo(t.id, &copy).await? {
                done.copied += 1;
            }
        }
        Ok(done)
    }
}
