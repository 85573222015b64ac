//! Helpers the service's modules share. A leaf: it imports nothing from the rest of the service
//! and knows nothing of `Ledger`, so every other module of the service may use it and it uses none
//! of them.
//!
//! - Wallet rows: `state` decrypts a locked or loaded row into the domain's [`WalletState`]
//!   (the balance is sealed bound to its wallet and row version; an erased wallet refuses),
//!   `balance` reads what a view shows (an erased wallet's is zero) and `outflow` its rolling
//!   money-out sum (bound the same way); `rewrite` re-seals one unchanged but for its balance,
//!   for the row's next version, and `seal_outflow` a new sum for it.
//! - Running again: `again_if_changed`. Every operation loads its wallets and unwraps their data
//!   keys before the database transaction, so what it loaded may be stale once the rows are
//!   locked: a data-key rotation committed meanwhile (the [`DataKeys`] meets a version it has not
//!   unwrapped) or the PIN was changed or reset (the wallet's sealed signing key is no longer the
//!   one that was unsealed). Then `decide` answers [`Error::Changed`] and the whole operation runs
//!   again from loading, five times at most. Every use case that changes an existing wallet is a
//!   method that runs its `…_once` inside `again_if_changed`.
//! - PIN checks of one wallet take turns within a process (`WalletTurns`: a queue per wallet,
//!   which exists only while someone waits or holds the turn), so a burst of requests with the
//!   right PIN pays one attempt and one KDF and the rest find the PIN remembered.
//! - Audit details (`entity`, `code`, `with`, `wallet_stream`) and how a failed PIN check
//!   becomes an [`Error`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use coffer_audit::{
    Action, Actor, AuditEvent, Code, DetailValue, EntityId, Outcome, StreamId, Subject,
};
use coffer_crypto::Envelope;

use crate::domain::limits::Reserved;
use crate::domain::{HoldState, LedgerError, Spending, WalletId, WalletState};
use crate::error::{Error, context};
use crate::money::{Amount, Balance, Money};
use crate::pin::PinCheckError;
use crate::port::{HoldRecord, WalletChange, WalletRecord};
use crate::sealing::{DataKeys, balance_aad, hold_amount_aad, outflow_aad, spending_aad};
use crate::window::RollingSum;

/// A queue per wallet (entries exist only while someone waits or holds the turn).
#[derive(Default)]
pub(super) struct WalletTurns(Mutex<HashMap<WalletId, Arc<tokio::sync::Mutex<()>>>>);

/// One wallet's turn; released on drop.
pub(super) struct Turn<'a> {
    turns: &'a WalletTurns,
    wallet: WalletId,
    queue: Arc<tokio::sync::Mutex<()>>,
    guard: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl WalletTurns {
    pub(super) async fn lock(&self, wallet: WalletId) -> Turn<'_> {
        let queue = self
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(wallet)
            .or_default()
            .clone();
        let guard = queue.clone().lock_owned().await;
        Turn {
            turns: self,
            wallet,
            queue,
            guard: Some(guard),
        }
    }
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        drop(self.guard.take());
        let mut map = self.turns.0.lock().unwrap_or_else(PoisonError::into_inner);
        // Under the map's lock nobody can take a new handle: the map's and this one left means
        // nobody waits.
        if Arc::strong_count(&self.queue) == 2 {
            map.remove(&self.wallet);
        }
    }
}

pub(super) fn entity(id: &uuid::Uuid) -> EntityId {
    EntityId::from_uuid(id)
}

/// A token detail: currency codes, UUIDs, action names and refusal codes are all valid tokens.
#[allow(clippy::expect_used)]
pub(super) fn code(s: &str) -> DetailValue {
    DetailValue::Code(Code::parse(s).expect("ledger detail values are tokens"))
}

pub(super) fn wallet_stream(wallet: WalletId) -> StreamId {
    Subject::Wallet(entity(wallet.as_uuid())).default_stream()
}

pub(super) fn corrupt(what: &str, wallet: WalletId) -> impl FnOnce(String) -> Error + '_ {
    move |e| Error::Corrupt(context(format!("{what} of wallet {wallet}"), e))
}

