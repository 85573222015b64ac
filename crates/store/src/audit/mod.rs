//! The audit log on Postgres and SQLite.
//!
//! Chaining design (see docs/ARCHITECTURE.md): one chain per stream with a head row per stream
//! in `audit_heads`. On Postgres an append, inside the caller's transaction, computes the next
//! MAC from the head this process last wrote and moves the head and inserts the event in one
//! statement that only succeeds if the head is still the one guessed; otherwise it locks the head
//! (`SELECT … FOR UPDATE`), reads it and tries again. The head's row lock is held until commit,
//! so appends to one stream are serialised and id order equals seq order within a stream, while
//! appends to other streams do not wait. On SQLite (one writer) the head is read and moved in the
//! `BEGIN IMMEDIATE` transaction. Checkpoints take the heads that moved with `FOR UPDATE SKIP
//! LOCKED`: a head whose append is in flight is left for the next checkpoint, so a checkpoint
//! never waits for appends and never records an uncommitted head (appends to the heads it took
//! wait for its short transaction to commit).
//!
//! Postgres appends assume READ COMMITTED (the default); under a stricter isolation level a
//! moved head is a serialization failure, reported as [`AuditError::Conflict`] for a retry.
//!
//! A checkpoint's time is read from the log's clock (the system's as opened, another from
//! `with_clock`); events carry the time their service gave them.

use coffer_audit::chain::{
    AuditRecord, Checkpoint, CheckpointAnchor, CheckpointEntry, GENESIS, checkpoint_mac,
    decode_entries,
};
use coffer_audit::{
    Action, Actor, AuditError, AuditEvent, Code, Details, Outcome, StreamId, Subject, Verifier,
    VerifyProgress, VerifyReport,
};
use coffer_crypto::HmacKey;
use coffer_keys::{KeyContext, KeyProvider, WrappedKey};
use futures_util::{Stream, StreamExt};

use sqlx::{ColumnIndex, Database, Decode, Encode, Executor, IntoArguments, Pool, Type};

use crate::db::{Conflict, DbFailure, DbFailureKind};

/// Loads the audit key from `audit_key`, creating and wrapping one on first use (whoever wins a
/// creation race, every process then uses the stored key). One body for both databases: the SQL
/// is the same and `$n` placeholders work on both.
async fn load_audit_key<DB: Database>(
    pool: &Pool<DB>,
    provider: &dyn KeyProvider,
) -> Result<HmacKey, crate::StoreError>
where
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
    for<'q> Vec<u8>: Encode<'q, DB> + Decode<'q, DB> + Type<DB>,
    usize: ColumnIndex<DB::Row>,
{
    let key_err = |e: sqlx::Error| crate::StoreError::AuditKey(e.to_string());
    let select = "SELECT wrapped FROM audit_key WHERE id = 1";
    let existing: Option<Vec<u8>> = sqlx::query_scalar(select)
        .fetch_optional(pool)
        .await
        .map_err(key_err)?;
    if existing.is_none() {
        let generated = provider
            .generate_data_key(&audit_key_context())
            .await
            .map_err(|e| crate::StoreError::AuditKey(e.to_string()))?;
        sqlx::query(
            "INSERT INTO audit_key (id, wrapped, kek_version, created_at_micros) \
             VALUES (1, $1, $2, $3) ON CONFLICT (id) DO NOTHING",
        )
        .bind(generated.wrapped.to_bytes())
        .bind(i64::from(generated.wrapped.version))
        .bind(coffer_audit::event::unix_micros(
            std::time::SystemTime::now(),
        ))
        .execute(pool)
        .await
        .map_err(key_err)?;
    }
    let wrapped: Vec<u8> = sqlx::query_scalar(select)
        .fetch_one(pool)
        .await
        .map_err(key_err)?;
    unwrap_audit_key(provider, &wrapped).await
}

/// The audit key from the secrets manager (`coffer/audit-key`), made on first start: adopted
/// with its bytes from the `audit_key` row of a database from before the secrets manager (so
/// the chains written under it still verify), or 32 random bytes.
async fn audit_key_from_secrets<DB: Database>(
    pool: &Pool<DB>,
    provider: &dyn KeyProvider,
    secrets: &coffer_secrets::SecretsManager,
) -> Result<HmacKey, crate::StoreError>
where
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
    for<'q> Vec<u8>: Decode<'q, DB> + Type<DB>,
    usize: ColumnIndex<DB::Row>,
{
    let err = |e: &dyn std::fmt::Display| crate::StoreError::AuditKey(e.to_string());
    let name = coffer_secrets::SecretName::parse(AUDIT_KEY_SECRET).map_err(|e| err(&e))?;
    let tags = std::collections::BTreeMap::from([("owner".to_owned(), "coffer-audit".to_owned())]);
    let value = secrets
        .get_or_init(&name, &tags, || async {
            let legacy: Option<Vec<u8>> =
                sqlx::query_scalar("SELECT wrapped FROM audit_key WHERE id = 1")
                    .fetch_optional(pool)
                    .await
                    .map_err(|e| {
                        coffer_secrets::SecretError::Store(
                            coffer_secrets::SecretStoreError::Unavailable(e.into()),
                        )
                    })?;
            match legacy {
                Some(wrapped) => {
                    let key =
                        coffer_secrets::unwrap_legacy_key(provider, &wrapped, &audit_key_context())
                            .await?;
                    tracing::info!("adopted the audit key into the secrets manager");
                    Ok(key)
                }
                None => Ok(coffer_secrets::SecretBytes::new(
                    coffer_crypto::DataKey::generate().expose_secret().to_vec(),
                )),
            }
        })
        .await
        .map_err(|e| err(&e))?;
    HmacKey::from_slice(value.expose_secret()).map_err(|e| err(&e))
}

