//! `cargo xtask bench crypto` (or `cargo bench -p coffer-crypto`). Figures: docs/BENCHMARKS.md.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::hint::black_box;
use std::time::Duration;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use coffer_crypto::{
    Aad, DataKey, HmacKey, KdfParams, KeyRef, Pin, WalletSigningKey, blind_index, derive_pin_key,
    open, pin, seal,
};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

/// Envelope seal/open next to a bare aes-gcm call on the same input, key and associated data.
fn envelope(c: &mut Criterion) {
    let raw = [0x42u8; 32];
    let key = DataKey::from_slice(&raw).unwrap();
    let cipher = Aes256Gcm::new(&raw.into());
    let aad = Aad::new("wallet.balance")
        .with("0190c3a2-7d1e-7c8a-9b1f-3c2d4e5f6a7b")
        .with("balance");
    let key_ref = KeyRef::version_only(1);
    let nonce = Nonce::from([7u8; 12]);

    let mut group = c.benchmark_group("envelope");
    for size in [32usize, 1024] {
        let msg = vec![0xA5u8; size];
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_with_input(
            BenchmarkId::new("bare_aes_gcm_encrypt", size),
            &msg,
            |b, msg| {
                b.iter(|| {
                    cipher
                        .encrypt(
                            &nonce,
                            Payload {
                                msg: black_box(msg),
                                aad: aad.as_bytes(),
                            },
                        )
                        .unwrap()
                });
            },
        );
        group.bench_with_input(BenchmarkId::new("seal", size), &msg, |b, msg| {
            b.iter(|| seal(&key, &key_ref, &aad, black_box(msg)).unwrap());
        });
        let bare_ct = cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: &msg,
                    aad: aad.as_bytes(),
                },
            )
            .unwrap();
        group.bench_with_input(
            BenchmarkId::new("bare_aes_gcm_decrypt", size),
            &bare_ct,
            |b, ct| {
                b.iter(|| {
                    cipher
                        .decrypt(
                            &nonce,
                            Payload {
                                msg: black_box(ct),
                                aad: aad.as_bytes(),
                            },
                        )
                        .unwrap()
                });
            },
        );
        let env = seal(&key, &key_ref, &aad, &msg).unwrap();
        group.bench_with_input(BenchmarkId::new("open", size), &env, |b, env| {
            b.iter(|| open(&key, &aad, black_box(env)).unwrap());
        });
    }
    group.finish();
}

/// One PIN-key derivation at the default cost: how many PIN checks per second a core can do.
fn pin_kdf(c: &mut Criterion) {
    let mut group = c.benchmark_group("pin_kdf");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(15));
    let pin = Pin::parse("123456").unwrap();
    let params = KdfParams::generate(pin::DEFAULT_ITERATIONS).unwrap();
    group.bench_function("pbkdf2_sha256_600k", |b| {
        b.iter(|| derive_pin_key(black_box(&pin), &params));
    });
    group.finish();
}

fn others(c: &mut Criterion) {
    let key = HmacKey::generate();
    c.bench_function("blind_index_email", |b| {
        b.iter(|| blind_index(&key, "email", black_box(" Ann.Example@Example.COM ")));
    });
    let sk = WalletSigningKey::generate();
    let msg = [0x11u8; 160];
    c.bench_function("ed25519_sign_160B", |b| b.iter(|| sk.sign(black_box(&msg))));
    let sig = sk.sign(&msg);
    let pk = sk.public_key();
    c.bench_function("ed25519_verify_160B", |b| {
        b.iter(|| pk.verify(black_box(&msg), &sig).unwrap());
    });
}

criterion_group!(benches, envelope, pin_kdf, others);
criterion_main!(benches);
