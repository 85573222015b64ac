//! The audit log on SQLite (the embedded default). SQLite has one writer at a time: transactions
//! start with `BEGIN IMMEDIATE`, so a writer takes the write lock up front instead of failing on
//! upgrade.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use coffer_audit::chain::{GENESIS, encode_entries, record_mac};
use coffer_audit::{
    AuditCapabilities, AuditError, AuditEvent, AuditLog, AuditQuery, AuditRecord, AuditTx,
    CheckpointAnchor, CheckpointSummary, Receipt, VerifyProgress, VerifyReport,
};
use coffer_clock::Clock;
use coffer_crypto::HmacKey;
use coffer_keys::KeyProvider;
use sqlx::sqlite::SqlitePool;
use sqlx::{Sqlite, SqliteConnection, Transaction};

use super::{
    Columns, NewCheckpoint, RECORD_COLUMNS, RawCheckpoint, RawRecord, db_err, parse_listed,
    run_verifier,
};
use crate::StoreError;

/// The audit log on SQLite.
#[derive(Clone)]
pub struct SqliteAuditLog {
    pool: SqlitePool,
    key: HmacKey,
    clock: Arc<dyn Clock>,
}

impl fmt::Debug for SqliteAuditLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteAuditLog").finish_non_exhaustive()
    }
}

impl SqliteAuditLog {
    /// Opens the log, loading the audit key (creating and wrapping one on first use).
    ///
    /// # Errors
    /// [`StoreError::AuditKey`] when the key cannot be loaded, unwrapped or stored.
    pub async fn open(pool: SqlitePool, provider: &dyn KeyProvider) -> Result<Self, StoreError> {
        let key = super::load_audit_key(&pool, provider).await?;
        Ok(Self {
            pool,
            key,
            clock: coffer_clock::system(),
        })
    }

    /// Opens the log with its key kept by the secrets manager (see
    /// [`AUDIT_KEY_SECRET`](super::AUDIT_KEY_SECRET)): what the service does.
    ///
    /// # Errors
    /// [`StoreError::AuditKey`] when the key cannot be read, adopted or stored.
    pub async fn open_with_secrets(
        pool: SqlitePool,
        provider: &dyn KeyProvider,
        secrets: &coffer_secrets::SecretsManager,
    ) -> Result<Self, StoreError> {
        let key = super::audit_key_from_secrets(&pool, provider, secrets).await?;
        Ok(Self {
            pool,
            key,
            clock: coffer_clock::system(),
        })
    }

    /// The same log, dating its checkpoints by `clock`.
    #[must_use]
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The pool, for stores that append inside their own transactions.
    #[must_use]
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// Appends `event` inside the caller's transaction `conn` (begun with `BEGIN IMMEDIATE`).
    ///
    /// # Errors
    /// As the database reports.
    pub async fn append_in(
        &self,
        conn: &mut SqliteConnection,
        event: &AuditEvent,
    ) -> Result<Receipt, AuditError> {
        append(&self.key, conn, event).await
    }
}

async fn append(
    key: &HmacKey,
    conn: &mut SqliteConnection,
    event: &AuditEvent,
) -> Result<Receipt, AuditError> {
    let c = Columns::of(event)?;
    let (prev_seq, prev_mac): (i64, Vec<u8>) = sqlx::query_as(
        "INSERT INTO audit_heads (stream, seq, mac) VALUES (?1, 0, ?2) \
         ON CONFLICT (stream) DO UPDATE SET stream = excluded.stream \
         RETURNING seq, mac",
    )
    .bind(c.stream)
    .bind(GENESIS.as_slice())
    .fetch_one(&mut *conn)
    .await
    .map_err(db_err)?;
    let prev_mac: [u8; 32] = prev_mac.as_slice().try_into().map_err(|_| {
        AuditError::Unreadable(format!("head of stream {} has a malformed MAC", c.stream).into())
    })?;
    let seq = u64::try_from(prev_seq).unwrap_or(0) + 1;
    let mac = record_mac(key, event, seq, &prev_mac);
    let seq_i64 = i64::try_from(seq).map_err(|e| AuditError::Other(Box::new(e)))?;
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO audit_events (stream, seq, at_micros, actor_kind, actor_id, action, \
             subject_kind, subject_id, outcome, request_id, details, prev_mac, mac) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13) RETURNING id",
    )
    .bind(c.stream)
    .bind(seq_i64)
    .bind(c.at_micros)
    .bind(c.actor_kind)
    .bind(c.actor_id)
    .bind(c.action)
    .bind(c.subject_kind)
    .bind(c.subject_id)
    .bind(c.outcome)
    .bind(c.request_id)
    .bind(&c.details)
    .bind(prev_mac.as_slice())
    .bind(mac.as_slice())
    .fetch_one(&mut *conn)
    .await
    .map_err(db_err)?;
    sqlx::query("UPDATE audit_heads SET seq = ?1, mac = ?2 WHERE stream = ?3")
        .bind(seq_i64)
        .bind(mac.as_slice())
        .bind(c.stream)
        .execute(&mut *conn)
        .await
        .map_err(db_err)?;
    Ok(Receipt { id, seq, mac })
}

