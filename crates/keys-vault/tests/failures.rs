//! What Coffer does when Vault is down, refuses, or revokes: typed errors within the timeout,
//! a new login after a revocation, renewal before expiry, and the deploy/ policies holding.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::{Duration, Instant};

use coffer_keys::{KeyContext, KeyError, KeyProvider as _, rewrap_one};
use coffer_keys_vault::{
    KvSettings, TransitSettings, VaultAuth, VaultConnection, VaultKvProvider, VaultTransitProvider,
};
use reqwest::Method;
use secrecy::SecretString;
use serde_json::json;

fn ctx() -> KeyContext {
    KeyContext::new().with("wallet_id", "w1")
}

fn with_timeout(mut conn: VaultConnection, timeout: Duration) -> VaultConnection {
    conn.timeout = timeout;
    conn
}

#[tokio::test]
async fn a_server_that_refuses_connections_is_unavailable() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let conn = VaultConnection::new(
        format!("http://127.0.0.1:{port}"),
        VaultAuth::Token(SecretString::from("t")),
    );
    let err = VaultTransitProvider::connect(conn, TransitSettings::new("k"))
        .await
        .unwrap_err();
    assert!(matches!(err, KeyError::Unavailable { .. }), "{err:?}");
    assert!(err.is_retryable());
}

#[tokio::test]
async fn a_server_that_never_answers_is_unavailable_within_the_timeout() {
    // Accepts connections and never says a word.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hold = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            open.push(socket);
        }
    });
    let conn = with_timeout(
        VaultConnection::new(
            format!("http://{addr}"),
            VaultAuth::Token(SecretString::from("t")),
        ),
        Duration::from_millis(300),
    );
    let started = Instant::now();
    let err = VaultKvProvider::connect(conn, KvSettings::new("k"))
        .await
        .unwrap_err();
    assert!(matches!(err, KeyError::Unavailable { .. }), "{err:?}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "gave up only after {:?}",
        started.elapsed()
    );
    hold.abort();
}

#[tokio::test]
async fn wrong_credentials_are_denied_and_the_error_holds_no_secret() {
    let (_admin, plan) = common::provisioned().await;
    let mut user = plan.users[0].clone();
    user.password = Some(SecretString::from("not-the-password-4711"));
    let err = VaultTransitProvider::connect(common::userpass(&user), plan.transit.clone())
        .await
        .unwrap_err();
    assert!(matches!(err, KeyError::Denied { .. }), "{err:?}");
    assert!(!format!("{err} {err:?}").contains("4711"));

    let bogus = VaultConnection::new(
        common::addr(),
        VaultAuth::Token(SecretString::from("s.bogus-token-0815")),
    );
    let err = VaultKvProvider::connect(bogus, plan.kv.clone())
        .await
        .unwrap_err();
    assert!(matches!(err, KeyError::Denied { .. }), "{err:?}");
    assert!(!format!("{err} {err:?}").contains("0815"));
}

#[tokio::test]
async fn a_revoked_token_is_replaced_by_a_new_login() {
    let (admin, plan) = common::provisioned().await;
    let api = &plan.users[0];
    let transit = VaultTransitProvider::connect(common::userpass(api), plan.transit.clone())
        .await
        .unwrap();
    let kv = VaultKvProvider::connect(common::userpass(api), plan.kv.clone())
        .await
        .unwrap();
    let g = transit.generate_data_key(&ctx()).await.unwrap();

    let revoked = admin
        .revoke_tokens_of(&format!("userpass-{}", api.name))
        .await
        .unwrap();
    assert_eq!(revoked, 2, "one token per provider");

    let k = transit.unwrap_data_key(&g.wrapped, &ctx()).await.unwrap();
    assert_eq!(k.expose_secret(), g.plaintext.expose_secret());
    kv.health().await.unwrap();
}

