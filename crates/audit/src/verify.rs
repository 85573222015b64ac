//! Verification: walk every stream, name the first record that was modified, deleted, reordered
//! or inserted, and detect truncation against checkpoints.
//!
//! Records must be fed grouped by stream and, within a stream, in storage-id order (`ORDER BY
//! stream, id`). Within a stream, appends are serialised by the stream's head lock, so id order
//! is seq order for an untouched log; a record out of that order was moved.
//!
//! A forgery appended at the very end of a stream cannot be told from a changed last record, and
//! is reported as modified. Records newer than their stream's last checkpoint are counted as
//! `unanchored`: until the next checkpoint their truncation shows only against the unsigned
//! heads table. Checkpoints chain to each other, so cutting the newest ones shows only against an
//! anchor kept outside the database: each checkpoint's id and MAC go out on the log sink, and a
//! verification given that anchor reports [`FindingKind::AnchorMissing`] when it is gone or
//! different.

use std::collections::{BTreeMap, HashMap};

use coffer_crypto::HmacKey;

use crate::chain::{
    AuditRecord, Checkpoint, CheckpointAnchor, GENESIS, checkpoint_mac, record_mac,
};

/// What is wrong with a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FindingKind {
    /// Its MAC does not match its contents: changed after it was written.
    Modified,
    /// Records `from..=to` of the stream are missing before this one.
    Deleted {
        /// First missing seq.
        from: u64,
        /// Last missing seq.
        to: u64,
    },
    /// A valid record out of its place in the stream.
    Reordered,
    /// A record the application never wrote (its MAC is invalid and the chain is whole without
    /// it).
    Inserted,
    /// The stream ends before a head recorded in a checkpoint (`proven`: the checkpoint's own MAC
    /// checks out) or in the unsigned heads table (`proven: false`).
    Truncated {
        /// The last seq present (0 when the stream is gone entirely).
        last_seq: u64,
        /// The seq the stream reached.
        expected_seq: u64,
        /// Whether a signed checkpoint proves it.
        proven: bool,
    },
    /// A checkpoint's MAC or link is invalid.
    CheckpointTampered,
    /// The anchored checkpoint (known from outside the database) is gone or different: the
    /// checkpoint chain, and the records it covered, were cut.
    AnchorMissing,
}

/// The first problem found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// The stream.
    pub stream: String,
    /// The record's seq (for a checkpoint: 0).
    pub seq: u64,
    /// The record's storage id (for a checkpoint: its id), when there is a record.
    pub id: Option<i64>,
    /// What is wrong.
    pub kind: FindingKind,
}

/// The outcome of a verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    /// Whether every check passed.
    pub ok: bool,
    /// Records checked.
    pub checked: u64,
    /// Streams checked.
    pub streams: u64,
    /// Checkpoints checked.
    pub checkpoints: u64,
    /// The first problem, in stream order.
    pub first_bad: Option<Finding>,
    /// How many streams have a problem.
    pub bad_streams: u64,
    /// Records newer than the last checkpoint of their stream: their truncation can be noticed
    /// only against the unsigned heads table until the next checkpoint.
    pub unanchored: u64,
}

/// Progress of a long verification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VerifyProgress {
    /// Records checked so far.
    pub checked: u64,
    /// Records in the log when verification started (an estimate when appends continue).
    pub total: u64,
}

/// The streaming verifier. See the [module documentation](self).
pub struct Verifier<'k> {
    key: &'k HmacKey,
    /// Last checkpointed head per stream.
    anchors: HashMap<String, (u64, [u8; 32])>,
    /// Heads from the unsigned heads table.
    heads: HashMap<String, u64>,
    current: Option<String>,
    buffer: Vec<AuditRecord>,
    /// A row of the current stream that could not even be parsed.
    unreadable: Option<Finding>,
    seen: std::collections::HashSet<String>,
    report: VerifyReport,
}

