//! `cargo xtask bench ledger` (or `cargo bench -p coffer-store --bench ledger`), against the
//! Postgres of `COFFER_TEST_DATABASE_URL`. Figures: docs/BENCHMARKS.md.
//!
//! 1. Ledger transfers per second from 16 concurrent tasks among 64 wallets (double entry,
//!    encrypted balances and postings, Ed25519 signatures, audit chain, idempotency keys), with
//!    the PIN cache warm, and their p50/p99 latency; in the same run, alternating with it,
//!    `pgbench -b tpcb-like -c 16 -j 2 -M prepared` on the same server, at pgbench's default
//!    scale (1) and at scale 16 (a branch per client, as pgbench's documentation advises). The
//!    CPU each side's transactions cost the service process and the Postgres server is read
//!    from /proc, since on a 2-core machine CPU is what bounds both.
//!    In the same rounds, held transfers placed and then captured in full by their payee, pairs
//!    per second: what a hold and its capture cost beside one transfer; and both again on the
//!    same wallets written without their outbox events (the store decorator
//!    `coffer_ledger::testkit::Watched::without_events` drops them before the write, so the
//!    events are still built and sealed, but no row is inserted), which of the two runs first
//!    alternating by round: the outbox's cost, as the ratio of the medians.
//! 2. PIN verifications per second at the default KDF cost (600,000 PBKDF2 iterations), cache
//!    off, as many in flight as the verifier allows (2).
//!
//! Without `--bench` (as `cargo test --all-targets` runs it) it does a short smoke run.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout,
    clippy::cast_precision_loss,
    missing_docs
)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use coffer_audit::{AlertConfig, EntityId, ObservedAuditLog};
use coffer_keys::KeyProvider;
use coffer_keys::cache::{CacheConfig, CachingKeyProvider};
use coffer_keys_local::{LocalKeyProvider, LocalKeySource, generate_inline_key};
use coffer_ledger::pin::{PinVerifier, PinVerifierConfig};
use coffer_ledger::testkit::Watched;
use coffer_ledger::{
    Caller, Currency, IdempotencyKey, Ledger, LedgerConfig, MoneyRequest, Pin, StepUp, UserId,
    WalletId, parse_pin,
};
use coffer_store::audit::PgAuditLog;
use coffer_store::ledger::PgLedgerStore;
use coffer_store::testing;
use rand::RngExt;

const TASKS: usize = 16;
const PIN: &str = "582914";

struct Setup {
    ledger: Arc<Ledger>,
    /// The same store and keys, writing no outbox event.
    bare: Arc<Ledger>,
    wallets: Arc<Vec<(UserId, WalletId)>>,
}

async fn setup(wallets: usize, kdf_iterations: u32) -> Setup {
    let keys: Arc<dyn KeyProvider> = Arc::new(CachingKeyProvider::new(
        Arc::new(
            LocalKeyProvider::open(LocalKeySource::Inline(generate_inline_key()), "bench").unwrap(),
        ),
        CacheConfig::default(),
    ));
    let pool = testing::pg_pool_with_connections(TASKS as u32 + 4).await;
    let audit = PgAuditLog::open(pool.clone(), keys.as_ref()).await.unwrap();
    let store = Arc::new(PgLedgerStore::new(pool, audit.clone()));
    let observed = Arc::new(ObservedAuditLog::new(
        Arc::new(audit),
        AlertConfig::default(),
        EntityId::parse("bench").unwrap(),
    ));
    let config = LedgerConfig {
        kdf_iterations,
        ..LedgerConfig::default()
    };
    let bare = Arc::new(Ledger::new(
        Arc::new(Watched::without_events(store.clone())),
        keys.clone(),
        observed.clone(),
        config.clone(),
    ));
    let ledger = Arc::new(Ledger::new(store, keys, observed, config));
    let mut made = Vec::new();
    for _ in 0..wallets {
        let owner = UserId::new();
        let w = ledger
            .open_wallet(owner, Currency::parse("USD").unwrap(), &pin())
            .await
            .unwrap()
            .id;
        ledger
            .deposit(owner, w, &request(1_000_000_000, &format!("seed-{w}")))
            .await
            .unwrap();
        // Warms the PIN caches: the KDF runs once per wallet and ledger, here.
        for (l, name) in [(&ledger, "warm"), (&bare, "warm-bare")] {
            l.withdraw(
                owner,
                w,
                &pin(),
                &request(1, &format!("{name}-{w}")),
                StepUp::default(),
            )
            .await
            .unwrap();
        }
        made.push((owner, w));
    }
    Setup {
        ledger,
        bare,
        wallets: Arc::new(made),
    }
}

