//! Finding things: an operator's wallet search (by owner, status and currency) and a wallet's
//! filtered history (by kind, time and the other wallet), each in pages.

use std::sync::Arc;
use std::time::Duration;

use coffer_clock::ManualClock;

use super::{Backend, Client, PIN, config, funded, ledger, observed, req};
use crate::port::{HistoryFilter, WalletFilter};
use crate::{
    Caller, Currency, Error, HistoryCursor, Ledger, TransactionKind, UserId, WalletCursor,
    WalletStatus,
};

/// Each filter narrows the listing, they combine, and pages of any of them join up with the
/// cursor; nothing set lists every wallet.
pub async fn an_operator_finds_wallets_by_owner_status_and_currency(backend: &dyn Backend) {
    let l = ledger(backend).await;
    let (alice, bob, admin) = (UserId::new(), UserId::new(), UserId::new());
    let a1 = l.open_wallet(alice, "USD", PIN).await.unwrap().id;
    let a2 = l.open_wallet(alice, "EUR", PIN).await.unwrap().id;
    let b1 = l.open_wallet(bob, "USD", PIN).await.unwrap().id;
    let a3 = l.open_wallet(alice, "USD", PIN).await.unwrap().id;
    l.freeze(admin, b1).await.unwrap();
    let usd = Currency::parse("USD").unwrap();
    let found = |filter: WalletFilter| {
        let l = &l;
        async move {
            let mut ids = Vec::new();
            let mut cursor = None;
            loop {
                let page = l.wallets_where(&filter, cursor, 2).await.unwrap();
                ids.extend(page.items.iter().map(|w| w.id));
                let Some(next) = page.next_cursor else { break };
                cursor = Some(WalletCursor::parse(&next).unwrap());
            }
            ids
        }
    };
    assert_eq!(found(WalletFilter::default()).await, [a1, a2, b1, a3]);
    let of = |owner| WalletFilter {
        owner: Some(owner),
        ..WalletFilter::default()
    };
    assert_eq!(found(of(alice)).await, [a1, a2, a3]);
    assert_eq!(
        found(WalletFilter {
            currency: Some(usd),
            ..of(alice)
        })
        .await,
        [a1, a3]
    );
    assert_eq!(
        found(WalletFilter {
            currency: Some(usd),
            ..WalletFilter::default()
        })
        .await,
        [a1, b1, a3]
    );
    let frozen = WalletFilter {
        status: Some(WalletStatus::Frozen),
        ..WalletFilter::default()
    };
    assert_eq!(found(frozen).await, [b1]);
    assert_eq!(
        found(WalletFilter {
            status: Some(WalletStatus::Frozen),
            ..of(alice)
        })
        .await,
        []
    );
}

