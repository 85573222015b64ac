//! Money: deposit, withdraw, transfer and reverse, and what each of them writes.
//!
//! A transfer, end to end:
//!
//! ```text
//! Ledger::transfer ── load both wallets with their wrapped DEKs (one query) ── unwrap DEKs
//!    │                (key provider, behind its cache)
//!    ├─ unlock (pin_attempts)
//!    │    warm PIN (the verifier remembers it): unseal the sender's signing key in memory
//!    │    cold PIN, one check per wallet at a time in this process:
//!    │     ├─ the replay lookup: a repeated request is answered here, before any attempt counts
//!    │     ├─ read the sender's count: a locked wallet is refused here
//!    │     └─ the KDF on the blocking pool unseals the signing key (a wrong PIN: apply on
//!    │        the sender alone counts it with its audit record, then answers)
//!    ├─ sign the canonical bytes
//!    └─ LedgerStore::apply ─ BEGIN ─ lock both rows in id order + look up the idempotency key
//!                            ─ decide (sync: decrypt balances, domain::transfer, seal new
//!                              balances, postings, memo) ─ write with the audit append ─ COMMIT
//! ```
//!
//! A withdrawal is the same with one wallet; a deposit needs no PIN and is not signed. The
//! transaction's `decide` checks that the sealed signing key it unsealed is still the wallet's,
//! so a PIN changed or reset meanwhile, on another replica too, is never accepted in its old
//! form: the operation runs again ([`Error::Changed`]). A right PIN ends a run of wrong ones in
//! the same write (`failed_pins` back to zero); when the operation writes nothing of its own
//! (refused, or another request under the key did the work), `end_wrong_run` does, audited.
//!
//! Idempotency: every request carries a key (1 to [`MAX_IDEMPOTENCY_KEY_LEN`] printable ASCII
//! bytes) and a fingerprint of what it asks (kind, wallets, amount, currency and memo; for a
//! reversal, the original and the reason). Keys live on their transactions, unique per caller
//! scope, with the fingerprint, so they are kept for good and a retry is recognised however late
//! it comes, without a purge. The same key with the same fingerprint answers the recorded
//! transaction; with another, [`Error::IdempotencyConflict`]. Only successes are recorded: a
//! refused request may be retried under the same key. A repeated money-out is answered before
//! any PIN is looked at, so a retry reveals nothing and costs no attempt.
//!
//! The second-factor threshold is applied to a rolling sum, not to one request, so splitting a
//! large payment into small ones does not avoid it: each money-out adds its amount to the
//! sender's [`RollingSum`] (sealed on the wallet row, re-sealed with every write of it), and one
//! whose window, with it, would pass the caller's [`StepUp`] cap is refused with
//! [`LedgerError::SecondFactorRequired`]: first on the loaded row, before the PIN is looked at,
//! and again in `decide` under the lock, where concurrent requests meet. Every money-out counts,
//! with or without a second factor; deposits, incoming transfers and reversals give nothing
//! back.
//!
//! A reversal (administrators) posts the exact opposite of a transaction, once: whatever the
//! wallets' status, never below zero, never of a reversal, and never twice (the store's unique
//! index on `reverses` is the last word under concurrency).
//!
//! Audit: each transaction's record is on the stream of its key wallet, with its currency,
//! wallets and, for a reversal, the original and the reason. Amounts never enter the audit log;
//! a transaction above the configured size is flagged `large` (the `large_transaction` alert). A
//! deposit, withdrawal or transfer refused by a rule (its [`LedgerError::code`]) or for a wrong
//! PIN is audited as `transaction.failed` (the `failed_transactions` alert).

use coffer_audit::{Action, AuditEvent, DetailValue, Outcome, Subject};
use coffer_crypto::Pin;

use crate::domain::{
    self, LedgerError, LimitKind, Original, TransactionId, TransactionKind, UserId, WalletId,
};
use crate::error::Error;
use crate::money::{Money, MoneyError};
use crate::port::{Applied, Apply, Idempotency, Locked};
use crate::request::{IdempotencyKey, Memo, Reason, StepUp};
use crate::sealing::DataKeys;
use crate::window::{RollingSum, hour_of};

