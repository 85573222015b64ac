//! The outbox's side of every operation: the events its changes mean, found in the changes
//! themselves (`Ledger::apply` calls [`events`] on what `decide` returned, lapsed holds' expiries
//! included), so no use case lists its own and none can forget one. Opening a wallet, which does
//! not go through `apply`, has [`opened`].
//!
//! Per locked wallet, in this order: holds it pays that were resolved (captured, voided,
//! expired), a hold it placed, its postings, a status change, a PIN lock. Each event carries
//! the wallet's balances after the whole operation, takes the wallet's next sequence number and
//! is sealed under the wallet's current data key, bound to id, wallet and number.

use crate::domain::events::{EventData, EventId, EventKind};
use crate::domain::{
    Account, HoldStatus, LimitKind, LimitWindow, PIN_LOCK_THRESHOLD, WalletId, WalletStatus,
};
use crate::error::Error;
use crate::port::{Changes, EventRecord, Locked, WalletRecord};
use crate::sealing::{DataKeys, balance_aad, event_aad, posting_aad};

use super::support::open_hold;

/// One event of a wallet before its number and balances are known.
struct Draft {
    kind: EventKind,
    data: EventData,
}

fn blank(rec: &WalletRecord) -> EventData {
    EventData {
        event_id: uuid::Uuid::nil(),
        wallet_id: *rec.id.as_uuid(),
        sequence: 0,
        currency: rec.currency.code().to_owned(),
        owner_id: None,
        status: rec.status.as_str().to_owned(),
        transaction_id: None,
        transaction_kind: None,
        hold_id: None,
        amount_minor: None,
        counterparty_wallet_id: None,
        reverses: None,
        expires_at_micros: None,
        operation: None,
        limit_kind: None,
        limit_window: None,
        remaining_minor: None,
        balance_minor: 0,
        available_balance_minor: 0,
    }
}

/// The events `changes` mean for the `locked` wallets (lapsed holds still among their holds),
/// written at `now`, numbered after those already in `changes`.
pub(super) fn events(
    keys: &DataKeys,
    locked: &Locked<'_>,
    changes: &Changes,
    now: i64,
) -> Result<Vec<EventRecord>, Error> {
    let mut out = Vec::new();
    for rec in locked.wallets {
        let drafts = drafts_of(keys, locked, changes, rec)?;
        if drafts.is_empty() {
            continue;
        }
        let (balance, available) = balances_after(keys, rec, changes, now)?;
        // After any event `decide` wrote itself (a limit's refusal).
        let before = changes.events.iter().filter(|e| e.wallet == rec.id).count();
        let base = rec.event_seq + i64::try_from(before).unwrap_or(i64::MAX);
        let status = changes
            .wallets
            .iter()
            .find(|c| c.id == rec.id)
            .map_or(rec.status, |c| c.status);
        for (n, mut d) in (1..).zip(drafts) {
            d.data.status = status.as_str().to_owned();
            d.data.balance_minor = balance;
            d.data.available_balance_minor = available;
            out.push(seal(keys, rec, base + n, d, now)?);
        }
    }
    Ok(out)
}

/// A new wallet's `wallet.opened`, number 1.
pub(super) fn opened(keys: &DataKeys, rec: &WalletRecord) -> Result<EventRecord, Error> {
    let mut data = blank(rec);
    data.owner_id = Some(*rec.owner.as_uuid());
    let kind = EventKind::WalletOpened;
    seal(keys, rec, 1, Draft { kind, data }, rec.created_at)
}

/// A spending limit's refusal of `operation` on the locked `rec`, at `now`: its next number.
pub(super) fn limit_exceeded(
    keys: &DataKeys,
    rec: &WalletRecord,
    now: i64,
    operation: &str,
    refusal: (LimitKind, LimitWindow, i64),
) -> Result<EventRecord, Error> {
    let (balance, available) = super::support::balances(keys, rec, now)?;
    let (kind, window, remaining) = refusal;
    let mut data = blank(rec);
    data.operation = Some(operation.to_owned());
    data.limit_kind = Some(kind.as_str().to_owned());
    data.limit_window = Some(window.as_str().to_owned());
    data.remaining_minor = Some(remaining);
    data.balance_minor = balance.minor();
    data.available_balance_minor = available.minor();
    let kind = EventKind::LimitExceeded;
    seal(keys, rec, rec.event_seq + 1, Draft { kind, data }, now)
}

