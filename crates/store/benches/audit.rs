//! `cargo xtask bench audit` (or `cargo bench -p coffer-store --bench audit`), against the
//! Postgres of `COFFER_TEST_DATABASE_URL`. Figures: docs/BENCHMARKS.md.
//!
//! 1. Appends per second with 16 concurrent transactions (BEGIN; one append; COMMIT), chained,
//!    next to the same INSERT into an identical table with chaining off (no head row, no MAC).
//! 2. Verification speed over 1,000,000 records in 10,000 streams.
//!
//! Without `--bench` (as `cargo test --all-targets` runs it) it does a short smoke run.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    missing_docs
)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use coffer_audit::chain::{GENESIS, record_mac};
use coffer_audit::{
    Action, Actor, AuditEvent, AuditLog, DetailValue, EntityId, Outcome, StreamId, Subject,
};
use coffer_keys_local::{LocalKeyProvider, LocalKeySource, generate_inline_key};
use coffer_store::audit::PgAuditLog;
use coffer_store::testing;
use sqlx::PgPool;

const TASKS: usize = 16;

/// stream, seq, prev_mac, mac, amount
type Row = (String, i64, Vec<u8>, Vec<u8>, i64);

fn event(stream: &str, amount: i64) -> AuditEvent {
    AuditEvent::new(
        Actor::User(EntityId::parse("u1").unwrap()),
        Action::TransactionTransfer,
        Subject::Wallet(EntityId::parse(stream).unwrap()),
        Outcome::Success,
    )
    .detail("amount_minor", DetailValue::Int(amount))
    .unwrap()
}

