//! The rolling money-out window of the second-factor threshold: chunks under the threshold add
//! up to it, concurrent requests meet under the wallet's lock, and the window survives every
//! write of the wallet row (a wrong PIN's count, a data-key rotation).

use std::sync::Arc;
use std::time::Duration;

use coffer_audit::{Action, DetailValue};
use coffer_clock::ManualClock;
use futures_util::future::join_all;

use super::pins::wallet_audit;
use super::{Backend, Client, PIN, assert_verifies, balance, config, funded, observed, req};
use crate::{Error, Ledger, LedgerError, StepUp, UserId, parse_pin};

const HOUR: Duration = Duration::from_secs(3_600);

fn needs_second_factor<T: std::fmt::Debug>(r: Result<T, Error>) {
    assert!(
        matches!(r, Err(Error::Rejected(LedgerError::SecondFactorRequired))),
        "{r:?}"
    );
}

/// At most 10.00 may leave a wallet within 24 hours without a second factor: split into chunks,
/// sent at once, or after the wallet's row was rewritten, it is never passed; 25 hours on, the
/// window is empty again.
pub async fn money_out_past_the_window_cap_needs_a_second_factor(backend: &dyn Backend) {
    // Half past the hour, so that "an hour later" is in the next bucket.
    let clock = Arc::new(ManualClock::at_unix_secs(1_800_001_800));
    let (store, audit) = backend.open(backend.keys()).await;
    let ledger = Ledger::new(store, backend.keys(), observed(audit), config());
    assert_eq!(ledger.config().outflow_window_hours, 24);
    let l = Client::new(ledger.with_clock(clock.clone()));
    let alice = UserId::new();
    let (a, b) = (
        funded(&l, alice, 100_000).await,
        funded(&l, UserId::new(), 0).await,
    );
    let cap = StepUp {
        cap_minor: Some(1_000),
    };
    let (pin, wrong) = (parse_pin(PIN).unwrap(), parse_pin("000000").unwrap());
    let out = |amount, key: &str| req(amount, key).parse(&l).unwrap();

    // Chunks under the cap add up to it, withdrawals and transfers alike.
    Ledger::withdraw(&l, alice, a, &pin, &out(600, "w1"), cap)
        .await
        .unwrap();
    clock.advance(HOUR);
    Ledger::transfer(&l, alice, a, b, &pin, &out(400, "t1"), cap)
        .await
        .unwrap();
    needs_second_factor(Ledger::withdraw(&l, alice, a, &pin, &out(1, "w2"), cap).await);
    needs_second_factor(Ledger::transfer(&l, alice, a, b, &wrong, &out(1, "t2"), cap).await);
    assert_eq!(
        l.wallet(crate::Caller::User(alice), a)
            .await
            .unwrap()
            .failed_pins,
        0,
        "refused before the PIN is looked at"
    );
    // A retry of a request that was done is answered as before, full window or not.
    let again = Ledger::withdraw(&l, alice, a, &pin, &out(600, "w1"), cap)
        .await
        .unwrap();
    assert_eq!(again.money.amount.minor(), 600);
    // With a second factor (no cap) it goes through, and counts too.
    Ledger::withdraw(&l, alice, a, &pin, &out(500, "w3"), StepUp::default())
        .await
        .unwrap();
    // The window survives the row's other writes: a wrong PIN counted, a data-key rotation.
    assert!(matches!(
        Ledger::withdraw(&l, alice, a, &wrong, &out(1, "w4"), StepUp::default()).await,
        Err(Error::WrongPin { .. })
    ));
    l.rotate_data_key(a).await.unwrap();
    needs_second_factor(Ledger::withdraw(&l, alice, a, &pin, &out(1, "w5"), cap).await);

    // 24 hours after the first chunk its bucket may still count (a window covers 25 clock
    // hours, so the cap bites up to an hour early, never late); 25 hours after it, it is gone,
    // and what left an hour later (400 + 500) still counts.
    clock.advance(HOUR * 23);
    needs_second_factor(Ledger::withdraw(&l, alice, a, &pin, &out(101, "w6"), cap).await);
    clock.advance(HOUR);
    needs_second_factor(Ledger::withdraw(&l, alice, a, &pin, &out(101, "w7"), cap).await);
    Ledger::withdraw(&l, alice, a, &pin, &out(100, "w8"), cap)
        .await
        .unwrap();
    needs_second_factor(Ledger::withdraw(&l, alice, a, &pin, &out(1, "w9"), cap).await);
    // An hour later the 400 + 500 are gone too; the 100 is not.
    clock.advance(HOUR);
    needs_second_factor(Ledger::withdraw(&l, alice, a, &pin, &out(901, "w10"), cap).await);
    Ledger::withdraw(&l, alice, a, &pin, &out(900, "w11"), cap)
        .await
        .unwrap();
    assert_eq!(balance(&l, a).await, 100_000 - 600 - 400 - 500 - 100 - 900);

    // Sent at once, chunks of 3.00 under a cap of 10.00: three pass, whoever comes first; the
    // others are refused under the wallet's lock (each had seen an empty window when loaded).
    let c = funded(&l, alice, 100_000).await;
    let sent = join_all((0..8).map(|i| {
        let (l, pin) = (&l, &pin);
        async move {
            let request = out(300, &format!("burst-{i}"));
            Ledger::withdraw(l, alice, c, pin, &request, cap).await
        }
    }))
    .await;
    let passed = sent.iter().filter(|r| r.is_ok()).count();
    for r in sent.into_iter().filter(Result::is_err) {
        needs_second_factor(r);
    }
    assert_eq!(passed, 3);
    assert_eq!(balance(&l, c).await, 100_000 - 900);

    // Each refusal is audited with its reason (the `failed_transactions` alert counts them).
    let mut for_mfa = 0;
    for wallet in [a, c] {
        for_mfa += wallet_audit(backend, wallet)
            .await
            .iter()
            .filter(|r| r.event.action == Action::TransactionFailed)
            .filter(|r| {
                matches!(r.event.details.get("reason"),
                    Some(DetailValue::Code(code)) if code.as_str() == "mfa_required")
            })
            .count();
    }
    assert_eq!(for_mfa, 2 + 1 + 4 + 5);
    assert_verifies(&l).await;
}
