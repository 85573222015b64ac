//! A participant's side of a transaction reads whatever became of the other: a transfer's
//! receiver keeps a copy of the memo under its own key (written with the transfer, or by the
//! backfill for older ones), and a wallet whose data keys are destroyed is reported as erased,
//! never as a failure of the other side's reads.

use super::client::MoneyRequest;
use super::{Backend, PIN, funded, ledger, req};
use crate::{Caller, UserId};

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
