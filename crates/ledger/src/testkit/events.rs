//! The outbox: every change a client cares about writes its events with it, one per affected
//! wallet, numbered per wallet 1, 2, 3… without gaps, even under concurrency; refusals write
//! none; an erased wallet's events no longer open.

use std::collections::HashMap;
use std::time::Duration;

use coffer_audit::{Actor, EntityId};
use futures_util::future::join_all;

use super::holds::clocked;
use super::pins::wallet_audit_actions;
use super::{Backend, Client, PIN, assert_verifies, balance, funded, ledger, req};
use crate::domain::limits::{Limit, LimitSet};
use crate::port::EventRecord;
use crate::verify::{Problem, VerifyOptions};
use crate::{
    Amount, Caller, Error, EventData, EventKind, LedgerError, LimitKind, LimitWindow, UserId,
    WalletId,
};

/// Every event in the store, by wallet, in number order, each opened.
async fn events_by_wallet(l: &Client) -> HashMap<WalletId, Vec<(EventRecord, EventData)>> {
    let mut all = Vec::new();
    let mut after = None;
    loop {
        let page = l.store().events_after(after, 500).await.unwrap();
        let Some(last) = page.last() else { break };
        after = Some(last.id);
        all.extend(page);
    }
    let mut by: HashMap<WalletId, Vec<(EventRecord, EventData)>> = HashMap::new();
    for e in all {
        let data = l.event_data(&e).await.unwrap();
        by.entry(e.wallet).or_default().push((e, data));
    }
    for events in by.values_mut() {
        events.sort_by_key(|(e, _)| e.seq);
    }
    by
}

/// What a consumer reads of one event: kind, amount, balance, available balance.
type Seen = (EventKind, Option<i64>, i64, i64);

fn seen(events: &[(EventRecord, EventData)]) -> Vec<Seen> {
    events
        .iter()
        .map(|(e, d)| {
            (
                e.kind,
                d.amount_minor,
                d.balance_minor,
                d.available_balance_minor,
            )
        })
        .collect()
}

fn numbered_from_one(events: &[(EventRecord, EventData)]) -> bool {
    events
        .iter()
        .zip(1..)
        .all(|((e, d), n)| e.seq == n && d.sequence == n)
}

