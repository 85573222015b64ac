//! `cargo xtask bench ratelimit` (or `cargo bench -p coffer-ratelimit`). Figures:
//! docs/BENCHMARKS.md.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::hint::black_box;
use std::time::Duration;

use coffer_ratelimit::{InProcessLimiter, Policy};
use criterion::{Criterion, criterion_group, criterion_main};

/// One in-process check of an existing key (the hot path: every request does a few).
fn in_process(c: &mut Criterion) {
    let limiter = InProcessLimiter::new();
    // Never limited during the run: measures the check, not the refusal path.
    let p = Policy::new("bench", 1_000_000, Duration::from_millis(1)).unwrap();
    for i in 0..10_000 {
        limiter
            .check_now(&format!("ip:10.0.{}.{}", i / 256, i % 256), &p, 1)
            .unwrap();
    }
    c.bench_function("ratelimit_in_process_check", |b| {
        b.iter(|| limiter.check_now(black_box("ip:10.0.3.7"), &p, 1).unwrap());
    });
    let strict = Policy::new("strict", 1, Duration::from_secs(3_600)).unwrap();
    limiter.check_now("ip:limited", &strict, 1).unwrap();
    c.bench_function("ratelimit_in_process_check_limited", |b| {
        b.iter(|| {
            limiter
                .check_now(black_box("ip:limited"), &strict, 1)
                .unwrap()
        });
    });
}

criterion_group!(benches, in_process);
criterion_main!(benches);
