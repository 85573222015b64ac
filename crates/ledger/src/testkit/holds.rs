//! Holds: money reserved against the available balance, resolved exactly once (captured in
//! full or in part, voided, or expired), by the parties the rules name and no one else.

use std::sync::Arc;
use std::time::Duration;

use coffer_clock::ManualClock;
use futures_util::future::join_all;

use super::pins::wallet_audit_actions;
use super::{Backend, Client, PIN, balance, config, funded, ledger, observed, req};
use crate::verify::{Problem, VerifyOptions};
use crate::{Caller, Error, HoldStatus, Ledger, LedgerError, TransactionKind, UserId};

const T0: u64 = 1_800_000_000;

/// A ledger on a clock the case moves.
pub(super) async fn clocked(backend: &dyn Backend) -> (Client, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::at_unix_secs(T0));
    let (store, audit) = backend.open(backend.keys()).await;
    let l = Client::new(
        Ledger::new(store, backend.keys(), observed(audit), config()).with_clock(clock.clone()),
    );
    (l, clock)
}

async fn available(l: &Client, w: crate::WalletId) -> i64 {
    l.wallet(Caller::Admin(UserId::new()), w)
        .await
        .unwrap()
        .available
        .minor()
}

fn rejected(r: &Result<impl std::fmt::Debug, Error>, want: &LedgerError) -> bool {
    matches!(r, Err(Error::Rejected(e)) if e == want)
}

