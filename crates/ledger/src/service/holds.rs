//! Holds: money reserved on a wallet for a later capture (a card authorisation, a payout, an
//! escrow), with the guarantees of the rest of the ledger. Each operation is one `apply`: the
//! wallets locked in id order (the hold's paying wallet among them, which serializes everything
//! done to its holds), one database transaction with its audit record.
//!
//! - Placing (the payer, with the wallet's PIN): the rules of the transfer or withdrawal it will
//!   post, against the available balance (posted less live holds); it counts in the rolling
//!   money-out window like money-out. The wallet's signing key signs the hold (its id, wallet,
//!   destination, most it may capture, expiry, key): that signature authorises the captures,
//!   which carry none of their own. It posts nothing; its amount and memo are sealed under the
//!   payer's data key. Its expiry is `ledger.hold_expiry_secs` from now unless the request asks
//!   for less or more, up to `ledger.max_hold_expiry_secs`.
//! - Capturing (a held transfer's payee, or a service account allowed to capture): all of it or
//!   part, never more (`capture_exceeds_hold`); a `capture` transaction from the payer to the
//!   destination (or out, for a held withdrawal) referencing the hold; the rest is released.
//! - Voiding (a held transfer's payee, a held withdrawal's payer, or an administrator; a frozen
//!   wallet's holds too): released in full.
//! - Expiry: an active hold past its expiry counts against nothing and cannot be captured; the
//!   first operation to lock its wallet writes it expired (`Ledger::apply`), as does the worker's
//!   job ([`Ledger::expire_holds`]).
//!
//! A hold resolves once: capture, void and expiry each read the hold under the paying wallet's
//! lock and refuse one that is no longer active (`hold_resolved`, `hold_expired`). Capture and
//! void take an idempotency key: the same request again answers the first result (a capture's
//! through its transaction, a void's through the key kept on the hold). Anyone else asking about
//! a hold gets "not found".

use std::sync::{Mutex, PoisonError};

use coffer_audit::Action;
use coffer_crypto::Pin;

use crate::domain::{
    self, HoldId, HoldStatus, LimitKind, TransactionId, TransactionKind, UserId, WalletId, holds,
};
use crate::error::Error;
use crate::money::Amount;
use crate::port::{
    Applied, Apply, Changes, HoldChange, HoldRecord, Idempotency, Locked, WalletRecord,
};
use crate::request::{IdempotencyKey, StepUp};
use crate::sealing::{DataKeys, hold_amount_aad, hold_memo_aad};
use crate::window::hour_of;

use super::draft::{self, Draft};
use super::support::{
    again_if_changed, code, hold_event, open_hold, outflow, rewrite, seal_outflow, seal_spending,
    spending, state, with,
};
use super::views::{HoldPageView, HoldView, TransactionView, hold_view};
use super::{Caller, Ledger, MAX_PAGE, MoneyRequest, Unlocked};

impl Ledger {
    /// Places a hold on the caller's wallet, for `to` (a held transfer) or for a payout
    /// (`None`), expiring `expires_in_secs` from now (the configured default when `None`).
    ///
    /// # Errors
    /// As [`Ledger::withdraw`], against the available balance; an expiry out of bounds.
    #[allow(clippy::too_many_arguments)]
    pub async fn place_hold(
        &self,
        user: UserId,
        wallet: WalletId,
        to: Option<WalletId>,
        pin: &Pin,
        request: &MoneyRequest,
        expires_in_secs: Option<u32>,
        step_up: StepUp,
    ) -> Result<HoldView, Error> {
        again_if_changed(|| {
            self.place_hold_once(user, wallet, to, pin, request, expires_in_secs, step_up)
        })
        .await
    }

