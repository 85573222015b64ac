//! The key port's contract suite against the local provider: key file, key file behind the
//! unwrap cache, and inline (read-only) material.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns

use std::sync::Arc;

use coffer_keys::testkit::Subject;
use coffer_keys::{CacheConfig, CachingKeyProvider, KeyProvider};
use coffer_keys_local::{DEFAULT_KEY_ID, LocalKeyProvider, LocalKeySource, generate_inline_key};

fn file_provider() -> (LocalKeyProvider, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let provider = LocalKeyProvider::open(
        LocalKeySource::File {
            path: dir.path().join("keys/master.json"),
            create_if_missing: true,
        },
        DEFAULT_KEY_ID,
    )
    .unwrap();
    (provider, dir)
}

mod key_file {
    use super::*;
    coffer_keys::key_provider_contract_tests!(|| async {
        let (p, dir) = file_provider();
        Subject::new(Arc::new(p) as Arc<dyn KeyProvider>, dir)
    });
}

mod key_file_behind_cache {
    use super::*;
    coffer_keys::key_provider_contract_tests!(|| async {
        let (p, dir) = file_provider();
        let cached = CachingKeyProvider::new(Arc::new(p), CacheConfig::default());
        Subject::new(Arc::new(cached) as Arc<dyn KeyProvider>, dir)
    });
}

mod inline_material {
    use super::*;
    coffer_keys::key_provider_contract_tests!(|| async {
        let p =
            LocalKeyProvider::open(LocalKeySource::Inline(generate_inline_key()), "inline-test")
                .unwrap();
        Subject::new(Arc::new(p) as Arc<dyn KeyProvider>, ())
    });
}

mod key_file_metered {
    use super::*;
    coffer_keys::key_provider_contract_tests!(|| async {
        let (p, dir) = file_provider();
        let metered = coffer_keys::MeteredKeyProvider::new(Arc::new(p));
        Subject::new(Arc::new(metered) as Arc<dyn KeyProvider>, dir)
    });
}

/// The decorator counts what reaches the provider: calls, errors, time.
#[tokio::test]
async fn the_metered_decorator_counts_calls_and_errors() {
    let (p, _dir) = file_provider();
    let metered = coffer_keys::MeteredKeyProvider::new(Arc::new(p));
    let ctx = coffer_keys::KeyContext::new().with("purpose", "test");
    let generated = metered.generate_data_key(&ctx).await.unwrap();
    metered
        .unwrap_data_key(&generated.wrapped, &ctx)
        .await
        .unwrap();
    let other = coffer_keys::KeyContext::new().with("purpose", "other");
    assert!(
        metered
            .unwrap_data_key(&generated.wrapped, &other)
            .await
            .is_err()
    );
    let stats = metered.stats();
    let of = |op: &str| *stats.iter().find(|s| s.operation == op).unwrap();
    assert_eq!(
        (
            of("generate_data_key").calls,
            of("generate_data_key").error_count()
        ),
        (1, 0)
    );
    assert_eq!(
        (
            of("unwrap_data_key").calls,
            of("unwrap_data_key").error_count()
        ),
        (2, 1)
    );
    assert_eq!(of("rotate").calls, 0);
}
