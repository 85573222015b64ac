//! The JWKS cache with real adapters: keys skipped not fatal, rotation through the refetch,
//! single flight, rate-limited refetches, stale keys when the IdP is down, the file source,
//! and the HTTP fetcher's limits. The cache measures its intervals on tokio's clock, so a test
//! moves that clock on ([`pass`]) instead of waiting.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use coffer_auth_oidc::{
    FetchError, HttpFetcherConfig, HttpJwksFetcher, IssuerConfig, JwksError, JwksFetcher,
    JwksSource, KeySet, OidcVerifier,
};
use common::{Idp, claims, config, ec_p256, revocation, rsa};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

fn verifier(config: IssuerConfig) -> Arc<OidcVerifier> {
    Arc::new(OidcVerifier::new(config, revocation().1).unwrap())
}

/// Moves tokio's clock (the JWKS cache's) on by `by` at once, then lets it run again (the IdP
/// and the HTTP client keep working in real time). Only on a current-thread runtime.
async fn pass(by: Duration) {
    tokio::time::pause();
    tokio::time::advance(by).await;
    tokio::time::resume();
}

#[tokio::test]
async fn a_set_with_unusable_keys_still_verifies_with_its_good_ones() {
    let secret = b"an HMAC secret an IdP should never publish";
    let ec = ec_p256();
    let mut no_kid = rsa(1).jwk("x", "RS256");
    no_kid.as_object_mut().unwrap().remove("kid");
    let mut encryption = rsa(2).jwk("enc", "RS256");
    encryption["use"] = json!("enc");
    let mut mismatched_curve = ec.jwk("ec-384", "ES384");
    mismatched_curve["crv"] = json!("P-256");
    let keys = vec![
        json!({ "kty": "oct", "kid": "hmac", "alg": "HS256", "k": URL_SAFE_NO_PAD.encode(secret) }),
        json!({ "kty": "XYZ", "kid": "weird", "alg": "RS256", "q": "AQAB" }),
        rsa(1).jwk("strange-alg", "RS1024"),
        no_kid,
        encryption,
        json!({ "kty": "RSA", "kid": "short", "alg": "RS256",
                "n": URL_SAFE_NO_PAD.encode([0xc3_u8; 128]), "e": "AQAB" }),
        json!({ "kty": "RSA", "kid": "huge", "alg": "RS256",
                "n": URL_SAFE_NO_PAD.encode([0xc3_u8; 1100]), "e": "AQAB" }),
        mismatched_curve,
        json!("not even an object"),
        rsa(0).jwk("good", "RS256"),
        ec.jwk("good-ec", "ES256"),
    ];
    let parsed = KeySet::parse(&serde_json::to_vec(&json!({ "keys": keys })).unwrap()).unwrap();
    assert_eq!(parsed.kids(), vec!["good", "good-ec"]);
    assert_eq!(parsed.skipped(), 9);
    assert_eq!(
        parsed.get("good").unwrap().algorithm(),
        Algorithm::RS256,
        "pinned"
    );

    let idp = Idp::start(keys).await;
    let v = verifier(config(&idp.url));
    v.verify(&rsa(0).sign(Algorithm::RS256, "good", &claims()))
        .await
        .unwrap();
    v.verify(&ec.sign(Algorithm::ES256, "good-ec", &claims()))
        .await
        .unwrap();
    let stats = v.jwks().stats();
    assert_eq!((stats.keys, stats.skipped, stats.fetches), (2, 9, 1));

    // The skipped keys verify nothing.
    let hs256 = {
        let mut h = Header::new(Algorithm::HS256);
        h.kid = Some("hmac".into());
        jsonwebtoken::encode(&h, &claims(), &EncodingKey::from_secret(secret)).unwrap()
    };
    assert_eq!(
        v.verify(&hs256).await.unwrap_err().reason(),
        "unsupported_algorithm"
    );
    for kid in ["strange-alg", "enc", "weird"] {
        let token = rsa(2).sign(Algorithm::RS256, kid, &claims());
        assert_eq!(
            v.verify(&token).await.unwrap_err().reason(),
            "unknown_key",
            "{kid}"
        );
    }

    // A document without any usable key, or not a JWKS at all, is an error.
    let only_bad = json!({ "keys": [
        { "kty": "oct", "kid": "hmac", "k": "c2VjcmV0" },
        { "kty": "XYZ", "kid": "weird" },
    ]});
    assert_eq!(
        KeySet::parse(&serde_json::to_vec(&only_bad).unwrap()).unwrap_err(),
        JwksError::NoUsableKey { skipped: 2 }
    );
    for doc in [&b"not json"[..], br#"{"keys": "none"}"#, b"[]"] {
        assert!(matches!(KeySet::parse(doc), Err(JwksError::Malformed(_))));
    }
}

