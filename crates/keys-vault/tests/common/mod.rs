//! What the Vault tests share: the server `cargo xtask test` started, an admin session, names
//! of their own.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use coffer_keys_vault::provision::{Admin, Plan, UserSpec, setup};
use coffer_keys_vault::{KvSettings, TransitSettings, VaultAuth, VaultConnection};
use secrecy::SecretString;

/// The Vault/OpenBao the tests use. Missing is a failure, not a skip: `cargo xtask test` starts
/// a dev server and sets these.
pub fn addr() -> String {
    std::env::var("COFFER_TEST_VAULT_ADDR").expect(
        "COFFER_TEST_VAULT_ADDR is not set: run the tests with `cargo xtask test`, which starts \
         OpenBao, or point it (and COFFER_TEST_VAULT_TOKEN) at a dev Vault",
    )
}

pub fn root() -> VaultConnection {
    let token = std::env::var("COFFER_TEST_VAULT_TOKEN")
        .expect("COFFER_TEST_VAULT_TOKEN is not set (see COFFER_TEST_VAULT_ADDR)");
    VaultConnection::new(addr(), VaultAuth::Token(SecretString::from(token)))
}

/// A name no other test (or earlier run) uses.
pub fn unique(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!(
        "{prefix}-{}-{nanos:x}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

pub async fn admin() -> Admin {
    Admin::connect(root())
        .await
        .expect("the test Vault answers")
}

/// A fresh key of its own under both modes, the deploy/ policies for it, and an API and a
/// worker user holding them. Answers the plan (with the users' passwords).
pub async fn provisioned() -> (Admin, Plan) {
    let admin = admin().await;
    let key = unique("k");
    let api = format!("{key}-api");
    let worker = format!("{key}-worker");
    let plan = Plan {
        transit: TransitSettings::new(&key),
        kv: KvSettings::new(&key),
        policies: vec![
            (
                api.clone(),
                coffer_keys_vault::provision::policy_for_key(
                    coffer_keys_vault::provision::API_POLICY,
                    &key,
                ),
            ),
            (
                worker.clone(),
                coffer_keys_vault::provision::policy_for_key(
                    coffer_keys_vault::provision::WORKER_POLICY,
                    &key,
                ),
            ),
        ],
        users: vec![
            UserSpec {
                name: api.clone(),
                password: Some(SecretString::from(format!("{api}-password"))),
                policies: vec![api.clone()],
            },
            UserSpec {
                name: worker.clone(),
                password: Some(SecretString::from(format!("{worker}-password"))),
                policies: vec![worker.clone()],
            },
        ],
    };
    setup(&admin, &plan).await.expect("setup");
    (admin, plan)
}

pub fn userpass(user: &UserSpec) -> VaultConnection {
    VaultConnection::new(
        addr(),
        VaultAuth::Userpass {
            mount: "userpass".into(),
            username: user.name.clone(),
            password: user.password.clone().expect("a test user has a password"),
        },
    )
}
