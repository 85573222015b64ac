//! The API with its master key in a real key manager, chosen by configuration alone: a user's
//! money journey with the key in OpenBao (KV and Transit, logging in as the API's userpass user
//! with the deploy/ policy) and in moto's KMS, the provider's calls visible in /metrics.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use coffer_app::{Config, VaultAuthMethod};
use coffer_keys_vault::provision::{API_POLICY, Admin, Plan, UserSpec, policy_for_key, setup};
use coffer_keys_vault::{KvSettings, TransitSettings, VaultAuth, VaultConnection};
use common::{Database, PIN, Server, new_key};
use reqwest::StatusCode;
use serde_json::json;

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run the tests with `cargo xtask test`, which starts OpenBao and moto")
    })
}

/// A fresh key in both Vault modes and an API user holding the deploy/ API policy for it.
async fn vault_user() -> (String, String, String) {
    let addr = env("COFFER_TEST_VAULT_ADDR");
    let admin = Admin::connect(VaultConnection::new(
        addr.clone(),
        VaultAuth::Token(env("COFFER_TEST_VAULT_TOKEN").into()),
    ))
    .await
    .unwrap();
    let key = format!("api-{}", new_key());
    let password = format!("{key}-password");
    let plan = Plan {
        transit: TransitSettings::new(&key),
        kv: KvSettings::new(&key),
        policies: vec![(key.clone(), policy_for_key(API_POLICY, &key))],
        users: vec![UserSpec {
            name: key.clone(),
            password: Some(password.clone().into()),
            policies: vec![key.clone()],
        }],
    };
    setup(&admin, &plan).await.unwrap();
    (addr, key, password)
}

fn use_vault(c: &mut Config, provider: &str, addr: String, key: String, password: String) {
    c.keys.provider = provider.parse().unwrap();
    c.keys.key_id.clone_from(&key);
    c.vault.address = addr;
    c.vault.auth = VaultAuthMethod::Userpass;
    c.vault.username = Some(key);
    c.vault.password = Some(password.as_str().into());
}

/// Register, open wallets, deposit, transfer, read history; then the key provider's calls.
async fn journey(s: &Server, provider: &str) {
    let (_, alice, _) = s.user("alice@example.com").await;
    let (_, bob, _) = s.user("bob@example.com").await;
    let a = s.wallet(&alice, "EUR").await;
    let b = s.wallet(&bob, "EUR").await;
    let (st, d) = s
        .money(
            &format!("/v1/wallets/{a}/deposits"),
            &alice,
            &new_key(),
            json!({ "amount": 5_000, "currency": "EUR" }),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{d}");
    let (st, t) = s
        .money(
            &format!("/v1/wallets/{a}/transfers"),
            &alice,
            &new_key(),
            json!({ "to_wallet_id": b, "amount": 1_250, "currency": "EUR", "pin": PIN, "memo": "lunch" }),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{t}");
    let (st, w) = s.get(&format!("/v1/wallets/{b}"), &bob).await;
    assert_eq!((st, w["balance"].as_i64()), (StatusCode::OK, Some(1_250)));
    let (st, h) = s
        .get(&format!("/v1/wallets/{a}/transactions"), &alice)
        .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(h["items"].as_array().map(Vec::len), Some(2), "{h}");

    let admin = s.admin("ops@example.com").await;
    let text = s
        .client
        .get(format!("{}/metrics", s.base))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let generated = text
        .lines()
        .find(|l| {
            l.starts_with("coffer_key_provider_calls{")
                && l.contains(&format!("provider=\"{provider}\""))
                && l.contains("operation=\"generate_data_key\"")
        })
        .unwrap_or_else(|| panic!("no generate_data_key calls of {provider} in /metrics:\n{text}"));
    let n: u64 = generated.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(n >= 2, "{generated}");
    let (st, ready) = s.get("/readyz", &admin).await;
    assert_eq!(st, StatusCode::OK, "{ready}");
}

#[tokio::test]
async fn vault_transit_by_configuration() {
    let (addr, key, password) = vault_user().await;
    let s = Server::start_with(Database::Sqlite, |c| {
        use_vault(c, "vault-transit", addr, key, password);
    })
    .await;
    journey(&s, "vault-transit").await;
    s.stop().await;
}

#[tokio::test]
async fn vault_kv_by_configuration() {
    let (addr, key, password) = vault_user().await;
    let s = Server::start_with(Database::Postgres, |c| {
        use_vault(c, "vault-kv", addr, key, password);
    })
    .await;
    journey(&s, "vault-kv").await;
    s.stop().await;
}

#[tokio::test]
async fn aws_kms_by_configuration() {
    let url = env("COFFER_TEST_KMS_URL");
    let kms = aws_sdk_kms::Client::from_conf(
        aws_sdk_kms::Config::builder()
            .behavior_version(aws_sdk_kms::config::BehaviorVersion::latest())
            .region(aws_sdk_kms::config::Region::new("eu-west-1"))
            .endpoint_url(&url)
            .credentials_provider(aws_sdk_kms::config::Credentials::new(
                "testing", "testing", None, None, "test",
            ))
            .build(),
    );
    let key = kms.create_key().send().await.unwrap();
    let key_id = key.key_metadata().unwrap().key_id().to_owned();
    let s = Server::start_with(Database::Sqlite, |c| {
        c.keys.provider = coffer_app::KeyProviderKind::AwsKms;
        c.keys.key_id = key_id;
        c.aws_kms.region = "eu-west-1".into();
        c.aws_kms.endpoint_url = Some(url);
        c.aws_kms.access_key_id = Some("testing".into());
        c.aws_kms.secret_access_key = Some("testing".into());
    })
    .await;
    journey(&s, "aws-kms").await;
    s.stop().await;
}
