//! `cargo xtask bench key-providers` (it starts OpenBao and moto, as `cargo xtask test` does).
//! Figures: docs/BENCHMARKS.md. One data-key unwrap through each remote provider on a cache
//! miss (a round trip to OpenBao Transit or moto's KMS; Vault KV opens locally with the master
//! key it read), the same unwrap answered by the cache, and Transit batch re-wrap throughput.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::hint::black_box;
use std::sync::Arc;

use coffer_keys::{CacheConfig, CachingKeyProvider, KeyContext, KeyProvider, RewrapRequest};
use coffer_keys_aws::{AwsKmsProvider, KmsCredentials, KmsSettings};
use coffer_keys_vault::provision::Admin;
use coffer_keys_vault::{
    KvSettings, TransitSettings, VaultAuth, VaultConnection, VaultKvProvider, VaultTransitProvider,
};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use secrecy::SecretString;

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run `cargo xtask bench key-providers`, which starts OpenBao and moto")
    })
}

fn ctx(wallet: usize) -> KeyContext {
    KeyContext::new()
        .with("purpose", "wallet-dek")
        .with("wallet_id", format!("bench-{wallet}"))
}

async fn providers() -> Vec<(&'static str, Arc<dyn KeyProvider>)> {
    let root = VaultConnection::new(
        env("COFFER_TEST_VAULT_ADDR"),
        VaultAuth::Token(SecretString::from(env("COFFER_TEST_VAULT_TOKEN"))),
    );
    let admin = Admin::connect(root.clone()).await.unwrap();
    admin
        .enable_secrets("transit", "transit", serde_json::json!({}))
        .await
        .unwrap();
    admin
        .enable_secrets("kv", "kv", serde_json::json!({ "version": "2" }))
        .await
        .unwrap();
    let key = format!("bench-{}", std::process::id());
    let mut transit = TransitSettings::new(&key);
    transit.create_if_missing = true;
    let mut kv = KvSettings::new(&key);
    kv.create_if_missing = true;

    let url = env("COFFER_TEST_KMS_URL");
    let mut kms = KmsSettings::new("pending", "us-east-1");
    kms.endpoint_url = Some(url.clone());
    kms.credentials = KmsCredentials::Static {
        access_key_id: "testing".into(),
        secret_access_key: SecretString::from("testing"),
    };
    let client = aws_sdk_kms::Client::from_conf(
        aws_sdk_kms::Config::builder()
            .behavior_version(aws_sdk_kms::config::BehaviorVersion::latest())
            .region(aws_sdk_kms::config::Region::new("us-east-1"))
            .endpoint_url(&url)
            .credentials_provider(aws_sdk_kms::config::Credentials::new(
                "testing", "testing", None, None, "bench",
            ))
            .build(),
    );
    kms.key_id = client
        .create_key()
        .send()
        .await
        .unwrap()
        .key_metadata()
        .unwrap()
        .key_id()
        .to_owned();
    vec![
        (
            "vault-transit",
            Arc::new(
                VaultTransitProvider::connect(root.clone(), transit)
                    .await
                    .unwrap(),
            ),
        ),
        (
            "vault-kv",
            Arc::new(VaultKvProvider::connect(root, kv).await.unwrap()),
        ),
        (
            "aws-kms (moto)",
            Arc::new(AwsKmsProvider::connect(kms).await.unwrap()),
        ),
    ]
}

fn remote(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let providers = rt.block_on(providers());

    let mut group = c.benchmark_group("remote_unwrap");
    for (name, p) in &providers {
        let wrapped = rt.block_on(p.generate_data_key(&ctx(0))).unwrap().wrapped;
        group.bench_function(format!("{name}/cache_miss"), |b| {
            b.iter(|| {
                rt.block_on(p.unwrap_data_key(black_box(&wrapped), &ctx(0)))
                    .unwrap()
            });
        });
    }
    // The cache in front of the slowest path: what most reads of a busy wallet cost.
    let (_, transit) = &providers[0];
    let cached = CachingKeyProvider::new(transit.clone(), CacheConfig::default());
    let wrapped = rt
        .block_on(transit.generate_data_key(&ctx(1)))
        .unwrap()
        .wrapped;
    rt.block_on(cached.unwrap_data_key(&wrapped, &ctx(1)))
        .unwrap();
    group.bench_function("vault-transit/cache_hit", |b| {
        b.iter(|| {
            rt.block_on(cached.unwrap_data_key(black_box(&wrapped), &ctx(1)))
                .unwrap()
        });
    });
    group.finish();

    // Batch re-wrap: 200 keys, one Transit request (the provider's default chunk).
    let batch: Vec<RewrapRequest> = (0..200)
        .map(|i| RewrapRequest {
            wrapped: rt
                .block_on(transit.generate_data_key(&ctx(i)))
                .unwrap()
                .wrapped,
            context: ctx(i),
        })
        .collect();
    rt.block_on(transit.rotate()).unwrap();
    let mut group = c.benchmark_group("transit_rewrap");
    group.throughput(Throughput::Elements(200));
    group.sample_size(10);
    group.bench_function("batch_of_200", |b| {
        b.iter(|| {
            let out = rt
                .block_on(transit.rewrap_data_keys(black_box(&batch)))
                .unwrap();
            assert!(out.iter().all(Result::is_ok));
        });
    });
    group.finish();
}

criterion_group!(benches, remote);
criterion_main!(benches);
