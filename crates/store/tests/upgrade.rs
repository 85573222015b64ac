//! Databases written by an older release open and work after the upgrade. `fixtures/0005/` holds
//! what `coffer-api` at migration 0005 wrote through its API (alice; two USD wallets; a deposit
//! of 5,000.00, a withdrawal of 200.00 and a transfer of 300.00 from the first, PIN `493817`):
//! its SQLite file, its Postgres rows (`pg_dump --data-only --inserts`) and the key file both
//! were sealed under. Each test lays that database down, upgrades it with today's migrations and
//! drives today's ledger over it. The outbox's tests lay down migration 0015's schema and have
//! today's ledger write events on it (the columns it writes are 0015's).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use coffer_audit::{Actor, AlertConfig, AuditLog, EntityId, ObservedAuditLog};
use coffer_keys::KeyProvider;
use coffer_keys_local::{LocalKeyProvider, LocalKeySource};
use coffer_ledger::verify::VerifyOptions;
use coffer_ledger::{
    Caller, Currency, Error, EventKind, Ledger, LedgerError, LedgerStore, MoneyRequest, StepUp,
    Unclaimed, UserId, WalletId, parse_pin,
};
use coffer_secrets::{SecretStore, SecretsManager};
use coffer_store::audit::{PgAuditLog, SqliteAuditLog};
use coffer_store::ledger::{PgLedgerStore, SqliteLedgerStore};
use coffer_store::secrets::{PgSecretStore, SqliteSecretStore};
use coffer_store::testing;
use sqlx::migrate::Migrator;
use uuid::Uuid;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/0005")
        .join(name)
}

/// The key file the fixtures were sealed under, copied (the provider may write to it) and made
/// owner-only as the provider demands: a clone gives every checked-out file mode 0644.
fn keys(dir: &Path) -> Arc<dyn KeyProvider> {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join("master.json");
    std::fs::copy(fixture("master.json"), &path).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    Arc::new(
        LocalKeyProvider::open(
            LocalKeySource::File {
                path,
                create_if_missing: false,
            },
            "coffer-master",
        )
        .unwrap(),
    )
}

/// The service's secrets (the audit key among them), kept in the database under `keys`.
fn secrets(store: Arc<dyn SecretStore>, keys: &Arc<dyn KeyProvider>) -> SecretsManager {
    SecretsManager::new(store, keys.clone(), std::time::Duration::from_secs(60))
}

/// The migrations of `database` up to `version`: the schema the older release left.
async fn migrations_up_to(database: &str, version: i64, dir: &Path) -> Migrator {
    let source = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../migrations")
        .join(database);
    let target = dir.join(format!("migrations-{database}"));
    std::fs::create_dir(&target).unwrap();
    for entry in std::fs::read_dir(source).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_owned();
        let number: i64 = name.split('_').next().unwrap().parse().unwrap();
        if number <= version {
            std::fs::copy(&path, target.join(name)).unwrap();
        }
    }
    Migrator::new(target.as_path()).await.unwrap()
}

