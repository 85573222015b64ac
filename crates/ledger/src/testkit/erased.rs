//! A participant's side of a transaction reads whatever became of the other: a transfer's
//! receiver keeps a copy of the memo under its own key (written with the transfer, or by the
//! backfill for older ones), and a wallet whose data keys are destroyed is reported as erased,
//! never as a failure of the other side's reads.

use coffer_audit::{Actor, EntityId};

use super::client::{Client, MoneyRequest};
use super::pins::wallet_audit_actions;
use super::{Backend, PIN, balance, config, funded, ledger, observed, req};
use crate::verify::VerifyOptions;
use crate::{
    Caller, Currency, Error, Ledger, LedgerError, TransactionKind, Unclaimed, UserId, WalletStatus,
};

fn with_memo<'a>(amount: i64, key: &'a str, memo: &'a str) -> MoneyRequest<'a> {
    MoneyRequest {
        memo: Some(memo),
        ..req(amount, key)
    }
}

/// Alice pays Bob and Carol; Carol's transfer is made to look older than the receiver copy and
/// the backfill gives it one (once, in batches, resuming from its cursor); then Alice's data
/// keys are destroyed (the manual crypto-shred): Bob's and Carol's histories and transaction
/// reads answer as before, with the amount and the memo, and name Alice's wallet as erased. A
/// transfer that never got its copy keeps its amount and loses its memo, and the backfill counts
/// it as one it cannot copy.
pub async fn a_receivers_side_reads_after_the_sender_is_erased(backend: &dyn Backend) {
    let l = ledger(backend).await;
    let (alice, bob, carol) = (UserId::new(), UserId::new(), UserId::new());
    let a = funded(&l, alice, 1_000).await;
    let b = funded(&l, bob, 0).await;
    let c = funded(&l, carol, 0).await;
    let to_bob = l
        .transfer(
            alice,
            a,
            b,
            PIN,
            &with_memo(300, "pay-bob", "rent for june"),
        )
        .await
        .unwrap();
    let to_carol = l
        .transfer(
            alice,
            a,
            c,
            PIN,
            &with_memo(200, "pay-carol", "a birthday gift"),
        )
        .await
        .unwrap();
    assert!(to_bob.erased.is_empty());

    // Carol's transfer as written before receivers got a copy; the backfill writes it, once.
    backend
        .tamper("UPDATE transactions SET receiver_memo = NULL WHERE idempotency_key = 'pay-carol'")
        .await;
    let mut after = None;
    let (mut scanned, mut copied) = (0, 0);
    loop {
        let batch = l.backfill_receiver_memos(after, 2).await.unwrap();
        let Some(last) = batch.last else { break };
        (scanned, copied, after) = (scanned + batch.scanned, copied + batch.copied, Some(last));
        assert_eq!(batch.unreadable, 0);
    }
    assert_eq!(
        scanned, 3,
        "every transaction is read: a deposit and two transfers"
    );
    assert_eq!(copied, 1, "only Carol's transfer lacked its copy");
    assert_eq!(
        l.backfill_receiver_memos(None, 100).await.unwrap().copied,
        0
    );

    // The manual shred of Alice's wallet: every version of its data key destroyed.
    backend
        .tamper(
            "DELETE FROM wallet_keys WHERE wallet_id = \
             (SELECT from_wallet FROM transactions WHERE idempotency_key = 'pay-bob')",
        )
        .await;
    for (owner, wallet, sent, memo) in [
        (bob, b, &to_bob, "rent for june"),
        (carol, c, &to_carol, "a birthday gift"),
    ] {
        let page = l
            .history(Caller::User(owner), wallet, None, 10)
            .await
            .unwrap();
        let seen = page.items.iter().find(|t| t.id == sent.id).unwrap();
        let read = l.transaction(Caller::User(owner), sent.id).await.unwrap();
        for t in [seen, &read] {
            assert_eq!(t.money, sent.money);
            assert_eq!(t.memo.as_deref(), Some(memo));
            assert_eq!(t.erased, [a]);
            assert!(t.verify_signature().unwrap(), "the signature still checks");
        }
    }
    // A transfer left without a copy when the sender's keys went: its amount still reads, its
    // memo is gone for good, and the backfill says it cannot copy it.
    let late = l
        .transfer(bob, b, c, PIN, &with_memo(50, "bob-pays-carol", "lunch"))
        .await
        .unwrap();
    assert_eq!(late.memo.as_deref(), Some("lunch"));
    backend
        .tamper(
            "UPDATE transactions SET receiver_memo = NULL WHERE idempotency_key = 'bob-pays-carol'",
        )
        .await;
    backend
        .tamper(
            "DELETE FROM wallet_keys WHERE wallet_id = \
             (SELECT from_wallet FROM transactions WHERE idempotency_key = 'bob-pays-carol')",
        )
        .await;
    let read = l.transaction(Caller::User(carol), late.id).await.unwrap();
    assert_eq!(
        (read.money, read.memo, read.erased),
        (late.money, None, vec![b])
    );
    let batch = l.backfill_receiver_memos(None, 100).await.unwrap();
    assert_eq!((batch.copied, batch.unreadable), (0, 1));
}

