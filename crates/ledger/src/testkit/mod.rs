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
mod pins;
mod search;
mod window;

pub use client::{Client, MoneyRequest};
pub use erased::*;
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
/// database went away at that moment.
#[derive(Debug)]
struct Watched {
    inner: Arc<dyn LedgerStore>,
    in_apply: Arc<AtomicBool>,
    fail_on: Option<Action>,
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
            let changes = (op.decide)(locked)?;
            if changes.audit.iter().any(|e| Some(e.action) == self.fail_on) {
                return Err(Error::Storage("the database went away".into()));
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
}

/// What the counting provider of the lock test keeps: its data-key calls, and those made while
/// `apply` held rows.
#[derive(Debug)]
struct CountingKeys {
    in_apply: Arc<AtomicBool>,
    calls: AtomicU64,
    under_lock: AtomicU64,
}

impl CountingKeys {
    fn count(&self, _: DataKeyCall) -> Result<(), KeyError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if self.in_apply.load(Ordering::SeqCst) {
            self.under_lock.fetch_add(1, Ordering::SeqCst);
        }
        Ok(())
    }
}

/// Deposits, withdrawals and transfers, the balances they leave, and the verification of the
/// books; no key-provider call happens while `apply` holds rows.
pub async fn money_moves_by_double_entry_and_keys_are_never_fetched_under_lock(
    backend: &dyn Backend,
) {
    let in_apply = Arc::new(AtomicBool::new(false));
    let counts = CountingKeys {
        in_apply: in_apply.clone(),
        calls: AtomicU64::new(0),
        under_lock: AtomicU64::new(0),
    };
    let keys = Arc::new(Intercepted::new(
        backend.keys(),
        counts,
        CountingKeys::count,
    ));
    let (store, audit) = backend.open(keys.clone()).await;
    let store = Arc::new(Watched {
        inner: store,
        in_apply,
        fail_on: None,
    });
    let l = Client::new(Ledger::new(
        store,
        keys.clone(),
        Arc::new(ObservedAuditLog::new(
            audit,
            AlertConfig::default(),
            EntityId::parse("ledger-tests").unwrap(),
        )),
        config(),
    ));
    let (alice, bob) = (UserId::new(), UserId::new());
    let a = funded(&l, alice, 10_000).await;
    let b = funded(&l, bob, 0).await;
    let t = l
        .transfer(
            alice,
            a,
            b,
            PIN,
            &MoneyRequest {
                memo: Some("rent"),
                ..req(2_500, "t1")
            },
        )
        .await
        .unwrap();
    assert_eq!(
        (t.kind, t.money.amount.minor()),
        (TransactionKind::Transfer, 2_500)
    );
    assert_eq!((t.from_wallet, t.to_wallet), (Some(a), Some(b)));
    assert_eq!(t.memo.as_deref(), Some("rent"));
    assert!(
        t.verify_signature().unwrap(),
        "anyone can verify a transfer"
    );
    let w = l.withdraw(bob, b, PIN, &req(500, "w1")).await.unwrap();
    assert!(w.verify_signature().unwrap());
    assert_eq!((balance(&l, a).await, balance(&l, b).await), (7_500, 2_000));
    // Debug output (what ends up in logs) carries neither amounts nor memos.
    let canary = MoneyRequest {
        memo: Some("memo-canary-debug"),
        ..req(31_415_926, "canary")
    };
    let d = l.deposit(alice, a, &canary).await.unwrap();
    let request = canary.parse(&l).unwrap();
    let printed = format!(
        "{d:?} {:?} {request:?} {canary:?}",
        l.wallet(Caller::User(alice), a).await.unwrap()
    );
    for secret in ["31415926", "31423426", "memo-canary-debug"] {
        assert!(!printed.contains(secret), "{secret} in {printed}");
    }
    l.withdraw(alice, a, PIN, &req(31_415_926, "canary-out"))
        .await
        .unwrap();
    // The stored transaction's postings: two lines that cancel out.
    let stored = l.store().transaction(t.id).await.unwrap().unwrap();
    assert_eq!(stored.postings.len(), 2);
    assert_eq!(
        stored.postings.iter().map(|p| p.wallet).collect::<Vec<_>>(),
        vec![Some(a), Some(b)]
    );
    let deposit = l.deposit(alice, a, &req(1, "d-small")).await.unwrap();
    assert_eq!(deposit.signature, None, "deposits are not money-out");
    let report = assert_verifies(&l).await;
    assert_eq!(report.signatures, 3);
    assert_eq!(report.settlement.get("USD"), Some(&-(10_000 - 500 + 1)));
    assert!(keys.calls.load(Ordering::SeqCst) > 0);
    assert_eq!(
        keys.under_lock.load(Ordering::SeqCst),
        0,
        "no key-provider round trip while rows are locked"
    );
    // The transfer's audit record sits on the sender's chain.
    let actions = wallet_audit_actions(backend, a).await;
    assert!(
        actions.iter().any(|a| a == "transaction.transfer"),
        "{actions:?}"
    );
}

