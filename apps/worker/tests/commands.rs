//! The operator's commands, run as the real binary against SQLite and Postgres: status,
//! validation, a rotation with retirement, history, ledger and audit verification, the memo
//! backfill, revoking every session, erasing a user, the secrets listing; exit codes 0, 1, 2 and
//! 3 where they are due.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use coffer_ledger::StepUp;
use common::{Database, Fixture};
use serde_json::Value;

async fn the_commands_work(db: Database) {
    let f = Fixture::new(db).await;
    let (owner, wallets) = f.wallets(30).await;
    let (_, token) = f.user("alice@example.com").await;
    let (bob, _) = f.user("bob@example.com").await;
    let before = f.keys_by_version().await;
    let keys: u64 = before.values().sum();
    assert_eq!(before.keys().copied().collect::<Vec<_>>(), vec![1]);

    let status = f.run(&["keys", "status"]).expect(0).json();
    assert_eq!(status["provider"], "local");
    assert_eq!(status["active_version"], 1);
    assert_eq!(status["stale"], 0);
    assert_eq!(status["open_job"], Value::Null);

    let valid = f.run(&["keys", "validate"]).expect(0).json();
    assert_eq!(valid["failed"], 0);
    assert_eq!(valid["checked"]["wallet_keys"], 30);
    assert_eq!(valid["checked"]["user_keys"], 2);
    assert_eq!(valid["wallets_opened"], 30);

    let rotated = f.run(&["keys", "rotate", "--retire"]).expect(0);
    let job = rotated.json();
    assert_eq!(job["state"], "done", "{}", rotated.stderr());
    assert_eq!(job["from_version"], 1);
    assert_eq!(job["to_version"], 2);
    assert_eq!(job["retired_below"], 2);
    assert_eq!(job["rewrapped"].as_u64(), Some(keys));
    assert_eq!(job["failed"], 0);
    assert!(
        rotated.stderr().contains("re-wrapping data keys"),
        "progress lines on stderr when it is not a terminal: {}",
        rotated.stderr()
    );
    assert_eq!(
        f.keys_by_version().await,
        std::collections::BTreeMap::from([(2, keys)])
    );

    let history = f.run(&["keys", "history"]).expect(0).json();
    let history = history.as_array().unwrap();
    assert_eq!(history.len(), 1);
    assert!(
        history[0]["requested_by"]
            .as_str()
            .unwrap()
            .starts_with("cli:")
    );
    assert_eq!(history[0]["state"], "done");

    // The API process keeps working with version 1 retired: its key file is re-read.
    f.app
        .state
        .ledger
        .transfer(
            owner,
            wallets[0],
            wallets[1],
            &common::pin(),
            &common::money(125, Some("after the rotation"), "after-rotation"),
            StepUp::default(),
        )
        .await
        .unwrap();
    let verified = f.run(&["ledger", "verify"]).expect(0).json();
    assert_eq!(verified["ok"], true);
    assert_eq!(verified["wallets"], 30);
    // The transfer above was written with its receiver's copy of the memo: nothing to backfill.
    let backfill = f.run(&["ledger", "backfill-memos"]).expect(0);
    let done = backfill.json();
    assert_eq!(
        (done["copied"].as_u64(), done["unreadable"].as_u64()),
        (Some(0), Some(0))
    );
    assert!(done["scanned"].as_u64().unwrap() >= 1, "{done}");
    assert!(
        backfill.stderr().contains("--after "),
        "progress names where to resume: {}",
        backfill.stderr()
    );
    f.run(&["ledger", "backfill-memos", "--after", "nonsense"])
        .expect(2);
    let audit = f.run(&["audit", "verify"]).expect(0).json();
    assert_eq!(audit["ok"], true);

    let secrets = f.run(&["secrets", "list"]).expect(0).json();
    assert!(
        secrets
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["active"]["name"] == "coffer/audit-key"),
        "{secrets}"
    );

    // Revoking every session: the token issued before stops verifying.
    assert!(f.app.state.accounts.verify(&token).await.is_ok());
    f.run(&["sessions", "revoke-all"]).expect(0);
    assert!(f.app.state.accounts.verify(&token).await.is_err());

    // A rotation without retirement leaves version 2 decrypt-only; `keys retire` retires it
    // once no key is under it.
    let second = f.run(&["keys", "rotate"]).expect(0).json();
    assert_eq!(second["to_version"], 3);
    assert_eq!(second["retired_below"], Value::Null);
    f.run(&["keys", "retire"]).expect(0);
    let status = f.run(&["keys", "status"]).expect(0).json();
    let states: Vec<&str> = status["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["state"].as_str().unwrap())
        .collect();
    assert_eq!(states, vec!["retired", "retired", "active"]);

    // Every wallet's and user's data key: a new version; money, history and validation hold.
    let moved = f.run(&["keys", "rotate-data-keys"]).expect(0).json();
    assert_eq!(moved["wallets"], 30);
    assert_eq!(moved["users"], 2);
    let again = f
        .run(&["keys", "rotate-data-keys", "--older-than-days", "1"])
        .expect(0)
        .json();
    assert_eq!(again["wallets"], 0, "none is a day old");
    let valid = f.run(&["keys", "validate"]).expect(0).json();
    assert_eq!(valid["checked"]["wallet_keys"], 60);
    assert_eq!(valid["wallets_opened"], 30);
    f.run(&["ledger", "verify"]).expect(0);

    let kid = f.run(&["keys", "rotate-signing-key"]).expect(0).json();
    // Another process (the API) sees it at its next reload.
    f.app.state.accounts.reload_signing_keys().await.unwrap();
    let jwks = f.app.state.accounts.tokens().jwks().to_string();
    assert!(
        jwks.contains(kid["signing_kid"].as_str().unwrap()),
        "{jwks}"
    );

    // Erasing a user from the command line: refused while a wallet of theirs holds money (exit
    // 1, naming it); once it is empty, the user is erased, and the same command again answers
    // the same erasure; another key exits 1; the ledger still verifies, counting the erasure.
    let ledger = &f.app.state.ledger;
    let usd = coffer_ledger::Currency::parse("USD").unwrap();
    let w = ledger
        .open_wallet(bob, usd, &common::pin())
        .await
        .unwrap()
        .id;
    ledger
        .deposit(bob, w, &common::money(100, None, "bob-in"))
        .await
        .unwrap();
    let bob_id = bob.to_string();
    let erase = ["users", "erase", bob_id.as_str(), "--reason", "gdpr_art17"];
    let refused = f.run(&erase).expect(1);
    assert!(
        refused.stderr().contains(&w.to_string()),
        "{}",
        refused.stderr()
    );
    let out = common::money(100, None, "bob-out");
    ledger
        .withdraw(bob, w, &common::pin(), &out, StepUp::default())
        .await
        .unwrap();
    let erased = f.run(&erase).expect(0).json();
    assert_eq!(erased["user_id"].as_str(), Some(bob_id.as_str()));
    assert_eq!(erased["wallets"], serde_json::json!([w.to_string()]));
    assert_eq!(f.run(&erase).expect(0).json(), erased);
    f.run(&[&erase[..], &["--idempotency-key", "other"]].concat())
        .expect(1);
    f.run(&["users", "erase", "nobody", "--reason", "gdpr"])
        .expect(2);
    let verified = f.run(&["ledger", "verify"]).expect(0).json();
    assert_eq!(verified["erased_wallets"], 1);

    // Usage errors exit 2 with the usage line.
    let usage = f.run(&["keys", "spin"]).expect(2);
    assert!(usage.stderr().contains("usage: coffer-worker"));

    // A key copied to another wallet's row: validation names it and exits 3.
    // The same statement on either database's pool type.
    macro_rules! copy_key {
        ($pool:ty) => {{
            let pool = <$pool>::connect(&f.url).await.unwrap();
            sqlx::query(
                "UPDATE wallet_keys SET wrapped = (SELECT wrapped FROM wallet_keys WHERE wallet_id = $1 AND version = 1) WHERE wallet_id = $2 AND version = 1",
            )
            .bind(wallets[3].as_uuid())
            .bind(wallets[4].as_uuid())
            .execute(&pool)
            .await
            .unwrap()
            .rows_affected()
        }};
    }
    let copied = match db {
        Database::Sqlite => copy_key!(sqlx::SqlitePool),
        Database::Postgres => copy_key!(sqlx::PgPool),
    };
    assert_eq!(copied, 1);
    let bad = f.run(&["keys", "validate"]).expect(3);
    let report = bad.json();
    assert_eq!(report["failed"], 1);
    assert_eq!(
        report["failures"][0]["row"]["wallet"],
        wallets[4].to_string()
    );
    assert!(bad.stderr().contains("1 of"), "{}", bad.stderr());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_commands_work_on_sqlite() {
    the_commands_work(Database::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_commands_work_on_postgres() {
    the_commands_work(Database::Postgres).await;
}

/// On a terminal a command shows its progress and result, not the audit records' log lines;
/// with `log.file` set those lines go to the file (on a terminal or not).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_on_a_terminal_shows_its_result_and_audit_lines_go_to_the_log_file() {
    let f = Fixture::new(Database::Sqlite).await;
    f.wallets(3).await;
    let audit_line = |text: &str| text.lines().any(|l| l.contains("coffer::audit"));
    let piped = f.run(&["keys", "rotate"]).expect(0);
    assert!(
        audit_line(&piped.stderr()),
        "not on a terminal, the lines go to stderr as before: {}",
        piped.stderr()
    );
    let shown = common::Ran(f.on_terminal("keys rotate").output().unwrap()).expect(0);
    let screen = shown.stdout();
    assert!(
        screen.contains("\"state\"") && screen.contains("done"),
        "{screen}"
    );
    assert!(!audit_line(&screen), "{screen}");

    let log = f.dir.path().join("operator.log");
    let mut c = f.on_terminal("keys rotate");
    c.env("COFFER_LOG__FILE", &log);
    let shown = common::Ran(c.output().unwrap()).expect(0);
    assert!(!audit_line(&shown.stdout()), "{}", shown.stdout());
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(audit_line(&logged), "{logged}");
    assert!(logged.contains("key.rotation_finished"), "{logged}");
}

/// A rotation requested through the API's service is picked up by `coffer-worker run`, whose
/// metrics then show it; SIGTERM stops the worker cleanly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_running_worker_picks_up_a_requested_rotation() {
    let f = Fixture::new(Database::Sqlite).await;
    f.wallets(12).await;
    let keys: u64 = f.keys_by_version().await.values().sum();
    let (job, created) = f
        .app
        .rotation
        .request(coffer_rotation::RotateRequest {
            requested_by: "admin:0190c3a2-0000-7000-8000-000000000001".into(),
            emergency: false,
            retire: false,
        })
        .await
        .unwrap();
    assert!(created);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut worker = f
        .worker(&["run"])
        .env("COFFER_WORKER__POLL_SECS", "1")
        .env("COFFER_WORKER__METRICS_LISTEN", format!("127.0.0.1:{port}"))
        // Unused (revocation stays in the database), and warned of at start like the API does.
        .env("COFFER_AUTH__REDIS_URL", "redis://cache.example:6379")
        .spawn()
        .unwrap();
    let mut done = None;
    for _ in 0..300 {
        if let Some(last) = f.app.rotation.overview().await.unwrap().last_done {
            done = Some(last);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let Some(done) = done else {
        worker.kill().unwrap();
        let out = worker.wait_with_output().unwrap();
        panic!(
            "the worker did not run the rotation within 30 s:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    assert_eq!(done.id, job.id);
    assert_eq!(done.rewrapped, keys);
    let client = reqwest::Client::new();
    let mut metrics = String::new();
    for _ in 0..50 {
        if let Ok(r) = client
            .get(format!("http://127.0.0.1:{port}/metrics"))
            .send()
            .await
        {
            metrics = r.text().await.unwrap();
            if metrics.contains("job=\"kek_rotation\"") {
                break;
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(
        metrics.contains(&format!("coffer_worker_rotation_keys_done {keys}")),
        "{metrics}"
    );
    assert!(
        metrics.contains("coffer_worker_job_last_success_timestamp_seconds{job=\"kek_rotation\"}"),
        "{metrics}"
    );
    let pid = worker.id().to_string();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(killed.success());
    let out = worker.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "SIGTERM ends it cleanly: {}",
        out.status
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(
            "auth.redis_url (redis://cache.example:6379) reaches another host unencrypted"
        ),
        "the worker warns of a remote Redis without TLS: {stderr}"
    );
}