#[tokio::test]
async fn a_token_is_renewed_before_it_expires_even_when_idle() {
    let (admin, plan) = common::provisioned().await;
    // A renewable token of the API's policy living 6 s.
    let token = admin
        .request(
            "create a short token",
            Method::POST,
            "auth/token/create",
            &json!({ "ttl": "6s", "explicit_max_ttl": "1h", "policies": [plan.users[0].policies[0]], "renewable": true }),
        )
        .await
        .unwrap()["auth"]["client_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let conn = VaultConnection::new(common::addr(), VaultAuth::Token(SecretString::from(token)));
    let p = VaultTransitProvider::connect(conn, plan.transit.clone())
        .await
        .unwrap();
    let g = p.generate_data_key(&ctx()).await.unwrap();
    // No call for more than twice the token's life: only the background renewal (at two thirds
    // of each lease) keeps it. A token given to the process cannot be logged in again.
    tokio::time::sleep(Duration::from_secs(14)).await;
    let k = p.unwrap_data_key(&g.wrapped, &ctx()).await.unwrap();
    assert_eq!(k.expose_secret(), g.plaintext.expose_secret());
}

#[tokio::test]
async fn a_policy_refusal_does_not_log_in_again() {
    let (admin, plan) = common::provisioned().await;
    let api = &plan.users[0];
    let p = VaultTransitProvider::connect(common::userpass(api), plan.transit.clone())
        .await
        .unwrap();
    for _ in 0..3 {
        let err = p.rotate().await.unwrap_err();
        assert!(matches!(err, KeyError::Denied { .. }), "{err:?}");
    }
    // Still the one login's token: the refusals were the policy's, not a dead token's.
    let revoked = admin
        .revoke_tokens_of(&format!("userpass-{}", api.name))
        .await
        .unwrap();
    assert_eq!(revoked, 1);
}

#[tokio::test]
async fn approle_logins_work_and_a_wrong_secret_id_is_denied() {
    let (admin, plan) = common::provisioned().await;
    admin.enable_auth("approle", "approle").await.unwrap();
    let role = common::unique("role");
    let (role_id, secret_id) = admin
        .put_approle("approle", &role, &[plan.users[0].policies[0].as_str()])
        .await
        .unwrap();
    let conn = |secret_id: SecretString| {
        VaultConnection::new(
            common::addr(),
            VaultAuth::AppRole {
                mount: "approle".into(),
                role_id: role_id.clone(),
                secret_id,
            },
        )
    };
    let p = VaultTransitProvider::connect(conn(secret_id), plan.transit.clone())
        .await
        .unwrap();
    let g = p.generate_data_key(&ctx()).await.unwrap();
    p.unwrap_data_key(&g.wrapped, &ctx()).await.unwrap();

    let err = VaultTransitProvider::connect(
        conn(SecretString::from("00000000-0000-0000-0000-000000000000")),
        plan.transit.clone(),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, KeyError::Denied { .. }), "{err:?}");
}

#[tokio::test]
async fn the_api_policy_uses_the_key_but_cannot_rotate_rewrap_or_retire_it() {
    let (_admin, plan) = common::provisioned().await;
    let api = common::userpass(&plan.users[0]);

    let transit = VaultTransitProvider::connect(api.clone(), plan.transit.clone())
        .await
        .unwrap();
    let g = transit.generate_data_key(&ctx()).await.unwrap();
    transit.unwrap_data_key(&g.wrapped, &ctx()).await.unwrap();
    transit.status().await.unwrap();
    let err = transit.rotate().await.unwrap_err();
    assert!(matches!(err, KeyError::Denied { .. }), "rotate: {err:?}");
    let err = rewrap_one(&transit, &g.wrapped, &ctx()).await.unwrap_err();
    assert!(matches!(err, KeyError::Denied { .. }), "rewrap: {err:?}");
    let err = transit.retire_versions_below(1).await.unwrap_err();
    assert!(matches!(err, KeyError::Denied { .. }), "retire: {err:?}");

    let kv = VaultKvProvider::connect(api, plan.kv.clone())
        .await
        .unwrap();
    let g = kv.generate_data_key(&ctx()).await.unwrap();
    kv.unwrap_data_key(&g.wrapped, &ctx()).await.unwrap();
    let err = kv.rotate().await.unwrap_err();
    assert!(matches!(err, KeyError::Denied { .. }), "kv rotate: {err:?}");
    let before = kv.status().await.unwrap();
    assert_eq!(
        before.active_version, 1,
        "the refused rotation left no trace"
    );
}

