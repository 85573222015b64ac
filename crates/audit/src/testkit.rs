//! The audit port's contract suite. Every adapter runs all of it through
//! [`audit_log_contract_tests!`](crate::audit_log_contract_tests), which expands to one
//! `#[tokio::test]` per case, each with a fresh, empty log.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::{
    Action, Actor, AuditEvent, AuditLog, AuditQuery, Code, DetailValue, EntityId, Outcome,
    StreamId, Subject,
};

coffer_macros::guarded_subject! {
    /// A log under test plus whatever must live as long as it.
    pub struct LogUnderTest {
        /// The log, empty.
        pub log: dyn AuditLog,
    }
}

#[doc(hidden)]
pub use coffer_macros::contract_cases;

/// Expands to one test per contract case.
#[macro_export]
macro_rules! audit_log_contract_tests {
    ($factory:expr) => {
        $crate::testkit::contract_cases!(
            threads = 4, $factory, |subject| $crate::testkit(&subject);
            appends_get_consecutive_seqs_per_stream_and_read_back_exactly,
            list_pages_newest_first,
            rolled_back_appends_leave_no_trace,
            one_transaction_appends_to_several_streams_atomically,
            a_clean_log_verifies_and_reports_progress,
            checkpoints_cover_only_moved_heads,
            concurrent_appends_keep_every_chain_whole,
            distinct_streams_do_not_wait_for_each_other,
        );
    };
}

fn id(s: &str) -> EntityId {
    EntityId::parse(s).unwrap()
}

fn deposit(wallet: &str, amount: i64) -> AuditEvent {
    AuditEvent::new(
        Actor::User(id("user-1")),
        Action::TransactionDeposit,
        Subject::Wallet(id(wallet)),
        Outcome::Success,
    )
    .detail("amount_minor", DetailValue::Int(amount))
    .unwrap()
}

/// Events of every actor and subject kind and every detail type survive storage exactly.
fn varied_events() -> Vec<AuditEvent> {
    let hasher = crate::AuditHasher::new(coffer_crypto::HmacKey::generate());
    vec![
        deposit("w-1", 1050)
            .request(Code::parse("req-7f3a").unwrap())
            .detail("currency", DetailValue::Code(Code::parse("USD").unwrap()))
            .unwrap()
            .detail("first", DetailValue::Bool(true))
            .unwrap(),
        AuditEvent::new(
            Actor::Anonymous,
            Action::UserLoginFailed,
            Subject::System,
            Outcome::Denied,
        )
        .on_stream(StreamId::parse("auth").unwrap())
        .detail("email", hasher.hash("email", "ann@example.com"))
        .unwrap(),
        AuditEvent::new(
            Actor::Admin(id("admin-1")),
            Action::WalletFreeze,
            Subject::Wallet(id("w-1")),
            Outcome::Success,
        ),
        AuditEvent::new(
            Actor::Service(id("coffer-worker")),
            Action::KeyKekRotated,
            Subject::Key(id("coffer-master")),
            Outcome::Success,
        )
        .detail("to_version", DetailValue::Int(i64::MAX))
        .unwrap(),
        AuditEvent::new(
            Actor::User(id("user-2")),
            Action::TransactionFailed,
            Subject::Transaction(id("t-9")),
            Outcome::Failed,
        )
        .on_stream(StreamId::parse("wallet:w-2").unwrap())
        .detail("amount_minor", DetailValue::Int(i64::MIN))
        .unwrap(),
    ]
}

