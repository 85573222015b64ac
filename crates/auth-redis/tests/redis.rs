//! The revocation contract suite against the machine's Redis (`COFFER_TEST_REDIS_URL`, default
//! redis://127.0.0.1:6379), each test under its own key prefix, and again over TLS against a
//! Redis of the test's own that speaks only TLS (`coffer_test_tls::redis`); two replicas sharing
//! one list; and a Redis that does not answer or cannot prove who it is.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use coffer_auth::{RevocationError, RevocationList};
use coffer_auth_redis::{RedisRevocationConfig, RedisRevocationList};

fn redis_url() -> String {
    std::env::var("COFFER_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

fn list(prefix: &str) -> RedisRevocationList {
    RedisRevocationList::new(&redis_url(), prefix, RedisRevocationConfig::default()).unwrap()
}

fn fresh_prefix() -> String {
    format!("coffer-test:rev:{}", uuid::Uuid::now_v7())
}

coffer_auth::revocation_list_contract_tests!(|| async {
    Arc::new(list(&fresh_prefix())) as Arc<dyn RevocationList>
});

/// What one replica revokes, another refuses.
#[tokio::test]
async fn two_replicas_share_one_list() {
    let prefix = fresh_prefix();
    let (a, b) = (list(&prefix), list(&prefix));
    a.revoke_token("t1", SystemTime::now() + Duration::from_secs(60))
        .await
        .unwrap();
    assert!(b.status("t1", "u1").await.unwrap().token_revoked);
    let epoch = b.revoke_user("u1").await.unwrap();
    assert_eq!(a.epochs("u1").await.unwrap().0, epoch);
}

/// Every key of a list carries the list's prefix as its hash tag, so a Redis Cluster keeps
/// them in one slot and the single MGET of a check is legal there.
#[tokio::test]
async fn every_key_of_a_list_shares_one_hash_tag() {
    let prefix = fresh_prefix();
    let l = list(&prefix);
    l.revoke_token("t1", SystemTime::now() + Duration::from_secs(60))
        .await
        .unwrap();
    l.revoke_user("u1").await.unwrap();
    l.revoke_everyone().await.unwrap();
    let mut conn = redis::Client::open(redis_url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("*{prefix}*"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(keys.len(), 3, "{keys:?}");
    let tag = format!("{{{prefix}}}:");
    assert!(keys.iter().all(|k| k.starts_with(&tag)), "{keys:?}");
}

/// A Redis that refuses connections, and one that accepts and then never answers, make every
/// check fail (closed), typed, within the timeouts.
#[tokio::test]
async fn a_redis_that_does_not_answer_fails_closed() {
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_url = format!("redis://{}", silent.local_addr().unwrap());
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            held.push(socket);
        }
    });
    for url in ["redis://127.0.0.1:1", silent_url.as_str()] {
        let down = RedisRevocationList::new(
            url,
            "coffer-test:rev:down",
            RedisRevocationConfig::default(),
        )
        .unwrap();
        let started = std::time::Instant::now();
        assert!(
            matches!(
                down.status("t", "u").await,
                Err(RevocationError::Unavailable(_))
            ),
            "{url}"
        );
        assert!(started.elapsed() < Duration::from_secs(5), "{url}");
    }
}

/// The same suite over TLS: `rediss://localhost`, trusting the test's authority.
mod over_tls {
    use super::*;

    /// A list over TLS at `url`, trusting the authority in `ca`, showing the client certificate
    /// the server accepts when `identity`.
    pub(super) fn tls_list(url: &str, ca: &std::path::Path, identity: bool) -> RedisRevocationList {
        let (cert, key) = coffer_test_tls::redis::server().client_identity();
        let config = RedisRevocationConfig {
            tls_ca: Some(std::fs::read(ca).unwrap()),
            tls_client: identity.then(|| (cert, coffer_crypto::SecretBytes::new(key))),
            ..RedisRevocationConfig::default()
        };
        RedisRevocationList::new(url, &fresh_prefix(), config).unwrap()
    }

    coffer_auth::revocation_list_contract_tests!(|| async {
        let server = coffer_test_tls::redis::server();
        Arc::new(tls_list(&server.url("localhost"), &server.pki.ca, true))
            as Arc<dyn RevocationList>
    });
}

/// Over TLS, a server whose certificate another authority signed, or that names another host,
/// is refused, and so is plaintext to the TLS port; a client without the certificate the server
/// asks for is refused by the server: each check fails closed.
#[tokio::test]
async fn a_redis_that_cannot_prove_who_it_is_is_refused() {
    let server = coffer_test_tls::redis::server();
    let plaintext = format!("redis://localhost:{}", server.port);
    for (what, list) in [
        (
            "another authority",
            over_tls::tls_list(&server.url("localhost"), &server.pki.other_ca, true),
        ),
        (
            "another name",
            over_tls::tls_list(&server.url("127.0.0.1"), &server.pki.ca, true),
        ),
        (
            "no client certificate",
            over_tls::tls_list(&server.url("localhost"), &server.pki.ca, false),
        ),
        (
            "no TLS",
            RedisRevocationList::new(
                &plaintext,
                &fresh_prefix(),
                RedisRevocationConfig::default(),
            )
            .unwrap(),
        ),
    ] {
        assert!(
            matches!(
                list.status("t", "u").await,
                Err(RevocationError::Unavailable(_))
            ),
            "{what}"
        );
    }
    // The right authority and name: answers.
    let good = over_tls::tls_list(&server.url("localhost"), &server.pki.ca, true);
    assert!(!good.status("t", "u").await.unwrap().token_revoked);
}