/// An SQLite transaction appending audit records.
pub struct SqliteAuditTx {
    key: HmacKey,
    tx: Transaction<'static, Sqlite>,
}

impl fmt::Debug for SqliteAuditTx {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteAuditTx").finish_non_exhaustive()
    }
}

#[async_trait]
impl AuditTx for SqliteAuditTx {
    async fn append(&mut self, event: &AuditEvent) -> Result<Receipt, AuditError> {
        append(&self.key, &mut self.tx, event).await
    }

    async fn commit(self: Box<Self>) -> Result<(), AuditError> {
        self.tx.commit().await.map_err(db_err)
    }

    async fn rollback(self: Box<Self>) -> Result<(), AuditError> {
        self.tx.rollback().await.map_err(db_err)
    }
}

#[async_trait]
impl AuditLog for SqliteAuditLog {
    fn capabilities(&self) -> AuditCapabilities {
        AuditCapabilities {
            concurrent_streams: false,
        }
    }

    async fn begin(&self) -> Result<Box<dyn AuditTx>, AuditError> {
        let tx = self
            .pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(db_err)?;
        Ok(Box::new(SqliteAuditTx {
            key: self.key.clone(),
            tx,
        }))
    }

    async fn list(&self, query: &AuditQuery) -> Result<Vec<AuditRecord>, AuditError> {
        let sql = format!(
            "SELECT {RECORD_COLUMNS} FROM audit_events \
             WHERE (?1 IS NULL OR id < ?1) AND (?2 IS NULL OR stream = ?2) \
             ORDER BY id DESC LIMIT ?3"
        );
        let rows: Vec<RawRecord> = sqlx::query_as(&sql)
            .bind(query.before_id)
            .bind(query.stream.as_ref().map(|s| s.as_str()))
            .bind(i64::from(query.limit.min(1_000)))
            .fetch_all(&self.pool)
            .await
            .map_err(db_err)?;
        parse_listed(rows)
    }

    async fn checkpoint(&self) -> Result<Option<CheckpointSummary>, AuditError> {
        let mut tx = self
            .pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(db_err)?;
        let moved: Vec<(String, i64, Vec<u8>)> = sqlx::query_as(
            "UPDATE audit_heads SET checkpointed_seq = seq WHERE seq > checkpointed_seq \
             RETURNING stream, seq, mac",
        )
        .fetch_all(&mut *tx)
        .await
        .map_err(db_err)?;
        if moved.is_empty() {
            return Ok(None);
        }
        let prev_mac: Option<Vec<u8>> =
            sqlx::query_scalar("SELECT mac FROM audit_checkpoints ORDER BY id DESC LIMIT 1")
                .fetch_optional(&mut *tx)
                .await
                .map_err(db_err)?;
        let NewCheckpoint {
            at,
            prev_mac,
            entries,
            mac,
        } = NewCheckpoint::build(&self.key, moved, prev_mac, self.clock.unix_micros());
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO audit_checkpoints (at_micros, prev_mac, entries, mac) \
             VALUES (?1, ?2, ?3, ?4) RETURNING id",
        )
        .bind(at)
        .bind(prev_mac.as_slice())
        .bind(encode_entries(&entries))
        .bind(mac.as_slice())
        .fetch_one(&mut *tx)
        .await
        .map_err(db_err)?;
        tx.commit().await.map_err(db_err)?;
        Ok(Some(CheckpointSummary {
            id,
            streams: entries.len(),
            mac,
        }))
    }

    async fn verify(
        &self,
        anchor: Option<&CheckpointAnchor>,
        progress: &(dyn Fn(VerifyProgress) + Send + Sync),
    ) -> Result<VerifyReport, AuditError> {
        // In WAL mode a read transaction sees one snapshot from its first read.
        let mut tx = self.pool.begin().await.map_err(db_err)?;
        let checkpoints: Vec<RawCheckpoint> = sqlx::query_as(
            "SELECT id, at_micros, prev_mac, entries, mac FROM audit_checkpoints ORDER BY id",
        )
        .fetch_all(&mut *tx)
        .await
        .map_err(db_err)?;
        let heads: Vec<(String, i64)> = sqlx::query_as("SELECT stream, seq FROM audit_heads")
            .fetch_all(&mut *tx)
            .await
            .map_err(db_err)?;
        let total: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_events")
            .fetch_one(&mut *tx)
            .await
            .map_err(db_err)?;
        let sql = format!("SELECT {RECORD_COLUMNS} FROM audit_events ORDER BY stream, id");
        let rows = sqlx::query_as::<_, RawRecord>(&sql).fetch(&mut *tx);
        run_verifier(
            &self.key,
            anchor,
            checkpoints,
            heads,
            u64::try_from(total).unwrap_or(0),
            rows,
            progress,
        )
        .await
    }
}
