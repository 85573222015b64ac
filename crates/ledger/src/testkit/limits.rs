//! Spending limits: per transaction and over rolling windows, from the currency's default policy
//! or the wallet's own; holds count while live and give back when voided, expired or captured
//! for less; a refusal writes nothing but its audit record; concurrent money-out never passes a
//! limit.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use coffer_clock::ManualClock;
use futures_util::future::join_all;

use super::pins::{wallet_audit, wallet_audit_actions};
use super::{Backend, Client, PIN, balance, config, funded, observed, req};
use crate::domain::limits::{Limit, LimitSet};
use crate::{Amount, Caller, Currency, Error, Ledger, LedgerError, LimitKind, LimitWindow, UserId};

const T0: u64 = 1_800_000_000;
const HOUR: Duration = Duration::from_secs(3_600);

use LimitKind::{Hold, Transfer, Withdrawal};
use LimitWindow::{PerTransaction, Rolling7d, Rolling24h};

fn set(limits: &[(LimitKind, LimitWindow, i64)]) -> LimitSet {
    LimitSet::new(
        limits
            .iter()
            .map(|&(kind, window, max)| Limit {
                kind,
                window,
                max: Amount::parse(max, i64::MAX).unwrap(),
            })
            .collect(),
    )
    .unwrap()
}

/// A ledger whose USD wallets have `policy` by default, on a clock the case moves.
async fn limited(
    backend: &dyn Backend,
    policy: &[(LimitKind, LimitWindow, i64)],
    clock: &Arc<ManualClock>,
) -> Client {
    let (store, audit) = backend.open(backend.keys()).await;
    let mut config = config();
    config.limits = HashMap::from([(Currency::parse("USD").unwrap(), set(policy))]);
    Client::new(
        Ledger::new(store, backend.keys(), observed(audit), config).with_clock(clock.clone()),
    )
}

fn exceeded(kind: LimitKind, window: LimitWindow, remaining: i64) -> LedgerError {
    LedgerError::LimitExceeded {
        kind,
        window,
        remaining,
    }
}

