//! Tampering with the stored audit log, as an attacker with full database access would (triggers
//! disabled, constraints dropped), is detected and pinpointed on both databases; with the
//! protections in place the tampering is refused outright.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use coffer_audit::{
    Action, Actor, AuditEvent, AuditLog, DetailValue, EntityId, FindingKind, Outcome, Subject,
};
use coffer_keys_local::{LocalKeyProvider, LocalKeySource, generate_inline_key};
use coffer_store::audit::{PgAuditLog, SqliteAuditLog};
use coffer_store::testing;

fn provider() -> LocalKeyProvider {
    LocalKeyProvider::open(LocalKeySource::Inline(generate_inline_key()), "test-master").unwrap()
}

fn deposit(wallet: &str, amount: i64) -> AuditEvent {
    AuditEvent::new(
        Actor::User(EntityId::parse("u1").unwrap()),
        Action::TransactionDeposit,
        Subject::Wallet(EntityId::parse(wallet).unwrap()),
        Outcome::Success,
    )
    .detail("amount_minor", DetailValue::Int(amount))
    .unwrap()
}

/// wallet:a and wallet:b, five records each, interleaved; a checkpoint after the fourth.
async fn fill(log: &dyn AuditLog) {
    for i in 0..4 {
        log.append(&deposit("a", 100 + i)).await.unwrap();
        log.append(&deposit("b", 200 + i)).await.unwrap();
    }
    log.checkpoint().await.unwrap().unwrap();
    log.append(&deposit("a", 104)).await.unwrap();
    log.append(&deposit("b", 204)).await.unwrap();
    let report = log.verify(None, &|_| {}).await.unwrap();
    assert!(report.ok, "{report:?}");
}

async fn first_bad(log: &dyn AuditLog) -> (String, u64, FindingKind) {
    let report = log.verify(None, &|_| {}).await.unwrap();
    assert!(!report.ok, "tampering went unnoticed");
    let f = report.first_bad.unwrap();
    (f.stream, f.seq, f.kind)
}

/// The tampering, as SQL for each database.
struct Case {
    pg: &'static [&'static str],
    sqlite: &'static [&'static str],
    expected: (&'static str, u64, FindingKind),
}

const PG_UNPROTECT: &str = "ALTER TABLE audit_events DISABLE TRIGGER USER";
const SQLITE_UNPROTECT: &[&str] = &[
    "DROP TRIGGER audit_events_no_update",
    "DROP TRIGGER audit_events_no_delete",
];

