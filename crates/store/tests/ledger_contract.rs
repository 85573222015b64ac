//! The ledger port's contract suite on SQLite, on Postgres, and on a Postgres that speaks only
//! TLS with client certificates (each test its own database or schema).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;

use async_trait::async_trait;
use coffer_audit::AuditLog;
use coffer_keys::KeyProvider;
use coffer_ledger::LedgerStore;
use coffer_ledger::testkit::Backend;
use coffer_store::audit::{PgAuditLog, SqliteAuditLog};
use coffer_store::ledger::{PgLedgerStore, SqliteLedgerStore};
use coffer_store::testing;
use sqlx::sqlite::SqlitePool;

struct Sqlite {
    pool: SqlitePool,
    dir: tempfile::TempDir,
    keys: Arc<dyn KeyProvider>,
}

#[async_trait]
impl Backend for Sqlite {
    async fn open(&self, keys: Arc<dyn KeyProvider>) -> (Arc<dyn LedgerStore>, Arc<dyn AuditLog>) {
        let audit = SqliteAuditLog::open(self.pool.clone(), keys.as_ref())
            .await
            .expect("open audit log");
        let store = SqliteLedgerStore::new(self.pool.clone(), audit.clone());
        (Arc::new(store), Arc::new(audit))
    }

    async fn raw_dump(&self) -> Vec<u8> {
        common::sqlite_raw_dump(&self.pool, self.dir.path()).await
    }

    async fn tamper(&self, sql: &str) {
        sqlx::query(sql).execute(&self.pool).await.expect("tamper");
    }

    fn keys(&self) -> Arc<dyn KeyProvider> {
        self.keys.clone()
    }
}

use common::PgBackend as Postgres;

#[async_trait]
impl Backend for Postgres {
    async fn open(&self, keys: Arc<dyn KeyProvider>) -> (Arc<dyn LedgerStore>, Arc<dyn AuditLog>) {
        let audit = PgAuditLog::open(self.app.clone(), keys.as_ref())
            .await
            .expect("open audit log");
        let store = PgLedgerStore::new(self.app.clone(), audit.clone());
        (Arc::new(store), Arc::new(audit))
    }

    async fn raw_dump(&self) -> Vec<u8> {
        common::pg_raw_dump(&self.pool, "postings").await
    }

    async fn tamper(&self, sql: &str) {
        sqlx::query(sql).execute(&self.pool).await.expect("tamper");
    }

    fn keys(&self) -> Arc<dyn KeyProvider> {
        self.keys.clone()
    }
}

mod sqlite {
    use super::*;
    coffer_ledger::ledger_store_contract_tests!(|| async {
        let (pool, dir) = testing::sqlite_pool().await;
        Sqlite {
            pool,
            dir,
            keys: common::provider(),
        }
    });
}

mod postgres {
    use super::*;
    coffer_ledger::ledger_store_contract_tests!(|| async {
        Postgres::new(testing::pg_pool_with_connections(20).await).await
    });
}

mod postgres_tls {
    use super::*;
    coffer_ledger::ledger_store_contract_tests!(|| async {
        Postgres::owner_only(testing::pg_pool_on(common::tls_pg_options(), 20).await)
    });
}
