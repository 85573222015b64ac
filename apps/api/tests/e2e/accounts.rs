//! Sign-in and account scenarios: a login burst, the second factor for large money-out, the
//! operators' network allowlist, a password change, an administrator's reset.

use super::*;

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