/// Each rule's refusal is its own error, and a refusal changes nothing.
pub async fn refusals_have_their_own_errors_and_write_nothing(backend: &dyn Backend) {
    let l = ledger(backend).await;
    let (alice, bob) = (UserId::new(), UserId::new());
    let a = funded(&l, alice, 1_000).await;
    let b = funded(&l, bob, 0).await;
    let eur = l.open_wallet(bob, "EUR", PIN).await.unwrap().id;
    let before = all_transactions(l.store().as_ref()).await.len();

    let cases: Vec<(&str, Result<crate::TransactionView, Error>)> = vec![
        (
            "insufficient",
            l.transfer(alice, a, b, PIN, &req(1_001, "r1")).await,
        ),
        ("zero", l.transfer(alice, a, b, PIN, &req(0, "r2")).await),
        ("negative", l.deposit(alice, a, &req(-5, "r3")).await),
        (
            "too large",
            l.deposit(alice, a, &req(1_000_000_001, "r4")).await,
        ),
        (
            "unknown currency",
            l.deposit(
                alice,
                a,
                &MoneyRequest {
                    currency: "ZZZ",
                    ..req(5, "r5")
                },
            )
            .await,
        ),
        (
            "wallet currency",
            l.deposit(
                alice,
                a,
                &MoneyRequest {
                    currency: "EUR",
                    ..req(5, "r6")
                },
            )
            .await,
        ),
        (
            "cross-currency transfer",
            l.transfer(alice, a, eur, PIN, &req(5, "r7")).await,
        ),
        (
            "same wallet",
            l.transfer(alice, a, a, PIN, &req(5, "r8")).await,
        ),
        (
            "not the owner",
            l.transfer(bob, a, b, PIN, &req(5, "r9")).await,
        ),
        (
            "unknown receiver",
            l.transfer(alice, a, WalletId::new(), PIN, &req(5, "r10"))
                .await,
        ),
        (
            "memo too long",
            l.deposit(
                alice,
                a,
                &MoneyRequest {
                    memo: Some(&"x".repeat(257)),
                    ..req(5, "r11")
                },
            )
            .await,
        ),
        (
            "memo control",
            l.deposit(
                alice,
                a,
                &MoneyRequest {
                    memo: Some("a\u{7}b"),
                    ..req(5, "r12")
                },
            )
            .await,
        ),
        ("empty key", l.deposit(alice, a, &req(5, "")).await),
        ("key with space", l.deposit(alice, a, &req(5, "a b")).await),
        (
            "malformed pin",
            l.withdraw(alice, a, "12", &req(5, "r13")).await,
        ),
    ];
    for (name, result) in cases {
        let ok = matches!(
            (name, &result),
            (
                "insufficient",
                Err(Error::Rejected(LedgerError::InsufficientFunds))
            ) | (
                "zero",
                Err(Error::Rejected(LedgerError::Money(MoneyError::NotPositive)))
            ) | (
                "negative",
                Err(Error::Rejected(LedgerError::Money(MoneyError::NotPositive)))
            ) | (
                "too large",
                Err(Error::Rejected(LedgerError::Money(
                    MoneyError::TooLarge { .. }
                ))),
            ) | (
                "unknown currency",
                Err(Error::Rejected(LedgerError::Money(
                    MoneyError::UnknownCurrency(_)
                ))),
            ) | (
                "wallet currency",
                Err(Error::Rejected(LedgerError::CurrencyMismatch { .. }))
            ) | (
                "cross-currency transfer",
                Err(Error::Rejected(LedgerError::CurrencyMismatch { .. })),
            ) | ("same wallet", Err(Error::Rejected(LedgerError::SameWallet)))
                | ("not the owner", Err(Error::WalletNotFound(_)))
                | ("unknown receiver", Err(Error::WalletNotFound(_)))
                | ("memo too long", Err(Error::Invalid { field: "memo", .. }))
                | ("memo control", Err(Error::Invalid { field: "memo", .. }))
                | (
                    "empty key",
                    Err(Error::Invalid {
                        field: "idempotency_key",
                        ..
                    }),
                )
                | (
                    "key with space",
                    Err(Error::Invalid {
                        field: "idempotency_key",
                        ..
                    }),
                )
                | ("malformed pin", Err(Error::Invalid { field: "pin", .. }))
        );
        assert!(ok, "{name}: {result:?}");
    }
    assert_eq!((balance(&l, a).await, balance(&l, b).await), (1_000, 0));
    assert_eq!(all_transactions(l.store().as_ref()).await.len(), before);
    assert_eq!(
        l.wallet(Caller::User(alice), a).await.unwrap().failed_pins,
        0
    );
    assert_verifies(&l).await;
}

