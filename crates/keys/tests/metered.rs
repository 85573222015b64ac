//! The metered decorator counts what reaches the provider by outcome, and per minute for the
//! audit log: a wrapped key that does not open is a `corrupt` error (a decryption failure).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use coffer_keys::{KeyContext, KeyProvider, MeteredKeyProvider};
use coffer_keys_local::{LocalKeyProvider, LocalKeySource, generate_inline_key};

#[tokio::test]
async fn calls_are_counted_by_outcome_and_per_minute() {
    let local = LocalKeyProvider::open(LocalKeySource::Inline(generate_inline_key()), "m").unwrap();
    let p = MeteredKeyProvider::new(Arc::new(local));
    let ctx = KeyContext::new().with("wallet_id", "w1");
    let g = p.generate_data_key(&ctx).await.unwrap();
    p.unwrap_data_key(&g.wrapped, &ctx).await.unwrap();
    let mut bad = g.wrapped.clone();
    let last = bad.ciphertext.len() - 1;
    bad.ciphertext[last] ^= 1;
    p.unwrap_data_key(&bad, &ctx).await.unwrap_err();
    p.unwrap_data_key(&g.wrapped, &KeyContext::new())
        .await
        .unwrap_err();

    let unwrap = p
        .stats()
        .into_iter()
        .find(|s| s.operation == "unwrap_data_key")
        .unwrap();
    assert_eq!(unwrap.calls, 3);
    let corrupt = unwrap
        .errors
        .iter()
        .find(|(k, _)| *k == "corrupt")
        .unwrap()
        .1;
    assert_eq!(corrupt, 2);
    assert_eq!(unwrap.error_count(), 2);

    let rows = p
        .usage()
        .drain(SystemTime::now() + Duration::from_secs(120), false);
    // Summed over minutes: the calls may straddle a minute's end.
    let mut got = std::collections::BTreeMap::new();
    for r in &rows {
        *got.entry((r.subject.as_str(), r.operation, r.outcome))
            .or_insert(0) += r.count;
    }
    assert_eq!(
        got.into_iter().collect::<Vec<_>>(),
        [
            (("local:m", "generate_data_key", "ok"), 1),
            (("local:m", "unwrap_data_key", "corrupt"), 2),
            (("local:m", "unwrap_data_key", "ok"), 1),
        ]
    );
}
