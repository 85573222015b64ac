//! `cargo xtask bench ratelimit` (or `cargo bench -p coffer-ratelimit-redis`): Redis checks per
//! second from 16 concurrent tasks on loopback, against the machine's Redis.
//! Without `--bench` (as `cargo test --all-targets` runs it) it does a short smoke run.
#![allow(clippy::unwrap_used, clippy::print_stdout, missing_docs)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use coffer_ratelimit::{Policy, RateLimiter};
use coffer_ratelimit_redis::{RedisLimiter, RedisLimiterConfig};

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let url =
        std::env::var("COFFER_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let limiter = Arc::new(
            RedisLimiter::new(&url, "coffer-bench:rl", RedisLimiterConfig::default()).unwrap(),
        );
        let p = Arc::new(Policy::new("bench", 1_000_000, Duration::from_secs(1)).unwrap());
        let duration = if full {
            Duration::from_secs(10)
        } else {
            Duration::from_millis(200)
        };
        let done = Arc::new(AtomicU64::new(0));
        let start = Instant::now();
        let mut latencies = Vec::new();
        let tasks: Vec<_> = (0..16)
            .map(|t| {
                let (limiter, p, done) = (limiter.clone(), p.clone(), done.clone());
                tokio::spawn(async move {
                    let mut lat = Vec::new();
                    let mut i = 0u64;
                    while start.elapsed() < duration {
                        let s = Instant::now();
                        limiter
                            .check(&format!("ip:{t}.{}", i % 1_000), &p, 1)
                            .await
                            .unwrap();
                        lat.push(s.elapsed());
                        i += 1;
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                    lat
                })
            })
            .collect();
        for t in tasks {
            latencies.extend(t.await.unwrap());
        }
        latencies.sort_unstable();
        let pct = |q: f64| latencies[((latencies.len() as f64 - 1.0) * q) as usize];
        if !full {
            println!(
                "redis limiter bench: smoke run (not --bench), figures below are not measurements"
            );
        }
        println!(
            "redis checks/s with 16 concurrent tasks: {:.0} (p50 {:?}, p99 {:?})",
            done.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64(),
            pct(0.5),
            pct(0.99)
        );
    });
}
