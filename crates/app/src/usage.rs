//! Key use in the audit log, in aggregate: every minute, the master key's calls (what reached
//! the key manager, under the cache) and the secrets manager's reads become one
//! `key.access_summary` or `key.secret_read` record per subject, operation, outcome and minute,
//! with its count. Never a record per call, never one per cache hit.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use coffer_audit::{
    Action, Actor, AuditEvent, AuditLog, Code, DetailValue, EntityId, Outcome, Subject,
};
use coffer_keys::{MeteredKeyProvider, UsageRow};
use coffer_secrets::SecretsManager;

/// An audit id for a key or secret name: `/` (ARNs, secret folders) becomes `:`, anything
/// else outside the id alphabet `_`.
fn audit_id(subject: &str) -> Option<EntityId> {
    let cleaned: String = subject
        .chars()
        .take(128)
        .map(|c| match c {
            '/' => ':',
            c if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '-') => c,
            _ => '_',
        })
        .collect();
    EntityId::parse(&cleaned).ok()
}

fn events(rows: Vec<UsageRow>, action: Action, actor: &Actor) -> Vec<AuditEvent> {
    rows.into_iter()
        .filter_map(|row| {
            let outcome = match row.outcome {
                "ok" | "cached" => Outcome::Success,
                "denied" => Outcome::Denied,
                _ => Outcome::Failed,
            };
            let at = i64::try_from(row.minute.saturating_mul(60_000_000)).unwrap_or(i64::MAX);
            let mut e = AuditEvent::new(
                actor.clone(),
                action,
                Subject::Key(audit_id(&row.subject)?),
                outcome,
            )
            .at(at);
            for (k, v) in [("operation", row.operation), ("outcome", row.outcome)] {
                if let Ok(code) = Code::parse(v) {
                    let _ = e.details.insert(k, DetailValue::Code(code));
                }
            }
            let _ = e.details.insert(
                "count",
                DetailValue::Int(i64::try_from(row.count).unwrap_or(i64::MAX)),
            );
            Some(e)
        })
        .collect()
}

/// The counts of finished minutes (all of them with `everything`), as audit records.
#[must_use]
pub fn drain(
    keys: &MeteredKeyProvider,
    secrets: &SecretsManager,
    actor: &Actor,
    everything: bool,
) -> Vec<AuditEvent> {
    let now = SystemTime::now();
    let mut out = events(
        keys.usage().drain(now, everything),
        Action::KeyAccessSummary,
        actor,
    );
    out.extend(events(
        secrets.usage().drain(now, everything),
        Action::KeySecretRead,
        actor,
    ));
    out
}

/// Writes the drained records; a failure is logged and those counts dropped (the metrics keep
/// their totals).
pub async fn flush(
    keys: &MeteredKeyProvider,
    secrets: &SecretsManager,
    log: &dyn AuditLog,
    actor: &Actor,
    everything: bool,
) {
    for event in drain(keys, secrets, actor, everything) {
        if let Err(e) = log.append(&event).await {
            tracing::error!(error = %e, "could not record key use in the audit log");
        }
    }
}

/// Flushes finished minutes every `every`.
pub fn spawn_flusher(
    keys: Arc<MeteredKeyProvider>,
    secrets: Arc<SecretsManager>,
    log: Arc<dyn AuditLog>,
    actor: Actor,
    every: Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        loop {
            tick.tick().await;
            flush(&keys, &secrets, log.as_ref(), &actor, false).await;
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_become_audit_ids() {
        let id = |s: &str| audit_id(s).map(|i| i.as_str().to_owned());
        assert_eq!(
            id("aws-kms:arn:aws:kms:us-east-1:1:key/abc").as_deref(),
            Some("aws-kms:arn:aws:kms:us-east-1:1:key:abc")
        );
        assert_eq!(id("smtp/password").as_deref(), Some("smtp:password"));
        assert_eq!(id("a b").as_deref(), Some("a_b"));
    }
}
