//! `kill -9` at random points of a rotation, repeated: the real `coffer-worker keys rotate`
//! process is killed while it re-wraps (and, some rounds, at a random moment from its start),
//! restarted, killed again; a last run completes it. Afterwards the master key was rotated
//! exactly once, every key is under the new version, every wallet decrypts, `ledger verify`
//! and `audit verify` pass, and the history holds one finished rotation.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::{Duration, Instant};

use common::{Database, Fixture};
use rand::RngExt as _;

/// Keys under the new version so far.
async fn moved(f: &Fixture) -> u64 {
    f.keys_by_version().await.get(&2).copied().unwrap_or(0)
}

async fn killed_repeatedly(db: Database) {
    let f = Fixture::new(db).await;
    f.wallets(600).await;
    for i in 0..20 {
        f.user(&format!("user{i}@example.com")).await;
    }
    let total: u64 = f.keys_by_version().await.values().sum();
    let mut rng = rand::rng();
    let mut kills = 0;
    let mut mid_job = 0;
    let mut last = 0;
    let mut logs = String::new();
    let mut finished = None;
    while kills < 6 {
        // The first run requests the rotation; the next ones continue it, as an operator
        // would after a crash (`keys resume` never starts another).
        let args: &[&str] = if kills == 0 {
            &["keys", "rotate", "--retire"]
        } else {
            &["keys", "resume"]
        };
        let mut child = f
            .worker(args)
            .env("COFFER_WORKER__ROTATION_BATCH", "3")
            .spawn()
            .unwrap();
        // Odd rounds: a random moment from the start (start-up, the provider's rotation, the
        // first batches). Even rounds: once it has moved a random number of keys further.
        let started = Instant::now();
        let after = Duration::from_millis(rng.random_range(0..250));
        let further = rng.random_range(1..60);
        let exited = loop {
            if child.try_wait().unwrap().is_some() {
                break true;
            }
            let now = moved(&f).await;
            if (kills % 2 == 1 && started.elapsed() >= after)
                || (kills % 2 == 0 && now >= last + further)
            {
                break false;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        };
        if exited {
            // It finished before the kill could land: that run is the last one.
            finished = Some(child.wait_with_output().unwrap());
            break;
        }
        child.kill().unwrap(); // SIGKILL
        let out = child.wait_with_output().unwrap();
        logs.push_str(&String::from_utf8_lossy(&out.stderr));
        logs.push_str("---- killed\n");
        kills += 1;
        let now = moved(&f).await;
        if now > 0 && now < total {
            mid_job += 1;
        }
        assert!(now >= last, "moved keys never move back");
        last = now;
    }
    assert!(
        mid_job >= 2,
        "at least two kills landed in the middle of the re-wrap ({mid_job} of {kills})"
    );

    if let Some(out) = finished {
        common::Ran(out).expect(0);
    }
    // Whether or not the last kill came after the end, resuming leaves it done.
    f.run(&["keys", "resume"]).expect(0);
    let history = f.run(&["keys", "history"]).expect(0).json();
    let job = &history[0];
    assert_eq!(
        history.as_array().unwrap().len(),
        1,
        "one rotation: {history:#}\n{logs}"
    );
    assert_eq!(job["state"], "done");
    assert_eq!(
        job["to_version"], 2,
        "rotated once, however often it was killed"
    );
    assert_eq!(job["retired_below"], 2);

    let status = f.run(&["keys", "status"]).expect(0).json();
    assert_eq!(status["active_version"], 2);
    assert_eq!(status["stale"], 0);
    assert_eq!(status["versions"].as_array().unwrap().len(), 2);
    assert_eq!(status["versions"][0]["state"], "retired");
    assert_eq!(
        f.keys_by_version().await,
        std::collections::BTreeMap::from([(2, total)])
    );

    let valid = f.run(&["keys", "validate"]).expect(0).json();
    assert_eq!(valid["failed"], 0);
    assert_eq!(valid["wallets_opened"], 600);
    let ledger = f.run(&["ledger", "verify"]).expect(0).json();
    assert_eq!(ledger["ok"], true);
    f.run(&["audit", "verify"]).expect(0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotation_killed_repeatedly_completes_on_postgres() {
    killed_repeatedly(Database::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotation_killed_repeatedly_completes_on_sqlite() {
    killed_repeatedly(Database::Sqlite).await;
}
