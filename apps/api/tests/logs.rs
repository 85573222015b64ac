//! A full scenario with every log line captured (debug level, the server's and the libraries'),
//! then scanned for the PINs, passwords, tokens, emails, phone numbers and tax ids it used: none
//! may appear. The test client's own logs are left out (it is not the server).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};

use common::{Database, PIN, Server, new_key};
use reqwest::Method;
use serde_json::json;

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_secret_or_personal_is_logged() {
    let captured = Captured::default();
    let writer = captured.clone();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(
            "debug,reqwest=off,hyper_util::client=off",
        ))
        .json()
        .with_writer(move || writer.clone())
        .init();

    let s = Server::start(Database::Sqlite).await;
    let (_, alice, alice_refresh) = s.user("alice.secret@example.com").await;
    let (_, bob, _) = s.user("bob.secret@example.com").await;
    let a = s.wallet(&alice, "USD").await;
    let b = s.wallet(&bob, "USD").await;
    s.money(
        &format!("/v1/wallets/{a}/deposits"),
        &alice,
        &new_key(),
        json!({ "amount": 7_777, "currency": "USD", "reference": "memo-secret" }),
    )
    .await;
    s.money(
        &format!("/v1/wallets/{a}/transfers"),
        &alice,
        &new_key(),
        json!({ "to_wallet_id": b, "amount": 1_234, "currency": "USD", "pin": PIN, "memo": "memo-secret" }),
    )
    .await;
    s.money(
        &format!("/v1/wallets/{a}/withdrawals"),
        &alice,
        &new_key(),
        json!({ "amount": 1, "currency": "USD", "pin": "135246" }),
    )
    .await;
    s.post(
        "/v1/auth/login",
        None,
        json!({ "email": "alice.secret@example.com", "password": "a wrong password here" }),
    )
    .await;
    let (_, refreshed) = s
        .post(
            "/v1/auth/refresh",
            None,
            json!({ "refresh_token": alice_refresh }),
        )
        .await;
    s.call(
        Method::POST,
        "/v1/auth/logout",
        Some(refreshed["access_token"].as_str().unwrap()),
        None,
        &[],
    )
    .await;
    // Malformed bodies carrying secrets: refused, and the refusal logs no values.
    s.call(
        Method::POST,
        &format!("/v1/wallets/{a}/withdrawals"),
        Some(&alice),
        Some(json!({ "amount": 1, "currency": "USD", "pin": 493_817 })),
        &[("idempotency-key", &new_key())],
    )
    .await;
    s.stop().await;

    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.contains("coffer::audit"),
        "the scan sees the server's logs"
    );
    assert!(logs.lines().count() > 20, "{logs}");
    let lower = logs.to_lowercase();
    for needle in [
        PIN,
        "135246",
        common::PASSWORD,
        "a wrong password here",
        "alice.secret",
        "bob.secret",
        "442079460958",
        "de123456789",
        "memo-secret",
        &alice[alice.len() - 40..],
        &alice_refresh[5..],
        refreshed["access_token"].as_str().unwrap(),
        refreshed["refresh_token"].as_str().unwrap(),
    ] {
        assert!(
            !lower.contains(&needle.to_lowercase()),
            "{needle} appears in the logs"
        );
    }
}