/// Adds a detail. The keys here are literals of `[a-z_]` and no event gets more than six, so
/// the insert cannot fail.
pub(super) fn with(mut event: AuditEvent, key: &str, value: DetailValue) -> AuditEvent {
    let inserted = event.details.insert(key, value);
    debug_assert!(inserted.is_ok(), "detail {key}");
    event
}

pub(super) fn pin_error(e: PinCheckError) -> Error {
    match e {
        PinCheckError::WrongPin => Error::WrongPin { attempts_left: 0 },
        PinCheckError::Corrupt(r) => Error::Corrupt(r.into()),
        PinCheckError::Unavailable | PinCheckError::Busy => Error::Unavailable(e.into()),
    }
}

/// Decrypts a locked or loaded row, its holds counted as held (the caller leaves out lapsed
/// ones: `Ledger::apply` under the locks, the views by the clock). An erased wallet has nothing
/// to decrypt and nothing may change it: [`LedgerError::Erased`].
pub(super) fn state(keys: &DataKeys, rec: &WalletRecord) -> Result<WalletState, Error> {
    if rec.erased_at.is_some() {
        return Err(LedgerError::Erased.into());
    }
    let minor = keys.open_i64(
        rec.id,
        &balance_aad(rec.id, rec.version),
        &rec.balance,
        "balance",
    )?;
    let mut held = Balance::ZERO;
    for h in &rec.holds {
        held = held.credit(open_hold(keys, h)?.money.amount)?;
    }
    Ok(WalletState {
        id: rec.id,
        owner: rec.owner,
        currency: rec.currency,
        status: rec.status,
        balance: Balance::from_minor(minor).ok_or_else(|| {
            Error::Corrupt(format!("negative balance in wallet {}", rec.id).into())
        })?,
        held,
        failed_pins: rec.failed_pins,
    })
}

/// Who expires holds: the ledger itself, at the first operation on the wallet after the expiry,
/// or the worker's job.
#[allow(clippy::expect_used)]
pub(super) fn expiry() -> Actor {
    Actor::Service(EntityId::parse("hold-expiry").expect("a token"))
}

/// A hold's audit record (`hold.created`, `.captured`, `.voided`, `.expired`), on its paying
/// wallet's stream, naming the wallets (never the amount).
pub(super) fn hold_event(by: Actor, action: Action, h: &HoldRecord, at: i64) -> AuditEvent {
    let mut e = AuditEvent::new(
        by,
        action,
        Subject::Hold(entity(h.id.as_uuid())),
        Outcome::Success,
    )
    .at(at)
    .on_stream(wallet_stream(h.wallet));
    e = with(e, "currency", code(h.currency.code()));
    e = with(e, "wallet", code(&h.wallet.to_string()));
    if let Some(to) = h.to_wallet {
        e = with(e, "to", code(&to.to_string()));
    }
    e
}

/// Decrypts a hold (its amount is under its paying wallet's data key).
pub(super) fn open_hold(keys: &DataKeys, h: &HoldRecord) -> Result<HoldState, Error> {
    let minor = keys.open_i64(h.wallet, &hold_amount_aad(h.id), &h.amount, "hold amount")?;
    let amount = Amount::parse(minor, i64::MAX)
        .map_err(|_| Error::Corrupt(format!("hold {} holds nothing", h.id).into()))?;
    Ok(HoldState {
        id: h.id,
        wallet: h.wallet,
        to: h.to_wallet,
        money: Money {
            amount,
            currency: h.currency,
        },
        status: h.status,
        expires_at: h.expires_at,
    })
}

/// A wallet's posted and available balances for its view, its holds lapsed at `now` left out:
/// an erased wallet's are zero (it was closed empty, and a closed wallet receives nothing) and
/// are not decrypted.
pub(super) fn balances(
    keys: &DataKeys,
    rec: &WalletRecord,
    now: i64,
) -> Result<(Balance, Balance), Error> {
    if rec.erased_at.is_some() {
        return Ok((Balance::ZERO, Balance::ZERO));
    }
    let s = if rec.holds.iter().any(|h| h.expires_at <= now) {
        let mut live = rec.clone();
        live.holds.retain(|h| h.expires_at > now);
        state(keys, &live)?
    } else {
        state(keys, rec)?
    };
    Ok((s.balance, s.available()))
}