/// A wallet's history filtered by kind, by a time range (from inclusive, to exclusive) and by the
/// other wallet, alone and together, newest first; a filtered page's cursor continues the same
/// filter; an empty time range is refused.
pub async fn history_filters_by_kind_time_and_counterparty(backend: &dyn Backend) {
    const T0: u64 = 1_800_000_000;
    let clock = Arc::new(ManualClock::at_unix_secs(T0));
    let (store, audit) = backend.open(backend.keys()).await;
    let l = Client::new(
        Ledger::new(store, backend.keys(), observed(audit), config()).with_clock(clock.clone()),
    );
    let alice = UserId::new();
    let a = funded(&l, alice, 1_000).await;
    let (b, c) = (
        funded(&l, UserId::new(), 0).await,
        funded(&l, UserId::new(), 0).await,
    );
    let hour = |n: u64| i64::try_from((T0 + n * 3_600) * 1_000_000).unwrap();
    let mut made = Vec::new();
    for (n, step) in [(1, "to-b"), (2, "to-c"), (3, "out"), (4, "in")] {
        clock.set(std::time::UNIX_EPOCH + Duration::from_secs(T0 + n * 3_600));
        let t = match step {
            "to-b" => l.transfer(alice, a, b, PIN, &req(10, step)).await,
            "to-c" => l.transfer(alice, a, c, PIN, &req(20, step)).await,
            "out" => l.withdraw(alice, a, PIN, &req(5, step)).await,
            _ => l.deposit(alice, a, &req(7, step)).await,
        };
        made.push(t.unwrap().id);
    }
    let [to_b, to_c, out, deposit] = made[..] else {
        unreachable!()
    };
    let seen = |filter: HistoryFilter, limit: u32| {
        let l = &l;
        async move {
            let mut ids = Vec::new();
            let mut cursor: Option<HistoryCursor> = None;
            loop {
                let page = l
                    .history_where(Caller::User(alice), a, &filter, cursor, limit)
                    .await
                    .unwrap();
                ids.extend(page.items.iter().map(|t| t.id));
                let Some(next) = page.next_cursor else { break };
                cursor = Some(HistoryCursor::parse(&next).unwrap());
            }
            ids
        }
    };
    let transfers = HistoryFilter {
        kind: Some(TransactionKind::Transfer),
        ..HistoryFilter::default()
    };
    assert_eq!(seen(transfers, 1).await, [to_c, to_b]);
    let with_b = HistoryFilter {
        counterparty: Some(b),
        ..HistoryFilter::default()
    };
    assert_eq!(seen(with_b, 10).await, [to_b]);
    let middle = HistoryFilter {
        from_micros: Some(hour(1)),
        to_micros: Some(hour(3)),
        ..HistoryFilter::default()
    };
    assert_eq!(seen(middle, 10).await, [to_c, to_b]);
    let late_deposits = HistoryFilter {
        kind: Some(TransactionKind::Deposit),
        from_micros: Some(hour(1)),
        ..HistoryFilter::default()
    };
    assert_eq!(seen(late_deposits, 10).await, [deposit]);
    let since_three = HistoryFilter {
        from_micros: Some(hour(3)),
        ..HistoryFilter::default()
    };
    assert_eq!(seen(since_three, 10).await, [deposit, out]);
    // Amounts are sealed: the range is applied after decryption, pages still join up.
    let mid_amounts = HistoryFilter {
        min_amount: Some(7),
        max_amount: Some(20),
        ..HistoryFilter::default()
    };
    assert_eq!(seen(mid_amounts, 1).await, [deposit, to_c, to_b]);
    let none = HistoryFilter {
        min_amount: Some(5_000),
        ..HistoryFilter::default()
    };
    assert_eq!(seen(none, 10).await, []);
    for (min, max, field) in [
        (Some(-1), None, "min_amount"),
        (Some(9), Some(8), "max_amount"),
    ] {
        let bad = HistoryFilter {
            min_amount: min,
            max_amount: max,
            ..HistoryFilter::default()
        };
        assert!(matches!(
            l.history_where(Caller::User(alice), a, &bad, None, 10).await,
            Err(Error::Invalid { field: f, .. }) if f == field
        ));
    }
    let empty = HistoryFilter {
        from_micros: Some(hour(3)),
        to_micros: Some(hour(3)),
        ..HistoryFilter::default()
    };
    assert!(matches!(
        l.history_where(Caller::User(alice), a, &empty, None, 10)
            .await,
        Err(Error::Invalid { field: "to", .. })
    ));
}

/// An amount range reads a bounded number of transactions a page: a page that stopped at the
/// bound says so, and its cursor goes on from the last transaction read.
pub async fn an_amount_range_stops_at_its_scan_bound_and_goes_on(backend: &dyn Backend) {
    let (store, audit) = backend.open(backend.keys()).await;
    let scan = crate::LedgerConfig {
        amount_scan_limit: 3,
        ..config()
    };
    let l = Client::new(Ledger::new(store, backend.keys(), observed(audit), scan));
    let alice = UserId::new();
    let a = funded(&l, alice, 0).await;
    let mut big = Vec::new();
    for (i, amount) in [500, 1, 2, 3, 4, 600].into_iter().enumerate() {
        let t = l
            .deposit(alice, a, &req(amount, &format!("d{i}")))
            .await
            .unwrap();
        if amount >= 500 {
            big.push(t.id);
        }
    }
    let large = HistoryFilter {
        min_amount: Some(100),
        ..HistoryFilter::default()
    };
    let first = l
        .history_where(Caller::User(alice), a, &large, None, 10)
        .await
        .unwrap();
    // Newest first: 600, 4, 3 read; one match, and the bound reached.
    assert_eq!(
        first.items.iter().map(|t| t.id).collect::<Vec<_>>(),
        [big[1]]
    );
    assert!(first.stopped_early);
    let cursor = HistoryCursor::parse(first.next_cursor.as_deref().unwrap()).unwrap();
    let second = l
        .history_where(Caller::User(alice), a, &large, Some(cursor), 10)
        .await
        .unwrap();
    // 2, 1, 500 read: the end of the history, not the bound.
    assert_eq!(
        second.items.iter().map(|t| t.id).collect::<Vec<_>>(),
        [big[0]]
    );
    assert!(!second.stopped_early);
    assert_eq!(second.next_cursor, None);
}