/// Frozen: deposits and incoming transfers land; nothing leaves.
pub async fn frozen_wallets_receive_and_send_nothing(backend: &dyn Backend) {
    let l = ledger(backend).await;
    let (alice, bob, admin) = (UserId::new(), UserId::new(), UserId::new());
    let a = funded(&l, alice, 1_000).await;
    let b = funded(&l, bob, 1_000).await;
    let frozen = l.freeze(admin, b).await.unwrap();
    assert_eq!(frozen.status, WalletStatus::Frozen);
    l.transfer(alice, a, b, PIN, &req(100, "in")).await.unwrap();
    l.deposit(bob, b, &req(50, "dep")).await.unwrap();
    assert!(matches!(
        l.withdraw(bob, b, PIN, &req(1, "out")).await,
        Err(Error::Rejected(LedgerError::WalletFrozen))
    ));
    assert!(matches!(
        l.transfer(bob, b, a, PIN, &req(1, "out2")).await,
        Err(Error::Rejected(LedgerError::WalletFrozen))
    ));
    assert_eq!(balance(&l, b).await, 1_150);
    l.unfreeze(admin, b).await.unwrap();
    l.transfer(bob, b, a, PIN, &req(150, "out3")).await.unwrap();
    assert_eq!((balance(&l, a).await, balance(&l, b).await), (1_050, 1_000));
    assert_verifies(&l).await;
}

/// Closed: nothing in, nothing out, and only an empty wallet closes.
pub async fn closed_wallets_accept_nothing_and_close_only_empty(backend: &dyn Backend) {
    let l = ledger(backend).await;
    let (alice, bob, admin) = (UserId::new(), UserId::new(), UserId::new());
    let a = funded(&l, alice, 500).await;
    let b = funded(&l, bob, 0).await;
    assert!(matches!(
        l.close(admin, a).await,
        Err(Error::Rejected(LedgerError::WalletNotEmpty))
    ));
    let closed = l.close(admin, b).await.unwrap();
    assert_eq!(closed.status, WalletStatus::Closed);
    assert!(matches!(
        l.close(admin, b).await,
        Err(Error::Rejected(LedgerError::WalletClosed))
    ));
    assert!(matches!(
        l.transfer(alice, a, b, PIN, &req(1, "x")).await,
        Err(Error::Rejected(LedgerError::WalletClosed))
    ));
    assert!(matches!(
        l.deposit(bob, b, &req(1, "y")).await,
        Err(Error::Rejected(LedgerError::WalletClosed))
    ));
    assert!(matches!(
        l.freeze(admin, b).await,
        Err(Error::Rejected(LedgerError::WalletClosed))
    ));
    l.withdraw(alice, a, PIN, &req(500, "empty")).await.unwrap();
    l.close(admin, a).await.unwrap();
    assert_verifies(&l).await;
}

/// The same key and request returns the first result, also after a restart; the same key with
/// another request is a conflict; keys are per caller.
pub async fn idempotency_replays_and_conflicts_also_after_a_restart(backend: &dyn Backend) {
    let l = ledger(backend).await;
    let (alice, bob) = (UserId::new(), UserId::new());
    let a = funded(&l, alice, 1_000).await;
    let b = funded(&l, bob, 0).await;
    let first = l
        .transfer(alice, a, b, PIN, &req(100, "same"))
        .await
        .unwrap();
    let again = l
        .transfer(alice, a, b, PIN, &req(100, "same"))
        .await
        .unwrap();
    assert_eq!(first, again);
    let l = ledger(backend).await;
    let after_restart = l
        .transfer(alice, a, b, PIN, &req(100, "same"))
        .await
        .unwrap();
    assert_eq!(first.id, after_restart.id);
    assert_eq!((balance(&l, a).await, balance(&l, b).await), (900, 100));
    assert!(matches!(
        l.transfer(alice, a, b, PIN, &req(101, "same")).await,
        Err(Error::IdempotencyConflict)
    ));
    assert!(matches!(
        l.withdraw(alice, a, PIN, &req(100, "same")).await,
        Err(Error::IdempotencyConflict)
    ));
    // A retry answers as before even with a wrong PIN, and does not count it (no oracle).
    let retried = l
        .transfer(alice, a, b, "000000", &req(100, "same"))
        .await
        .unwrap();
    assert_eq!(retried.id, first.id);
    assert_eq!(
        l.wallet(Caller::User(alice), a).await.unwrap().failed_pins,
        0
    );
    // Another caller's key space.
    l.deposit(bob, b, &req(5, "same")).await.unwrap();
    // Concurrent duplicates: exactly one transaction.
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let l = &l;
            async move { l.deposit(alice, a, &req(7, "burst")).await }
        })
        .collect();
    let results = join_all(tasks).await;
    let ids: HashSet<_> = results.into_iter().map(|r| r.unwrap().id).collect();
    assert_eq!(ids.len(), 1);
    assert_eq!(balance(&l, a).await, 907);
    assert_verifies(&l).await;
}