#[tokio::test]
async fn a_rotation_by_the_worker_reaches_another_process_and_old_keys_still_open() {
    let (_admin, plan) = common::provisioned().await;
    let mut settings = plan.kv.clone();
    settings.refresh = Duration::from_millis(200);
    let api = VaultKvProvider::connect(common::userpass(&plan.users[0]), settings.clone())
        .await
        .unwrap();
    let worker = VaultKvProvider::connect(common::userpass(&plan.users[1]), settings)
        .await
        .unwrap();
    let old = api.generate_data_key(&ctx()).await.unwrap();
    let v2 = worker.rotate().await.unwrap();
    assert_eq!(v2, 2);
    // A key the worker wraps under the new version opens in the API at once (unknown version:
    // one re-read), and after the refresh interval the API wraps under it too.
    let fresh = worker.generate_data_key(&ctx()).await.unwrap();
    assert_eq!(fresh.wrapped.version, 2);
    api.unwrap_data_key(&fresh.wrapped, &ctx()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert_eq!(
        api.generate_data_key(&ctx()).await.unwrap().wrapped.version,
        2
    );
    api.unwrap_data_key(&old.wrapped, &ctx()).await.unwrap();
}

#[tokio::test]
async fn a_transit_key_that_is_not_derived_is_refused() {
    let admin = common::admin().await;
    let name = common::unique("plain");
    admin
        .request(
            "create a non-derived key",
            Method::POST,
            &format!("transit/keys/{name}"),
            &json!({ "type": "aes256-gcm96" }),
        )
        .await
        .unwrap();
    let err = VaultTransitProvider::connect(common::root(), TransitSettings::new(&name))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("derived"), "{err}");
}

#[tokio::test]
async fn large_rewrap_batches_are_split_and_keep_their_order() {
    // 450 keys with the default chunk size: OpenBao accepts each request (it refuses a body of
    // more than 1,000 JSON strings, which 250 items would exceed) and the order holds across
    // chunks.
    let (_admin, plan) = common::provisioned().await;
    let p = VaultTransitProvider::connect(common::userpass(&plan.users[1]), plan.transit.clone())
        .await
        .unwrap();
    let mut batch = Vec::new();
    let mut keys = Vec::new();
    for i in 0..450 {
        let c = KeyContext::new().with("wallet_id", format!("w{i}"));
        let g = p.generate_data_key(&c).await.unwrap();
        keys.push(g.plaintext);
        batch.push(coffer_keys::RewrapRequest {
            wrapped: g.wrapped,
            context: c,
        });
    }
    let v = p.rotate().await.unwrap();
    let out = p.rewrap_data_keys(&batch).await.unwrap();
    assert_eq!(out.len(), 450);
    for (i, r) in out.into_iter().enumerate() {
        let w = r.unwrap();
        assert_eq!(w.version, v);
        let k = p.unwrap_data_key(&w, &batch[i].context).await.unwrap();
        assert_eq!(k.expose_secret(), keys[i].expose_secret(), "item {i}");
    }
}

#[tokio::test]
async fn creating_or_setting_up_a_kv_key_keeps_every_version() {
    use base64::Engine as _;
    let admin = common::admin().await;
    admin
        .enable_secrets("kv", "kv", json!({ "version": "2" }))
        .await
        .unwrap();
    // A master key written by hand keeps KV's default of 10 versions: the 11th rotation would
    // destroy the first, and every data key under it.
    let key = common::unique("by-hand");
    let path = format!("crypto/master_keys/{key}");
    let material = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);
    admin
        .request(
            "write a key by hand",
            Method::POST,
            &format!("kv/data/{path}"),
            &json!({ "data": { "key": material } }),
        )
        .await
        .unwrap();
    assert_eq!(max_versions(&admin, &path).await, Some(0));
    // Read only (the API): left alone, with a warning in the log.
    VaultKvProvider::connect(common::root(), KvSettings::new(&key))
        .await
        .unwrap();
    assert_eq!(max_versions(&admin, &path).await, Some(0));
    // Allowed to create (the setup): every version kept.
    let mut settings = KvSettings::new(&key);
    settings.create_if_missing = true;
    let p = VaultKvProvider::connect(common::root(), settings)
        .await
        .unwrap();
    assert_eq!(max_versions(&admin, &path).await, Some(100_000));
    assert_eq!(p.status().await.unwrap().active_version, 1);
}

async fn max_versions(admin: &coffer_keys_vault::provision::Admin, path: &str) -> Option<u64> {
    admin
        .request(
            "read metadata",
            Method::GET,
            &format!("kv/metadata/{path}"),
            &serde_json::Value::Null,
        )
        .await
        .unwrap()["data"]["max_versions"]
        .as_u64()
}
