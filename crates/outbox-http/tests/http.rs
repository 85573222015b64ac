//! The transport against real HTTP servers on loopback (allowed here by the policy's
//! `allow_private`, as a test or on-premises deployment sets it), and the refusals with the
//! default policy.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use coffer_outbox::{
    Message, SecretUnavailable, SendError, SigningSource, Sink, Target, Transport, WebhookUrl,
};
use coffer_outbox_http::{GuardedResolver, HttpConfig, HttpTransport};
use coffer_webhooks::{AddressPolicy, SigningSecret};

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

struct Fixed;

#[async_trait]
impl SigningSource for Fixed {
    async fn signing(&self, _: &Sink, _: i64) -> Result<Vec<SigningSecret>, SecretUnavailable> {
        Ok(vec![SigningSecret::parse(SECRET).unwrap()])
    }
}

/// One request as the server got it.
type Request = (HeaderMap, Vec<u8>);

#[derive(Clone, Default)]
struct Seen(Arc<Mutex<Vec<Request>>>);

/// A server answering `status` on `/in` after `delay` (and 200 on `/elsewhere`, where a
/// followed redirect would go), recording every request.
async fn server(
    status: StatusCode,
    location: Option<&'static str>,
    delay: Duration,
) -> (SocketAddr, Seen) {
    let seen = Seen::default();
    let log = seen.clone();
    let elsewhere = seen.clone();
    let app = axum::Router::new()
        .route(
            "/in",
            post(move |headers: HeaderMap, body: axum::body::Bytes| {
                let log = log.clone();
                async move {
                    tokio::time::sleep(delay).await;
                    log.0.lock().unwrap().push((headers, body.to_vec()));
                    let mut response = axum::response::Response::new(axum::body::Body::empty());
                    *response.status_mut() = status;
                    if let Some(to) = location {
                        response
                            .headers_mut()
                            .insert("location", to.parse().unwrap());
                    }
                    response
                }
            }),
        )
        .route(
            "/elsewhere",
            post(move |headers: HeaderMap| {
                let log = elsewhere.clone();
                async move {
                    log.0.lock().unwrap().push((headers, b"elsewhere".to_vec()));
                    StatusCode::OK
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, seen)
}

fn transport(allow_private: bool) -> HttpTransport {
    HttpTransport::new(
        HttpConfig {
            timeout: Duration::from_millis(500),
            connect_timeout: Duration::from_millis(500),
            policy: AddressPolicy { allow_private },
            allow_http: true,
        },
        Arc::new(Fixed),
        coffer_clock::system(),
    )
    .unwrap()
}

fn sink(url: &str) -> Sink {
    Sink::new(
        Target::Webhook(WebhookUrl::parse(url, true).unwrap()),
        vec![],
        0,
    )
}

fn message() -> Message {
    Message::test(&sink("https://h.example/"), 1_614_265_330_000_000)
}

#[tokio::test]
async fn a_delivery_carries_the_standard_webhooks_headers_and_a_valid_signature() {
    let (addr, seen) = server(StatusCode::NO_CONTENT, None, Duration::ZERO).await;
    let m = message();
    let sent = transport(true)
        .send(&sink(&format!("http://{addr}/in")), &m)
        .await;
    assert_eq!(sent.result, Ok(204));
    let seen = seen.0.lock().unwrap();
    let (headers, body) = &seen[0];
    assert_eq!(body, &m.body);
    assert_eq!(headers["webhook-id"], m.id.to_string().as_str());
    assert_eq!(headers["content-type"], "application/json");
    let ts: i64 = headers["webhook-timestamp"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let now = i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    )
    .unwrap();
    assert!((now - ts).abs() < 60, "the attempt's time");
    let expect = SigningSecret::parse(SECRET)
        .unwrap()
        .sign(&m.id.to_string(), ts, body);
    assert_eq!(headers["webhook-signature"], expect.as_str());
    assert!(
        headers["user-agent"]
            .to_str()
            .unwrap()
            .starts_with("Coffer-Webhooks/")
    );
}

#[tokio::test]
async fn loopback_is_refused_by_default_by_name_and_by_address() {
    let (addr, seen) = server(StatusCode::OK, None, Duration::ZERO).await;
    let t = transport(false);
    for url in [
        format!("http://{addr}/in"),
        format!("http://localhost:{}/in", addr.port()),
        format!("http://[::ffff:127.0.0.1]:{}/in", addr.port()),
    ] {
        let sent = t.send(&sink(&url), &message()).await;
        assert_eq!(sent.result, Err(SendError::AddressRefused), "{url}");
    }
    assert!(
        seen.0.lock().unwrap().is_empty(),
        "nothing reached the server"
    );
    let refused = GuardedResolver::new(AddressPolicy::default())
        .resolve_host("localhost")
        .await
        .unwrap_err();
    assert!(refused.is::<coffer_outbox_http::AddressRefused>());
}

#[tokio::test]
async fn plain_http_is_refused_unless_allowed() {
    let (addr, seen) = server(StatusCode::OK, None, Duration::ZERO).await;
    let t = HttpTransport::new(
        HttpConfig {
            policy: AddressPolicy {
                allow_private: true,
            },
            ..HttpConfig::default()
        },
        Arc::new(Fixed),
        coffer_clock::system(),
    )
    .unwrap();
    let sent = t
        .send(&sink(&format!("http://{addr}/in")), &message())
        .await;
    assert_eq!(sent.result, Err(SendError::AddressRefused));
    assert!(seen.0.lock().unwrap().is_empty());
}

#[tokio::test]
async fn redirects_are_not_followed_and_other_answers_fail_with_their_status() {
    let (addr, seen) = server(StatusCode::FOUND, Some("/elsewhere"), Duration::ZERO).await;
    let sent = transport(true)
        .send(&sink(&format!("http://{addr}/in")), &message())
        .await;
    assert_eq!(sent.result, Err(SendError::Status(302)));
    assert_eq!(
        seen.0.lock().unwrap().len(),
        1,
        "the redirect was not followed"
    );
    let (addr, _) = server(StatusCode::SERVICE_UNAVAILABLE, None, Duration::ZERO).await;
    let sent = transport(true)
        .send(&sink(&format!("http://{addr}/in")), &message())
        .await;
    assert_eq!(sent.result, Err(SendError::Status(503)));
}

#[tokio::test]
async fn a_receiver_too_slow_or_absent_fails_the_attempt() {
    let (addr, _) = server(StatusCode::OK, None, Duration::from_secs(5)).await;
    let sent = transport(true)
        .send(&sink(&format!("http://{addr}/in")), &message())
        .await;
    assert_eq!(sent.result, Err(SendError::Timeout));
    assert!(sent.latency_ms >= 400, "{}", sent.latency_ms);
    // A port nothing listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let sent = transport(true)
        .send(&sink(&format!("http://{closed}/in")), &message())
        .await;
    assert_eq!(sent.result, Err(SendError::Connect));
}