/// Today's ledger over the upgraded database: the old money reads and verifies, the memo backfill
/// runs over the old transactions, old rows have an empty money-out window that the next
/// money-out writes, the old owner is erased with her money swept to an unclaimed-funds wallet
/// (a kind of transaction the old schema did not allow), and the books stay clean.
async fn the_old_books_work(
    store: Arc<dyn LedgerStore>,
    audit: Arc<dyn AuditLog>,
    keys: Arc<dyn KeyProvider>,
    wallets: Vec<(Uuid, Uuid)>,
) {
    assert_eq!(wallets.len(), 2, "the old rows, with no window yet");
    let observed = Arc::new(ObservedAuditLog::new(
        audit,
        AlertConfig::default(),
        EntityId::parse("upgrade-tests").unwrap(),
    ));
    let ledger = Ledger::new(
        store.clone(),
        keys.clone(),
        observed.clone(),
        coffer_ledger::testkit::config(),
    );
    let report = ledger
        .verify(VerifyOptions::default(), &|_| {})
        .await
        .unwrap();
    assert!(report.ok() && report.complete, "{:?}", report.findings);
    // The receiver-memo backfill reads every old transaction; the one transfer has no memo, so
    // there is nothing to copy.
    let backfill = ledger.backfill_receiver_memos(None, 100).await.unwrap();
    assert_eq!(
        (backfill.scanned, backfill.copied, backfill.unreadable),
        (3, 0, 0)
    );
    let admin = Caller::Admin(UserId::new());
    let mut views = Vec::new();
    for (id, _) in &wallets {
        views.push(
            ledger
                .wallet(admin, WalletId::from_uuid(*id))
                .await
                .unwrap(),
        );
    }
    views.sort_by_key(|w| w.balance.minor());
    let balances: Vec<i64> = views.iter().map(|w| w.balance.minor()).collect();
    assert_eq!(balances, vec![30_000, 450_000]);
    let (from, alice) = (views[1].id, views[1].owner);
    // The 500.00 that left before the window existed is not in it: 300.00 may leave under a cap
    // of 300.00, and then not a cent more.
    let pin = parse_pin("493817").unwrap();
    let cap = StepUp {
        cap_minor: Some(30_000),
    };
    let out = |amount, key| MoneyRequest::parse(amount, "USD", None, key, i64::MAX).unwrap();
    ledger
        .withdraw(alice, from, &pin, &out(30_000, "after-upgrade"), cap)
        .await
        .unwrap();
    assert!(matches!(
        ledger
            .withdraw(alice, from, &pin, &out(1, "one-more"), cap)
            .await,
        Err(Error::Rejected(LedgerError::SecondFactorRequired))
    ));
    let w = ledger.wallet(Caller::User(alice), from).await.unwrap();
    assert_eq!(w.balance.minor(), 420_000);
    // A wallet from before the outbox numbers its events from 1 (it has no `wallet.opened`).
    let events = ledger.store().events_after(None, 100).await.unwrap();
    assert_eq!(events.len(), 1, "{events:?}");
    let data = ledger.event_data(&events[0]).await.unwrap();
    assert_eq!(
        (events[0].wallet, events[0].seq, events[0].kind),
        (from, 1, EventKind::TransactionPosted)
    );
    assert_eq!(
        (data.amount_minor, data.balance_minor),
        (Some(-30_000), 420_000)
    );

    let treasury = UserId::new();
    let unclaimed = ledger
        .open_wallet(treasury, Currency::parse("USD").unwrap(), &pin)
        .await
        .unwrap()
        .id;
    let mut config = coffer_ledger::testkit::config();
    config.unclaimed.insert(
        Currency::parse("USD").unwrap(),
        Unclaimed {
            wallet: unclaimed,
            up_to_minor: 500_000,
        },
    );
    let sweeping = Ledger::new(store, keys, observed, config);
    let by = Actor::Admin(EntityId::from_uuid(&Uuid::nil()));
    let erased = sweeping.erase_wallets(&by, alice).await.unwrap();
    assert!(erased.iter().all(|w| w.erased_at.is_some()), "{erased:?}");
    let w = ledger.wallet(admin, unclaimed).await.unwrap();
    assert_eq!(
        w.balance.minor(),
        420_000 + 30_000,
        "both her wallets swept"
    );
    let report = ledger
        .verify(VerifyOptions::default(), &|_| {})
        .await
        .unwrap();
    assert!(report.ok() && report.complete, "{:?}", report.findings);
    assert_eq!(report.erased_wallets, 2);
}

/// The wallets that have no money-out window yet (every row the older release wrote).
const WALLETS_WITHOUT_WINDOW: &str = "SELECT id, owner_id FROM wallets WHERE outflow IS NULL";