fn seal(
    keys: &DataKeys,
    rec: &WalletRecord,
    seq: i64,
    mut d: Draft,
    at: i64,
) -> Result<EventRecord, Error> {
    let id = EventId::new();
    d.data.event_id = *id.as_uuid();
    d.data.sequence = seq;
    let aad = event_aad(id, rec.id, seq);
    Ok(EventRecord {
        id,
        wallet: rec.id,
        seq,
        kind: d.kind,
        at,
        data: keys.seal(rec.id, rec.dek_version, &aad, &d.data.to_bytes())?,
    })
}

fn drafts_of(
    keys: &DataKeys,
    locked: &Locked<'_>,
    changes: &Changes,
    rec: &WalletRecord,
) -> Result<Vec<Draft>, Error> {
    let mut drafts = Vec::new();
    for change in &changes.holds {
        let Some(h) = rec
            .holds
            .iter()
            .chain(locked.hold)
            .find(|h| h.id == change.id && h.wallet == rec.id)
        else {
            continue;
        };
        let kind = match change.status {
            HoldStatus::Captured => EventKind::HoldCaptured,
            HoldStatus::Voided => EventKind::HoldVoided,
            HoldStatus::Expired => EventKind::HoldExpired,
            HoldStatus::Active => continue,
        };
        let mut data = blank(rec);
        data.hold_id = Some(*h.id.as_uuid());
        data.amount_minor = Some(open_hold(keys, h)?.money.amount.minor());
        data.transaction_id = change.capture.map(|t| *t.as_uuid());
        data.counterparty_wallet_id = h.to_wallet.map(|w| *w.as_uuid());
        drafts.push(Draft { kind, data });
    }
    if let Some(h) = changes.new_hold.as_ref().filter(|h| h.wallet == rec.id) {
        let mut data = blank(rec);
        data.hold_id = Some(*h.id.as_uuid());
        data.amount_minor = Some(open_hold(keys, h)?.money.amount.minor());
        data.counterparty_wallet_id = h.to_wallet.map(|w| *w.as_uuid());
        data.expires_at_micros = Some(h.expires_at);
        let kind = EventKind::HoldCreated;
        drafts.push(Draft { kind, data });
    }
    for t in &changes.transactions {
        for p in t.postings.iter().filter(|p| p.wallet == Some(rec.id)) {
            let aad = posting_aad(t.id, p.line, Account::Wallet(rec.id));
            let mut data = blank(rec);
            data.transaction_id = Some(*t.id.as_uuid());
            data.transaction_kind = Some(t.kind.as_str().to_owned());
            data.amount_minor = Some(keys.open_i64(rec.id, &aad, &p.amount, "posting")?);
            let other = if t.from_wallet == Some(rec.id) {
                t.to_wallet
            } else {
                t.from_wallet
            };
            data.counterparty_wallet_id = other.map(|w| *w.as_uuid());
            data.reverses = t.reverses.map(|r| *r.as_uuid());
            data.hold_id = t.hold.map(|h| *h.as_uuid());
            let kind = EventKind::TransactionPosted;
            drafts.push(Draft { kind, data });
        }
    }
    if let Some(change) = changes.wallets.iter().find(|c| c.id == rec.id) {
        let kind = match (rec.status, change.status) {
            (a, b) if a == b => None,
            (_, WalletStatus::Frozen) => Some(EventKind::WalletFrozen),
            (_, WalletStatus::Closed) => Some(EventKind::WalletClosed),
            (_, WalletStatus::Active) => Some(EventKind::WalletUnfrozen),
        };
        drafts.extend(kind.map(|kind| Draft {
            kind,
            data: blank(rec),
        }));
        if rec.failed_pins < PIN_LOCK_THRESHOLD && change.failed_pins >= PIN_LOCK_THRESHOLD {
            let kind = EventKind::PinLocked;
            drafts.push(Draft {
                kind,
                data: blank(rec),
            });
        }
    }
    Ok(drafts)
}