/// A wallet's life as its events tell it: opened, deposit, transfer out, a hold placed and
/// partly captured (the capture's posting after it), frozen and unfrozen, and five wrong PINs
/// that lock it; each with the balances after it. Refusals and wrong PINs short of the lock
/// write no event.
pub async fn every_change_writes_one_event_per_wallet_in_order(backend: &dyn Backend) {
    use EventKind::{
        HoldCaptured, HoldCreated, PinLocked, TransactionPosted as Posted, WalletFrozen,
        WalletOpened, WalletUnfrozen,
    };
    let l = ledger(backend).await;
    let (alice, bob, admin) = (UserId::new(), UserId::new(), UserId::new());
    let a = funded(&l, alice, 1_000).await;
    let b = funded(&l, bob, 0).await;
    let t = l.transfer(alice, a, b, PIN, &req(300, "t")).await.unwrap();
    let hold = l
        .place_hold(alice, a, Some(b), PIN, &req(200, "h"), None)
        .await
        .unwrap();
    let (_, capture) = l
        .capture(Caller::User(bob), hold.id, Some(150), "c")
        .await
        .unwrap();
    l.freeze(admin, b).await.unwrap();
    l.unfreeze(admin, b).await.unwrap();
    let before = events_by_wallet(&l).await;
    assert!(matches!(
        l.withdraw(alice, a, PIN, &req(10_000, "too-much")).await,
        Err(Error::Rejected(LedgerError::InsufficientFunds))
    ));
    for n in 0..4 {
        let wrong = l
            .withdraw(alice, a, "582914", &req(1, &format!("w{n}")))
            .await;
        assert!(matches!(wrong, Err(Error::WrongPin { .. })), "{wrong:?}");
    }
    assert_eq!(
        events_by_wallet(&l).await[&a].len(),
        before[&a].len(),
        "refusals and wrong PINs write no event"
    );
    let locked = l.withdraw(alice, a, "582914", &req(1, "w4")).await;
    assert!(
        matches!(locked, Err(Error::WrongPin { attempts_left: 0 })),
        "{locked:?}"
    );

    let events = events_by_wallet(&l).await;
    let (ea, eb) = (&events[&a], &events[&b]);
    assert!(numbered_from_one(ea) && numbered_from_one(eb));
    assert_eq!(
        seen(ea),
        vec![
            (WalletOpened, None, 0, 0),
            (Posted, Some(1_000), 1_000, 1_000),
            (Posted, Some(-300), 700, 700),
            (HoldCreated, Some(200), 700, 500),
            (HoldCaptured, Some(200), 550, 550),
            (Posted, Some(-150), 550, 550),
            (PinLocked, None, 550, 550),
        ]
    );
    assert_eq!(
        seen(eb),
        vec![
            (WalletOpened, None, 0, 0),
            (Posted, Some(300), 300, 300),
            (Posted, Some(150), 450, 450),
            (WalletFrozen, None, 450, 450),
            (WalletUnfrozen, None, 450, 450),
        ]
    );
    // What the payloads name.
    let opened = &ea[0].1;
    assert_eq!(
        (
            opened.owner_id,
            opened.currency.as_str(),
            opened.status.as_str()
        ),
        (Some(*alice.as_uuid()), "USD", "active")
    );
    let sent = &ea[2].1;
    assert_eq!(
        (sent.transaction_id, sent.transaction_kind.as_deref()),
        (Some(*t.id.as_uuid()), Some("transfer"))
    );
    assert_eq!(sent.counterparty_wallet_id, Some(*b.as_uuid()));
    assert_eq!(eb[1].1.counterparty_wallet_id, Some(*a.as_uuid()));
    let (placed, captured, posted) = (&ea[3].1, &ea[4].1, &ea[5].1);
    assert_eq!(placed.hold_id, Some(*hold.id.as_uuid()));
    assert!(placed.expires_at_micros.is_some());
    assert_eq!(captured.transaction_id, Some(*capture.id.as_uuid()));
    assert_eq!(
        (posted.transaction_kind.as_deref(), posted.hold_id),
        (Some("capture"), Some(*hold.id.as_uuid()))
    );
    assert_eq!(eb[3].1.status, "frozen");
    // Ids are unique.
    let mut ids: Vec<_> = ea.iter().chain(eb).map(|(e, _)| e.id).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), ea.len() + eb.len());

    // Verification opens every event and checks the numbering: a renumbered event leaves a gap
    // (and no longer opens, its number being bound), a payload copied from another event does
    // not open.
    assert_verifies(&l).await;
    backend
        .tamper("UPDATE events SET seq = seq + 100 WHERE kind = 'hold.created'")
        .await;
    backend
        .tamper(
            "UPDATE events SET data = (SELECT e2.data FROM events e2 \
             WHERE e2.kind = 'wallet.opened' ORDER BY e2.id LIMIT 1) WHERE kind = 'wallet.frozen'",
        )
        .await;
    let report = l.verify(VerifyOptions::default(), &|_| {}).await.unwrap();
    let found = |w: WalletId, p: fn(&Problem) -> bool| {
        report
            .findings
            .iter()
            .any(|f| f.wallet == Some(w) && p(&f.problem))
    };
    assert!(
        found(a, |p| *p == Problem::EventGap),
        "{:?}",
        report.findings
    );
    assert!(
        found(b, |p| matches!(p, Problem::Unreadable(_))),
        "{:?}",
        report.findings
    );
    assert!(
        !found(b, |p| *p == Problem::EventGap),
        "{:?}",
        report.findings
    );
}

/// Transfers racing between a few wallets: each wallet's events are numbered 1…n without a
/// gap or a repeat, it has one `transaction.posted` per posting, their amounts add up to its
/// balance, and its last event shows that balance.
pub async fn each_wallets_events_are_numbered_without_gaps_under_concurrency(
    backend: &dyn Backend,
) {
    let l = ledger(backend).await;
    let owners: Vec<UserId> = (0..4).map(|_| UserId::new()).collect();
    let mut wallets = Vec::new();
    for o in &owners {
        wallets.push(funded(&l, *o, 500).await);
    }
    let moves = (0..40).map(|i| {
        let (from, to) = (i % 4, (i * 3 + 1) % 4);
        let l = &l;
        let (owners, wallets) = (&owners, &wallets);
        async move {
            if from == to {
                return;
            }
            // Some are refused (not enough money): they write no event.
            let _ = l
                .transfer(
                    owners[from],
                    wallets[from],
                    wallets[to],
                    PIN,
                    &req(70 + i64::try_from(i).unwrap(), &format!("m{i}")),
                )
                .await;
        }
    });
    join_all(moves).await;
    let events = events_by_wallet(&l).await;
    for w in &wallets {
        let mine = &events[w];
        assert!(numbered_from_one(mine), "{w}: {:?}", seen(mine));
        let posted: Vec<i64> = mine
            .iter()
            .filter(|(e, _)| e.kind == EventKind::TransactionPosted)
            .filter_map(|(_, d)| d.amount_minor)
            .collect();
        assert_eq!(posted.len(), l.store().postings_of(*w).await.unwrap().len());
        let now = balance(&l, *w).await;
        assert_eq!(posted.iter().sum::<i64>(), now);
        assert_eq!(mine.last().map(|(_, d)| d.balance_minor), Some(now));
    }
}

