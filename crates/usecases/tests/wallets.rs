//! The wallet and money use cases called as a second driving adapter would call them, over the
//! SQLite ledger: permissions, the read rule and the second factor refuse here, not in a
//! handler.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use coffer_audit::{AlertConfig, EntityId, ObservedAuditLog};
use coffer_auth::testkit::principal;
use coffer_auth::{MfaRule, Permission, Principal, Rbac};
use coffer_keys::KeyProvider;
use coffer_keys_local::{LocalKeyProvider, LocalKeySource, generate_inline_key};
use coffer_ledger::port::HistoryFilter;
use coffer_ledger::{Caller, Currency, Error, Ledger, MoneyRequest, Pin, WalletId, parse_pin};
use coffer_store::audit::SqliteAuditLog;
use coffer_store::ledger::SqliteLedgerStore;
use coffer_store::testing;
use coffer_usecases::{UseCaseError, Wallets};

const PIN: &str = "493817";

struct World {
    wallets: Wallets,
    _dir: tempfile::TempDir,
}

/// The use cases over a fresh SQLite ledger; money-out above 100 major units needs a second
/// factor.
async fn world() -> World {
    let (pool, dir) = testing::sqlite_pool().await;
    let keys: Arc<dyn KeyProvider> = Arc::new(
        LocalKeyProvider::open(LocalKeySource::Inline(generate_inline_key()), "test-master")
            .unwrap(),
    );
    let audit = SqliteAuditLog::open(pool.clone(), keys.as_ref())
        .await
        .unwrap();
    let store = Arc::new(SqliteLedgerStore::new(pool, audit.clone()));
    let observed = Arc::new(ObservedAuditLog::new(
        Arc::new(audit),
        AlertConfig::default(),
        EntityId::parse("usecase-tests").unwrap(),
    ));
    let ledger = Arc::new(Ledger::new(
        store,
        keys,
        observed,
        coffer_ledger::testkit::config(),
    ));
    let mfa = MfaRule {
        above_major_units: Some(100),
    };
    World {
        wallets: Wallets::new(ledger, Rbac::default(), mfa),
        _dir: dir,
    }
}

fn money(amount_minor: i64, key: &str) -> MoneyRequest {
    MoneyRequest::parse(amount_minor, "USD", None, key, i64::MAX).unwrap()
}

fn pin(digits: &str) -> Pin {
    parse_pin(digits).unwrap()
}

fn usd() -> Currency {
    Currency::parse("USD").unwrap()
}

fn forbidden(r: Result<impl std::fmt::Debug, UseCaseError>) -> Permission {
    match r {
        Err(UseCaseError::Forbidden(p)) => p,
        other => panic!("expected Forbidden, got {other:?}"),
    }
}

fn not_found(r: Result<impl std::fmt::Debug, UseCaseError>) {
    assert!(
        matches!(r, Err(UseCaseError::Ledger(Error::WalletNotFound(_)))),
        "expected WalletNotFound, got {r:?}"
    );
}

#[tokio::test]
async fn each_use_case_needs_its_permission() {
    let w = world().await;
    let alice = principal(&["user"], &["pwd"]);
    let wallet = w
        .wallets
        .open_wallet(&alice, usd(), &pin(PIN))
        .await
        .unwrap()
        .id;
    let nobody = principal(&["no-such-role"], &["pwd", "otp"]);
    let to = WalletId::new();
    assert_eq!(
        forbidden(w.wallets.open_wallet(&nobody, usd(), &pin(PIN)).await),
        Permission::WalletManage
    );
    assert_eq!(
        forbidden(w.wallets.wallets(&nobody, None, 50).await),
        Permission::WalletRead
    );
    assert_eq!(
        forbidden(w.wallets.wallet(&nobody, wallet).await),
        Permission::WalletRead
    );
    assert_eq!(
        forbidden(
            w.wallets
                .history(&nobody, wallet, &HistoryFilter::default(), None, 10)
                .await
        ),
        Permission::WalletRead
    );
    assert_eq!(
        forbidden(
            w.wallets
                .change_pin(&nobody, wallet, &pin(PIN), &pin("111111"))
                .await
        ),
        Permission::WalletManage
    );
    assert_eq!(
        forbidden(w.wallets.deposit(&nobody, wallet, &money(100, "d")).await),
        Permission::WalletDeposit
    );
    assert_eq!(
        forbidden(
            w.wallets
                .withdraw(&nobody, wallet, &pin(PIN), &money(100, "w"))
                .await
        ),
        Permission::WalletWithdraw
    );
    assert_eq!(
        forbidden(
            w.wallets
                .transfer(&nobody, wallet, to, &pin(PIN), &money(100, "t"))
                .await
        ),
        Permission::WalletTransfer
    );
    // Admins administer and never move users' money.
    let admin = principal(&["admin"], &["pwd", "otp"]);
    assert_eq!(
        forbidden(w.wallets.deposit(&admin, wallet, &money(100, "a")).await),
        Permission::WalletDeposit
    );
    // Nothing was written by any refusal.
    let history = w
        .wallets
        .history(&alice, wallet, &HistoryFilter::default(), None, 10)
        .await
        .unwrap();
    assert!(history.items.is_empty());
}

