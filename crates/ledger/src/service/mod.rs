//! The ledger service: every use case, on the storage port, the key port and the audit log.
//!
//! Each operation runs in three steps. Before the database transaction: load the wallets
//! (unlocked), unwrap their data keys, check the PIN (the KDF on the blocking pool) and sign.
//! Inside it ([`LedgerStore::apply`]): decrypt the locked rows, let the domain decide, seal the
//! new balances, postings and memo. After it: hand the audit records to the alert rules. So no
//! key-provider call and no KDF runs while rows are locked. Whatever was loaded before the
//! transaction is checked again under the locks; when the wallet changed meanwhile (its PIN, or
//! a data-key rotation) the operation runs again from loading (`support::again_if_changed`).
//!
//! Users see and move only their own wallets: another user's wallet, or a transaction they have
//! no part in, is "not found". Administrators see every wallet and move no user's money except by
//! reversal.
//!
//! This module holds [`Ledger`], its settings and [`Caller`]; the plumbing the use cases share
//! (loading wallets with their data keys, `apply` on one wallet, a locked update of one wallet's
//! row, the earlier answer under an idempotency key); opening a wallet; and the reads: a wallet,
//! a user's wallets, a transaction, and a wallet's history, newest first, with a cursor that is
//! the wallet's own row version, so new activity never shifts a page. The use cases are
//! `impl Ledger` blocks in its modules:
//!
//! - `money`: deposit, withdraw, transfer and reverse; the transfer path, idempotency, refusals;
//! - `pin_attempts`: unsealing a signing key with a PIN, each guess counted before the KDF runs;
//!   PIN change, reset and unlock;
//! - `admin`: freeze, unfreeze and close;
//! - `data_key`: data-key rotation;
//! - `erasure`: an owner's wallets closed empty and their data keys destroyed (a user's
//!   erasure);
//! - `holds`: money reserved for a later capture: placed, captured, voided, expired;
//! - `backfill`: the receiver copies of transfers' memos written before they existed;
//! - `draft`: what a transaction the domain planned writes (money, and the erasure's sweep);
//! - `events`: the outbox events an operation's changes mean, added by `Ledger::apply`, and a
//!   limit's refusal's;
//! - `views`: what callers get back, and how stored rows decrypt into it;
//! - `support`: the helpers that know nothing of [`Ledger`] (wallet rows, running again, PIN
//!   turns, audit details).
//!
//! The time is an input: [`Ledger::new`] reads the system clock, [`Ledger::with_clock`] another
//! (`coffer_clock::ManualClock` in tests); every timestamp the service writes (wallet rows,
//! transactions, their audit records' times) is read from it.
//!
//! Dependencies point one way. The use-case modules use this module, `draft`, `events`, `views`
//! and `support`, and never one another's items (money-out calls `pin_attempts`' `unlock` as a
//! method of [`Ledger`]); this module uses `events`, `views` and `support`; `draft` uses those
//! two, `events` uses `support`, and those two use nothing else of the service.

mod admin;
mod backfill;
mod data_key;
mod draft;
mod erasure;
mod events;
mod holds;
mod limits;
mod money;
mod pin_attempts;
mod support;
mod views;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use coffer_audit::{Action, Actor, AuditEvent, ObservedAuditLog, Outcome, Subject};
use coffer_clock::Clock;
use coffer_crypto::{KdfParams, KeyRef, Pin, WalletSigningKey};
use coffer_keys::KeyProvider;

