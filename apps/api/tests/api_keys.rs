//! API keys over HTTP: an administrator creates a key for a service account; the key works as a
//! bearer token and in `X-API-Key` on any replica, only for the permissions it was given and
//! its owner has; the audit records name it; revoking it ends it on every replica at once; it
//! has its own rate-limit budget; a metrics scraper needs nothing but `system:metrics`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{Database, Server, new_key};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// A request with `key` as a bearer token, or in `X-API-Key` when `header`.
async fn with_key(
    s: &Server,
    method: Method,
    path: &str,
    key: &str,
    header: bool,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let idempotency = new_key();
    let mut headers = vec![("idempotency-key", idempotency.as_str())];
    if header {
        headers.push(("x-api-key", key));
        s.call(method, path, None, body, &headers).await
    } else {
        s.call(method, path, Some(key), body, &headers).await
    }
}

async fn create_key(s: &Server, admin: &str, body: Value) -> (StatusCode, Value) {
    s.post("/v1/admin/api-keys", Some(admin), body).await
}

#[tokio::test]
async fn a_key_does_what_it_was_granted_and_stops_on_every_replica_when_revoked() {
    let a = Server::start(Database::Postgres).await;
    let b = a.replica().await;
    let admin = a.admin("root@example.com").await;
    let (svc, svc_token, _) = a.user("payouts@example.com").await;
    let wallet = a.wallet(&svc_token, "USD").await;

    // A key is never more than its owner, and only administrators make them.
    let (st, p) = create_key(
        &a,
        &admin,
        json!({ "user_id": svc, "name": "payouts", "permissions": ["system:metrics"] }),
    )
    .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{p}");
    assert_eq!(p["field"], "permissions", "{p}");
    let body = json!({
        "user_id": svc, "name": "payouts", "permissions": ["wallet:read", "wallet:deposit"],
        "expires_in_days": 30
    });
    let (st, _) = create_key(&a, &svc_token, body.clone()).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, created) = create_key(&a, &admin, body).await;
    assert_eq!(st, StatusCode::CREATED, "{created}");
    let key = created["secret"].as_str().unwrap().to_owned();
    let id = created["api_key"]["id"].as_str().unwrap().to_owned();
    assert!(key.starts_with("ck_live_"), "{key}");
    assert_eq!(
        created["api_key"]["permissions"],
        json!(["wallet:read", "wallet:deposit"])
    );

    // Both ways of sending it, on the other replica; granted permissions only.
    for header in [false, true] {
        let (st, w) = with_key(
            &b,
            Method::GET,
            &format!("/v1/wallets/{wallet}"),
            &key,
            header,
            None,
        )
        .await;
        assert_eq!(st, StatusCode::OK, "{w}");
    }
    let deposit = json!({ "amount": 500, "currency": "USD" });
    let (st, d) = with_key(
        &b,
        Method::POST,
        &format!("/v1/wallets/{wallet}/deposits"),
        &key,
        true,
        Some(deposit),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{d}");
    let withdrawal = json!({ "amount": 100, "currency": "USD", "pin": common::PIN });
    let (st, p) = with_key(
        &b,
        Method::POST,
        &format!("/v1/wallets/{wallet}/withdrawals"),
        &key,
        false,
        Some(withdrawal),
    )
    .await;
    assert_eq!(
        (st, p["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("forbidden")),
        "{p}"
    );
    let (st, me) = with_key(&b, Method::GET, "/v1/me", &key, false, None).await;
    assert_eq!(st, StatusCode::OK, "{me}");
    assert_eq!(me["api_key_id"], id.as_str());
    assert_eq!(me["permissions"], json!(["wallet:read", "wallet:deposit"]));
    // A key has no session to end.
    let (st, p) = with_key(&b, Method::POST, "/v1/auth/logout", &key, false, None).await;
    assert_eq!(
        (st, p["code"].as_str()),
        (StatusCode::CONFLICT, Some("api_key_credential"))
    );

    // The deposit's audit record names the key.
    let (st, audit) = a.get("/v1/admin/audit?limit=200", &admin).await;
    assert_eq!(st, StatusCode::OK);
    let record = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "transaction.deposit")
        .unwrap_or_else(|| panic!("no deposit record: {audit}"));
    assert_eq!(
        record["details"]["api_key"]["code"],
        id.as_str(),
        "{record}"
    );

    // Listed without its secret.
    let (st, listed) = a
        .get(&format!("/v1/admin/api-keys?user_id={svc}"), &admin)
        .await;
    assert_eq!(st, StatusCode::OK, "{listed}");
    assert_eq!(
        listed["items"].as_array().map(Vec::len),
        Some(1),
        "{listed}"
    );
    assert!(
        !listed.to_string().contains(&key[8..]),
        "a listing shows the secret"
    );

    // Revoked on one replica: refused on the other at once.
    let (st, _) = a
        .call(
            Method::DELETE,
            &format!("/v1/admin/api-keys/{id}"),
            Some(&admin),
            None,
            &[],
        )
        .await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let (st, p) = with_key(
        &b,
        Method::GET,
        &format!("/v1/wallets/{wallet}"),
        &key,
        true,
        None,
    )
    .await;
    assert_eq!(
        (st, p["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("revoked")),
        "{p}"
    );
    let (st, k) = b.get(&format!("/v1/admin/api-keys/{id}"), &admin).await;
    assert_eq!(st, StatusCode::OK);
    assert!(k["revoked_at"].is_string(), "{k}");
    let unknown = format!("ck_live_{}", "A".repeat(43));
    let (st, p) = with_key(&b, Method::GET, "/v1/me", &unknown, false, None).await;
    assert_eq!(
        (st, p["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("invalid_api_key"))
    );
    b.stop().await;
    a.stop().await;
}

#[tokio::test]
async fn a_key_has_its_own_budget_and_a_scraper_needs_only_metrics() {
    let s = Server::start_with(Database::Sqlite, |c| c.rate_limit.enabled = true).await;
    let admin = s.admin("root@example.com").await;
    let (scraper, _, _) = s.user("prometheus@example.com").await;
    // The scraper's account holds the admin role; its key only reads metrics.
    let scraper_id = coffer_auth::user::UserId::parse(&scraper).unwrap();
    s.app_state
        .accounts
        .set_roles(
            coffer_auth::user::UserId::from_uuid(uuid::Uuid::nil()),
            scraper_id,
            &["admin".to_owned()],
            &coffer_auth::accounts::RequestContext::default(),
        )
        .await
        .unwrap();
    let (st, created) = create_key(
        &s,
        &admin,
        json!({ "user_id": scraper, "name": "prometheus", "permissions": ["system:metrics"],
                "rate_limit_per_minute": 5 }),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{created}");
    let key = created["secret"].as_str().unwrap().to_owned();
    let metrics = s
        .client
        .get(format!("{}/metrics", s.base))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(metrics.status(), StatusCode::OK);
    assert!(metrics.text().await.unwrap().contains("# TYPE"));
    for path in ["/v1/admin/audit", "/v1/admin/api-keys", "/v1/admin/keys"] {
        let (st, p) = with_key(&s, Method::GET, path, &key, true, None).await;
        assert_eq!(st, StatusCode::FORBIDDEN, "{path}: {p}");
    }
    // A key that may administer users still makes no keys.
    let (st, ops) = create_key(
        &s,
        &admin,
        json!({ "user_id": scraper, "name": "ops", "permissions": ["user:admin"] }),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{ops}");
    let body = json!({ "user_id": scraper, "name": "more", "permissions": ["system:metrics"] });
    let (st, p) = with_key(
        &s,
        Method::POST,
        "/v1/admin/api-keys",
        ops["secret"].as_str().unwrap(),
        false,
        Some(body),
    )
    .await;
    assert_eq!(
        (st, p["code"].as_str()),
        (StatusCode::CONFLICT, Some("api_key_credential")),
        "{p}"
    );
    // Five requests a minute (four spent above), then 429 naming the key's budget; the
    // administrator's own budget is untouched.
    let (st, p) = with_key(&s, Method::GET, "/v1/me", &key, true, None).await;
    assert_eq!(st, StatusCode::OK, "{p}");
    let (st, p) = with_key(&s, Method::GET, "/v1/me", &key, true, None).await;
    assert_eq!(st, StatusCode::TOO_MANY_REQUESTS, "{p}");
    assert!(
        p["detail"]
            .as_str()
            .unwrap()
            .starts_with("the api_key limit is 5 per 60 s"),
        "{p}"
    );
    let (st, _) = s.get("/v1/admin/api-keys", &admin).await;
    assert_eq!(st, StatusCode::OK);
    s.stop().await;
}