/// A held transfer reserves money: the available balance drops, money-out and new holds are
/// checked against it, and the wallet cannot close. Its payee captures part of it, once, and a
/// retry under the same key answers the same capture; the rest is released. The payer, an
/// administrator and strangers cannot capture it (not found), nor more than it holds.
pub async fn a_hold_reserves_money_until_its_payee_captures_it_once(backend: &dyn Backend) {
    let l = ledger(backend).await;
    let (alice, bob, admin) = (UserId::new(), UserId::new(), UserId::new());
    let a = funded(&l, alice, 1_000).await;
    let b = funded(&l, bob, 0).await;
    let hold = l
        .place_hold(alice, a, Some(b), PIN, &req(600, "card-auth"), None)
        .await
        .unwrap();
    assert_eq!(
        (hold.status, hold.money.amount.minor(), hold.to_wallet),
        (HoldStatus::Active, 600, Some(b))
    );
    let again = l
        .place_hold(alice, a, Some(b), PIN, &req(600, "card-auth"), None)
        .await
        .unwrap();
    assert_eq!(again.id, hold.id, "a retry answers the first hold");
    assert!(matches!(
        l.place_hold(alice, a, Some(b), PIN, &req(601, "card-auth"), None)
            .await,
        Err(Error::IdempotencyConflict)
    ));
    assert_eq!((balance(&l, a).await, available(&l, a).await), (1_000, 400));

    let funds = LedgerError::InsufficientFunds;
    assert!(rejected(
        &l.withdraw(alice, a, PIN, &req(500, "too-much")).await,
        &funds
    ));
    l.withdraw(alice, a, PIN, &req(400, "the-rest"))
        .await
        .unwrap();
    assert!(rejected(
        &l.place_hold(alice, a, None, PIN, &req(1, "one-more"), None)
            .await,
        &funds
    ));
    assert!(rejected(
        &l.close(admin, a).await,
        &LedgerError::WalletHasHolds(a)
    ));

    for by in [
        Caller::User(alice),
        Caller::Admin(admin),
        Caller::User(UserId::new()),
    ] {
        assert!(
            matches!(l.capture(by, hold.id, None, "cap").await, Err(Error::HoldNotFound(id)) if id == hold.id),
            "{by:?}"
        );
    }
    assert!(rejected(
        &l.capture(Caller::User(bob), hold.id, Some(601), "cap")
            .await,
        &LedgerError::CaptureExceedsHold
    ));
    let (captured, t) = l
        .capture(Caller::User(bob), hold.id, Some(250), "cap")
        .await
        .unwrap();
    assert_eq!(
        (t.kind, t.money.amount.minor(), t.from_wallet, t.to_wallet),
        (TransactionKind::Capture, 250, Some(a), Some(b))
    );
    assert_eq!(
        (captured.status, captured.capture),
        (HoldStatus::Captured, Some(t.id))
    );
    let (_, replayed) = l
        .capture(Caller::User(bob), hold.id, Some(250), "cap")
        .await
        .unwrap();
    assert_eq!(replayed.id, t.id, "a retry answers the same capture");
    assert!(rejected(
        &l.capture(Caller::User(bob), hold.id, Some(100), "cap-2")
            .await,
        &LedgerError::HoldResolved
    ));
    assert!(rejected(
        &l.void(Caller::User(bob), hold.id, "void").await,
        &LedgerError::HoldResolved
    ));
    // 600 - 250 stayed; the 350 not captured are released.
    assert_eq!((balance(&l, a).await, available(&l, a).await), (350, 350));
    assert_eq!(balance(&l, b).await, 250);
    let seen = l.hold(Caller::User(alice), hold.id).await.unwrap();
    assert_eq!(seen, captured);
    // Listed with the payer's wallet and with the payee's; for no one else.
    for (owner, w) in [(alice, a), (bob, b)] {
        let page = l.holds_of(Caller::User(owner), w, None, 10).await.unwrap();
        assert_eq!((page.items, page.next), (vec![captured.clone()], None));
    }
    let first = l.holds_of(Caller::Admin(admin), a, None, 1).await.unwrap();
    assert_eq!(first.next, Some(hold.id), "a full page hands on a cursor");
    assert!(
        l.holds_of(Caller::Admin(admin), a, first.next, 1)
            .await
            .unwrap()
            .items
            .is_empty()
    );
    assert!(matches!(
        l.holds_of(Caller::User(bob), a, None, 10).await,
        Err(Error::WalletNotFound(_))
    ));
    assert!(matches!(
        l.hold(Caller::User(UserId::new()), hold.id).await,
        Err(Error::HoldNotFound(_))
    ));
    let actions = wallet_audit_actions(backend, a).await;
    for action in ["hold.created", "hold.captured"] {
        assert_eq!(
            actions.iter().filter(|x| *x == action).count(),
            1,
            "{action}"
        );
    }
    let report = l.verify(VerifyOptions::default(), &|_| {}).await.unwrap();
    assert!(report.ok(), "{:?}", report.findings);
    assert_eq!(
        report.signatures, 2,
        "the withdrawal's, and the hold's for its capture"
    );

    // A capture that no longer names its hold is reported.
    backend
        .tamper("UPDATE transactions SET hold_id = NULL WHERE kind = 'capture'")
        .await;
    let report = l.verify(VerifyOptions::default(), &|_| {}).await.unwrap();
    assert!(
        report
            .findings
            .iter()
            .any(|f| f.transaction == Some(t.id) && f.problem == Problem::CaptureWithoutHold),
        "{:?}",
        report.findings
    );
    // A captured hold made active again would reserve 600 of the 350 left.
    backend
        .tamper(
            "UPDATE holds SET status = 'active', resolved_at = NULL, capture_transaction = NULL",
        )
        .await;
    let report = l.verify(VerifyOptions::default(), &|_| {}).await.unwrap();
    assert!(
        report
            .findings
            .iter()
            .any(|f| f.wallet == Some(a) && f.problem == Problem::AvailableNegative),
        "{:?}",
        report.findings
    );
}