/// The audit key's name in the secrets manager.
pub const AUDIT_KEY_SECRET: &str = "coffer/audit-key";

mod pg;
mod sqlite;

pub use pg::{PgAuditLog, PgAuditTx};
pub(crate) use pg::{append_ctes, bind_append};
pub use sqlite::{SqliteAuditLog, SqliteAuditTx};

/// How often verification reports progress.
const PROGRESS_EVERY: u64 = 10_000;

/// The key context the audit key is wrapped under.
#[must_use]
pub fn audit_key_context() -> KeyContext {
    KeyContext::new().with("purpose", "audit-key")
}

/// A serialization failure or deadlock is a conflict the caller retries (the whole
/// transaction); a stored value that cannot be decoded, a unique violation and anything else
/// are the driver's error as it is.
impl From<DbFailure> for AuditError {
    fn from(f: DbFailure) -> Self {
        match f.kind() {
            DbFailureKind::Unavailable => Self::Unavailable(f.into_source().into()),
            DbFailureKind::Conflict(Conflict::Retry) => Self::Conflict(f.into_source().into()),
            DbFailureKind::Conflict(Conflict::Unique)
            | DbFailureKind::Corrupt
            | DbFailureKind::Storage => Self::Other(Box::new(f.into_source())),
        }
    }
}

fn db_err(e: sqlx::Error) -> AuditError {
    DbFailure::from(e).into()
}

/// The columns an event is stored as.
struct Columns<'a> {
    stream: &'a str,
    at_micros: i64,
    actor_kind: &'static str,
    actor_id: Option<&'a str>,
    action: &'static str,
    subject_kind: &'static str,
    subject_id: Option<&'a str>,
    outcome: &'static str,
    request_id: Option<&'a str>,
    details: String,
}

impl<'a> Columns<'a> {
    fn of(e: &'a AuditEvent) -> Result<Self, AuditError> {
        let (actor_kind, actor_id) = e.actor.parts();
        let (subject_kind, subject_id) = e.subject.parts();
        Ok(Self {
            stream: e.stream.as_str(),
            at_micros: e.at_micros,
            actor_kind,
            actor_id: actor_id.map(|i| i.as_str()),
            action: e.action.as_str(),
            subject_kind,
            subject_id: subject_id.map(|i| i.as_str()),
            outcome: e.outcome.as_str(),
            request_id: e.request_id.as_ref().map(Code::as_str),
            details: serde_json::to_string(&e.details)
                .map_err(|e| AuditError::Other(Box::new(e)))?,
        })
    }
}

/// A stored row, as both databases return it (details as JSON text).
#[derive(sqlx::FromRow)]
struct RawRecord {
    id: i64,
    stream: String,
    seq: i64,
    at_micros: i64,
    actor_kind: String,
    actor_id: Option<String>,
    action: String,
    subject_kind: String,
    subject_id: Option<String>,
    outcome: String,
    request_id: Option<String>,
    details: String,
    prev_mac: Vec<u8>,
    mac: Vec<u8>,
}

const RECORD_COLUMNS: &str = "id, stream, seq, at_micros, actor_kind, actor_id, action, \
    subject_kind, subject_id, outcome, request_id, details, prev_mac, mac";

impl RawRecord {
    /// Parses a row; `Err` carries what verification needs to name an unreadable row.
    fn parse(self) -> Result<AuditRecord, (String, i64, u64)> {
        let bad = (
            self.stream.clone(),
            self.id,
            u64::try_from(self.seq).unwrap_or(0),
        );
        let event = (|| {
            Some(AuditEvent {
                stream: StreamId::parse(&self.stream).ok()?,
                at_micros: self.at_micros,
                actor: Actor::from_parts(&self.actor_kind, self.actor_id.as_deref()).ok()?,
                action: Action::parse(&self.action).ok()?,
                subject: Subject::from_parts(&self.subject_kind, self.subject_id.as_deref())
                    .ok()?,
                outcome: Outcome::parse(&self.outcome).ok()?,
                request_id: match self.request_id.as_deref() {
                    Some(r) => Some(Code::parse(r).ok()?),
                    None => None,
                },
                details: serde_json::from_str::<Details>(&self.details).ok()?,
            })
        })();
        match (
            event,
            u64::try_from(self.seq),
            <[u8; 32]>::try_from(self.prev_mac.as_slice()),
            <[u8; 32]>::try_from(self.mac.as_slice()),
        ) {
            (Some(event), Ok(seq), Ok(prev_mac), Ok(mac)) => Ok(AuditRecord {
                id: self.id,
                seq,
                prev_mac,
                mac,
                event,
            }),
            _ => Err(bad),
        }
    }
}

