//! External issuers, configured rate-limit policies, password backoff, request ids in audit
//! records, and the operators' searches (wallets by email, filtered history).

use super::*;

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