/// What a client sends, parsed as the API parses it (part of the work measured).
fn request(amount: i64, key: &str) -> MoneyRequest {
    MoneyRequest::parse(amount, "USD", None, key, i64::MAX).unwrap()
}

fn pin() -> Pin {
    parse_pin(PIN).unwrap()
}

struct Run {
    tps: f64,
    p50: Duration,
    p99: Duration,
}

/// What each step of a run does.
#[derive(Clone, Copy, Debug)]
enum Op {
    /// One transfer.
    Transfer,
    /// One transfer, written without its outbox events.
    BareTransfer,
    /// A held transfer placed, then captured in full by its payee.
    HoldAndCapture,
    /// The same, written without outbox events.
    BareHoldAndCapture,
}

impl Op {
    fn label(self) -> &'static str {
        match self {
            Self::Transfer => "ledger transfers",
            Self::BareTransfer => "transfers, no events",
            Self::HoldAndCapture => "hold + capture pairs",
            Self::BareHoldAndCapture => "hold + capture pairs, no events",
        }
    }
}

async fn measure(s: &Setup, op: Op, duration: Duration, round: usize) -> Run {
    let start = Instant::now();
    let tasks: Vec<_> = (0..TASKS)
        .map(|task| {
            let ledger = match op {
                Op::BareTransfer | Op::BareHoldAndCapture => s.bare.clone(),
                Op::Transfer | Op::HoldAndCapture => s.ledger.clone(),
            };
            let wallets = s.wallets.clone();
            tokio::spawn(async move {
                let mut rng: rand::rngs::StdRng = rand::make_rng();
                let mut latencies = Vec::new();
                let mut i = 0u64;
                while start.elapsed() < duration {
                    let (owner, from) = wallets[rng.random_range(0..wallets.len())];
                    let (payee, to) = wallets[rng.random_range(0..wallets.len())];
                    if from == to {
                        continue;
                    }
                    let key = format!("r{round}-{op:?}-t{task}-{i}");
                    let began = Instant::now();
                    match op {
                        Op::Transfer | Op::BareTransfer => {
                            ledger
                                .transfer(
                                    owner,
                                    from,
                                    to,
                                    &pin(),
                                    &request(1, &key),
                                    StepUp::default(),
                                )
                                .await
                                .unwrap();
                        }
                        Op::HoldAndCapture | Op::BareHoldAndCapture => {
                            let hold = ledger
                                .place_hold(
                                    owner,
                                    from,
                                    Some(to),
                                    &pin(),
                                    &request(1, &key),
                                    None,
                                    StepUp::default(),
                                )
                                .await
                                .unwrap();
                            let key = IdempotencyKey::parse(&format!("{key}-capture")).unwrap();
                            ledger
                                .capture_hold(Caller::User(payee), hold.id, None, &key)
                                .await
                                .unwrap();
                        }
                    }
                    latencies.push(began.elapsed());
                    i += 1;
                }
                latencies
            })
        })
        .collect();
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let elapsed = start.elapsed();
    all.sort();
    let pct = |p: f64| all[((all.len() as f64 - 1.0) * p) as usize];
    Run {
        tps: all.len() as f64 / elapsed.as_secs_f64(),
        p50: pct(0.50),
        p99: pct(0.99),
    }
}

