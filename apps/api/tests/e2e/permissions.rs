//! The permission matrix: administrators administer and never move money; users do not
//! administer.

use super::*;

/// Admins administer and never move money; users never administer.
pub(super) async fn permissions(db: Database) {
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
            format!("/v1/wallets/{a}/holds"),
            json!({ "amount": 1, "currency": "USD", "pin": PIN }),
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
    let (st, p) = s
        .call(
            Method::PUT,
            &format!("/v1/admin/wallets/{a}/limits"),
            Some(&alice),
            Some(json!({ "limits": [] })),
            &[],
        )
        .await;
    assert_eq!(
        (st, p["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("forbidden")),
        "a user sets no limits, not even on her own wallet"
    );
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