/// Runs `op` from TASKS tasks for `duration`; returns operations per second.
async fn throughput<F, Fut>(duration: Duration, op: F) -> f64
where
    F: Fn(usize, u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let op = Arc::new(op);
    let done = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let tasks: Vec<_> = (0..TASKS)
        .map(|t| {
            let op = op.clone();
            let done = done.clone();
            tokio::spawn(async move {
                let mut i = 0u64;
                while start.elapsed() < duration {
                    op(t, i).await;
                    i += 1;
                    done.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    done.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64()
}

async fn appends(pool: PgPool, log: Arc<PgAuditLog>, duration: Duration) {
    sqlx::raw_sql("CREATE TABLE plain_events (LIKE audit_events INCLUDING ALL)")
        .execute(&pool)
        .await
        .unwrap();
    let chained = {
        let log = log.clone();
        throughput(duration, move |t, i| {
            let log = log.clone();
            async move {
                // Each task its own streams (wallets), as unrelated transfers are.
                let stream = format!("w{t}-{}", i % 64);
                log.append(&event(&stream, i as i64)).await.unwrap();
            }
        })
        .await
    };
    let unchained = {
        let pool = pool.clone();
        throughput(duration, move |t, i| {
            let pool = pool.clone();
            async move {
                // The same event, columns and indexes; no head row, no MAC.
                let e = event(&format!("w{t}-{}", i % 64), i as i64);
                let details = serde_json::to_string(&e.details).unwrap();
                let mut tx = pool.begin().await.unwrap();
                sqlx::query(
                    "INSERT INTO plain_events (stream, seq, at_micros, actor_kind, actor_id, action, \
                     subject_kind, subject_id, outcome, request_id, details, prev_mac, mac) \
                     VALUES ($1, $2, $3, 'user', 'u1', $4, 'wallet', $5, 'success', NULL, $6::jsonb, $7, $7)",
                )
                .bind(e.stream.as_str())
                .bind(i as i64 + 1)
                .bind(e.at_micros)
                .bind(e.action.as_str())
                .bind(format!("w{t}-{}", i % 64))
                .bind(details)
                .bind([0u8; 32].as_slice())
                .execute(&mut *tx)
                .await
                .unwrap();
                tx.commit().await.unwrap();
            }
        })
        .await
    };
    println!(
        "appends/s with {TASKS} concurrent transactions: chained {chained:.0}, unchained {unchained:.0}, ratio {:.2}",
        chained / unchained
    );
}

/// Bulk-loads `n` valid records (MACs computed here, as the app would) and times verify.
async fn verify_speed(pool: PgPool, log: Arc<PgAuditLog>, key: coffer_crypto::HmacKey, n: usize) {
    let streams = 10_000usize.min(n);
    let per_stream = n / streams;
    let load_start = Instant::now();
    let mut batch: Vec<Row> = Vec::with_capacity(10_000);
    let mut heads: Vec<(String, i64, Vec<u8>)> = Vec::new();
    for s in 0..streams {
        let stream = format!("wallet:v{s}");
        let mut prev = GENESIS;
        for seq in 1..=per_stream as u64 {
            let e = event(&format!("v{s}"), seq as i64).at(1_700_000_000_000_000);
            let e = e.on_stream(StreamId::parse(&stream).unwrap());
            let mac = record_mac(&key, &e, seq, &prev);
            batch.push((
                stream.clone(),
                seq as i64,
                prev.to_vec(),
                mac.to_vec(),
                seq as i64,
            ));
            prev = mac;
            if batch.len() == 10_000 {
                flush(&pool, &mut batch).await;
            }
        }
        heads.push((stream, per_stream as i64, prev.to_vec()));
    }
    flush(&pool, &mut batch).await;
    for chunk in heads.chunks(5_000) {
        let (s, q, m): (Vec<_>, Vec<_>, Vec<_>) = chunk.iter().cloned().fold(
            (Vec::new(), Vec::new(), Vec::new()),
            |(mut a, mut b, mut c), (x, y, z)| {
                a.push(x);
                b.push(y);
                c.push(z);
                (a, b, c)
            },
        );
        sqlx::query("INSERT INTO audit_heads (stream, seq, mac) SELECT * FROM UNNEST($1::text[], $2::bigint[], $3::bytea[])")
            .bind(s)
            .bind(q)
            .bind(m)
            .execute(&pool)
            .await
            .unwrap();
    }
    sqlx::raw_sql("ANALYZE audit_events")
        .execute(&pool)
        .await
        .unwrap();
    println!("loaded {n} records in {:.1?}", load_start.elapsed());
    let start = Instant::now();
    let report = log.verify(None, &|_| {}).await.unwrap();
    let took = start.elapsed();
    assert!(report.ok, "{report:?}");
    assert_eq!(report.checked as usize, streams * per_stream);
    println!(
        "verify: {} records in {:.2?} ({:.0} records/s)",
        report.checked,
        took,
        report.checked as f64 / took.as_secs_f64()
    );
}

async fn flush(pool: &PgPool, batch: &mut Vec<Row>) {
    if batch.is_empty() {
        return;
    }
    let mut streams = Vec::new();
    let mut seqs = Vec::new();
    let mut prevs = Vec::new();
    let mut macs = Vec::new();
    let mut amounts = Vec::new();
    for (s, q, p, m, a) in batch.drain(..) {
        streams.push(s);
        seqs.push(q);
        prevs.push(p);
        macs.push(m);
        amounts.push(a);
    }
    sqlx::query(
        "INSERT INTO audit_events (stream, seq, at_micros, actor_kind, actor_id, action, subject_kind, \
         subject_id, outcome, request_id, details, prev_mac, mac) \
         SELECT s, q, 1700000000000000, 'user', 'u1', 'transaction.transfer', 'wallet', substr(s, 8), \
         'success', NULL, jsonb_build_object('amount_minor', jsonb_build_object('int', a)), p, m \
         FROM UNNEST($1::text[], $2::bigint[], $3::bytea[], $4::bytea[], $5::bigint[]) AS t(s, q, p, m, a)",
    )
    .bind(streams)
    .bind(seqs)
    .bind(prevs)
    .bind(macs)
    .bind(amounts)
    .execute(pool)
    .await
    .unwrap();
}

fn main() {
    let (full, rt) = coffer_macros::bench_start!("audit");
    rt.block_on(async {
        let provider =
            LocalKeyProvider::open(LocalKeySource::Inline(generate_inline_key()), "bench").unwrap();
        let pool = testing::pg_pool_with_connections(TASKS as u32 + 4).await;
        let log = Arc::new(PgAuditLog::open(pool.clone(), &provider).await.unwrap());
        let duration = if full {
            Duration::from_secs(15)
        } else {
            Duration::from_millis(300)
        };
        appends(pool, log, duration).await;

        // A separate schema for the verification load, under a key known here.
        let pool = testing::pg_pool_with_connections(4).await;
        let log = Arc::new(PgAuditLog::open(pool.clone(), &provider).await.unwrap());
        let wrapped: Vec<u8> = sqlx::query_scalar("SELECT wrapped FROM audit_key")
            .fetch_one(&pool)
            .await
            .unwrap();
        let wrapped = coffer_keys::WrappedKey::from_bytes(&wrapped).unwrap();
        use coffer_keys::KeyProvider as _;
        let dek = provider
            .unwrap_data_key(&wrapped, &coffer_store::audit::audit_key_context())
            .await
            .unwrap();
        let key = coffer_crypto::HmacKey::from_slice(dek.expose_secret()).unwrap();
        verify_speed(pool, log, key, if full { 1_000_000 } else { 2_000 }).await;
    });
}