    #[allow(clippy::too_many_arguments)]
    async fn place_hold_once(
        &self,
        user: UserId,
        wallet: WalletId,
        to: Option<WalletId>,
        pin: &Pin,
        request: &MoneyRequest,
        expires_in_secs: Option<u32>,
        step_up: StepUp,
    ) -> Result<HoldView, Error> {
        let caller = Caller::User(user);
        let money = self.within_limit(request.money)?;
        let lifetime = expires_in_secs.unwrap_or(self.config.hold_expiry_secs);
        if lifetime == 0 || lifetime > self.config.max_hold_expiry_secs {
            return Err(Error::invalid(
                "expires_in_secs",
                format!("1 to {}", self.config.max_hold_expiry_secs),
            ));
        }
        if to == Some(wallet) {
            return Err(domain::LedgerError::SameWallet.into());
        }
        let idem = self.hold_idempotency(caller, wallet, to, request, expires_in_secs);
        let mut ids = vec![wallet];
        ids.extend(to);
        let (loaded, keys) = self.load(&ids).await?;
        let payer = loaded
            .iter()
            .find(|w| w.record.id == wallet)
            .filter(|w| caller.may_see(&w.record))
            .ok_or(Error::WalletNotFound(wallet))?;
        let hours = self.config.outflow_window_hours;
        let spend = |sum: crate::RollingSum, at: i64| {
            sum.spend(hour_of(at), hours, money.amount, step_up.cap_minor)
        };
        if let Err(refused) = spend(outflow(&keys, &payer.record)?, self.now_micros()) {
            return self
                .refused_hold(caller, wallet, &idem, refused.into())
                .await;
        }
        let sealed_key = payer.record.signing_key.clone();
        let signing = match self.unlock(caller, &payer.record, &keys, pin, None).await {
            Ok(Unlocked::Key(key)) => key,
            Ok(Unlocked::Replayed(_)) => {
                return Err(Error::Storage("a hold has no transaction".into()));
            }
            Err(e) => return self.refused_hold(caller, wallet, &idem, e).await,
        };
        let (id, at) = (HoldId::new(), self.now_micros());
        let expires_at = at.saturating_add(i64::from(lifetime) * 1_000_000);
        let bytes = domain::holds::hold_signing_bytes(id, wallet, to, money, expires_at, &idem.key);
        let (signature, public_key) = (signing.sign(&bytes), signing.public_key().to_bytes());
        drop(signing);
        let placed: Mutex<Option<HoldRecord>> = Mutex::new(None);
        let decide = |locked: &Locked<'_>| {
            let rec = locked.wallet(wallet)?;
            if rec.signing_key != sealed_key {
                return Err(Error::Changed(
                    "its PIN changed, or its data key was rotated".into(),
                ));
            }
            let s = state(&keys, rec)?;
            let receiver = to.map(|t| state(&keys, locked.wallet(t)?)).transpose()?;
            holds::place_hold(&s, receiver.as_ref(), money)?;
            let kinds = LimitKind::charged(to.is_some(), true);
            self.check_limits(&keys, rec, &kinds, money.amount, at, false)?;
            let spent = spend(outflow(&keys, rec)?, at)?;
            let mut change = rewrite(&keys, rec, s.balance)?;
            change.failed_pins = 0;
            change.outflow = seal_outflow(&keys, rec, rec.dek_version, &spent)?;
            let memo = request
                .memo
                .as_ref()
                .map(|m| {
                    keys.seal(
                        wallet,
                        rec.dek_version,
                        &hold_memo_aad(id),
                        m.as_str().as_bytes(),
                    )
                })
                .transpose()?;
            let hold = HoldRecord {
                id,
                wallet,
                to_wallet: to,
                currency: money.currency,
                amount: keys.seal_i64(
                    wallet,
                    rec.dek_version,
                    &hold_amount_aad(id),
                    money.amount.minor(),
                )?,
                memo,
                created_at: at,
                expires_at,
                status: HoldStatus::Active,
                resolved_at: None,
                capture: None,
                placed: idem.clone(),
                resolved: None,
                signature,
                public_key,
            };
            let event = hold_event(caller.actor(), Action::HoldCreated, &hold, at);
            *placed.lock().unwrap_or_else(PoisonError::into_inner) = Some(hold.clone());
            Ok(Changes {
                wallets: vec![change],
                new_hold: Some(hold),
                audit: vec![event],
                ..Changes::default()
            })
        };
        let result = self
            .apply(
                Apply {
                    lock: ids,
                    original: None,
                    hold: None,
                    incoming: false,
                    idempotency: None,
                    decide: &decide,
                },
                &keys,
            )
            .await;
        match result {
            Ok(applied) => {
                self.observe(&applied).await;
                let hold = placed
                    .into_inner()
                    .unwrap_or_else(PoisonError::into_inner)
                    .ok_or_else(|| Error::Storage("no hold was decided".into()))?;
                hold_view(&keys, &hold, self.now_micros())
            }
            Err(e) => {
                self.end_wrong_run(caller, &payer.record, &keys).await;
                self.refused_hold(caller, wallet, &idem, e).await
            }
        }
    }

    /// A placement refused, or failed on its key's unique index: a retry of one that was done
    /// (or that a concurrent request under the same key did) answers it; anything else is the
    /// refusal, with its audit record. The key is looked up only here, so a new placement pays
    /// no lookup.
    async fn refused_hold(
        &self,
        caller: Caller,
        wallet: WalletId,
        idem: &Idempotency,
        e: Error,
    ) -> Result<HoldView, Error> {
        if let Some(earlier) = self.replay_hold(idem).await? {
            return Ok(earlier);
        }
        self.record_refusal(caller, Action::HoldCreated, wallet, &e)
            .await;
        Err(e)
    }

    fn hold_idempotency(
        &self,
        caller: Caller,
        wallet: WalletId,
        to: Option<WalletId>,
        request: &MoneyRequest,
        expires_in_secs: Option<u32>,
    ) -> Idempotency {
        let to = to.map_or([0; 16], |t| *t.as_uuid().as_bytes());
        let lifetime = expires_in_secs.unwrap_or(0).to_be_bytes();
        let amount = request.money.amount.minor().to_be_bytes();
        Idempotency {
            scope: format!("hold:{}", caller.scope()),
            key: request.idempotency_key.as_str().to_owned(),
            fingerprint: domain::request_fingerprint(&[
                b"hold",
                wallet.as_uuid().as_bytes(),
                &to,
                &amount,
                request.money.currency.code().as_bytes(),
                request
                    .memo
                    .as_ref()
                    .map_or(&b"\0none"[..], |m| m.as_str().as_bytes()),
                &lifetime,
            ]),
        }
    }

    /// The hold placed earlier under this key by the same request, if any.
    async fn replay_hold(&self, idem: &Idempotency) -> Result<Option<HoldView>, Error> {
        match self.store.hold_by_key(&idem.scope, &idem.key).await? {
            Some(h) if h.placed.fingerprint != idem.fingerprint => Err(Error::IdempotencyConflict),
            Some(h) => {
                let (_, keys) = self.load(&[h.wallet]).await?;
                Ok(Some(hold_view(&keys, &h, self.now_micros())?))
            }
            None => Ok(None),
        }
    }

    /// A hold and the keys of its wallets, if `by` may see it: its payer's owner, its payee's
    /// owner, an administrator or a capturing service.
    async fn visible_hold(
        &self,
        by: Caller,
        id: HoldId,
    ) -> Result<(HoldRecord, Vec<WalletRecord>, DataKeys), Error> {
        let hold = self.store.hold(id).await?.ok_or(Error::HoldNotFound(id))?;
        let mut ids = vec![hold.wallet];
        ids.extend(hold.to_wallet);
        let (loaded, keys) = self.load(&ids).await?;
        let wallets: Vec<WalletRecord> = loaded.into_iter().map(|w| w.record).collect();
        let owns = |u: UserId, w: Option<WalletId>| {
            wallets.iter().any(|r| Some(r.id) == w && r.owner == u)
        };
        let visible = match by {
            Caller::User(u) => owns(u, Some(hold.wallet)) || owns(u, hold.to_wallet),
            Caller::Admin(_) | Caller::Service(_) => true,
        };
        if !visible {
            return Err(Error::HoldNotFound(id));
        }
        Ok((hold, wallets, keys))
    }

    /// A hold, as it stands now.
    ///
    /// # Errors
    /// [`Error::HoldNotFound`], also when `by` may not see it.
    pub async fn hold(&self, by: Caller, id: HoldId) -> Result<HoldView, Error> {
        let (hold, _, keys) = self.visible_hold(by, id).await?;
        hold_view(&keys, &hold, self.now_micros())
    }

    /// A page of a wallet's holds, as payer and as payee, newest first, `limit` (1 to
    /// [`MAX_PAGE`]) at a time before `before`: its owner's or an administrator's. A hold whose
    /// payer was erased no longer reads and is left out.
    ///
    /// # Errors
    /// A bad limit; [`Error::WalletNotFound`] (also another user's); erased; storage.
    pub async fn holds_of(
        &self,
        by: Caller,
        wallet: WalletId,
        before: Option<HoldId>,
        limit: u32,
    ) -> Result<HoldPageView, Error> {
        if limit == 0 || limit > MAX_PAGE {
            return Err(Error::invalid("limit", format!("1 to {MAX_PAGE}")));
        }
        let (loaded, _) = self.load(&[wallet]).await?;
        let rec = loaded
            .iter()
            .map(|w| &w.record)
            .find(|r| by.may_see(r))
            .ok_or(Error::WalletNotFound(wallet))?;
        if rec.erased_at.is_some() {
            return Err(domain::LedgerError::Erased.into());
        }
        let page = self.store.holds_of(wallet, before, limit).await?;
        let mut payers: Vec<WalletId> = page.iter().map(|h| h.wallet).collect();
        payers.sort();
        payers.dedup();
        let (_, keys) = self.load(&payers).await?;
        let now = self.now_micros();
        let mut items = Vec::with_capacity(page.len());
        for h in &page {
            match hold_view(&keys, h, now) {
                Ok(v) => items.push(v),
                Err(Error::Rejected(domain::LedgerError::Erased)) => {}
                Err(e) => return Err(e),
            }
        }
        let full = page.len() == usize::try_from(limit).unwrap_or(usize::MAX);
        Ok(HoldPageView {
            items,
            next: page.last().filter(|_| full).map(|h| h.id),
        })
    }

    /// Captures `amount` of a hold (all of it when `None`): a held transfer by its payee's
    /// owner, any hold by a capturing service. Answers the hold and the capture's transaction.
    ///
    /// # Errors
    /// [`Error::HoldNotFound`] (also for anyone else), the hold expired or resolved, more than
    /// it holds, its wallet frozen, the idempotency conflict.
    pub async fn capture_hold(
        &self,
        by: Caller,
        id: HoldId,
        amount: Option<Amount>,
        idempotency_key: &IdempotencyKey,
    ) -> Result<(HoldView, TransactionView), Error> {
        again_if_changed(|| self.capture_once(by, id, amount, idempotency_key)).await
    }

    async fn capture_once(
        &self,
        by: Caller,
        id: HoldId,
        amount: Option<Amount>,
        idempotency_key: &IdempotencyKey,
    ) -> Result<(HoldView, TransactionView), Error> {
        let (hold, wallets, keys) = self.visible_hold(by, id).await?;
        let payee_owner = |u| {
            wallets
                .iter()
                .any(|w| Some(w.id) == hold.to_wallet && w.owner == u)
        };
        let allowed = match by {
            Caller::User(u) => payee_owner(u),
            Caller::Service(_) => true,
            Caller::Admin(_) => false,
        };
        if !allowed {
            return Err(Error::HoldNotFound(id));
        }
        let idem = Idempotency {
            scope: by.scope(),
            key: idempotency_key.as_str().to_owned(),
            fingerprint: domain::request_fingerprint(&[
                b"capture",
                id.as_uuid().as_bytes(),
                &amount.map_or(0, Amount::minor).to_be_bytes(),
            ]),
        };
        let mut lock = vec![hold.wallet];
        lock.extend(hold.to_wallet);
        let now = self.now_micros();
        let draft = Draft {
            id: TransactionId::new(),
            at_micros: now,
            from: Some(hold.wallet),
            to: hold.to_wallet,
            key_wallet: hold.wallet,
            reverses: None,
            hold: Some(id),
            idempotency: &idem,
            memo: None,
            signature: None,
        };
        let captured: Mutex<Option<HoldRecord>> = Mutex::new(None);
        let decide = |locked: &Locked<'_>| {
            let h = locked.hold.ok_or(Error::HoldNotFound(id))?;
            let held = open_hold(&keys, h)?;
            let payer = state(&keys, locked.wallet(h.wallet)?)?;
            let to = h
                .to_wallet
                .map(|t| state(&keys, locked.wallet(t)?))
                .transpose()?;
            let amount = amount.unwrap_or(held.money.amount);
            let plan = holds::capture(&held, &payer, to.as_ref(), amount, now)?;
            let event = with(
                hold_event(by.actor(), Action::HoldCaptured, h, now),
                "transaction",
                code(&draft.id.to_string()),
            );
            let mut changes =
                draft::changes(&keys, locked, &plan, &draft, h.currency, event, None)?;
            // What it captured stays counted at its placement; the rest is given back.
            let rec = locked.wallet(h.wallet)?;
            let mut spent = spending(&keys, rec)?;
            let kinds = LimitKind::charged(h.to_wallet.is_some(), true);
            spent.usage = spent.usage.charged(&kinds, h.created_at, now, amount)?;
            if let Some(c) = changes.wallets.iter_mut().find(|c| c.id == h.wallet) {
                c.spending = seal_spending(&keys, rec, rec.dek_version, &spent)?;
            }
            let change = HoldChange {
                id,
                status: HoldStatus::Captured,
                at: now,
                capture: Some(draft.id),
                resolved: Some(idem.clone()),
            };
            *captured.lock().unwrap_or_else(PoisonError::into_inner) = Some(resolved(h, &change));
            changes.holds.push(change);
            Ok(changes)
        };
        let applied = self
            .apply(
                Apply {
                    lock,
                    original: None,
                    hold: Some(id),
                    incoming: false,
                    idempotency: Some(&idem),
                    decide: &decide,
                },
                &keys,
            )
            .await?;
        let transaction = self.finish(applied, &keys).await?;
        debug_assert_eq!(transaction.kind, TransactionKind::Capture);
        // The hold as this capture wrote it; a replay reads it as stored.
        let hold = match captured
            .into_inner()
            .unwrap_or_else(PoisonError::into_inner)
        {
            Some(h) if transaction.id == draft.id => h,
            _ => self.store.hold(id).await?.ok_or(Error::HoldNotFound(id))?,
        };
        Ok((hold_view(&keys, &hold, self.now_micros())?, transaction))
    }

    /// Voids a hold: a held transfer by its payee's owner, a held withdrawal by its payer's
    /// owner, any hold by an administrator (also on a frozen wallet).
    ///
    /// # Errors
    /// [`Error::HoldNotFound`] (also for anyone else), the hold expired or resolved, the key used
    /// for another request.
    pub async fn void_hold(
        &self,
        by: Caller,
        id: HoldId,
        idempotency_key: &IdempotencyKey,
    ) -> Result<HoldView, Error> {
        let (hold, wallets, keys) = self.visible_hold(by, id).await?;
        let owner_of =
            |w: Option<WalletId>, u| wallets.iter().any(|r| Some(r.id) == w && r.owner == u);
        let allowed = match (by, hold.to_wallet) {
            (Caller::Admin(_), _) => true,
            (Caller::User(u), Some(to)) => owner_of(Some(to), u),
            (Caller::User(u), None) => owner_of(Some(hold.wallet), u),
            (Caller::Service(_), _) => false,
        };
        if !allowed {
            return Err(Error::HoldNotFound(id));
        }
        let idem = Idempotency {
            scope: by.scope(),
            key: idempotency_key.as_str().to_owned(),
            fingerprint: domain::request_fingerprint(&[b"void", id.as_uuid().as_bytes()]),
        };
        let earlier = |h: &HoldRecord| match &h.resolved {
            Some(r) if r.scope == idem.scope && r.key == idem.key => {
                Some(r.fingerprint == idem.fingerprint)
            }
            _ => None,
        };
        match earlier(&hold) {
            Some(true) => return hold_view(&keys, &hold, self.now_micros()),
            Some(false) => return Err(Error::IdempotencyConflict),
            None => {}
        }
        let now = self.now_micros();
        // The hold as this void leaves it (read under the lock: no read after the commit).
        let voided: Mutex<Option<HoldRecord>> = Mutex::new(None);
        let decide = |locked: &Locked<'_>| {
            let h = locked.hold.ok_or(Error::HoldNotFound(id))?;
            let keep = |h: HoldRecord| {
                *voided.lock().unwrap_or_else(PoisonError::into_inner) = Some(h);
            };
            if earlier(h) == Some(true) {
                // The same request, done while this one waited for the lock.
                keep(h.clone());
                return Ok(Changes::default());
            }
            open_hold(&keys, h)?.resolvable(now)?;
            let change = HoldChange {
                id,
                status: HoldStatus::Voided,
                at: now,
                capture: None,
                resolved: Some(idem.clone()),
            };
            keep(resolved(h, &change));
            Ok(Changes {
                holds: vec![change],
                audit: vec![hold_event(by.actor(), Action::HoldVoided, h, now)],
                ..Changes::default()
            })
        };
        let applied = self
            .apply(
                Apply {
                    lock: vec![hold.wallet],
                    original: None,
                    hold: Some(id),
                    incoming: false,
                    idempotency: None,
                    decide: &decide,
                },
                &keys,
            )
            .await?;
        self.observe(&applied).await;
        let hold = voided
            .into_inner()
            .unwrap_or_else(PoisonError::into_inner)
            .ok_or_else(|| Error::Storage("no void was decided".into()))?;
        hold_view(&keys, &hold, self.now_micros())
    }

    /// The expiry job's batch: the wallets of up to `limit` wallets' lapsed holds are locked
    /// one at a time and their lapsed holds written expired (by `apply`, as any operation on
    /// them would), each with its `hold.expired` record. The work list is the holds still
    /// active past their expiry, so a batch cut short leaves the rest to the next, and a hold
    /// another operation expired meanwhile is not expired twice. Answers the holds expired.
    ///
    /// # Errors
    /// Storage; keys.
    pub async fn expire_holds(&self, limit: u32) -> Result<u64, Error> {
        let now = self.now_micros();
        let mut expired = 0u64;
        for wallet in self.store.wallets_with_lapsed_holds(now, limit).await? {
            // The expiries' events are sealed under the wallet's data key.
            let applied = again_if_changed(|| async {
                let (_, keys) = self.load(&[wallet]).await?;
                self.on_wallet(wallet, &keys, &|_| Ok(Changes::default()))
                    .await
            })
            .await?;
            self.observe(&applied).await;
            if let Applied::Committed { audit, .. } = &applied {
                let n = audit
                    .iter()
                    .filter(|(e, _)| e.action == Action::HoldExpired)
                    .count();
                expired += u64::try_from(n).unwrap_or(u64::MAX);
            }
        }
        Ok(expired)
    }
}

/// `h` as `change` resolves it.
fn resolved(h: &HoldRecord, change: &HoldChange) -> HoldRecord {
    HoldRecord {
        status: change.status,
        resolved_at: Some(change.at),
        capture: change.capture,
        resolved: change.resolved.clone(),
        ..h.clone()
    }
}