fn cases() -> Vec<(&'static str, Case)> {
    vec![
        (
            "modify",
            Case {
                pg: &[
                    PG_UNPROTECT,
                    r#"UPDATE audit_events SET details = '{"amount_minor":{"int":1000000}}' WHERE stream = 'wallet:a' AND seq = 3"#,
                ],
                sqlite: &[
                    r#"UPDATE audit_events SET details = '{"amount_minor":{"int":1000000}}' WHERE stream = 'wallet:a' AND seq = 3"#,
                ],
                expected: ("wallet:a", 3, FindingKind::Modified),
            },
        ),
        (
            "delete",
            Case {
                pg: &[
                    PG_UNPROTECT,
                    "DELETE FROM audit_events WHERE stream = 'wallet:a' AND seq = 2",
                ],
                sqlite: &["DELETE FROM audit_events WHERE stream = 'wallet:a' AND seq = 2"],
                expected: ("wallet:a", 3, FindingKind::Deleted { from: 2, to: 2 }),
            },
        ),
        (
            "reorder",
            Case {
                pg: &[
                    PG_UNPROTECT,
                    "ALTER TABLE audit_events ALTER COLUMN id DROP IDENTITY",
                    "UPDATE audit_events SET id = -id WHERE stream = 'wallet:a' AND seq IN (2, 3)",
                    "UPDATE audit_events SET id = (SELECT -id FROM audit_events WHERE stream = 'wallet:a' AND seq = 3) WHERE stream = 'wallet:a' AND seq = 2",
                    "UPDATE audit_events SET id = (SELECT -id FROM audit_events WHERE stream = 'wallet:a' AND seq = 2) WHERE stream = 'wallet:a' AND seq = 3",
                ],
                sqlite: &[
                    "UPDATE audit_events SET id = -id WHERE stream = 'wallet:a' AND seq IN (2, 3)",
                    "UPDATE audit_events SET id = (SELECT -id FROM audit_events WHERE stream = 'wallet:a' AND seq = 3) WHERE stream = 'wallet:a' AND seq = 2",
                    "UPDATE audit_events SET id = (SELECT -id FROM audit_events WHERE stream = 'wallet:a' AND seq = 2) WHERE stream = 'wallet:a' AND seq = 3",
                ],
                expected: ("wallet:a", 3, FindingKind::Reordered),
            },
        ),
        (
            "insert",
            Case {
                // Make room in the id order, then forge a record between seq 2 and seq 3 of wallet:b.
                pg: &[
                    PG_UNPROTECT,
                    "ALTER TABLE audit_events ALTER COLUMN id DROP IDENTITY",
                    "UPDATE audit_events SET id = id * 10 + 1000000",
                    "INSERT INTO audit_events (id, stream, seq, at_micros, actor_kind, actor_id, action, subject_kind, subject_id, outcome, request_id, details, prev_mac, mac) \
                 SELECT id + 1, stream, 6, at_micros, actor_kind, actor_id, action, subject_kind, subject_id, outcome, request_id, '{\"amount_minor\":{\"int\":5}}', mac, mac \
                 FROM audit_events WHERE stream = 'wallet:b' AND seq = 2",
                ],
                sqlite: &[
                    "UPDATE audit_events SET id = id * 10 + 1000000",
                    "INSERT INTO audit_events (id, stream, seq, at_micros, actor_kind, actor_id, action, subject_kind, subject_id, outcome, request_id, details, prev_mac, mac) \
                 SELECT id + 1, stream, 6, at_micros, actor_kind, actor_id, action, subject_kind, subject_id, outcome, request_id, '{\"amount_minor\":{\"int\":5}}', mac, mac \
                 FROM audit_events WHERE stream = 'wallet:b' AND seq = 2",
                ],
                expected: ("wallet:b", 6, FindingKind::Inserted),
            },
        ),
        (
            "truncate a stream's tail",
            Case {
                pg: &[
                    PG_UNPROTECT,
                    "DELETE FROM audit_events WHERE stream = 'wallet:a' AND seq >= 3",
                ],
                sqlite: &["DELETE FROM audit_events WHERE stream = 'wallet:a' AND seq >= 3"],
                expected: (
                    "wallet:a",
                    2,
                    FindingKind::Truncated {
                        last_seq: 2,
                        expected_seq: 4,
                        proven: true,
                    },
                ),
            },
        ),
        (
            "truncate the table",
            Case {
                pg: &[PG_UNPROTECT, "TRUNCATE audit_events"],
                sqlite: &["DELETE FROM audit_events"],
                expected: (
                    "wallet:a",
                    0,
                    FindingKind::Truncated {
                        last_seq: 0,
                        expected_seq: 4,
                        proven: true,
                    },
                ),
            },
        ),
        (
            "truncate after the last checkpoint",
            Case {
                pg: &[
                    PG_UNPROTECT,
                    "DELETE FROM audit_events WHERE stream = 'wallet:b' AND seq = 5",
                ],
                sqlite: &["DELETE FROM audit_events WHERE stream = 'wallet:b' AND seq = 5"],
                // Caught by the unsigned heads table only, and reported as such.
                expected: (
                    "wallet:b",
                    4,
                    FindingKind::Truncated {
                        last_seq: 4,
                        expected_seq: 5,
                        proven: false,
                    },
                ),
            },
        ),
    ]
}

#[tokio::test]
async fn postgres_tampering_is_detected_and_pinpointed() {
    for (name, case) in cases() {
        let pool = testing::pg_pool_with_connections(2).await;
        let log = PgAuditLog::open(pool.clone(), &provider()).await.unwrap();
        fill(&log).await;
        for sql in case.pg {
            sqlx::raw_sql(sql)
                .execute(&pool)
                .await
                .unwrap_or_else(|e| panic!("{name}: {sql}: {e}"));
        }
        let (stream, seq, kind) = first_bad(&log).await;
        let (es, eseq, ekind) = case.expected;
        assert_eq!((stream.as_str(), seq, kind), (es, eseq, ekind), "{name}");
    }
}

#[tokio::test]
async fn sqlite_tampering_is_detected_and_pinpointed() {
    for (name, case) in cases() {
        let (pool, _dir) = testing::sqlite_pool().await;
        let log = SqliteAuditLog::open(pool.clone(), &provider())
            .await
            .unwrap();
        fill(&log).await;
        for sql in SQLITE_UNPROTECT.iter().chain(case.sqlite) {
            sqlx::raw_sql(sql)
                .execute(&pool)
                .await
                .unwrap_or_else(|e| panic!("{name}: {sql}: {e}"));
        }
        let (stream, seq, kind) = first_bad(&log).await;
        let (es, eseq, ekind) = case.expected;
        assert_eq!((stream.as_str(), seq, kind), (es, eseq, ekind), "{name}");
    }
}

