//! The worker's `hold_expiry` job, on the app as `coffer-worker` builds it (SQLite, the key file),
//! on a clock the test moves: a hold past its expiry is written expired at the next poll, with
//! its `hold.expired` record by the `hold-expiry` service, and counted in
//! `coffer_worker_holds_expired_total`; its money is available again.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use coffer_app::App;
use coffer_app::worker::Worker;
use coffer_audit::{AuditLog as _, AuditQuery};
use coffer_clock::ManualClock;
use coffer_ledger::{Caller, Currency, HoldStatus, MoneyRequest, StepUp, UserId, parse_pin};

#[tokio::test]
async fn the_worker_expires_a_lapsed_hold_at_its_next_poll() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::at_unix_secs(1_800_000_000));
    let app = App::build_with_clock(common::embedded(dir.path()), "coffer-worker", clock.clone())
        .await
        .unwrap();
    let ledger = app.state.ledger.clone();
    let (alice, pin) = (UserId::new(), parse_pin("493817").unwrap());
    let usd = Currency::parse("USD").unwrap();
    let w = ledger.open_wallet(alice, usd, &pin).await.unwrap().id;
    let request = |amount, key| MoneyRequest::parse(amount, "USD", None, key, i64::MAX).unwrap();
    ledger
        .deposit(alice, w, &request(1_000, "fund"))
        .await
        .unwrap();
    let hold = ledger
        .place_hold(
            alice,
            w,
            None,
            &pin,
            &request(400, "payout"),
            Some(60),
            StepUp::default(),
        )
        .await
        .unwrap();
    let worker = Worker::new(&app);
    let expired_total = |w: &Worker| {
        w.metrics()
            .render()
            .lines()
            .find(|l| l.starts_with("coffer_worker_holds_expired_total "))
            .map(str::to_owned)
    };

    worker.tick().await;
    let seen = ledger.hold(Caller::User(alice), hold.id).await.unwrap();
    assert_eq!(seen.status, HoldStatus::Active, "not yet due");

    clock.advance(Duration::from_secs(61));
    worker.tick().await;
    let records = app
        .audit
        .list(&AuditQuery {
            limit: 1000,
            ..AuditQuery::default()
        })
        .await
        .unwrap();
    let expiries: Vec<_> = records
        .iter()
        .filter(|r| r.event.action.as_str() == "hold.expired")
        .map(|r| format!("{:?}", r.event.actor))
        .collect();
    assert_eq!(expiries.len(), 1, "written expired once");
    assert!(expiries[0].contains("hold-expiry"), "{expiries:?}");
    assert_eq!(
        expired_total(&worker).as_deref(),
        Some("coffer_worker_holds_expired_total 1")
    );
    let view = ledger.wallet(Caller::User(alice), w).await.unwrap();
    assert_eq!(
        view.available.minor(),
        1_000,
        "its money is available again"
    );

    worker.tick().await;
    assert_eq!(
        expired_total(&worker).as_deref(),
        Some("coffer_worker_holds_expired_total 1"),
        "nothing left to expire"
    );
}
