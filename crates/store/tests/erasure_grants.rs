//! Erasure on Postgres, as the application role: key rows go only through the erasure functions,
//! which refuse what their preconditions exclude; an erasure is announced on the revocation
//! feed, so every process forgets the erased wallets' keys. The outbox is append-only for the
//! same role.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use coffer_audit::{Actor, AlertConfig, EntityId, ObservedAuditLog};
use coffer_auth::CachedRevocationList;
use coffer_ledger::{Currency, Ledger, LedgerConfig, UserId, parse_pin};
use coffer_store::audit::PgAuditLog;
use coffer_store::auth::{FeedListeners, PgRevocationList, feed_revocations};
use coffer_store::ledger::PgLedgerStore;
use coffer_store::testing;
use sqlx::postgres::PgPool;
use uuid::Uuid;

async fn ledger_on(app: &PgPool) -> Ledger {
    let keys = common::provider();
    let audit = PgAuditLog::open(app.clone(), keys.as_ref()).await.unwrap();
    let observed = Arc::new(ObservedAuditLog::new(
        Arc::new(audit.clone()),
        AlertConfig::default(),
        EntityId::parse("erasure-tests").unwrap(),
    ));
    Ledger::new(
        Arc::new(PgLedgerStore::new(app.clone(), audit)),
        keys,
        observed,
        LedgerConfig {
            kdf_iterations: coffer_crypto::pin::MIN_ITERATIONS,
            ..LedgerConfig::default()
        },
    )
}

async fn eventually(what: &str, done: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < deadline, "{what}: not within 10 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The SQLSTATE of a statement's failure.
async fn refused(pool: &PgPool, sql: &str) -> String {
    let e = sqlx::query(sql).execute(pool).await.unwrap_err();
    e.as_database_error().unwrap().code().unwrap().into_owned()
}

#[tokio::test]
async fn key_rows_go_only_through_the_functions_and_the_feed_tells_every_process() {
    let owner = testing::pg_pool().await;
    let app = testing::pg_app_pool(&owner).await;
    let ledger = ledger_on(&app).await;
    let (alice, bob) = (UserId::new(), UserId::new());
    let pin = parse_pin("493817").unwrap();
    let usd = Currency::parse("USD").unwrap();
    let a = ledger.open_wallet(alice, usd, &pin).await.unwrap().id;
    let b = ledger.open_wallet(bob, usd, &pin).await.unwrap().id;

    // The application role deletes no key row itself, and the functions refuse an open wallet
    // and a user whose wallets are not all erased.
    for table in ["wallet_keys", "user_keys"] {
        let code = refused(&app, &format!("DELETE FROM {table}")).await;
        assert_eq!(code, "42501", "{table}: insufficient privilege");
    }
    let code = refused(
        &app,
        &format!("SELECT coffer_erase_wallets(ARRAY['{b}'::uuid], 1)"),
    )
    .await;
    assert_eq!(code, "23514", "an open wallet is refused");
    let code = refused(
        &app,
        &format!("SELECT coffer_erase_user('{bob}'::uuid, 1, 'k', 'r')"),
    )
    .await;
    assert_eq!(code, "23514", "a user with an open wallet is refused");

    // Another process's feed hears of the erasure.
    let heard = Arc::new(Mutex::new(Vec::<Uuid>::new()));
    let cache = Arc::new(CachedRevocationList::new(
        Arc::new(PgRevocationList::new(app.clone())),
        Duration::from_secs(60),
    ));
    let listeners = FeedListeners {
        revocations: Some(cache.clone()),
        erased_wallet: Arc::new({
            let heard = heard.clone();
            move |id| heard.lock().unwrap().push(id)
        }),
    };
    let feed = tokio::spawn(feed_revocations(
        owner.clone(),
        listeners,
        Duration::from_millis(100),
    ));
    eventually("the feed listens", || cache.is_live()).await;
    let by = Actor::Service(EntityId::parse("cli:test").unwrap());
    ledger.erase_wallets(&by, alice).await.unwrap();
    eventually("the erasure is heard", || {
        heard.lock().unwrap().contains(a.as_uuid())
    })
    .await;
    feed.abort();
    let keys: i64 = sqlx::query_scalar("SELECT count(*) FROM wallet_keys WHERE wallet_id = $1")
        .bind(a.as_uuid())
        .fetch_one(&owner)
        .await
        .unwrap();
    assert_eq!(keys, 0);
}

#[tokio::test]
async fn the_application_role_appends_events_and_never_rewrites_them() {
    let owner = testing::pg_pool().await;
    let app = testing::pg_app_pool(&owner).await;
    let ledger = ledger_on(&app).await;
    let pin = parse_pin("493817").unwrap();
    let usd = Currency::parse("USD").unwrap();
    let w = ledger
        .open_wallet(UserId::new(), usd, &pin)
        .await
        .unwrap()
        .id;
    let written: i64 = sqlx::query_scalar("SELECT count(*) FROM events WHERE wallet_id = $1")
        .bind(w.as_uuid())
        .fetch_one(&app)
        .await
        .unwrap();
    assert_eq!(
        written, 1,
        "opening the wallet, as the application role, wrote its event"
    );
    for sql in [
        format!("UPDATE events SET kind = 'wallet.closed' WHERE wallet_id = '{w}'"),
        format!("DELETE FROM events WHERE wallet_id = '{w}'"),
        "TRUNCATE events".to_owned(),
    ] {
        assert_eq!(
            refused(&app, &sql).await,
            "42501",
            "{sql}: insufficient privilege"
        );
    }
}
