//! `cargo xtask bench auth` (or `cargo bench -p coffer-auth`): access-token verification
//! (target ≤ 50 µs, revocation check on the in-memory list included) and issue. Figures:
//! docs/BENCHMARKS.md.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::Arc;

use coffer_auth::{Grant, InMemoryRevocationList, KeyRing, SigningKey, TokenConfig, Tokens};
use criterion::{Criterion, criterion_group, criterion_main};

fn tokens(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let config = TokenConfig::default();
    let tokens = Tokens::new(
        config.clone(),
        KeyRing::new(SigningKey::generate().unwrap(), &config),
        Arc::new(InMemoryRevocationList::new()),
    );
    let roles = vec!["user".to_owned()];
    let grant = Grant {
        subject: "0199a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b",
        client_id: "web",
        roles: &roles,
        amr: &["pwd"],
    };
    let (token, _) = rt.block_on(tokens.issue(&grant)).unwrap();
    c.bench_function("access token verify (RS256, revocation check)", |b| {
        b.iter(|| rt.block_on(tokens.verify(&token)).unwrap());
    });
    c.bench_function("access token issue (RS256 sign)", |b| {
        b.iter(|| rt.block_on(tokens.issue(&grant)).unwrap());
    });
}

criterion_group!(benches, tokens);
criterion_main!(benches);
