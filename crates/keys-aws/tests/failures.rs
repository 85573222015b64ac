//! KMS down, refusing or misconfigured: typed errors within the timeout, never a secret in them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use coffer_keys::KeyError;
use coffer_keys_aws::{AwsKmsProvider, KmsCredentials};
use secrecy::SecretString;

#[tokio::test]
async fn an_endpoint_that_refuses_connections_is_unavailable() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut s = common::settings(&format!("http://127.0.0.1:{port}"), "k");
    s.timeout = Duration::from_millis(500);
    let err = AwsKmsProvider::connect(s).await.unwrap_err();
    assert!(matches!(err, KeyError::Unavailable { .. }), "{err:?}");
}

#[tokio::test]
async fn an_endpoint_that_never_answers_is_unavailable_within_the_timeout() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hold = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            open.push(socket);
        }
    });
    let mut s = common::settings(&format!("http://{addr}"), "k");
    s.timeout = Duration::from_millis(300);
    let started = Instant::now();
    let err = AwsKmsProvider::connect(s).await.unwrap_err();
    assert!(matches!(err, KeyError::Unavailable { .. }), "{err:?}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    hold.abort();
}

/// Against a moto that checks credentials (`INITIAL_NO_AUTH_ACTION_COUNT=0`, started by
/// `cargo xtask test` next to the open one).
#[tokio::test]
async fn unknown_credentials_are_denied_and_the_secret_stays_out_of_the_error() {
    let url = std::env::var("COFFER_TEST_KMS_AUTH_URL").expect(
        "COFFER_TEST_KMS_AUTH_URL is not set: run the tests with `cargo xtask test`, which starts \
         a moto that checks credentials",
    );
    let mut s = common::settings(&url, "alias/anything");
    s.credentials = KmsCredentials::Static {
        access_key_id: "AKIAUNKNOWN000000000".into(),
        secret_access_key: SecretString::from("wrong-secret-4711"),
    };
    let err = AwsKmsProvider::connect(s).await.unwrap_err();
    assert!(matches!(err, KeyError::Denied { .. }), "{err:?}");
    assert!(!format!("{err} {err:?}").contains("4711"));
}

#[tokio::test]
async fn a_missing_key_is_not_found_and_a_disabled_one_is_denied() {
    let err = AwsKmsProvider::connect(common::settings(
        &common::url(),
        "11111111-2222-3333-4444-555555555555",
    ))
    .await
    .unwrap_err();
    assert!(matches!(err, KeyError::NotFound { .. }), "{err:?}");

    let key = common::new_key().await;
    common::admin_client(&common::url())
        .await
        .disable_key()
        .key_id(&key)
        .send()
        .await
        .unwrap();
    let err = AwsKmsProvider::connect(common::settings(&common::url(), &key))
        .await
        .unwrap_err();
    assert!(matches!(err, KeyError::Denied { .. }), "{err:?}");
}
