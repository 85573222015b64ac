//! Per-stream HMAC chains and signed checkpoints.
//!
//! ```text
//! mac(n) = HMAC(audit key, "coffer.audit.record.v1" ‖ stream ‖ n ‖ mac(n-1) ‖ event fields)
//! ```
//!
//! with `mac(0)` all zeros and every field length-prefixed. The audit key is held by the
//! application (wrapped by the master key), never by the database, so whoever can write the
//! database cannot produce a valid record.
//!
//! A checkpoint MACs the heads `(stream, seq, mac)` that moved since the previous checkpoint,
//! chained to it: a stream whose records end before its last checkpointed head was truncated.

use coffer_crypto::HmacKey;

use crate::event::{AuditEvent, DetailValue};

/// The MAC that precedes the first record of every stream.
pub const GENESIS: [u8; 32] = [0; 32];

/// A record as stored: the event, its place in its stream, and the chain MACs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    /// Storage id: insertion order across all streams (within a stream, equal to seq order).
    pub id: i64,
    /// Position in its stream, from 1.
    pub seq: u64,
    /// The previous record's MAC ([`GENESIS`] for seq 1).
    pub prev_mac: [u8; 32],
    /// This record's MAC.
    pub mac: [u8; 32],
    /// The event.
    pub event: AuditEvent,
}

/// Where an appended record went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    /// Storage id.
    pub id: i64,
    /// Position in its stream.
    pub seq: u64,
    /// Its MAC.
    pub mac: [u8; 32],
}

/// Length-prefixed canonical encoding.
#[derive(Default)]
struct Encoder(Vec<u8>);

impl Encoder {
    fn bytes(&mut self, b: &[u8]) -> &mut Self {
        let len = u32::try_from(b.len()).unwrap_or(u32::MAX);
        self.0.extend_from_slice(&len.to_be_bytes());
        self.0.extend_from_slice(b);
        self
    }

    fn str(&mut self, s: &str) -> &mut Self {
        self.bytes(s.as_bytes())
    }

    fn opt(&mut self, s: Option<&str>) -> &mut Self {
        match s {
            Some(s) => {
                self.0.push(1);
                self.str(s)
            }
            None => {
                self.0.push(0);
                self
            }
        }
    }

    fn u64(&mut self, v: u64) -> &mut Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }

    fn i64(&mut self, v: i64) -> &mut Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
}

fn encode_event(enc: &mut Encoder, e: &AuditEvent) {
    let (actor_kind, actor_id) = e.actor.parts();
    let (subject_kind, subject_id) = e.subject.parts();
    enc.i64(e.at_micros)
        .str(actor_kind)
        .opt(actor_id.map(|i| i.as_str()))
        .str(e.action.as_str())
        .str(subject_kind)
        .opt(subject_id.map(|i| i.as_str()))
        .str(e.outcome.as_str())
        .opt(e.request_id.as_ref().map(|r| r.as_str()))
        .u64(e.details.len() as u64);
    for (k, v) in e.details.iter() {
        enc.str(k);
        match v {
            DetailValue::Int(i) => {
                enc.str("int").i64(*i);
            }
            DetailValue::Bool(b) => {
                enc.str("bool").u64(u64::from(*b));
            }
            DetailValue::Code(c) => {
                enc.str("code").str(c.as_str());
            }
            DetailValue::Mac(m) => {
                enc.str("mac").bytes(m.as_bytes());
            }
        }
    }
}

/// The MAC of `event` at position `seq` after `prev_mac`.
#[must_use]
pub fn record_mac(key: &HmacKey, event: &AuditEvent, seq: u64, prev_mac: &[u8; 32]) -> [u8; 32] {
    let mut enc = Encoder::default();
    enc.str("coffer.audit.record.v1")
        .str(event.stream.as_str())
        .u64(seq)
        .bytes(prev_mac);
    encode_event(&mut enc, event);
    key.mac(&[&enc.0])
}

/// One stream head recorded by a checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointEntry {
    /// The stream.
    pub stream: String,
    /// Its last seq at checkpoint time.
    pub seq: u64,
    /// The MAC of that record.
    pub mac: [u8; 32],
}

/// A checkpoint as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// Storage id, increasing.
    pub id: i64,
    /// When, in microseconds since the Unix epoch.
    pub at_micros: i64,
    /// The previous checkpoint's MAC ([`GENESIS`] for the first).
    pub prev_mac: [u8; 32],
    /// Heads that moved since the previous checkpoint.
    pub entries: Vec<CheckpointEntry>,
    /// MAC over all of the above.
    pub mac: [u8; 32],
}

/// The MAC of a checkpoint.
#[must_use]
pub fn checkpoint_mac(
    key: &HmacKey,
    at_micros: i64,
    prev_mac: &[u8; 32],
    entries: &[CheckpointEntry],
) -> [u8; 32] {
    let mut enc = Encoder::default();
    enc.str("coffer.audit.checkpoint.v1")
        .i64(at_micros)
        .bytes(prev_mac)
        .u64(entries.len() as u64);
    for e in entries {
        enc.str(&e.stream).u64(e.seq).bytes(&e.mac);
    }
    key.mac(&[&enc.0])
}

/// Storage form of checkpoint entries (a database column).
#[must_use]
pub fn encode_entries(entries: &[CheckpointEntry]) -> Vec<u8> {
    let mut enc = Encoder::default();
    enc.u64(entries.len() as u64);
    for e in entries {
        enc.str(&e.stream).u64(e.seq).bytes(&e.mac);
    }
    enc.0
}

/// Parses [`encode_entries`]; `None` for malformed bytes (reported as a tampered checkpoint).
#[must_use]
pub fn decode_entries(mut bytes: &[u8]) -> Option<Vec<CheckpointEntry>> {
    fn take<'a>(b: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
        if b.len() < n {
            return None;
        }
        let (h, t) = b.split_at(n);
        *b = t;
        Some(h)
    }
    fn u64_(b: &mut &[u8]) -> Option<u64> {
        Some(u64::from_be_bytes(take(b, 8)?.try_into().ok()?))
    }
    fn bytes_<'a>(b: &mut &'a [u8]) -> Option<&'a [u8]> {
        let len = u32::from_be_bytes(take(b, 4)?.try_into().ok()?);
        take(b, usize::try_from(len).ok()?)
    }
    let n = u64_(&mut bytes)?;
    let mut out = Vec::new();
    for _ in 0..n {
        let stream = String::from_utf8(bytes_(&mut bytes)?.to_vec()).ok()?;
        let seq = u64_(&mut bytes)?;
        let mac = bytes_(&mut bytes)?.try_into().ok()?;
        out.push(CheckpointEntry { stream, seq, mac });
    }
    bytes.is_empty().then_some(out)
}

/// What a new checkpoint covered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointSummary {
    /// Its storage id.
    pub id: i64,
    /// How many stream heads it recorded.
    pub streams: usize,
    /// Its MAC: kept outside the database (the log sink ships it), it is the anchor that proves
    /// later that no checkpoint, and so no record before it, was cut off.
    pub mac: [u8; 32],
}

/// A checkpoint known from outside the database (a shipped log line, the worker's state).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckpointAnchor {
    /// Its id.
    pub id: i64,
    /// Its MAC.
    pub mac: [u8; 32],
}
