//! Webhook endpoints over HTTP, on both databases: only `webhook:admin` manages them; the
//! secret is shown once; events reach a real receiver on loopback (allowed here by
//! `events.allow_private_addresses`), signed, in order, filtered by type; failures are listed
//! with their status and can be sent again; a rotated secret signs beside the old one; a test
//! message; bad URLs and types are 422s with their codes; a deleted endpoint is a 404.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::{Arc, Mutex};

use axum::http::{HeaderMap, StatusCode as AxumStatus};
use coffer_webhooks::SigningSecret;
use common::{Database, Server, new_key};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// The requests a receiver got: headers and body.
type Log = Arc<Mutex<Vec<(HeaderMap, Vec<u8>)>>>;

/// A receiver on loopback: records every request, answers `status` (changeable).
#[derive(Clone)]
struct Receiver {
    got: Log,
    status: Arc<Mutex<u16>>,
    url: String,
}

impl Receiver {
    async fn start() -> Self {
        let got: Log = Arc::default();
        let status = Arc::new(Mutex::new(200));
        let (log, answer) = (got.clone(), status.clone());
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |headers: HeaderMap, body: axum::body::Bytes| {
                let (log, answer) = (log.clone(), answer.clone());
                async move {
                    log.lock().unwrap().push((headers, body.to_vec()));
                    AxumStatus::from_u16(*answer.lock().unwrap()).unwrap()
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { got, status, url }
    }

    fn answer(&self, status: u16) {
        *self.status.lock().unwrap() = status;
    }

    fn bodies(&self) -> Vec<Value> {
        self.got
            .lock()
            .unwrap()
            .iter()
            .map(|(_, b)| serde_json::from_slice(b).unwrap())
            .collect()
    }

    /// Every request's signatures verify with `secret`.
    fn all_signed_by(&self, secret: &str) -> bool {
        let secret = SigningSecret::parse(secret).unwrap();
        self.got
            .lock()
            .unwrap()
            .iter()
            .all(|(h, body)| signed(h, body, &secret))
    }
}

/// Whether one of the `webhook-signature` entries is `secret`'s over id, timestamp and body.
fn signed(h: &HeaderMap, body: &[u8], secret: &SigningSecret) -> bool {
    let id = h["webhook-id"].to_str().unwrap();
    let ts: i64 = h["webhook-timestamp"].to_str().unwrap().parse().unwrap();
    let expect = secret.sign(id, ts, body);
    h["webhook-signature"]
        .to_str()
        .unwrap()
        .split(' ')
        .any(|s| s == expect)
}

async fn server(db: Database) -> Server {
    Server::start_with(db, |c| {
        c.events.allow_private_addresses = true;
        c.events.allow_http = true;
    })
    .await
}

/// Runs delivery rounds until there is nothing left to do.
async fn deliver(s: &Server) {
    coffer_outbox::testkit::drain(&s.outbox).await;
}

async fn deposit(s: &Server, user: &str, wallet: &str, amount: i64) {
    let (st, b) = s
        .money(
            &format!("/v1/wallets/{wallet}/deposits"),
            user,
            &new_key(),
            json!({ "amount": amount, "currency": "USD" }),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{b}");
}

async fn call(
    s: &Server,
    method: Method,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    s.call(method, path, Some(token), body, &[]).await
}

async fn endpoints_and_deliveries(db: Database) {
    let s = server(db).await;
    let receiver = Receiver::start().await;
    let admin = s.admin("root@example.com").await;
    let (_, user, _) = s.user("alice@example.com").await;

    // Only webhook:admin.
    for (method, path) in [
        (Method::GET, "/v1/admin/webhooks".to_owned()),
        (Method::POST, "/v1/admin/webhooks".to_owned()),
        (Method::GET, format!("/v1/admin/webhooks/{}", new_key())),
    ] {
        let body = (method == Method::POST).then(|| json!({ "url": receiver.url }));
        let (st, p) = call(&s, method, &path, &user, body).await;
        assert_eq!(st, StatusCode::FORBIDDEN, "{path}: {p}");
    }
    // Bad input: a typed 422 each.
    for (body, code) in [
        (
            json!({ "url": "ftp://h.example/x" }),
            "url_scheme_not_allowed",
        ),
        (
            json!({ "url": "https://u:p@h.example/x" }),
            "url_credentials_not_allowed",
        ),
        (json!({ "url": "not a url" }), "invalid_url"),
    ] {
        let (st, p) = call(&s, Method::POST, "/v1/admin/webhooks", &admin, Some(body)).await;
        assert_eq!(
            (st, p["code"].as_str()),
            (StatusCode::UNPROCESSABLE_ENTITY, Some(code)),
            "{p}"
        );
    }
    let (st, p) = call(
        &s,
        Method::POST,
        "/v1/admin/webhooks",
        &admin,
        Some(json!({ "url": receiver.url, "event_types": ["transaction.posted", "nope"] })),
    )
    .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{p}");
    assert_eq!(p["field"], "event_types", "{p}");

    // Registered: the secret once, never again.
    let (st, created) = call(
        &s,
        Method::POST,
        "/v1/admin/webhooks",
        &admin,
        Some(json!({ "url": receiver.url, "event_types": ["transaction.posted"] })),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{created}");
    let secret = created["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("whsec_"), "{secret}");
    let id = created["webhook"]["id"].as_str().unwrap().to_owned();
    let path = format!("/v1/admin/webhooks/{id}");
    let (st, listed) = call(&s, Method::GET, "/v1/admin/webhooks", &admin, None).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(listed["items"][0]["id"], id.as_str());
    assert!(
        !listed.to_string().contains(&secret[6..]),
        "no secret in a listing"
    );
    assert_eq!(
        listed["items"][0]["event_types"],
        json!(["transaction.posted"])
    );

    // Money moves: each transaction.posted arrives signed, in order; wallet.opened is filtered.
    let wallet = s.wallet(&user, "USD").await;
    for amount in [100, 200] {
        deposit(&s, &user, &wallet, amount).await;
    }
    deliver(&s).await;
    let bodies = receiver.bodies();
    assert_eq!(bodies.len(), 2, "{bodies:?}");
    assert!(bodies.iter().all(|b| b["type"] == "transaction.posted"));
    assert_eq!(bodies[0]["data"]["amount_minor"], 100);
    assert_eq!(bodies[1]["data"]["balance_minor"], 300);
    assert_eq!(bodies[1]["data"]["sequence"], 3);
    assert!(receiver.all_signed_by(&secret));

    // A failing receiver: listed with its status; sent again on request.
    receiver.answer(503);
    deposit(&s, &user, &wallet, 5).await;
    deliver(&s).await;
    let (st, page) = call(
        &s,
        Method::GET,
        &format!("{path}/deliveries?limit=2"),
        &admin,
        None,
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{page}");
    let failed = &page["items"][0];
    assert_eq!(
        (failed["outcome"].as_str(), failed["status_code"].as_u64()),
        (Some("failed"), Some(503)),
        "{page}"
    );
    assert_eq!(page["items"][1]["outcome"], "delivered");
    assert!(page["next_cursor"].is_string());
    receiver.answer(204);
    let (st, again) = call(
        &s,
        Method::POST,
        &format!("{path}/deliveries/{}/retry", failed["id"].as_str().unwrap()),
        &admin,
        None,
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{again}");
    assert_eq!(
        (again["outcome"].as_str(), again["status_code"].as_u64()),
        (Some("delivered"), Some(204))
    );
    assert_eq!(
        again["event_id"], failed["event_id"],
        "the same event, the same webhook-id"
    );
    let (st, p) = call(
        &s,
        Method::POST,
        &format!("{path}/deliveries/{}/retry", new_key()),
        &admin,
        None,
    )
    .await;
    assert_eq!(
        (st, p["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("delivery_not_found"))
    );

    // A rotated secret signs beside the old one; a test message shows it.
    let (st, rotated) = call(
        &s,
        Method::POST,
        &format!("{path}/rotate-secret"),
        &admin,
        None,
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{rotated}");
    let new_secret = rotated["secret"].as_str().unwrap().to_owned();
    assert_ne!(new_secret, secret);
    assert_eq!(rotated["webhook"]["secret_version"], 2);
    let (st, test) = call(&s, Method::POST, &format!("{path}/test"), &admin, None).await;
    assert_eq!(st, StatusCode::OK, "{test}");
    assert_eq!(
        (test["delivered"].as_bool(), test["status_code"].as_u64()),
        (Some(true), Some(204))
    );
    let last = receiver.got.lock().unwrap().last().cloned().unwrap();
    assert_eq!(
        serde_json::from_slice::<Value>(&last.1).unwrap()["type"],
        "webhook.test"
    );
    for key in [&secret, &new_secret] {
        assert!(signed(
            &last.0,
            &last.1,
            &SigningSecret::parse(key).unwrap()
        ));
    }

    // Changes: disabled, nothing is delivered; enabled, what waited follows.
    let (st, w) = call(
        &s,
        Method::PATCH,
        &path,
        &admin,
        Some(json!({ "enabled": false })),
    )
    .await;
    assert_eq!(
        (st, w["enabled"].as_bool()),
        (StatusCode::OK, Some(false)),
        "{w}"
    );
    let before = receiver.bodies().len();
    deposit(&s, &user, &wallet, 7).await;
    deliver(&s).await;
    assert_eq!(receiver.bodies().len(), before);
    let (st, p) = call(
        &s,
        Method::PATCH,
        &path,
        &admin,
        Some(json!({ "url": "gopher://x" })),
    )
    .await;
    assert_eq!(
        (st, p["code"].as_str()),
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("url_scheme_not_allowed")
        )
    );
    call(
        &s,
        Method::PATCH,
        &path,
        &admin,
        Some(json!({ "enabled": true })),
    )
    .await;
    deliver(&s).await;
    let bodies = receiver.bodies();
    assert_eq!(
        bodies.last().unwrap()["data"]["amount_minor"],
        7,
        "{bodies:?}"
    );

    // Removed: a 404 from then on.
    let (st, _) = call(&s, Method::DELETE, &path, &admin, None).await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    for (method, p) in [
        (Method::GET, path.clone()),
        (Method::DELETE, path.clone()),
        (Method::POST, format!("{path}/test")),
        (Method::GET, format!("{path}/deliveries")),
        (Method::GET, "/v1/admin/webhooks/not-an-id".to_owned()),
    ] {
        let (st, body) = call(&s, method, &p, &admin, None).await;
        assert_eq!(
            (st, body["code"].as_str()),
            (StatusCode::NOT_FOUND, Some("webhook_not_found")),
            "{p}"
        );
    }
}

#[tokio::test]
async fn webhook_endpoints_and_deliveries_on_sqlite() {
    endpoints_and_deliveries(Database::Sqlite).await;
}

#[tokio::test]
async fn webhook_endpoints_and_deliveries_on_postgres() {
    endpoints_and_deliveries(Database::Postgres).await;
}

/// By default a deployment refuses plain http endpoints, and deliveries to loopback fail as
/// `address_refused` without a request leaving.
#[tokio::test]
async fn by_default_http_and_private_addresses_are_refused() {
    let s = Server::start(Database::Sqlite).await;
    let receiver = Receiver::start().await;
    let admin = s.admin("root@example.com").await;
    let (st, p) = call(
        &s,
        Method::POST,
        "/v1/admin/webhooks",
        &admin,
        Some(json!({ "url": receiver.url })),
    )
    .await;
    assert_eq!(
        (st, p["code"].as_str()),
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("url_scheme_not_allowed")
        )
    );
    let https = receiver.url.replace("http://", "https://");
    let (st, created) = call(
        &s,
        Method::POST,
        "/v1/admin/webhooks",
        &admin,
        Some(json!({ "url": https })),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{created}");
    let id = created["webhook"]["id"].as_str().unwrap();
    let (st, test) = call(
        &s,
        Method::POST,
        &format!("/v1/admin/webhooks/{id}/test"),
        &admin,
        None,
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(
        (test["delivered"].as_bool(), test["error"].as_str()),
        (Some(false), Some("address_refused"))
    );
    assert!(receiver.got.lock().unwrap().is_empty());
}
