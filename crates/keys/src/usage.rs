//! Key use counted per subject (a master key, a secret), operation, outcome and minute, for the
//! audit log's aggregate records: a million unwraps in a minute are a handful of rows, each with
//! its count, never a row per call or per cache hit.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::KeyError;

/// One minute's count of one (subject, operation, outcome).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageRow {
    /// What was used: `provider:key_id`, or a secret's name.
    pub subject: String,
    /// `unwrap_data_key`, `read`…
    pub operation: &'static str,
    /// `ok`, `cached`, or an error kind of [`outcome_of`].
    pub outcome: &'static str,
    /// Minutes since the Unix epoch.
    pub minute: u64,
    /// How many.
    pub count: u64,
}

/// (subject, operation, outcome, minute).
type UsageKey = (String, &'static str, &'static str, u64);

/// The counts not yet drained.
#[derive(Debug, Default)]
pub struct UsageCounter {
    counts: Mutex<HashMap<UsageKey, u64>>,
}

fn minute_of(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() / 60)
}

/// The stable name of a key error's kind, as metrics and audit records carry it.
#[must_use]
pub fn outcome_of(e: &KeyError) -> &'static str {
    match e {
        KeyError::Unavailable { .. } => "unavailable",
        KeyError::Denied { .. } => "denied",
        KeyError::NotFound { .. } => "not_found",
        KeyError::Retired { .. } => "retired",
        KeyError::Corrupt(_) => "corrupt",
        KeyError::Unsupported { .. } => "unsupported",
        _ => "other",
    }
}

impl UsageCounter {
    /// Counts one use.
    pub fn record(&self, subject: &str, operation: &'static str, outcome: &'static str) {
        self.record_at(subject, operation, outcome, SystemTime::now());
    }

    /// Counts one use at `at`.
    pub fn record_at(
        &self,
        subject: &str,
        operation: &'static str,
        outcome: &'static str,
        at: SystemTime,
    ) {
        *self
            .counts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry((subject.to_owned(), operation, outcome, minute_of(at)))
            .or_insert(0) += 1;
    }

    /// Takes the counts of the minutes that ended before `now` (all of them with
    /// `everything`), ordered by minute, subject, operation and outcome.
    pub fn drain(&self, now: SystemTime, everything: bool) -> Vec<UsageRow> {
        let current = minute_of(now);
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        let done: Vec<_> = counts
            .keys()
            .filter(|(_, _, _, m)| everything || *m < current)
            .cloned()
            .collect();
        let mut rows: Vec<UsageRow> = done
            .into_iter()
            .filter_map(|k| {
                let count = counts.remove(&k)?;
                let (subject, operation, outcome, minute) = k;
                Some(UsageRow {
                    subject,
                    operation,
                    outcome,
                    minute,
                    count,
                })
            })
            .collect();
        rows.sort_by(|a, b| {
            (a.minute, &a.subject, a.operation, a.outcome).cmp(&(
                b.minute,
                &b.subject,
                b.operation,
                b.outcome,
            ))
        });
        rows
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn uses_become_one_row_per_subject_operation_outcome_and_minute() {
        let u = UsageCounter::default();
        let t0 = UNIX_EPOCH + Duration::from_secs(60 * 1_000);
        for i in 0..10_000 {
            u.record_at(
                "local:k",
                "unwrap_data_key",
                "ok",
                t0 + Duration::from_millis(i),
            );
        }
        u.record_at("local:k", "unwrap_data_key", "corrupt", t0);
        u.record_at(
            "local:k",
            "unwrap_data_key",
            "ok",
            t0 + Duration::from_secs(60),
        );
        // The current minute stays until it ends.
        let rows = u.drain(t0 + Duration::from_secs(61), false);
        let got: Vec<_> = rows.iter().map(|r| (r.outcome, r.count)).collect();
        assert_eq!(got, [("corrupt", 1), ("ok", 10_000)]);
        let rest = u.drain(t0 + Duration::from_secs(61), true);
        assert_eq!((rest.len(), rest[0].minute), (1, 1_001));
        assert!(u.drain(t0 + Duration::from_secs(600), true).is_empty());
    }
}