/// Erasing an owner: refused while a wallet of theirs holds money (naming it, nothing changed);
/// once they are empty, every wallet of theirs is closed and erased in one go (a `wallet.erased`
/// record each). Afterwards the erased wallets still read (closed, zero, `erased_at`) without
/// their keys, their history and their own transactions are `Erased`, nothing moves into them
/// and no data key is made for them,
/// the counterparty reads its side, verification passes and counts what was erased, and a
/// second erasure changes nothing.
pub async fn erasing_an_owner_closes_their_empty_wallets_and_destroys_their_keys(
    backend: &dyn Backend,
) {
    let l = ledger(backend).await;
    let (alice, bob, admin) = (UserId::new(), UserId::new(), UserId::new());
    let by = Actor::Admin(EntityId::from_uuid(admin.as_uuid()));
    let a = funded(&l, alice, 1_000).await;
    let spare = funded(&l, alice, 0).await;
    let b = funded(&l, bob, 0).await;
    let paid = l
        .transfer(alice, a, b, PIN, &with_memo(300, "pay-bob", "the bike"))
        .await
        .unwrap();

    let refused = l.erase_wallets(&by, alice).await.unwrap_err();
    assert!(
        matches!(refused, Error::Rejected(LedgerError::StillHoldsMoney(w)) if w == a),
        "{refused:?}"
    );
    assert_eq!(
        l.wallet(Caller::Admin(admin), spare)
            .await
            .unwrap()
            .erased_at,
        None,
        "a refusal erases nothing"
    );

    let out = l
        .withdraw(alice, a, PIN, &req(700, "cash-out"))
        .await
        .unwrap();
    let erased = l.erase_wallets(&by, alice).await.unwrap();
    assert_eq!(
        erased.iter().map(|w| w.id).collect::<Vec<_>>(),
        [a, spare],
        "every wallet of hers, oldest first"
    );
    for w in [a, spare] {
        let view = l.wallet(Caller::Admin(admin), w).await.unwrap();
        assert_eq!(view.status, WalletStatus::Closed);
        assert_eq!(view.balance.minor(), 0);
        assert!(view.erased_at.is_some());
    }
    let gone = |r: Result<_, Error>| matches!(r, Err(Error::Rejected(LedgerError::Erased)));
    assert!(gone(
        l.history(Caller::Admin(admin), a, None, 10)
            .await
            .map(|_| ())
    ));
    assert!(gone(
        l.transaction(Caller::Admin(admin), out.id)
            .await
            .map(|_| ())
    ));
    assert!(gone(
        l.deposit(alice, spare, &req(5, "late")).await.map(|_| ())
    ));
    assert!(gone(
        l.transfer(bob, b, a, PIN, &req(5, "refund"))
            .await
            .map(|_| ())
    ));

    // Bob's side reads as before, Alice's named as erased.
    let read = l.transaction(Caller::User(bob), paid.id).await.unwrap();
    assert_eq!(
        (read.money, read.memo.as_deref(), read.erased.as_slice()),
        (paid.money, Some("the bike"), [a].as_slice())
    );
    assert!(read.verify_signature().unwrap());

    let report = l.verify(VerifyOptions::default(), &|_| {}).await.unwrap();
    assert!(report.ok(), "{:?}", report.findings);
    assert_eq!(report.erased_wallets, 2);
    // Her deposit (two postings), her side of the transfer, her withdrawal (two).
    assert_eq!(report.erased_postings, 5);

    let again = l.erase_wallets(&by, alice).await.unwrap();
    assert_eq!(again, erased, "a second erasure answers the first");
    for w in [a, spare] {
        let actions = wallet_audit_actions(backend, w).await;
        let erasures = actions.iter().filter(|a| *a == "wallet.erased").count();
        assert_eq!(
            erasures, 1,
            "one record per wallet, however often it is asked"
        );
    }
}

