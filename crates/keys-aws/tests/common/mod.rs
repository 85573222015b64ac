//! What the KMS tests share: the moto server `cargo xtask test` started, and keys of their own.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use coffer_keys_aws::{KmsCredentials, KmsSettings};
use secrecy::SecretString;

/// The moto server the tests use. Missing is a failure, not a skip: `cargo xtask test` starts
/// one and sets this.
pub fn url() -> String {
    std::env::var("COFFER_TEST_KMS_URL").expect(
        "COFFER_TEST_KMS_URL is not set: run the tests with `cargo xtask test`, which starts \
         moto, or point it at a KMS-compatible endpoint",
    )
}

pub fn settings(url: &str, key_id: &str) -> KmsSettings {
    let mut s = KmsSettings::new(key_id, "us-east-1");
    s.endpoint_url = Some(url.to_owned());
    s.credentials = KmsCredentials::Static {
        access_key_id: "testing".into(),
        secret_access_key: SecretString::from("testing"),
    };
    s
}

pub async fn admin_client(url: &str) -> aws_sdk_kms::Client {
    let config = aws_sdk_kms::Config::builder()
        .behavior_version(aws_sdk_kms::config::BehaviorVersion::latest())
        .region(aws_sdk_kms::config::Region::new("us-east-1"))
        .endpoint_url(url)
        .credentials_provider(aws_sdk_kms::config::Credentials::new(
            "testing", "testing", None, None, "test",
        ))
        .build();
    aws_sdk_kms::Client::from_conf(config)
}

/// A new symmetric key of its own; answers its id.
pub async fn new_key() -> String {
    let client = admin_client(&url()).await;
    let created = client
        .create_key()
        .description("coffer test")
        .send()
        .await
        .expect("moto creates a key");
    created.key_metadata().unwrap().key_id().to_owned()
}