/// A held withdrawal is voided by its payer or an administrator (a frozen wallet's too, which
/// cannot be captured), once; a retry of the void answers it. A hold past its expiry counts
/// for nothing, reads as expired and cannot be captured or voided; the next operation on its
/// wallet writes it expired, with its record. A capturing service captures a payout.
pub async fn a_hold_is_voided_or_expires_and_then_nothing_captures_it(backend: &dyn Backend) {
    let (l, clock) = clocked(backend).await;
    let (alice, admin) = (UserId::new(), UserId::new());
    let payouts = Caller::Service(UserId::new());
    let a = funded(&l, alice, 1_000).await;

    let payout = l
        .place_hold(alice, a, None, PIN, &req(300, "payout-1"), Some(60))
        .await
        .unwrap();
    assert!(matches!(
        l.void(Caller::User(UserId::new()), payout.id, "v").await,
        Err(Error::HoldNotFound(_))
    ));
    assert!(matches!(
        l.void(payouts, payout.id, "v").await,
        Err(Error::HoldNotFound(_))
    ));
    let voided = l.void(Caller::User(alice), payout.id, "v").await.unwrap();
    assert_eq!(voided.status, HoldStatus::Voided);
    assert_eq!(
        l.void(Caller::User(alice), payout.id, "v").await.unwrap(),
        voided
    );
    assert!(rejected(
        &l.void(Caller::User(alice), payout.id, "v-2").await,
        &LedgerError::HoldResolved
    ));
    assert_eq!(available(&l, a).await, 1_000);

    let frozen = l
        .place_hold(alice, a, None, PIN, &req(200, "payout-2"), Some(60))
        .await
        .unwrap();
    l.freeze(admin, a).await.unwrap();
    assert!(rejected(
        &l.capture(payouts, frozen.id, None, "c").await,
        &LedgerError::WalletFrozen
    ));
    l.void(Caller::Admin(admin), frozen.id, "v").await.unwrap();
    l.unfreeze(admin, a).await.unwrap();

    let paid = l
        .place_hold(alice, a, None, PIN, &req(100, "payout-3"), Some(60))
        .await
        .unwrap();
    let (_, t) = l.capture(payouts, paid.id, None, "c").await.unwrap();
    assert_eq!((t.kind, t.to_wallet), (TransactionKind::Capture, None));
    assert_eq!(balance(&l, a).await, 900);

    let lapsing = l
        .place_hold(alice, a, None, PIN, &req(400, "payout-4"), Some(60))
        .await
        .unwrap();
    assert_eq!(available(&l, a).await, 500);
    clock.advance(Duration::from_secs(60));
    assert_eq!(
        available(&l, a).await,
        900,
        "an expired hold counts for nothing"
    );
    let read = l.hold(Caller::User(alice), lapsing.id).await.unwrap();
    assert_eq!(read.status, HoldStatus::Expired);
    let expired = LedgerError::HoldExpired;
    assert!(rejected(
        &l.capture(payouts, lapsing.id, None, "c2").await,
        &expired
    ));
    assert!(rejected(
        &l.void(Caller::User(alice), lapsing.id, "v").await,
        &expired
    ));
    let expiries = || async {
        wallet_audit_actions(backend, a)
            .await
            .iter()
            .filter(|x| *x == "hold.expired")
            .count()
    };
    assert_eq!(expiries().await, 0, "a refused operation writes nothing");
    l.deposit(alice, a, &req(1, "touch")).await.unwrap();
    assert_eq!(expiries().await, 1, "the next operation writes the expiry");
    let stored = l.store().hold(lapsing.id).await.unwrap().unwrap();
    assert_eq!(stored.status, HoldStatus::Expired);
    l.deposit(alice, a, &req(1, "touch-2")).await.unwrap();
    assert_eq!(expiries().await, 1, "once");
    let report = l.verify(VerifyOptions::default(), &|_| {}).await.unwrap();
    assert!(report.ok(), "{:?}", report.findings);
}