#[tokio::test]
async fn an_sqlite_database_of_migration_0005_upgrades() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("coffer.db");
    std::fs::copy(fixture("coffer.db"), &db).unwrap();
    let pool = coffer_store::connect_sqlite(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    // The migrations rebuilt a table with foreign keys off, on one of the pool's connections:
    // every reference holds, and every connection enforces them again.
    let (mut one, mut two) = (pool.acquire().await.unwrap(), pool.acquire().await.unwrap());
    for conn in [&mut one, &mut two] {
        let on: i64 = sqlx::query_scalar("PRAGMA foreign_keys")
            .fetch_one(&mut **conn)
            .await
            .unwrap();
        assert_eq!(on, 1);
        let broken = sqlx::query("PRAGMA foreign_key_check")
            .fetch_all(&mut **conn)
            .await
            .unwrap();
        assert!(broken.is_empty());
    }
    drop((one, two));
    let wallets = sqlx::query_as(WALLETS_WITHOUT_WINDOW)
        .fetch_all(&pool)
        .await
        .unwrap();
    let keys = keys(dir.path());
    let secrets = secrets(Arc::new(SqliteSecretStore::new(pool.clone())), &keys);
    let audit = SqliteAuditLog::open_with_secrets(pool.clone(), keys.as_ref(), &secrets)
        .await
        .unwrap();
    let store = Arc::new(SqliteLedgerStore::new(pool, audit.clone()));
    the_old_books_work(store, Arc::new(audit), keys, wallets).await;
}

#[tokio::test]
async fn a_postgres_database_of_migration_0005_upgrades() {
    let dir = tempfile::tempdir().unwrap();
    let pool = testing::pg_empty_pool().await;
    migrations_up_to("postgres", 5, dir.path())
        .await
        .run(&pool)
        .await
        .unwrap();
    let rows = std::fs::read_to_string(fixture("postgres.sql")).unwrap();
    sqlx::raw_sql(&rows).execute(&pool).await.unwrap();
    coffer_store::migrate_postgres(&pool).await.unwrap();
    let wallets = sqlx::query_as(WALLETS_WITHOUT_WINDOW)
        .fetch_all(&pool)
        .await
        .unwrap();
    let keys = keys(dir.path());
    let secrets = secrets(Arc::new(PgSecretStore::new(pool.clone())), &keys);
    let audit = PgAuditLog::open_with_secrets(pool.clone(), keys.as_ref(), &secrets)
        .await
        .unwrap();
    let store = Arc::new(PgLedgerStore::new(pool, audit.clone()));
    the_old_books_work(store, Arc::new(audit), keys, wallets).await;
}

/// Events the outbox wrote before delivery existed (migration 0015) are delivered after the
/// upgrade: today's ledger writes events with the columns 0015 had, on a 0015 schema; the
/// upgrade numbers them for the scan in the order they were written; a sink registered since
/// gets them all, in order.
async fn old_events_are_delivered(
    ledger: Arc<dyn LedgerStore>,
    outbox: Arc<dyn coffer_outbox::OutboxStore>,
    audit: Arc<dyn AuditLog>,
    keys: Arc<dyn KeyProvider>,
) {
    use coffer_outbox::testkit::Receiver;
    use coffer_outbox::{DispatchConfig, Dispatcher, Sink, Target, WebhookUrl};
    let url = WebhookUrl::parse("https://h.example/", false).unwrap();
    let sink = Sink::new(Target::Webhook(url), vec![], 0);
    outbox.put_sink(&sink).await.unwrap();
    let observed = Arc::new(ObservedAuditLog::new(
        audit.clone(),
        AlertConfig::default(),
        EntityId::parse("upgrade-tests").unwrap(),
    ));
    let ledger = Arc::new(Ledger::new(
        ledger,
        keys,
        observed,
        coffer_ledger::testkit::config(),
    ));
    let receiver = Arc::new(Receiver::default());
    let d = Dispatcher::new(
        outbox,
        ledger,
        receiver.clone(),
        audit,
        coffer_clock::system(),
        DispatchConfig::default(),
        EntityId::parse("upgrade-worker").unwrap(),
    );
    coffer_outbox::testkit::drain(&d).await;
    let numbers = receiver.numbers(sink.id);
    assert_eq!(numbers.len(), 2, "both wallets");
    assert!(numbers.values().all(|n| n == &vec![1, 2]), "{numbers:?}");
}