/// A lapsed hold expired by the job has its `hold.expired` with the money available again; an
/// erasure closes the wallet with a `wallet.closed`, and then the erased wallet's events no
/// longer open (they are shredded with its keys).
pub async fn expiries_and_erasures_have_their_events(backend: &dyn Backend) {
    let (l, clock) = clocked(backend).await;
    let (alice, carol) = (UserId::new(), UserId::new());
    let a = funded(&l, alice, 1_000).await;
    l.place_hold(alice, a, None, PIN, &req(400, "h"), Some(60))
        .await
        .unwrap();
    clock.advance(Duration::from_secs(61));
    assert_eq!(l.expire_holds(10).await.unwrap(), 1);
    let events = events_by_wallet(&l).await;
    let last = events[&a].last().unwrap();
    assert_eq!(
        (
            last.0.kind,
            last.1.amount_minor,
            last.1.balance_minor,
            last.1.available_balance_minor
        ),
        (EventKind::HoldExpired, Some(400), 1_000, 1_000)
    );
    assert_eq!(last.0.seq, 4, "opened, deposit, hold, expiry");
    // The expiry wrote no wallet row but took its number: the next event goes on from it.
    l.deposit(alice, a, &req(1, "after")).await.unwrap();
    let events = events_by_wallet(&l).await;
    assert_eq!(events[&a].last().map(|(e, _)| e.seq), Some(5));

    let c = funded(&l, carol, 0).await;
    let by = Actor::Admin(EntityId::from_uuid(UserId::new().as_uuid()));
    l.erase_wallets(&by, carol).await.unwrap();
    let mut after = None;
    let mut erased = Vec::new();
    loop {
        let page = l.store().events_after(after, 500).await.unwrap();
        let Some(end) = page.last() else { break };
        after = Some(end.id);
        erased.extend(page.into_iter().filter(|e| e.wallet == c));
    }
    assert_eq!(
        erased.iter().map(|e| e.kind).collect::<Vec<_>>(),
        vec![EventKind::WalletOpened, EventKind::WalletClosed]
    );
    for e in &erased {
        assert!(matches!(
            l.event_data(e).await,
            Err(Error::Rejected(LedgerError::Erased))
        ));
    }
}

/// A spending limit's refusal writes its `limit.exceeded` event with its `transaction.failed`
/// record (and nothing else): which limit, what is left under it, the balances unchanged.
pub async fn a_limits_refusal_writes_its_event_with_its_audit_record(backend: &dyn Backend) {
    let l = ledger(backend).await;
    let (alice, admin) = (UserId::new(), UserId::new());
    let a = funded(&l, alice, 1_000).await;
    let own = LimitSet::new(vec![Limit {
        kind: LimitKind::Withdrawal,
        window: LimitWindow::PerTransaction,
        max: Amount::parse(100, i64::MAX).unwrap(),
    }])
    .unwrap();
    l.set_limits(admin, a, Some(own)).await.unwrap();
    let refused = l.withdraw(alice, a, PIN, &req(150, "big")).await;
    assert!(
        matches!(
            refused,
            Err(Error::Rejected(LedgerError::LimitExceeded {
                remaining: 100,
                ..
            }))
        ),
        "{refused:?}"
    );
    let events = events_by_wallet(&l).await;
    let kinds: Vec<_> = events[&a].iter().map(|(e, _)| e.kind).collect();
    assert_eq!(
        kinds,
        vec![
            EventKind::WalletOpened,
            EventKind::TransactionPosted,
            EventKind::LimitExceeded
        ]
    );
    let (e, d) = events[&a].last().unwrap();
    assert_eq!(e.seq, 3);
    assert_eq!(
        (
            d.operation.as_deref(),
            d.limit_kind.as_deref(),
            d.limit_window.as_deref(),
            d.remaining_minor
        ),
        (
            Some("withdrawal"),
            Some("withdrawal"),
            Some("per_transaction"),
            Some(100)
        )
    );
    assert_eq!((d.balance_minor, d.available_balance_minor), (1_000, 1_000));
    let failed = wallet_audit_actions(backend, a)
        .await
        .into_iter()
        .filter(|x| x == "transaction.failed")
        .count();
    assert_eq!(failed, 1, "one refusal record, written with the event");
    assert_eq!(balance(&l, a).await, 1_000);
    l.deposit(alice, a, &req(1, "after")).await.unwrap();
    let events = events_by_wallet(&l).await;
    assert_eq!(
        events[&a].last().map(|(e, _)| e.seq),
        Some(4),
        "numbered on from it"
    );
    assert_verifies(&l).await;
}
