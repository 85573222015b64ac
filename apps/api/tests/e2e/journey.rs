//! A user's journey, and the IDOR matrix: another user's wallet is not found on every route.

use super::*;

pub(super) async fn journey(db: Database) {
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
pub(super) async fn idor(db: Database) {
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
        (Method::GET, format!("/v1/wallets/{a}/limits"), None),
        (Method::GET, format!("/v1/wallets/{a}/holds"), None),
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
            Method::POST,
            format!("/v1/wallets/{a}/holds"),
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
