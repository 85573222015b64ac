//! The audit log on Postgres.

use std::fmt;
use std::num::NonZeroUsize;
use std::sync::{Arc, LazyLock, Mutex, PoisonError};

use async_trait::async_trait;
use coffer_audit::chain::{GENESIS, encode_entries, record_mac};
use coffer_audit::{
    AuditCapabilities, AuditError, AuditEvent, AuditLog, AuditQuery, AuditRecord, AuditTx,
    CheckpointAnchor, CheckpointSummary, Receipt, VerifyProgress, VerifyReport,
};
use coffer_clock::Clock;
use coffer_crypto::HmacKey;
use coffer_keys::KeyProvider;
use lru::LruCache;
use sqlx::postgres::PgPool;
use sqlx::{PgConnection, Postgres, Row, Transaction};

use super::{
    Columns, NewCheckpoint, RECORD_COLUMNS, RawCheckpoint, RawRecord, db_err, parse_listed,
    run_verifier,
};
use crate::StoreError;

/// The audit log on Postgres. Appends to different streams run in parallel.
#[derive(Clone)]
pub struct PgAuditLog {
    pool: PgPool,
    key: HmacKey,
    heads: HeadCache,
    clock: Arc<dyn Clock>,
}

impl fmt::Debug for PgAuditLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgAuditLog").finish_non_exhaustive()
    }
}

impl PgAuditLog {
    /// Opens the log, loading the audit key (creating and wrapping one on first use).
    ///
    /// # Errors
    /// [`StoreError::AuditKey`] when the key cannot be loaded, unwrapped or stored.
    pub async fn open(pool: PgPool, provider: &dyn KeyProvider) -> Result<Self, StoreError> {
        let key = super::load_audit_key(&pool, provider).await?;
        Ok(Self {
            pool,
            key,
            heads: new_head_cache(),
            clock: coffer_clock::system(),
        })
    }

    /// Opens the log with its key kept by the secrets manager (see
    /// [`AUDIT_KEY_SECRET`](super::AUDIT_KEY_SECRET)): what the service does.
    ///
    /// # Errors
    /// [`StoreError::AuditKey`] when the key cannot be read, adopted or stored.
    pub async fn open_with_secrets(
        pool: PgPool,
        provider: &dyn KeyProvider,
        secrets: &coffer_secrets::SecretsManager,
    ) -> Result<Self, StoreError> {
        let key = super::audit_key_from_secrets(&pool, provider, secrets).await?;
        Ok(Self {
            pool,
            key,
            heads: new_head_cache(),
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
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Appends `event` inside the caller's transaction `conn`; see the module documentation.
    ///
    /// # Errors
    /// As the database reports.
    pub async fn append_in(
        &self,
        conn: &mut PgConnection,
        event: &AuditEvent,
    ) -> Result<Receipt, AuditError> {
        append(&self.key, &self.heads, conn, event).await
    }
}

/// The heads this process last wrote, as guesses for the next append to the same stream.
type HeadCache = Arc<Mutex<LruCache<String, (u64, [u8; 32])>>>;

/// How many stream heads a process remembers.
const HEAD_CACHE_ENTRIES: usize = 100_000;

fn new_head_cache() -> HeadCache {
    Arc::new(Mutex::new(LruCache::new(
        NonZeroUsize::new(HEAD_CACHE_ENTRIES).unwrap_or(NonZeroUsize::MIN),
    )))
}

/// An append computed ahead of the statement that carries it: the event's columns as the
/// successor of a head of its stream (remembered, or read under lock).
pub(crate) struct Prepared<'a> {
    event: &'a AuditEvent,
    c: Columns<'a>,
    seq: u64,
    prev_mac: [u8; 32],
    mac: [u8; 32],
}

impl<'a> Prepared<'a> {
    /// The event appended.
    pub(crate) fn event(&self) -> &'a AuditEvent {
        self.event
    }

    fn after(
        key: &HmacKey,
        event: &'a AuditEvent,
        prev_seq: u64,
        prev_mac: [u8; 32],
    ) -> Result<Self, AuditError> {
        let seq = prev_seq + 1;
        Ok(Self {
            event,
            c: Columns::of(event)?,
            seq,
            mac: record_mac(key, event, seq, &prev_mac),
            prev_mac,
        })
    }
}

/// Two `WITH` clauses, `ah` and `ae`, with parameters `$first` to `$first + 12` bound by
/// [`bind_append`]: they move the stream's head from the remembered one to the new record and
/// insert the record, both only if that head is still the stream's (`ae` returns its `id`, or
/// nothing). The head's row lock, held to commit, serialises appends to the stream.
pub(crate) fn append_ctes(first: usize) -> String {
    let p = |i: usize| format!("${}", first + i);
    format!(
        "ah AS ( \
             UPDATE audit_heads SET seq = {seq}, mac = {mac} \
             WHERE stream = {stream} AND seq = {seq} - 1 AND mac = {prev} RETURNING 1), \
         ae AS ( \
             INSERT INTO audit_events (stream, seq, at_micros, actor_kind, actor_id, action, \
                 subject_kind, subject_id, outcome, request_id, details, prev_mac, mac) \
             SELECT {stream}, {seq}, {}, {}, {}, {}, {}, {}, {}, {}, {}::jsonb, {prev}, {mac} \
             FROM ah RETURNING id)",
        p(2),
        p(3),
        p(4),
        p(5),
        p(6),
        p(7),
        p(8),
        p(9),
        p(10),
        stream = p(0),
        seq = p(1),
        prev = p(11),
        mac = p(12),
    )
}

/// Binds the parameters of [`append_ctes`]; with `None`, an append that inserts nothing.
pub(crate) fn bind_append<'q>(
    q: sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments>,
    p: Option<&'q Prepared<'q>>,
) -> sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments> {
    let c = p.map(|p| &p.c);
    q.bind(c.map(|c| c.stream))
        .bind(p.map(|p| i64::try_from(p.seq).unwrap_or(i64::MAX)))
        .bind(c.map(|c| c.at_micros))
        .bind(c.map(|c| c.actor_kind))
        .bind(c.and_then(|c| c.actor_id))
        .bind(c.map(|c| c.action))
        .bind(c.map(|c| c.subject_kind))
        .bind(c.and_then(|c| c.subject_id))
        .bind(c.map(|c| c.outcome))
        .bind(c.and_then(|c| c.request_id))
        .bind(c.map(|c| c.details.as_str()))
        .bind(p.map(|p| p.prev_mac.as_slice()))
        .bind(p.map(|p| p.mac.as_slice()))
}