/// The wallet's posted and available balances once `changes` are written: its new balance (or
/// the locked one), less the holds still live at `now` that `changes` leave active, less a hold
/// it places.
fn balances_after(
    keys: &DataKeys,
    rec: &WalletRecord,
    changes: &Changes,
    now: i64,
) -> Result<(i64, i64), Error> {
    let balance = match changes.wallets.iter().find(|c| c.id == rec.id) {
        Some(c) => keys.open_i64(
            rec.id,
            &balance_aad(rec.id, rec.version + 1),
            &c.balance,
            "balance",
        )?,
        None => keys.open_i64(
            rec.id,
            &balance_aad(rec.id, rec.version),
            &rec.balance,
            "balance",
        )?,
    };
    let mut held = 0i64;
    let live = rec
        .holds
        .iter()
        .chain(changes.new_hold.as_ref())
        .filter(|h| h.wallet == rec.id && h.expires_at > now)
        .filter(|h| !changes.holds.iter().any(|c| c.id == h.id));
    for h in live {
        held = held.saturating_add(open_hold(keys, h)?.money.amount.minor());
    }
    Ok((balance, balance.saturating_sub(held)))
}

/// Opens an event's payload with its wallet's data keys, checking that it is the one its row
/// names.
///
/// # Errors
/// [`Error::Corrupt`] when it does not open or names another event; a key its wallet got since
/// `keys` were unwrapped, as [`DataKeys::open`].
pub fn open_event(keys: &DataKeys, e: &EventRecord) -> Result<EventData, Error> {
    let plain = keys.open(
        e.wallet,
        &event_aad(e.id, e.wallet, e.seq),
        &e.data,
        "event",
    )?;
    let corrupt = |why: String| Error::Corrupt(format!("event {}: {why}", e.id).into());
    let data = EventData::from_bytes(plain.expose_secret()).map_err(corrupt)?;
    if (data.event_id, data.wallet_id, data.sequence)
        != (*e.id.as_uuid(), *e.wallet.as_uuid(), e.seq)
    {
        return Err(corrupt("its payload names another event".into()));
    }
    Ok(data)
}

impl super::Ledger {
    /// An event's payload, opened under its wallet's data key.
    ///
    /// # Errors
    /// [`LedgerError::Erased`](crate::LedgerError::Erased) when its wallet's keys were
    /// destroyed (the event can no longer be read: it is erased with them); as [`open_event`];
    /// storage and keys.
    pub async fn event_data(&self, e: &EventRecord) -> Result<EventData, Error> {
        let (loaded, keys) = self.load(&[e.wallet]).await?;
        if loaded.iter().any(|w| w.record.erased_at.is_some()) {
            return Err(crate::LedgerError::Erased.into());
        }
        open_event(&keys, e)
    }

    /// The payloads of some of one wallet's events, in their order, its keys loaded once.
    ///
    /// # Errors
    /// As [`Ledger::event_data`]; [`Error::Corrupt`] for an event of another wallet.
    pub async fn events_data(
        &self,
        wallet: WalletId,
        events: &[EventRecord],
    ) -> Result<Vec<EventData>, Error> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let (loaded, keys) = self.load(&[wallet]).await?;
        if loaded.iter().any(|w| w.record.erased_at.is_some()) {
            return Err(crate::LedgerError::Erased.into());
        }
        events
            .iter()
            .map(|e| {
                if e.wallet == wallet {
                    open_event(&keys, e)
                } else {
                    Err(Error::Corrupt(
                        format!("event {} is not of wallet {wallet}", e.id).into(),
                    ))
                }
            })
            .collect()
    }
}
