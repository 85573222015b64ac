//! The key port's contract suite against moto's KMS (started by `cargo xtask test`), each case
//! with a key of its own.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;

use coffer_keys::testkit::Subject;
use coffer_keys_aws::AwsKmsProvider;

coffer_keys::key_provider_contract_tests!(|| async {
    let key = common::new_key().await;
    let p = AwsKmsProvider::connect(common::settings(&common::url(), &key))
        .await
        .unwrap();
    Subject::new(Arc::new(p), ())
});

/// An alias works as the key id (rotation calls are made with the resolved ARN).
#[tokio::test]
async fn an_alias_names_the_key() {
    use coffer_keys::{KeyContext, KeyProvider as _};
    let key = common::new_key().await;
    let alias = format!("alias/coffer-{key}");
    common::admin_client(&common::url())
        .await
        .create_alias()
        .alias_name(&alias)
        .target_key_id(&key)
        .send()
        .await
        .unwrap();
    let p = AwsKmsProvider::connect(common::settings(&common::url(), &alias))
        .await
        .unwrap();
    let ctx = KeyContext::new().with("wallet_id", "w1");
    let g = p.generate_data_key(&ctx).await.unwrap();
    assert_eq!(g.wrapped.key_id, alias);
    assert_eq!(p.rotate().await.unwrap(), 2);
    let k = p.unwrap_data_key(&g.wrapped, &ctx).await.unwrap();
    assert_eq!(k.expose_secret(), g.plaintext.expose_secret());
}
