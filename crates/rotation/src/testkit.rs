//! The rotation store's contract suite: `rotation_store_contract_tests!` expands to one test per
//! case, each on a fresh database from the adapter's factory. The cases drive the port directly
//! (paging, compare-and-swap replacement, jobs, the lock) and through the [`Rotator`] over real
//! wallets and secrets with the backend's master key provider (rotation end to end, resumption after a
//! failure, keys that will not re-wrap, validation). One manual clock per test dates
//! everything (the stores' rows, the ledger, the secrets, the rotator): a case that needs time to
//! pass moves it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use coffer_audit::{AlertConfig, AuditLog, AuditQuery, EntityId, ObservedAuditLog};
use coffer_clock::{Clock, ManualClock};
use coffer_keys::testkit::{DataKeyCall, Intercepted};
use coffer_keys::{KeyError, KeyProvider, VersionState, WrappedKey};
use coffer_ledger::testkit::{Client, MoneyRequest};
use coffer_ledger::{Ledger, LedgerStore, UserId, WalletId};
use coffer_secrets::{SecretName, SecretStore, SecretsManager, SetOptions};
use uuid::Uuid;

use crate::{
    JobState, KeyQuery, KeyRow, KeySet, Replacement, RotateRequest, RotationConfig, RotationError,
    RotationJob, RotationStore, RotationStoreError, Rotator,
};

/// The stores of one test database.
#[derive(Debug)]
pub struct Stores {
    /// The port under test.
    pub rotation: Arc<dyn RotationStore>,
    /// The ledger's store on the same database (to make wallets).
    pub ledger: Arc<dyn LedgerStore>,
    /// The audit log on it.
    pub audit: Arc<dyn AuditLog>,
    /// The secrets manager's store on it.
    pub secrets: Arc<dyn SecretStore>,
}

/// What an adapter gives the suite.
#[async_trait]
pub trait Backend: Send + Sync {
    /// Opens the stores on this test's database, as a new process would, reading the time from
    /// `clock`.
    async fn open(&self, keys: Arc<dyn KeyProvider>, clock: Arc<dyn Clock>) -> Stores;
    /// Overwrites a wallet's data key row (version 1) with `wrapped`, as the schema owner.
    async fn set_wallet_key(&self, wallet: Uuid, wrapped: &[u8]);
    /// This test's master key provider: one that can rotate (add a version) and retire
    /// versions, fresh for the test.
    fn keys(&self) -> Arc<dyn KeyProvider>;
}

#[doc(hidden)]
pub use coffer_macros::contract_cases;

/// Expands to one test per contract case.
#[macro_export]
macro_rules! rotation_store_contract_tests {
    ($factory:expr) => {
        $crate::testkit::contract_cases!(
            threads = 2, $factory, |backend| $crate::testkit(&backend);
            keys_page_in_row_order_and_are_replaced_only_where_unchanged,
            one_rotation_is_open_at_a_time_and_history_is_newest_first,
            the_lock_is_exclusive_and_released_when_dropped,
            a_rotation_moves_every_key_and_wallets_keep_working,
            an_interrupted_rotation_resumes_without_rotating_twice,
            keys_that_do_not_rewrap_fail_the_job_and_nothing_is_retired,
            validation_finds_a_key_moved_to_another_wallet,
            data_keys_due_by_age_skip_closed_wallets_and_rotated_ones,
        );
    };
}

const PIN: &str = "493817";

/// One test's world: the backend's master key provider, the stores, a ledger and a secrets
/// manager on them.
struct World {
    keys: Arc<dyn KeyProvider>,
    stores: Stores,
    ledger: Client,
    secrets: SecretsManager,
    clock: Arc<ManualClock>,
}