fn refused<T: std::fmt::Debug>(r: Result<T, Error>) -> LedgerError {
    match r {
        Err(Error::Rejected(e)) => e,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

/// (kind, window, used, remaining) of each limit of a wallet, as its owner reads them.
async fn standing(
    l: &Client,
    owner: UserId,
    w: crate::WalletId,
) -> Vec<(LimitKind, LimitWindow, Option<i64>, i64)> {
    l.limits(Caller::User(owner), w)
        .await
        .unwrap()
        .limits
        .iter()
        .map(|s| (s.limit.kind, s.limit.window, s.used, s.remaining))
        .collect()
}

/// The currency's default policy limits each withdrawal and the last 24 hours' withdrawals,
/// and the week's transfers; a refused withdrawal names the limit and what remains and writes
/// nothing but its audit record. The 24-hour window rolls on the clock, the week's does not yet;
/// what was sent survives a restart. An administrator's own limits replace the policy (the usage
/// still counts), and clearing them returns the wallet to it. Other users see nothing.
pub async fn limits_refuse_money_out_past_a_window_and_write_only_the_refusal(
    backend: &dyn Backend,
) {
    let clock = Arc::new(ManualClock::at_unix_secs(T0));
    let policy = [
        (Withdrawal, PerTransaction, 600),
        (Withdrawal, Rolling24h, 1_000),
        (Transfer, Rolling7d, 1_500),
    ];
    let l = limited(backend, &policy, &clock).await;
    let (alice, bob, admin) = (UserId::new(), UserId::new(), UserId::new());
    let a = funded(&l, alice, 10_000).await;
    let b = funded(&l, bob, 0).await;

    assert_eq!(
        refused(l.withdraw(alice, a, PIN, &req(601, "w-big")).await),
        exceeded(Withdrawal, PerTransaction, 600)
    );
    l.withdraw(alice, a, PIN, &req(600, "w-1")).await.unwrap();
    clock.advance(3 * HOUR);
    assert_eq!(
        refused(l.withdraw(alice, a, PIN, &req(401, "w-2")).await),
        exceeded(Withdrawal, Rolling24h, 400)
    );
    assert_eq!(balance(&l, a).await, 9_400, "a refusal moves nothing");
    let failed = wallet_audit(backend, a)
        .await
        .into_iter()
        .filter(|r| r.event.action.as_str() == "transaction.failed")
        .count();
    assert_eq!(failed, 2, "each refusal has its audit record");
    l.withdraw(alice, a, PIN, &req(400, "w-2b")).await.unwrap();
    l.transfer(alice, a, b, PIN, &req(1_500, "t-1"))
        .await
        .unwrap();
    assert_eq!(
        refused(l.transfer(alice, a, b, PIN, &req(1, "t-2")).await),
        exceeded(Transfer, Rolling7d, 0)
    );
    assert_eq!(
        standing(&l, alice, a).await,
        [
            (Withdrawal, PerTransaction, None, 600),
            (Withdrawal, Rolling24h, Some(1_000), 0),
            (Transfer, Rolling7d, Some(1_500), 0),
        ]
    );
    assert!(matches!(
        l.limits(Caller::User(bob), a).await,
        Err(Error::WalletNotFound(_))
    ));

    // A restart keeps what was sent; 25 hours later the day's window has rolled, not the week's.
    let l = limited(backend, &policy, &clock).await;
    clock.advance(22 * HOUR);
    l.withdraw(alice, a, PIN, &req(600, "w-3")).await.unwrap();
    assert_eq!(
        refused(l.transfer(alice, a, b, PIN, &req(1, "t-3")).await),
        exceeded(Transfer, Rolling7d, 0)
    );

    let own = set(&[
        (Transfer, Rolling24h, 100_000),
        (Withdrawal, Rolling7d, 1_700),
    ]);
    let view = l.set_limits(admin, a, Some(own)).await.unwrap();
    assert!(view.own);
    assert_eq!(
        refused(l.withdraw(alice, a, PIN, &req(101, "w-4")).await),
        exceeded(Withdrawal, Rolling7d, 100),
        "the week's withdrawals still count under the new limits"
    );
    l.transfer(alice, a, b, PIN, &req(2_000, "t-4"))
        .await
        .unwrap();
    let view = l.set_limits(admin, a, None).await.unwrap();
    assert!(!view.own, "back to the currency's policy");
    assert_eq!(
        refused(l.withdraw(alice, a, PIN, &req(700, "w-5")).await),
        exceeded(Withdrawal, PerTransaction, 600)
    );
    let actions = wallet_audit_actions(backend, a).await;
    assert_eq!(
        actions.iter().filter(|a| *a == "wallet.limits_set").count(),
        2
    );
    let report = l
        .verify(crate::verify::VerifyOptions::default(), &|_| {})
        .await
        .unwrap();
    assert!(report.ok(), "{:?}", report.findings);
}

/// A held transfer counts against the hold limit and the transfer limit while it is live, from
/// its placement; voiding or expiring it gives the amount back, capturing part keeps only what
/// was captured. Deposits are not limited.
pub async fn holds_count_against_limits_until_resolved(backend: &dyn Backend) {
    let clock = Arc::new(ManualClock::at_unix_secs(T0));
    let policy = [(Hold, Rolling24h, 1_000), (Transfer, Rolling24h, 1_200)];
    let l = limited(backend, &policy, &clock).await;
    let (alice, bob) = (UserId::new(), UserId::new());
    let a = funded(&l, alice, 10_000).await;
    let b = funded(&l, bob, 0).await;
    let payee = Caller::User(bob);

    let h = l
        .place_hold(alice, a, Some(b), PIN, &req(700, "h-1"), None)
        .await
        .unwrap();
    assert_eq!(
        standing(&l, alice, a).await,
        [
            (Transfer, Rolling24h, Some(700), 500),
            (Hold, Rolling24h, Some(700), 300)
        ]
    );
    assert_eq!(
        refused(
            l.place_hold(alice, a, None, PIN, &req(301, "h-2"), None)
                .await
        ),
        exceeded(Hold, Rolling24h, 300)
    );
    assert_eq!(
        refused(l.transfer(alice, a, b, PIN, &req(501, "t-1")).await),
        exceeded(Transfer, Rolling24h, 500)
    );
    l.void(payee, h.id, "void-1").await.unwrap();
    assert_eq!(
        standing(&l, alice, a).await,
        [
            (Transfer, Rolling24h, Some(0), 1_200),
            (Hold, Rolling24h, Some(0), 1_000)
        ],
        "a void gives back"
    );

    let h = l
        .place_hold(alice, a, Some(b), PIN, &req(800, "h-3"), None)
        .await
        .unwrap();
    clock.advance(HOUR);
    l.capture(payee, h.id, Some(300), "cap-1").await.unwrap();
    assert_eq!(
        standing(&l, alice, a).await,
        [
            (Transfer, Rolling24h, Some(300), 900),
            (Hold, Rolling24h, Some(300), 700)
        ],
        "a smaller capture gives back the rest"
    );
    l.place_hold(alice, a, None, PIN, &req(700, "h-4"), Some(60))
        .await
        .unwrap();
    assert_eq!(
        refused(
            l.place_hold(alice, a, None, PIN, &req(1, "h-5"), None)
                .await
        ),
        exceeded(Hold, Rolling24h, 0)
    );
    clock.advance(Duration::from_secs(61));
    l.place_hold(alice, a, None, PIN, &req(700, "h-6"), None)
        .await
        .expect("the expired hold gave its 700 back");
    l.deposit(bob, b, &req(1_000_000, "dep")).await.unwrap();
    clock.advance(25 * HOUR);
    assert_eq!(
        standing(&l, alice, a).await,
        [
            (Transfer, Rolling24h, Some(0), 1_200),
            (Hold, Rolling24h, Some(0), 1_000)
        ],
        "25 hours later nothing counts, not even the live hold placed before"
    );
}

/// Withdrawals sent at once against one limit: however they interleave, the window never holds
/// more than the limit, and those refused moved nothing.
pub async fn concurrent_money_out_never_passes_a_limit(backend: &dyn Backend) {
    let clock = Arc::new(ManualClock::at_unix_secs(T0));
    let l = limited(backend, &[(Withdrawal, Rolling24h, 1_000)], &clock).await;
    let alice = UserId::new();
    let a = funded(&l, alice, 10_000).await;
    let keys: Vec<String> = (0..8).map(|i| format!("w-{i}")).collect();
    let requests: Vec<_> = keys.iter().map(|k| req(300, k)).collect();
    let results = join_all(requests.iter().map(|r| l.withdraw(alice, a, PIN, r))).await;
    let done = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(done, 3, "{results:?}");
    assert!(results.iter().all(|r| match r {
        Ok(_) => true,
        Err(Error::Rejected(LedgerError::LimitExceeded { remaining, .. })) => *remaining == 100,
        Err(_) => false,
    }));
    assert_eq!(balance(&l, a).await, 10_000 - 900);
}

/// What one operation of the held workload did.
enum Outcome {
    Placed(crate::HoldId, crate::WalletId, Option<crate::WalletId>),
    Resolved(crate::HoldId),
    Other,
}

/// Holds placed, captured in part or in full, voided and expired, with transfers and
/// withdrawals, by many tasks at once under limits, while the clock moves: afterwards the books
/// verify, no wallet's available balance is negative or above its balance, no hold was resolved
/// twice, and no wallet sent more of a kind than its 24-hour limit (the run spans a few hours).
pub async fn concurrent_holds_and_limits_keep_the_books(backend: &dyn Backend) {
    const TASKS: u64 = 8;
    const OPS: usize = 40;
    const LIMIT: i64 = 12_000;
    let clock = Arc::new(ManualClock::at_unix_secs(T0));
    let policy = [
        (Withdrawal, Rolling24h, LIMIT),
        (Transfer, Rolling24h, LIMIT),
        (Hold, Rolling24h, LIMIT),
    ];
    let l = Arc::new(limited(backend, &policy, &clock).await);
    let owners: Vec<UserId> = (0..3).map(|_| UserId::new()).collect();
    let mut wallets = Vec::new();
    for i in 0..6 {
        let owner = owners[i % owners.len()];
        wallets.push((owner, funded(&l, owner, 10_000).await));
    }
    let wallets = Arc::new(wallets);
    let placed = Arc::new(std::sync::Mutex::new(Vec::new()));
    let (admin, payouts) = (Caller::Admin(UserId::new()), Caller::Service(UserId::new()));
    let mut tasks = Vec::new();
    for task in 0..TASKS {
        let (l, wallets, placed, clock) =
            (l.clone(), wallets.clone(), placed.clone(), clock.clone());
        tasks.push(tokio::spawn(async move {
            use rand::{RngExt, SeedableRng};
            let mut rng = rand::rngs::StdRng::seed_from_u64(1_000 + task);
            let mut outcomes = Vec::new();
            for i in 0..OPS {
                let key = format!("k{task}-{i}");
                let (owner, w) = wallets[rng.random_range(0..wallets.len())];
                let (_, to) = wallets[rng.random_range(0..wallets.len())];
                let to = (to != w).then_some(to);
                let amount = rng.random_range(1..=2_500);
                let known: Vec<(crate::HoldId, crate::WalletId, Option<crate::WalletId>)> =
                    placed.lock().unwrap().clone();
                let pick = (!known.is_empty()).then(|| known[rng.random_range(0..known.len())]);
                let r: Result<Outcome, Error> = match rng.random_range(0..7) {
                    0 | 1 => {
                        let life = rng.random_range(60..900);
                        l.place_hold(owner, w, to, PIN, &req(amount, &key), Some(life))
                            .await
                            .map(|h| Outcome::Placed(h.id, h.wallet, h.to_wallet))
                    }
                    2 => match pick {
                        Some((id, _, Some(payee))) if rng.random_bool(0.5) => {
                            let by = wallets.iter().find(|(_, w)| *w == payee).unwrap().0;
                            let part = rng.random_bool(0.5).then_some(amount.min(500));
                            l.capture(Caller::User(by), id, part, &key)
                                .await
                                .map(|_| Outcome::Resolved(id))
                        }
                        Some((id, ..)) => l
                            .capture(payouts, id, None, &key)
                            .await
                            .map(|_| Outcome::Resolved(id)),
                        None => Ok(Outcome::Other),
                    },
                    3 => match pick {
                        Some((id, ..)) => {
                            l.void(admin, id, &key).await.map(|_| Outcome::Resolved(id))
                        }
                        None => Ok(Outcome::Other),
                    },
                    4 => match to {
                        Some(to) => l
                            .transfer(owner, w, to, PIN, &req(amount, &key))
                            .await
                            .map(|_| Outcome::Other),
                        None => Ok(Outcome::Other),
                    },
                    5 => l
                        .withdraw(owner, w, PIN, &req(amount, &key))
                        .await
                        .map(|_| Outcome::Other),
                    _ => {
                        clock.advance(Duration::from_secs(rng.random_range(10..120)));
                        l.expire_holds(5).await.map(|_| Outcome::Other)
                    }
                };
                match r {
                    Ok(Outcome::Placed(id, payer, to)) => {
                        placed.lock().unwrap().push((id, payer, to));
                    }
                    Ok(o) => outcomes.push(o),
                    Err(Error::Rejected(
                        LedgerError::InsufficientFunds
                        | LedgerError::LimitExceeded { .. }
                        | LedgerError::HoldResolved
                        | LedgerError::HoldExpired
                        | LedgerError::CaptureExceedsHold,
                    )) => {}
                    Err(e) => panic!("unexpected error: {e:?}"),
                }
            }
            outcomes
        }));
    }
    let mut resolved = std::collections::HashSet::new();
    for t in tasks {
        for o in t.await.unwrap() {
            if let Outcome::Resolved(id) = o {
                assert!(resolved.insert(id), "hold {id} resolved twice");
            }
        }
    }
    l.expire_holds(1_000).await.unwrap();
    for (owner, w) in wallets.iter() {
        let v = l.wallet(Caller::User(*owner), *w).await.unwrap();
        assert!(v.available.minor() >= 0 && v.available <= v.balance, "{w}");
    }
    let mut sent: HashMap<(crate::WalletId, LimitKind), i64> = HashMap::new();
    for t in super::all_transactions(l.store().as_ref()).await {
        let Some(from) = t.from_wallet else { continue };
        let amount = l
            .transaction(Caller::Admin(UserId::new()), t.id)
            .await
            .unwrap()
            .money
            .amount
            .minor();
        let kinds = match (t.kind, t.to_wallet) {
            (crate::TransactionKind::Withdrawal, _) => vec![Withdrawal],
            (crate::TransactionKind::Transfer, _) => vec![Transfer],
            (crate::TransactionKind::Capture, to) => LimitKind::charged(to.is_some(), true),
            _ => vec![],
        };
        for k in kinds {
            *sent.entry((from, k)).or_default() += amount;
        }
    }
    assert!(
        sent.iter().all(|(_, total)| *total <= LIMIT),
        "a limit was passed: {sent:?}"
    );
    assert!(
        sent.values().any(|total| *total > LIMIT / 2),
        "the workload came near its limits: {sent:?}"
    );
    let report = l
        .verify(crate::verify::VerifyOptions::default(), &|_| {})
        .await
        .unwrap();
    assert!(report.ok(), "{:?}", report.findings);
}
