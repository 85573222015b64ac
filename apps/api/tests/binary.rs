//! The `coffer-api` binary itself: on an empty directory it creates its database and key file,
//! serves, creates an administrator from the command line (password on stdin), and on SIGTERM
//! finishes and exits cleanly; `config check` prints the configuration with secrets masked.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write as _;
use std::process::{Command, Stdio};
use std::time::Duration;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Sends `request` and reads the answer's JSON body.
async fn json_of(request: reqwest::RequestBuilder) -> serde_json::Value {
    request.send().await.unwrap().json().await.unwrap()
}

fn coffer(dir: &std::path::Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_coffer-api"));
    c.current_dir(dir).env("RUST_LOG", "info");
    // Nothing of the machine's configuration leaks in.
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("COFFER_")) {
        c.env_remove(k);
    }
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_starts_on_an_empty_directory_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");

    // Administrator first (the command opens, creates and migrates the same database).
    let mut admin = coffer(dir.path())
        .args([
            "admin",
            "create",
            "--email",
            "root@example.com",
            "--password-stdin",
        ])
        .env("COFFER_LISTEN", &listen)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    admin
        .stdin
        .take()
        .unwrap()
        .write_all(b"correct plum tart at noon\n")
        .unwrap();
    let out = admin.wait_with_output().unwrap();
    let logged =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{logged}");
    assert!(
        !logged.contains("correct plum tart"),
        "the password is never logged"
    );
    assert!(dir.path().join("data/coffer.db").exists());
    assert!(dir.path().join("data/master.json").exists());

    let mut server = coffer(dir.path())
        .env("COFFER_LISTEN", &listen)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let client = reqwest::Client::new();
    let base = format!("http://{listen}");
    let mut up = false;
    for _ in 0..100 {
        if client
            .get(format!("{base}/healthz"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(up, "the server answers /healthz");
    let login = json_of(
        client
            .post(format!("{base}/v1/auth/login"))
            .json(&serde_json::json!({ "email": "root@example.com", "password": "correct plum tart at noon" })),
    )
    .await;
    let token = login["access_token"].as_str().unwrap();
    let me = json_of(client.get(format!("{base}/v1/me")).bearer_auth(token)).await;
    assert_eq!(me["roles"], serde_json::json!(["admin"]));

    // SIGTERM: a clean exit.
    let pid = server.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let mut exited = None;
    for _ in 0..100 {
        if let Some(status) = server.try_wait().unwrap() {
            exited = Some(status);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let status = exited.unwrap_or_else(|| {
        server.kill().unwrap();
        panic!("no exit within 10 s of SIGTERM")
    });
    let out = server.wait_with_output().unwrap();
    let logged =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(status.success(), "{status}: {logged}");
    assert!(logged.contains("coffer-api listening"), "{logged}");
    assert!(logged.contains("stopped"), "{logged}");
    assert!(!logged.contains(token), "tokens are never logged");
}

#[test]
fn config_check_masks_secrets_and_names_bad_settings() {
    let dir = tempfile::tempdir().unwrap();
    let out = coffer(dir.path())
        .args(["config", "check"])
        .env(
            "COFFER_DATABASE_URL",
            "postgres://coffer:s3cret@db.internal/coffer",
        )
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(
        text.contains("postgres://coffer:***@db.internal/coffer"),
        "{text}"
    );
    assert!(!text.contains("s3cret"));

    let out = coffer(dir.path())
        .args(["config", "check"])
        .env("COFFER_REVOCATION", "etcd")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("COFFER_REVOCATION") && err.contains("database, memory or redis"),
        "{err}"
    );
}

/// Runs `coffer-api secrets …` in `dir` with `stdin`; answers stdout, or panics with stderr.
fn secrets(dir: &std::path::Path, args: &[&str], stdin: &[u8]) -> String {
    let mut child = coffer(dir)
        .arg("secrets")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "secrets {args:?}: {stderr}");
    assert!(
        !stderr.contains("hunter2") && !stderr.contains("correct-horse"),
        "a value reached the log: {stderr}"
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn the_secrets_commands_store_rotate_list_and_back_up_without_showing_values() {
    let dir = tempfile::tempdir().unwrap();
    let set = secrets(
        dir.path(),
        &[
            "set",
            "smtp/password",
            "--tag",
            "service=mail",
            "--rotate-every-days",
            "90",
        ],
        b"hunter2\n",
    );
    assert!(set.contains("\"version\": 1"), "{set}");
    let rotated = secrets(dir.path(), &["rotate", "smtp/password"], b"correct-horse\n");
    assert!(rotated.contains("\"version\": 2"), "{rotated}");
    let listed = secrets(dir.path(), &["list", "--tag", "service=mail"], b"");
    assert!(
        listed.contains("smtp/password") && listed.contains("\"versions\": 2"),
        "{listed}"
    );
    let status = secrets(dir.path(), &["status"], b"");
    assert!(status.contains("\"provider\": \"local\""), "{status}");
    for shown in [&set, &rotated, &listed, &status] {
        assert!(!shown.contains("hunter2") && !shown.contains("correct-horse"));
    }

    // A backup restores into a fresh database next to the same key file.
    secrets(dir.path(), &["backup", "secrets.bundle"], b"");
    let bundle = std::fs::read(dir.path().join("secrets.bundle")).unwrap();
    // Names and tags are inside the sealed (base64, quote-free) part.
    let text = String::from_utf8_lossy(&bundle);
    assert!(
        !text.contains("\"name\"") && !text.contains("\"tags\""),
        "{text}"
    );
    std::fs::remove_file(dir.path().join("data/coffer.db")).unwrap();
    let _ = std::fs::remove_file(dir.path().join("data/coffer.db-wal"));
    let _ = std::fs::remove_file(dir.path().join("data/coffer.db-shm"));
    let restored = secrets(dir.path(), &["restore", "secrets.bundle"], b"");
    // The two smtp versions, and the old signing key (the fresh database made its own service
    // secrets at start, so the backup's versions of those are skipped).
    assert!(restored.contains("\"restored\": 3"), "{restored}");
    let listed = secrets(dir.path(), &["list"], b"");
    assert!(
        listed.contains("smtp/password") && listed.contains("\"version\": 2"),
        "{listed}"
    );

    let out = coffer(dir.path())
        .args(["secrets", "set", "bad name"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("secret name"));
}

/// `coffer-api migrate` applies the migrations (and on Postgres the role grants) and exits; it
/// may run again; a database URL it cannot reach is an error naming the database.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_prepares_the_database_and_exits() {
    let dir = tempfile::tempdir().unwrap();
    for _ in 0..2 {
        let out = coffer(dir.path()).arg("migrate").output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert!(dir.path().join("data/coffer.db").exists());
    assert!(
        !dir.path().join("data/master.json").exists(),
        "migrating touches no key"
    );
    let url = coffer_store::testing::pg_schema_url().await;
    let out = coffer(dir.path())
        .arg("migrate")
        .env("COFFER_DATABASE_URL", &url)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = coffer(dir.path())
        .arg("migrate")
        .env("COFFER_DATABASE_URL", "postgres://nobody@127.0.0.1:1/none")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("database"));
}
