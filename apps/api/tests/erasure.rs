//! Erasure over HTTP, on Postgres with two replicas: Alice pays Bob and Carol and is erased by
//! a privacy officer (`user:erase`, a role of its own): refused while her wallet holds money;
//! once she has withdrawn all but a few cents, a replica configured with an unclaimed-funds
//! wallet sweeps them there, closes her wallet and destroys her keys; the other replica reads her wallet as
//! erased and refuses its history; Bob's and Carol's histories and transactions read as before
//! with her side named as erased; she can no longer sign in, her address registers again, and
//! the request answers its own retry.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{Database, PIN, Server, new_key};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

async fn erase(
    s: &Server,
    token: &str,
    user: &str,
    key: &str,
    reason: &str,
) -> (StatusCode, Value) {
    s.call(
        Method::POST,
        &format!("/v1/admin/users/{user}/erase"),
        Some(token),
        Some(json!({ "reason": reason })),
        &[("idempotency-key", key)],
    )
    .await
}

#[tokio::test]
async fn an_erased_customer_is_gone_and_her_counterparties_keep_their_books() {
    let a = Server::start(Database::Postgres).await;
    let b = a.replica().await;
    let admin = a.admin("root@example.com").await;
    let officer = a.with_role("dpo@example.com", "privacy").await;
    let (alice_id, alice, _) = a.user("alice@example.com").await;
    let (bob_id, bob, _) = a.user("bob@example.com").await;
    let (_, carol, _) = a.user("carol@example.com").await;
    let (_, treasury, _) = a.user("treasury@example.com").await;
    let unclaimed = a.wallet(&treasury, "USD").await;
    let sweeping = a
        .replica_with(|c| {
            c.ledger.unclaimed.insert(
                "USD".to_owned(),
                coffer_app::config::UnclaimedSettings {
                    wallet: unclaimed.clone(),
                    up_to_minor: 5,
                },
            );
        })
        .await;
    let wa = a.wallet(&alice, "USD").await;
    let wb = a.wallet(&bob, "USD").await;
    let wc = a.wallet(&carol, "USD").await;
    let (st, _) = a
        .money(
            &format!("/v1/wallets/{wa}/deposits"),
            &alice,
            &new_key(),
            json!({ "amount": 1000, "currency": "USD" }),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED);
    let mut sent = Vec::new();
    for (to, amount, memo) in [(&wb, 300, "the bike"), (&wc, 200, "a birthday gift")] {
        let (st, t) = a
            .money(
                &format!("/v1/wallets/{wa}/transfers"),
                &alice,
                &new_key(),
                json!({ "amount": amount, "currency": "USD", "to_wallet_id": to, "pin": PIN, "memo": memo }),
            )
            .await;
        assert_eq!(st, StatusCode::CREATED, "{t}");
        sent.push(t);
    }

    // Its own permission: an administrator without it is refused; nobody is erased while a
    // wallet of theirs holds money, and the refusal names the wallet.
    let (st, _) = erase(&a, &admin, &alice_id, "erase-1", "gdpr_art17").await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, p) = erase(&a, &officer, &alice_id, "erase-1", "gdpr_art17").await;
    assert_eq!(st, StatusCode::CONFLICT, "{p}");
    assert_eq!(p["code"], "wallet_not_empty");
    assert!(p["detail"].as_str().unwrap().contains(&wa), "{p}");
    // The user's step alone refuses while a wallet of theirs is not erased (one opened while an
    // erasure runs, say), and changes nothing: the use case erases the wallets again first.
    let bob_id = coffer_auth::user::UserId::parse(&bob_id).unwrap();
    let refused = a
        .app_state
        .accounts
        .erase_user(
            coffer_audit::Actor::Service(coffer_audit::EntityId::parse("test").unwrap()),
            bob_id,
            "direct",
            &coffer_audit::Code::parse("gdpr").unwrap(),
            &coffer_auth::accounts::RequestContext::default(),
        )
        .await;
    assert!(
        matches!(
            refused,
            Err(coffer_auth::accounts::AuthError::WalletsRemain)
        ),
        "{refused:?}"
    );
    let (st, _) = b.get("/v1/me", &bob).await;
    assert_eq!(st, StatusCode::OK, "Bob is untouched");
    let (st, p) = erase(&a, &officer, &uuid::Uuid::new_v4().to_string(), "x", "gdpr").await;
    assert_eq!(
        (st, p["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("user_not_found"))
    );

    let (st, _) = a
        .money(
            &format!("/v1/wallets/{wa}/withdrawals"),
            &alice,
            &new_key(),
            json!({ "amount": 497, "currency": "USD", "pin": PIN }),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED);
    let (st, p) = erase(&a, &officer, &alice_id, "erase-1", "gdpr_art17").await;
    assert_eq!(
        (st, p["code"].as_str()),
        (StatusCode::CONFLICT, Some("wallet_not_empty")),
        "a replica without an unclaimed-funds wallet sweeps nothing"
    );
    let (st, done) = erase(&sweeping, &officer, &alice_id, "erase-1", "gdpr_art17").await;
    assert_eq!(st, StatusCode::OK, "{done}");
    assert_eq!(done["user_id"], alice_id.as_str());
    assert_eq!(done["reason"], "gdpr_art17");
    assert_eq!(done["wallets"][0]["id"], wa.as_str());
    assert_eq!(done["wallets"][0]["status"], "closed");
    assert_eq!(done["wallets"][0]["balance"], 0);
    assert!(done["wallets"][0]["erased_at"].is_string(), "{done}");

    // Her three cents are in the unclaimed-funds wallet, by a sweep naming her wallet as erased.
    let (st, page) = b
        .get(&format!("/v1/wallets/{unclaimed}/transactions"), &treasury)
        .await;
    assert_eq!(st, StatusCode::OK, "{page}");
    let sweep = &page["items"][0];
    assert_eq!(
        (&sweep["kind"], &sweep["amount"], &sweep["erased_wallets"]),
        (&json!("sweep"), &json!(3), &json!([wa])),
        "{page}"
    );
    let (st, w) = b.get(&format!("/v1/wallets/{unclaimed}"), &treasury).await;
    assert_eq!((st, &w["balance"]), (StatusCode::OK, &json!(3)));

    // A retry answers the first erasure; another key is told she is gone; the same key with
    // another reason is a conflict.
    let (st, again) = erase(&b, &officer, &alice_id, "erase-1", "gdpr_art17").await;
    assert_eq!((st, &again), (StatusCode::OK, &done));
    let (st, p) = erase(&a, &officer, &alice_id, "erase-2", "gdpr_art17").await;
    assert_eq!(
        (st, p["code"].as_str()),
        (StatusCode::GONE, Some("user_erased"))
    );
    let (st, p) = erase(&a, &officer, &alice_id, "erase-1", "other").await;
    assert_eq!(
        (st, p["code"].as_str()),
        (StatusCode::CONFLICT, Some("idempotency_conflict"))
    );

    // On the other replica: her wallet reads as erased, its history is gone, nothing reaches it.
    let (st, w) = b.get(&format!("/v1/wallets/{wa}"), &admin).await;
    assert_eq!(st, StatusCode::OK, "{w}");
    assert_eq!(
        (w["status"].as_str(), w["balance"].as_i64()),
        (Some("closed"), Some(0))
    );
    assert!(w["erased_at"].is_string(), "{w}");
    let (st, p) = b
        .get(&format!("/v1/wallets/{wa}/transactions"), &admin)
        .await;
    assert_eq!(
        (st, p["code"].as_str()),
        (StatusCode::GONE, Some("wallet_erased"))
    );
    let (st, p) = b
        .money(
            &format!("/v1/wallets/{wb}/transfers"),
            &bob,
            &new_key(),
            json!({ "amount": 1, "currency": "USD", "to_wallet_id": wa, "pin": PIN }),
        )
        .await;
    assert_eq!(
        (st, p["code"].as_str()),
        (StatusCode::GONE, Some("wallet_erased"))
    );

    // Bob and Carol read their side as before, hers named as erased.
    for ((token, wallet), t) in [(&bob, &wb), (&carol, &wc)].into_iter().zip(&sent) {
        let (st, page) = b
            .get(&format!("/v1/wallets/{wallet}/transactions"), token)
            .await;
        assert_eq!(st, StatusCode::OK, "{page}");
        let seen = &page["items"][0];
        let (st, read) = b
            .get(
                &format!("/v1/transactions/{}", t["id"].as_str().unwrap()),
                token,
            )
            .await;
        assert_eq!(st, StatusCode::OK, "{read}");
        for v in [seen, &read] {
            assert_eq!(v["id"], t["id"]);
            assert_eq!(v["amount"], t["amount"]);
            assert_eq!(v["memo"], t["memo"]);
            assert_eq!(v["erased_wallets"], json!([wa]));
        }
    }

    // She is signed out everywhere and cannot sign in; her address is free again.
    let (st, _) = b.get("/v1/me", &alice).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    let (st, _) = a
        .post(
            "/v1/auth/login",
            None,
            json!({ "email": "alice@example.com", "password": common::PASSWORD }),
        )
        .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    let (new_id, _, _) = b.user("alice@example.com").await;
    assert_ne!(new_id, alice_id);

    // The act is in the audit log, with its reason.
    let (st, page) = a.get("/v1/admin/audit?limit=100", &admin).await;
    assert_eq!(st, StatusCode::OK, "{page}");
    let erased: Vec<&Value> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["action"] == "user.erased")
        .collect();
    assert_eq!(erased.len(), 1, "{page}");
    assert_eq!(erased[0]["details"]["reason"]["code"], "gdpr_art17");
}
