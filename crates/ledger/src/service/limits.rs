//! Spending limits ([`crate::domain::limits`]): which limits a wallet has, where they stand,
//! and an administrator setting them.
//!
//! A wallet's limits are its own when an administrator set them (`wallet.limits_set`, one locked
//! update of its row with its audit record; setting none at all is allowed and means no limit),
//! else its currency's default policy (`LedgerConfig::limits`), read at each operation, so a
//! change of the policy applies at once to every wallet without its own. The use cases that send
//! money check them under the wallet's lock with the balance (`Ledger::check_limits`): a
//! withdrawal or a transfer charges its kind; placing a hold charges nothing but counts, while
//! the hold is live, against the hold limit and its kind's; a capture charges what it captured at
//! the placement. A limit's refusal is recorded with its `limit.exceeded` event
//! (`Ledger::record_limit_refusal`).

use std::sync::{Mutex, PoisonError};

use coffer_audit::{Action, AuditEvent, Outcome, Subject};

use crate::domain::limits::{self, LimitKind, LimitSet, LimitStatus, LimitWindow};
use crate::domain::{Spending, UserId, WalletId, WalletStatus};
use crate::error::Error;
use crate::money::{Amount, Currency};
use crate::port::{Changes, Locked, WalletRecord};
use crate::sealing::DataKeys;

use super::support::{again_if_changed, entity, reserved, rewrite, seal_spending, spending, state};
use super::{Caller, Ledger, events};

/// A wallet's limits and where each stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitsView {
    /// Which wallet.
    pub wallet: WalletId,
    /// Its currency (of every amount here).
    pub currency: Currency,
    /// Set for this wallet by an administrator (else its currency's default policy).
    pub own: bool,
    /// Each limit with what it used and what remains, in kind then window order.
    pub limits: Vec<LimitStatus>,
}

impl Ledger {
    /// The limits that apply to a wallet: its own, else its currency's default policy.
    fn policy<'a>(&'a self, currency: Currency, spending: &'a Spending) -> &'a LimitSet {
        static NONE: LimitSet = LimitSet::none();
        spending
            .limits
            .as_ref()
            .or_else(|| self.config.limits.get(&currency))
            .unwrap_or(&NONE)
    }

    /// Writes a limit's refusal of `action` on `wallet`: its audit record `refused` and its
    /// `limit.exceeded` event, in one transaction under the wallet's lock.
    pub(super) async fn record_limit_refusal(
        &self,
        wallet: WalletId,
        action: Action,
        refusal: (LimitKind, LimitWindow, i64),
        refused: &AuditEvent,
    ) -> Result<(), Error> {
        let operation = match action {
            Action::HoldCreated => "hold",
            Action::TransactionTransfer => "transfer",
            _ => "withdrawal",
        };
        let (_, keys) = self.load(&[wallet]).await?;
        let now = self.now_micros();
        let decide = |locked: &Locked<'_>| {
            let rec = locked.wallet(wallet)?;
            Ok(Changes {
                audit: vec![refused.clone()],
                events: vec![events::limit_exceeded(&keys, rec, now, operation, refusal)?],
                ..Changes::default()
            })
        };
        let applied = self.on_wallet(wallet, &keys, &decide).await?;
        self.observe(&applied).await;
        Ok(())
    }

    /// Checks money-out of `amount` from the locked `rec` at `now` against its limits, counted
    /// against `kinds`; answers its spending field with the amount charged when `charge` (a
    /// withdrawal or a transfer; a hold charges nothing but counts while live).
    pub(super) fn check_limits(
        &self,
        keys: &DataKeys,
        rec: &WalletRecord,
        kinds: &[LimitKind],
        amount: Amount,
        now: i64,
        charge: bool,
    ) -> Result<Spending, Error> {
        let mut s = spending(keys, rec)?;
        let reserved = reserved(keys, rec)?;
        limits::check(
            self.policy(rec.currency, &s),
            &s.usage,
            now,
            &reserved,
            kinds,
            amount,
        )?;
        if charge {
            s.usage = s.usage.charged(kinds, now, now, amount)?;
        }
        Ok(s)
    }

    /// A wallet's limits and where they stand now, for its owner or an administrator.
    ///
    /// # Errors
    /// [`Error::WalletNotFound`] (also another user's), erased, storage.
    pub async fn limits(&self, by: Caller, wallet: WalletId) -> Result<LimitsView, Error> {
        let (loaded, keys) = self.load(&[wallet]).await?;
        let mut rec = loaded
            .into_iter()
            .map(|w| w.record)
            .find(|r| by.may_see(r))
            .ok_or(Error::WalletNotFound(wallet))?;
        let now = self.now_micros();
        rec.holds.retain(|h| h.expires_at > now);
        // An erased wallet's fields no longer open: `state` says so (410), not the key provider.
        state(&keys, &rec)?;
        self.limits_view(&keys, &rec, &spending(&keys, &rec)?, now)
    }

    fn limits_view(
        &self,
        keys: &DataKeys,
        rec: &WalletRecord,
        s: &Spending,
        now: i64,
    ) -> Result<LimitsView, Error> {
        let reserved = reserved(keys, rec)?;
        Ok(LimitsView {
            wallet: rec.id,
            currency: rec.currency,
            own: s.limits.is_some(),
            limits: limits::statuses(self.policy(rec.currency, s), &s.usage, now, &reserved),
        })
    }

    /// Sets a wallet's own limits (an administrator), or with `None` returns it to its currency's
    /// default policy. Its usage is kept: what it sent still counts under the new limits.
    ///
    /// # Errors
    /// [`Error::WalletNotFound`], [`crate::LedgerError::WalletClosed`], erased, storage.
    pub async fn set_limits(
        &self,
        admin: UserId,
        wallet: WalletId,
        limits: Option<LimitSet>,
    ) -> Result<LimitsView, Error> {
        again_if_changed(|| self.set_limits_once(admin, wallet, limits.clone())).await
    }

    async fn set_limits_once(
        &self,
        admin: UserId,
        wallet: WalletId,
        limits: Option<LimitSet>,
    ) -> Result<LimitsView, Error> {
        let (_, keys) = self.load(&[wallet]).await?;
        let caller = Caller::Admin(admin);
        let view = Mutex::new(None);
        let decide = |locked: &Locked<'_>| {
            let rec = locked.wallet(wallet)?;
            let s = state(&keys, rec)?;
            if s.status == WalletStatus::Closed {
                return Err(crate::LedgerError::WalletClosed.into());
            }
            let now = self.now_micros();
            let next = Spending {
                limits: limits.clone(),
                usage: spending(&keys, rec)?.usage,
            };
            let mut change = rewrite(&keys, rec, s.balance)?;
            change.spending = seal_spending(&keys, rec, rec.dek_version, &next)?;
            *view.lock().unwrap_or_else(PoisonError::into_inner) =
                Some(self.limits_view(&keys, rec, &next, now)?);
            Ok(Changes {
                wallets: vec![change],
                audit: vec![
                    AuditEvent::new(
                        caller.actor(),
                        Action::WalletLimitsSet,
                        Subject::Wallet(entity(wallet.as_uuid())),
                        Outcome::Success,
                    )
                    .at(now),
                ],
                ..Changes::default()
            })
        };
        let applied = self.on_wallet(wallet, &keys, &decide).await?;
        self.observe(&applied).await;
        view.into_inner()
            .unwrap_or_else(PoisonError::into_inner)
            .ok_or_else(|| Error::Storage("setting limits decided nothing".into()))
    }
}