#[derive(sqlx::FromRow)]
struct RawCheckpoint {
    id: i64,
    at_micros: i64,
    prev_mac: Vec<u8>,
    entries: Vec<u8>,
    mac: Vec<u8>,
}

impl RawCheckpoint {
    /// Parses a row; a malformed one becomes a checkpoint whose MAC cannot verify.
    fn parse(self) -> Checkpoint {
        Checkpoint {
            id: self.id,
            at_micros: self.at_micros,
            prev_mac: self.prev_mac.as_slice().try_into().unwrap_or([0xFF; 32]),
            entries: decode_entries(&self.entries).unwrap_or_default(),
            mac: self.mac.as_slice().try_into().unwrap_or([0xFF; 32]),
        }
    }
}

/// Parses listed rows; an unparseable row is an error naming it (verify says more).
fn parse_listed(rows: Vec<RawRecord>) -> Result<Vec<AuditRecord>, AuditError> {
    rows.into_iter()
        .map(|r| {
            r.parse().map_err(|(stream, id, seq)| {
                AuditError::Unreadable(format!("record {id} (stream {stream}, seq {seq})").into())
            })
        })
        .collect()
}

/// A checkpoint about to be written.
struct NewCheckpoint {
    at: i64,
    prev_mac: [u8; 32],
    entries: Vec<CheckpointEntry>,
    mac: [u8; 32],
}

impl NewCheckpoint {
    /// From the heads that moved `(stream, seq, mac)` and the previous checkpoint's MAC, made
    /// at `at` (Unix microseconds).
    fn build(
        key: &HmacKey,
        moved: Vec<(String, i64, Vec<u8>)>,
        prev_mac: Option<Vec<u8>>,
        at: i64,
    ) -> Self {
        let mut entries: Vec<CheckpointEntry> = moved
            .into_iter()
            .map(|(stream, seq, mac)| CheckpointEntry {
                stream,
                seq: u64::try_from(seq).unwrap_or(0),
                mac: mac.as_slice().try_into().unwrap_or([0; 32]),
            })
            .collect();
        entries.sort_by(|a, b| a.stream.cmp(&b.stream));
        let prev_mac = prev_mac
            .and_then(|m| <[u8; 32]>::try_from(m.as_slice()).ok())
            .unwrap_or(GENESIS);
        let mac = checkpoint_mac(key, at, &prev_mac, &entries);
        Self {
            at,
            prev_mac,
            entries,
            mac,
        }
    }
}

/// Drives a [`Verifier`] over rows in `ORDER BY stream, id` order.
async fn run_verifier<S>(
    key: &HmacKey,
    anchor: Option<&CheckpointAnchor>,
    checkpoints: Vec<RawCheckpoint>,
    heads: Vec<(String, i64)>,
    total: u64,
    mut rows: S,
    progress: &(dyn Fn(VerifyProgress) + Send + Sync),
) -> Result<VerifyReport, AuditError>
where
    S: Stream<Item = Result<RawRecord, sqlx::Error>> + Unpin,
{
    let checkpoints: Vec<Checkpoint> = checkpoints.into_iter().map(RawCheckpoint::parse).collect();
    let mut verifier = Verifier::new(key, &checkpoints, anchor);
    verifier.with_heads(
        heads
            .into_iter()
            .map(|(s, seq)| (s, u64::try_from(seq).unwrap_or(0))),
    );
    while let Some(row) = rows.next().await {
        match row.map_err(db_err)?.parse() {
            Ok(record) => verifier.push(record),
            Err((stream, id, seq)) => verifier.push_unreadable(stream, id, seq),
        }
        if verifier.checked().is_multiple_of(PROGRESS_EVERY) {
            progress(VerifyProgress {
                checked: verifier.checked(),
                total,
            });
        }
    }
    let report = verifier.finish();
    progress(VerifyProgress {
        checked: report.checked,
        total,
    });
    Ok(report)
}

/// Unwraps a stored audit key, or `None` to create one.
async fn unwrap_audit_key(
    provider: &dyn KeyProvider,
    wrapped: &[u8],
) -> Result<HmacKey, crate::StoreError> {
    let wrapped =
        WrappedKey::from_bytes(wrapped).map_err(|e| crate::StoreError::AuditKey(e.to_string()))?;
    let key = provider
        .unwrap_data_key(&wrapped, &audit_key_context())
        .await
        .map_err(|e| crate::StoreError::AuditKey(e.to_string()))?;
    HmacKey::from_slice(key.expose_secret()).map_err(|e| crate::StoreError::AuditKey(e.to_string()))
}