/// Inserts `p` alone; `None`: the head moved.
async fn insert_after(
    conn: &mut PgConnection,
    p: &Prepared<'_>,
) -> Result<Option<i64>, AuditError> {
    static SQL: LazyLock<String> =
        LazyLock::new(|| format!("WITH {} SELECT id FROM ae", append_ctes(1)));
    bind_append(sqlx::query(&SQL), Some(p))
        .fetch_optional(&mut *conn)
        .await
        .map_err(db_err)?
        .map(|row| row.try_get::<i64, _>(0).map_err(db_err))
        .transpose()
}

/// Locks `stream`'s head (creating it at seq 0 for a new stream) and reads it.
async fn lock_head(conn: &mut PgConnection, stream: &str) -> Result<(u64, [u8; 32]), AuditError> {
    let select = "SELECT seq, mac FROM audit_heads WHERE stream = $1 FOR UPDATE";
    let mut head: Option<(i64, Vec<u8>)> = sqlx::query_as(select)
        .bind(stream)
        .fetch_optional(&mut *conn)
        .await
        .map_err(db_err)?;
    if head.is_none() {
        // Another transaction may be creating it at the same moment: either way it exists next.
        sqlx::query(
            "INSERT INTO audit_heads (stream, seq, mac) VALUES ($1, 0, $2) \
             ON CONFLICT (stream) DO NOTHING",
        )
        .bind(stream)
        .bind(GENESIS.as_slice())
        .execute(&mut *conn)
        .await
        .map_err(db_err)?;
        head = sqlx::query_as(select)
            .bind(stream)
            .fetch_optional(&mut *conn)
            .await
            .map_err(db_err)?;
    }
    let (seq, mac) = head.ok_or_else(|| {
        AuditError::Unreadable(format!("head of stream {stream} vanished").into())
    })?;
    let mac = mac.as_slice().try_into().map_err(|_| {
        AuditError::Unreadable(format!("head of stream {stream} has a malformed MAC").into())
    })?;
    Ok((u64::try_from(seq).unwrap_or(0), mac))
}

impl PgAuditLog {
    /// `event` as the successor of this process's remembered head of its stream, to be
    /// inserted by the caller's statement ([`append_ctes`]); `None` when no head is remembered.
    ///
    /// # Errors
    /// When the event cannot be encoded.
    pub(crate) fn prepare<'a>(
        &self,
        event: &'a AuditEvent,
    ) -> Result<Option<Prepared<'a>>, AuditError> {
        remembered(&self.heads, event)
            .map(|(seq, mac)| Prepared::after(&self.key, event, seq, mac))
            .transpose()
    }

    /// Records that the caller's statement inserted `p` as row `id`.
    pub(crate) fn appended(&self, p: &Prepared<'_>, id: i64) -> Receipt {
        remember(&self.heads, p, id)
    }

    /// Appends `event` inside the transaction on `conn` after reading the stream's head under
    /// its lock: for an append whose remembered head turned out stale.
    ///
    /// # Errors
    /// As the database reports.
    pub(crate) async fn append_locked(
        &self,
        conn: &mut PgConnection,
        event: &AuditEvent,
    ) -> Result<Receipt, AuditError> {
        append_locked(&self.key, &self.heads, conn, event).await
    }
}

