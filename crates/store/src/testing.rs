//! Test support: every test gets its own Postgres schema or SQLite file, so tests run in
//! parallel without seeing each other's rows.
//!
//! Postgres tests use the database named by `COFFER_TEST_DATABASE_URL` (default
//! `postgres://postgres@127.0.0.1:5432/coffer_test`, created when missing). They fail, loudly,
//! when the server does not answer: `cargo xtask test` makes sure it does.
#![allow(clippy::expect_used, clippy::panic)]

use std::str::FromStr;

use rand::Rng;
use sqlx::postgres::{PgConnectOptions, PgPool};
use sqlx::sqlite::SqlitePool;
use sqlx::{ConnectOptions, Connection};

/// The test database URL.
#[must_use]
pub fn pg_test_url() -> String {
    std::env::var("COFFER_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/coffer_test".to_owned())
}

fn random_name(prefix: &str) -> String {
    let mut bytes = [0u8; 8];
    rand::rng().fill_bytes(&mut bytes);
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("{prefix}_{hex}")
}

/// Options for the test database itself, creating it when it does not exist.
async fn pg_test_options() -> PgConnectOptions {
    pg_options_for(None).await
}

/// Options for `database` on the test server (the test database when `None`), creating it
/// when it does not exist.
async fn pg_options_for(database: Option<&str>) -> PgConnectOptions {
    let url = pg_test_url();
    let mut options =
        PgConnectOptions::from_str(&url).expect("COFFER_TEST_DATABASE_URL is not a Postgres URL");
    if let Some(database) = database {
        options = options.database(database);
    }
    if options.connect().await.is_ok() {
        return options;
    }
    let database = options.get_database().unwrap_or("coffer_test").to_owned();
    let mut admin = options
        .clone()
        .database("postgres")
        .connect()
        .await
        .unwrap_or_else(|e| {
            panic!(
                "Postgres at {url} does not answer ({e}). Start it, or run the tests with \
                 `cargo xtask test`, which starts it"
            )
        });
    // Another test may create it at the same moment; either way it exists afterwards.
    let _ = sqlx::query(&format!("CREATE DATABASE \"{database}\""))
        .execute(&mut admin)
        .await;
    let _ = admin.close().await;
    options
}

/// A fresh schema in the test database, migrated; the pool's connections use it.
pub async fn pg_pool() -> PgPool {
    pg_pool_with_connections(8).await
}

/// As [`pg_pool`], with a given pool size.
pub async fn pg_pool_with_connections(max: u32) -> PgPool {
    fresh_schema(pg_test_options().await, max).await
}

/// As [`pg_pool`], in `database` on the test server (created when missing): for a test whose
/// database-wide effects (`NOTIFY`) must not meet other tests'.
pub async fn pg_pool_in_database(database: &str) -> PgPool {
    fresh_schema(pg_options_for(Some(database)).await, 8).await
}

/// As [`pg_pool`], on the server and database `options` name (a test's own server).
pub async fn pg_pool_on(options: PgConnectOptions, max: u32) -> PgPool {
    fresh_schema(options, max).await
}

/// A fresh, empty schema in the test database, not migrated: for an upgrade test that lays down
/// an older release's schema and rows itself.
pub async fn pg_empty_pool() -> PgPool {
    empty_schema(pg_test_options().await, 4).await
}

async fn fresh_schema(options: PgConnectOptions, max: u32) -> PgPool {
    let pool = empty_schema(options, max).await;
    crate::migrate_postgres(&pool)
        .await
        .expect("migrate the test schema");
    pool
}

async fn empty_schema(options: PgConnectOptions, max: u32) -> PgPool {
    let schema = random_name("t");
    let mut conn = options
        .connect()
        .await
        .expect("connect to the test database");
    sqlx::query(&format!("CREATE SCHEMA {schema}"))
        .execute(&mut conn)
        .await
        .expect("create a test schema");
    let _ = conn.close().await;
    let options = options.options([("search_path", schema.as_str())]);
    sqlx::postgres::PgPoolOptions::new()
        .max_connections(max)
        .connect_with(options)
        .await
        .expect("connect to the test schema")
}

/// A fresh schema in the test database (migrated), as a URL whose connections use it: for code
/// that opens its own pool from configuration (the app, its end-to-end tests and benchmark).
pub async fn pg_schema_url() -> String {
    let pool = pg_pool_with_connections(1).await;
    let schema: String = sqlx::query_scalar("SELECT current_schema()")
        .fetch_one(&pool)
        .await
        .expect("current schema");
    pool.close().await;
    format!("{}?options=-c%20search_path%3D{schema}", pg_test_url())
}

/// A fresh SQLite database in a temporary directory (kept alive by the returned guard).
pub async fn sqlite_pool() -> (SqlitePool, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", dir.path().join("coffer.db").display());
    let pool = crate::connect_sqlite(&url).await.expect("open SQLite");
    (pool, dir)
}