use super::draft::{self, Draft};
use super::support::{again_if_changed, code, entity, outflow, state, wallet_stream, with};
use super::views::{TransactionView, open_postings, transaction_view};
use super::{Caller, Ledger, MoneyRequest, Unlocked};

impl Ledger {
    /// Records a refused money operation (feeds the `failed_transactions` alert); a spending
    /// limit's refusal with its event, else only the audit record. A failure to record it is
    /// logged, not returned: the caller's answer is the refusal.
    pub(super) async fn record_refusal(
        &self,
        caller: Caller,
        action: Action,
        wallet: WalletId,
        e: &Error,
    ) {
        let reason = match e {
            Error::Rejected(r) => r.code(),
            Error::WrongPin { .. } => "wrong_pin",
            _ => return,
        };
        let event = AuditEvent::new(
            caller.actor(),
            Action::TransactionFailed,
            Subject::Wallet(entity(wallet.as_uuid())),
            Outcome::Denied,
        );
        let event = with(event, "reason", code(reason));
        let event = with(event, "operation", code(action.as_str()));
        if let Error::Rejected(LedgerError::LimitExceeded {
            kind,
            window,
            remaining,
        }) = e
        {
            // With its `limit.exceeded` event, in one transaction.
            let refusal = (*kind, *window, *remaining);
            match self
                .record_limit_refusal(wallet, action, refusal, &event)
                .await
            {
                Ok(()) => return,
                Err(err) => tracing::error!(error = %err, "could not record a limit's refusal"),
            }
        }
        if let Err(err) = coffer_audit::AuditLog::append(self.audit.as_ref(), &event).await {
            tracing::error!(error = %err, "could not record a refused transaction in the audit log");
        }
    }

    /// The configured maximum holds whatever the adapter parsed the amount against.
    pub(super) fn within_limit(&self, money: Money) -> Result<Money, Error> {
        let max = self.config.max_amount_minor;
        if money.amount.minor() > max {
            return Err(MoneyError::TooLarge { max }.into());
        }
        Ok(money)
    }

    fn idempotency(
        &self,
        caller: Caller,
        kind: TransactionKind,
        wallets: &[Option<WalletId>],
        request: &MoneyRequest,
    ) -> Idempotency {
        let money = request.money;
        let ids: Vec<[u8; 16]> = wallets
            .iter()
            .map(|w| w.map_or([0; 16], |w| *w.as_uuid().as_bytes()))
            .collect();
        let mut parts: Vec<&[u8]> = vec![kind.as_str().as_bytes()];
        parts.extend(ids.iter().map(<[u8; 16]>::as_slice));
        let amount = money.amount.minor().to_be_bytes();
        parts.push(&amount);
        parts.push(money.currency.code().as_bytes());
        parts.push(
            request
                .memo
                .as_ref()
                .map_or(&b"\0none"[..], |m| m.as_str().as_bytes()),
        );
        Idempotency {
            scope: caller.scope(),
            key: request.idempotency_key.as_str().to_owned(),
            fingerprint: domain::request_fingerprint(&parts),
        }
    }

    fn transaction_event(
        &self,
        caller: Caller,
        action: Action,
        draft: &Draft<'_>,
        money: Money,
    ) -> AuditEvent {
        let mut e = AuditEvent::new(
            caller.actor(),
            action,
            Subject::Transaction(entity(draft.id.as_uuid())),
            Outcome::Success,
        )
        .at(draft.at_micros)
        .on_stream(wallet_stream(draft.key_wallet));
        e = with(e, "currency", code(money.currency.code()));
        if let Some(f) = draft.from {
            e = with(e, "from", code(&f.to_string()));
        }
        if let Some(t) = draft.to {
            e = with(e, "to", code(&t.to_string()));
        }
        if let Some(r) = draft.reverses {
            e = with(e, "reverses", code(&r.to_string()));
        }
        let large = 10i64
            .checked_pow(u32::from(money.currency.exponent()))
            .and_then(|scale| self.config.large_transaction_major_units.checked_mul(scale))
            .is_some_and(|limit| money.amount.minor() > limit);
        if large {
            e = with(e, "large", DetailValue::Bool(true));
        }
        e
    }

