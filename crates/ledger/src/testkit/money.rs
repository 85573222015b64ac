//! Money cases of the contract suite: double entry (with no key-provider call under the locks),
//! refusals that write nothing, frozen and closed wallets, idempotency across a restart, and
//! reversals.

use super::*;
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
        without_events: false,
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
