//! Postgres over TLS, as `database.url` asks for it (`sslmode`, `sslrootcert`, `sslcert`,
//! `sslkey`): against a server of the test's own that takes only TLS connections with a client
//! certificate of its authority (`coffer_test_tls::postgres`), a full verification connects and the
//! store migrates and works; a server whose certificate names another host, or is signed by
//! another authority, is refused; so is a client without a certificate, or without TLS.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::str::FromStr;

use coffer_test_tls::postgres::TlsPostgres;
use sqlx::postgres::{PgConnectOptions, PgSslMode};
use sqlx::{ConnectOptions, Connection as _};

/// Verify-full to `localhost`, with the client certificate.
fn options(server: &TlsPostgres) -> PgConnectOptions {
    PgConnectOptions::from_str(&server.url("localhost")).unwrap()
}

#[tokio::test]
async fn verify_full_with_a_client_certificate_connects_and_the_store_migrates() {
    let server = coffer_test_tls::postgres::server();
    let pool = coffer_store::connect_postgres(options(server), 2)
        .await
        .unwrap();
    coffer_store::migrate_postgres(&pool).await.unwrap();
    let (tls,): (bool,) =
        sqlx::query_as("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert!(tls, "the connection is encrypted");
}

#[tokio::test]
async fn a_server_that_cannot_prove_its_name_or_a_client_without_a_certificate_is_refused() {
    let server = coffer_test_tls::postgres::server();
    let refused = |options: PgConnectOptions, why: &'static str| async move {
        match options.connect().await {
            Ok(c) => {
                let _ = c.close().await;
                panic!("connected: {why}");
            }
            Err(e) => e,
        }
    };
    // The certificate names localhost, not the address (the same URL with `localhost` connects).
    let by_address = PgConnectOptions::from_str(&server.url("127.0.0.1")).unwrap();
    refused(by_address, "a certificate for another name").await;
    refused(
        options(server).ssl_root_cert(&server.pki.other_ca),
        "a certificate of another authority",
    )
    .await;
    let without_client_cert = PgConnectOptions::from_str(&format!(
        "postgres://postgres@localhost:{}/postgres?sslmode=verify-full&sslrootcert={}",
        server.port,
        server.pki.ca.display()
    ))
    .unwrap();
    refused(without_client_cert, "no client certificate").await;
    refused(
        options(server).ssl_mode(PgSslMode::Disable),
        "no TLS at all",
    )
    .await;
}
