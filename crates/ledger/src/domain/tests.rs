//! The domain's rules, one case each.

use super::*;

fn usd(minor: i64) -> Money {
    Money {
        amount: Amount::parse(minor, i64::MAX).unwrap(),
        currency: Currency::parse("USD").unwrap(),
    }
}

fn wallet(balance: i64, status: WalletStatus) -> WalletState {
    WalletState {
        id: WalletId::new(),
        owner: UserId::new(),
        currency: Currency::parse("USD").unwrap(),
        status,
        balance: Balance::from_minor(balance).unwrap(),
        held: Balance::ZERO,
        failed_pins: 0,
    }
}

#[test]
fn deposits_and_withdrawals_are_balanced_against_settlement() {
    let w = wallet(0, WalletStatus::Active);
    let p = deposit(&w, usd(1050)).unwrap();
    assert!(p.is_balanced());
    assert_eq!(p.balances, vec![(w.id, Balance::from_minor(1050).unwrap())]);
    let w = WalletState {
        balance: Balance::from_minor(1050).unwrap(),
        ..w
    };
    let p = withdrawal(&w, usd(50)).unwrap();
    assert!(p.is_balanced());
    assert_eq!(p.balances[0].1.minor(), 1000);
    assert_eq!(
        withdrawal(&w, usd(1051)),
        Err(LedgerError::InsufficientFunds)
    );
}

#[test]
fn transfers_move_between_two_wallets_of_one_currency() {
    let a = wallet(100, WalletStatus::Active);
    let b = wallet(5, WalletStatus::Active);
    let p = transfer(&a, &b, usd(60)).unwrap();
    assert!(p.is_balanced());
    let get = |id| p.balances.iter().find(|(w, _)| *w == id).unwrap().1.minor();
    assert_eq!((get(a.id), get(b.id)), (40, 65));
    assert!(
        p.balances.windows(2).all(|w| w[0].0 < w[1].0),
        "sorted by wallet id"
    );
    assert_eq!(transfer(&a, &a, usd(1)), Err(LedgerError::SameWallet));
    assert_eq!(
        transfer(&a, &b, usd(101)),
        Err(LedgerError::InsufficientFunds)
    );
    let eur = WalletState {
        currency: Currency::parse("EUR").unwrap(),
        ..wallet(0, WalletStatus::Active)
    };
    assert!(matches!(
        transfer(&a, &eur, usd(1)),
        Err(LedgerError::CurrencyMismatch { .. })
    ));
    assert!(matches!(
        deposit(&eur, usd(1)),
        Err(LedgerError::CurrencyMismatch { .. })
    ));
}

#[test]
fn frozen_wallets_receive_but_nothing_leaves() {
    let frozen = wallet(100, WalletStatus::Frozen);
    let active = wallet(100, WalletStatus::Active);
    assert!(deposit(&frozen, usd(1)).is_ok());
    assert!(
        transfer(&active, &frozen, usd(1)).is_ok(),
        "a transfer into a frozen wallet lands"
    );
    assert_eq!(withdrawal(&frozen, usd(1)), Err(LedgerError::WalletFrozen));
    assert_eq!(
        transfer(&frozen, &active, usd(1)),
        Err(LedgerError::WalletFrozen)
    );
}

#[test]
fn closed_wallets_accept_nothing_and_close_only_empty() {
    let closed = wallet(0, WalletStatus::Closed);
    let active = wallet(100, WalletStatus::Active);
    assert_eq!(deposit(&closed, usd(1)), Err(LedgerError::WalletClosed));
    assert_eq!(
        transfer(&active, &closed, usd(1)),
        Err(LedgerError::WalletClosed)
    );
    assert_eq!(withdrawal(&closed, usd(1)), Err(LedgerError::WalletClosed));
    assert_eq!(close(&active), Err(LedgerError::WalletNotEmpty));
    assert_eq!(close(&closed), Err(LedgerError::WalletClosed));
    assert_eq!(close(&wallet(0, WalletStatus::Frozen)), Ok(()));
}

#[test]
fn a_reversal_touching_a_closed_wallet_is_refused() {
    // b received 30 and paid it out again, then closed: reversing the payout would credit a
    // closed wallet, where nothing could ever move the money again.
    let b = wallet(0, WalletStatus::Active);
    let payout = withdrawal(&wallet(30, WalletStatus::Active), usd(30)).unwrap();
    let original = Original {
        kind: payout.kind,
        postings: payout
            .postings
            .iter()
            .map(|p| Posting {
                account: match p.account {
                    Account::Wallet(_) => Account::Wallet(b.id),
                    other => other,
                },
                delta: p.delta,
            })
            .collect(),
        reversed: false,
    };
    assert!(reversal(&original, std::slice::from_ref(&b)).is_ok());
    let closed = WalletState {
        status: WalletStatus::Closed,
        ..b
    };
    assert_eq!(
        reversal(&original, &[closed]),
        Err(LedgerError::WalletClosed)
    );
}

#[test]
fn five_wrong_pins_lock_money_out_only() {
    let locked = WalletState {
        failed_pins: PIN_LOCK_THRESHOLD,
        ..wallet(100, WalletStatus::Active)
    };
    assert!(pin_locked(&locked));
    assert_eq!(withdrawal(&locked, usd(1)), Err(LedgerError::PinLocked));
    assert_eq!(
        transfer(&locked, &wallet(0, WalletStatus::Active), usd(1)),
        Err(LedgerError::PinLocked)
    );
    assert!(deposit(&locked, usd(1)).is_ok());
    let four = WalletState {
        failed_pins: PIN_LOCK_THRESHOLD - 1,
        ..locked
    };
    assert!(withdrawal(&four, usd(1)).is_ok());
}