#[tokio::test]
async fn key_rotation_at_the_idp_is_picked_up_through_the_refetch() {
    let idp = Idp::start(vec![rsa(0).jwk("2025-a", "RS256")]).await;
    let v = verifier(config(&idp.url));
    let old = rsa(0).sign(Algorithm::RS256, "2025-a", &claims());
    v.verify(&old).await.unwrap();
    assert_eq!(idp.requests(), 1);

    // The IdP rotates: the new key signs, the old one is gone from its JWKS.
    idp.set_keys(vec![rsa(1).jwk("2025-b", "RS256")]);
    let new = rsa(1).sign(Algorithm::RS256, "2025-b", &claims());
    let p = v.verify(&new).await.unwrap();
    assert_eq!(p.subject, "ext-user-1");
    assert_eq!(idp.requests(), 2, "one refetch for the new kid");
    // Further tokens of the new key cost nothing.
    v.verify(&rsa(1).sign(Algorithm::RS256, "2025-b", &claims()))
        .await
        .unwrap();
    assert_eq!(idp.requests(), 2);
    // The old key went with the refetched set.
    assert_eq!(v.verify(&old).await.unwrap_err().reason(), "unknown_key");
    assert_eq!(idp.requests(), 2, "and within the interval, no refetch");
}

#[tokio::test]
async fn unknown_kids_refetch_at_most_once_per_interval() {
    let idp = Idp::start(vec![rsa(0).jwk("a", "RS256")]).await;
    let v = verifier(IssuerConfig {
        refetch_min_interval: Duration::from_millis(400),
        ..config(&idp.url)
    });
    v.verify(&rsa(0).sign(Algorithm::RS256, "a", &claims()))
        .await
        .unwrap();
    let forged = |kid: &str| rsa(2).sign(Algorithm::RS256, kid, &claims());
    assert_eq!(
        v.verify(&forged("x1")).await.unwrap_err().reason(),
        "unknown_key"
    );
    assert_eq!(idp.requests(), 2, "the first unknown kid refetches");
    for kid in ["x2", "x3", "x1"] {
        assert_eq!(
            v.verify(&forged(kid)).await.unwrap_err().reason(),
            "unknown_key"
        );
    }
    assert_eq!(idp.requests(), 2, "no refetch within the interval");
    pass(Duration::from_millis(450)).await;
    assert_eq!(
        v.verify(&forged("x4")).await.unwrap_err().reason(),
        "unknown_key"
    );
    assert_eq!(idp.requests(), 3, "one more once the interval has passed");
    assert_eq!(v.jwks().stats().unknown_kid_refetches, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_concurrent_verifications_share_one_fetch() {
    let idp = Idp::start(vec![rsa(0).jwk("a", "RS256")]).await;
    // Slow enough that all twenty are waiting while the fetch runs.
    idp.set_delay(Duration::from_millis(300));
    let v = verifier(config(&idp.url));

    let run = |key: usize, kid: &'static str| {
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..20 {
            let v = v.clone();
            let token = rsa(key).sign(Algorithm::RS256, kid, &claims());
            tasks.spawn(async move { v.verify(&token).await });
        }
        tasks
    };
    // A cold cache: twenty first verifications, one load.
    let results = run(0, "a").join_all().await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    assert_eq!(idp.requests(), 1);

    // A new kid at the IdP: twenty verifications naming it, one refetch.
    idp.set_keys(vec![rsa(0).jwk("a", "RS256"), rsa(1).jwk("b", "RS256")]);
    let results = run(1, "b").join_all().await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    assert_eq!(idp.requests(), 2);
    assert_eq!(v.jwks().stats().fetches, 2);
}

#[tokio::test]
async fn a_failing_refetch_keeps_the_cached_keys_working() {
    let idp = Idp::start(vec![rsa(0).jwk("a", "RS256")]).await;
    let v = verifier(config(&idp.url));
    let known = || rsa(0).sign(Algorithm::RS256, "a", &claims());
    v.verify(&known()).await.unwrap();

    idp.set_status(503);
    let unknown = rsa(1).sign(Algorithm::RS256, "b", &claims());
    let got = v.verify(&unknown).await.unwrap_err();
    assert_eq!(got.reason(), "unavailable", "the key is needed and missing");
    assert!(got.to_string().contains("503"), "{got}");
    v.verify(&known()).await.unwrap();
    let stats = v.jwks().stats();
    assert_eq!((stats.fetches, stats.failures, stats.keys), (2, 1, 1));

    // A document with no usable key is a failure too: the keys held stay.
    let idp = Idp::start(vec![rsa(0).jwk("a", "RS256")]).await;
    let v = verifier(config(&idp.url));
    v.verify(&known()).await.unwrap();
    idp.set_document(json!({ "keys": [{ "kty": "oct", "kid": "b", "k": "c2VjcmV0" }] }));
    assert_eq!(
        v.verify(&unknown).await.unwrap_err().reason(),
        "unavailable"
    );
    v.verify(&known()).await.unwrap();
    assert_eq!(v.jwks().current().unwrap().kids(), vec!["a"]);

    // Expired keys: the refresh fails, the stale keys serve, and the IdP is not asked again
    // until the pause after a failure has passed.
    let idp = Idp::start(vec![rsa(0).jwk("a", "RS256")]).await;
    let v = verifier(IssuerConfig {
        cache_ttl: Duration::from_millis(500),
        refetch_min_interval: Duration::from_millis(500),
        ..config(&idp.url)
    });
    v.verify(&known()).await.unwrap();
    idp.set_status(500);
    pass(Duration::from_millis(600)).await;
    v.verify(&known()).await.unwrap();
    v.verify(&known()).await.unwrap();
    assert_eq!(idp.requests(), 2, "one failed refresh, then the pause");
    assert_eq!(
        v.verify(&unknown).await.unwrap_err().reason(),
        "unavailable"
    );
    assert_eq!(idp.requests(), 2);
    idp.set_status(200);
    pass(Duration::from_millis(600)).await;
    v.verify(&known()).await.unwrap();
    assert_eq!(idp.requests(), 3, "refreshed once the IdP is back");
    assert_eq!(
        v.verify(&unknown).await.unwrap_err().reason(),
        "unknown_key",
        "the latest fetch succeeded: an unknown kid is unknown again"
    );

    // No keys yet and the IdP down: unavailable, and one attempt per pause.
    let idp = Idp::start(vec![rsa(0).jwk("a", "RS256")]).await;
    idp.set_status(502);
    let v = verifier(config(&idp.url));
    for _ in 0..3 {
        assert_eq!(
            v.verify(&known()).await.unwrap_err().reason(),
            "unavailable"
        );
    }
    assert_eq!(idp.requests(), 1);
}

#[tokio::test]
async fn a_file_source_works() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jwks.json");
    let write = |keys| {
        std::fs::write(&path, serde_json::to_vec(&json!({ "keys": keys })).unwrap()).unwrap();
    };
    write(vec![rsa(0).jwk("file-a", "RS256")]);
    let v = verifier(IssuerConfig {
        jwks: JwksSource::File(path.clone()),
        ..config("unused")
    });
    let p = v
        .verify(&rsa(0).sign(Algorithm::RS256, "file-a", &claims()))
        .await
        .unwrap();
    assert_eq!(p.roles, vec!["user".to_owned()]);
    // Replacing the file rotates: an unknown kid reads it again.
    write(vec![rsa(1).jwk("file-b", "RS256")]);
    v.verify(&rsa(1).sign(Algorithm::RS256, "file-b", &claims()))
        .await
        .unwrap();
    assert_eq!(v.jwks().stats().fetches, 2);

    let missing = verifier(IssuerConfig {
        jwks: JwksSource::File(dir.path().join("absent.json")),
        ..config("unused")
    });
    let got = missing
        .verify(&rsa(0).sign(Algorithm::RS256, "file-a", &claims()))
        .await
        .unwrap_err();
    assert_eq!(got.reason(), "unavailable");
}