async fn world(backend: &dyn Backend) -> World {
    let keys = backend.keys();
    let clock = Arc::new(ManualClock::default());
    let stores = backend.open(keys.clone(), clock.clone()).await;
    let observed = Arc::new(ObservedAuditLog::new(
        stores.audit.clone(),
        AlertConfig::default(),
        EntityId::parse("rotation-tests").unwrap(),
    ));
    let ledger = Client::new(
        Ledger::new(
            stores.ledger.clone(),
            keys.clone(),
            observed,
            coffer_ledger::testkit::config(),
        )
        .with_clock(clock.clone()),
    );
    let secrets = SecretsManager::new(
        stores.secrets.clone(),
        keys.clone(),
        std::time::Duration::from_secs(60),
    )
    .with_clock(clock.clone());
    World {
        keys,
        stores,
        ledger,
        secrets,
        clock,
    }
}

impl World {
    fn rotator(&self, batch: u32) -> Rotator {
        self.rotator_over(self.keys.clone(), batch)
    }

    fn rotator_over(&self, keys: Arc<dyn KeyProvider>, batch: u32) -> Rotator {
        Rotator::new(
            self.stores.rotation.clone(),
            keys,
            self.stores.audit.clone(),
            RotationConfig {
                batch,
                retire_grace: std::time::Duration::ZERO,
                ..RotationConfig::default()
            },
            self.clock.clone(),
        )
    }

    /// `n` funded wallets of one owner.
    async fn wallets(&self, n: usize) -> (UserId, Vec<WalletId>) {
        let owner = UserId::new();
        let mut out = Vec::new();
        for i in 0..n {
            let w = self.ledger.open_wallet(owner, "USD", PIN).await.unwrap().id;
            self.ledger
                .deposit(owner, w, &money(1_000, &format!("fund-{i}")))
                .await
                .unwrap();
            out.push(w);
        }
        (owner, out)
    }

    async fn secret(&self, name: &str) {
        self.secrets
            .set(
                &SecretName::parse(name).unwrap(),
                b"a value of the service's",
                &SetOptions::default(),
            )
            .await
            .unwrap();
    }

    async fn counts(&self, set: KeySet) -> BTreeMap<u32, u64> {
        self.stores
            .rotation
            .count_by_kek_version(set)
            .await
            .unwrap()
    }

    async fn all_keys(&self, set: KeySet) -> Vec<crate::StoredKey> {
        self.stores
            .rotation
            .keys(&KeyQuery {
                set,
                below: None,
                after: None,
                limit: 10_000,
                probe: true,
            })
            .await
            .unwrap()
    }
}

fn money<'a>(amount: i64, key: &'a str) -> MoneyRequest<'a> {
    MoneyRequest {
        amount_minor: amount,
        currency: "USD",
        memo: None,
        idempotency_key: key,
    }
}

fn request(by: &str, retire: bool) -> RotateRequest {
    RotateRequest {
        requested_by: by.to_owned(),
        emergency: false,
        retire,
    }
}

fn no_progress(_: &RotationJob) {}

