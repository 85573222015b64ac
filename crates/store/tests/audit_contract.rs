//! The audit port's contract suite on SQLite and on Postgres (each test its own schema).
#![allow(clippy::expect_used)] // test helpers outside #[test] fns

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

/// Two processes (two log instances) appending to one stream in turn: each one's remembered head
/// goes stale every time, and the chain stays whole.
#[tokio::test]
async fn postgres_two_instances_interleaving_on_one_stream() {
    use coffer_audit::{
        Action, Actor, AuditEvent, AuditQuery, EntityId, Outcome, StreamId, Subject,
    };
    let pool = testing::pg_pool().await;
    let key_material = generate_inline_key();
    let provider = || {
        LocalKeyProvider::open(LocalKeySource::Inline(key_material.clone()), "test-master")
            .expect("inline key")
    };
    let a = PgAuditLog::open(pool.clone(), &provider())
        .await
        .expect("open a");
    let b = PgAuditLog::open(pool.clone(), &provider())
        .await
        .expect("open b");
    let event = AuditEvent::new(
        Actor::Anonymous,
        Action::UserLoginFailed,
        Subject::User(EntityId::parse("u1").expect("id")),
        Outcome::Denied,
    );
    for i in 0..20 {
        let log = if i % 3 == 0 { &a } else { &b };
        let receipt = log.append(&event).await.expect("append");
        assert_eq!(receipt.seq, i + 1);
    }
    let records = a
        .list(&AuditQuery {
            stream: Some(StreamId::parse("user:u1").expect("stream")),
            ..AuditQuery::default()
        })
        .await
        .expect("list");
    assert_eq!(records.len(), 20);
    assert!(b.verify(None, &|_| {}).await.expect("verify").ok);
}