/// A pool on the same schema as `owner`, as large, whose connections act as the application role
/// `coffer_app` (as the API and worker do in production).
pub async fn pg_app_pool(owner: &PgPool) -> PgPool {
    let schema: String = sqlx::query_scalar("SELECT current_schema()")
        .fetch_one(owner)
        .await
        .expect("current schema");
    let options = pg_test_options()
        .await
        .options([("search_path", schema.as_str())]);
    sqlx::postgres::PgPoolOptions::new()
        .max_connections(owner.options().get_max_connections())
        .after_connect(|conn, _| {
            Box::pin(async move {
                sqlx::Executor::execute(&mut *conn, "SET ROLE coffer_app").await?;
                Ok(())
            })
        })
        .connect_with(options)
        .await
        .expect("connect as the application role")
}

/// The URL of a pgbench database on the test server, created when missing (benchmarks compare
/// against `pgbench` on the same server).
pub async fn pgbench_url(database: &str) -> String {
    let url = pg_test_url();
    let pool = pg_pool_with_connections(1).await;
    // Another run may have created it: either way it exists next.
    let _ = sqlx::query(&format!("CREATE DATABASE {database}"))
        .execute(&pool)
        .await;
    let base = url.split('?').next().unwrap_or(&url);
    let (server, _) = base.rsplit_once('/').expect("a database URL");
    format!("{server}/{database}")
}

/// Runs `pgbench` with `args`; its standard output.
pub fn pgbench(args: &[&str]) -> String {
    let out = std::process::Command::new("pgbench")
        .args(args)
        .output()
        .expect("pgbench runs (it ships with the PostgreSQL server packages)");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "pgbench {args:?} failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// What a pgbench run measured.
#[derive(Debug, Clone, Copy)]
pub struct PgbenchRun {
    /// Transactions per second.
    pub tps: f64,
    /// Latency percentiles over every transaction, milliseconds.
    pub p50_ms: f64,
    /// See `p50_ms`.
    pub p99_ms: f64,
}

/// `pgbench -b tpcb-like -c 16 -j 2 -M prepared -T seconds url`, with every transaction's
/// latency logged (`-l`) for the percentiles.
pub fn pgbench_tpcb(url: &str, seconds: u64) -> PgbenchRun {
    let dir = tempfile::tempdir().expect("a directory for pgbench's logs");
    let prefix = dir.path().join("pgbench").display().to_string();
    let secs = seconds.to_string();
    let out = pgbench(&[
        "-b",
        "tpcb-like",
        "-c",
        "16",
        "-j",
        "2",
        "-M",
        "prepared",
        "-T",
        &secs,
        "-l",
        "--log-prefix",
        &prefix,
        url,
    ]);
    let tps = out
        .lines()
        .find_map(|l| l.strip_prefix("tps = "))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no tps in pgbench output:\n{out}"));
    // Each line: client id, transaction number, latency in µs, ...
    let mut micros: Vec<u64> = Vec::new();
    for entry in std::fs::read_dir(dir.path()).expect("pgbench's logs") {
        let log = std::fs::read_to_string(entry.expect("a log").path()).expect("a log");
        micros.extend(log.lines().filter_map(|l| {
            l.split_whitespace()
                .nth(2)
                .and_then(|v| v.parse::<u64>().ok())
        }));
    }
    assert!(!micros.is_empty(), "pgbench logged no transactions");
    micros.sort_unstable();
    #[allow(
        clippy::cast_precision_loss,
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss
    )]
    let pct = |p: f64| micros[((micros.len() - 1) as f64 * p) as usize] as f64 / 1e3;
    PgbenchRun {
        tps,
        p50_ms: pct(0.5),
        p99_ms: pct(0.99),
    }
}

/// CPU seconds used so far by this process and by the Postgres server (its live processes,
/// plus what its exited backends left in the postmaster's children counters), from /proc.
#[must_use]
#[allow(clippy::cast_precision_loss)]
pub fn cpu_seconds() -> (f64, f64) {
    fn fields(stat: &str) -> Option<(String, Vec<u64>)> {
        let (head, rest) = stat.rsplit_once(") ")?;
        let comm = head.split_once(" (")?.1.to_owned();
        let nums = rest
            .split_whitespace()
            .map(|f| f.parse().unwrap_or(0))
            .collect();
        Some((comm, nums))
    }
    // Fields after the command: state is index 0, so utime/stime/cutime/cstime are 11..=14.
    let ticks = |v: &[u64], children: bool| -> u64 {
        let own = v.get(11).unwrap_or(&0) + v.get(12).unwrap_or(&0);
        if children {
            own + v.get(13).unwrap_or(&0) + v.get(14).unwrap_or(&0)
        } else {
            own
        }
    };
    let own = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| fields(&s))
        .map_or(0, |(_, v)| ticks(&v, false));
    let mut server = 0;
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        if let Some((comm, v)) = std::fs::read_to_string(entry.path().join("stat"))
            .ok()
            .and_then(|s| fields(&s))
            && comm == "postgres"
        {
            server += ticks(&v, true);
        }
    }
    (own as f64 / 100.0, server as f64 / 100.0)
}
