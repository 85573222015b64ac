//! The audit port's contract suite on SQLite and on Postgres (each test its own schema).

use std::sync::Arc;

use coffer_audit::AuditLog;
use coffer_audit::testkit::LogUnderTest;
use coffer_keys_local::{LocalKeyProvider, LocalKeySource, generate_inline_key};
use coffer_store::audit::{PgAuditLog, SqliteAuditLog};
use coffer_store::testing;

fn provider() -> LocalKeyProvider {
    LocalKeyProvider::open(LocalKeySource::Inline(generate_inline_key()), "test-master")
        .expect("inline key")
}

mod sqlite {
    use super::*;
    coffer_audit::audit_log_contract_tests!(|| async {
        let (pool, dir) = testing::sqlite_pool().await;
        let log = SqliteAuditLog::open(pool, &provider())
            .await
            .expect("open log");
        LogUnderTest::new(Arc::new(log) as Arc<dyn AuditLog>, dir)
    });
}

mod postgres {
    use super::*;
    coffer_audit::audit_log_contract_tests!(|| async {
        let pool = testing::pg_pool().await;
        let log = PgAuditLog::open(pool, &provider()).await.expect("open log");
        LogUnderTest::new(Arc::new(log) as Arc<dyn AuditLog>, ())
    });
}
