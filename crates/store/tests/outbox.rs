//! The outbox store's contract suite on SQLite and on Postgres as the application role (each
//! test its own database or schema), and what only Postgres has: the scan's order under
//! concurrent transactions, and the application role's grants.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;

use async_trait::async_trait;
use coffer_clock::Clock;
use coffer_keys::KeyProvider;
use coffer_outbox::testkit::{Backend, Stores};
use coffer_outbox::{OutboxStore, Sink, Target, WebhookUrl};
use coffer_store::audit::{PgAuditLog, SqliteAuditLog};
use coffer_store::ledger::{PgLedgerStore, SqliteLedgerStore};
use coffer_store::outbox::{PgOutboxStore, SqliteOutboxStore};
use coffer_store::testing;
use sqlx::postgres::PgPool;
use sqlx::sqlite::SqlitePool;

struct Sqlite {
    pool: SqlitePool,
    _dir: tempfile::TempDir,
    keys: Arc<dyn KeyProvider>,
}

#[async_trait]
impl Backend for Sqlite {
    async fn open(&self, keys: Arc<dyn KeyProvider>, clock: Arc<dyn Clock>) -> Stores {
        let audit = SqliteAuditLog::open(self.pool.clone(), keys.as_ref())
            .await
            .expect("open audit log")
            .with_clock(clock.clone());
        Stores {
            outbox: Arc::new(SqliteOutboxStore::new(self.pool.clone())),
            ledger: Arc::new(
                SqliteLedgerStore::new(self.pool.clone(), audit.clone()).with_clock(clock),
            ),
            audit: Arc::new(audit),
        }
    }

    fn keys(&self) -> Arc<dyn KeyProvider> {
        self.keys.clone()
    }
}

struct Postgres {
    app: PgPool,
    keys: Arc<dyn KeyProvider>,
}

#[async_trait]
impl Backend for Postgres {
    async fn open(&self, keys: Arc<dyn KeyProvider>, clock: Arc<dyn Clock>) -> Stores {
        let audit = PgAuditLog::open(self.app.clone(), keys.as_ref())
            .await
            .expect("open audit log")
            .with_clock(clock.clone());
        Stores {
            outbox: Arc::new(PgOutboxStore::new(self.app.clone())),
            ledger: Arc::new(PgLedgerStore::new(self.app.clone(), audit.clone()).with_clock(clock)),
            audit: Arc::new(audit),
        }
    }

    fn keys(&self) -> Arc<dyn KeyProvider> {
        self.keys.clone()
    }
}

mod sqlite {
    use super::*;
    coffer_outbox::outbox_store_contract_tests!(|| async {
        let (pool, dir) = testing::sqlite_pool().await;
        Sqlite {
            pool,
            _dir: dir,
            keys: common::provider(),
        }
    });
}

mod postgres {
    use super::*;
    coffer_outbox::outbox_store_contract_tests!(|| async {
        let owner = testing::pg_pool().await;
        Postgres {
            app: testing::pg_app_pool(&owner).await,
            keys: common::provider(),
        }
    });
}

/// Inserts an event as the ledger would (the payload is not opened by the scan).
async fn insert_event(conn: &mut sqlx::PgConnection, wallet: uuid::Uuid, seq: i64) {
    sqlx::query(
        "INSERT INTO events (id, wallet_id, seq, kind, created_at, data) \
         VALUES ($1, $2, $3, 'transaction.posted', 10, '\\x00')",
    )
    .bind(uuid::Uuid::now_v7())
    .bind(wallet)
    .bind(seq)
    .execute(conn)
    .await
    .unwrap();
}

async fn last_seen(pool: &PgPool, wallet: uuid::Uuid) -> Option<i64> {
    sqlx::query_scalar("SELECT last_seen FROM outbox_cursors WHERE wallet_id = $1")
        .bind(wallet)
        .fetch_optional(pool)
        .await
        .unwrap()
}

/// An event whose transaction began first but commits after a later one is not passed over:
/// the scan waits below the oldest running transaction, then reads both.
#[tokio::test]
async fn the_scan_does_not_pass_a_transaction_still_running() {
    let owner = testing::pg_pool().await;
    let app = testing::pg_app_pool(&owner).await;
    let store = PgOutboxStore::new(app.clone());
    let url = WebhookUrl::parse("https://h.example/", false).unwrap();
    store
        .put_sink(&Sink::new(Target::Webhook(url), vec![], 0))
        .await
        .unwrap();
    let (slow, fast) = (uuid::Uuid::now_v7(), uuid::Uuid::now_v7());
    let mut first = app.begin().await.unwrap();
    insert_event(&mut first, slow, 1).await;
    let mut second = app.acquire().await.unwrap();
    insert_event(&mut second, fast, 1).await;
    assert_eq!(
        store.scan(100, 20).await.unwrap(),
        0,
        "below the running transaction"
    );
    assert_eq!(last_seen(&app, fast).await, None);
    first.commit().await.unwrap();
    assert_eq!(store.scan(100, 20).await.unwrap(), 2);
    assert_eq!(last_seen(&app, slow).await, Some(1));
    assert_eq!(last_seen(&app, fast).await, Some(1));
}

/// The application role writes sinks, cursors and attempts, but never rewrites an attempt, and
/// deletes events only through the pruning function.
#[tokio::test]
async fn the_application_role_deletes_events_only_by_pruning() {
    let owner = testing::pg_pool().await;
    let app = testing::pg_app_pool(&owner).await;
    common::assert_refused_to_app_role(
        &app,
        &[
            "DELETE FROM events",
            "UPDATE events SET kind = 'x'",
            "UPDATE outbox_attempts SET outcome = 'delivered'",
            "DELETE FROM outbox_attempts",
            "DELETE FROM outbox_scan",
        ],
    )
    .await;
    let pruned: i64 = sqlx::query_scalar("SELECT coffer_prune_events(0, 0, 10)")
        .fetch_one(&app)
        .await
        .unwrap();
    assert_eq!(pruned, 0);
}
