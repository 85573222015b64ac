//! What the store's integration tests share: a master key provider, raw dumps of a test
//! database for the plaintext scans, a mockall key provider for failure injection, and the
//! options of the test's own TLS-only Postgres, and the contract suites' Postgres databases.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::sync::Arc;

use coffer_keys::{KeyError, KeyProvider};
use coffer_keys_local::{LocalKeyProvider, LocalKeySource, generate_inline_key};
use sqlx::postgres::PgPool;
use sqlx::sqlite::SqlitePool;

/// A fresh in-memory master key.
pub fn provider() -> Arc<dyn KeyProvider> {
    Arc::new(
        LocalKeyProvider::open(LocalKeySource::Inline(generate_inline_key()), "test-master")
            .expect("inline key"),
    )
}

/// Everything in an SQLite database's file and its write-ahead log, byte for byte.
pub async fn sqlite_raw_dump(pool: &SqlitePool, dir: &std::path::Path) -> Vec<u8> {
    sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
        .execute(pool)
        .await
        .expect("checkpoint");
    let mut raw = Vec::new();
    for entry in std::fs::read_dir(dir).expect("list the database directory") {
        raw.extend(std::fs::read(entry.expect("entry").path()).expect("read a database file"));
    }
    raw
}

/// Every row of every table in the test's schema, in Postgres's text form (bytea as hex);
/// `expected` must be among the tables (the scan sees the right schema).
pub async fn pg_raw_dump(pool: &PgPool, expected: &str) -> Vec<u8> {
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables \
         WHERE table_schema = current_schema() ORDER BY 1",
    )
    .fetch_all(pool)
    .await
    .expect("list tables");
    assert!(tables.iter().any(|t| t == expected), "{tables:?}");
    let mut raw = Vec::new();
    for table in tables {
        let rows: Vec<String> = sqlx::query_scalar(&format!("SELECT t::text FROM {table} t"))
            .fetch_all(pool)
            .await
            .expect("dump a table");
        for row in rows {
            raw.extend(row.into_bytes());
            raw.push(b'\n');
        }
    }
    raw
}

/// Each statement, run as the application role on `pool`, is refused for lack of privilege.
pub async fn assert_refused_to_app_role(pool: &PgPool, statements: &[&str]) {
    for sql in statements {
        let e = sqlx::query(sql).execute(pool).await.unwrap_err();
        let code = e
            .as_database_error()
            .and_then(|d| d.code())
            .map(|c| c.into_owned());
        assert_eq!(code.as_deref(), Some("42501"), "{sql}: {e}");
    }
}

/// A key provider that times out.
pub fn timed_out() -> KeyError {
    KeyError::Unavailable {
        provider: "mock".into(),
        reason: "timed out after 2s".into(),
    }
}

// Not every test binary scripts a provider.
#[allow(unused_imports)]
pub use coffer_keys::testkit::MockProvider;

/// Options for the test's own Postgres that takes only TLS with a client certificate
/// (`coffer_test_tls::postgres`): verify-full to `localhost`, with the certificate.
pub fn tls_pg_options() -> sqlx::postgres::PgConnectOptions {
    use std::str::FromStr;
    sqlx::postgres::PgConnectOptions::from_str(
        &coffer_test_tls::postgres::server().url("localhost"),
    )
    .unwrap()
}

/// A contract suite's Postgres database: the stores run as the application role (`coffer_app`,
/// as in production, so the suite holds with its grants) on the test server, as the schema owner
/// on the TLS one; tampering and the raw dump always as the owner.
pub struct PgBackend {
    /// The schema owner's pool.
    pub pool: PgPool,
    /// The pool the stores use.
    pub app: PgPool,
    /// The master key provider.
    pub keys: Arc<dyn KeyProvider>,
}

impl PgBackend {
    /// On the test server: the stores as `coffer_app`.
    pub async fn new(pool: PgPool) -> Self {
        Self {
            app: coffer_store::testing::pg_app_pool(&pool).await,
            pool,
            keys: provider(),
        }
    }

    /// On another server (the TLS one), everything as the schema owner.
    pub fn owner_only(pool: PgPool) -> Self {
        Self {
            app: pool.clone(),
            pool,
            keys: provider(),
        }
    }
}
