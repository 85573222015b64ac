//! `cargo xtask bench api` (or `cargo bench -p coffer-api --bench api`): transfers over HTTP/1.1
//! keep-alive from 16 concurrent clients against the whole server (routing, bearer-token
//! verification with the revocation check, JSON, the ledger with encryption, signatures and the
//! audit chain) on the Postgres of `COFFER_TEST_DATABASE_URL`, and in the same run
//! `pgbench -b tpcb-like -c 16 -j 2 -M prepared` on that server. Reports transfers/s, p50/p99,
//! the ratio to pgbench, and the process's peak RSS (server and clients share the process).
//! Figures: docs/BENCHMARKS.md.
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

use std::time::{Duration, Instant};

use coffer_app::{App, Config};
use rand::RngExt;
use serde_json::{Value, json};

const CLIENTS: usize = 16;
const PIN: &str = "582914";
const PASSWORD: &str = "correct plum tart at noon";

struct Client {
    http: reqwest::Client,
    token: String,
    wallets: Vec<String>,
}

async fn post(
    c: &reqwest::Client,
    url: &str,
    token: Option<&str>,
    key: Option<&str>,
    body: Value,
) -> Value {
    let mut req = c.post(url).json(&body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(k) = key {
        req = req.header("idempotency-key", k);
    }
    let resp = req.send().await.unwrap();
    assert!(resp.status().is_success(), "{url}: {}", resp.status());
    resp.json().await.unwrap_or(Value::Null)
}

fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn main() {
    let (full, rt) = coffer_macros::bench_start!("api");
    rt.block_on(async {
        let (seconds, rounds, wallets_per_client) = if full { (20, 2, 4) } else { (1, 1, 2) };
        let pg = coffer_store::testing::pgbench_url("coffer_pgbench_s1").await;
        coffer_store::testing::pgbench(&["-i", "-q", "-s", "1", &pg]);

        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::default();
        config.database.url = coffer_store::testing::pg_schema_url().await;
        config.database.max_connections = 32;
        config.keys.key_file = dir.path().join("master.json");
        if !full {
            config.ledger.kdf_iterations = coffer_crypto::pin::MIN_ITERATIONS;
        }
        // Rate limiting on, with budgets no bench client reaches: the default policies allow
        // a user 20 money-out requests a minute, which would be the only thing measured.
        for name in ["per_ip", "per_user", "money_out", "write", "read", "register", "login"] {
            config.rate_limit.policies.insert(
                name.to_owned(),
                coffer_app::config::PolicySetting {
                    limit: 1_000_000,
                    period_secs: 60,
                },
            );
        }
        let app = App::build(config, "coffer-api").await.unwrap();
        // As `coffer-api` runs it: the audit flushers and the revocation feed.
        let background = app.spawn_background();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let router = app.router();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(coffer_app::serve(router, listener, async {
            let _ = stopped.await;
        }));

        let mut clients = Vec::new();
        let mut all_wallets = Vec::new();
        for i in 0..CLIENTS {
            let http = reqwest::Client::builder().pool_max_idle_per_host(1).build().unwrap();
            let email = format!("bench{i}@example.com");
            post(&http, &format!("{base}/v1/auth/register"), None, None, json!({ "email": email, "password": PASSWORD })).await;
            let login = post(&http, &format!("{base}/v1/auth/login"), None, None, json!({ "email": email, "password": PASSWORD })).await;
            let token = login["access_token"].as_str().unwrap().to_owned();
            let mut wallets = Vec::new();
            for _ in 0..wallets_per_client {
                let w = post(&http, &format!("{base}/v1/wallets"), Some(&token), None, json!({ "currency": "USD", "pin": PIN })).await;
                let id = w["id"].as_str().unwrap().to_owned();
                post(&http, &format!("{base}/v1/wallets/{id}/deposits"), Some(&token), Some(&uuid::Uuid::new_v4().to_string()), json!({ "amount": 1_000_000_000, "currency": "USD" })).await;
                all_wallets.push(id.clone());
                wallets.push(id);
            }
            clients.push(Client { http, token, wallets });
        }
        // Warm the PIN cache: the first transfer from each wallet pays the KDF.
        for c in &clients {
            for w in &c.wallets {
                post(&c.http, &format!("{base}/v1/wallets/{w}/transfers"), Some(&c.token), Some(&uuid::Uuid::new_v4().to_string()),
                     json!({ "to_wallet_id": if *w == all_wallets[0] { &all_wallets[1] } else { &all_wallets[0] }, "amount": 1, "currency": "USD", "pin": PIN })).await;
            }
        }
        println!(
            "api: {CLIENTS} clients over HTTP/1.1 keep-alive, {} wallets; pgbench: tpcb-like scale 1, -c 16 -j 2 -M prepared",
            all_wallets.len()
        );
        let all_wallets = std::sync::Arc::new(all_wallets);
        let (mut ours, mut theirs, mut p99s, mut their_p99s) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for round in 0..rounds {
            let (own0, server0) = coffer_store::testing::cpu_seconds();
            let start = Instant::now();
            let duration = Duration::from_secs(seconds);
            let tasks: Vec<_> = clients
                .iter()
                .map(|c| {
                    let (http, token, mine, base, all) = (c.http.clone(), c.token.clone(), c.wallets.clone(), base.clone(), all_wallets.clone());
                    tokio::spawn(async move {
                        let mut rng: rand::rngs::StdRng = rand::make_rng();
                        let mut latencies = Vec::new();
                        while start.elapsed() < duration {
                            let from = &mine[rng.random_range(0..mine.len())];
                            let to = &all[rng.random_range(0..all.len())];
                            if from == to {
                                continue;
                            }
                            let began = Instant::now();
                            let resp = http
                                .post(format!("{base}/v1/wallets/{from}/transfers"))
                                .bearer_auth(&token)
                                .header("idempotency-key", uuid::Uuid::new_v4().to_string())
                                .json(&json!({ "to_wallet_id": to, "amount": 1, "currency": "USD", "pin": PIN }))
                                .send()
                                .await
                                .unwrap();
                            assert_eq!(resp.status(), reqwest::StatusCode::CREATED);
                            let _ = resp.bytes().await;
                            latencies.push(began.elapsed());
                        }
                        latencies
                    })
                })
                .collect();
            let mut all = Vec::new();
            for t in tasks {
                all.extend(t.await.unwrap());
            }
            let elapsed = start.elapsed().as_secs_f64();
            let (own1, server1) = coffer_store::testing::cpu_seconds();
            all.sort();
            let pct = |p: f64| all[((all.len() as f64 - 1.0) * p) as usize].as_secs_f64() * 1e3;
            let tps = all.len() as f64 / elapsed;
            let per = |cpu: f64| cpu / all.len() as f64 * 1e6;
            println!(
                "round {round}: API transfers {tps:>8.1}/s  p50 {:>6.2} ms  p99 {:>6.2} ms  \
                 CPU per transfer: server and clients {:>5.0} µs, Postgres {:>5.0} µs",
                pct(0.5),
                pct(0.99),
                per(own1 - own0),
                per(server1 - server0)
            );
            ours.push(tps);
            p99s.push(pct(0.99));
            let run = coffer_store::testing::pgbench_tpcb(&pg, seconds);
            println!(
                "round {round}: pgbench       {:>8.1}/s  p50 {:>6.2} ms  p99 {:>6.2} ms",
                run.tps, run.p50_ms, run.p99_ms
            );
            theirs.push(run.tps);
            their_p99s.push(run.p99_ms);
        }
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
        let worst = |v: &[f64]| v.iter().copied().fold(0.0, f64::max);
        println!(
            "api / pgbench: {:.2}x ({:.1} vs {:.1} transactions/s); worst p99 {:.1} ms (pgbench's {:.1} ms); peak RSS {} MiB",
            mean(&ours) / mean(&theirs),
            mean(&ours),
            mean(&theirs),
            worst(&p99s),
            worst(&their_p99s),
            peak_rss_kib() / 1024
        );
        let _ = stop.send(());
        server.await.unwrap().unwrap();
        for task in background {
            task.abort();
        }
        app.shutdown().await;
    });
}
