//! A transaction to be written ([`Draft`]), and what the domain's [`Plan`] for it writes:
//! every touched wallet's row re-sealed with its new balance, the postings sealed each under its
//! wallet's data key (a settlement posting under the key wallet's), the memo under the key
//! wallet's and, for a transfer, again under the receiver's. Shared by the use cases that post
//! money (`money`, and the erasure's sweep).

use coffer_audit::AuditEvent;
use coffer_crypto::WalletSignature;

use crate::domain::{Account, HoldId, Plan, Spending, TransactionId, WalletId};
use crate::error::Error;
use crate::money::Currency;
use crate::port::{Changes, Idempotency, Locked, PostingRecord, TransactionRecord};
use crate::sealing::{DataKeys, memo_aad, posting_aad, receiver_memo_aad};
use crate::window::RollingSum;

use super::support::{rewrite, seal_outflow, seal_spending};
use super::views::sealer;

/// What a transaction to be written looks like before the locked rows are seen.
pub(super) struct Draft<'a> {
    pub(super) id: TransactionId,
    pub(super) at_micros: i64,
    pub(super) from: Option<WalletId>,
    pub(super) to: Option<WalletId>,
    pub(super) key_wallet: WalletId,
    pub(super) reverses: Option<TransactionId>,
    pub(super) hold: Option<HoldId>,
    pub(super) idempotency: &'a Idempotency,
    pub(super) memo: Option<&'a str>,
    pub(super) signature: Option<(WalletSignature, [u8; 32])>,
}

/// Builds what a money operation writes from the domain's plan; money-out also writes the
/// sender's rolling sum and spending field, `spent`.
#[allow(clippy::too_many_arguments)]
pub(super) fn changes(
    keys: &DataKeys,
    locked: &Locked<'_>,
    plan: &Plan,
    draft: &Draft<'_>,
    currency: Currency,
    audit: AuditEvent,
    spent: Option<(&RollingSum, &Spending)>,
) -> Result<Changes, Error> {
    let mut wallets = Vec::with_capacity(plan.balances.len());
    for (id, balance) in &plan.balances {
        let rec = locked.wallet(*id)?;
        let mut change = rewrite(keys, rec, *balance)?;
        if draft.signature.is_some() && draft.from == Some(*id) {
            // A correct PIN ends a run of wrong ones.
            change.failed_pins = 0;
        }
        if let Some((outflow, spending)) = spent.filter(|_| draft.from == Some(*id)) {
            change.outflow = seal_outflow(keys, rec, rec.dek_version, outflow)?;
            change.spending = seal_spending(keys, rec, rec.dek_version, spending)?;
        }
        wallets.push(change);
    }
    let mut postings = Vec::with_capacity(plan.postings.len());
    for (line, p) in plan.postings.iter().enumerate() {
        let line = u16::try_from(line).map_err(|_| Error::Storage("too many postings".into()))?;
        let wallet = match p.account {
            Account::Wallet(w) => Some(w),
            Account::Settlement(_) => None,
        };
        let by = locked.wallet(sealer(wallet, draft.key_wallet))?;
        postings.push(PostingRecord {
            line,
            wallet,
            wallet_seq: wallet
                .map(|w| locked.wallet(w).map(|r| r.version + 1))
                .transpose()?,
            amount: keys.seal_i64(
                by.id,
                by.dek_version,
                &posting_aad(draft.id, line, p.account),
                p.delta,
            )?,
        });
    }
    let memo = match draft.memo {
        Some(m) => {
            let by = locked.wallet(draft.key_wallet)?;
            Some(keys.seal(by.id, by.dek_version, &memo_aad(draft.id), m.as_bytes())?)
        }
        None => None,
    };
    let receiver_memo = match (draft.memo, draft.to) {
        (Some(m), Some(to)) if to != draft.key_wallet => {
            let by = locked.wallet(to)?;
            let aad = receiver_memo_aad(draft.id, to);
            Some(keys.seal(by.id, by.dek_version, &aad, m.as_bytes())?)
        }
        _ => None,
    };
    Ok(Changes {
        wallets,
        transactions: vec![TransactionRecord {
            id: draft.id,
            kind: plan.kind,
            currency,
            at_micros: draft.at_micros,
            from_wallet: draft.from,
            to_wallet: draft.to,
            key_wallet: draft.key_wallet,
            reverses: draft.reverses,
            hold: draft.hold,
            scope: draft.idempotency.scope.clone(),
            idempotency_key: draft.idempotency.key.clone(),
            fingerprint: draft.idempotency.fingerprint,
            memo,
            receiver_memo,
            signature: draft.signature.as_ref().map(|(s, _)| *s),
            public_key: draft.signature.as_ref().map(|(_, pk)| *pk),
            postings,
            reversed_by: None,
        }],
        audit: vec![audit],
        ..Changes::default()
    })
}
