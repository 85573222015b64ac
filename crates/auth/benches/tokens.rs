//! `cargo xtask bench auth` (or `cargo bench -p coffer-auth`): access-token verification
//! (target ≤ 50 µs, revocation check on the in-memory list included) and issue, and the cost
//! of one password hash at OWASP's Argon2id parameters. Figures: docs/BENCHMARKS.md.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::Arc;

use coffer_auth::password::{NewPassword, PasswordHasher};
use coffer_auth::{Grant, InMemoryRevocationList, SigningKey, TokenConfig, TokenKeys, Tokens};
use criterion::{Criterion, criterion_group, criterion_main};

fn tokens(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let config = TokenConfig::default();
    let tokens = Tokens::new(
        config.clone(),
        TokenKeys::new(SigningKey::generate().unwrap(), &config),
        Arc::new(InMemoryRevocationList::new()),
    );
    let roles = vec!["user".to_owned()];
    let amr = vec!["pwd".to_owned()];
    let grant = Grant {
        subject: "0199a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b",
        client_id: "web",
        roles: &roles,
        amr: &amr,
        session: None,
        epochs: None,
    };
    let (token, _) = rt.block_on(tokens.issue(&grant)).unwrap();
    c.bench_function("access token verify (RS256, revocation check)", |b| {
        b.iter(|| rt.block_on(tokens.verify(&token)).unwrap());
    });
    c.bench_function("access token issue (RS256 sign)", |b| {
        b.iter(|| rt.block_on(tokens.issue(&grant)).unwrap());
    });
}

fn passwords(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .build()
        .unwrap();
    let hasher = PasswordHasher::new(1).unwrap();
    let password = NewPassword::parse("plum tart at noon").unwrap();
    let stored = rt.block_on(hasher.hash(&password)).unwrap();
    let mut group = c.benchmark_group("password");
    group.sample_size(10);
    group.bench_function("Argon2id verify (m=19 MiB, t=2, p=1)", |b| {
        b.iter(|| {
            assert!(
                rt.block_on(hasher.verify("plum tart at noon", Some(&stored)))
                    .unwrap()
            );
        });
    });
    group.finish();
}

criterion_group!(benches, tokens, passwords);
criterion_main!(benches);
