//! The secrets manager on real databases: the store's contract suite on SQLite and Postgres
//! (the latter as the application role), and the manager itself over those stores with a real
//! master key, plus a key provider that fails (mockall).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use coffer_clock::{Clock as _, ManualClock};
use coffer_keys::KeyProvider;
use coffer_secrets::testkit::Subject;
use coffer_secrets::{
    RotationPolicy, SecretError, SecretName, SecretStore, SecretsManager, SetOptions,
};
use coffer_store::secrets::{PgSecretStore, SqliteSecretStore};
use coffer_store::testing;

mod sqlite {
    use super::*;
    coffer_secrets::secret_store_contract_tests!(|| async {
        let (pool, dir) = testing::sqlite_pool().await;
        Subject::new(Arc::new(SqliteSecretStore::new(pool)), dir)
    });
}

mod postgres {
    use super::*;
    coffer_secrets::secret_store_contract_tests!(|| async {
        let owner = testing::pg_pool().await;
        let app = testing::pg_app_pool(&owner).await;
        Subject::new(Arc::new(PgSecretStore::new(app)), owner)
    });
}

fn name(s: &str) -> SecretName {
    SecretName::parse(s).unwrap()
}

async fn sqlite_store() -> (Arc<dyn SecretStore>, tempfile::TempDir) {
    let (pool, dir) = testing::sqlite_pool().await;
    (Arc::new(SqliteSecretStore::new(pool)), dir)
}

#[tokio::test]
async fn values_round_trip_rotate_and_stay_readable_by_version() {
    let (store, _dir) = sqlite_store().await;
    let m = SecretsManager::new(store, common::provider(), Duration::from_secs(300));
    let n = name("payments/api-key");
    let opts = SetOptions {
        tags: BTreeMap::from([("service".into(), "payments".into())]),
        ..SetOptions::default()
    };
    let meta = m.set(&n, b"first-value", &opts).await.unwrap();
    assert_eq!((meta.version, meta.active), (1, true));
    assert_eq!(m.get(&n).await.unwrap().expose_secret(), b"first-value");
    assert!(matches!(
        m.set(&n, b"again", &opts).await.unwrap_err(),
        SecretError::Exists(_)
    ));

    let v2 = m.rotate(&n, b"second-value").await.unwrap();
    assert_eq!(v2.version, 2);
    assert_eq!(v2.tags, opts.tags, "tags carry over");
    // The cache held version 1 as active: rotation dropped it.
    assert_eq!(m.get(&n).await.unwrap().expose_secret(), b"second-value");
    assert_eq!(
        m.get_version(&n, 1).await.unwrap().expose_secret(),
        b"first-value"
    );
    assert!(matches!(
        m.get_version(&n, 3).await.unwrap_err(),
        SecretError::NotFound {
            version: Some(3),
            ..
        }
    ));
    assert!(matches!(
        m.rotate(&name("nope"), b"x").await.unwrap_err(),
        SecretError::NotFound { .. }
    ));

    let listed = m.list(Some(("service", "payments"))).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!((listed[0].active.version, listed[0].versions), (2, 2));
    assert!(m.list(Some(("service", "other"))).await.unwrap().is_empty());
    let shown = format!("{listed:?} {:?}", m.status().await.unwrap());
    assert!(!shown.contains("value"), "metadata only: {shown}");
}

