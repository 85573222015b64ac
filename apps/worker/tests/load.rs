//! The API under load during a rotation: clients transfer money over HTTP while the real
//! `coffer-worker keys rotate --retire` rotates the master key, re-wraps every data key and
//! retires the old version. No request fails because of it, money keeps moving throughout, and
//! the ledger verifies afterwards. The test waits for the load by its progress (rounds of
//! requests answered), not for fixed times.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use common::{Database, Fixture};
use serde_json::{Value, json};

struct Client {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Client {
    async fn post(&self, path: &str, body: Value, key: Option<&str>) -> (u16, Value) {
        let mut req = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .json(&body);
        if let Some(k) = key {
            req = req.header("idempotency-key", k);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        let resp = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }
}

/// Waits until the clients have answered `n` rounds in all (for at most 60 s; the assertions
/// that follow say what went wrong).
async fn until_rounds(rounds: &AtomicU64, n: u64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while rounds.load(Ordering::Relaxed) < n && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_serves_every_request_during_a_rotation() {
    let f = Fixture::new(Database::Postgres).await;
    // Keys for the rotation to move while the clients work.
    f.wallets(800).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop_server, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(coffer_app::serve(f.app.router(), listener, async {
        let _ = stopped.await;
    }));

    let mut clients = Vec::new();
    for i in 0..4 {
        let (_, token) = f.user(&format!("client{i}@example.com")).await;
        let c = Client {
            http: reqwest::Client::new(),
            base: base.clone(),
            token,
        };
        let mut wallets = Vec::new();
        for _ in 0..2 {
            let (s, w) = c
                .post(
                    "/v1/wallets",
                    json!({"currency": "USD", "pin": common::PIN}),
                    None,
                )
                .await;
            assert_eq!(s, 201, "{w}");
            let id = w["id"].as_str().unwrap().to_owned();
            let (s, d) = c
                .post(
                    &format!("/v1/wallets/{id}/deposits"),
                    json!({"amount": 1_000_000, "currency": "USD", "reference": "seed"}),
                    Some(&format!("seed-{id}")),
                )
                .await;
            assert_eq!(s, 201, "{d}");
            wallets.push(id);
        }
        clients.push((c, wallets));
    }

    let running = Arc::new(AtomicBool::new(true));
    let rotating = Arc::new(AtomicBool::new(false));
    let during = Arc::new(AtomicU64::new(0));
    // Rounds (a transfer and a read) answered, by every client.
    let rounds = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for (n, (c, wallets)) in clients.into_iter().enumerate() {
        let (running, rotating, during, rounds) = (
            running.clone(),
            rotating.clone(),
            during.clone(),
            rounds.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut failures = Vec::new();
            let mut i = 0u64;
            while running.load(Ordering::Relaxed) {
                i += 1;
                let (from, to) = if i.is_multiple_of(2) {
                    (&wallets[0], &wallets[1])
                } else {
                    (&wallets[1], &wallets[0])
                };
                let (s, body) = c
                    .post(
                        &format!("/v1/wallets/{from}/transfers"),
                        json!({"to_wallet_id": to, "amount": 1, "currency": "USD", "pin": common::PIN}),
                        Some(&format!("load-{n}-{i}")),
                    )
                    .await;
                if s != 201 {
                    failures.push(format!("transfer {s}: {body}"));
                }
                let (s, body) = c.get(&format!("/v1/wallets/{to}")).await;
                if s != 200 {
                    failures.push(format!("read {s}: {body}"));
                }
                if rotating.load(Ordering::Relaxed) {
                    during.fetch_add(1, Ordering::Relaxed);
                }
                rounds.fetch_add(1, Ordering::Relaxed);
            }
            failures
        }));
    }

    // Every client is under way.
    until_rounds(&rounds, 4).await;
    rotating.store(true, Ordering::Relaxed);
    let rotation = f
        .worker(&["keys", "rotate", "--retire"])
        .env("COFFER_WORKER__ROTATION_BATCH", "20")
        .env("COFFER_WORKER__RETIRE_GRACE_SECS", "2")
        .output()
        .unwrap();
    rotating.store(false, Ordering::Relaxed);
    let rotation = common::Ran(rotation).expect(0);
    assert_eq!(rotation.json()["state"], "done");
    assert_eq!(rotation.json()["retired_below"], 2);
    // A while after the old version is gone: two more rounds of every client.
    until_rounds(&rounds, rounds.load(Ordering::Relaxed) + 8).await;
    running.store(false, Ordering::Relaxed);
    let mut failures = Vec::new();
    for t in tasks {
        failures.extend(t.await.unwrap());
    }
    assert!(
        failures.is_empty(),
        "{} failed: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    let during = during.load(Ordering::Relaxed);
    assert!(
        during >= 20,
        "money kept moving during the rotation ({during} transfers)"
    );

    let status = f.run(&["keys", "status"]).expect(0).json();
    assert_eq!(status["stale"], 0);
    let ledger = f.run(&["ledger", "verify"]).expect(0).json();
    assert_eq!(ledger["ok"], true);
    let _ = stop_server.send(());
    server.await.unwrap().unwrap();
}
