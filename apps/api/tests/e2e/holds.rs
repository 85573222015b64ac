//! Holds over HTTP: a card-style flow (a held transfer, part of it captured by the merchant,
//! the rest released), a payout (a held withdrawal captured by a payout service's account), a
//! void by an administrator, and who else is told "not found"; then limits an administrator
//! sets on the wallet, which its owner reads and which refuse a withdrawal past them.

use super::*;

async fn call(
    s: &Server,
    token: &str,
    method: Method,
    path: &str,
    body: Option<serde_json::Value>,
) -> (StatusCode, serde_json::Value) {
    s.call(
        method,
        path,
        Some(token),
        body,
        &[("idempotency-key", &new_key())],
    )
    .await
}

pub(super) async fn holds(db: Database) {
    let s = Server::start(db).await;
    let admin = s.admin("root@example.com").await;
    let payouts = s.with_role("payouts@example.com", "payouts").await;
    let (_, alice, _) = s.user("alice@example.com").await;
    let (_, shop, _) = s.user("shop@example.com").await;
    let (_, eve, _) = s.user("eve@example.com").await;
    let a = s.wallet(&alice, "USD").await;
    let m = s.wallet(&shop, "USD").await;
    let (st, _) = s
        .money(
            &format!("/v1/wallets/{a}/deposits"),
            &alice,
            &new_key(),
            json!({ "amount": 10_000, "currency": "USD" }),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED);

    // The card authorisation: 60.00 held for the shop.
    let (st, hold) = s
        .money(
            &format!("/v1/wallets/{a}/holds"),
            &alice,
            &new_key(),
            json!({ "amount": 6_000, "currency": "USD", "pin": PIN, "to_wallet_id": m, "memo": "order 7" }),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{hold}");
    assert_eq!(
        (&hold["status"], &hold["amount"]),
        (&json!("active"), &json!(6_000))
    );
    let id = hold["id"].as_str().unwrap().to_owned();
    let (_, w) = s.get(&format!("/v1/wallets/{a}"), &alice).await;
    assert_eq!(
        (&w["balance"], &w["available_balance"]),
        (&json!(10_000), &json!(4_000))
    );
    let (_, history) = s
        .get(&format!("/v1/wallets/{a}/transactions"), &alice)
        .await;
    assert_eq!(
        (&history["balance"], &history["available_balance"]),
        (&json!(10_000), &json!(4_000)),
        "the history shows both too"
    );
    let (st, p) = s
        .money(
            &format!("/v1/wallets/{a}/withdrawals"),
            &alice,
            &new_key(),
            json!({ "amount": 4_001, "currency": "USD", "pin": PIN }),
        )
        .await;
    assert_eq!(
        (st, p["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("insufficient_funds"))
    );

    // Nobody but its parties sees it; the payer and an administrator cannot capture it.
    for (token, method, path) in [
        (&eve, Method::GET, format!("/v1/holds/{id}")),
        (&eve, Method::POST, format!("/v1/holds/{id}/capture")),
        (&eve, Method::POST, format!("/v1/holds/{id}/void")),
        (&alice, Method::POST, format!("/v1/holds/{id}/capture")),
        (&admin, Method::POST, format!("/v1/holds/{id}/capture")),
        (&alice, Method::POST, format!("/v1/holds/{id}/void")),
    ] {
        let (st, p) = call(&s, token, method.clone(), &path, None).await;
        assert_eq!(
            (st, p["code"].as_str()),
            (StatusCode::NOT_FOUND, Some("hold_not_found")),
            "{method} {path}"
        );
    }
    let (st, seen) = s.get(&format!("/v1/holds/{id}"), &shop).await;
    assert_eq!((st, &seen["memo"]), (StatusCode::OK, &json!("order 7")));

    // The shop captures 45.00 of it, once; the rest is released.
    let (key, path) = (new_key(), format!("/v1/holds/{id}/capture"));
    let headers = [("idempotency-key", key.as_str())];
    let capture = |amount: i64| {
        s.call(
            Method::POST,
            &path,
            Some(&shop),
            Some(json!({ "amount": amount })),
            &headers,
        )
    };
    let (st, p) = s
        .call(
            Method::POST,
            &format!("/v1/holds/{id}/capture"),
            Some(&shop),
            Some(json!({ "amount": 6_001 })),
            &[("idempotency-key", &new_key())],
        )
        .await;
    assert_eq!(
        (st, p["code"].as_str()),
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("capture_exceeds_hold")
        )
    );
    let (st, done) = capture(4_500).await;
    assert_eq!(st, StatusCode::OK, "{done}");
    assert_eq!(done["hold"]["status"], "captured");
    assert_eq!(
        (&done["transaction"]["kind"], &done["transaction"]["amount"]),
        (&json!("capture"), &json!(4_500))
    );
    let (st, again) = capture(4_500).await;
    assert_eq!(
        (st, &again),
        (StatusCode::OK, &done),
        "a retry answers the same"
    );
    let (st, p) = call(
        &s,
        &shop,
        Method::POST,
        &format!("/v1/holds/{id}/void"),
        None,
    )
    .await;
    assert_eq!(
        (st, p["code"].as_str()),
        (StatusCode::CONFLICT, Some("hold_resolved"))
    );
    let (_, w) = s.get(&format!("/v1/wallets/{a}"), &alice).await;
    assert_eq!(
        (&w["balance"], &w["available_balance"]),
        (&json!(5_500), &json!(5_500))
    );
    let (_, w) = s.get(&format!("/v1/wallets/{m}"), &shop).await;
    assert_eq!(w["balance"], 4_500);

    // A payout: held, then captured by the payout service, which sees no wallet.
    let (st, payout) = s
        .money(
            &format!("/v1/wallets/{a}/holds"),
            &alice,
            &new_key(),
            json!({ "amount": 1_000, "currency": "USD", "pin": PIN, "expires_in_secs": 3600 }),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{payout}");
    let pid = payout["id"].as_str().unwrap();
    let (st, _) = s.get(&format!("/v1/wallets/{a}"), &payouts).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, paid) = call(
        &s,
        &payouts,
        Method::POST,
        &format!("/v1/holds/{pid}/capture"),
        None,
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{paid}");
    assert_eq!(
        (
            &paid["transaction"]["to_wallet_id"],
            &paid["transaction"]["amount"]
        ),
        (&json!(null), &json!(1_000))
    );

    // A hold an administrator voids, and one that asks for too long a life.
    let (_, held) = s
        .money(
            &format!("/v1/wallets/{a}/holds"),
            &alice,
            &new_key(),
            json!({ "amount": 500, "currency": "USD", "pin": PIN, "to_wallet_id": m }),
        )
        .await;
    let hid = held["id"].as_str().unwrap();
    let (st, voided) = call(
        &s,
        &admin,
        Method::POST,
        &format!("/v1/holds/{hid}/void"),
        None,
    )
    .await;
    assert_eq!((st, &voided["status"]), (StatusCode::OK, &json!("voided")));
    let (st, p) = s
        .money(
            &format!("/v1/wallets/{a}/holds"),
            &alice,
            &new_key(),
            json!({ "amount": 1, "currency": "USD", "pin": PIN, "expires_in_secs": 31 * 86_400 }),
        )
        .await;
    assert_eq!(
        (st, p["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("invalid_request"))
    );
    let (_, w) = s.get(&format!("/v1/wallets/{a}"), &alice).await;
    assert_eq!(
        (&w["balance"], &w["available_balance"]),
        (&json!(4_500), &json!(4_500))
    );

    // The holds are listed with the wallet, newest first, for the payer; the payee's wallet
    // lists the held transfers to it.
    let (st, mine) = s
        .get(&format!("/v1/wallets/{a}/holds?limit=2"), &alice)
        .await;
    assert_eq!(st, StatusCode::OK, "{mine}");
    let statuses: Vec<_> = mine["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["voided", "captured"]);
    let cursor = mine["next_cursor"].as_str().unwrap();
    let (_, rest) = s
        .get(&format!("/v1/wallets/{a}/holds?cursor={cursor}"), &alice)
        .await;
    assert_eq!(
        (
            rest["items"].as_array().map(Vec::len),
            &rest["items"][0]["id"],
            &rest["next_cursor"]
        ),
        (Some(1), &json!(id), &json!(null))
    );
    let (_, theirs) = s.get(&format!("/v1/wallets/{m}/holds"), &shop).await;
    assert_eq!(
        theirs["items"].as_array().map(Vec::len),
        Some(2),
        "{theirs}"
    );

    // Limits: the captured payout counts as a withdrawal of the day.
    let limits = json!({ "limits": [
        { "kind": "withdrawal", "window": "rolling_24h", "max_minor": 2_000 },
        { "kind": "hold", "window": "per_transaction", "max_minor": 100 },
    ] });
    let path = format!("/v1/admin/wallets/{a}/limits");
    let (st, set) = s
        .call(Method::PUT, &path, Some(&admin), Some(limits), &[])
        .await;
    assert_eq!(
        (st, &set["source"]),
        (StatusCode::OK, &json!("wallet")),
        "{set}"
    );
    let (st, mine) = s.get(&format!("/v1/wallets/{a}/limits"), &alice).await;
    assert_eq!(st, StatusCode::OK, "{mine}");
    assert_eq!(
        (
            &mine["limits"][0]["kind"],
            &mine["limits"][0]["used_minor"],
            &mine["limits"][0]["remaining_minor"]
        ),
        (&json!("withdrawal"), &json!(1_000), &json!(1_000))
    );
    let out = format!("/v1/wallets/{a}/withdrawals");
    let withdraw = |amount: i64| {
        call(
            &s,
            &alice,
            Method::POST,
            &out,
            Some(json!({ "amount": amount, "currency": "USD", "pin": PIN })),
        )
    };
    let (st, p) = withdraw(1_001).await;
    assert_eq!(
        (st, p["code"].as_str(), &p["limit"]),
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("limit_exceeded"),
            &json!({ "kind": "withdrawal", "window": "rolling_24h", "remaining_minor": 1_000 })
        )
    );
    let (st, _) = withdraw(1_000).await;
    assert_eq!(st, StatusCode::CREATED);
    let (st, p) = s
        .call(
            Method::PUT,
            &path,
            Some(&admin),
            Some(
                json!({ "limits": [{ "kind": "card", "window": "rolling_24h", "max_minor": 1 }] }),
            ),
            &[],
        )
        .await;
    assert_eq!(
        (st, p["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("limits[0].kind"))
    );
    s.stop().await;
}
