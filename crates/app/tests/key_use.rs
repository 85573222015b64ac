//! Key use reaches the audit log in aggregate: one record per subject, operation, outcome and
//! minute with its count, for the master key's calls and for secret reads; cache hits are
//! counted in those records, never recorded one by one.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use coffer_app::App;
use coffer_audit::{AuditLog as _, AuditQuery, DetailValue};
use coffer_secrets::{SecretName, SetOptions};

#[tokio::test]
async fn key_and_secret_use_is_audited_per_minute_with_counts() {
    let dir = tempfile::tempdir().unwrap();
    let app = App::build(common::embedded(dir.path()), "coffer-api")
        .await
        .unwrap();
    let name = SecretName::parse("db/password").unwrap();
    app.secrets
        .set(&name, b"s3cret", &SetOptions::default())
        .await
        .unwrap();
    for _ in 0..3 {
        app.secrets.get(&name).await.unwrap();
    }
    let missing = SecretName::parse("nope").unwrap();
    assert!(app.secrets.get(&missing).await.is_err());
    app.flush_key_use().await;

    let query = AuditQuery {
        limit: 1000,
        ..AuditQuery::default()
    };
    let records = app.audit.list(&query).await.unwrap();
    let summary: Vec<(String, String, String, String, i64)> = records
        .iter()
        .filter(|r| r.event.action.as_str().starts_with("key."))
        .map(|r| {
            let code = |k: &str| match r.event.details.get(k) {
                Some(DetailValue::Code(c)) => c.as_str().to_owned(),
                _ => String::new(),
            };
            let count = match r.event.details.get("count") {
                Some(DetailValue::Int(n)) => *n,
                _ => -1,
            };
            let subject = r.event.subject.parts().1.map(|i| i.as_str().to_owned());
            (
                r.event.action.as_str().to_owned(),
                subject.unwrap_or_default(),
                code("operation"),
                code("outcome"),
                count,
            )
        })
        .collect();
    // Summed over minutes: the calls may straddle a minute's end.
    let mut totals = std::collections::BTreeMap::new();
    for (action, subject, op, outcome, n) in &summary {
        *totals
            .entry((action.clone(), subject.clone(), op.clone(), outcome.clone()))
            .or_insert(0) += n;
    }
    let has = |action: &str, subject: &str, op: &str, outcome: &str, n: i64| {
        totals.get(&(action.into(), subject.into(), op.into(), outcome.into())) == Some(&n)
    };
    // One miss that reached the key provider, two answered from the cache, one unknown.
    assert!(
        has("key.secret_read", "db:password", "read", "ok", 1),
        "{summary:?}"
    );
    assert!(
        has("key.secret_read", "db:password", "read", "cached", 2),
        "{summary:?}"
    );
    assert!(
        has("key.secret_read", "nope", "read", "not_found", 1),
        "{summary:?}"
    );
    // The master key's calls: the data keys generated at start (audit, blind index, signing
    // key) and for the secret, in one row; the secret's unwrap was answered by the data-key
    // cache that generation filled, so no call reached the provider and no row says otherwise.
    assert!(
        summary.iter().any(|s| s.0 == "key.access_summary"
            && s.1 == "local:coffer-master"
            && s.2 == "generate_data_key"
            && s.3 == "ok"
            && s.4 >= 1),
        "{summary:?}"
    );
    assert!(
        !summary.iter().any(|s| s.2 == "unwrap_data_key"),
        "{summary:?}"
    );
    let text = format!("{records:?}");
    assert!(!text.contains("s3cret"));

    // Drained: a second flush writes nothing more.
    let before = records.len();
    app.flush_key_use().await;
    assert_eq!(app.audit.list(&query).await.unwrap().len(), before);
}

#[tokio::test]
async fn each_binary_and_instance_names_itself_in_its_records() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = common::embedded(dir.path());
    c.instance = "node-2".into();
    let app = App::build(c, "coffer-worker").await.unwrap();
    let name = SecretName::parse("db/password").unwrap();
    app.secrets
        .set(&name, b"s3cret", &SetOptions::default())
        .await
        .unwrap();
    app.flush_key_use().await;
    let query = AuditQuery {
        limit: 1000,
        ..AuditQuery::default()
    };
    let actors: Vec<String> = app
        .audit
        .list(&query)
        .await
        .unwrap()
        .iter()
        .filter(|r| r.event.action.as_str().starts_with("key."))
        .map(|r| format!("{:?}", r.event.actor))
        .collect();
    assert!(!actors.is_empty());
    assert!(
        actors.iter().all(|a| a.contains("coffer-worker:node-2")),
        "{actors:?}"
    );
    // A name that is not a token is refused at start, naming the setting.
    let mut bad = app.config.clone();
    bad.instance = "node 2".into();
    assert_eq!(bad.validate().unwrap_err().setting, "instance");
}