async fn pin_verifications(duration: Duration, iterations: u32) -> f64 {
    use coffer_crypto::{Aad, DataKey, KdfParams, KeyRef, Pin, WalletSigningKey, derive_pin_key};
    let verifier = Arc::new(PinVerifier::new(PinVerifierConfig {
        ttl: Duration::ZERO,
        ..PinVerifierConfig::default()
    }));
    let params = KdfParams::generate(iterations).unwrap();
    let dek = DataKey::generate();
    let aad = Aad::new("bench");
    let pin = Pin::parse(PIN).unwrap();
    let key = WalletSigningKey::generate();
    let sealed = key
        .seal(
            &derive_pin_key(&pin, &params),
            &dek,
            &KeyRef::version_only(1),
            &aad,
        )
        .unwrap();
    let public = key.public_key();
    let wallet = WalletId::new();
    let shared = Arc::new((params, dek, aad, pin, sealed, public));
    let start = Instant::now();
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let (verifier, shared) = (verifier.clone(), shared.clone());
            tokio::spawn(async move {
                let (params, dek, aad, pin, sealed, public) = &*shared;
                let mut n = 0u64;
                while start.elapsed() < duration {
                    verifier
                        .unseal(wallet, pin, params, sealed, dek, aad, public)
                        .await
                        .unwrap();
                    n += 1;
                }
                n
            })
        })
        .collect();
    let mut n = 0;
    for t in tasks {
        n += t.await.unwrap();
    }
    n as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    let (full, rt) = coffer_macros::bench_start!("ledger");
    rt.block_on(async {
        let (wallets, kdf, seconds, rounds) = if full {
            (64, coffer_crypto::pin::DEFAULT_ITERATIONS, 20, 3)
        } else {
            (4, coffer_crypto::pin::MIN_ITERATIONS, 1, 1)
        };
        // pgbench's default scale (1: one branch row all clients update) and the scale its
        // documentation advises for 16 clients (16: a branch each).
        let mut scales = Vec::new();
        for scale in if full { &["1", "16"][..] } else { &["1"][..] } {
            let url = testing::pgbench_url(&format!("coffer_pgbench_s{scale}")).await;
            testing::pgbench(&["-i", "-q", "-s", scale, &url]);
            scales.push((*scale, url));
        }
        let setup = setup(wallets, kdf).await;
        println!("ledger: {wallets} wallets, {TASKS} tasks; pgbench: tpcb-like, -c 16 -j 2 -M prepared");
        let mut theirs: Vec<Vec<f64>> = vec![Vec::new(); scales.len()];
        // Per op, its rate in each round; with and without events alternate which runs first.
        let mut rates: [Vec<f64>; 4] = Default::default();
        for round in 0..rounds {
            let order = if round % 2 == 0 {
                [Op::Transfer, Op::BareTransfer, Op::HoldAndCapture, Op::BareHoldAndCapture]
            } else {
                [Op::BareTransfer, Op::Transfer, Op::BareHoldAndCapture, Op::HoldAndCapture]
            };
            for op in order {
                let (own0, server0) = testing::cpu_seconds();
                let run = measure(&setup, op, Duration::from_secs(seconds), round).await;
                let (own1, server1) = testing::cpu_seconds();
                let n = run.tps * seconds as f64;
                println!(
                    "round {round}: {:<32} {:>8.1}/s  p50 {:>6.2} ms  p99 {:>6.2} ms  \
                     CPU each: service {:>5.0} µs, Postgres {:>5.0} µs",
                    op.label(),
                    run.tps,
                    run.p50.as_secs_f64() * 1e3,
                    run.p99.as_secs_f64() * 1e3,
                    (own1 - own0) / n * 1e6,
                    (server1 - server0) / n * 1e6,
                );
                rates[op as usize].push(run.tps);
            }
            for (i, (scale, url)) in scales.iter().enumerate() {
                let (_, server0) = testing::cpu_seconds();
                let pg = testing::pgbench_tpcb(url, seconds);
                let (_, server1) = testing::cpu_seconds();
                println!(
                    "round {round}: pgbench tpcb-like s{scale:<2} {:>8.1}/s  p50 {:>6.2} ms  p99 {:>6.2} ms  \
                     CPU per transaction: Postgres {:>5.0} µs",
                    pg.tps,
                    pg.p50_ms,
                    pg.p99_ms,
                    (server1 - server0) / (pg.tps * seconds as f64) * 1e6
                );
                theirs[i].push(pg.tps);
            }
        }
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
        let median = |v: &[f64]| {
            let mut v = v.to_vec();
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        let [ours, bare, pairs, bare_pairs] = &rates;
        for ((scale, _), tps) in scales.iter().zip(&theirs) {
            println!(
                "ledger / pgbench scale {scale}: {:.2}x ({:.1} vs {:.1} transactions/s)",
                mean(ours) / mean(tps),
                mean(ours),
                mean(tps)
            );
        }
        for (what, with, without) in [("transfer", ours, bare), ("hold + capture", pairs, bare_pairs)] {
            println!(
                "outbox: a {what} with its events takes {:.3}x the time of one without \
                 (medians {:.1} vs {:.1}/s)",
                median(without) / median(with),
                median(with),
                median(without)
            );
        }
        println!(
            "hold + capture / transfer: {:.2}x the time ({:.1} pairs vs {:.1} transfers/s)",
            mean(ours) / mean(pairs),
            mean(pairs),
            mean(ours)
        );
        let report = setup
            .ledger
            .verify(coffer_ledger::verify::VerifyOptions::default(), &|_| {})
            .await
            .unwrap();
        assert!(report.ok(), "{:?}", report.findings);
        println!(
            "verified afterwards: {} wallets, {} transactions, {} signatures",
            report.wallets, report.transactions, report.signatures
        );
        let rate = pin_verifications(Duration::from_secs(seconds.min(10)), kdf).await;
        println!("PIN verifications at {kdf} iterations, cache off: {rate:.1}/s");
    });
}
