//! An operator's wallet search: by owner, status and currency, in pages.

use super::{Backend, PIN, ledger};
use crate::port::WalletFilter;
use crate::{Currency, UserId, WalletCursor, WalletStatus};

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
