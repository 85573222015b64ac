//! The observed audit log: committed records go out as JSON lines on the `coffer::audit` target,
//! and the alert rules record `security.alert` events.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::sync::{Arc, Mutex};

use coffer_audit::{
    Action, Actor, AlertConfig, AuditEvent, AuditHasher, AuditLog, AuditQuery, DetailValue,
    EntityId, ObservedAuditLog, Outcome, Subject,
};
use coffer_crypto::HmacKey;
use coffer_keys_local::{LocalKeyProvider, LocalKeySource, generate_inline_key};
use coffer_store::audit::SqliteAuditLog;
use coffer_store::testing;

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Captures every log line as JSON until the guard drops.
fn capture_logs() -> (Captured, tracing::subscriber::DefaultGuard) {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_max_level(tracing::Level::INFO)
        .json()
        .finish();
    (captured, tracing::subscriber::set_default(subscriber))
}

/// A fresh SQLite audit log under a fresh master key.
async fn sqlite_log() -> (Arc<SqliteAuditLog>, tempfile::TempDir) {
    let (pool, dir) = testing::sqlite_pool().await;
    let provider =
        LocalKeyProvider::open(LocalKeySource::Inline(generate_inline_key()), "test-master")
            .unwrap();
    (
        Arc::new(SqliteAuditLog::open(pool, &provider).await.unwrap()),
        dir,
    )
}

#[tokio::test]
async fn records_are_shipped_as_json_lines_and_alerts_are_recorded() {
    let (captured, _guard) = capture_logs();
    let (inner, _dir) = sqlite_log().await;
    let inner_for_tx = inner.clone();
    let log = ObservedAuditLog::new(
        inner,
        AlertConfig::default(),
        EntityId::parse("coffer-api").unwrap(),
    );

    let hasher = AuditHasher::new(HmacKey::generate());
    for _ in 0..6 {
        let e = AuditEvent::new(
            Actor::Anonymous,
            Action::UserLoginFailed,
            Subject::User(EntityId::parse("u-42").unwrap()),
            Outcome::Denied,
        )
        .detail("email", hasher.hash("email", "victim@example.com"))
        .unwrap();
        log.append(&e).await.unwrap();
    }

    // A record appended inside a store's own transaction is shipped once that commits.
    let mut conn = inner_for_tx.pool().begin().await.unwrap();
    let deposit = AuditEvent::new(
        Actor::User(EntityId::parse("u-42").unwrap()),
        Action::TransactionDeposit,
        Subject::Wallet(EntityId::parse("w-1").unwrap()),
        Outcome::Success,
    );
    let receipt = inner_for_tx.append_in(&mut conn, &deposit).await.unwrap();
    conn.commit().await.unwrap();
    log.committed_elsewhere(&[(deposit, receipt)]).await;

    let records = log.list(&AuditQuery::default()).await.unwrap();
    let alerts: Vec<_> = records
        .iter()
        .filter(|r| r.event.action == Action::SecurityAlert)
        .collect();
    assert_eq!(alerts.len(), 1, "one alert for the sixth failure");
    assert_eq!(
        alerts[0].event.details.get("rule"),
        Some(&DetailValue::Code(
            coffer_audit::Code::parse("failed_logins").unwrap()
        ))
    );

    let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    let audit_lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["target"] == "coffer::audit")
        .collect();
    assert_eq!(
        audit_lines.len(),
        8,
        "six failures, the alert and the in-transaction deposit:\n{text}"
    );
    let first: serde_json::Value =
        serde_json::from_str(audit_lines[0]["fields"]["message"].as_str().unwrap()).unwrap();
    assert_eq!(first["action"], "user.login_failed");
    assert_eq!(first["seq"], 1);
    assert!(
        text.contains("coffer.alert.failed_logins"),
        "WARN line with the stable event name"
    );
    assert!(!text.contains("victim"), "no PII in any log line");
}

#[tokio::test]
async fn checkpoints_are_written_on_a_schedule_and_their_anchors_shipped() {
    let (captured, _guard) = capture_logs();
    let (inner, _dir) = sqlite_log().await;
    let log: Arc<dyn AuditLog> = Arc::new(ObservedAuditLog::new(
        inner,
        AlertConfig::default(),
        EntityId::parse("coffer-worker").unwrap(),
    ));
    log.append(&AuditEvent::new(
        Actor::Anonymous,
        Action::UserRegister,
        Subject::User(EntityId::parse("u-1").unwrap()),
        Outcome::Success,
    ))
    .await
    .unwrap();
    let task = coffer_audit::spawn_checkpoints(log.clone(), std::time::Duration::from_millis(20));
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    let anchor = loop {
        let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        let found = text.lines().find_map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).ok()?;
            let msg: serde_json::Value =
                serde_json::from_str(v["fields"]["message"].as_str()?).ok()?;
            let id = msg["checkpoint_id"].as_i64()?;
            let hex = msg["mac"].as_str()?.to_owned();
            Some((id, hex))
        });
        if let Some(f) = found {
            break f;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no checkpoint was shipped"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    task.abort();
    let mut mac = [0u8; 32];
    for (i, b) in mac.iter_mut().enumerate() {
        *b = u8::from_str_radix(&anchor.1[2 * i..2 * i + 2], 16).unwrap();
    }
    let anchor = coffer_audit::CheckpointAnchor { id: anchor.0, mac };
    assert!(log.verify(Some(&anchor), &|_| {}).await.unwrap().ok);
    let wrong = coffer_audit::CheckpointAnchor {
        id: anchor.id,
        mac: [0; 32],
    };
    let report = log.verify(Some(&wrong), &|_| {}).await.unwrap();
    assert_eq!(
        report.first_bad.unwrap().kind,
        coffer_audit::FindingKind::AnchorMissing
    );
}
