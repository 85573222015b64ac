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
    let url = pg_test_url();
    let options =
        PgConnectOptions::from_str(&url).expect("COFFER_TEST_DATABASE_URL is not a Postgres URL");
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
    let options = pg_test_options().await;
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
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(max)
        .connect_with(options)
        .await
        .expect("connect to the test schema");
    crate::migrate_postgres(&pool)
        .await
        .expect("migrate the test schema");
    pool
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

/// A pool on the same schema as `owner` whose connections act as the application role
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
        .max_connections(4)
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

/// `pgbench -b tpcb-like -c 16 -j 2 -M prepared -T seconds url`: (tps, average latency in ms).
pub fn pgbench_tpcb(url: &str, seconds: u64) -> (f64, f64) {
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
        url,
    ]);
    let field = |prefix: &str| -> f64 {
        out.lines()
            .find_map(|l| l.strip_prefix(prefix))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {prefix:?} in pgbench output:\n{out}"))
    };
    (field("tps = "), field("latency average = "))
}
