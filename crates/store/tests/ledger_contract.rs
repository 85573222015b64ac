//! The ledger port's contract suite on SQLite and on Postgres (each test its own database or
//! schema).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use async_trait::async_trait;
use coffer_audit::AuditLog;
use coffer_keys::KeyProvider;
use coffer_keys_local::{LocalKeyProvider, LocalKeySource, generate_inline_key};
use coffer_ledger::LedgerStore;
use coffer_ledger::testkit::Backend;
use coffer_store::audit::{PgAuditLog, SqliteAuditLog};
use coffer_store::ledger::{PgLedgerStore, SqliteLedgerStore};
use coffer_store::testing;
use sqlx::postgres::PgPool;
use sqlx::sqlite::SqlitePool;

fn provider() -> Arc<dyn KeyProvider> {
    Arc::new(
        LocalKeyProvider::open(LocalKeySource::Inline(generate_inline_key()), "test-master")
            .expect("inline key"),
    )
}

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
        // Everything in the database file and its write-ahead log, byte for byte.
        sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
            .execute(&self.pool)
            .await
            .expect("checkpoint");
        let mut raw = Vec::new();
        for entry in std::fs::read_dir(self.dir.path()).expect("list the database directory") {
            raw.extend(std::fs::read(entry.expect("entry").path()).expect("read a database file"));
        }
        raw
    }

    async fn tamper(&self, sql: &str) {
        sqlx::query(sql).execute(&self.pool).await.expect("tamper");
    }

    fn keys(&self) -> Arc<dyn KeyProvider> {
        self.keys.clone()
    }
}

struct Postgres {
    pool: PgPool,
    keys: Arc<dyn KeyProvider>,
}

#[async_trait]
impl Backend for Postgres {
    async fn open(&self, keys: Arc<dyn KeyProvider>) -> (Arc<dyn LedgerStore>, Arc<dyn AuditLog>) {
        let audit = PgAuditLog::open(self.pool.clone(), keys.as_ref())
            .await
            .expect("open audit log");
        let store = PgLedgerStore::new(self.pool.clone(), audit.clone());
        (Arc::new(store), Arc::new(audit))
    }

    async fn raw_dump(&self) -> Vec<u8> {
        // Every row of every table in the test's schema, in Postgres's text form (bytea as hex).
        let tables: Vec<String> = sqlx::query_scalar(
            "SELECT table_name::text FROM information_schema.tables \
             WHERE table_schema = current_schema() ORDER BY 1",
        )
        .fetch_all(&self.pool)
        .await
        .expect("list tables");
        assert!(tables.iter().any(|t| t == "postings"), "{tables:?}");
        let mut raw = Vec::new();
        for table in tables {
            let rows: Vec<String> = sqlx::query_scalar(&format!("SELECT t::text FROM {table} t"))
                .fetch_all(&self.pool)
                .await
                .expect("dump a table");
            for row in rows {
                raw.extend(row.into_bytes());
                raw.push(b'\n');
            }
        }
        raw
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
            keys: provider(),
        }
    });
}

mod postgres {
    use super::*;
    coffer_ledger::ledger_store_contract_tests!(|| async {
        Postgres {
            pool: testing::pg_pool_with_connections(20).await,
            keys: provider(),
        }
    });
}
