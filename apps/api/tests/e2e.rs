//! End to end over HTTP, against SQLite and against Postgres: a user's journey, the IDOR matrix,
//! the permission matrix, idempotency, and every refusal a client can provoke, each a 4xx
//! problem with its code and never a 5xx (the client helper asserts that on every call).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{Database, PASSWORD, PIN, Server, new_key};
use reqwest::{Method, StatusCode};
use serde_json::json;

async fn journey(db: Database) {
    let s = Server::start(db).await;
    let (alice_id, alice, alice_refresh) = s.user("alice@example.com").await;
    let (_, bob, _) = s.user("bob@example.com").await;

    let (st, me) = s.get("/v1/me", &alice).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(me["user_id"], alice_id.as_str());
    assert_eq!(me["email"], "alice@example.com");
    assert_eq!(me["roles"], json!(["user"]));
    assert!(
        me["permissions"]
            .as_array()
            .unwrap()
            .contains(&json!("wallet:transfer"))
    );

    let a = s.wallet(&alice, "USD").await;
    let b = s.wallet(&bob, "USD").await;
    let (st, w) = s.get(&format!("/v1/wallets/{a}"), &alice).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(
        (w["balance"].as_i64(), w["currency"].as_str()),
        (Some(0), Some("USD"))
    );
    assert_eq!(w["owner_id"], alice_id.as_str());

    // Deposit, replayed with the same key: the same status and body; another body: 409.
    let key = new_key();
    let body = json!({ "amount": 10_000, "currency": "USD", "reference": "payday" });
    let first = s
        .money(
            &format!("/v1/wallets/{a}/deposits"),
            &alice,
            &key,
            body.clone(),
        )
        .await;
    assert_eq!(first.0, StatusCode::CREATED, "{}", first.1);
    let replay = s
        .money(&format!("/v1/wallets/{a}/deposits"), &alice, &key, body)
        .await;
    assert_eq!(replay, first, "a replay answers as the first time");
    let (st, p) = s
        .money(
            &format!("/v1/wallets/{a}/deposits"),
            &alice,
            &key,
            json!({ "amount": 1, "currency": "USD" }),
        )
        .await;
    assert_eq!(
        (st, p["code"].as_str()),
        (StatusCode::CONFLICT, Some("idempotency_conflict"))
    );

    // Transfer, with the signature the history shows.
    let (st, t) = s
        .money(
            &format!("/v1/wallets/{a}/transfers"),
            &alice,
            &new_key(),
            json!({ "to_wallet_id": b, "amount": 2_500, "currency": "USD", "pin": PIN, "memo": "rent" }),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{t}");
    assert_eq!(t["kind"], "transfer");
    assert!(t["signature"].is_string() && t["public_key"].is_string());
    let (st, w) = s.get(&format!("/v1/wallets/{b}"), &bob).await;
    assert_eq!((st, w["balance"].as_i64()), (StatusCode::OK, Some(2_500)));

    let (st, w) = s
        .money(
            &format!("/v1/wallets/{a}/withdrawals"),
            &alice,
            &new_key(),
            json!({ "amount": 500, "currency": "USD", "pin": PIN }),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{w}");

    let (st, h) = s
        .get(&format!("/v1/wallets/{a}/transactions?limit=2"), &alice)
        .await;
    assert_eq!(st, StatusCode::OK);
    let kinds: Vec<_> = h["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["kind"].clone())
        .collect();
    assert_eq!(
        kinds,
        vec![json!("withdrawal"), json!("transfer")],
        "newest first"
    );
    let cursor = h["next_cursor"].as_str().unwrap();
    let (_, older) = s
        .get(
            &format!("/v1/wallets/{a}/transactions?limit=2&cursor={cursor}"),
            &alice,
        )
        .await;
    assert_eq!(older["items"][0]["kind"], "deposit");
    assert!(older["next_cursor"].is_null());
    let tid = t["id"].as_str().unwrap();
    let (st, one) = s.get(&format!("/v1/transactions/{tid}"), &bob).await;
    assert_eq!(
        (st, one["memo"].as_str()),
        (StatusCode::OK, Some("rent")),
        "the receiver sees it"
    );

    // Refusals with their codes.
    let cases = [
        (
            json!({ "amount": 1_000_000, "currency": "USD", "pin": PIN }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "insufficient_funds",
        ),
        (
            json!({ "amount": 100, "currency": "EUR", "pin": PIN }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "currency_mismatch",
        ),
        (
            json!({ "amount": -5, "currency": "USD", "pin": PIN }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "amount_not_positive",
        ),
        (
            json!({ "amount": 100, "currency": "XYZ", "pin": PIN }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown_currency",
        ),
        (
            json!({ "amount": 100, "currency": "USD", "pin": "12ab" }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
        ),
    ];
    for (body, status, code) in cases {
        let (st, p) = s
            .money(
                &format!("/v1/wallets/{a}/withdrawals"),
                &alice,
                &new_key(),
                body.clone(),
            )
            .await;
        assert_eq!((st, p["code"].as_str()), (status, Some(code)), "{body}");
    }
    let (st, p) = s
        .money(
            &format!("/v1/wallets/{a}/withdrawals"),
            &alice,
            &new_key(),
            json!({ "amount": 1, "currency": "USD", "pin": "000000" }),
        )
        .await;
    assert_eq!(
        (st, p["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("pin_wrong"))
    );
    assert!(p["attempts_left"].as_u64().is_some());
    let (st, p) = s
        .post(
            "/v1/wallets",
            Some(alice.as_str()),
            json!({ "currency": "USD", "pin": "123456" }),
        )
        .await;
    assert_eq!(
        (st, p["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("weak_pin")),
        "a run is too easy a PIN"
    );

    // Refresh; a retry with the same token inside the grace window (a lost response) rotates
    // again, and the response that was "lost", turning up later, ends the whole session.
    let (st, lost) = s
        .post(
            "/v1/auth/refresh",
            None,
            json!({ "refresh_token": alice_refresh }),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{lost}");
    let (st, tokens) = s
        .post(
            "/v1/auth/refresh",
            None,
            json!({ "refresh_token": alice_refresh }),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{tokens}");
    for t in [&lost, &tokens] {
        let (st, p) = s
            .post(
                "/v1/auth/refresh",
                None,
                json!({ "refresh_token": t["refresh_token"] }),
            )
            .await;
        assert_eq!(
            (st, p["code"].as_str()),
            (StatusCode::UNAUTHORIZED, Some("invalid_refresh_token"))
        );
    }
    // Logout: the access token stops working.
    let fresh = tokens["access_token"].as_str().unwrap();
    let (st, _) = s
        .call(Method::POST, "/v1/auth/logout", Some(fresh), None, &[])
        .await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let (st, p) = s.get("/v1/me", fresh).await;
    assert_eq!(
        (st, p["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("revoked"))
    );
    let (st, jwks) = s
        .call(Method::GET, "/.well-known/jwks.json", None, None, &[])
        .await;
    assert_eq!(
        (st, jwks["keys"].as_array().map(Vec::len)),
        (StatusCode::OK, Some(1))
    );
    s.stop().await;
}

/// User B on every route of user A's wallet and transactions: 404, never 403 or data.
async fn idor(db: Database) {
    let s = Server::start(db).await;
    let (_, alice, _) = s.user("alice@example.com").await;
    let (_, bob, _) = s.user("bob@example.com").await;
    let a = s.wallet(&alice, "USD").await;
    let b = s.wallet(&bob, "USD").await;
    let (_, t) = s
        .money(
            &format!("/v1/wallets/{a}/deposits"),
            &alice,
            &new_key(),
            json!({ "amount": 100, "currency": "USD" }),
        )
        .await;
    let tid = t["id"].as_str().unwrap().to_owned();
    let money = json!({ "amount": 1, "currency": "USD", "pin": "111222" });
    let attempts = [
        (Method::GET, format!("/v1/wallets/{a}"), None),
        (Method::GET, format!("/v1/wallets/{a}/transactions"), None),
        (Method::GET, format!("/v1/transactions/{tid}"), None),
        (
            Method::POST,
            format!("/v1/wallets/{a}/deposits"),
            Some(json!({ "amount": 1, "currency": "USD" })),
        ),
        (
            Method::POST,
            format!("/v1/wallets/{a}/withdrawals"),
            Some(money.clone()),
        ),
        (
            Method::POST,
            format!("/v1/wallets/{a}/transfers"),
            Some(json!({ "to_wallet_id": b, "amount": 1, "currency": "USD", "pin": "111222" })),
        ),
        (
            Method::PUT,
            format!("/v1/wallets/{a}/pin"),
            Some(json!({ "old_pin": "111222", "new_pin": "333444" })),
        ),
    ];
    for (method, path, body) in attempts {
        let key = new_key();
        let (st, p) = s
            .call(
                method.clone(),
                &path,
                Some(&bob),
                body,
                &[("idempotency-key", &key)],
            )
            .await;
        assert_eq!(st, StatusCode::NOT_FOUND, "{method} {path}: {p}");
    }
    let (_, w) = s.get(&format!("/v1/wallets/{a}"), &alice).await;
    assert_eq!(w["balance"], 100, "nothing moved");
    assert_eq!(
        w["failed_pins"], 0,
        "bob's guesses did not count against alice's PIN"
    );
    let (_, list) = s.get("/v1/wallets", &bob).await;
    assert_eq!(
        list["items"].as_array().unwrap().len(),
        1,
        "bob lists only his own"
    );
    // Pages: a full page hands out a cursor; a bad limit or cursor is a 422.
    let (_, page) = s.get("/v1/wallets?limit=1", &bob).await;
    let cursor = page["next_cursor"].as_str().unwrap().to_owned();
    let (st, rest) = s
        .get(&format!("/v1/wallets?limit=1&cursor={cursor}"), &bob)
        .await;
    assert_eq!(
        (
            st,
            rest["items"].as_array().map(Vec::len),
            rest["next_cursor"].is_null()
        ),
        (StatusCode::OK, Some(0), true)
    );
    for query in ["limit=0", "limit=201", "cursor=nope", "colour=blue"] {
        let (st, p) = s.get(&format!("/v1/wallets?{query}"), &bob).await;
        assert_eq!(
            (st, p["code"].as_str()),
            (StatusCode::UNPROCESSABLE_ENTITY, Some("invalid_request")),
            "{query}"
        );
    }
    s.stop().await;
}

/// Admins administer and never move money; users never administer.
async fn permissions(db: Database) {
    let s = Server::start(db).await;
    let (alice_id, alice, _) = s.user("alice@example.com").await;
    let admin = s.admin("root@example.com").await;
    let a = s.wallet(&alice, "USD").await;
    let (_, t) = s
        .money(
            &format!("/v1/wallets/{a}/deposits"),
            &alice,
            &new_key(),
            json!({ "amount": 100, "currency": "USD" }),
        )
        .await;
    let tid = t["id"].as_str().unwrap().to_owned();

    for (method, path, body) in [
        (
            Method::POST,
            format!("/v1/wallets/{a}/deposits"),
            json!({ "amount": 1, "currency": "USD" }),
        ),
        (
            Method::POST,
            format!("/v1/wallets/{a}/transfers"),
            json!({ "to_wallet_id": a, "amount": 1, "currency": "USD", "pin": PIN }),
        ),
        (
            Method::POST,
            "/v1/wallets".to_owned(),
            json!({ "currency": "USD", "pin": PIN }),
        ),
    ] {
        let (st, p) = s
            .call(
                method,
                &path,
                Some(&admin),
                Some(body),
                &[("idempotency-key", &new_key())],
            )
            .await;
        assert_eq!(
            (st, p["code"].as_str()),
            (StatusCode::FORBIDDEN, Some("forbidden")),
            "admin {path}"
        );
    }
    for (path, body) in [
        (
            format!("/v1/admin/wallets/{a}/freeze"),
            json!({ "reason": "x" }),
        ),
        (
            format!("/v1/admin/transactions/{tid}/reversal"),
            json!({ "reason": "x" }),
        ),
        (
            format!("/v1/admin/users/{alice_id}/roles"),
            json!({ "roles": ["admin"] }),
        ),
    ] {
        let (st, p) = s
            .call(
                Method::POST,
                &path,
                Some(&alice),
                Some(body),
                &[("idempotency-key", &new_key())],
            )
            .await;
        assert_eq!(
            (st, p["code"].as_str()),
            (StatusCode::FORBIDDEN, Some("forbidden")),
            "user {path}"
        );
    }
    let (st, _) = s.get("/v1/admin/audit", &alice).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, _) = s.get("/v1/admin/keys", &alice).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, _) = s
        .post("/v1/admin/keys/rotate", Some(&alice), json!({}))
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN);

    // Key rotation: requested by an admin (202), answered with the same job while it is open
    // (200), shown with its progress by GET /v1/admin/keys; a worker runs it.
    let (st, keys) = s.get("/v1/admin/keys", &admin).await;
    assert_eq!(st, StatusCode::OK, "{keys}");
    assert_eq!(keys["provider"], "local");
    assert_eq!(keys["active_version"], 1);
    assert_eq!(keys["stale"], 0);
    assert!(keys["open_job"].is_null());
    let (st, first) = s
        .post(
            "/v1/admin/keys/rotate",
            Some(&admin),
            json!({ "retire": true }),
        )
        .await;
    assert_eq!(st, StatusCode::ACCEPTED, "{first}");
    assert_eq!(first["created"], true);
    assert_eq!(first["job"]["state"], "requested");
    assert!(
        first["job"]["requested_by"]
            .as_str()
            .unwrap()
            .starts_with("admin:")
    );
    let (st, again) = s
        .post("/v1/admin/keys/rotate", Some(&admin), json!({}))
        .await;
    assert_eq!(st, StatusCode::OK, "{again}");
    assert_eq!(again["created"], false);
    assert_eq!(again["job"]["id"], first["job"]["id"]);
    let (st, unknown) = s
        .post(
            "/v1/admin/keys/rotate",
            Some(&admin),
            json!({ "now": true }),
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{unknown}");
    let (_, keys) = s.get("/v1/admin/keys", &admin).await;
    assert_eq!(keys["open_job"]["id"], first["job"]["id"]);

    // What admins may do: read any wallet, freeze (money stops both ways... out), reverse, audit.
    let (st, w) = s.get(&format!("/v1/wallets/{a}"), &admin).await;
    assert_eq!((st, w["balance"].as_i64()), (StatusCode::OK, Some(100)));
    let (st, w) = s
        .post(
            &format!("/v1/admin/wallets/{a}/freeze"),
            Some(&admin),
            json!({ "reason": "review" }),
        )
        .await;
    assert_eq!((st, w["status"].as_str()), (StatusCode::OK, Some("frozen")));
    let (st, p) = s
        .money(
            &format!("/v1/wallets/{a}/withdrawals"),
            &alice,
            &new_key(),
            json!({ "amount": 1, "currency": "USD", "pin": PIN }),
        )
        .await;
    assert_eq!(
        (st, p["code"].as_str()),
        (StatusCode::CONFLICT, Some("wallet_frozen"))
    );
    let (st, _) = s
        .post(
            &format!("/v1/admin/wallets/{a}/unfreeze"),
            Some(&admin),
            json!({}),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let (st, r) = s
        .money(
            &format!("/v1/admin/transactions/{tid}/reversal"),
            &admin,
            &new_key(),
            json!({ "reason": "chargeback" }),
        )
        .await;
    assert_eq!(
        (st, r["kind"].as_str()),
        (StatusCode::CREATED, Some("reversal")),
        "{r}"
    );
    let (st, p) = s
        .money(
            &format!("/v1/admin/transactions/{tid}/reversal"),
            &admin,
            &new_key(),
            json!({ "reason": "chargeback" }),
        )
        .await;
    assert_eq!(
        (st, p["code"].as_str()),
        (StatusCode::CONFLICT, Some("already_reversed"))
    );
    let (st, c) = s
        .post(
            &format!("/v1/admin/wallets/{a}/close"),
            Some(&admin),
            json!({}),
        )
        .await;
    assert_eq!(
        (st, c["status"].as_str()),
        (StatusCode::OK, Some("closed")),
        "{c}"
    );
    let (st, p) = s
        .money(
            &format!("/v1/wallets/{a}/deposits"),
            &alice,
            &new_key(),
            json!({ "amount": 1, "currency": "USD" }),
        )
        .await;
    assert_eq!(
        (st, p["code"].as_str()),
        (StatusCode::CONFLICT, Some("wallet_closed"))
    );
    let (st, audit) = s.get("/v1/admin/audit?limit=50", &admin).await;
    assert_eq!(st, StatusCode::OK);
    assert!(!audit["items"].as_array().unwrap().is_empty());
    // Six wrong passwords for one account raise the failed-logins alert, which /metrics counts.
    for _ in 0..6 {
        let (st, _) = s
            .post(
                "/v1/auth/login",
                None,
                json!({ "email": "nobody-in-particular@example.com", "password": "not the password at all" }),
            )
            .await;
        assert_eq!(st, StatusCode::UNAUTHORIZED);
    }
    // Metrics: admins only; requests, money operations, key provider and cache figures.
    let scrape = |token: &str| {
        s.client
            .get(format!("{}/metrics", s.base))
            .bearer_auth(token)
            .send()
    };
    assert_eq!(
        scrape(&alice).await.unwrap().status(),
        StatusCode::FORBIDDEN
    );
    let text = scrape(&admin).await.unwrap().text().await.unwrap();
    for line in [
        "coffer_http_requests_total{route=\"/v1/wallets/{id}/deposits\",method=\"POST\",status=\"201\"}",
        "coffer_ledger_operations_total{kind=\"deposit\",outcome=\"ok\"}",
        "coffer_key_provider_calls{provider=\"local\",operation=\"generate_data_key\"}",
        "coffer_key_provider_errors{provider=\"local\",operation=\"unwrap_data_key\",kind=\"corrupt\"} 0",
        "coffer_decryption_failures 0",
        "coffer_data_key_cache_hit_ratio",
        "coffer_pin_kdf_queue_depth",
        "coffer_security_alerts{rule=\"failed_logins\"}",
    ] {
        assert!(text.contains(line), "{line} missing from:\n{text}");
    }
    assert!(!text.contains(&a), "paths (ids) never become labels");
    let (st, v) = s.get("/v1/admin/audit/verify", &admin).await;
    assert_eq!((st, v["ok"].as_bool()), (StatusCode::OK, Some(true)), "{v}");
    // Role changes take effect at once: alice, made admin, must refresh into the new roles.
    let (st, _) = s
        .post(
            &format!("/v1/admin/users/{alice_id}/roles"),
            Some(&admin),
            json!({ "roles": ["user", "admin"] }),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let (st, p) = s.get("/v1/me", &alice).await;
    assert_eq!(
        (st, p["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("user_revoked"))
    );
    s.stop().await;
}

/// Malformed requests: each a 4xx problem with its code.
async fn bad_requests(db: Database) {
    let s = Server::start(db).await;
    let (_, alice, _) = s.user("alice@example.com").await;
    let a = s.wallet(&alice, "USD").await;
    let deposits = format!("/v1/wallets/{a}/deposits");
    let raw = |body: &'static str, content_type: &'static str, key: bool| {
        let mut req = s
            .client
            .post(format!("{}{deposits}", s.base))
            .bearer_auth(&alice)
            .header("content-type", content_type)
            .body(body);
        if key {
            req = req.header("idempotency-key", new_key());
        }
        req
    };
    let cases: Vec<(reqwest::RequestBuilder, StatusCode, &str)> = vec![
        (
            raw("{\"amount\": 1,", "application/json", true),
            StatusCode::BAD_REQUEST,
            "malformed_json",
        ),
        (
            raw(
                "{\"amount\": 1, \"currency\": \"USD\", \"extra\": 1}",
                "application/json",
                true,
            ),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
        ),
        (
            raw(
                "{\"amount\": 99999999999999999999, \"currency\": \"USD\"}",
                "application/json",
                true,
            ),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
        ),
        (
            raw(
                "{\"amount\": \"ten\", \"currency\": \"USD\"}",
                "application/json",
                true,
            ),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
        ),
        (
            raw("{\"currency\": \"USD\"}", "application/json", true),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
        ),
        (
            raw("amount=1", "application/x-www-form-urlencoded", true),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        ),
        (
            raw(
                "{\"amount\": 1, \"currency\": \"USD\"}",
                "application/json",
                false,
            ),
            StatusCode::BAD_REQUEST,
            "idempotency_key_required",
        ),
    ];
    for (req, status, code) in cases {
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), status, "{code}");
        assert_eq!(
            resp.headers()["content-type"],
            "application/problem+json",
            "{code}"
        );
        let p: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(p["code"], code);
    }
    let big = format!(
        "{{\"amount\": 1, \"currency\": \"USD\", \"reference\": \"{}\"}}",
        "x".repeat(20_000)
    );
    let resp = s
        .client
        .post(format!("{}{deposits}", s.base))
        .bearer_auth(&alice)
        .header("content-type", "application/json")
        .header("idempotency-key", new_key())
        .body(big)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);

    for (token, code) in [(None, "missing_token"), (Some("not-a-jwt"), "malformed")] {
        let (st, p) = s.call(Method::GET, "/v1/wallets", token, None, &[]).await;
        assert_eq!(
            (st, p["code"].as_str()),
            (StatusCode::UNAUTHORIZED, Some(code))
        );
    }
    let (st, p) = s.get("/v1/nowhere", &alice).await;
    assert_eq!(
        (st, p["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("not_found"))
    );
    let (st, p) = s
        .call(Method::DELETE, "/v1/wallets", Some(&alice), None, &[])
        .await;
    assert_eq!(
        (st, p["code"].as_str()),
        (StatusCode::METHOD_NOT_ALLOWED, Some("method_not_allowed"))
    );
    let (st, p) = s.get("/v1/wallets/not-a-uuid", &alice).await;
    assert_eq!(
        (st, p["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("wallet_not_found"))
    );
    let (st, p) = s
        .post(
            "/v1/auth/login",
            None,
            json!({ "email": "alice@example.com", "password": "wrong password!" }),
        )
        .await;
    assert_eq!(
        (st, p["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("invalid_credentials"))
    );
    let (st, p) = s
        .post(
            "/v1/auth/register",
            None,
            json!({ "email": "ALICE@example.com", "password": PASSWORD }),
        )
        .await;
    assert_eq!(
        (st, p["code"].as_str()),
        (StatusCode::CONFLICT, Some("email_taken"))
    );
    let (st, p) = s
        .post(
            "/v1/auth/register",
            None,
            json!({ "email": "carol@example.com", "password": "short" }),
        )
        .await;
    assert_eq!(
        (st, p["code"].as_str(), p["field"].as_str()),
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("invalid_request"),
            Some("password")
        )
    );

    // The PIN locks after the configured number of wrong guesses.
    let mut locked = false;
    for _ in 0..10 {
        let (st, p) = s
            .money(
                &format!("/v1/wallets/{a}/withdrawals"),
                &alice,
                &new_key(),
                json!({ "amount": 1, "currency": "USD", "pin": "000000" }),
            )
            .await;
        if p["code"] == "pin_locked" {
            assert_eq!(st, StatusCode::LOCKED);
            locked = true;
            break;
        }
        assert_eq!(p["code"], "pin_wrong");
    }
    assert!(locked, "wrong PINs lock the wallet");
    let (st, p) = s
        .money(
            &format!("/v1/wallets/{a}/withdrawals"),
            &alice,
            &new_key(),
            json!({ "amount": 1, "currency": "USD", "pin": PIN }),
        )
        .await;
    assert_eq!(
        (st, p["code"].as_str()),
        (StatusCode::LOCKED, Some("pin_locked")),
        "a locked wallet refuses the right PIN too"
    );
    // Request ids: a well-formed one is echoed, anything else replaced by a generated one.
    for (sent, echoed) in [("req-123.abc", true), ("bad id\twith tab", false)] {
        let resp = s
            .client
            .get(format!("{}/healthz", s.base))
            .header("x-request-id", sent)
            .send()
            .await
            .unwrap();
        let got = resp.headers()["x-request-id"].to_str().unwrap().to_owned();
        assert_eq!(got == sent, echoed, "{sent:?} -> {got:?}");
    }
    // An optional body over the limit is a problem too.
    let resp = s
        .client
        .post(format!("{}/v1/auth/logout", s.base))
        .bearer_auth(&alice)
        .header("content-type", "application/json")
        .body(format!("{{\"refresh_token\": \"{}\"}}", "x".repeat(20_000)))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(resp.headers()["content-type"], "application/problem+json");
    let (st, _) = s.call(Method::GET, "/healthz", None, None, &[]).await;
    assert_eq!(st, StatusCode::OK);
    let (st, r) = s.call(Method::GET, "/readyz", None, None, &[]).await;
    assert_eq!(
        (st, r["status"].as_str()),
        (StatusCode::OK, Some("ready")),
        "{r}"
    );
    let (st, doc) = s.call(Method::GET, "/openapi.json", None, None, &[]).await;
    assert_eq!(
        (st, doc["openapi"].as_str()),
        (StatusCode::OK, Some("3.1.0"))
    );
    let page = s
        .client
        .get(format!("{}/docs", s.base))
        .send()
        .await
        .unwrap();
    assert!(page.status().is_success());
    assert!(page.text().await.unwrap().contains("/openapi.json"));
    s.stop().await;
}

/// The scenarios above, once per database.
macro_rules! on_database {
    ($module:ident, $db:expr) => {
        mod $module {
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn a_users_journey() {
                journey($db).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn another_users_wallet_is_not_found_on_every_route() {
                idor($db).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn admins_administer_and_users_do_not() {
                permissions($db).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn bad_requests_are_problems_with_codes() {
                bad_requests($db).await;
            }
        }
    };
}

on_database!(sqlite, Database::Sqlite);
on_database!(postgres, Database::Postgres);

/// With rate limiting on (the default), a burst of logins from one address is cut off with a
/// 429 problem carrying `Retry-After` and the RateLimit fields; other routes keep answering.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_burst_is_rate_limited() {
    let s = Server::start_with(Database::Sqlite, |c| c.rate_limit.enabled = true).await;
    let mut limited = None;
    for i in 0..20 {
        let resp = s
            .client
            .post(format!("{}/v1/auth/login", s.base))
            // A new email each time: one email's guesses back off sooner (per account).
            .json(&json!({ "email": format!("nobody{i}@example.com"), "password": "not the password" }))
            .send()
            .await
            .unwrap();
        if resp.status() == StatusCode::TOO_MANY_REQUESTS {
            limited = Some((i, resp));
            break;
        }
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
        assert!(resp.headers().contains_key("ratelimit-policy"));
    }
    let (i, resp) = limited.expect("the burst is limited");
    assert_eq!(i, 10, "the login policy allows 10 a minute per address");
    assert!(resp.headers().contains_key("retry-after"));
    assert!(resp.headers().contains_key("ratelimit"));
    let p: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(p["code"], "rate_limited");
    let (st, _) = s.call(Method::GET, "/healthz", None, None, &[]).await;
    assert_eq!(st, StatusCode::OK);
    s.stop().await;
}

/// With the step-up rule on, money-out past the threshold within the window (24 hours) needs a
/// token with a second factor; a wallet that is not the caller's is still a 404, not a hint that
/// it exists.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_money_out_needs_a_second_factor() {
    let s = Server::start_with(Database::Sqlite, |c| {
        c.auth.mfa_above_major_units = Some(100);
    })
    .await;
    let (_, alice, _) = s.user("alice@example.com").await;
    let (_, bob, _) = s.user("bob@example.com").await;
    let a = s.wallet(&alice, "USD").await;
    s.money(
        &format!("/v1/wallets/{a}/deposits"),
        &alice,
        &new_key(),
        json!({ "amount": 50_000, "currency": "USD" }),
    )
    .await;
    let out = |amount: i64| json!({ "amount": amount, "currency": "USD", "pin": PIN });
    let (st, _) = s
        .money(
            &format!("/v1/wallets/{a}/withdrawals"),
            &alice,
            &new_key(),
            out(10_000),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "100.00 is at the threshold");
    let (st, p) = s
        .money(
            &format!("/v1/wallets/{a}/withdrawals"),
            &alice,
            &new_key(),
            out(10_001),
        )
        .await;
    assert_eq!(
        (st, p["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("mfa_required"))
    );
    // The threshold is for the day, not the request: with 100.00 gone, one cent more needs the
    // second factor too.
    let (st, p) = s
        .money(
            &format!("/v1/wallets/{a}/withdrawals"),
            &alice,
            &new_key(),
            out(1),
        )
        .await;
    assert_eq!(
        (st, p["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("mfa_required"))
    );
    let (st, p) = s
        .money(
            &format!("/v1/wallets/{a}/withdrawals"),
            &bob,
            &new_key(),
            out(10_001),
        )
        .await;
    assert_eq!(
        (st, p["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("wallet_not_found"))
    );
    s.stop().await;
}

/// With `rate_limit.admin_allowlist` set, the operators' routes (`/v1/admin/…`, `/metrics`)
/// answer only clients from those networks, read through the trusted proxies; users' routes
/// answer everyone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_routes_answer_only_allowed_networks() {
    let s = Server::start_with(Database::Sqlite, |c| {
        c.rate_limit.admin_allowlist = vec!["10.20.0.0/16".into()];
        c.rate_limit.trusted_proxies = vec!["127.0.0.1/32".into()];
    })
    .await;
    let admin = s.admin("root@example.com").await;
    let (_, alice, _) = s.user("alice@example.com").await;
    let from = |ip: &'static str| [("x-forwarded-for", ip)];
    for path in ["/v1/admin/audit", "/v1/admin/keys", "/metrics"] {
        // The test client itself (127.0.0.1, a trusted proxy with no forwarded address), and a
        // client the proxy forwards from another network: refused, with the admin's token.
        for headers in [&[][..], &from("203.0.113.7")[..]] {
            let (st, p) = s.call(Method::GET, path, Some(&admin), None, headers).await;
            assert_eq!(
                (st, p["code"].as_str()),
                (StatusCode::FORBIDDEN, Some("ip_not_allowed")),
                "{path} {headers:?}"
            );
        }
        let allowed = s
            .client
            .get(format!("{}{path}", s.base))
            .bearer_auth(&admin)
            .header("x-forwarded-for", "10.20.3.4")
            .send()
            .await
            .unwrap();
        assert_eq!(
            allowed.status(),
            StatusCode::OK,
            "{path} from an allowed network"
        );
    }
    let (st, p) = s
        .call(
            Method::POST,
            "/v1/admin/keys/rotate",
            Some(&admin),
            Some(json!({})),
            &from("203.0.113.7"),
        )
        .await;
    assert_eq!(
        (st, p["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("ip_not_allowed"))
    );
    let (st, _) = s.call(Method::GET, "/v1/me", Some(&alice), None, &[]).await;
    assert_eq!(st, StatusCode::OK, "users' routes answer everyone");
    s.stop().await;
}

/// Changing the password over HTTP: the current one is needed, every other session ends, this
/// one continues after a refresh, and only the new password logs in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_change_ends_the_other_sessions() {
    let s = Server::start(Database::Sqlite).await;
    let (_, here, here_refresh) = s.user("alice@example.com").await;
    let (elsewhere, elsewhere_refresh) = s.login("alice@example.com").await;
    let change =
        |current: &str, new: &str| json!({ "current_password": current, "new_password": new });
    let (st, p) = s
        .post(
            "/v1/auth/password",
            Some(&here),
            change("not my password", "a brand new passphrase"),
        )
        .await;
    assert_eq!(
        (st, p["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("invalid_credentials"))
    );
    let (st, p) = s
        .post("/v1/auth/password", Some(&here), change(PASSWORD, "short"))
        .await;
    assert_eq!(
        (st, p["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("invalid_request"))
    );
    let (st, _) = s
        .post(
            "/v1/auth/password",
            Some(&here),
            change(PASSWORD, "a brand new passphrase"),
        )
        .await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    for token in [&here, &elsewhere] {
        let (st, _) = s.get("/v1/me", token).await;
        assert_eq!(st, StatusCode::UNAUTHORIZED, "every access token ends");
    }
    let (st, _) = s
        .post(
            "/v1/auth/refresh",
            None,
            json!({ "refresh_token": elsewhere_refresh }),
        )
        .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "the other session ends");
    let (st, tokens) = s
        .post(
            "/v1/auth/refresh",
            None,
            json!({ "refresh_token": here_refresh }),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "this one continues: {tokens}");
    let (st, _) = s
        .get("/v1/me", tokens["access_token"].as_str().unwrap())
        .await;
    assert_eq!(st, StatusCode::OK);
    let login = |password: &str| json!({ "email": "alice@example.com", "password": password });
    let (st, _) = s.post("/v1/auth/login", None, login(PASSWORD)).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    let (st, _) = s
        .post("/v1/auth/login", None, login("a brand new passphrase"))
        .await;
    assert_eq!(st, StatusCode::OK);
    s.stop().await;
}

/// A user locked out of their account gets back in with a reset an administrator issues: only
/// an administrator issues one, never for their own account; the token is shown once, works once
/// and ends every session of the user.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_administrators_reset_lets_a_locked_out_user_back_in() {
    let s = Server::start(Database::Sqlite).await;
    let admin = s.admin("admin@example.com").await;
    let (alice, alice_token, alice_refresh) = s.user("alice@example.com").await;
    let (bob, bob_token, _) = s.user("bob@example.com").await;
    let issue = |user: &str| format!("/v1/admin/users/{user}/password-reset");
    let (st, _) = s.post(&issue(&alice), Some(&bob_token), json!({})).await;
    assert_eq!(st, StatusCode::FORBIDDEN, "a user issues no reset");
    let (st, p) = s.post(&issue(&bob), Some(&admin), json!({})).await;
    assert_eq!(st, StatusCode::CREATED, "{p}");
    let me = s.get("/v1/me", &admin).await.1["user_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (st, p) = s.post(&issue(&me), Some(&admin), json!({})).await;
    assert_eq!(
        (st, p["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("invalid_request")),
        "not for one's own account: {p}"
    );
    let (st, _) = s
        .post(
            &issue(&uuid::Uuid::now_v7().to_string()),
            Some(&admin),
            json!({}),
        )
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (st, issued) = s.post(&issue(&alice), Some(&admin), json!({})).await;
    assert_eq!(st, StatusCode::CREATED, "{issued}");
    assert_eq!(issued["user_id"], alice.as_str());
    assert!(issued["expires_at"].as_str().is_some());
    let token = issued["reset_token"].as_str().unwrap().to_owned();
    assert!(token.starts_with("cpr1_"));

    let reset = |token: &str, new: &str| json!({ "reset_token": token, "new_password": new });
    let (st, p) = s
        .post(
            "/v1/auth/password/reset",
            None,
            reset("cpr1_nope", "a brand new passphrase"),
        )
        .await;
    assert_eq!(
        (st, p["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("invalid_reset_token"))
    );
    let (st, p) = s
        .post("/v1/auth/password/reset", None, reset(&token, "short"))
        .await;
    assert_eq!(
        (st, p["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("invalid_request"))
    );
    let (st, _) = s
        .post(
            "/v1/auth/password/reset",
            None,
            reset(&token, "a brand new passphrase"),
        )
        .await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let (st, p) = s
        .post(
            "/v1/auth/password/reset",
            None,
            reset(&token, "another new passphrase"),
        )
        .await;
    assert_eq!(
        (st, p["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("invalid_reset_token")),
        "a reset works once"
    );
    let (st, _) = s.get("/v1/me", &alice_token).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "the access token ends");
    let (st, _) = s
        .post(
            "/v1/auth/refresh",
            None,
            json!({ "refresh_token": alice_refresh }),
        )
        .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "the session ends");
    let login = |password: &str| json!({ "email": "alice@example.com", "password": password });
    let (st, _) = s.post("/v1/auth/login", None, login(PASSWORD)).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    let (st, _) = s
        .post("/v1/auth/login", None, login("a brand new passphrase"))
        .await;
    assert_eq!(st, StatusCode::OK);
    let (st, _) = s.get("/v1/me", &bob_token).await;
    assert_eq!(st, StatusCode::OK, "other users are untouched");
    s.stop().await;
}

/// A configured external issuer (JWKS from a file): its tokens are accepted next to Coffer's own,
/// roles mapped from its claim; its subject owns wallets like any user; logout denylists the
/// token; its sessions are the issuer's business.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_external_issuers_tokens_are_accepted_next_to_coffers_own() {
    let idp = coffer_auth::SigningKey::generate().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let jwks = dir.path().join("jwks.json");
    std::fs::write(&jwks, json!({ "keys": [idp.jwk()] }).to_string()).unwrap();
    let issuer_config: toml::Table = toml::from_str(&format!(
        "issuer = \"https://idp.example\"\naudience = \"coffer-api\"\n\
         jwks = {{ file = \"{}\" }}\nroles_claim = \"realm_access.roles\"\n\
         [role_map]\ncustomer = [\"user\"]\n",
        jwks.display()
    ))
    .unwrap();
    let s = Server::start_with(Database::Sqlite, |c| c.auth.oidc = vec![issuer_config]).await;
    let token = |sub: &str| {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
        header.kid = Some(idp.kid().to_owned());
        jsonwebtoken::encode(
            &header,
            &json!({
                "iss": "https://idp.example", "aud": "coffer-api", "sub": sub,
                "exp": now + 600, "iat": now, "jti": new_key(),
                "realm_access": { "roles": ["customer", "unmapped"] },
            }),
            &jsonwebtoken::EncodingKey::from_rsa_der(idp.expose_pkcs1_der()),
        )
        .unwrap()
    };
    let (carol, dave) = (token("carol"), token("dave"));
    let (st, me) = s.get("/v1/me", &carol).await;
    assert_eq!(st, StatusCode::OK, "{me}");
    assert_eq!(
        (me["issuer"].as_str(), me["subject"].as_str()),
        (Some("https://idp.example"), Some("carol"))
    );
    assert_eq!(me["roles"], json!(["user"]));
    let w = s.wallet(&carol, "EUR").await;
    let (st, list) = s.get("/v1/wallets", &token("carol")).await;
    assert_eq!(
        (st, list["items"].as_array().map(Vec::len)),
        (StatusCode::OK, Some(1)),
        "the same subject, the same owner"
    );
    let (st, _) = s.get(&format!("/v1/wallets/{w}"), &dave).await;
    assert_eq!(
        st,
        StatusCode::NOT_FOUND,
        "another subject is another owner"
    );
    let (st, p) = s
        .call(
            Method::POST,
            "/v1/auth/sessions/revoke-all",
            Some(&carol),
            None,
            &[],
        )
        .await;
    assert_eq!(
        (st, p["code"].as_str()),
        (StatusCode::CONFLICT, Some("external_identity"))
    );
    let (st, p) = s
        .post(
            "/v1/auth/password",
            Some(&carol),
            json!({ "current_password": "x", "new_password": "a brand new passphrase" }),
        )
        .await;
    assert_eq!(
        (st, p["code"].as_str()),
        (StatusCode::CONFLICT, Some("external_identity")),
        "the password lives at the issuer"
    );
    let (st, _) = s
        .call(Method::POST, "/v1/auth/logout", Some(&carol), None, &[])
        .await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let (st, p) = s.get("/v1/me", &carol).await;
    assert_eq!(
        (st, p["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("revoked"))
    );
    // Coffer's own tokens still work beside them.
    let (_, alice, _) = s.user("alice@example.com").await;
    let (st, _) = s.get("/v1/me", &alice).await;
    assert_eq!(st, StatusCode::OK);
    s.stop().await;
}

/// A policy set in the configuration replaces the default.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configured_rate_limit_policies_apply() {
    let s = Server::start_with(Database::Sqlite, |c| {
        c.rate_limit.enabled = true;
        c.rate_limit.policies.insert(
            "login".to_owned(),
            coffer_app::config::PolicySetting {
                limit: 3,
                period_secs: 60,
            },
        );
    })
    .await;
    let mut statuses = Vec::new();
    for _ in 0..4 {
        let resp = s
            .client
            .post(format!("{}/v1/auth/login", s.base))
            .json(&json!({ "email": "nobody@example.com", "password": "not the password" }))
            .send()
            .await
            .unwrap();
        statuses.push(resp.status().as_u16());
    }
    assert_eq!(statuses, [401, 401, 401, 429]);
    s.stop().await;
}

/// Wrong passwords at one account back off (rate limits are off here, so the per-address
/// budgets play no part): six are checked, then 429 `rate_limited` with `Retry-After`, for a
/// registered email and an unknown one alike.
#[tokio::test]
async fn wrong_passwords_at_one_account_back_off() {
    let s = Server::start(Database::Sqlite).await;
    let _ = s.user("alice@example.com").await;
    for email in ["alice@example.com", "nobody@example.com"] {
        let mut answers = Vec::new();
        for _ in 0..8 {
            let resp = s
                .client
                .post(format!("{}/v1/auth/login", s.base))
                .json(&json!({ "email": email, "password": "not the password" }))
                .send()
                .await
                .unwrap();
            let retry = resp.headers().contains_key("retry-after");
            let p: serde_json::Value = resp.json().await.unwrap();
            answers.push((p["code"].as_str().unwrap_or_default().to_owned(), retry));
        }
        let expected: Vec<_> = (0..8)
            .map(|i| match i {
                0..6 => ("invalid_credentials".to_owned(), false),
                _ => ("rate_limited".to_owned(), true),
            })
            .collect();
        assert_eq!(answers, expected, "{email}");
    }
    s.stop().await;
}

/// The request id (the client's, or the generated one) is in the audit records the request's
/// ledger and account operations write.
#[tokio::test]
async fn audit_records_carry_the_request_id() {
    let s = Server::start(Database::Sqlite).await;
    let (_, alice, _) = s.user("alice@example.com").await;
    let a = s.wallet(&alice, "USD").await;
    let (st, d) = s
        .call(
            Method::POST,
            &format!("/v1/wallets/{a}/deposits"),
            Some(&alice),
            Some(json!({ "amount": 700, "currency": "USD" })),
            &[
                ("idempotency-key", &new_key()),
                ("x-request-id", "deposit-req-42"),
            ],
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{d}");
    let admin = s.admin("ops@example.com").await;
    let (st, audit) = s.get("/v1/admin/audit?limit=200", &admin).await;
    assert_eq!(st, StatusCode::OK);
    let items = audit["items"].as_array().unwrap();
    let deposit = items
        .iter()
        .find(|e| e["action"] == "transaction.deposit")
        .unwrap_or_else(|| panic!("no deposit record: {audit}"));
    assert_eq!(deposit["request_id"], "deposit-req-42", "{deposit}");
    // Every record written inside a request has one (generated when the client sent none).
    let wallet_opened = items
        .iter()
        .find(|e| e["action"] == "wallet.create")
        .unwrap_or_else(|| panic!("no wallet record: {audit}"));
    assert!(wallet_opened["request_id"].is_string(), "{wallet_opened}");
}

/// An operator finds a customer's wallets by email (through its blind index), status and
/// currency; users may not search; contradictory or bad filters are 422.
#[tokio::test]
async fn an_operator_finds_a_customers_wallets_by_email() {
    let s = Server::start(Database::Postgres).await;
    let (alice_id, alice, _) = s.user("alice@example.com").await;
    let (_, bob, _) = s.user("bob@example.com").await;
    let a_usd = s.wallet(&alice, "USD").await;
    let a_eur = s.wallet(&alice, "EUR").await;
    s.wallet(&bob, "USD").await;
    let admin = s.admin("ops@example.com").await;
    let ids = |page: &serde_json::Value| -> Vec<String> {
        page["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|w| w["id"].as_str().unwrap().to_owned())
            .collect()
    };
    let (st, page) = s
        .get("/v1/admin/wallets?email=%20Alice@Example.com", &admin)
        .await;
    assert_eq!(st, StatusCode::OK, "{page}");
    assert_eq!(ids(&page), [a_usd.clone(), a_eur.clone()]);
    let (_, page) = s
        .get(
            &format!("/v1/admin/wallets?owner_id={alice_id}&currency=EUR"),
            &admin,
        )
        .await;
    assert_eq!(ids(&page), [a_eur]);
    let (_, page) = s
        .get("/v1/admin/wallets?currency=USD&limit=1", &admin)
        .await;
    assert_eq!(ids(&page), [a_usd]);
    assert!(page["next_cursor"].is_string(), "{page}");
    let (_, page) = s
        .get("/v1/admin/wallets?email=nobody@example.com", &admin)
        .await;
    assert_eq!(ids(&page), Vec::<String>::new());
    for (query, field) in [
        (
            format!("owner_id={alice_id}&email=alice@example.com"),
            "email",
        ),
        ("status=sleeping".to_owned(), "status"),
        ("email=not-an-email".to_owned(), "email"),
        ("color=red".to_owned(), "query"),
    ] {
        let (st, p) = s.get(&format!("/v1/admin/wallets?{query}"), &admin).await;
        assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{query}: {p}");
        assert_eq!(p["field"], field, "{query}: {p}");
    }
    let (st, _) = s.get("/v1/admin/wallets", &alice).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
}

/// A wallet's history filtered over HTTP: by kind, time range, the other wallet and an amount
/// range; bad filters are 422 naming the field.
#[tokio::test]
async fn history_filters_over_http() {
    let s = Server::start(Database::Sqlite).await;
    let (_, alice, _) = s.user("alice@example.com").await;
    let (_, bob, _) = s.user("bob@example.com").await;
    let a = s.wallet(&alice, "USD").await;
    let b = s.wallet(&bob, "USD").await;
    let (st, _) = s
        .money(
            &format!("/v1/wallets/{a}/deposits"),
            &alice,
            &new_key(),
            json!({ "amount": 500, "currency": "USD" }),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED);
    let (st, sent) = s
        .money(
            &format!("/v1/wallets/{a}/transfers"),
            &alice,
            &new_key(),
            json!({ "amount": 100, "currency": "USD", "to_wallet_id": b, "pin": PIN }),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{sent}");
    let kinds = |page: &serde_json::Value| -> Vec<String> {
        page["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["kind"].as_str().unwrap().to_owned())
            .collect()
    };
    let path = |q: &str| format!("/v1/wallets/{a}/transactions?{q}");
    let (st, page) = s.get(&path("kind=transfer"), &alice).await;
    assert_eq!(st, StatusCode::OK, "{page}");
    assert_eq!(kinds(&page), ["transfer"]);
    let (_, page) = s.get(&path(&format!("counterparty={b}")), &alice).await;
    assert_eq!(kinds(&page), ["transfer"]);
    let (_, page) = s
        .get(
            &path("from=2000-01-01T00:00:00Z&to=2999-01-01T00:00:00Z"),
            &alice,
        )
        .await;
    assert_eq!(kinds(&page), ["transfer", "deposit"]);
    let (_, page) = s.get(&path("to=2000-01-01T00:00:00Z"), &alice).await;
    assert_eq!(kinds(&page), Vec::<String>::new());
    let (_, page) = s.get(&path("min_amount=200"), &alice).await;
    assert_eq!(kinds(&page), ["deposit"]);
    assert_eq!(page["stopped_early"], false, "{page}");
    let (_, page) = s.get(&path("min_amount=50&max_amount=100"), &alice).await;
    assert_eq!(kinds(&page), ["transfer"]);
    for (query, field) in [
        ("kind=gift", "kind"),
        ("from=yesterday", "from"),
        ("counterparty=nope", "counterparty"),
        ("from=2026-01-02T00:00:00Z&to=2026-01-01T00:00:00Z", "to"),
        ("sort=asc", "query"),
        ("min_amount=lots", "query"),
        ("min_amount=9&max_amount=8", "max_amount"),
    ] {
        let (st, p) = s.get(&path(query), &alice).await;
        assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{query}: {p}");
        assert_eq!(p["field"], field, "{query}: {p}");
    }
}