/// Runs `op` again, four times at most, when the wallet changed between loading it and locking
/// it (its PIN, or a data-key rotation): each run loads afresh.
pub(super) async fn again_if_changed<T, F, Fut>(mut op: F) -> Result<T, Error>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, Error>>,
{
    for _ in 0..4 {
        match op().await {
            Err(Error::Changed(why)) => tracing::debug!(%why, "the wallet changed; trying again"),
            other => return other,
        }
    }
    op().await
}

/// The rolling money-out sum of a locked or loaded row (empty when the row has none).
pub(super) fn outflow(keys: &DataKeys, rec: &WalletRecord) -> Result<RollingSum, Error> {
    let Some(sealed) = &rec.outflow else {
        return Ok(RollingSum::default());
    };
    let plain = keys.open(rec.id, &outflow_aad(rec.id, rec.version), sealed, "outflow")?;
    RollingSum::from_bytes(plain.expose_secret())
        .map_err(|e| corrupt("outflow", rec.id)(e.to_string()))
}

/// `sum` sealed for `rec`'s next version under its data key `dek_version`.
pub(super) fn seal_outflow(
    keys: &DataKeys,
    rec: &WalletRecord,
    dek_version: u32,
    sum: &RollingSum,
) -> Result<Envelope, Error> {
    keys.seal(
        rec.id,
        dek_version,
        &outflow_aad(rec.id, rec.version + 1),
        &sum.to_bytes(),
    )
}

/// The spending field of a locked or loaded row (no own limits, nothing sent when the row has
/// none).
pub(super) fn spending(keys: &DataKeys, rec: &WalletRecord) -> Result<Spending, Error> {
    let Some(sealed) = &rec.spending else {
        return Ok(Spending::default());
    };
    let aad = spending_aad(rec.id, rec.version);
    let plain = keys.open(rec.id, &aad, sealed, "spending")?;
    Spending::from_bytes(plain.expose_secret())
        .map_err(|e| corrupt("spending", rec.id)(e.to_string()))
}

/// `spending` sealed for `rec`'s next version under its data key `dek_version`.
pub(super) fn seal_spending(
    keys: &DataKeys,
    rec: &WalletRecord,
    dek_version: u32,
    spending: &Spending,
) -> Result<Envelope, Error> {
    keys.seal(
        rec.id,
        dek_version,
        &spending_aad(rec.id, rec.version + 1),
        &spending.to_bytes(),
    )
}

/// The money a wallet's live holds reserve, for its limits (`rec.holds` are the live ones:
/// [`state`]'s callers leave out lapsed ones).
pub(super) fn reserved(keys: &DataKeys, rec: &WalletRecord) -> Result<Vec<Reserved>, Error> {
    rec.holds
        .iter()
        .map(|h| {
            Ok(Reserved {
                transfer: h.to_wallet.is_some(),
                amount: open_hold(keys, h)?.money.amount,
                at: h.created_at,
            })
        })
        .collect()
}

/// `rec` unchanged but for `balance`, sealed for the next version.
pub(super) fn rewrite(
    keys: &DataKeys,
    rec: &WalletRecord,
    balance: Balance,
) -> Result<WalletChange, Error> {
    Ok(WalletChange {
        outflow: seal_outflow(keys, rec, rec.dek_version, &outflow(keys, rec)?)?,
        spending: seal_spending(keys, rec, rec.dek_version, &spending(keys, rec)?)?,
        id: rec.id,
        status: rec.status,
        balance: keys.seal_i64(
            rec.id,
            rec.dek_version,
            &balance_aad(rec.id, rec.version + 1),
            balance.minor(),
        )?,
        signing_key: rec.signing_key.clone(),
        public_key: rec.public_key,
        kdf_params: rec.kdf_params.clone(),
        failed_pins: rec.failed_pins,
    })
}