fn remembered(heads: &HeadCache, event: &AuditEvent) -> Option<(u64, [u8; 32])> {
    heads
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get(event.stream.as_str())
        .copied()
}

/// The new head, remembered as the guess for the stream's next append. If the transaction
/// rolls back, the guess is stale and the next append falls back to the locked read.
fn remember(heads: &HeadCache, p: &Prepared<'_>, id: i64) -> Receipt {
    heads
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .put(p.c.stream.to_owned(), (p.seq, p.mac));
    Receipt {
        id,
        seq: p.seq,
        mac: p.mac,
    }
}

async fn append_locked(
    key: &HmacKey,
    heads: &HeadCache,
    conn: &mut PgConnection,
    event: &AuditEvent,
) -> Result<Receipt, AuditError> {
    let (seq, mac) = lock_head(conn, event.stream.as_str()).await?;
    let p = Prepared::after(key, event, seq, mac)?;
    let id = insert_after(conn, &p)
        .await?
        .ok_or_else(|| AuditError::Other("audit head moved while locked".into()))?;
    Ok(remember(heads, &p, id))
}

/// Appends inside the transaction on `conn`. With the stream's head remembered from this
/// process's last append, that is one statement; otherwise (or when another process appended
/// since) the head is locked and read first.
async fn append(
    key: &HmacKey,
    heads: &HeadCache,
    conn: &mut PgConnection,
    event: &AuditEvent,
) -> Result<Receipt, AuditError> {
    if let Some((seq, mac)) = remembered(heads, event) {
        let p = Prepared::after(key, event, seq, mac)?;
        if let Some(id) = insert_after(conn, &p).await? {
            return Ok(remember(heads, &p, id));
        }
    }
    append_locked(key, heads, conn, event).await
}

/// A Postgres transaction appending audit records.
pub struct PgAuditTx {
    key: HmacKey,
    heads: HeadCache,
    tx: Transaction<'static, Postgres>,
}

impl fmt::Debug for PgAuditTx {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgAuditTx").finish_non_exhaustive()
    }
}

#[async_trait]
impl AuditTx for PgAuditTx {
    async fn append(&mut self, event: &AuditEvent) -> Result<Receipt, AuditError> {
        append(&self.key, &self.heads, &mut self.tx, event).await
    }

    async fn commit(self: Box<Self>) -> Result<(), AuditError> {
        self.tx.commit().await.map_err(db_err)
    }

    async fn rollback(self: Box<Self>) -> Result<(), AuditError> {
        self.tx.rollback().await.map_err(db_err)
    }
}

#[async_trait]
impl AuditLog for PgAuditLog {
    fn capabilities(&self) -> AuditCapabilities {
        AuditCapabilities {
            concurrent_streams: true,
        }
    }

    async fn begin(&self) -> Result<Box<dyn AuditTx>, AuditError> {
        let tx = self.pool.begin().await.map_err(db_err)?;
        Ok(Box::new(PgAuditTx {
            key: self.key.clone(),
            heads: self.heads.clone(),
            tx,
        }))
    }

    async fn list(&self, query: &AuditQuery) -> Result<Vec<AuditRecord>, AuditError> {
        let sql = format!(
            "SELECT {RECORD_COLUMNS_PG} FROM audit_events \
             WHERE ($1::bigint IS NULL OR id < $1) AND ($2::text IS NULL OR stream = $2) \
             ORDER BY id DESC LIMIT $3",
            RECORD_COLUMNS_PG = RECORD_COLUMNS.replace("details", "details::text AS details")
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
        let mut tx = self.pool.begin().await.map_err(db_err)?;
        // One checkpointer at a time (several workers may run).
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext('coffer.audit.checkpoint'))")
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        let moved: Vec<(String, i64, Vec<u8>)> = sqlx::query_as(
            "UPDATE audit_heads h SET checkpointed_seq = h.seq \
             FROM (SELECT stream FROM audit_heads WHERE seq > checkpointed_seq \
                   ORDER BY stream FOR UPDATE SKIP LOCKED) d \
             WHERE h.stream = d.stream \
             RETURNING h.stream, h.seq, h.mac",
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
             VALUES ($1, $2, $3, $4) RETURNING id",
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
        // One snapshot for everything read, so appends made meanwhile are consistently absent.
        let mut tx = self.pool.begin().await.map_err(db_err)?;
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
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
        let sql = format!(
            "SELECT {} FROM audit_events ORDER BY stream, id",
            RECORD_COLUMNS.replace("details", "details::text AS details")
        );
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