coffer_macros::debug_non_exhaustive!(self => Verifier<'_> { report });

impl<'k> Verifier<'k> {
    /// Starts a verification: checks the checkpoint chain (in id order) first, and that it
    /// still holds `anchor`, the latest checkpoint known from outside the database, if given.
    #[must_use]
    pub fn new(
        key: &'k HmacKey,
        checkpoints: &[Checkpoint],
        anchor: Option<&CheckpointAnchor>,
    ) -> Self {
        let mut v = Self {
            key,
            anchors: HashMap::new(),
            heads: HashMap::new(),
            current: None,
            buffer: Vec::new(),
            unreadable: None,
            seen: std::collections::HashSet::new(),
            report: VerifyReport {
                ok: true,
                checked: 0,
                streams: 0,
                checkpoints: 0,
                first_bad: None,
                bad_streams: 0,
                unanchored: 0,
            },
        };
        let mut prev = GENESIS;
        for c in checkpoints {
            v.report.checkpoints += 1;
            let valid = c.prev_mac == prev
                && checkpoint_mac(key, c.at_micros, &c.prev_mac, &c.entries) == c.mac;
            if !valid {
                v.fail(Finding {
                    stream: String::new(),
                    seq: 0,
                    id: Some(c.id),
                    kind: FindingKind::CheckpointTampered,
                });
                break;
            }
            for e in &c.entries {
                v.anchors.insert(e.stream.clone(), (e.seq, e.mac));
            }
            prev = c.mac;
        }
        if let Some(a) = anchor
            && !checkpoints.iter().any(|c| c.id == a.id && c.mac == a.mac)
        {
            v.fail(Finding {
                stream: String::new(),
                seq: 0,
                id: Some(a.id),
                kind: FindingKind::AnchorMissing,
            });
        }
        v
    }

    /// Adds the unsigned heads table (stream → last seq), to report truncation since the last
    /// checkpoint as unproven.
    pub fn with_heads(&mut self, heads: impl IntoIterator<Item = (String, u64)>) {
        self.heads.extend(heads);
    }

    fn fail(&mut self, finding: Finding) {
        self.report.ok = false;
        self.report.bad_streams += 1;
        if self.report.first_bad.is_none() {
            self.report.first_bad = Some(finding);
        }
    }

    /// Feeds the next record.
    pub fn push(&mut self, record: AuditRecord) {
        self.report.checked += 1;
        if self.current.as_deref() != Some(record.event.stream.as_str()) {
            self.flush();
            self.current = Some(record.event.stream.as_str().to_owned());
        }
        self.buffer.push(record);
    }

    /// Feeds a row that could not be parsed into a record (an unknown action name, a malformed
    /// MAC column…): it was modified.
    pub fn push_unreadable(&mut self, stream: String, id: i64, seq: u64) {
        self.report.checked += 1;
        if self.current.as_deref() != Some(stream.as_str()) {
            self.flush();
            self.current = Some(stream.clone());
        }
        if self.unreadable.is_none() {
            self.unreadable = Some(Finding {
                stream,
                seq,
                id: Some(id),
                kind: FindingKind::Modified,
            });
        }
    }

    /// Records checked so far.
    #[must_use]
    pub fn checked(&self) -> u64 {
        self.report.checked
    }

    fn flush(&mut self) {
        let Some(stream) = self.current.take() else {
            return;
        };
        let records = std::mem::take(&mut self.buffer);
        self.report.streams += 1;
        if let Some(f) = self.unreadable.take() {
            self.fail(f);
        } else if let Some(f) = self.check_stream(&stream, &records) {
            self.fail(f);
        }
        self.seen.insert(stream);
    }

    fn check_stream(&mut self, stream: &str, records: &[AuditRecord]) -> Option<Finding> {
        let finding = |r: &AuditRecord, kind| Finding {
            stream: stream.to_owned(),
            seq: r.seq,
            id: Some(r.id),
            kind,
        };
        let mut expected = 1u64;
        let mut prev = GENESIS;
        for (i, r) in records.iter().enumerate() {
            let self_ok = record_mac(self.key, &r.event, r.seq, &r.prev_mac) == r.mac;
            if !self_ok {
                let next_links = records
                    .get(i + 1)
                    .is_some_and(|n| n.prev_mac == prev && n.seq == expected);
                let kind = if next_links || r.seq < expected {
                    FindingKind::Inserted
                } else {
                    FindingKind::Modified
                };
                return Some(finding(r, kind));
            }
            if r.seq != expected {
                let missing_turns_up_later = records
                    .get(i + 1..)
                    .unwrap_or_default()
                    .iter()
                    .any(|x| x.seq >= expected && x.seq < r.seq);
                let kind = if r.seq < expected || missing_turns_up_later {
                    FindingKind::Reordered
                } else {
                    FindingKind::Deleted {
                        from: expected,
                        to: r.seq - 1,
                    }
                };
                return Some(finding(r, kind));
            }
            if r.prev_mac != prev {
                // A validly MAC'd record whose predecessor is not the one before it: the record
                // before was replaced wholesale.
                return Some(finding(r, FindingKind::Modified));
            }
            prev = r.mac;
            expected += 1;
        }
        let last_seq = expected - 1;
        let truncated = |expected_seq, proven| Finding {
            stream: stream.to_owned(),
            seq: last_seq,
            id: records.last().map(|r| r.id),
            kind: FindingKind::Truncated {
                last_seq,
                expected_seq,
                proven,
            },
        };
        if let Some((seq, mac)) = self.anchors.get(stream).copied() {
            if last_seq < seq {
                return Some(truncated(seq, true));
            }
            let at = usize::try_from(seq).ok().and_then(|s| s.checked_sub(1));
            if let Some(r) = at.and_then(|i| records.get(i))
                && r.mac != mac
            {
                return Some(finding(r, FindingKind::Modified));
            }
            self.report.unanchored += last_seq - seq;
        } else {
            self.report.unanchored += last_seq;
        }
        if let Some(head) = self.heads.get(stream).copied()
            && last_seq < head
        {
            return Some(truncated(head, false));
        }
        None
    }

    /// Finishes: streams known to checkpoints or heads but absent from the log were truncated
    /// entirely.
    #[must_use]
    pub fn finish(mut self) -> VerifyReport {
        self.flush();
        let mut vanished: BTreeMap<String, (u64, bool)> = BTreeMap::new();
        for (s, (seq, _)) in &self.anchors {
            if !self.seen.contains(s) {
                vanished.insert(s.clone(), (*seq, true));
            }
        }
        for (s, seq) in &self.heads {
            if !self.seen.contains(s) && *seq > 0 {
                vanished.entry(s.clone()).or_insert((*seq, false));
            }
        }
        for (stream, (expected_seq, proven)) in vanished {
            self.fail(Finding {
                stream,
                seq: 0,
                id: None,
                kind: FindingKind::Truncated {
                    last_seq: 0,
                    expected_seq,
                    proven,
                },
            });
        }
        self.report
    }
}
