//! Every refusal a client can provoke: a 4xx problem with its code, never a 5xx.

use super::*;

/// Malformed requests: each a 4xx problem with its code.
pub(super) async fn bad_requests(db: Database) {
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
