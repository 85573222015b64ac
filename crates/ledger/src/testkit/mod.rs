//! The ledger storage port's contract suite. Every adapter runs all of it through
//! [`ledger_store_contract_tests!`](crate::ledger_store_contract_tests), which expands to one
//! `#[tokio::test]` per case, each on a fresh, empty database. The cases drive the whole
//! [`Ledger`] service over the adapter, so they check what users rely on: the rules, the
//! idempotency, the encryption at rest, and the books under concurrency.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use async_trait::async_trait;
use coffer_audit::{Action, AlertConfig, AuditLog, EntityId, ObservedAuditLog};
use coffer_keys::testkit::{DataKeyCall, Intercepted};
use coffer_keys::{KeyError, KeyProvider};
use futures_util::future::join_all;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use crate::port::{
    Applied, Apply, HistoryPage, LedgerStore, LoadedWallet, Locked, NewWallet, PostingRecord,
    TransactionRecord, WalletRecord,
};
use crate::verify::{Problem, VerifyOptions};
use crate::{
    Caller, Error, Ledger, LedgerConfig, LedgerError, MoneyError, TransactionId, TransactionKind,
    UserId, WalletId, WalletStatus,
};

mod client;
mod erased;
mod events;
mod holds;
mod integrity;
mod limits;
mod money;
mod pins;
mod search;
mod window;

pub use client::{Client, MoneyRequest};
pub use erased::*;
pub use events::*;
pub use holds::*;
pub use integrity::*;
pub use limits::*;
pub use money::*;
use pins::wallet_audit_actions;
pub use pins::*;
pub use search::*;
pub use window::*;

/// What an adapter's test provides: its database, opened as often as a test needs.
#[async_trait]
pub trait Backend: Send + Sync {
    /// Opens a store and an audit log on this test's database, as a new process would (a
    /// "restart" opens again).
    async fn open(&self, keys: Arc<dyn KeyProvider>) -> (Arc<dyn LedgerStore>, Arc<dyn AuditLog>);
    /// Every byte stored in the database's tables (or files), for the plaintext scan.
    async fn raw_dump(&self) -> Vec<u8>;
    /// Runs a statement as the schema owner (tamper tests).
    async fn tamper(&self, sql: &str);
    /// The master key provider.
    fn keys(&self) -> Arc<dyn KeyProvider>;
}

#[doc(hidden)]
pub use coffer_macros::contract_cases;

/// Expands to one test per contract case.
#[macro_export]
macro_rules! ledger_store_contract_tests {
    ($factory:expr) => {
        $crate::testkit::contract_cases!(
            threads = 4, $factory, |backend| $crate::testkit(&backend);
            wallets_open_and_only_their_owner_sees_them,
            an_owner_holds_no_more_wallets_than_the_limit,
            an_operator_finds_wallets_by_owner_status_and_currency,
            money_moves_by_double_entry_and_keys_are_never_fetched_under_lock,
            refusals_have_their_own_errors_and_write_nothing,
            frozen_wallets_receive_and_send_nothing,
            closed_wallets_accept_nothing_and_close_only_empty,
            wrong_pins_lock_money_out_and_the_count_survives_a_restart,
            guesses_sent_at_once_get_no_more_than_the_attempts_left,
            a_burst_with_the_right_pin_pays_one_attempt,
            a_wrong_pin_is_counted_with_its_audit_record,
            the_weakest_pins_are_refused_where_a_pin_is_chosen,
            pin_change_keeps_the_key_and_reset_issues_a_new_one,
            idempotency_replays_and_conflicts_also_after_a_restart,
            a_reversal_posts_the_opposite_exactly_once,
            a_reversal_never_credits_a_closed_wallet,
            money_out_past_the_window_cap_needs_a_second_factor,
            history_pages_newest_first_with_a_stable_cursor,
            history_filters_by_kind_time_and_counterparty,
            an_amount_range_stops_at_its_scan_bound_and_goes_on,
            a_receivers_side_reads_after_the_sender_is_erased,
            erasing_an_owner_closes_their_empty_wallets_and_destroys_their_keys,
            an_erasure_sweeps_small_remainders_to_the_unclaimed_wallet,
            a_hold_reserves_money_until_its_payee_captures_it_once,
            a_hold_is_voided_or_expires_and_then_nothing_captures_it,
            capture_void_and_expiry_of_one_hold_resolve_it_once,
            the_expiry_job_expires_lapsed_holds_in_batches,
            limits_refuse_money_out_past_a_window_and_write_only_the_refusal,
            holds_count_against_limits_until_resolved,
            concurrent_money_out_never_passes_a_limit,
            concurrent_holds_and_limits_keep_the_books,
            every_change_writes_one_event_per_wallet_in_order,
            each_wallets_events_are_numbered_without_gaps_under_concurrency,
            expiries_and_erasures_have_their_events,
            a_limits_refusal_writes_its_event_with_its_audit_record,
            raw_tables_hold_no_plaintext,
            verify_reports_tampering_with_wallet_and_transaction,
            verify_reports_progress_and_resumes,
            a_data_key_rotation_keeps_money_and_history_readable,
            concurrent_random_operations_keep_the_books,
        );
    };
}