#[tokio::test]
async fn nothing_readable_is_stored_and_a_value_moved_to_another_name_does_not_open() {
    let (pool, dir) = testing::sqlite_pool().await;
    let store: Arc<dyn SecretStore> = Arc::new(SqliteSecretStore::new(pool.clone()));
    let m = SecretsManager::new(store.clone(), common::provider(), Duration::from_secs(300));
    m.set(&name("a"), b"TOP-SECRET-PLAINTEXT", &SetOptions::default())
        .await
        .unwrap();
    m.set(&name("b"), b"other", &SetOptions::default())
        .await
        .unwrap();
    let raw = common::sqlite_raw_dump(&pool, dir.path()).await;
    assert!(
        !raw.windows(20).any(|w| w == b"TOP-SECRET-PLAINTEXT"),
        "the value is in the database file"
    );
    // Copy a's sealed value and wrapped key over b's row: it must not open as b.
    let a = store.get(&name("a"), None).await.unwrap().unwrap();
    sqlx::query("UPDATE secrets SET sealed = $1, wrapped_key = $2 WHERE name = 'b'")
        .bind(&a.sealed)
        .bind(&a.wrapped_key)
        .execute(&pool)
        .await
        .unwrap();
    m.clear_cache();
    let err = m.get(&name("b")).await.unwrap_err();
    assert!(
        matches!(
            err,
            SecretError::Keys(coffer_keys::KeyError::Corrupt(_)) | SecretError::Corrupt { .. }
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn expired_versions_are_refused_and_rotation_due_dates_are_reported() {
    let (store, _dir) = sqlite_store().await;
    let clock = Arc::new(ManualClock::at_unix_secs(1_000_000));
    // The cache keeps values longer than the clock is moved on below, so the value is still
    // cached when it expires.
    let m = SecretsManager::new(store, common::provider(), Duration::from_secs(7 * 86_400))
        .with_clock(clock.clone());
    let n = name("temp-token");
    m.set(
        &n,
        b"short-lived",
        &SetOptions {
            expires_in: Some(Duration::from_secs(3600)),
            rotation: RotationPolicy::EveryDays(1),
            tags: BTreeMap::new(),
        },
    )
    .await
    .unwrap();
    assert!(m.get(&n).await.is_ok());
    let status = m.status().await.unwrap();
    assert_eq!((status.expired, status.rotation_due), (0, 0));

    clock.advance(Duration::from_secs(3600));
    // Even the cached value is refused once expired.
    let err = m.get(&n).await.unwrap_err();
    assert!(
        matches!(
            err,
            SecretError::Expired {
                version: 1,
                expired_at: 1_003_600,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(m.status().await.unwrap().expired, 1);
    clock.advance(Duration::from_secs(86_400));
    assert_eq!(m.status().await.unwrap().rotation_due, 1);

    // Rotation gives a fresh hour.
    let v2 = m.rotate(&n, b"renewed").await.unwrap();
    assert_eq!(v2.expires_at, Some(clock.unix_secs() + 3600));
    assert_eq!(m.get(&n).await.unwrap().expose_secret(), b"renewed");
    let status = m.status().await.unwrap();
    assert_eq!(
        (status.expired, status.rotation_due, status.versions),
        (0, 0, 2)
    );
}

#[tokio::test]
async fn backup_restores_into_an_empty_database_and_refuses_a_changed_bundle() {
    let keys = common::provider();
    let (source, _d1) = sqlite_store().await;
    let m = SecretsManager::new(source, keys.clone(), Duration::from_secs(300));
    m.set(&name("x"), b"x1", &SetOptions::default())
        .await
        .unwrap();
    m.rotate(&name("x"), b"x2").await.unwrap();
    m.set(&name("y"), b"y1", &SetOptions::default())
        .await
        .unwrap();
    let bundle = m.backup().await.unwrap();
    let text = String::from_utf8_lossy(&bundle);
    assert!(
        // The records (their metadata, names, tags) are inside the sealed part, which is base64
        // and so holds no quote: no record field appears outside it.
        !text.contains("\"meta\"") && !text.contains("\"name\"") && !text.contains("\"tags\""),
        "names and values are sealed: {text}"
    );

    let (target, _d2) = sqlite_store().await;
    let restored = SecretsManager::new(target, keys.clone(), Duration::from_secs(300));
    let report = restored.restore(&bundle).await.unwrap();
    assert_eq!((report.restored, report.skipped), (3, 0));
    assert_eq!(
        restored.get(&name("x")).await.unwrap().expose_secret(),
        b"x2"
    );
    assert_eq!(
        restored
            .get_version(&name("x"), 1)
            .await
            .unwrap()
            .expose_secret(),
        b"x1"
    );
    assert_eq!(
        restored.get(&name("y")).await.unwrap().expose_secret(),
        b"y1"
    );
    let again = restored.restore(&bundle).await.unwrap();
    assert_eq!((again.restored, again.skipped), (0, 3));

    // One byte in the middle of the sealed records flipped (re-encoded, so only the MAC can tell).
    let mut changed: serde_json::Value = serde_json::from_slice(&bundle).unwrap();
    let mut sealed = STANDARD
        .decode(changed["sealed"].as_str().unwrap())
        .unwrap();
    let mid = sealed.len() / 2;
    sealed[mid] ^= 0x01;
    changed["sealed"] = STANDARD.encode(&sealed).into();
    let err = restored
        .restore(&serde_json::to_vec(&changed).unwrap())
        .await
        .unwrap_err();
    assert!(matches!(err, SecretError::BadBackup(_)), "{err:?}");
    assert!(matches!(
        restored.restore(b"not a bundle").await.unwrap_err(),
        SecretError::BadBackup(_)
    ));
}

#[tokio::test]
async fn a_rotation_after_restoring_a_newer_inactive_version_goes_past_it() {
    let keys = common::provider();
    let (a, _d1) = sqlite_store().await;
    let first = SecretsManager::new(a, keys.clone(), Duration::from_secs(300));
    first
        .set(&name("n"), b"v1", &SetOptions::default())
        .await
        .unwrap();
    first.rotate(&name("n"), b"v2").await.unwrap();
    first.rotate(&name("n"), b"v3").await.unwrap();
    let bundle = first.backup().await.unwrap();

    // Another database where the secret is at version 2: the backup's version 3 arrives
    // inactive, and the next rotation becomes version 4.
    let (b, _d2) = sqlite_store().await;
    let second = SecretsManager::new(b, keys, Duration::from_secs(300));
    second
        .set(&name("n"), b"w1", &SetOptions::default())
        .await
        .unwrap();
    second.rotate(&name("n"), b"w2").await.unwrap();
    let report = second.restore(&bundle).await.unwrap();
    assert_eq!((report.restored, report.skipped), (1, 2));
    assert_eq!(second.get(&name("n")).await.unwrap().expose_secret(), b"w2");
    let v4 = second.rotate(&name("n"), b"w4").await.unwrap();
    assert_eq!(v4.version, 4);
    assert_eq!(second.get(&name("n")).await.unwrap().expose_secret(), b"w4");
    assert_eq!(
        second
            .get_version(&name("n"), 3)
            .await
            .unwrap()
            .expose_secret(),
        b"v3"
    );
}

#[tokio::test]
async fn a_key_provider_outage_is_typed_and_cached_values_keep_serving() {
    let (store, _dir) = sqlite_store().await;
    let real = common::provider();
    let seeded = SecretsManager::new(store.clone(), real.clone(), Duration::from_secs(300));
    seeded
        .set(&name("k"), b"value", &SetOptions::default())
        .await
        .unwrap();

    let mut mock = common::MockProvider::new();
    let inner = real.clone();
    let calls = Arc::new(AtomicU64::new(0));
    let seen = calls.clone();
    mock.expect_unwrap_data_key().returning(move |w, c| {
        // The first unwrap works; the provider is down after that.
        if seen.fetch_add(1, Ordering::SeqCst) == 0 {
            let (w, c, inner) = (w.clone(), c.clone(), inner.clone());
            std::thread::spawn(move || {
                tokio::runtime::Runtime::new()
                    .unwrap()
                    .block_on(inner.unwrap_data_key(&w, &c))
            })
            .join()
            .unwrap()
        } else {
            Err(common::timed_out())
        }
    });
    mock.expect_generate_data_key()
        .returning(|_| Err(common::timed_out()));
    mock.expect_name().return_const("mock".to_owned());
    let m = SecretsManager::new(
        store,
        Arc::new(mock) as Arc<dyn KeyProvider>,
        Duration::from_secs(300),
    );
    assert_eq!(m.get(&name("k")).await.unwrap().expose_secret(), b"value");
    // Cached: no provider call.
    assert_eq!(m.get(&name("k")).await.unwrap().expose_secret(), b"value");
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    m.clear_cache();
    let err = m.get(&name("k")).await.unwrap_err();
    assert!(
        matches!(&err, SecretError::Keys(e) if e.is_retryable()),
        "{err:?}"
    );
    // A rotation that cannot get a data key writes nothing.
    assert!(m.rotate(&name("k"), b"new").await.is_err());
    assert_eq!(
        seeded.get(&name("k")).await.unwrap().expose_secret(),
        b"value"
    );
    assert_eq!(m.status().await.unwrap().versions, 1);
}

#[tokio::test]
async fn after_a_master_key_rotation_rewrap_moves_every_version_and_values_stay() {
    let dir = tempfile::tempdir().unwrap();
    let keys: Arc<dyn KeyProvider> = Arc::new(
        coffer_keys_local::LocalKeyProvider::open(
            coffer_keys_local::LocalKeySource::File {
                path: dir.path().join("master.json"),
                create_if_missing: true,
            },
            "m",
        )
        .unwrap(),
    );
    let (store, _d) = sqlite_store().await;
    let m = SecretsManager::new(store.clone(), keys.clone(), Duration::from_secs(300));
    m.set(&name("s"), b"v1", &SetOptions::default())
        .await
        .unwrap();
    m.rotate(&name("s"), b"v2").await.unwrap();
    let v = keys.rotate().await.unwrap();
    assert_eq!(m.rewrap_stale().await.unwrap(), 2);
    assert_eq!(
        m.rewrap_stale().await.unwrap(),
        0,
        "resumable: nothing left"
    );
    assert!(
        store
            .export()
            .await
            .unwrap()
            .iter()
            .all(|r| r.kek_version == v)
    );
    keys.retire_versions_below(v).await.unwrap();
    m.clear_cache();
    assert_eq!(
        m.get_version(&name("s"), 1).await.unwrap().expose_secret(),
        b"v1"
    );
    assert_eq!(m.get(&name("s")).await.unwrap().expose_secret(), b"v2");
}

#[tokio::test]
async fn the_application_role_cannot_delete_or_rewrite_secrets() {
    let owner = testing::pg_pool().await;
    let app = testing::pg_app_pool(&owner).await;
    let m = SecretsManager::new(
        Arc::new(PgSecretStore::new(app.clone())),
        common::provider(),
        Duration::from_secs(300),
    );
    m.set(&name("keep"), b"v", &SetOptions::default())
        .await
        .unwrap();
    common::assert_refused_to_app_role(
        &app,
        &[
            "DELETE FROM secrets",
            "TRUNCATE secrets",
            "UPDATE secrets SET sealed = sealed",
            "UPDATE secrets SET expires_at = NULL",
        ],
    )
    .await;
    // What rotation and re-wrapping change stays allowed.
    sqlx::query("UPDATE secrets SET kek_version = kek_version")
        .execute(&app)
        .await
        .unwrap();
}

/// The audit key lives in the secrets manager; a database from before it has its key adopted
/// with the same bytes, so the chains written under it still verify and new records extend them.
#[tokio::test]
async fn the_audit_key_is_adopted_by_the_secrets_manager_and_chains_still_verify() {
    use coffer_audit::{Action, Actor, AuditEvent, AuditLog, EntityId, Outcome, Subject};
    use coffer_store::audit::SqliteAuditLog;
    let (pool, _dir) = testing::sqlite_pool().await;
    let keys = common::provider();
    let event = || {
        AuditEvent::new(
            Actor::Service(EntityId::parse("t").unwrap()),
            Action::SecurityAlert,
            Subject::System,
            Outcome::Success,
        )
    };
    // The older release: the key in audit_key, records chained under it.
    let legacy = SqliteAuditLog::open(pool.clone(), keys.as_ref())
        .await
        .unwrap();
    for _ in 0..3 {
        legacy.append(&event()).await.unwrap();
    }
    let store: Arc<dyn SecretStore> = Arc::new(SqliteSecretStore::new(pool.clone()));
    let secrets = SecretsManager::new(store, keys.clone(), Duration::from_secs(300));
    let log = SqliteAuditLog::open_with_secrets(pool.clone(), keys.as_ref(), &secrets)
        .await
        .unwrap();
    log.append(&event()).await.unwrap();
    let report = log.verify(None, &|_| {}).await.unwrap();
    assert!(report.ok, "{report:?}");
    assert_eq!(report.checked, 4);
    let listed = secrets.list(Some(("owner", "coffer-audit"))).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].active.name.as_str(), "coffer/audit-key");

    // A new database: no audit_key row is made, the key is the secret's.
    let (fresh, _d2) = testing::sqlite_pool().await;
    let store: Arc<dyn SecretStore> = Arc::new(SqliteSecretStore::new(fresh.clone()));
    let secrets = SecretsManager::new(store, keys.clone(), Duration::from_secs(300));
    let log = SqliteAuditLog::open_with_secrets(fresh.clone(), keys.as_ref(), &secrets)
        .await
        .unwrap();
    log.append(&event()).await.unwrap();
    let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM audit_key")
        .fetch_one(&fresh)
        .await
        .unwrap();
    assert_eq!(rows, 0);
    // Reopened by a new process (its own manager, empty cache): the same key, the chain verifies.
    let store: Arc<dyn SecretStore> = Arc::new(SqliteSecretStore::new(fresh.clone()));
    let restarted = SecretsManager::new(store, keys.clone(), Duration::from_secs(300));
    let again = SqliteAuditLog::open_with_secrets(fresh, keys.as_ref(), &restarted)
        .await
        .unwrap();
    again.append(&event()).await.unwrap();
    assert!(again.verify(None, &|_| {}).await.unwrap().ok);
}