#[tokio::test]
async fn users_read_their_own_wallets_and_wallet_administrators_read_any() {
    let w = world().await;
    let (alice, bob) = (
        principal(&["user"], &["pwd"]),
        principal(&["user"], &["pwd"]),
    );
    let wallet = w
        .wallets
        .open_wallet(&alice, usd(), &pin(PIN))
        .await
        .unwrap()
        .id;
    let t = w
        .wallets
        .deposit(&alice, wallet, &money(5_000, "d1"))
        .await
        .unwrap();
    assert_eq!(w.wallets.wallet(&alice, wallet).await.unwrap().id, wallet);
    not_found(w.wallets.wallet(&bob, wallet).await);
    not_found(
        w.wallets
            .history(&bob, wallet, &HistoryFilter::default(), None, 10)
            .await,
    );
    assert!(matches!(
        w.wallets.transaction(&bob, t.id).await,
        Err(UseCaseError::Ledger(Error::TransactionNotFound(_)))
    ));
    not_found(w.wallets.deposit(&bob, wallet, &money(1, "d2")).await);

    let admin = principal(&["admin"], &["pwd"]);
    assert!(matches!(w.wallets.reader(&admin), Caller::Admin(_)));
    assert!(matches!(w.wallets.reader(&alice), Caller::User(_)));
    assert_eq!(w.wallets.wallet(&admin, wallet).await.unwrap().id, wallet);
    assert_eq!(w.wallets.transaction(&admin, t.id).await.unwrap().id, t.id);
    assert!(
        w.wallets
            .wallets(&bob, None, 50)
            .await
            .unwrap()
            .items
            .is_empty()
    );
}

#[tokio::test]
async fn money_out_above_the_threshold_in_a_window_needs_a_second_factor_and_counts_no_pin_attempt()
{
    let w = world().await;
    let alice = principal(&["user"], &["pwd"]);
    let alice_otp = Principal {
        claims: coffer_auth::token::AccessClaims {
            amr: vec!["pwd".into(), "otp".into()],
            ..alice.claims.clone()
        },
        ..alice.clone()
    };
    let from = w
        .wallets
        .open_wallet(&alice, usd(), &pin(PIN))
        .await
        .unwrap()
        .id;
    let to = w
        .wallets
        .open_wallet(&alice, usd(), &pin(PIN))
        .await
        .unwrap()
        .id;
    w.wallets
        .deposit(&alice, from, &money(50_000, "d"))
        .await
        .unwrap();

    // 100.01 USD without a second factor: refused before the PIN is looked at (a wrong PIN is
    // not counted).
    for _ in 0..coffer_ledger::PIN_LOCK_THRESHOLD + 1 {
        assert!(matches!(
            w.wallets
                .withdraw(&alice, from, &pin("000000"), &money(10_001, "w1"))
                .await,
            Err(UseCaseError::MfaRequired(_))
        ));
        assert!(matches!(
            w.wallets
                .transfer(&alice, from, to, &pin("000000"), &money(10_001, "t1"))
                .await,
            Err(UseCaseError::MfaRequired(_))
        ));
    }
    assert_eq!(w.wallets.wallet(&alice, from).await.unwrap().failed_pins, 0);
    // Up to the threshold, or with the second factor, it goes through.
    w.wallets
        .withdraw(&alice, from, &pin(PIN), &money(10_000, "w2"))
        .await
        .unwrap();
    // The threshold holds for the window, not per request: with 100.00 gone today, one more
    // cent needs the second factor too, and is refused before its (wrong) PIN is looked at.
    for key in ["w4", "w5"] {
        assert!(matches!(
            w.wallets
                .withdraw(&alice, from, &pin("000000"), &money(1, key))
                .await,
            Err(UseCaseError::MfaRequired(_))
        ));
    }
    assert!(matches!(
        w.wallets
            .transfer(&alice, from, to, &pin(PIN), &money(1, "t4"))
            .await,
        Err(UseCaseError::MfaRequired(_))
    ));
    assert_eq!(w.wallets.wallet(&alice, from).await.unwrap().failed_pins, 0);
    // A retry of the request that filled the window is still answered as before.
    w.wallets
        .withdraw(&alice, from, &pin(PIN), &money(10_000, "w2"))
        .await
        .unwrap();
    w.wallets
        .transfer(&alice_otp, from, to, &pin(PIN), &money(10_001, "t2"))
        .await
        .unwrap();
    assert_eq!(
        w.wallets
            .wallet(&alice, from)
            .await
            .unwrap()
            .balance
            .minor(),
        50_000 - 10_000 - 10_001
    );

    // Another user's wallet is "not found" first, whatever the amount.
    let bob = principal(&["user"], &["pwd"]);
    not_found(
        w.wallets
            .withdraw(&bob, from, &pin(PIN), &money(10_001, "w3"))
            .await,
    );
    not_found(
        w.wallets
            .transfer(&bob, from, to, &pin(PIN), &money(10_001, "t3"))
            .await,
    );
}
