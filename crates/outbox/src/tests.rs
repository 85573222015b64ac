#![allow(clippy::unwrap_used)]

use coffer_ledger::WalletId;
use coffer_ledger::domain::{EventId, EventKind};

use super::*;

fn attempt(outcome: Outcome) -> Attempt {
    Attempt {
        id: AttemptId::new(),
        sink: SinkId::new(),
        event: EventId::new(),
        wallet: WalletId::new(),
        seq: 1,
        kind: EventKind::TransactionPosted,
        at: 0,
        outcome,
        status: None,
        latency_ms: 0,
        error: None,
    }
}

#[test]
fn a_sinks_run_of_failures_restarts_at_its_last_delivery() {
    use Outcome::{Delivered, Erased, Failed, GaveUp};
    let run = |outcomes: &[Outcome]| {
        failure_run(&outcomes.iter().map(|o| attempt(*o)).collect::<Vec<_>>())
    };
    assert_eq!(run(&[]), (false, 0));
    assert_eq!(run(&[Failed]), (false, 1));
    assert_eq!(run(&[GaveUp, Failed]), (false, 2));
    assert_eq!(run(&[Failed, Delivered]), (true, 0));
    assert_eq!(run(&[Delivered, GaveUp, Erased, Failed]), (true, 2));
    assert_eq!(run(&[Erased]), (false, 0));
}

#[test]
fn a_message_is_the_standard_webhooks_body() {
    let url = WebhookUrl::parse("https://h.example/", false).unwrap();
    let sink = Sink::new(Target::Webhook(url), vec![], 0);
    let m = Message::test(&sink, 1_614_265_330_000_000);
    let body: serde_json::Value = serde_json::from_slice(&m.body).unwrap();
    assert_eq!(body["type"], TEST_TYPE);
    assert_eq!(body["timestamp"], "2021-02-25T15:02:10.000000Z");
    assert_eq!(body["data"]["endpoint_id"], sink.id.to_string());
    assert!(
        !format!("{m:?}").contains("endpoint_id"),
        "Debug shows no body"
    );
}