/// A placement sent twice at once places one hold. A capture, a void and an operation that would
/// write the expiry, sent at once for one hold: exactly one of capture and void wins (the other is told the hold is resolved) before its
/// expiry; after it, neither does and the expiry is written once.
pub async fn capture_void_and_expiry_of_one_hold_resolve_it_once(backend: &dyn Backend) {
    let (l, clock) = clocked(backend).await;
    let (alice, admin) = (UserId::new(), UserId::new());
    let payouts = Caller::Service(UserId::new());
    let a = funded(&l, alice, 10_000).await;
    // One placement sent twice at once, then again: one hold, whose key answers each of them
    // (the key is looked up only when the placement fails on it).
    let twice = req(100, "twice");
    let (first, second) = tokio::join!(
        l.place_hold(alice, a, None, PIN, &twice, Some(60)),
        l.place_hold(alice, a, None, PIN, &twice, Some(60))
    );
    let again = l
        .place_hold(alice, a, None, PIN, &twice, Some(60))
        .await
        .unwrap();
    assert_eq!(
        (first.unwrap().id, second.unwrap().id),
        (again.id, again.id)
    );
    assert_eq!(available(&l, a).await, 9_900, "held once");
    l.void(Caller::User(alice), again.id, "void-twice")
        .await
        .unwrap();
    for round in 0..4 {
        let h = l
            .place_hold(
                alice,
                a,
                None,
                PIN,
                &req(100, &format!("h-{round}")),
                Some(60),
            )
            .await
            .unwrap();
        let (c, v) = (format!("c-{round}"), format!("v-{round}"));
        let (captured, voided) = tokio::join!(
            l.capture(payouts, h.id, None, &c),
            l.void(Caller::Admin(admin), h.id, &v)
        );
        let won = usize::from(captured.is_ok()) + usize::from(voided.is_ok());
        assert_eq!(won, 1, "{captured:?} {voided:?}");
        let resolved = LedgerError::HoldResolved;
        assert!(captured.is_ok() || rejected(&captured, &resolved));
        assert!(voided.is_ok() || rejected(&voided, &resolved));
    }
    let h = l
        .place_hold(alice, a, None, PIN, &req(100, "late"), Some(60))
        .await
        .unwrap();
    clock.advance(Duration::from_secs(61));
    let keys: Vec<String> = (0..3).map(|n| format!("t-{n}")).collect();
    let touches = join_all(keys.iter().map(|k| {
        let l = &l;
        async move { l.deposit(alice, a, &req(1, k)).await }
    }))
    .await;
    assert!(touches.iter().all(Result::is_ok));
    let (captured, voided) = tokio::join!(
        l.capture(payouts, h.id, None, "c-late"),
        l.void(Caller::Admin(admin), h.id, "v-late")
    );
    let expired = LedgerError::HoldExpired;
    assert!(rejected(&captured, &expired) && rejected(&voided, &expired));
    let expiries = wallet_audit_actions(backend, a)
        .await
        .iter()
        .filter(|x| *x == "hold.expired")
        .count();
    assert_eq!(expiries, 1);
    let report = l.verify(VerifyOptions::default(), &|_| {}).await.unwrap();
    assert!(report.ok(), "{:?}", report.findings);
}

/// The expiry job writes lapsed holds expired a bounded number of wallets at a time (the
/// earliest expiry first), every lapsed hold of a wallet together and each once, and leaves
/// live holds alone.
pub async fn the_expiry_job_expires_lapsed_holds_in_batches(backend: &dyn Backend) {
    let (l, clock) = clocked(backend).await;
    let owner = UserId::new();
    let (w1, w2, w3) = (
        funded(&l, owner, 100).await,
        funded(&l, owner, 100).await,
        funded(&l, owner, 100).await,
    );
    for (w, secs, key) in [
        (w1, 10, "a"),
        (w2, 20, "b"),
        (w3, 1_000, "c"),
        (w1, 30, "d"),
    ] {
        l.place_hold(owner, w, None, PIN, &req(10, key), Some(secs))
            .await
            .unwrap();
    }
    clock.advance(Duration::from_secs(40));
    assert_eq!(l.expire_holds(1).await.unwrap(), 2, "both of w1's, first");
    assert_eq!(l.expire_holds(10).await.unwrap(), 1, "then w2's");
    assert_eq!(l.expire_holds(10).await.unwrap(), 0, "nothing twice");
    for (w, n) in [(w1, 2), (w2, 1), (w3, 0)] {
        let written = wallet_audit_actions(backend, w)
            .await
            .iter()
            .filter(|x| *x == "hold.expired")
            .count();
        assert_eq!(written, n);
    }
    assert_eq!(available(&l, w3).await, 90, "a live hold still counts");
}