/// A reversal restores both sides, once; a reversal is never reversed.
pub async fn a_reversal_posts_the_opposite_exactly_once(backend: &dyn Backend) {
    let l = ledger(backend).await;
    let (alice, bob, admin) = (UserId::new(), UserId::new(), UserId::new());
    let a = funded(&l, alice, 1_000).await;
    let b = funded(&l, bob, 0).await;
    let t = l.transfer(alice, a, b, PIN, &req(300, "t")).await.unwrap();
    // Concurrent reversals with different keys: exactly one lands.
    let tasks: Vec<_> = (0..4)
        .map(|i| {
            let l = &l;
            async move {
                l.reverse(admin, t.id, "duplicate_payment", &format!("rev-{i}"))
                    .await
            }
        })
        .collect();
    let results = join_all(tasks).await;
    let ok: Vec<_> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
    assert_eq!(ok.len(), 1, "{results:?}");
    assert!(
        results
            .iter()
            .filter(|r| r.is_err())
            .all(|r| matches!(r, Err(Error::Rejected(LedgerError::AlreadyReversed))))
    );
    let r = ok[0].clone();
    assert_eq!(
        (r.kind, r.reverses, r.money),
        (TransactionKind::Reversal, Some(t.id), t.money)
    );
    assert_eq!((r.from_wallet, r.to_wallet), (Some(b), Some(a)));
    assert_eq!((balance(&l, a).await, balance(&l, b).await), (1_000, 0));
    assert_eq!(
        l.transaction(Caller::User(alice), t.id)
            .await
            .unwrap()
            .reversed_by,
        Some(r.id)
    );
    assert!(matches!(
        l.reverse(admin, r.id, "oops", "rev-of-rev").await,
        Err(Error::Rejected(LedgerError::ReversalOfReversal))
    ));
    assert!(matches!(
        l.reverse(admin, TransactionId::new(), "oops", "rev-missing")
            .await,
        Err(Error::TransactionNotFound(_))
    ));
    // A deposit whose money was spent cannot be reversed below zero.
    let d = l.deposit(bob, b, &req(50, "d")).await.unwrap();
    l.withdraw(bob, b, PIN, &req(40, "spend")).await.unwrap();
    assert!(matches!(
        l.reverse(admin, d.id, "chargeback", "rev-d").await,
        Err(Error::Rejected(LedgerError::InsufficientFunds))
    ));
    assert_verifies(&l).await;
}

/// A reversal that would credit a closed wallet is refused (the money could never move again);
/// reversed first, the wallet closes once it is empty.
pub async fn a_reversal_never_credits_a_closed_wallet(backend: &dyn Backend) {
    let l = ledger(backend).await;
    let (bob, admin) = (UserId::new(), UserId::new());
    // Close, then reverse: bob paid everything out and closed the wallet.
    let b = funded(&l, bob, 50).await;
    let payout = l.withdraw(bob, b, PIN, &req(50, "payout")).await.unwrap();
    l.close(admin, b).await.unwrap();
    assert!(matches!(
        l.reverse(admin, payout.id, "duplicate_payment", "rev-closed")
            .await,
        Err(Error::Rejected(LedgerError::WalletClosed))
    ));
    assert_eq!(balance(&l, b).await, 0);
    assert_eq!(
        l.transaction(Caller::User(bob), payout.id)
            .await
            .unwrap()
            .reversed_by,
        None
    );
    // Reverse, then close: the reversal lands while the wallet is open, and closing waits for
    // the wallet to be empty.
    let c = funded(&l, bob, 50).await;
    let payout = l.withdraw(bob, c, PIN, &req(50, "payout-2")).await.unwrap();
    l.reverse(admin, payout.id, "duplicate_payment", "rev-open")
        .await
        .unwrap();
    assert_eq!(balance(&l, c).await, 50);
    assert!(matches!(
        l.close(admin, c).await,
        Err(Error::Rejected(LedgerError::WalletNotEmpty))
    ));
    assert_verifies(&l).await;
}

