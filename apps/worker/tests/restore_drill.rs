//! The restore drill (`cargo xtask restore-drill` runs it alone; `cargo xtask test` runs it with
//! the rest): a Postgres deployment with wallets, money, users and secrets is backed up (the
//! database with `pg_dump`, the key material as a copy of the key file), wiped (the schema
//! dropped, the key file deleted), restored (`pg_restore`, the key file put back), and then
//! `ledger verify`, `keys validate` and `audit verify` pass and every balance reads as before.
//! A restore without the key material is refused loudly, not half-working.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::process::Command;

use coffer_ledger::{Caller, StepUp};
use common::{Database, Fixture};

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_wipe_restore_and_the_ledger_verifies() {
    let f = Fixture::new(Database::Postgres).await;
    let (owner, wallets) = f.wallets(12).await;
    for i in 0..11 {
        f.app
            .state
            .ledger
            .transfer(
                owner,
                wallets[i],
                wallets[i + 1],
                &common::pin(),
                &common::money(
                    100 + i64::try_from(i).unwrap(),
                    Some("drill"),
                    &format!("drill-{i}"),
                ),
                StepUp::default(),
            )
            .await
            .unwrap();
    }
    f.user("drill@example.com").await;
    let mut before = Vec::new();
    for w in &wallets {
        before.push(
            f.app
                .state
                .ledger
                .wallet(Caller::User(owner), *w)
                .await
                .unwrap()
                .balance,
        );
    }
    f.run(&["keys", "rotate"]).expect(0);

    // Backup: the schema, and the key material apart from it.
    let (db_url, schema) = {
        let (base, query) = f.url.split_once('?').unwrap();
        let schema = query.rsplit("search_path%3D").next().unwrap().to_owned();
        (base.to_owned(), schema)
    };
    let backup = f.dir.path().join("backup");
    std::fs::create_dir_all(&backup).unwrap();
    let dump = backup.join("coffer.dump");
    run(Command::new("pg_dump")
        .args([
            "--format=custom",
            "--no-owner",
            "--schema",
            &schema,
            "--file",
        ])
        .arg(&dump)
        .arg(&db_url));
    std::fs::copy(&f.key_file, backup.join("master.json")).unwrap();
    f.app.db.close().await;

    // Wipe.
    run(Command::new("psql")
        .arg(&db_url)
        .args(["-v", "ON_ERROR_STOP=1", "-c"])
        .arg(format!("DROP SCHEMA {schema} CASCADE")));
    std::fs::remove_file(&f.key_file).unwrap();
    // As in production, a missing key file is an error, never a new key.
    let worker = |args: &[&str]| {
        common::Ran(
            f.worker(args)
                .env("COFFER_KEYS__CREATE_KEY_FILE", "false")
                .output()
                .unwrap(),
        )
    };
    worker(&["keys", "status"]).expect(1);

    // Restore the database alone: without the key material nothing opens, and it says so.
    run(Command::new("pg_restore")
        .args(["--no-owner", "--exit-on-error", "--dbname"])
        .arg(&db_url)
        .arg(&dump));
    let refused = worker(&["ledger", "verify"]);
    assert_ne!(refused.code(), 0);
    assert!(
        refused.stderr().contains("master key"),
        "{}",
        refused.stderr()
    );

    // Then the key material: everything verifies and reads as before.
    std::fs::copy(backup.join("master.json"), &f.key_file).unwrap();
    let ledger = worker(&["ledger", "verify"]).expect(0).json();
    assert_eq!(ledger["ok"], true);
    assert_eq!(ledger["wallets"], 12);
    let keys = worker(&["keys", "validate"]).expect(0).json();
    assert_eq!(keys["wallets_opened"], 12);
    worker(&["audit", "verify"]).expect(0);
    let status = worker(&["keys", "status"]).expect(0).json();
    assert_eq!(status["active_version"], 2);
    assert_eq!(status["stale"], 0);
    let app = coffer_app::App::build(common::config(&f.url, &f.key_file), "coffer-worker")
        .await
        .unwrap();
    for (w, balance) in wallets.iter().zip(before) {
        let read = app
            .state
            .ledger
            .wallet(Caller::User(owner), *w)
            .await
            .unwrap();
        assert_eq!(read.balance, balance);
    }
    app.db.close().await;
}