/// Test settings: the cheapest KDF the crate accepts, and room for the many wallets of one
/// owner that suites open (the cap has its own case).
#[must_use]
pub fn config() -> LedgerConfig {
    LedgerConfig {
        kdf_iterations: coffer_crypto::pin::MIN_ITERATIONS,
        max_wallets_per_user: 1_000,
        max_amount_minor: 1_000_000_000,
        ..LedgerConfig::default()
    }
}

/// A ledger over a freshly opened store, driven as a client drives it.
pub async fn ledger(backend: &dyn Backend) -> Client {
    ledger_with(backend, backend.keys()).await
}

async fn ledger_with(backend: &dyn Backend, keys: Arc<dyn KeyProvider>) -> Client {
    let (store, audit) = backend.open(keys.clone()).await;
    Client::new(Ledger::new(store, keys, observed(audit), config()))
}

fn observed(audit: Arc<dyn AuditLog>) -> Arc<ObservedAuditLog> {
    Arc::new(ObservedAuditLog::new(
        audit,
        AlertConfig::default(),
        EntityId::parse("ledger-tests").unwrap(),
    ))
}

const PIN: &str = "493817";

fn req<'a>(amount: i64, key: &'a str) -> MoneyRequest<'a> {
    MoneyRequest {
        amount_minor: amount,
        currency: "USD",
        memo: None,
        idempotency_key: key,
    }
}

async fn funded(l: &Client, owner: UserId, amount: i64) -> WalletId {
    let w = l.open_wallet(owner, "USD", PIN).await.unwrap().id;
    if amount > 0 {
        l.deposit(owner, w, &req(amount, &format!("fund-{w}")))
            .await
            .unwrap();
    }
    w
}

async fn balance(l: &Client, w: WalletId) -> i64 {
    l.wallet(Caller::Admin(UserId::new()), w)
        .await
        .unwrap()
        .balance
        .minor()
}

async fn all_transactions(store: &dyn LedgerStore) -> Vec<TransactionRecord> {
    let mut out = Vec::new();
    let mut after = None;
    loop {
        let page = store.transactions_after(after, 1000).await.unwrap();
        let Some(last) = page.last() else { break };
        after = Some(last.id);
        out.extend(page);
    }
    out
}

async fn assert_verifies(l: &Client) -> crate::verify::LedgerVerifyReport {
    let report = l.verify(VerifyOptions::default(), &|_| {}).await.unwrap();
    assert!(report.ok(), "verification found: {:?}", report.findings);
    assert!(report.complete);
    for (currency, total) in &report.wallet_totals {
        assert_eq!(
            total + report.settlement.get(currency).copied().unwrap_or(0),
            0,
            "{currency}: wallets plus settlement sum to zero"
        );
    }
    report
}