use crate::domain::{
    self, HoldStatus, LedgerError, LimitSet, TransactionId, UserId, WalletId, WalletState,
    WalletStatus,
};
use crate::error::{Error, context};
use crate::money::{Balance, Currency};
use crate::pin::{PinVerifier, PinVerifierConfig};
use crate::port::{
    Applied, Apply, Changes, DataKeyRecord, HistoryFilter, HoldChange, HoldRecord, Idempotency,
    LedgerStore, LoadedWallet, Locked, NewWallet, TransactionRecord, WalletChange, WalletFilter,
    WalletRecord,
};
use crate::request::{HistoryCursor, WalletCursor};
use crate::sealing::{DataKeys, balance_aad, signing_key_aad, wallet_key_context};
pub use backfill::MemoBackfill;
pub use erasure::Unclaimed;
pub use events::open_event;
pub use limits::LimitsView;
use support::{
    WalletTurns, again_if_changed, balances, code, entity, expiry, hold_event, pin_error, rewrite,
    state, with,
};
use views::wallet_view;
pub use views::{
    HistoryPageView, HoldPageView, HoldView, TransactionView, WalletPageView, WalletView,
};
pub(crate) use views::{open_postings, transaction_view};

pub use crate::request::{MAX_IDEMPOTENCY_KEY_LEN, MAX_MEMO_CHARS, MoneyRequest};

/// Largest history page.
pub const MAX_PAGE: u32 = 200;

/// Ledger settings.
#[derive(Debug, Clone)]
pub struct LedgerConfig {
    /// Largest amount of one operation, in minor units.
    pub max_amount_minor: i64,
    /// PBKDF2 iterations for new PINs.
    pub kdf_iterations: u32,
    /// The PIN verifier's bounds and cache.
    pub pins: PinVerifierConfig,
    /// Transactions above this many major units are flagged `large` in their audit record
    /// (the `large_transaction` alert); amounts themselves never enter the audit log.
    pub large_transaction_major_units: i64,
    /// Most wallets one owner may hold, whatever their status.
    pub max_wallets_per_user: u32,
    /// The rolling window money-out is summed over for the second-factor threshold
    /// ([`StepUp`](crate::StepUp)), in hours.
    pub outflow_window_hours: u32,
    /// Most transactions one history page reads to find those in an amount range (amounts are
    /// sealed, so the range is applied after decryption).
    pub amount_scan_limit: usize,
    /// A hold's lifetime when the request names none, in seconds.
    pub hold_expiry_secs: u32,
    /// The longest lifetime a hold may ask for, in seconds.
    pub max_hold_expiry_secs: u32,
    /// Per currency, where an erasure sweeps what is left in the erased user's wallets, and up
    /// to how much; a currency without one sweeps nothing (its wallets must be empty).
    pub unclaimed: HashMap<Currency, Unclaimed>,
    /// Per currency, the spending limits of its wallets that have none of their own; a
    /// currency without a policy limits nothing.
    pub limits: HashMap<Currency, LimitSet>,
}

impl Default for LedgerConfig {
    fn default() -> Self {
        Self {
            max_amount_minor: 1_000_000_000_000,
            kdf_iterations: coffer_crypto::pin::DEFAULT_ITERATIONS,
            pins: PinVerifierConfig::default(),
            large_transaction_major_units: 10_000,
            max_wallets_per_user: 20,
            outflow_window_hours: 24,
            amount_scan_limit: 1_000,
            hold_expiry_secs: 7 * 24 * 3600,
            max_hold_expiry_secs: 30 * 24 * 3600,
            unclaimed: HashMap::new(),
            limits: HashMap::new(),
        }
    }
}

/// Who asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Caller {
    /// A user: sees and moves only their own wallets.
    User(UserId),
    /// An administrator: sees every wallet, moves no user's money except by reversal.
    Admin(UserId),
    /// A service account allowed to capture holds (a payout service): sees no wallet, captures
    /// any hold.
    Service(UserId),
}

impl Caller {
    fn actor(self) -> Actor {
        match self {
            Self::User(u) | Self::Service(u) => Actor::User(entity(u.as_uuid())),
            Self::Admin(u) => Actor::Admin(entity(u.as_uuid())),
        }
    }