/// A server answering one request with a chunked body of `size` bytes (no Content-Length).
async fn chunked_server(size: usize) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        let mut request = [0_u8; 4096];
        let _ = socket.read(&mut request).await.unwrap();
        socket
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
            .await
            .unwrap();
        let chunk = vec![b' '; 1024];
        for _ in 0..size / 1024 {
            let head = format!("{:x}\r\n", chunk.len());
            if socket.write_all(head.as_bytes()).await.is_err()
                || socket.write_all(&chunk).await.is_err()
                || socket.write_all(b"\r\n").await.is_err()
            {
                return;
            }
        }
        let _ = socket.write_all(b"0\r\n\r\n").await;
    });
    format!("http://127.0.0.1:{port}/jwks")
}

#[tokio::test]
async fn the_http_fetcher_enforces_status_size_and_timeouts() {
    let idp = Idp::start(vec![rsa(0).jwk("a", "RS256")]).await;
    let fetcher = |url: &str, config| HttpJwksFetcher::new("test", url, config).unwrap();
    let ok = fetcher(&idp.url, HttpFetcherConfig::default());
    let body = ok.fetch().await.unwrap();
    assert_eq!(KeySet::parse(&body).unwrap().kids(), vec!["a"]);

    idp.set_status(404);
    assert_eq!(ok.fetch().await.unwrap_err(), FetchError::Status(404));
    idp.set_status(200);

    // Larger than the limit: announced by Content-Length, or streamed without one.
    let small = HttpFetcherConfig {
        max_bytes: 100,
        ..HttpFetcherConfig::default()
    };
    assert_eq!(
        fetcher(&idp.url, small).fetch().await.unwrap_err(),
        FetchError::TooLarge { limit: 100 }
    );
    let streamed = chunked_server(64 * 1024).await;
    let limited = HttpFetcherConfig {
        max_bytes: 10 * 1024,
        ..HttpFetcherConfig::default()
    };
    assert_eq!(
        fetcher(&streamed, limited).fetch().await.unwrap_err(),
        FetchError::TooLarge { limit: 10 * 1024 }
    );

    // Too slow.
    idp.set_delay(Duration::from_secs(3));
    let impatient = HttpFetcherConfig {
        timeout: Duration::from_millis(300),
        ..HttpFetcherConfig::default()
    };
    assert_eq!(
        fetcher(&idp.url, impatient).fetch().await.unwrap_err(),
        FetchError::Timeout
    );

    // Nobody listening.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        format!("http://127.0.0.1:{port}/jwks")
    };
    let got = fetcher(&closed, HttpFetcherConfig::default())
        .fetch()
        .await
        .unwrap_err();
    assert!(matches!(got, FetchError::Transport(_)), "{got:?}");
    assert!(
        !got.to_string().contains(&closed),
        "no URL in errors: {got}"
    );

    // The same URL rule as the configuration.
    assert!(
        HttpJwksFetcher::new(
            "test",
            "http://idp.example/jwks",
            HttpFetcherConfig::default()
        )
        .is_err()
    );
}
