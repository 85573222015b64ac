//! The verifier on in-memory logs: every kind of tampering is detected and pinpointed.
#![allow(clippy::unwrap_used)]

use coffer_audit::chain::{
    AuditRecord, Checkpoint, CheckpointEntry, GENESIS, checkpoint_mac, record_mac,
};
use coffer_audit::{
    Action, Actor, AuditEvent, DetailValue, EntityId, FindingKind, Outcome, StreamId, Subject,
    Verifier, VerifyReport,
};
use coffer_crypto::HmacKey;

struct Log {
    key: HmacKey,
    records: Vec<AuditRecord>,
    checkpoints: Vec<Checkpoint>,
    next_id: i64,
}

impl Log {
    fn new() -> Self {
        Self {
            key: HmacKey::generate(),
            records: Vec::new(),
            checkpoints: Vec::new(),
            next_id: 1,
        }
    }

    fn append(&mut self, stream: &str, amount: i64) {
        let event = AuditEvent::new(
            Actor::User(EntityId::parse("u1").unwrap()),
            Action::TransactionDeposit,
            Subject::Wallet(EntityId::parse(stream).unwrap()),
            Outcome::Success,
        )
        .on_stream(StreamId::parse(stream).unwrap())
        .detail("amount_minor", DetailValue::Int(amount))
        .unwrap();
        let last = self
            .records
            .iter()
            .rfind(|r| r.event.stream.as_str() == stream);
        let (seq, prev_mac) = last.map_or((1, GENESIS), |r| (r.seq + 1, r.mac));
        let mac = record_mac(&self.key, &event, seq, &prev_mac);
        self.records.push(AuditRecord {
            id: self.next_id,
            seq,
            prev_mac,
            mac,
            event,
        });
        self.next_id += 1;
    }

    fn checkpoint(&mut self) {
        let mut entries: Vec<CheckpointEntry> = Vec::new();
        for r in &self.records {
            entries.retain(|e| e.stream != r.event.stream.as_str());
            entries.push(CheckpointEntry {
                stream: r.event.stream.to_string(),
                seq: r.seq,
                mac: r.mac,
            });
        }
        let prev_mac = self.checkpoints.last().map_or(GENESIS, |c| c.mac);
        let at = 1_700_000_000_000_000;
        let mac = checkpoint_mac(&self.key, at, &prev_mac, &entries);
        self.checkpoints.push(Checkpoint {
            id: self.checkpoints.len() as i64 + 1,
            at_micros: at,
            prev_mac,
            entries,
            mac,
        });
    }

    /// What the store feeds the verifier: ORDER BY stream, id.
    fn verify(&self) -> VerifyReport {
        let mut sorted = self.records.clone();
        sorted
            .sort_by(|a, b| (a.event.stream.as_str(), a.id).cmp(&(b.event.stream.as_str(), b.id)));
        let mut v = Verifier::new(&self.key, &self.checkpoints, None);
        for r in sorted {
            v.push(r);
        }
        v.finish()
    }

    fn position(&self, stream: &str, seq: u64) -> usize {
        self.records
            .iter()
            .position(|r| r.event.stream.as_str() == stream && r.seq == seq)
            .unwrap()
    }
}

/// Two wallets, five records each, interleaved, with a checkpoint after the first eight.
fn sample() -> Log {
    let mut log = Log::new();
    for i in 0..4 {
        log.append("wallet-a", 100 + i);
        log.append("wallet-b", 200 + i);
    }
    log.checkpoint();
    log.append("wallet-a", 104);
    log.append("wallet-b", 204);
    log
}

fn first_bad(log: &Log) -> (String, u64, FindingKind) {
    let report = log.verify();
    assert!(!report.ok);
    let f = report.first_bad.unwrap();
    (f.stream, f.seq, f.kind)
}

#[test]
fn an_untouched_log_verifies() {
    let report = sample().verify();
    assert!(report.ok, "{report:?}");
    assert_eq!(
        (report.checked, report.streams, report.checkpoints),
        (10, 2, 1)
    );
    assert_eq!(
        report.unanchored, 2,
        "one record per stream after the checkpoint"
    );
}

#[test]
fn a_modified_record_is_named() {
    let mut log = sample();
    let i = log.position("wallet-a", 3);
    log.records[i]
        .event
        .details
        .insert("amount_minor", DetailValue::Int(1_000_000))
        .unwrap();
    assert_eq!(
        first_bad(&log),
        ("wallet-a".into(), 3, FindingKind::Modified)
    );
}

#[test]
fn a_modified_time_or_actor_is_named() {
    let mut log = sample();
    let i = log.position("wallet-b", 2);
    log.records[i].event.at_micros += 1;
    assert_eq!(
        first_bad(&log),
        ("wallet-b".into(), 2, FindingKind::Modified)
    );
    let mut log = sample();
    let i = log.position("wallet-b", 5);
    log.records[i].event.actor = Actor::Anonymous;
    assert_eq!(
        first_bad(&log),
        ("wallet-b".into(), 5, FindingKind::Modified)
    );
}

#[test]
fn a_deleted_record_is_named_by_the_gap() {
    let mut log = sample();
    let i = log.position("wallet-a", 2);
    log.records.remove(i);
    assert_eq!(
        first_bad(&log),
        (
            "wallet-a".into(),
            3,
            FindingKind::Deleted { from: 2, to: 2 }
        )
    );
}