    fn scope(self) -> String {
        match self {
            Self::User(u) => format!("user:{u}"),
            Self::Admin(u) => format!("admin:{u}"),
            Self::Service(u) => format!("service:{u}"),
        }
    }

    fn may_see(self, wallet: &WalletRecord) -> bool {
        match self {
            Self::User(u) => wallet.owner == u,
            Self::Admin(_) => true,
            Self::Service(_) => false,
        }
    }
}

/// See the [module documentation](self).
pub struct Ledger {
    store: Arc<dyn LedgerStore>,
    keys: Arc<dyn KeyProvider>,
    audit: Arc<ObservedAuditLog>,
    pins: PinVerifier,
    pin_turns: WalletTurns,
    config: LedgerConfig,
    clock: Arc<dyn Clock>,
}

coffer_macros::debug_non_exhaustive!(self => Ledger { store, keys, config });

/// What [`Ledger::unlock`] found.
enum Unlocked {
    /// The signing key: the PIN was right.
    Key(WalletSigningKey),
    /// The request repeats an earlier one: its answer.
    Replayed(TransactionView),
}

impl Ledger {
    /// A ledger on these ports. `keys` should be a caching decorator in production.
    #[must_use]
    pub fn new(
        store: Arc<dyn LedgerStore>,
        keys: Arc<dyn KeyProvider>,
        audit: Arc<ObservedAuditLog>,
        config: LedgerConfig,
    ) -> Self {
        Self {
            store,
            keys,
            audit,
            pins: PinVerifier::new(config.pins),
            pin_turns: WalletTurns::default(),
            config,
            clock: coffer_clock::system(),
        }
    }

    /// The same ledger, reading the time from `clock`.
    #[must_use]
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Now, in microseconds since the Unix epoch, on the ledger's clock.
    pub(crate) fn now_micros(&self) -> i64 {
        self.clock.unix_micros()
    }

    /// The storage port (for the worker's maintenance and the tests).
    #[must_use]
    pub fn store(&self) -> &Arc<dyn LedgerStore> {
        &self.store
    }

    /// The PIN verifier (its metrics).
    #[must_use]
    pub fn pins(&self) -> &PinVerifier {
        &self.pins
    }

    /// The settings.
    #[must_use]
    pub fn config(&self) -> &LedgerConfig {
        &self.config
    }

    async fn keyring(&self, wallets: &[LoadedWallet]) -> Result<DataKeys, Error> {
        let mut keys = DataKeys::default();
        keys.unwrap(self.keys.as_ref(), wallets).await?;
        Ok(keys)
    }

    /// Loads `ids` (all must exist) with their keys.
    async fn load(&self, ids: &[WalletId]) -> Result<(Vec<LoadedWallet>, DataKeys), Error> {
        let loaded = self.store.load_wallets(ids).await?;
        if let Some(missing) = ids
            .iter()
            .find(|id| !loaded.iter().any(|w| w.record.id == **id))
        {
            return Err(Error::WalletNotFound(*missing));
        }
        let keys = self.keyring(&loaded).await?;
        Ok((loaded, keys))
    }

    async fn observe(&self, applied: &Applied) {
        if let Applied::Committed { audit, .. } = applied {
            self.audit.committed_elsewhere(audit).await;
        }
    }