#[test]
fn a_reversal_posts_the_opposite_once_and_is_never_reversed() {
    let a = wallet(100, WalletStatus::Active);
    let b = wallet(0, WalletStatus::Frozen);
    let t = transfer(&a, &b, usd(30)).unwrap();
    let a2 = WalletState {
        balance: Balance::from_minor(70).unwrap(),
        ..a.clone()
    };
    let b2 = WalletState {
        balance: Balance::from_minor(30).unwrap(),
        ..b.clone()
    };
    let original = Original {
        kind: t.kind,
        postings: t.postings.clone(),
        reversed: false,
    };
    let r = reversal(&original, &[a2.clone(), b2.clone()]).unwrap();
    assert!(r.is_balanced());
    for (p, q) in t.postings.iter().zip(&r.postings) {
        assert_eq!(p.account, q.account);
        assert_eq!(p.delta, -q.delta);
    }
    let get = |id| r.balances.iter().find(|(w, _)| *w == id).unwrap().1.minor();
    assert_eq!(
        (get(a.id), get(b.id)),
        (100, 0),
        "applies to a frozen wallet too"
    );
    assert_eq!(
        reversal(
            &Original {
                reversed: true,
                ..original.clone()
            },
            &[a2.clone(), b2.clone()]
        ),
        Err(LedgerError::AlreadyReversed)
    );
    let of_reversal = Original {
        kind: TransactionKind::Reversal,
        postings: r.postings,
        reversed: false,
    };
    assert_eq!(
        reversal(&of_reversal, &[a2.clone(), b2]),
        Err(LedgerError::ReversalOfReversal)
    );
    // The receiver spent the money meanwhile: the reversal cannot take it below zero.
    let spent = WalletState {
        balance: Balance::from_minor(10).unwrap(),
        ..b
    };
    assert_eq!(
        reversal(&original, &[a2, spent]),
        Err(LedgerError::InsufficientFunds)
    );
}

#[test]
fn signing_bytes_and_fingerprints_differ_for_different_requests() {
    let (id, from, to) = (TransactionId::new(), WalletId::new(), WalletId::new());
    let base = signing_bytes(
        id,
        TransactionKind::Transfer,
        from,
        Some(to),
        usd(5),
        7,
        "k1",
    );
    assert_ne!(
        base,
        signing_bytes(
            id,
            TransactionKind::Transfer,
            from,
            Some(to),
            usd(6),
            7,
            "k1"
        )
    );
    assert_ne!(
        base,
        signing_bytes(
            id,
            TransactionKind::Transfer,
            to,
            Some(from),
            usd(5),
            7,
            "k1"
        )
    );
    assert_ne!(
        base,
        signing_bytes(id, TransactionKind::Withdrawal, from, None, usd(5), 7, "k1")
    );
    assert_ne!(
        base,
        signing_bytes(
            id,
            TransactionKind::Transfer,
            from,
            Some(to),
            usd(5),
            7,
            "k2"
        )
    );
    assert_eq!(
        request_fingerprint(&[b"a", b"bc"]),
        request_fingerprint(&[b"a", b"bc"])
    );
    assert_ne!(
        request_fingerprint(&[b"a", b"bc"]),
        request_fingerprint(&[b"ab", b"c"])
    );
}

#[test]
fn ids_parse_and_refuse_garbage() {
    let w = WalletId::new();
    assert_eq!(WalletId::parse(&w.to_string()).unwrap(), w);
    assert_eq!(WalletId::parse("not-a-uuid"), Err(IdError("WalletId")));
    assert!(TransactionId::new() < TransactionId::new(), "time-ordered");
}

#[test]
fn a_sweep_takes_each_remainder_up_to_the_bound_into_one_wallet() {
    let (a, b, empty) = (
        wallet(3, WalletStatus::Active),
        wallet(7, WalletStatus::Active),
        wallet(0, WalletStatus::Active),
    );
    let unclaimed = wallet(100, WalletStatus::Frozen);
    let p = sweep(&[a.clone(), b.clone(), empty.clone()], &unclaimed, 7).unwrap();
    assert_eq!(p.kind, TransactionKind::Sweep);
    assert!(p.is_balanced());
    assert_eq!(p.postings.len(), 3, "no posting for the empty wallet");
    let balance_of = |id| {
        p.balances
            .iter()
            .find(|(w, _)| *w == id)
            .map(|(_, b)| b.minor())
    };
    assert_eq!(
        (balance_of(a.id), balance_of(b.id), balance_of(unclaimed.id)),
        (Some(0), Some(0), Some(110))
    );
    assert_eq!(
        sweep(&[a.clone(), b.clone()], &unclaimed, 6),
        Err(LedgerError::StillHoldsMoney(b.id)),
        "above the bound"
    );
    let frozen = wallet(1, WalletStatus::Frozen);
    assert_eq!(
        sweep(std::slice::from_ref(&frozen), &unclaimed, 7),
        Err(LedgerError::StillHoldsMoney(frozen.id))
    );
    let usd = Currency::parse("USD").unwrap();
    let closed = wallet(0, WalletStatus::Closed);
    let mut eur = wallet(0, WalletStatus::Active);
    eur.currency = Currency::parse("EUR").unwrap();
    for to in [&closed, &eur, &a] {
        assert_eq!(
            sweep(std::slice::from_ref(&a), to, 7),
            Err(LedgerError::UnclaimedWalletUnusable { currency: usd })
        );
    }
    assert!(sweep(&[empty], &unclaimed, 7).is_err(), "nothing to sweep");
}
