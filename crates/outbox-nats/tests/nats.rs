//! The JetStream transport against the NATS server the tests use (`COFFER_TEST_NATS_URL`,
//! default 127.0.0.1:4222; `cargo xtask test` starts one when none answers), each test on a
//! stream and subjects of its own, deleted at the end.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use coffer_ledger::WalletId;
use coffer_ledger::domain::{EventData, EventId, EventKind};
use coffer_outbox::{Message, SendError, Sink, SubjectPrefix, Target, Transport, WebhookUrl};
use coffer_outbox_nats::{NatsConfig, NatsTransport};

fn url() -> String {
    std::env::var("COFFER_TEST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".to_owned())
}

/// A transport on a fresh stream, and the stream's sink.
fn fresh() -> (NatsTransport, Sink, String) {
    let tag = uuid::Uuid::new_v4().simple().to_string();
    let stream = format!("COFFER_TEST_{tag}");
    let prefix = SubjectPrefix::parse(&format!("coffer-test.{tag}")).unwrap();
    let transport = NatsTransport::new(NatsConfig {
        url: url(),
        stream: stream.clone(),
        subject_prefix: prefix.clone(),
        duplicate_window: Duration::from_secs(600),
        timeout: Duration::from_secs(5),
        user: None,
        token: None,
        credentials_file: None,
    });
    (transport, Sink::stream(&stream, prefix, 0), stream)
}

fn message(wallet: WalletId, id: EventId) -> Message {
    let data: EventData = serde_json::from_value(serde_json::json!({
        "event_id": id.to_string(),
        "wallet_id": wallet.to_string(),
        "sequence": 1,
        "currency": "USD",
        "status": "active",
        "balance_minor": 0,
        "available_balance_minor": 0
    }))
    .unwrap();
    Message::of_event(id, EventKind::WalletOpened, 0, &data)
}

#[tokio::test]
async fn each_message_is_stored_once_under_its_id_on_its_wallets_subject() {
    let (transport, sink, stream) = fresh();
    let wallet = WalletId::new();
    let (first, second) = (
        message(wallet, EventId::new()),
        message(wallet, EventId::new()),
    );
    for m in [&first, &first, &second, &first] {
        let sent = transport.send(&sink, m).await;
        assert!(sent.result.is_ok(), "{sent:?}");
    }
    let js = transport.context().await.unwrap();
    let mut s = js.get_stream(&stream).await.unwrap();
    let info = s.info().await.unwrap();
    assert_eq!(
        info.state.messages, 2,
        "repeats within the window are dropped"
    );
    assert_eq!(info.config.duplicate_window, Duration::from_secs(600));
    let Target::Stream(prefix) = &sink.target else {
        panic!("a stream sink")
    };
    for (seq, m) in [(1, &first), (2, &second)] {
        let stored = s.get_raw_message(seq).await.unwrap();
        assert_eq!(
            stored.subject.as_str(),
            format!("{}.{wallet}", prefix.as_str())
        );
        assert_eq!(
            stored.headers.get("Nats-Msg-Id").map(|v| v.as_str()),
            Some(m.id.to_string().as_str())
        );
        assert_eq!(stored.payload.as_ref(), m.body.as_slice());
    }
    js.delete_stream(&stream).await.unwrap();
}

#[tokio::test]
async fn an_unreachable_server_fails_the_attempt_and_a_webhook_is_not_its_sink() {
    let (_, sink, _) = fresh();
    let transport = NatsTransport::new(NatsConfig {
        url: "nats://127.0.0.1:1".to_owned(),
        stream: "COFFER_TEST_UNREACHABLE".to_owned(),
        subject_prefix: SubjectPrefix::parse("coffer-test.unreachable").unwrap(),
        duplicate_window: Duration::from_secs(600),
        timeout: Duration::from_secs(1),
        user: None,
        token: None,
        credentials_file: None,
    });
    let m = message(WalletId::new(), EventId::new());
    assert_eq!(
        transport.send(&sink, &m).await.result,
        Err(SendError::Connect)
    );
    let webhook = Sink::new(
        Target::Webhook(WebhookUrl::parse("https://h.example/", false).unwrap()),
        vec![],
        0,
    );
    assert_eq!(
        transport.send(&webhook, &m).await.result,
        Err(SendError::NoTransport)
    );
}