    /// The view of what `apply` wrote or replayed. `keys` holds the keys of the request's
    /// wallets, which are the transaction's (a replay had the same request).
    pub(super) async fn finish(
        &self,
        applied: Applied,
        keys: &DataKeys,
    ) -> Result<TransactionView, Error> {
        self.observe(&applied).await;
        match applied {
            Applied::Committed {
                mut transactions, ..
            } if transactions.len() == 1 => transaction_view(keys, &transactions.remove(0)),
            Applied::Replayed(t) => transaction_view(keys, &t),
            Applied::Committed { .. } => Err(Error::Storage(
                "the store wrote other than one transaction".into(),
            )),
        }
    }

    /// Deposits money into the caller's wallet.
    ///
    /// # Errors
    /// Money and memo validation, [`Error::WalletNotFound`], the domain's refusals,
    /// [`Error::IdempotencyConflict`], storage and keys.
    pub async fn deposit(
        &self,
        user: UserId,
        wallet: WalletId,
        request: &MoneyRequest,
    ) -> Result<TransactionView, Error> {
        again_if_changed(|| self.deposit_once(user, wallet, request)).await
    }

    async fn deposit_once(
        &self,
        user: UserId,
        wallet: WalletId,
        request: &MoneyRequest,
    ) -> Result<TransactionView, Error> {
        let caller = Caller::User(user);
        let money = self.within_limit(request.money)?;
        let kind = TransactionKind::Deposit;
        let idem = self.idempotency(caller, kind, &[Some(wallet)], request);
        let (loaded, keys) = self.load(&[wallet]).await?;
        if !loaded.iter().all(|w| caller.may_see(&w.record)) {
            return Err(Error::WalletNotFound(wallet));
        }
        let draft = Draft {
            id: TransactionId::new(),
            at_micros: self.now_micros(),
            from: None,
            to: Some(wallet),
            key_wallet: wallet,
            reverses: None,
            hold: None,
            idempotency: &idem,
            memo: request.memo.as_ref().map(Memo::as_str),
            signature: None,
        };
        let event = self.transaction_event(caller, Action::TransactionDeposit, &draft, money);
        let decide = |locked: &Locked<'_>| {
            let s = state(&keys, locked.wallet(wallet)?)?;
            let plan = domain::deposit(&s, money)?;
            draft::changes(
                &keys,
                locked,
                &plan,
                &draft,
                money.currency,
                event.clone(),
                None,
            )
        };
        let result = self
            .apply(
                Apply {
                    lock: vec![wallet],
                    original: None,
                    hold: None,
                    incoming: false,
                    idempotency: Some(&idem),
                    decide: &decide,
                },
                &keys,
            )
            .await;
        match result {
            Ok(applied) => self.finish(applied, &keys).await,
            Err(e) => {
                self.record_refusal(caller, Action::TransactionDeposit, wallet, &e)
                    .await;
                Err(e)
            }
        }
    }

    /// Withdraws money from the caller's wallet; needs its PIN, and a second factor when the
    /// wallet's rolling window would pass `step_up`'s cap.
    ///
    /// # Errors
    /// As [`Ledger::deposit`], plus [`Error::WrongPin`], the lockout and
    /// [`LedgerError::SecondFactorRequired`].
    pub async fn withdraw(
        &self,
        user: UserId,
        wallet: WalletId,
        pin: &Pin,
        request: &MoneyRequest,
        step_up: StepUp,
    ) -> Result<TransactionView, Error> {
        self.money_out(user, wallet, None, pin, request, step_up)
            .await
    }

    /// Transfers money from the caller's wallet to another wallet of the same currency; needs
    /// the PIN of the sending wallet, and a second factor as for [`Ledger::withdraw`].
    ///
    /// # Errors
    /// As [`Ledger::withdraw`], and [`Error::WalletNotFound`] for an unknown receiver.
    pub async fn transfer(
        &self,
        user: UserId,
        from: WalletId,
        to: WalletId,
        pin: &Pin,
        request: &MoneyRequest,
        step_up: StepUp,
    ) -> Result<TransactionView, Error> {
        self.money_out(user, from, Some(to), pin, request, step_up)
            .await
    }

    async fn money_out(
        &self,
        user: UserId,
        from: WalletId,
        to: Option<WalletId>,
        pin: &Pin,
        request: &MoneyRequest,
        step_up: StepUp,
    ) -> Result<TransactionView, Error> {
        again_if_changed(|| self.money_out_once(user, from, to, pin, request, step_up)).await
    }

    async fn money_out_once(
        &self,
        user: UserId,
        from: WalletId,
        to: Option<WalletId>,
        pin: &Pin,
        request: &MoneyRequest,
        step_up: StepUp,
    ) -> Result<TransactionView, Error> {
        let caller = Caller::User(user);
        let (kind, action) = match to {
            Some(_) => (TransactionKind::Transfer, Action::TransactionTransfer),
            None => (TransactionKind::Withdrawal, Action::TransactionWithdrawal),
        };
        let money = self.within_limit(request.money)?;
        let idem = self.idempotency(caller, kind, &[Some(from), to], request);
        if to == Some(from) {
            return Err(LedgerError::SameWallet.into());
        }
        let mut ids = vec![from];
        ids.extend(to);
        let (loaded, keys) = self.load(&ids).await?;
        let sender = loaded
            .iter()
            .find(|w| w.record.id == from)
            .filter(|w| caller.may_see(&w.record))
            .ok_or(Error::WalletNotFound(from))?;
        // The second factor is asked before the PIN is looked at (no attempt counted, no KDF);
        // a retry of a request that was done already is answered as before.
        let hours = self.config.outflow_window_hours;
        let spend = |sum: RollingSum, at_micros: i64| {
            sum.spend(hour_of(at_micros), hours, money.amount, step_up.cap_minor)
        };
        if let Err(refused) = spend(outflow(&keys, &sender.record)?, self.now_micros()) {
            if let Some(view) = self.replay(&idem).await? {
                return Ok(view);
            }
            let refused = Error::from(refused);
            self.record_refusal(caller, action, from, &refused).await;
            return Err(refused);
        }
        let sealed_key = sender.record.signing_key.clone();
        let signing = match self
            .unlock(caller, &sender.record, &keys, pin, Some(&idem))
            .await
        {
            Ok(Unlocked::Key(key)) => key,
            Ok(Unlocked::Replayed(view)) => return Ok(view),
            Err(e) => {
                self.record_refusal(caller, action, from, &e).await;
                return Err(e);
            }
        };
        let mut draft = Draft {
            id: TransactionId::new(),
            at_micros: self.now_micros(),
            from: Some(from),
            to,
            key_wallet: from,
            reverses: None,
            hold: None,
            idempotency: &idem,
            memo: request.memo.as_ref().map(Memo::as_str),
            signature: None,
        };
        let bytes =
            domain::signing_bytes(draft.id, kind, from, to, money, draft.at_micros, &idem.key);
        draft.signature = Some((signing.sign(&bytes), signing.public_key().to_bytes()));
        drop(signing);
        let event = self.transaction_event(caller, action, &draft, money);
        let decide = |locked: &Locked<'_>| {
            let sender = locked.wallet(from)?;
            if sender.signing_key != sealed_key {
                // The PIN changed (or was reset) since it was checked: the PIN just checked
                // may be the old one.
                return Err(Error::Changed(
                    "its PIN changed, or its data key was rotated".into(),
                ));
            }
            let s = state(&keys, sender)?;
            let plan = match to {
                Some(to) => domain::transfer(&s, &state(&keys, locked.wallet(to)?)?, money)?,
                None => domain::withdrawal(&s, money)?,
            };
            let spent = spend(outflow(&keys, sender)?, draft.at_micros)?;
            let kinds = LimitKind::charged(to.is_some(), false);
            let spending =
                self.check_limits(&keys, sender, &kinds, money.amount, draft.at_micros, true)?;
            draft::changes(
                &keys,
                locked,
                &plan,
                &draft,
                money.currency,
                event.clone(),
                Some((&spent, &spending)),
            )
        };
        let result = self
            .apply(
                Apply {
                    lock: ids.clone(),
                    original: None,
                    hold: None,
                    incoming: false,
                    idempotency: Some(&idem),
                    decide: &decide,
                },
                &keys,
            )
            .await;
        match result {
            Ok(applied) => {
                if matches!(applied, Applied::Replayed(_)) {
                    // Another request with this key did the work; this one's right PIN still
                    // ends the run of wrong ones.
                    self.end_wrong_run(caller, &sender.record, &keys).await;
                }
                self.finish(applied, &keys).await
            }
            Err(e) => {
                self.end_wrong_run(caller, &sender.record, &keys).await;
                self.record_refusal(caller, action, from, &e).await;
                Err(e)
            }
        }
    }

    /// Reverses a transaction (administrators only): posts the exact opposite, once.
    ///
    /// # Errors
    /// [`Error::TransactionNotFound`], [`LedgerError::ReversalOfReversal`],
    /// [`LedgerError::AlreadyReversed`], [`LedgerError::InsufficientFunds`], idempotency.
    pub async fn reverse(
        &self,
        admin: UserId,
        transaction: TransactionId,
        reason: &Reason,
        idempotency_key: &IdempotencyKey,
    ) -> Result<TransactionView, Error> {
        again_if_changed(|| self.reverse_once(admin, transaction, reason, idempotency_key)).await
    }

    async fn reverse_once(
        &self,
        admin: UserId,
        transaction: TransactionId,
        reason: &Reason,
        idempotency_key: &IdempotencyKey,
    ) -> Result<TransactionView, Error> {
        let caller = Caller::Admin(admin);
        let original = self
            .store
            .transaction(transaction)
            .await?
            .ok_or(Error::TransactionNotFound(transaction))?;
        let idem = Idempotency {
            scope: caller.scope(),
            key: idempotency_key.as_str().to_owned(),
            fingerprint: domain::request_fingerprint(&[
                b"reversal",
                transaction.as_uuid().as_bytes(),
                reason.as_str().as_bytes(),
            ]),
        };
        let ids = original.wallets();
        let (_, keys) = self.load(&ids).await?;
        let draft = Draft {
            id: TransactionId::new(),
            at_micros: self.now_micros(),
            from: original.to_wallet,
            to: original.from_wallet,
            key_wallet: original.key_wallet,
            reverses: Some(transaction),
            hold: None,
            idempotency: &idem,
            memo: None,
            signature: None,
        };
        let decide = |locked: &Locked<'_>| {
            let orig = locked
                .original
                .ok_or(Error::TransactionNotFound(transaction))?;
            let states = locked
                .wallets
                .iter()
                .map(|w| state(&keys, w))
                .collect::<Result<Vec<_>, _>>()?;
            let plan = domain::reversal(
                &Original {
                    kind: orig.kind,
                    postings: open_postings(&keys, orig)?,
                    reversed: orig.reversed_by.is_some(),
                },
                &states,
            )?;
            let view = transaction_view(&keys, orig)?;
            let event = with(
                self.transaction_event(caller, Action::TransactionReversal, &draft, view.money),
                "reason",
                DetailValue::Code(reason.code().clone()),
            );
            draft::changes(&keys, locked, &plan, &draft, orig.currency, event, None)
        };
        let applied = self
            .apply(
                Apply {
                    lock: ids,
                    original: Some(transaction),
                    hold: None,
                    incoming: false,
                    idempotency: Some(&idem),
                    decide: &decide,
                },
                &keys,
            )
            .await?;
        self.finish(applied, &keys).await
    }
}