/// Opening, reading, and the owner-only rule.
pub async fn wallets_open_and_only_their_owner_sees_them(backend: &dyn Backend) {
    let l = ledger(backend).await;
    let (alice, bob) = (UserId::new(), UserId::new());
    let w = l.open_wallet(alice, "EUR", PIN).await.unwrap();
    assert_eq!(
        (w.owner, w.balance.minor(), w.status),
        (alice, 0, WalletStatus::Active)
    );
    assert_eq!(w.currency.code(), "EUR");
    let read = l.wallet(Caller::User(alice), w.id).await.unwrap();
    assert_eq!(read, w);
    assert!(matches!(
        l.wallet(Caller::User(bob), w.id).await,
        Err(Error::WalletNotFound(id)) if id == w.id
    ));
    assert!(l.wallet(Caller::Admin(bob), w.id).await.is_ok());
    assert!(matches!(
        l.wallet(Caller::User(alice), WalletId::new()).await,
        Err(Error::WalletNotFound(_))
    ));
    let second = l.open_wallet(alice, "JPY", PIN).await.unwrap();
    let third = l.open_wallet(alice, "EUR", PIN).await.unwrap();
    // Pages of two, oldest first: only a page's wallets are read.
    let page = l.wallets_of(alice, None, 2).await.unwrap();
    let ids: Vec<_> = page.items.iter().map(|w| w.id).collect();
    assert_eq!(ids, vec![w.id, second.id]);
    let rest = l
        .wallets_of(alice, page.next_cursor.as_deref(), 2)
        .await
        .unwrap();
    let ids: Vec<_> = rest.items.iter().map(|w| w.id).collect();
    assert_eq!((ids, rest.next_cursor), (vec![third.id], None));
    assert!(l.wallets_of(bob, None, 50).await.unwrap().items.is_empty());
    for (cursor, limit, field) in [
        (Some("nope"), 2, "cursor"),
        (None, 0, "limit"),
        (None, 201, "limit"),
    ] {
        assert!(
            matches!(
                l.wallets_of(alice, cursor, limit).await,
                Err(Error::Invalid { field: f, .. }) if f == field
            ),
            "{cursor:?} {limit}"
        );
    }
    // A cursor reads only its caller's wallets.
    let others = l
        .wallets_of(bob, page.next_cursor.as_deref(), 2)
        .await
        .unwrap();
    assert!(others.items.is_empty());
    assert!(matches!(
        l.open_wallet(alice, "XYZ", PIN).await,
        Err(Error::Rejected(LedgerError::Money(
            MoneyError::UnknownCurrency(_)
        )))
    ));
    for bad in ["12345", "1234567", "12a456", ""] {
        assert!(
            matches!(
                l.open_wallet(alice, "USD", bad).await,
                Err(Error::Invalid { field: "pin", .. })
            ),
            "{bad:?}"
        );
    }
    assert_eq!(
        l.wallets_of(alice, None, 50).await.unwrap().items.len(),
        3,
        "refused opens wrote nothing"
    );
}

/// An owner holds at most `max_wallets_per_user` wallets: openings sent at once past the limit
/// are refused with `too_many_wallets` and write nothing; other owners are not touched.
pub async fn an_owner_holds_no_more_wallets_than_the_limit(backend: &dyn Backend) {
    let (store, audit) = backend.open(backend.keys()).await;
    let l = Client::new(Ledger::new(
        store,
        backend.keys(),
        observed(audit),
        LedgerConfig {
            max_wallets_per_user: 3,
            ..config()
        },
    ));
    let alice = UserId::new();
    l.open_wallet(alice, "USD", PIN).await.unwrap();
    let opened = join_all((0..6).map(|_| l.open_wallet(alice, "EUR", PIN))).await;
    let refused = opened
        .iter()
        .filter(|r| {
            matches!(
                r,
                Err(Error::Rejected(LedgerError::TooManyWallets { max: 3 }))
            )
        })
        .count();
    assert_eq!((opened.len() - refused, refused), (2, 4), "{opened:?}");
    assert_eq!(l.wallets_of(alice, None, 50).await.unwrap().items.len(), 3);
    l.open_wallet(UserId::new(), "USD", PIN).await.unwrap();
}

/// A store decorator that knows when `apply` runs (and a key provider that counts the calls
/// made meanwhile), and fails the writes that carry an audit record of `fail_on`, as if the
/// database went away at that moment. [`Watched::without_events`] makes one that writes every
/// operation without its events: a benchmark's baseline for what the outbox costs.
#[derive(Debug)]
pub struct Watched {
    inner: Arc<dyn LedgerStore>,
    in_apply: Arc<AtomicBool>,
    fail_on: Option<Action>,
    without_events: bool,
}

impl Watched {
    /// `inner`, writing no event.
    #[must_use]
    pub fn without_events(inner: Arc<dyn LedgerStore>) -> Self {
        Self {
            inner,
            in_apply: Arc::new(AtomicBool::new(false)),
            fail_on: None,
            without_events: true,
        }
    }
}