/// Seqs count from 1 per stream; every field reads back exactly as written.
pub async fn appends_get_consecutive_seqs_per_stream_and_read_back_exactly(s: &LogUnderTest) {
    let log = &s.log;
    let events = varied_events();
    let mut receipts = Vec::new();
    for e in &events {
        receipts.push(log.append(e).await.unwrap());
    }
    let seqs: Vec<u64> = receipts.iter().map(|r| r.seq).collect();
    // w-1's stream gets events 0 and 2; the others are alone on theirs.
    assert_eq!(seqs, [1, 1, 2, 1, 1]);
    let mut ids: Vec<i64> = receipts.iter().map(|r| r.id).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), events.len());

    let listed = log
        .list(&AuditQuery {
            limit: 100,
            ..AuditQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(listed.len(), events.len());
    for (record, (event, receipt)) in listed.iter().rev().zip(events.iter().zip(&receipts)) {
        assert_eq!(&record.event, event);
        assert_eq!(record.id, receipt.id);
        assert_eq!(record.seq, receipt.seq);
        assert_eq!(record.mac, receipt.mac);
    }
    let w1 = log
        .list(&AuditQuery {
            stream: Some(StreamId::parse("wallet:w-1").unwrap()),
            ..AuditQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(w1.iter().map(|r| r.seq).collect::<Vec<_>>(), [2, 1]);
    assert_eq!(w1[0].prev_mac, w1[1].mac, "linked");
}

/// Pages come newest first and a cursor continues where the last page ended.
pub async fn list_pages_newest_first(s: &LogUnderTest) {
    for i in 0..25 {
        s.log.append(&deposit("w-p", i)).await.unwrap();
    }
    let mut seen = Vec::new();
    let mut before = None;
    loop {
        let page = s
            .log
            .list(&AuditQuery {
                before_id: before,
                stream: None,
                limit: 10,
            })
            .await
            .unwrap();
        if page.is_empty() {
            break;
        }
        before = page.last().map(|r| r.id);
        seen.extend(page.into_iter().map(|r| r.seq));
    }
    assert_eq!(seen, (1..=25).rev().collect::<Vec<u64>>());
}

/// A rolled-back or dropped transaction leaves neither records nor a moved head behind.
pub async fn rolled_back_appends_leave_no_trace(s: &LogUnderTest) {
    let log = &s.log;
    log.append(&deposit("w-r", 1)).await.unwrap();
    let mut tx = log.begin().await.unwrap();
    assert_eq!(tx.append(&deposit("w-r", 2)).await.unwrap().seq, 2);
    tx.rollback().await.unwrap();
    {
        let mut tx = log.begin().await.unwrap();
        tx.append(&deposit("w-r", 3)).await.unwrap();
        // dropped without commit
    }
    let next = log.append(&deposit("w-r", 4)).await.unwrap();
    assert_eq!(
        next.seq, 2,
        "the rolled-back seqs are reused: nothing of them remains"
    );
    let all = log.list(&AuditQuery::default()).await.unwrap();
    assert_eq!(all.len(), 2);
    let report = log.verify(None, &|_| {}).await.unwrap();
    assert!(report.ok, "{report:?}");
}

/// Appends to several streams in one transaction commit together.
pub async fn one_transaction_appends_to_several_streams_atomically(s: &LogUnderTest) {
    let log = &s.log;
    let mut tx = log.begin().await.unwrap();
    for w in ["w-a", "w-b", "w-a"] {
        tx.append(&deposit(w, 5)).await.unwrap();
    }
    assert!(
        log.list(&AuditQuery::default()).await.unwrap().is_empty(),
        "nothing is visible before commit"
    );
    tx.commit().await.unwrap();
    let all = log.list(&AuditQuery::default()).await.unwrap();
    assert_eq!(all.len(), 3);
    assert!(log.verify(None, &|_| {}).await.unwrap().ok);
}

/// An untouched log verifies, counting what it checked and reporting progress to the end.
pub async fn a_clean_log_verifies_and_reports_progress(s: &LogUnderTest) {
    let log = &s.log;
    for e in varied_events() {
        log.append(&e).await.unwrap();
    }
    log.checkpoint().await.unwrap();
    log.append(&deposit("w-1", 7)).await.unwrap();
    let last = Arc::new(AtomicU64::new(0));
    let seen = last.clone();
    let report = log
        .verify(None, &move |p| {
            assert!(p.checked <= p.total);
            seen.store(p.checked, Ordering::SeqCst);
        })
        .await
        .unwrap();
    assert!(report.ok, "{report:?}");
    assert_eq!(report.checked, 6);
    assert_eq!(report.streams, 4);
    assert_eq!(report.checkpoints, 1);
    assert_eq!(report.unanchored, 1);
    assert_eq!(last.load(Ordering::SeqCst), 6);
}

/// A checkpoint records the heads that moved; with nothing new there is none.
pub async fn checkpoints_cover_only_moved_heads(s: &LogUnderTest) {
    let log = &s.log;
    assert_eq!(log.checkpoint().await.unwrap(), None);
    for w in ["w-1", "w-2", "w-3"] {
        log.append(&deposit(w, 1)).await.unwrap();
    }
    let first = log.checkpoint().await.unwrap().unwrap();
    assert_eq!(first.streams, 3);
    assert_eq!(log.checkpoint().await.unwrap(), None);
    log.append(&deposit("w-2", 2)).await.unwrap();
    let second = log.checkpoint().await.unwrap().unwrap();
    assert_eq!(second.streams, 1);
    assert!(second.id > first.id);
    let report = log.verify(None, &|_| {}).await.unwrap();
    assert!(report.ok, "{report:?}");
    assert_eq!((report.checkpoints, report.unanchored), (2, 0));
}

/// Many concurrent transactions on private and shared streams: every chain is whole.
pub async fn concurrent_appends_keep_every_chain_whole(s: &LogUnderTest) {
    let tasks: Vec<_> = (0..16)
        .map(|t| {
            let log = s.log.clone();
            tokio::spawn(async move {
                for i in 0..20 {
                    let wallet = if i % 2 == 0 {
                        format!("own-{t}")
                    } else {
                        "shared".into()
                    };
                    let mut tx = log.begin().await.unwrap();
                    tx.append(&deposit(&wallet, i)).await.unwrap();
                    tx.commit().await.unwrap();
                }
            })
        })
        .collect();
    let checkpointer = {
        let log = s.log.clone();
        tokio::spawn(async move {
            for _ in 0..10 {
                log.checkpoint().await.unwrap();
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    for t in tasks {
        t.await.unwrap();
    }
    checkpointer.await.unwrap();
    let shared = s
        .log
        .list(&AuditQuery {
            stream: Some(StreamId::parse("wallet:shared").unwrap()),
            limit: 1_000,
            ..AuditQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(
        shared.iter().map(|r| r.seq).collect::<Vec<_>>(),
        (1..=160).rev().collect::<Vec<u64>>()
    );
    let report = s.log.verify(None, &|_| {}).await.unwrap();
    assert!(report.ok, "{report:?}");
    assert_eq!(report.checked, 320);
}

/// With an open transaction holding stream A, an append to stream B completes while an append to
/// A waits for the first to commit. (Adapters whose database has one writer skip the first half
/// by capability, and say so by the assertion below.)
pub async fn distinct_streams_do_not_wait_for_each_other(s: &LogUnderTest) {
    let log = &s.log;
    if !log.capabilities().concurrent_streams {
        // One writer at a time: a second writer waits for the first, whatever the stream.
        let mut holder = log.begin().await.unwrap();
        holder.append(&deposit("w-a", 1)).await.unwrap();
        let other = {
            let log = log.clone();
            tokio::spawn(async move { log.append(&deposit("w-b", 1)).await.unwrap() })
        };
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(
            !other.is_finished(),
            "a single-writer database serialises writers"
        );
        holder.commit().await.unwrap();
        other.await.unwrap();
        return;
    }
    let mut holder = log.begin().await.unwrap();
    holder.append(&deposit("w-a", 1)).await.unwrap();

    let other_stream =
        tokio::time::timeout(Duration::from_secs(10), log.append(&deposit("w-b", 1)))
            .await
            .expect("an append to another stream waited for an unrelated open transaction")
            .unwrap();
    assert_eq!(other_stream.seq, 1);

    let same_stream = {
        let log = log.clone();
        tokio::spawn(async move { log.append(&deposit("w-a", 2)).await.unwrap() })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !same_stream.is_finished(),
        "appends to one stream are serialised"
    );
    holder.commit().await.unwrap();
    let receipt = same_stream.await.unwrap();
    assert_eq!(receipt.seq, 2);
    assert!(log.verify(None, &|_| {}).await.unwrap().ok);
}