/// Opens a wallet and deposits into it with today's ledger on `store`: two events.
async fn write_events(
    store: Arc<dyn LedgerStore>,
    audit: Arc<dyn AuditLog>,
    keys: Arc<dyn KeyProvider>,
) {
    let observed = Arc::new(ObservedAuditLog::new(
        audit,
        AlertConfig::default(),
        EntityId::parse("upgrade-tests").unwrap(),
    ));
    let ledger = Ledger::new(store, keys, observed, coffer_ledger::testkit::config());
    let owner = UserId::new();
    for i in 0..2 {
        let w = ledger
            .open_wallet(
                owner,
                Currency::parse("USD").unwrap(),
                &parse_pin("493817").unwrap(),
            )
            .await
            .unwrap();
        let request = coffer_ledger::testkit::MoneyRequest {
            amount_minor: 100,
            currency: "USD",
            memo: None,
            idempotency_key: &format!("d{i}"),
        }
        .parse(&ledger)
        .unwrap();
        ledger.deposit(owner, w.id, &request).await.unwrap();
    }
}

#[tokio::test]
async fn an_sqlite_outbox_of_migration_0015_is_delivered_after_the_upgrade() {
    let dir = tempfile::tempdir().unwrap();
    let keys = keys(dir.path());
    let url = format!("sqlite://{}", dir.path().join("coffer.db").display());
    let options = std::str::FromStr::from_str(&url)
        .map(|o: sqlx::sqlite::SqliteConnectOptions| o.create_if_missing(true));
    let old = sqlx::SqlitePool::connect_with(options.unwrap())
        .await
        .unwrap();
    migrations_up_to("sqlite", 15, dir.path())
        .await
        .run(&old)
        .await
        .unwrap();
    let audit = SqliteAuditLog::open(old.clone(), keys.as_ref())
        .await
        .unwrap();
    write_events(
        Arc::new(SqliteLedgerStore::new(old.clone(), audit.clone())),
        Arc::new(audit),
        keys.clone(),
    )
    .await;
    old.close().await;
    let pool = coffer_store::connect_sqlite(&url).await.unwrap();
    let audit = SqliteAuditLog::open(pool.clone(), keys.as_ref())
        .await
        .unwrap();
    old_events_are_delivered(
        Arc::new(SqliteLedgerStore::new(pool.clone(), audit.clone())),
        Arc::new(coffer_store::outbox::SqliteOutboxStore::new(pool)),
        Arc::new(audit),
        keys,
    )
    .await;
}

#[tokio::test]
async fn a_postgres_outbox_of_migration_0015_is_delivered_after_the_upgrade() {
    let dir = tempfile::tempdir().unwrap();
    let keys = keys(dir.path());
    let pool = testing::pg_empty_pool().await;
    migrations_up_to("postgres", 15, dir.path())
        .await
        .run(&pool)
        .await
        .unwrap();
    let audit = PgAuditLog::open(pool.clone(), keys.as_ref()).await.unwrap();
    write_events(
        Arc::new(PgLedgerStore::new(pool.clone(), audit.clone())),
        Arc::new(audit),
        keys.clone(),
    )
    .await;
    coffer_store::migrate_postgres(&pool).await.unwrap();
    let audit = PgAuditLog::open(pool.clone(), keys.as_ref()).await.unwrap();
    old_events_are_delivered(
        Arc::new(PgLedgerStore::new(pool.clone(), audit.clone())),
        Arc::new(coffer_store::outbox::PgOutboxStore::new(pool)),
        Arc::new(audit),
        keys,
    )
    .await;
}