#[tokio::test]
async fn postgres_refuses_update_delete_and_truncate() {
    let pool = testing::pg_pool_with_connections(2).await;
    let log = PgAuditLog::open(pool.clone(), &provider()).await.unwrap();
    fill(&log).await;
    for sql in [
        "UPDATE audit_events SET outcome = 'failed' WHERE seq = 1",
        "DELETE FROM audit_events WHERE seq = 1",
        "TRUNCATE audit_events",
        "UPDATE audit_checkpoints SET at_micros = 0",
        "DELETE FROM audit_checkpoints",
        "TRUNCATE audit_checkpoints",
    ] {
        let err = sqlx::raw_sql(sql).execute(&pool).await.unwrap_err();
        assert!(err.to_string().contains("append-only"), "{sql}: {err}");
    }
    assert!(log.verify(None, &|_| {}).await.unwrap().ok);
}

#[tokio::test]
async fn the_application_role_cannot_change_audit_rows() {
    let pool = testing::pg_pool_with_connections(2).await;
    let log = PgAuditLog::open(pool.clone(), &provider()).await.unwrap();
    fill(&log).await;
    let mut conn = pool.acquire().await.unwrap();
    sqlx::raw_sql("SET ROLE coffer_app")
        .execute(&mut *conn)
        .await
        .unwrap();
    let visible: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_events")
        .fetch_one(&mut *conn)
        .await
        .unwrap();
    assert_eq!(visible, 10, "the app role reads the log");
    for sql in [
        "UPDATE audit_events SET outcome = 'failed'",
        "DELETE FROM audit_events",
        "TRUNCATE audit_events",
        "DELETE FROM audit_checkpoints",
    ] {
        let err = sqlx::raw_sql(sql).execute(&mut *conn).await.unwrap_err();
        let code = err
            .as_database_error()
            .and_then(|d| d.code())
            .map(|c| c.into_owned());
        assert_eq!(code.as_deref(), Some("42501"), "{sql}: {err}");
        assert!(
            err.to_string().contains("permission denied"),
            "{sql}: {err}"
        );
    }
    sqlx::raw_sql("RESET ROLE")
        .execute(&mut *conn)
        .await
        .unwrap();
}

#[tokio::test]
async fn sqlite_refuses_update_and_delete() {
    let (pool, _dir) = testing::sqlite_pool().await;
    let log = SqliteAuditLog::open(pool.clone(), &provider())
        .await
        .unwrap();
    fill(&log).await;
    for sql in [
        "UPDATE audit_events SET outcome = 'failed' WHERE seq = 1",
        "DELETE FROM audit_events WHERE seq = 1",
        "DELETE FROM audit_events",
        "UPDATE audit_checkpoints SET at_micros = 0",
        "DELETE FROM audit_checkpoints",
    ] {
        let err = sqlx::raw_sql(sql).execute(&pool).await.unwrap_err();
        assert!(err.to_string().contains("append-only"), "{sql}: {err}");
    }
    assert!(log.verify(None, &|_| {}).await.unwrap().ok);
}

#[tokio::test]
async fn the_audit_key_survives_a_restart_and_needs_its_master_key() {
    let (pool, _dir) = testing::sqlite_pool().await;
    let kek = generate_inline_key();
    let open = |pool| {
        let p = LocalKeyProvider::open(LocalKeySource::Inline(kek.clone()), "test-master").unwrap();
        async move { SqliteAuditLog::open(pool, &p).await.unwrap() }
    };
    let log = open(pool.clone()).await;
    fill(&log).await;
    // A restarted process unwraps the same key and verifies the old records.
    let again = open(pool.clone()).await;
    assert!(again.verify(None, &|_| {}).await.unwrap().ok);
    // Under another master key the stored audit key does not unwrap: start-up fails loudly.
    let other =
        LocalKeyProvider::open(LocalKeySource::Inline(generate_inline_key()), "test-master")
            .unwrap();
    let err = SqliteAuditLog::open(pool.clone(), &other)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("audit key"), "{err}");
}

#[tokio::test]
async fn the_application_role_can_run_the_audit_log_but_not_alter_it() {
    let owner = testing::pg_pool_with_connections(2).await;
    let app = testing::pg_app_pool(&owner).await;
    let role: String = sqlx::query_scalar("SELECT current_user::text")
        .fetch_one(&app)
        .await
        .unwrap();
    assert_eq!(role, "coffer_app");
    let log = PgAuditLog::open(app.clone(), &provider()).await.unwrap();
    fill(&log).await;
    assert!(log.checkpoint().await.unwrap().is_some());
    assert!(log.verify(None, &|_| {}).await.unwrap().ok);
    let err = sqlx::raw_sql("UPDATE audit_events SET outcome = 'failed'")
        .execute(&app)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("permission denied"), "{err}");
}
