//! `cargo xtask bench keys` (or `cargo bench -p coffer-keys`). Figures: docs/BENCHMARKS.md.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::hint::black_box;
use std::sync::Arc;

use coffer_keys::{CacheConfig, CachingKeyProvider, KeyContext, KeyProvider};
use coffer_keys_local::{LocalKeyProvider, LocalKeySource, generate_inline_key};
use criterion::{Criterion, criterion_group, criterion_main};

/// An unwrap served from the cache, next to the same unwrap done by the local provider.
fn unwrap(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let local: Arc<dyn KeyProvider> = Arc::new(
        LocalKeyProvider::open(LocalKeySource::Inline(generate_inline_key()), "bench").unwrap(),
    );
    let cached = CachingKeyProvider::new(local.clone(), CacheConfig::default());
    let ctx = KeyContext::new()
        .with("purpose", "wallet-dek")
        .with("wallet_id", "0190c3a2-7d1e-7c8a-9b1f-3c2d4e5f6a7b");
    let wrapped = rt.block_on(local.generate_data_key(&ctx)).unwrap().wrapped;
    // Fill the cache with other wallets so the hit is measured on a realistic map.
    for i in 0..10_000 {
        let c = ctx.clone().with("wallet_id", i.to_string());
        let w = rt.block_on(local.generate_data_key(&c)).unwrap().wrapped;
        rt.block_on(cached.unwrap_data_key(&w, &c)).unwrap();
    }
    rt.block_on(cached.unwrap_data_key(&wrapped, &ctx)).unwrap();

    let mut group = c.benchmark_group("data_key_unwrap");
    group.bench_function("cache_hit", |b| {
        b.iter(|| {
            rt.block_on(cached.unwrap_data_key(black_box(&wrapped), &ctx))
                .unwrap()
        });
    });
    group.bench_function("local_provider_no_cache", |b| {
        b.iter(|| {
            rt.block_on(local.unwrap_data_key(black_box(&wrapped), &ctx))
                .unwrap()
        });
    });
    group.finish();
    assert!(cached.stats().hits > 0);
}

criterion_group!(benches, unwrap);
criterion_main!(benches);