/// History: newest first, pages joined by an opaque cursor that new transactions do not shift.
pub async fn history_pages_newest_first_with_a_stable_cursor(backend: &dyn Backend) {
    let l = ledger(backend).await;
    let (alice, bob) = (UserId::new(), UserId::new());
    let a = funded(&l, alice, 0).await;
    let mut made = Vec::new();
    for i in 1..=7 {
        made.push(
            l.deposit(alice, a, &req(i, &format!("h{i}")))
                .await
                .unwrap()
                .id,
        );
    }
    let page1 = l.history(Caller::User(alice), a, None, 3).await.unwrap();
    assert_eq!(
        page1.items.iter().map(|t| t.id).collect::<Vec<_>>(),
        made.iter().rev().take(3).copied().collect::<Vec<_>>()
    );
    // New activity arrives between pages.
    l.deposit(alice, a, &req(100, "late")).await.unwrap();
    let cursor = page1.next_cursor.clone().unwrap();
    let page2 = l
        .history(Caller::User(alice), a, Some(&cursor), 3)
        .await
        .unwrap();
    let page3 = l
        .history(Caller::User(alice), a, page2.next_cursor.as_deref(), 3)
        .await
        .unwrap();
    let rest: Vec<_> = page2
        .items
        .iter()
        .chain(&page3.items)
        .map(|t| t.id)
        .collect();
    assert_eq!(rest, made.iter().rev().skip(3).copied().collect::<Vec<_>>());
    assert_eq!(page3.next_cursor, None);
    assert!(matches!(
        l.history(Caller::User(alice), a, Some("garbage!"), 3).await,
        Err(Error::Invalid {
            field: "cursor",
            ..
        })
    ));
    assert!(matches!(
        l.history(Caller::User(alice), a, None, 0).await,
        Err(Error::Invalid { field: "limit", .. })
    ));
    assert!(matches!(
        l.history(Caller::User(bob), a, None, 3).await,
        Err(Error::WalletNotFound(_))
    ));
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Balances, amounts, memos and PINs appear nowhere in the stored bytes.
pub async fn raw_tables_hold_no_plaintext(backend: &dyn Backend) {
    let l = ledger(backend).await;
    let (alice, bob) = (UserId::new(), UserId::new());
    let pin = "730419";
    let a = l.open_wallet(alice, "USD", pin).await.unwrap().id;
    let b = l.open_wallet(bob, "USD", pin).await.unwrap().id;
    let amount: i64 = 987_654_321;
    let sent: i64 = 123_456_789;
    let memo = "canary-memo-8d1f";
    l.deposit(
        alice,
        a,
        &MoneyRequest {
            memo: Some(memo),
            ..req(amount, "raw-1")
        },
    )
    .await
    .unwrap();
    l.transfer(
        alice,
        a,
        b,
        pin,
        &MoneyRequest {
            memo: Some(memo),
            ..req(sent, "raw-2")
        },
    )
    .await
    .unwrap();
    // The transfer also wrote the sender's rolling money-out sum (`sent`, sealed).
    let raw = backend.raw_dump().await;
    assert!(raw.len() > 1000, "the dump holds the tables");
    assert!(
        contains(&raw, hex(a.as_uuid().as_bytes()).as_bytes())
            || contains(&raw, a.as_uuid().as_bytes())
            || contains(&raw, a.to_string().as_bytes()),
        "the dump really shows the rows (wallet ids are stored plainly)"
    );
    for value in [amount, sent, amount - sent] {
        for needle in [
            value.to_string().into_bytes(),
            value.to_be_bytes().to_vec(),
            value.to_le_bytes().to_vec(),
            hex(&value.to_be_bytes()).into_bytes(),
            u32::try_from(value).unwrap().to_be_bytes().to_vec(),
        ] {
            assert!(!contains(&raw, &needle), "{value} found in raw storage");
        }
    }
    for needle in [
        memo.as_bytes().to_vec(),
        hex(memo.as_bytes()).into_bytes(),
        pin.as_bytes().to_vec(),
    ] {
        assert!(
            !contains(&raw, &needle),
            "{:?} found in raw storage",
            String::from_utf8_lossy(&needle)
        );
    }
}

/// Moved or altered ciphertexts and signatures are reported with their wallet and transaction.
pub async fn verify_reports_tampering_with_wallet_and_transaction(backend: &dyn Backend) {
    let l = ledger(backend).await;
    let (alice, bob, carol) = (UserId::new(), UserId::new(), UserId::new());
    // The first wallet and the first signed transaction are where the copies come from.
    let c = funded(&l, carol, 1_000).await;
    l.withdraw(carol, c, PIN, &req(10, "first")).await.unwrap();
    let a = funded(&l, alice, 1_000).await;
    let b = funded(&l, bob, 1_000).await;
    let t = l.transfer(alice, a, b, PIN, &req(10, "t")).await.unwrap();
    let w = l.withdraw(bob, b, PIN, &req(10, "w")).await.unwrap();
    assert_verifies(&l).await;
    // Copying the first wallet's balance envelope over the others: each is bound to its wallet
    // and version, so none of the copies opens.
    backend
        .tamper("UPDATE wallets SET balance = (SELECT w2.balance FROM wallets w2 ORDER BY w2.id LIMIT 1)")
        .await;
    // Copying the last wallet's money-out window over the first's (the first's balance is
    // intact): bound to its wallet and version, it does not open.
    backend
        .tamper("UPDATE wallets SET outflow = (SELECT w2.outflow FROM wallets w2 ORDER BY w2.id DESC LIMIT 1) WHERE id = (SELECT w3.id FROM wallets w3 ORDER BY w3.id LIMIT 1)")
        .await;
    // Copying the first signature over the others.
    backend
        .tamper("UPDATE transactions SET signature = (SELECT t2.signature FROM transactions t2 WHERE t2.signature IS NOT NULL ORDER BY t2.id LIMIT 1) WHERE signature IS NOT NULL")
        .await;
    let report = l.verify(VerifyOptions::default(), &|_| {}).await.unwrap();
    assert!(!report.ok());
    for (w, what) in [(a, "balance"), (b, "balance"), (c, "outflow")] {
        assert!(
            report.findings.iter().any(|f| f.wallet == Some(w)
                && matches!(&f.problem, Problem::Unreadable(e) if e.contains(what))),
            "{w}: {:?}",
            report.findings
        );
    }
    for (wallet, tx) in [(a, t.id), (b, w.id)] {
        assert!(
            report.findings.iter().any(|f| f.wallet == Some(wallet)
                && f.transaction == Some(tx)
                && f.problem == Problem::BadSignature),
            "{tx}: {:?}",
            report.findings
        );
    }
    // Reads of a tampered balance fail as corruption, never as a wrong number.
    assert!(matches!(
        l.wallet(Caller::User(alice), a).await,
        Err(Error::Corrupt(_))
    ));
}

/// A wallet's data key rotates: balance and signing key move to the new version, history
/// written under older versions stays readable, money keeps moving (also while rotations run
/// concurrently with transfers), and verification passes.
pub async fn a_data_key_rotation_keeps_money_and_history_readable(backend: &dyn Backend) {
    let l = Arc::new(ledger(backend).await);
    let alice = UserId::new();
    let a = funded(&l, alice, 10_000).await;
    let b = funded(&l, alice, 0).await;
    let mut with_memo = req(300, "before-rotation");
    with_memo.memo = Some("rent, March");
    l.transfer(alice, a, b, PIN, &with_memo).await.unwrap();
    let before = l.wallet(Caller::User(alice), a).await.unwrap();

    assert_eq!(l.rotate_data_key(a).await.unwrap(), 2);
    let after = l.wallet(Caller::User(alice), a).await.unwrap();
    assert_eq!(after.balance, before.balance);
    assert_eq!(after.public_key, before.public_key, "the same signing key");
    let (store, _) = backend.open(backend.keys()).await;
    let loaded = store.load_wallets(&[a]).await.unwrap().remove(0);
    assert_eq!(loaded.record.dek_version, 2);
    assert_eq!(
        loaded.keys.iter().map(|k| k.version).collect::<Vec<_>>(),
        vec![1, 2]
    );
    // History sealed under version 1 still opens, memo included.
    let history = l.history(Caller::User(alice), a, None, 10).await.unwrap();
    assert_eq!(history.items[0].memo.as_deref(), Some("rent, March"));
    // The PIN still opens the moved signing key; new postings go under version 2.
    l.transfer(alice, a, b, PIN, &req(200, "after-rotation"))
        .await
        .unwrap();
    assert_eq!(l.rotate_data_key(b).await.unwrap(), 2);
    assert_eq!(l.rotate_data_key(a).await.unwrap(), 3);
    assert!(matches!(
        l.rotate_data_key(WalletId::new()).await,
        Err(Error::WalletNotFound(_))
    ));

    // Rotations racing transfers: every transfer lands (a transfer that loaded the wallet
    // before a rotation committed runs again), every rotation lands.
    let transfers = {
        let l = l.clone();
        tokio::spawn(async move {
            for i in 0..15 {
                l.transfer(alice, a, b, PIN, &req(10, &format!("race-{i}")))
                    .await
                    .unwrap();
            }
        })
    };
    let rotations = {
        let l = l.clone();
        tokio::spawn(async move {
            let mut last = 3;
            for _ in 0..5 {
                last = l.rotate_data_key(a).await.unwrap();
                tokio::time::sleep(std::time::Duration::from_millis(15)).await;
            }
            last
        })
    };
    transfers.await.unwrap();
    assert_eq!(rotations.await.unwrap(), 8);
    let a_now = l.wallet(Caller::User(alice), a).await.unwrap();
    assert_eq!(a_now.balance.minor(), 10_000 - 300 - 200 - 150);
    let report = l.verify(VerifyOptions::default(), &|_| {}).await.unwrap();
    assert!(report.ok(), "{:?}", report.findings);
}

/// Verification pages through the ledger reporting where it is, and a run resumed from a
/// reported point checks the rest.
pub async fn verify_reports_progress_and_resumes(backend: &dyn Backend) {
    let l = ledger(backend).await;
    let mut wallets = Vec::new();
    for _ in 0..5 {
        let owner = UserId::new();
        wallets.push((owner, funded(&l, owner, 100).await));
    }
    for (i, (owner, w)) in wallets.iter().enumerate() {
        l.withdraw(*owner, *w, PIN, &req(1, &format!("v{i}")))
            .await
            .unwrap();
    }
    let seen = std::sync::Mutex::new(Vec::new());
    let options = VerifyOptions {
        page: 2,
        ..VerifyOptions::default()
    };
    let full = l
        .verify(options.clone(), &|p| seen.lock().unwrap().push(p.clone()))
        .await
        .unwrap();
    assert!(full.ok() && full.complete);
    assert_eq!(
        (full.wallets, full.transactions, full.signatures),
        (5, 10, 5)
    );
    let seen = seen.into_inner().unwrap();
    let wallet_pages: Vec<u64> = seen
        .iter()
        .filter(|p| p.phase == crate::verify::Phase::Wallets)
        .map(|p| p.done)
        .collect();
    assert_eq!(wallet_pages, vec![2, 4, 5], "progress after every page");
    let tx_pages = seen
        .iter()
        .filter(|p| p.phase == crate::verify::Phase::Transactions)
        .count();
    assert_eq!(tx_pages, 5);
    // Resume from the third transaction page: the wallets are done, four transactions are.
    let resume = seen
        .iter()
        .filter(|p| p.phase == crate::verify::Phase::Transactions)
        .nth(1)
        .unwrap()
        .resume
        .clone();
    assert!(resume.skip_wallets);
    let rest = l.verify(resume, &|_| {}).await.unwrap();
    assert!(rest.ok());
    assert!(
        !rest.complete,
        "a resumed run says it did not see everything"
    );
    assert_eq!((rest.wallets, rest.transactions), (0, 6));
    assert!(rest.wallet_totals.is_empty() && rest.settlement.is_empty());
}

/// 32 tasks, over 5,000 random deposits, withdrawals and transfers among 20 wallets, some
/// retried with the same idempotency key; then the books.
pub async fn concurrent_random_operations_keep_the_books(backend: &dyn Backend) {
    const TASKS: usize = 32;
    const OPS_PER_TASK: usize = 160;
    const WALLETS: usize = 20;
    let l = Arc::new(ledger(backend).await);
    let owners: Vec<UserId> = (0..5).map(|_| UserId::new()).collect();
    let mut wallets = Vec::new();
    for i in 0..WALLETS {
        let owner = owners[i % owners.len()];
        wallets.push((owner, funded(&l, owner, 50_000).await));
    }
    let wallets = Arc::new(wallets);
    let mut handles = Vec::new();
    for task in 0..TASKS {
        let (l, wallets) = (l.clone(), wallets.clone());
        handles.push(tokio::spawn(async move {
            // (idempotency key, caller) -> transaction id of each success; retries counted.
            let mut done: HashMap<(String, UserId), TransactionId> = HashMap::new();
            let mut money_out = 0u64;
            let mut rng = StdRng::seed_from_u64(task as u64);
            let mut i = 0;
            while i < OPS_PER_TASK {
                let (owner, w) = wallets[rng.random_range(0..wallets.len())];
                let retry = i > 0 && rng.random_bool(0.1);
                let key = if retry {
                    format!("k{task}-{}", i - 1)
                } else {
                    format!("k{task}-{i}")
                };
                let amount = rng.random_range(1..=3_000);
                let op = rng.random_range(0..3);
                // A retry repeats the earlier request exactly: keep the request per key.
                let (_, to) = wallets[rng.random_range(0..wallets.len())];
                if op == 2 && to == w {
                    continue;
                }
                // Some requests are sent twice at the same moment, racing for their key.
                let twice = !retry && rng.random_bool(0.05);
                let call = || {
                    let (l, key) = (&l, &key);
                    async move {
                        match op {
                            0 => l
                                .deposit(owner, w, &req(amount, key))
                                .await
                                .map(|t| (t, false)),
                            1 => l
                                .withdraw(owner, w, PIN, &req(amount, key))
                                .await
                                .map(|t| (t, true)),
                            _ => l
                                .transfer(owner, w, to, PIN, &req(amount, key))
                                .await
                                .map(|t| (t, true)),
                        }
                    }
                };
                let r = match (retry, twice) {
                    (true, _) => None,
                    (false, false) => Some(call().await),
                    (false, true) => {
                        let (first, second) = tokio::join!(call(), call());
                        match (&first, &second) {
                            (Ok((x, _)), Ok((y, _))) => {
                                assert_eq!(x.id, y.id, "one transaction per key")
                            }
                            (
                                Err(Error::Rejected(LedgerError::InsufficientFunds)),
                                Err(Error::Rejected(LedgerError::InsufficientFunds)),
                            ) => {}
                            // Only successes are recorded under a key: a refusal may be retried,
                            // and a duplicate that runs after money arrived (another task's
                            // deposit) may then succeed. The books below still have to balance.
                            (Err(Error::Rejected(LedgerError::InsufficientFunds)), Ok(_))
                            | (Ok(_), Err(Error::Rejected(LedgerError::InsufficientFunds))) => {}
                            other => panic!("a racing duplicate answered differently: {other:?}"),
                        }
                        // The success, if one of them succeeded: it is what the key now names.
                        Some(if first.is_ok() { first } else { second })
                    }
                };
                match r {
                    Some(Ok((t, out))) => {
                        assert!(done.insert((key, owner), t.id).is_none());
                        money_out += u64::from(out);
                    }
                    Some(Err(Error::Rejected(LedgerError::InsufficientFunds))) => {}
                    Some(Err(e)) => panic!("unexpected error: {e:?}"),
                    None => {
                        // Replay the previous op of this task, if it succeeded, by asking the
                        // store for its key: the same request must return the same id.
                        let prev = done
                            .iter()
                            .find(|((k, _), _)| *k == key)
                            .map(|(k, id)| (k.clone(), *id));
                        if let Some(((k, caller), id)) = prev {
                            let t = l
                                .store()
                                .idempotent(&format!("user:{caller}"), &k)
                                .await
                                .unwrap()
                                .unwrap();
                            assert_eq!(t.id, id);
                            let replay = match t.kind {
                                TransactionKind::Deposit => {
                                    l.deposit(
                                        caller,
                                        t.to_wallet.unwrap(),
                                        &req(amount_of(&l, &t).await, &k),
                                    )
                                    .await
                                }
                                TransactionKind::Withdrawal => {
                                    l.withdraw(
                                        caller,
                                        t.from_wallet.unwrap(),
                                        PIN,
                                        &req(amount_of(&l, &t).await, &k),
                                    )
                                    .await
                                }
                                _ => {
                                    l.transfer(
                                        caller,
                                        t.from_wallet.unwrap(),
                                        t.to_wallet.unwrap(),
                                        PIN,
                                        &req(amount_of(&l, &t).await, &k),
                                    )
                                    .await
                                }
                            };
                            assert_eq!(replay.unwrap().id, id, "a retry returns the original");
                        }
                    }
                }
                i += 1;
            }
            (done, money_out)
        }));
    }
    let mut successes: HashMap<(String, UserId), TransactionId> = HashMap::new();
    let mut money_out = 0;
    for h in handles {
        let (done, out) = h.await.unwrap();
        money_out += out;
        for (k, v) in done {
            assert!(successes.insert(k, v).is_none());
        }
    }
    // Each success recorded exactly once, and nothing else.
    let stored = all_transactions(l.store().as_ref()).await;
    let ops: HashSet<TransactionId> = stored
        .iter()
        .filter(|t| t.idempotency_key.starts_with('k'))
        .map(|t| t.id)
        .collect();
    assert_eq!(ops.len(), successes.len());
    assert_eq!(ops, successes.values().copied().collect());
    assert!(
        successes.len() > 2_000,
        "enough operations succeeded: {}",
        successes.len()
    );
    // No balance ever went negative: replay each wallet's history oldest first.
    for (owner, w) in wallets.iter() {
        let mut items = Vec::new();
        let mut cursor = None;
        loop {
            let page = l
                .history(Caller::User(*owner), *w, cursor.as_deref(), 200)
                .await
                .unwrap();
            items.extend(page.items);
            match page.next_cursor {
                Some(c) => cursor = Some(c),
                None => break,
            }
        }
        let mut running: i64 = 0;
        for t in items.iter().rev() {
            let m = t.money.amount.minor();
            if t.to_wallet == Some(*w) {
                running += m;
            }
            if t.from_wallet == Some(*w) {
                running -= m;
            }
            assert!(running >= 0, "wallet {w} went negative at {}", t.id);
        }
        assert_eq!(running, balance(&l, *w).await);
    }
    let report = assert_verifies(&l).await;
    assert_eq!(report.signatures, money_out);
    assert!(report.audit.ok && report.audit.checked > 0);
}

async fn amount_of(l: &Client, t: &TransactionRecord) -> i64 {
    l.transaction(Caller::Admin(UserId::new()), t.id)
        .await
        .unwrap()
        .money
        .amount
        .minor()
}