/// Paging follows the primary key, `below` filters by KEK version, a replacement lands only
/// where the row still holds the bytes read, and the counts follow.
pub async fn keys_page_in_row_order_and_are_replaced_only_where_unchanged(backend: &dyn Backend) {
    let w = world(backend).await;
    let (_, wallets) = w.wallets(5).await;
    let store = &w.stores.rotation;
    let all = w.all_keys(KeySet::WalletKeys).await;
    assert_eq!(all.len(), 5);
    let rows: Vec<KeyRow> = all.iter().map(|k| k.row.clone()).collect();
    let mut sorted = rows.clone();
    sorted.sort();
    assert_eq!(rows, sorted, "keys come in row order");
    let mut ids: Vec<Uuid> = wallets.iter().map(|w| *w.as_uuid()).collect();
    ids.sort();
    for (k, id) in all.iter().zip(&ids) {
        assert_eq!(
            k.row,
            KeyRow::Wallet {
                wallet: *id,
                version: 1
            }
        );
        assert_eq!(k.kek_version, 1);
        assert!(k.probe.is_some(), "the current key carries its balance");
    }
    // Pages of two, resumed from the last row.
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = store
            .keys(&KeyQuery {
                set: KeySet::WalletKeys,
                below: Some(2),
                after: after.clone(),
                limit: 2,
                probe: false,
            })
            .await
            .unwrap();
        let Some(last) = page.last() else { break };
        assert!(page.len() <= 2);
        assert!(page.iter().all(|k| k.probe.is_none()));
        after = Some(last.row.clone());
        seen.extend(page.into_iter().map(|k| k.row));
    }
    assert_eq!(seen, rows);
    let below_one = store
        .keys(&KeyQuery {
            set: KeySet::WalletKeys,
            below: Some(1),
            after: None,
            limit: 10,
            probe: false,
        })
        .await
        .unwrap();
    assert!(below_one.is_empty());

    // Compare-and-swap: the first two rows change, the third was "changed meanwhile".
    let first = &all[0];
    let second = &all[1];
    let third = &all[2];
    let replacements = vec![
        Replacement {
            row: first.row.clone(),
            old: first.wrapped.clone(),
            new: second.wrapped.clone(),
            kek_version: 7,
        },
        Replacement {
            row: second.row.clone(),
            old: second.wrapped.clone(),
            new: first.wrapped.clone(),
            kek_version: 7,
        },
        Replacement {
            row: third.row.clone(),
            old: b"not what is stored".to_vec(),
            new: first.wrapped.clone(),
            kek_version: 7,
        },
    ];
    assert_eq!(
        store
            .replace(KeySet::WalletKeys, &replacements)
            .await
            .unwrap(),
        2
    );
    assert_eq!(
        w.counts(KeySet::WalletKeys).await,
        BTreeMap::from([(1, 3), (7, 2)])
    );
    let after_swap = w.all_keys(KeySet::WalletKeys).await;
    assert_eq!(after_swap[0].wrapped, second.wrapped);
    assert_eq!(after_swap[1].wrapped, first.wrapped);
    assert_eq!(after_swap[2].wrapped, third.wrapped);
    assert_eq!(store.replace(KeySet::WalletKeys, &[]).await.unwrap(), 0);
    assert!(w.counts(KeySet::UserKeys).await.is_empty());

    w.secret("svc/one").await;
    let secrets = w.all_keys(KeySet::Secrets).await;
    assert_eq!(secrets.len(), 1);
    assert_eq!(
        secrets[0].row,
        KeyRow::Secret {
            name: "svc/one".into(),
            version: 1
        }
    );
}

/// One rotation may be requested or running at a time; finished ones stay as history.
pub async fn one_rotation_is_open_at_a_time_and_history_is_newest_first(backend: &dyn Backend) {
    let w = world(backend).await;
    let rotator = w.rotator(100);
    let (first, created) = rotator.request(request("cli:alice", false)).await.unwrap();
    assert!(created);
    assert_eq!(first.state, JobState::Requested);
    assert_eq!(first.provider, "local");
    let (again, created) = rotator.request(request("cli:bob", true)).await.unwrap();
    assert!(!created, "the open one is answered");
    assert_eq!(again.id, first.id);
    assert_eq!(again.requested_by, "cli:alice");
    // The store itself refuses a second open job.
    let mut other = first.clone();
    other.id = Uuid::now_v7();
    assert!(matches!(
        w.stores.rotation.insert_job(&other).await,
        Err(RotationStoreError::Conflict)
    ));
    assert!(matches!(
        rotator.request(request("not a token", false)).await,
        Err(RotationError::Refused(_))
    ));

    let done = rotator.run_pending(&no_progress).await.unwrap().unwrap();
    assert_eq!(done.id, first.id);
    assert_eq!(done.state, JobState::Done);
    assert!(w.stores.rotation.open_job().await.unwrap().is_none());
    assert!(rotator.run_pending(&no_progress).await.unwrap().is_none());
    let (second, created) = rotator.request(request("cli:bob", true)).await.unwrap();
    assert!(created);
    let history = rotator.history(10).await.unwrap();
    assert_eq!(
        history.iter().map(|j| j.id).collect::<Vec<_>>(),
        vec![second.id, first.id]
    );
    assert_eq!(history[1].from_version, Some(1));
    assert_eq!(history[1].to_version, Some(2));
    assert!(history[1].finished_at.is_some());
    assert_eq!(rotator.history(1).await.unwrap().len(), 1);
}