#[async_trait]
impl LedgerStore for Watched {
    async fn create_wallet(&self, new: NewWallet) -> Result<coffer_audit::Receipt, Error> {
        self.inner.create_wallet(new).await
    }
    async fn load_wallets(&self, ids: &[WalletId]) -> Result<Vec<LoadedWallet>, Error> {
        self.inner.load_wallets(ids).await
    }
    async fn wallets_where(
        &self,
        filter: &crate::port::WalletFilter,
        after: Option<WalletId>,
        limit: u32,
    ) -> Result<Vec<WalletRecord>, Error> {
        self.inner.wallets_where(filter, after, limit).await
    }
    async fn apply(&self, op: Apply<'_>) -> Result<Applied, Error> {
        let decide = |locked: &Locked<'_>| {
            let mut changes = (op.decide)(locked)?;
            if changes.audit.iter().any(|e| Some(e.action) == self.fail_on) {
                return Err(Error::Storage("the database went away".into()));
            }
            if self.without_events {
                changes.events.clear();
            }
            Ok(changes)
        };
        self.in_apply.store(true, Ordering::SeqCst);
        let r = self
            .inner
            .apply(Apply {
                decide: &decide,
                ..op
            })
            .await;
        self.in_apply.store(false, Ordering::SeqCst);
        r
    }
    async fn idempotent(&self, scope: &str, key: &str) -> Result<Option<TransactionRecord>, Error> {
        self.inner.idempotent(scope, key).await
    }
    async fn transaction(&self, id: TransactionId) -> Result<Option<TransactionRecord>, Error> {
        self.inner.transaction(id).await
    }
    async fn history(
        &self,
        wallet: WalletId,
        filter: &crate::port::HistoryFilter,
        before: Option<i64>,
        limit: u32,
    ) -> Result<HistoryPage, Error> {
        self.inner.history(wallet, filter, before, limit).await
    }
    async fn public_keys(&self, wallet: WalletId) -> Result<Vec<[u8; 32]>, Error> {
        self.inner.public_keys(wallet).await
    }
    async fn wallets_after(
        &self,
        after: Option<WalletId>,
        limit: u32,
    ) -> Result<Vec<LoadedWallet>, Error> {
        self.inner.wallets_after(after, limit).await
    }
    async fn postings_of(
        &self,
        wallet: WalletId,
    ) -> Result<Vec<(TransactionId, PostingRecord)>, Error> {
        self.inner.postings_of(wallet).await
    }
    async fn hold(
        &self,
        id: crate::domain::HoldId,
    ) -> Result<Option<crate::port::HoldRecord>, Error> {
        self.inner.hold(id).await
    }
    async fn holds_of(
        &self,
        wallet: WalletId,
        before: Option<crate::HoldId>,
        limit: u32,
    ) -> Result<Vec<crate::port::HoldRecord>, Error> {
        self.inner.holds_of(wallet, before, limit).await
    }
    async fn hold_by_key(
        &self,
        scope: &str,
        key: &str,
    ) -> Result<Option<crate::port::HoldRecord>, Error> {
        self.inner.hold_by_key(scope, key).await
    }
    async fn wallets_with_lapsed_holds(
        &self,
        now: i64,
        limit: u32,
    ) -> Result<Vec<WalletId>, Error> {
        self.inner.wallets_with_lapsed_holds(now, limit).await
    }
    async fn set_receiver_memo(
        &self,
        id: TransactionId,
        memo: &coffer_crypto::Envelope,
    ) -> Result<bool, Error> {
        self.inner.set_receiver_memo(id, memo).await
    }
    async fn transactions_after(
        &self,
        after: Option<TransactionId>,
        limit: u32,
    ) -> Result<Vec<TransactionRecord>, Error> {
        self.inner.transactions_after(after, limit).await
    }
    async fn events_after(
        &self,
        after: Option<crate::EventId>,
        limit: u32,
    ) -> Result<Vec<crate::port::EventRecord>, Error> {
        self.inner.events_after(after, limit).await
    }
    async fn events_of(&self, wallet: WalletId) -> Result<Vec<crate::port::EventRecord>, Error> {
        self.inner.events_of(wallet).await
    }
}
