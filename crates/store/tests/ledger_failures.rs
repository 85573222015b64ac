//! Failures around the ledger: a key provider that times out, a database that goes away, and
//! the application role's limits on Postgres. Each must end in a typed error and leave the
//! books as they were.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;

use coffer_audit::{AlertConfig, AuditLog, EntityId, ObservedAuditLog};
use coffer_keys::{KeyError, KeyProvider};
use coffer_keys_local::{LocalKeyProvider, LocalKeySource, generate_inline_key};
use coffer_ledger::testkit::{Client, MoneyRequest, config};
use coffer_ledger::{Caller, Error, Ledger, LedgerStore, UserId};
use coffer_store::audit::{PgAuditLog, SqliteAuditLog};
use coffer_store::ledger::{PgLedgerStore, SqliteLedgerStore};
use coffer_store::testing;

use common::MockProvider;

fn ledger(
    store: Arc<dyn LedgerStore>,
    audit: Arc<dyn AuditLog>,
    keys: Arc<dyn KeyProvider>,
) -> Client {
    let observed = Arc::new(ObservedAuditLog::new(
        audit,
        AlertConfig::default(),
        EntityId::parse("failure-tests").unwrap(),
    ));
    Client::new(Ledger::new(store, keys, observed, config()))
}

fn local_keys() -> Arc<dyn KeyProvider> {
    Arc::new(LocalKeyProvider::open(LocalKeySource::Inline(generate_inline_key()), "test").unwrap())
}

fn req(amount: i64, key: &str) -> MoneyRequest<'_> {
    MoneyRequest {
        amount_minor: amount,
        currency: "USD",
        memo: None,
        idempotency_key: key,
    }
}

#[tokio::test]
async fn a_key_provider_that_times_out_fails_retryably_and_writes_nothing() {
    let (pool, _dir) = testing::sqlite_pool().await;
    let keys = local_keys();
    let audit = SqliteAuditLog::open(pool.clone(), keys.as_ref())
        .await
        .unwrap();
    let store: Arc<dyn LedgerStore> = Arc::new(SqliteLedgerStore::new(pool, audit.clone()));
    let good = ledger(store.clone(), Arc::new(audit.clone()), keys);
    let alice = UserId::new();
    let w = good.open_wallet(alice, "USD", "135790").await.unwrap().id;
    good.deposit(alice, w, &req(100, "d1")).await.unwrap();

    let mut kms = MockProvider::new();
    kms.expect_name().return_const("mock".to_owned());
    kms.expect_unwrap_data_key().returning(|_, _| {
        Err(KeyError::Unavailable {
            provider: "mock".into(),
            reason: "timed out after 2s".into(),
        })
    });
    kms.expect_generate_data_key().returning(|_| {
        Err(KeyError::Unavailable {
            provider: "mock".into(),
            reason: "timed out after 2s".into(),
        })
    });
    let down = ledger(store.clone(), Arc::new(audit), Arc::new(kms));
    for result in [
        down.deposit(alice, w, &req(5, "d2")).await.map(|_| ()),
        down.withdraw(alice, w, "135790", &req(5, "w1"))
            .await
            .map(|_| ()),
        down.open_wallet(alice, "USD", "135790").await.map(|_| ()),
    ] {
        let e = result.unwrap_err();
        assert!(
            matches!(e, Error::Keys(KeyError::Unavailable { .. })),
            "{e:?}"
        );
        assert!(e.is_retryable());
    }
    let view = good.wallet(Caller::User(alice), w).await.unwrap();
    assert_eq!((view.balance.minor(), view.failed_pins), (100, 0));
    assert_eq!(
        good.wallets_of(alice, None, 50).await.unwrap().items.len(),
        1
    );
    let history = good
        .history(Caller::User(alice), w, None, 10)
        .await
        .unwrap();
    assert_eq!(history.items.len(), 1, "only the first deposit");
}

#[tokio::test]
async fn a_database_that_goes_away_fails_retryably() {
    let (pool, _dir) = testing::sqlite_pool().await;
    let keys = local_keys();
    let audit = SqliteAuditLog::open(pool.clone(), keys.as_ref())
        .await
        .unwrap();
    let store = Arc::new(SqliteLedgerStore::new(pool.clone(), audit.clone()));
    let l = ledger(store, Arc::new(audit), keys);
    let alice = UserId::new();
    let w = l.open_wallet(alice, "USD", "135790").await.unwrap().id;
    pool.close().await;
    let e = l.deposit(alice, w, &req(5, "d")).await.unwrap_err();
    assert!(matches!(e, Error::Unavailable(_)), "{e:?}");
    assert!(e.is_retryable());
}

#[tokio::test]
async fn the_application_role_moves_money_but_cannot_rewrite_history() {
    let owner = testing::pg_pool().await;
    let app = testing::pg_app_pool(&owner).await;
    let keys = local_keys();
    let audit = PgAuditLog::open(app.clone(), keys.as_ref()).await.unwrap();
    let store = Arc::new(PgLedgerStore::new(app.clone(), audit.clone()));
    let l = ledger(store, Arc::new(audit), keys);
    let (alice, bob) = (UserId::new(), UserId::new());
    let a = l.open_wallet(alice, "USD", "135790").await.unwrap().id;
    let b = l.open_wallet(bob, "USD", "135790").await.unwrap().id;
    let admin = UserId::new();
    l.deposit(alice, a, &req(100, "d")).await.unwrap();
    let t = l
        .transfer(alice, a, b, "135790", &req(40, "t"))
        .await
        .unwrap();
    assert!(matches!(
        l.withdraw(alice, a, "000000", &req(1, "w")).await,
        Err(Error::WrongPin { .. })
    ));
    l.unlock_pin(admin, a).await.unwrap();
    l.change_pin(alice, a, "135790", "246801").await.unwrap();
    l.reset_pin(admin, b, "305918").await.unwrap();
    l.reverse(admin, t.id, "mistake", "rev").await.unwrap();
    l.freeze(admin, b).await.unwrap();
    let view = l.wallet(Caller::User(alice), a).await.unwrap();
    assert_eq!(view.balance.minor(), 100);
    let report = l
        .verify(coffer_ledger::verify::VerifyOptions::default(), &|_| {})
        .await
        .unwrap();
    assert!(report.ok(), "{:?}", report.findings);
    // The memo backfill runs as the application role: it may set a transfer's receiver memo.
    let memo = MoneyRequest {
        memo: Some("for the backfill"),
        ..req(5, "tm")
    };
    l.transfer(alice, a, b, "246801", &memo).await.unwrap();
    sqlx::query("UPDATE transactions SET receiver_memo = NULL")
        .execute(&owner)
        .await
        .unwrap();
    assert_eq!(
        l.backfill_receiver_memos(None, 100).await.unwrap().copied,
        1
    );
    common::assert_refused_to_app_role(
        &app,
        &[
            "UPDATE postings SET amount = amount",
            "DELETE FROM postings",
            "UPDATE transactions SET memo = NULL",
            "DELETE FROM transactions",
            "DELETE FROM wallet_public_keys",
            "TRUNCATE transactions CASCADE",
        ],
    )
    .await;
}