/// A lock is held by one lease at a time and is free again once the lease is dropped.
pub async fn the_lock_is_exclusive_and_released_when_dropped(backend: &dyn Backend) {
    let w = world(backend).await;
    let store = &w.stores.rotation;
    let lease = store.try_lock("job-a").await.unwrap().expect("free");
    assert!(store.try_lock("job-a").await.unwrap().is_none());
    let other = store.try_lock("job-b").await.unwrap();
    assert!(other.is_some(), "another job's lock is separate");
    // A second process on the same database (a fresh adapter) is refused too.
    let second = backend.open(w.keys.clone(), w.clock.clone()).await;
    assert!(second.rotation.try_lock("job-a").await.unwrap().is_none());
    drop(lease);
    // Released as the lease drops (on Postgres by a statement the drop spawns).
    let mut again = None;
    for _ in 0..50 {
        again = second.rotation.try_lock("job-a").await.unwrap();
        if again.is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(again.is_some(), "free once dropped");
}

/// End to end: every wallet key and secret key moves to the new version in batches, the old
/// version is retired, wallets keep moving money, secrets keep opening, validation passes and
/// the audit log has the rotation.
pub async fn a_rotation_moves_every_key_and_wallets_keep_working(backend: &dyn Backend) {
    let w = world(backend).await;
    let (owner, wallets) = w.wallets(23).await;
    w.secret("svc/one").await;
    w.secret("svc/two").await;
    let rotator = w.rotator(5);
    let before = rotator.overview().await.unwrap();
    assert_eq!(before.active_version, 1);
    assert_eq!(before.stale, 0);
    rotator
        .request(request("admin:0190c3a2-0000-7000-8000-000000000001", true))
        .await
        .unwrap();
    let seen = AtomicUsize::new(0);
    let job = rotator
        .run_pending(&|_: &RotationJob| {
            seen.fetch_add(1, Ordering::Relaxed);
        })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(job.state, JobState::Done);
    assert_eq!((job.from_version, job.to_version), (Some(1), Some(2)));
    assert_eq!(job.total, 25);
    assert_eq!(job.rewrapped, 25);
    assert_eq!(job.failed, 0);
    assert_eq!(job.retired_below, Some(2));
    assert!(
        seen.load(Ordering::Relaxed) >= 5,
        "progress after each batch of 5"
    );
    assert_eq!(
        w.counts(KeySet::WalletKeys).await,
        BTreeMap::from([(2, 23)])
    );
    assert_eq!(w.counts(KeySet::Secrets).await, BTreeMap::from([(2, 2)]));
    let status = w.keys.status().await.unwrap();
    assert_eq!(status.active_version, 2);
    assert_eq!(
        status
            .versions
            .iter()
            .find(|v| v.version == 1)
            .unwrap()
            .state,
        VersionState::Retired
    );
    // Money still moves and secrets still open, with version 1 gone.
    w.ledger
        .transfer(
            owner,
            wallets[0],
            wallets[1],
            PIN,
            &money(250, "after-rotation"),
        )
        .await
        .unwrap();
    let fresh = SecretsManager::new(
        w.stores.secrets.clone(),
        w.keys.clone(),
        std::time::Duration::from_secs(60),
    );
    let value = fresh
        .get(&SecretName::parse("svc/two").unwrap())
        .await
        .unwrap();
    assert_eq!(value.expose_secret(), b"a value of the service's");
    let report = rotator.validate(&|_| {}).await.unwrap();
    assert!(report.ok(), "{report:?}");
    assert_eq!(report.checked.get(&KeySet::WalletKeys), Some(&23));
    assert_eq!(report.checked.get(&KeySet::Secrets), Some(&2));
    assert_eq!(report.wallets_opened, 23);
    let overview = rotator.overview().await.unwrap();
    assert_eq!(overview.stale, 0);
    assert_eq!(overview.last_done.map(|j| j.id), Some(job.id));
    let audited = w
        .stores
        .audit
        .list(&AuditQuery {
            limit: 1000,
            ..AuditQuery::default()
        })
        .await
        .unwrap();
    let actions: Vec<_> = audited
        .iter()
        .map(|r| r.event.action)
        .filter(|a| a.as_str().starts_with("key.") && *a != coffer_audit::Action::KeyDataKeyCreated)
        .collect();
    assert_eq!(
        actions.len(),
        3,
        "rotation started, master key rotated, rotation finished: {actions:?}"
    );
}

/// A provider that fails re-wraps after `ok_calls` calls: the worker "dies" mid-job.
#[derive(Debug)]
struct FailingRewrap {
    ok_calls: usize,
    calls: AtomicUsize,
}

impl FailingRewrap {
    fn check(&self, call: DataKeyCall) -> Result<(), KeyError> {
        if call == DataKeyCall::Rewrap && self.calls.fetch_add(1, Ordering::SeqCst) >= self.ok_calls
        {
            return Err(KeyError::Unavailable {
                provider: "local".into(),
                reason: "injected".into(),
            });
        }
        Ok(())
    }
}

/// A run that fails half-way leaves the job running with the version it rotated to and the
/// keys it moved; the next run continues from there without rotating again.
pub async fn an_interrupted_rotation_resumes_without_rotating_twice(backend: &dyn Backend) {
    let w = world(backend).await;
    w.wallets(12).await;
    let fail_after = FailingRewrap {
        ok_calls: 2,
        calls: AtomicUsize::new(0),
    };
    let failing: Arc<dyn KeyProvider> = Arc::new(Intercepted::new(
        w.keys.clone(),
        fail_after,
        FailingRewrap::check,
    ));
    let first = w.rotator_over(failing, 4);
    first.request(request("cli:ops", false)).await.unwrap();
    let err = first.run_pending(&no_progress).await.unwrap_err();
    assert_eq!(err.code(), "key_provider_unavailable");
    let open = w.stores.rotation.open_job().await.unwrap().unwrap();
    assert_eq!(open.state, JobState::Running);
    assert_eq!(open.to_version, Some(2));
    assert_eq!(open.rewrapped, 8);
    assert!(open.error.as_deref().unwrap().contains("injected"));
    assert_eq!(
        w.counts(KeySet::WalletKeys).await,
        BTreeMap::from([(1, 4), (2, 8)])
    );
    // Another worker takes over, once the first one's lease is gone: on Postgres the unlock is
    // sent after the lease is dropped, so the next poll may still find the lock held.
    let second = w.rotator(4);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let job = loop {
        if let Some(job) = second.run_pending(&no_progress).await.unwrap() {
            break job;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the lock was never released"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert_eq!(job.id, open.id);
    assert_eq!(job.state, JobState::Done);
    assert_eq!(job.rewrapped, 12);
    assert_eq!(job.error, None);
    assert_eq!(
        w.keys.status().await.unwrap().active_version,
        2,
        "rotated once"
    );
    assert_eq!(
        w.counts(KeySet::WalletKeys).await,
        BTreeMap::from([(2, 12)])
    );
}

/// A key that does not unwrap fails the job with its row named, the others still move, and
/// nothing is retired.
pub async fn keys_that_do_not_rewrap_fail_the_job_and_nothing_is_retired(backend: &dyn Backend) {
    let w = world(backend).await;
    let (_, wallets) = w.wallets(6).await;
    let broken = *wallets[3].as_uuid();
    let all = w.all_keys(KeySet::WalletKeys).await;
    let mut bad = WrappedKey::from_bytes(&all[0].wrapped).unwrap();
    bad.ciphertext[5] ^= 1;
    backend.set_wallet_key(broken, &bad.to_bytes()).await;
    let rotator = w.rotator(100);
    rotator.request(request("cli:ops", true)).await.unwrap();
    let err = rotator.run_pending(&no_progress).await.unwrap_err();
    let RotationError::KeysFailed { failed, first } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(*failed, 1);
    assert!(first.contains(&broken.to_string()), "{first}");
    let job = rotator.history(1).await.unwrap().remove(0);
    assert_eq!(job.state, JobState::Failed);
    assert_eq!(job.rewrapped, 5);
    assert_eq!(job.retired_below, None);
    let status = w.keys.status().await.unwrap();
    assert!(
        status
            .versions
            .iter()
            .all(|v| v.state != VersionState::Retired)
    );
    assert!(w.stores.rotation.open_job().await.unwrap().is_none());
}

/// Validation names keys that unwrap under no context of theirs: a key copied to another
/// wallet's row.
pub async fn validation_finds_a_key_moved_to_another_wallet(backend: &dyn Backend) {
    let w = world(backend).await;
    let (_, wallets) = w.wallets(4).await;
    let rotator = w.rotator(3);
    let clean = rotator.validate(&|_| {}).await.unwrap();
    assert!(clean.ok());
    assert_eq!(clean.wallets_opened, 4);
    let all = w.all_keys(KeySet::WalletKeys).await;
    let victim = *wallets[2].as_uuid();
    let donor = all
        .iter()
        .find(|k| {
            k.row
                != KeyRow::Wallet {
                    wallet: victim,
                    version: 1,
                }
        })
        .unwrap();
    backend.set_wallet_key(victim, &donor.wrapped).await;
    let report = rotator.validate(&|_| {}).await.unwrap();
    assert!(!report.ok());
    assert_eq!(report.failed, 1);
    assert_eq!(report.total(), 4);
    assert_eq!(
        report.failures[0].row,
        KeyRow::Wallet {
            wallet: victim,
            version: 1
        }
    );
    assert_eq!(report.wallets_opened, 3);
}

/// The data-key rotation's work list: wallets by the age of their current data key, in id
/// order, paged; closed wallets and keys newer than the bound are left out.
pub async fn data_keys_due_by_age_skip_closed_wallets_and_rotated_ones(backend: &dyn Backend) {
    let w = world(backend).await;
    let (_, mut wallets) = w.wallets(4).await;
    let admin = UserId::new();
    let empty = w
        .ledger
        .open_wallet(UserId::new(), "USD", PIN)
        .await
        .unwrap()
        .id;
    w.ledger.close(admin, empty).await.unwrap();
    wallets.sort();
    let ids: Vec<Uuid> = wallets.iter().map(|w| *w.as_uuid()).collect();
    let store = &w.stores.rotation;
    let future = i64::MAX;
    let due = store
        .data_keys_due(crate::DataKeyOwner::Wallets, future, None, 100)
        .await
        .unwrap();
    assert_eq!(
        due, ids,
        "every open wallet, in id order; not the closed one"
    );
    let page = store
        .data_keys_due(crate::DataKeyOwner::Wallets, future, Some(ids[1]), 1)
        .await
        .unwrap();
    assert_eq!(page, vec![ids[2]]);
    assert!(
        store
            .data_keys_due(crate::DataKeyOwner::Wallets, 0, None, 100)
            .await
            .unwrap()
            .is_empty(),
        "nothing was created before the epoch"
    );
    // A rotated wallet's current key is new: not due against a bound just before now (and after
    // the other wallets' keys were made).
    w.clock.advance(std::time::Duration::from_millis(5));
    let bound = w.clock.unix_micros();
    w.clock.advance(std::time::Duration::from_millis(5));
    assert_eq!(w.ledger.rotate_data_key(wallets[0]).await.unwrap(), 2);
    let due = store
        .data_keys_due(crate::DataKeyOwner::Wallets, bound, None, 100)
        .await
        .unwrap();
    assert_eq!(due, ids[1..].to_vec());
    assert!(
        store
            .data_keys_due(crate::DataKeyOwner::Users, future, None, 100)
            .await
            .unwrap()
            .is_empty()
    );
}