#[test]
fn reordered_records_are_named() {
    let mut log = sample();
    let (i, j) = (log.position("wallet-a", 2), log.position("wallet-a", 3));
    let (id_i, id_j) = (log.records[i].id, log.records[j].id);
    log.records[i].id = id_j;
    log.records[j].id = id_i;
    assert_eq!(
        first_bad(&log),
        ("wallet-a".into(), 3, FindingKind::Reordered)
    );
}

#[test]
fn an_inserted_record_is_named() {
    // In the middle (an id between two records, a seq that repeats one).
    let mut log = sample();
    let i = log.position("wallet-b", 2);
    let mut forged = log.records[i].clone();
    // Same id as seq 2 (the stable sort keeps it right after it): between seq 2 and seq 3.
    forged.id = log.records[i].id;
    forged.seq = 3;
    forged.prev_mac = log.records[i].mac;
    forged.mac = [7; 32];
    log.records.insert(i + 1, forged);
    assert_eq!(
        first_bad(&log),
        ("wallet-b".into(), 3, FindingKind::Inserted)
    );

    // At the end, reusing an existing seq.
    let mut log = sample();
    let mut forged = log.records[log.position("wallet-a", 1)].clone();
    forged.id = 1_000;
    forged.mac = [9; 32];
    log.records.push(forged);
    assert_eq!(
        first_bad(&log),
        ("wallet-a".into(), 1, FindingKind::Inserted)
    );
}

#[test]
fn truncation_before_the_checkpoint_is_proven() {
    let mut log = sample();
    // Remove wallet-a's last three records (seq 3, 4 and 5); seq 4 was checkpointed.
    log.records
        .retain(|r| !(r.event.stream.as_str() == "wallet-a" && r.seq >= 3));
    assert_eq!(
        first_bad(&log),
        (
            "wallet-a".into(),
            2,
            FindingKind::Truncated {
                last_seq: 2,
                expected_seq: 4,
                proven: true
            }
        )
    );
}

#[test]
fn a_whole_stream_deleted_is_detected() {
    let mut log = sample();
    log.records
        .retain(|r| r.event.stream.as_str() != "wallet-b");
    let report = log.verify();
    let f = report.first_bad.unwrap();
    assert_eq!(f.stream, "wallet-b");
    assert_eq!(
        f.kind,
        FindingKind::Truncated {
            last_seq: 0,
            expected_seq: 4,
            proven: true
        }
    );
}

#[test]
fn truncation_after_the_checkpoint_is_caught_by_heads_and_reported_unproven() {
    let mut log = sample();
    log.records
        .retain(|r| !(r.event.stream.as_str() == "wallet-a" && r.seq == 5));
    // Without heads: not detectable, but reported as unanchored.
    assert!(log.verify().ok);
    let mut sorted = log.records.clone();
    sorted.sort_by(|a, b| (a.event.stream.as_str(), a.id).cmp(&(b.event.stream.as_str(), b.id)));
    let mut v = Verifier::new(&log.key, &log.checkpoints, None);
    v.with_heads([("wallet-a".to_owned(), 5), ("wallet-b".to_owned(), 5)]);
    for r in sorted {
        v.push(r);
    }
    let report = v.finish();
    assert_eq!(
        report.first_bad.unwrap().kind,
        FindingKind::Truncated {
            last_seq: 4,
            expected_seq: 5,
            proven: false
        }
    );
}

#[test]
fn a_tampered_checkpoint_is_named() {
    let mut log = sample();
    log.checkpoints[0].entries[0].seq = 1;
    assert_eq!(first_bad(&log).2, FindingKind::CheckpointTampered);
}

#[test]
fn a_record_moved_to_another_stream_fails() {
    let mut log = sample();
    let i = log.position("wallet-a", 5);
    log.records[i].event.stream = StreamId::parse("wallet-c").unwrap();
    let report = log.verify();
    assert!(!report.ok);
}

#[test]
fn records_from_another_key_fail() {
    let mut log = sample();
    log.key = HmacKey::generate();
    let report = log.verify();
    assert_eq!(
        report.first_bad.unwrap().kind,
        FindingKind::CheckpointTampered
    );
}

#[test]
fn cutting_the_newest_checkpoint_is_caught_by_the_anchor() {
    let mut log = sample();
    log.checkpoint();
    let anchor = coffer_audit::CheckpointAnchor {
        id: log.checkpoints[1].id,
        mac: log.checkpoints[1].mac,
    };
    // The attacker removes the newest checkpoint and the records only it covered.
    log.checkpoints.pop();
    log.records.retain(|r| r.seq <= 4);
    assert!(
        log.verify().ok,
        "without an outside anchor the cut is invisible"
    );
    let mut sorted = log.records.clone();
    sorted.sort_by(|a, b| (a.event.stream.as_str(), a.id).cmp(&(b.event.stream.as_str(), b.id)));
    let mut v = Verifier::new(&log.key, &log.checkpoints, Some(&anchor));
    for r in sorted {
        v.push(r);
    }
    let f = v.finish().first_bad.unwrap();
    assert_eq!(
        (f.id, f.kind),
        (Some(anchor.id), FindingKind::AnchorMissing)
    );
}

#[test]
fn a_forged_record_at_the_end_of_a_stream_is_reported_as_modified() {
    // Indistinguishable from a changed last record: either way that record is named.
    let mut log = sample();
    let mut forged = log.records[log.position("wallet-a", 5)].clone();
    forged.id = 1_000;
    forged.seq = 6;
    forged.prev_mac = forged.mac;
    forged.mac = [3; 32];
    log.records.push(forged);
    assert_eq!(
        first_bad(&log),
        ("wallet-a".into(), 6, FindingKind::Modified)
    );
}