    /// [`LedgerStore::apply`], every operation's one way to it: the locked wallets' lapsed holds
    /// (active, their expiry reached on the ledger's clock) are left out of what `decide` sees,
    /// so nothing counts them, and are written expired with the operation, each with its
    /// `hold.expired` record. Every change is written with its events (`events`), sealed under
    /// `keys` (which hold the locked wallets' data keys). A refused operation writes nothing,
    /// those expiries included: the next one, or the worker's expiry job, writes them.
    async fn apply(&self, op: Apply<'_>, keys: &DataKeys) -> Result<Applied, Error> {
        let now = self.now_micros();
        let inner = op.decide;
        let decide = |locked: &Locked<'_>| -> Result<Changes, Error> {
            let lapsed: Vec<&HoldRecord> = locked
                .wallets
                .iter()
                .flat_map(|w| &w.holds)
                .filter(|h| h.expires_at <= now)
                .collect();
            let mut changes = if lapsed.is_empty() {
                inner(locked)?
            } else {
                let wallets: Vec<WalletRecord> = locked
                    .wallets
                    .iter()
                    .map(|w| {
                        let mut w = w.clone();
                        w.holds.retain(|h| h.expires_at > now);
                        w
                    })
                    .collect();
                inner(&Locked {
                    wallets: &wallets,
                    ..*locked
                })?
            };
            for h in lapsed {
                changes.holds.push(HoldChange {
                    id: h.id,
                    status: HoldStatus::Expired,
                    at: now,
                    capture: None,
                    resolved: None,
                });
                changes
                    .audit
                    .push(hold_event(expiry(), Action::HoldExpired, h, now));
            }
            let derived = events::events(keys, locked, &changes, now)?;
            changes.events.extend(derived);
            Ok(changes)
        };
        self.store
            .apply(Apply {
                decide: &decide,
                ..op
            })
            .await
    }

    /// `apply` on one wallet, for the operations that take no idempotency key.
    async fn on_wallet(
        &self,
        wallet: WalletId,
        keys: &DataKeys,
        decide: &(dyn Fn(&Locked<'_>) -> Result<Changes, Error> + Send + Sync),
    ) -> Result<Applied, Error> {
        self.apply(
            Apply {
                lock: vec![wallet],
                original: None,
                hold: None,
                incoming: false,
                idempotency: None,
                decide,
            },
            keys,
        )
        .await
    }

    /// The earlier result under this idempotency key, if the same request made it.
    async fn replay(&self, idem: &Idempotency) -> Result<Option<TransactionView>, Error> {
        match self.store.idempotent(&idem.scope, &idem.key).await? {
            Some(t) if t.fingerprint != idem.fingerprint => Err(Error::IdempotencyConflict),
            Some(t) => Ok(Some(self.view_of(&t).await?)),
            None => Ok(None),
        }
    }

    async fn view_of(&self, t: &TransactionRecord) -> Result<TransactionView, Error> {
        let mut ids = t.wallets();
        ids.push(t.key_wallet);
        ids.sort();
        ids.dedup();
        let loaded = self.store.load_wallets(&ids).await?;
        let keys = self.keyring(&loaded).await?;
        transaction_view(&keys, t)
    }

    /// Applies `mutate` to one wallet's locked state and records `action`.
    async fn update_wallet(
        &self,
        caller: Caller,
        wallet: WalletId,
        action: Action,
        keys: &DataKeys,
        mutate: &(dyn Fn(&WalletState, &mut WalletChange) -> Result<(), Error> + Send + Sync),
    ) -> Result<WalletView, Error> {
        let view = Mutex::new(None);
        let decide = |locked: &Locked<'_>| {
            let rec = locked.wallet(wallet)?;
            if !caller.may_see(rec) {
                return Err(Error::WalletNotFound(wallet));
            }
            let s = state(keys, rec)?;
            let mut change = rewrite(keys, rec, s.balance)?;
            mutate(&s, &mut change)?;
            let updated = WalletRecord {
                status: change.status,
                version: rec.version + 1,
                public_key: change.public_key,
                failed_pins: change.failed_pins,
                updated_at: self.now_micros(),
                ..rec.clone()
            };
            *view.lock().unwrap_or_else(PoisonError::into_inner) =
                Some(wallet_view(&updated, (s.balance, s.available())));
            let new_public_key =
                (change.public_key != rec.public_key).then_some((wallet, change.public_key));
            Ok(Changes {
                wallets: vec![change],
                new_public_key,
                audit: vec![AuditEvent::new(
                    caller.actor(),
                    action,
                    Subject::Wallet(entity(wallet.as_uuid())),
                    Outcome::Success,
                )],
                ..Changes::default()
            })
        };
        let applied = self.on_wallet(wallet, keys, &decide).await?;
        self.observe(&applied).await;
        view.into_inner()
            .unwrap_or_else(PoisonError::into_inner)
            .ok_or_else(|| Error::Storage("wallet update decided nothing".into()))
    }

    async fn admin_update(
        &self,
        admin: UserId,
        wallet: WalletId,
        action: Action,
        mutate: &(dyn Fn(&WalletState, &mut WalletChange) -> Result<(), Error> + Send + Sync),
    ) -> Result<WalletView, Error> {
        again_if_changed(|| self.admin_update_once(admin, wallet, action, mutate)).await
    }

    async fn admin_update_once(
        &self,
        admin: UserId,
        wallet: WalletId,
        action: Action,
        mutate: &(dyn Fn(&WalletState, &mut WalletChange) -> Result<(), Error> + Send + Sync),
    ) -> Result<WalletView, Error> {
        let (_, keys) = self.load(&[wallet]).await?;
        let view = self
            .update_wallet(Caller::Admin(admin), wallet, action, &keys, mutate)
            .await?;
        self.pins.forget(wallet);
        Ok(view)
    }

    // ---- wallets ----

    /// Opens a wallet for `owner` with `pin`.
    ///
    /// # Errors
    /// Key provider or storage failures.
    pub async fn open_wallet(
        &self,
        owner: UserId,
        currency: Currency,
        pin: &Pin,
    ) -> Result<WalletView, Error> {
        domain::new_pin(pin)?;
        let id = WalletId::new();
        let generated = self.keys.generate_data_key(&wallet_key_context(id)).await?;
        let params = KdfParams::generate(self.config.kdf_iterations)
            .map_err(|e| Error::Storage(context("KDF parameters", e)))?;
        let pin_key = self.pins.derive(pin, &params).await.map_err(pin_error)?;
        let signing = WalletSigningKey::generate();
        let sealed = signing
            .seal(
                &pin_key,
                &generated.plaintext,
                &KeyRef::version_only(1),
                &signing_key_aad(id),
            )
            .map_err(|e| Error::Storage(e.into()))?;
        let mut keys = DataKeys::default();
        keys.insert(id, 1, generated.plaintext);
        let now = self.now_micros();
        let record = WalletRecord {
            id,
            owner,
            currency,
            status: WalletStatus::Active,
            version: 1,
            balance: keys.seal_i64(id, 1, &balance_aad(id, 1), 0)?,
            dek_version: 1,
            signing_key: sealed,
            public_key: signing.public_key().to_bytes(),
            kdf_params: params,
            failed_pins: 0,
            outflow: None,
            spending: None,
            event_seq: 1,
            holds: Vec::new(),
            created_at: now,
            updated_at: now,
            erased_at: None,
        };
        let audit = with(
            AuditEvent::new(
                Caller::User(owner).actor(),
                Action::WalletCreate,
                Subject::Wallet(entity(id.as_uuid())),
                Outcome::Success,
            )
            .at(now),
            "currency",
            code(currency.code()),
        );
        let wrapped = generated.wrapped;
        let receipt = self
            .store
            .create_wallet(NewWallet {
                record: record.clone(),
                max_per_owner: self.config.max_wallets_per_user,
                key: DataKeyRecord {
                    wallet: id,
                    version: 1,
                    kek_version: wrapped.version,
                    wrapped,
                },
                audit: audit.clone(),
                event: events::opened(&keys, &record)?,
            })
            .await?;
        self.audit.committed_elsewhere(&[(audit, receipt)]).await;
        Ok(wallet_view(&record, (Balance::ZERO, Balance::ZERO)))
    }

    /// One wallet, decrypted.
    ///
    /// # Errors
    /// [`Error::WalletNotFound`] also when it is not the caller's.
    pub async fn wallet(&self, caller: Caller, id: WalletId) -> Result<WalletView, Error> {
        let (loaded, keys) = self.load(&[id]).await?;
        let rec = &loaded.first().ok_or(Error::WalletNotFound(id))?.record;
        if !caller.may_see(rec) {
            return Err(Error::WalletNotFound(id));
        }
        Ok(wallet_view(rec, balances(&keys, rec, self.now_micros())?))
    }

    /// The owner's wallets, oldest first, `limit` (1 to [`MAX_PAGE`]) at a time after
    /// `after`: only the page's data keys are unwrapped.
    ///
    /// # Errors
    /// A bad limit, storage, keys, corruption.
    pub async fn wallets_of(
        &self,
        owner: UserId,
        after: Option<WalletCursor>,
        limit: u32,
    ) -> Result<WalletPageView, Error> {
        let filter = WalletFilter {
            owner: Some(owner),
            ..WalletFilter::default()
        };
        self.wallets_where(&filter, after, limit).await
    }

    /// The wallets `filter` selects, oldest first, `limit` (1 to [`MAX_PAGE`]) at a time after
    /// `after`: an operator's search (by owner, status, currency). Who may ask is the caller's
    /// rule (the use cases allow administrators); only the page's data keys are unwrapped.
    ///
    /// # Errors
    /// A bad limit, storage, keys, corruption.
    pub async fn wallets_where(
        &self,
        filter: &WalletFilter,
        after: Option<WalletCursor>,
        limit: u32,
    ) -> Result<WalletPageView, Error> {
        if limit == 0 || limit > MAX_PAGE {
            return Err(Error::invalid("limit", format!("1 to {MAX_PAGE}")));
        }
        let records = self
            .store
            .wallets_where(filter, after.map(|c| c.0), limit)
            .await?;
        let ids: Vec<_> = records.iter().map(|r| r.id).collect();
        let (loaded, keys) = self.load(&ids).await?;
        let now = self.now_micros();
        let items = loaded
            .iter()
            .map(|w| Ok(wallet_view(&w.record, balances(&keys, &w.record, now)?)))
            .collect::<Result<Vec<_>, Error>>()?;
        let full = records.len() == usize::try_from(limit).unwrap_or(usize::MAX);
        Ok(WalletPageView {
            items,
            next_cursor: records
                .last()
                .filter(|_| full)
                .map(|r| WalletCursor(r.id).to_string()),
        })
    }

    // ---- reads ----

    /// One transaction, for a caller who owns one of its wallets (or an administrator).
    ///
    /// # Errors
    /// [`Error::TransactionNotFound`] also when the caller has no part in it.
    pub async fn transaction(
        &self,
        caller: Caller,
        id: TransactionId,
    ) -> Result<TransactionView, Error> {
        let t = self
            .store
            .transaction(id)
            .await?
            .ok_or(Error::TransactionNotFound(id))?;
        let mut ids = t.wallets();
        ids.push(t.key_wallet);
        ids.sort();
        ids.dedup();
        let loaded = self.store.load_wallets(&ids).await?;
        if !loaded.iter().any(|w| caller.may_see(&w.record)) {
            return Err(Error::TransactionNotFound(id));
        }
        let keys = self.keyring(&loaded).await?;
        transaction_view(&keys, &t)
    }

    /// A wallet's transactions, newest first, `limit` (1 to [`MAX_PAGE`]) at a time. The
    /// cursor points into the wallet's own sequence, so new transactions never shift a page.
    ///
    /// # Errors
    /// [`Error::Invalid`] for a bad limit; not found.
    pub async fn history(
        &self,
        caller: Caller,
        wallet: WalletId,
        before: Option<HistoryCursor>,
        limit: u32,
    ) -> Result<HistoryPageView, Error> {
        self.history_where(caller, wallet, &HistoryFilter::default(), before, limit)
            .await
    }

    /// As [`Ledger::history`], only the transactions `filter` selects (by kind, time and the
    /// other wallet in the store; by amount here, after decryption, reading at most
    /// [`LedgerConfig::amount_scan_limit`] transactions a page: a page that stopped there says so
    /// and its cursor goes on); the cursor of a filtered page continues the same filter.
    ///
    /// # Errors
    /// [`Error::Invalid`] for a bad limit, an empty time or amount range; not found.
    pub async fn history_where(
        &self,
        caller: Caller,
        wallet: WalletId,
        filter: &HistoryFilter,
        before: Option<HistoryCursor>,
        limit: u32,
    ) -> Result<HistoryPageView, Error> {
        if let (Some(from), Some(to)) = (filter.from_micros, filter.to_micros)
            && from >= to
        {
            return Err(Error::invalid("to", "later than from"));
        }
        if limit == 0 || limit > MAX_PAGE {
            return Err(Error::invalid("limit", format!("1 to {MAX_PAGE}")));
        }
        if filter.min_amount.is_some_and(|m| m < 0) {
            return Err(Error::invalid("min_amount", "not negative"));
        }
        if let (Some(min), Some(max)) = (filter.min_amount, filter.max_amount)
            && min > max
        {
            return Err(Error::invalid("max_amount", "at least min_amount"));
        }
        let (loaded, mut keys) = self.load(&[wallet]).await?;
        if !loaded.iter().all(|w| caller.may_see(&w.record)) {
            return Err(Error::WalletNotFound(wallet));
        }
        if loaded.iter().any(|w| w.record.erased_at.is_some()) {
            return Err(LedgerError::Erased.into());
        }
        let (balance, available) = match loaded.first() {
            Some(w) => balances(&keys, &w.record, self.now_micros())?,
            None => return Err(Error::WalletNotFound(wallet)),
        };
        // Pages of the store's candidates until `limit` match the amounts (every candidate does
        // without an amount range), the wallet's history ends, or `amount_scan_limit` were read.
        let want = usize::try_from(limit).unwrap_or(usize::MAX);
        let mut items = Vec::new();
        let mut cursor = before.map(HistoryCursor::seq);
        let mut scanned = 0;
        // `cursor` moves past each transaction read, so the next store page starts after it.
        loop {
            let page = self.store.history(wallet, filter, cursor, limit).await?;
            let mut others: Vec<WalletId> = page
                .iter()
                .flat_map(|(_, t)| t.wallets().into_iter().chain([t.key_wallet]))
                .filter(|w| !keys.holds(*w))
                .collect();
            others.sort();
            others.dedup();
            if !others.is_empty() {
                let more = self.store.load_wallets(&others).await?;
                keys.unwrap(self.keys.as_ref(), &more).await?;
            }
            let end = page.len() < want;
            for (i, (seq, t)) in page.iter().enumerate() {
                scanned += 1;
                cursor = Some(*seq);
                let view = transaction_view(&keys, t)?;
                if filter.amount_matches(view.money.amount.minor()) {
                    items.push(view);
                }
                if end && i + 1 == page.len() {
                    break;
                }
                let stopped_early = scanned >= self.config.amount_scan_limit;
                if items.len() == want || stopped_early {
                    return Ok(HistoryPageView {
                        stopped_early: stopped_early && items.len() < want,
                        items,
                        next_cursor: Some(HistoryCursor(*seq).to_string()),
                        balance,
                        available,
                    });
                }
            }
            if end {
                return Ok(HistoryPageView {
                    items,
                    next_cursor: None,
                    stopped_early: false,
                    balance,
                    available,
                });
            }
        }
    }

    pub(crate) fn key_provider(&self) -> &dyn KeyProvider {
        self.keys.as_ref()
    }

    pub(crate) fn audit_log(&self) -> &ObservedAuditLog {
        &self.audit
    }
}