/// What is left in an erased owner's wallets, up to the bound, is swept to the currency's
/// unclaimed-funds wallet in the erasure's transaction: one `sweep` per currency, crediting it
/// with the sum and recorded on its stream. A remainder above the bound, in a frozen wallet or
/// in a currency without an unclaimed-funds wallet refuses the erasure (naming the wallet) and
/// changes nothing; so does an unclaimed-funds wallet that does not exist. The books verify, and
/// a second erasure sweeps nothing more.
pub async fn an_erasure_sweeps_small_remainders_to_the_unclaimed_wallet(backend: &dyn Backend) {
    let plain = ledger(backend).await;
    let (alice, bob, carol, treasury, admin) = (
        UserId::new(),
        UserId::new(),
        UserId::new(),
        UserId::new(),
        UserId::new(),
    );
    let by = Actor::Admin(EntityId::from_uuid(admin.as_uuid()));
    let unclaimed = funded(&plain, treasury, 0).await;
    let with_unclaimed = |wallet| async move {
        let (store, audit) = backend.open(backend.keys()).await;
        let mut config = config();
        config.unclaimed.insert(
            Currency::parse("USD").unwrap(),
            Unclaimed {
                wallet,
                up_to_minor: 100,
            },
        );
        Client::new(Ledger::new(store, backend.keys(), observed(audit), config))
    };
    let l = with_unclaimed(unclaimed).await;
    let a1 = funded(&l, alice, 40).await;
    let a2 = funded(&l, alice, 160).await;
    let empty = funded(&l, alice, 0).await;

    let refused = l.erase_wallets(&by, alice).await.unwrap_err();
    assert!(
        matches!(refused, Error::Rejected(LedgerError::StillHoldsMoney(w)) if w == a2),
        "above the bound: {refused:?}"
    );
    assert_eq!(
        (balance(&l, a1).await, balance(&l, unclaimed).await),
        (40, 0),
        "a refusal sweeps nothing"
    );
    l.withdraw(alice, a2, PIN, &req(100, "most-of-it"))
        .await
        .unwrap();
    let nowhere = with_unclaimed(crate::WalletId::new()).await;
    let refused = nowhere.erase_wallets(&by, alice).await.unwrap_err();
    assert!(
        matches!(
            &refused,
            Error::Rejected(LedgerError::UnclaimedWalletUnusable { currency })
                if currency.code() == "USD"
        ),
        "{refused:?}"
    );

    let erased = l.erase_wallets(&by, alice).await.unwrap();
    assert_eq!(
        erased.iter().map(|w| w.id).collect::<Vec<_>>(),
        [a1, a2, empty]
    );
    assert_eq!(balance(&l, unclaimed).await, 40 + 60);
    let page = l
        .history(Caller::User(treasury), unclaimed, None, 10)
        .await
        .unwrap();
    let sweep = &page.items[0];
    assert_eq!(sweep.kind, TransactionKind::Sweep);
    assert_eq!(
        (
            sweep.money.amount.minor(),
            sweep.to_wallet,
            sweep.from_wallet
        ),
        (100, Some(unclaimed), None)
    );
    assert_eq!(sweep.erased, [a1, a2], "the swept side is erased");
    assert!(!sweep.verify_signature().unwrap(), "a sweep is not signed");
    let actions = wallet_audit_actions(backend, unclaimed).await;
    assert_eq!(
        actions.iter().filter(|a| *a == "transaction.sweep").count(),
        1
    );

    // Bob's remainder is in a frozen wallet; Carol's in a currency with no unclaimed wallet.
    let b = funded(&l, bob, 10).await;
    l.freeze(admin, b).await.unwrap();
    let c = l.open_wallet(carol, "EUR", PIN).await.unwrap().id;
    l.deposit(
        carol,
        c,
        &MoneyRequest {
            currency: "EUR",
            ..req(10, "eur")
        },
    )
    .await
    .unwrap();
    for (owner, wallet) in [(bob, b), (carol, c)] {
        let refused = l.erase_wallets(&by, owner).await.unwrap_err();
        assert!(
            matches!(refused, Error::Rejected(LedgerError::StillHoldsMoney(w)) if w == wallet),
            "{refused:?}"
        );
    }
    // Dave's few cents are held: reserved money is not swept until the hold is resolved.
    let dave = UserId::new();
    let d = funded(&l, dave, 10).await;
    let held = l
        .place_hold(dave, d, None, PIN, &req(5, "held"), None)
        .await
        .unwrap();
    let refused = l.erase_wallets(&by, dave).await.unwrap_err();
    assert!(
        matches!(refused, Error::Rejected(LedgerError::WalletHasHolds(w)) if w == d),
        "{refused:?}"
    );
    l.void(Caller::User(dave), held.id, "release")
        .await
        .unwrap();
    // Erin's held transfer to Dave would capture into an erased wallet: refused until voided.
    let erin = UserId::new();
    let e = funded(&l, erin, 50).await;
    let incoming = l
        .place_hold(erin, e, Some(d), PIN, &req(20, "to-dave"), None)
        .await
        .unwrap();
    let refused = l.erase_wallets(&by, dave).await.unwrap_err();
    assert!(
        matches!(refused, Error::Rejected(LedgerError::WalletHasHolds(w)) if w == d),
        "{refused:?}"
    );
    l.void(Caller::User(dave), incoming.id, "release-incoming")
        .await
        .unwrap();
    l.erase_wallets(&by, dave).await.unwrap();
    assert!(
        matches!(
            l.hold(Caller::Admin(admin), held.id).await,
            Err(Error::Rejected(LedgerError::Erased))
        ),
        "a resolved hold of an erased wallet no longer reads"
    );

    let report = l.verify(VerifyOptions::default(), &|_| {}).await.unwrap();
    assert!(report.ok(), "{:?}", report.findings);
    assert_eq!(report.erased_wallets, 4);
    assert_eq!(l.erase_wallets(&by, alice).await.unwrap(), erased);
    assert_eq!(balance(&l, unclaimed).await, 110, "swept once each");
}
