//! The outbox store on Postgres and SQLite ([`PgOutboxStore`], [`SqliteOutboxStore`]): sinks
//! (`outbox_sinks`), the scan's position (`outbox_scan`, one row), per-(sink, wallet) cursors
//! (`outbox_cursors`) and attempts (`outbox_attempts`), over the ledger's `events`.
//!
//! - **Scan.** One short transaction: lock the position row (`FOR UPDATE SKIP LOCKED` on
//!   Postgres: a second worker skips the scan instead of waiting), read events past it in
//!   `(xid, pos)` order below the oldest running transaction, then per wallet read: bump the
//!   existing cursors' `last_seen` and mark them due (an idle cursor becomes due now; one
//!   waiting for a retry keeps its time), create the missing ones of each sink at the wallet's
//!   first event since the sink was registered, and move the position.
//! - **Claim.** One statement: due cursors of enabled sinks whose lease is free or lapsed get a
//!   new lease token (`FOR UPDATE SKIP LOCKED` on Postgres, the one write lock on SQLite).
//! - **Settle.** One transaction: the cursor moves only if it still holds the claim's token;
//!   it goes idle only if the scan has seen nothing from its new `next_seq` on (`last_seen`
//!   is read from the row as locked, so a scan that marked it meanwhile is never lost); the
//!   attempts are inserted and the sink's run of failures updated.
//!
//! The SQL is the same on both databases but for a few fragments ([`Fragments`]); the store
//! is written once, as [`outbox_store!`], and expanded for each.

use coffer_outbox::{OutboxError, Outcome, Sink, SinkId, SubjectPrefix, Target, WebhookUrl};

use crate::db::{DbFailure, DbFailureKind};

mod pg;
mod sqlite;

pub use pg::PgOutboxStore;
pub use sqlite::SqliteOutboxStore;

/// The SQL that differs between the databases.
pub(crate) struct Fragments {
    /// How a write transaction begins.
    begin: &'static str,
    /// The type a transaction id is cast to.
    xid_type: &'static str,
    /// The scan's bound: only events of transactions older than every running one.
    finished: &'static str,
    /// Locks the scan's position row, skipping it when another worker holds it.
    lock_position: &'static str,
    /// Locks claimed cursors, skipping those another worker is claiming.
    lock_claimed: &'static str,
}

impl From<DbFailure> for OutboxError {
    fn from(f: DbFailure) -> Self {
        match f.kind() {
            DbFailureKind::Corrupt => Self::Corrupt(f.into_source().to_string()),
            _ => Self::Storage(f.into_source().into()),
        }
    }
}

fn db_err(e: sqlx::Error) -> OutboxError {
    DbFailure::from(e).into()
}

fn corrupt(what: &str) -> OutboxError {
    OutboxError::Corrupt(what.to_owned())
}

/// A sink's stored columns, decoded.
#[allow(clippy::too_many_arguments)]
fn sink_of(
    id: uuid::Uuid,
    kind: &str,
    target: &str,
    kinds: &str,
    enabled: bool,
    created_at: i64,
    failures: i64,
    disabled_at: Option<i64>,
    secret: (i64, Option<i64>),
) -> Result<Sink, OutboxError> {
    let target = match kind {
        // Stored URLs were checked when registered; http may since have been disallowed,
        // which the transport enforces.
        "webhook" => {
            Target::Webhook(WebhookUrl::parse(target, true).map_err(|_| corrupt("sink URL"))?)
        }
        "nats" => Target::Stream(
            SubjectPrefix::parse(target).map_err(|_| corrupt("sink subject prefix"))?,
        ),
        _ => return Err(corrupt("sink kind")),
    };
    Ok(Sink {
        id: SinkId::from_uuid(id),
        target,
        kinds: Sink::parse_kinds(kinds).map_err(|_| corrupt("sink kinds"))?,
        enabled,
        created_at,
        failures: u32::try_from(failures).unwrap_or(u32::MAX),
        disabled_at,
        secret_version: u32::try_from(secret.0).map_err(|_| corrupt("sink secret version"))?,
        previous_secret_until: secret.1,
    })
}

/// A sink's kind and target as stored.
fn target_of(sink: &Sink) -> (&'static str, &str) {
    match &sink.target {
        Target::Webhook(url) => ("webhook", url.as_str()),
        Target::Stream(prefix) => ("nats", prefix.as_str()),
    }
}

fn outcome_of(s: &str) -> Result<Outcome, OutboxError> {
    Outcome::parse(s).ok_or_else(|| corrupt("attempt outcome"))
}

const SINK_COLUMNS: &str = "id, kind, target, kinds, enabled, created_at, failures, disabled_at, \
     secret_version, previous_secret_until";
const ATTEMPT_COLUMNS: &str =
    "id, sink_id, event_id, wallet_id, seq, kind, at, outcome, status, latency_ms, error";

/// The store, written once for both databases: `$store` over `$Pool`, its SQL differing by
/// `$sql` ([`Fragments`]); `prune` is the dialect's own (`$prune`).
macro_rules! outbox_store {
    ($store:ident, pool = $Pool:ty, sql = $sql:expr, db = $db:literal) => {
        #[doc = concat!("The outbox store on ", $db, " (see the module documentation).")]
        #[derive(Clone)]
        pub struct $store {
            pool: $Pool,
        }

        coffer_macros::debug_non_exhaustive!(self => $store {});

        const SQL: super::Fragments = $sql;

        impl $store {
            /// A store on `pool` (migrated).
            #[must_use]
            pub fn new(pool: $Pool) -> Self {
                Self { pool }
            }

            fn sink_from(
                row: &<<$Pool as PoolDb>::Db as sqlx::Database>::Row,
            ) -> Result<coffer_outbox::Sink, coffer_outbox::OutboxError> {
                use sqlx::Row;
                let get = |e| super::db_err(e);
                super::sink_of(
                    row.try_get("id").map_err(get)?,
                    row.try_get::<String, _>("kind").map_err(get)?.as_str(),
                    row.try_get::<String, _>("target").map_err(get)?.as_str(),
                    row.try_get::<String, _>("kinds").map_err(get)?.as_str(),
                    row.try_get("enabled").map_err(get)?,
                    row.try_get("created_at").map_err(get)?,
                    row.try_get("failures").map_err(get)?,
                    row.try_get("disabled_at").map_err(get)?,
                    (
                        row.try_get("secret_version").map_err(get)?,
                        row.try_get("previous_secret_until").map_err(get)?,
                    ),
                )
            }

            fn attempt_from(
                row: &<<$Pool as PoolDb>::Db as sqlx::Database>::Row,
            ) -> Result<coffer_outbox::Attempt, coffer_outbox::OutboxError> {
                use sqlx::Row;
                let get = |e| super::db_err(e);
                let kind: String = row.try_get("kind").map_err(get)?;
                let status: Option<i32> = row.try_get("status").map_err(get)?;
                let latency: i32 = row.try_get("latency_ms").map_err(get)?;
                Ok(coffer_outbox::Attempt {
                    id: coffer_outbox::AttemptId::from_uuid(row.try_get("id").map_err(get)?),
                    sink: coffer_outbox::SinkId::from_uuid(row.try_get("sink_id").map_err(get)?),
                    event: coffer_ledger::domain::EventId::from_uuid(
                        row.try_get("event_id").map_err(get)?,
                    ),
                    wallet: coffer_ledger::WalletId::from_uuid(
                        row.try_get("wallet_id").map_err(get)?,
                    ),
                    seq: row.try_get("seq").map_err(get)?,
                    kind: coffer_ledger::domain::EventKind::parse(&kind)
                        .ok_or_else(|| super::corrupt("attempt kind"))?,
                    at: row.try_get("at").map_err(get)?,
                    outcome: super::outcome_of(&row.try_get::<String, _>("outcome").map_err(get)?)?,
                    status: status.and_then(|s| u16::try_from(s).ok()),
                    latency_ms: u32::try_from(latency).unwrap_or(0),
                    error: row.try_get("error").map_err(get)?,
                })
            }

            fn event_from(
                row: &<<$Pool as PoolDb>::Db as sqlx::Database>::Row,
            ) -> Result<coffer_ledger::port::EventRecord, coffer_outbox::OutboxError> {
                crate::ledger::events::event_from(row)
                    .map_err(|e| coffer_outbox::OutboxError::Corrupt(e.to_string()))
            }
        }

        #[async_trait::async_trait]
        impl coffer_outbox::OutboxStore for $store {
            async fn put_sink(
                &self,
                sink: &coffer_outbox::Sink,
            ) -> Result<(), coffer_outbox::OutboxError> {
                let (kind, target) = super::target_of(sink);
                sqlx::query(&format!(
                    "INSERT INTO outbox_sinks ({}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
                     ON CONFLICT (id) DO UPDATE SET kind = excluded.kind, \
                     target = excluded.target, kinds = excluded.kinds, \
                     enabled = excluded.enabled, failures = excluded.failures, \
                     disabled_at = excluded.disabled_at, \
                     secret_version = excluded.secret_version, \
                     previous_secret_until = excluded.previous_secret_until",
                    super::SINK_COLUMNS
                ))
                .bind(*sink.id.as_uuid())
                .bind(kind)
                .bind(target)
                .bind(sink.kinds_text())
                .bind(sink.enabled)
                .bind(sink.created_at)
                .bind(i64::from(sink.failures))
                .bind(sink.disabled_at)
                .bind(i64::from(sink.secret_version))
                .bind(sink.previous_secret_until)
                .execute(&self.pool)
                .await
                .map_err(super::db_err)?;
                Ok(())
            }

            async fn sink(
                &self,
                id: coffer_outbox::SinkId,
            ) -> Result<Option<coffer_outbox::Sink>, coffer_outbox::OutboxError> {
                let row = sqlx::query(&format!(
                    "SELECT {} FROM outbox_sinks WHERE id = $1",
                    super::SINK_COLUMNS
                ))
                .bind(*id.as_uuid())
                .fetch_optional(&self.pool)
                .await
                .map_err(super::db_err)?;
                row.as_ref().map(Self::sink_from).transpose()
            }

            async fn sinks(&self) -> Result<Vec<coffer_outbox::Sink>, coffer_outbox::OutboxError> {
                let rows = sqlx::query(&format!(
                    "SELECT {} FROM outbox_sinks ORDER BY created_at, id",
                    super::SINK_COLUMNS
                ))
                .fetch_all(&self.pool)
                .await
                .map_err(super::db_err)?;
                rows.iter().map(Self::sink_from).collect()
            }

            async fn delete_sink(
                &self,
                id: coffer_outbox::SinkId,
            ) -> Result<bool, coffer_outbox::OutboxError> {
                let mut tx = self.pool.begin_with(SQL.begin).await.map_err(super::db_err)?;
                sqlx::query("DELETE FROM outbox_cursors WHERE sink_id = $1")
                    .bind(*id.as_uuid())
                    .execute(&mut *tx)
                    .await
                    .map_err(super::db_err)?;
                let done = sqlx::query("DELETE FROM outbox_sinks WHERE id = $1")
                    .bind(*id.as_uuid())
                    .execute(&mut *tx)
                    .await
                    .map_err(super::db_err)?;
                tx.commit().await.map_err(super::db_err)?;
                Ok(done.rows_affected() > 0)
            }

            async fn disable_sink(
                &self,
                id: coffer_outbox::SinkId,
                now: i64,
            ) -> Result<bool, coffer_outbox::OutboxError> {
                let done = sqlx::query(
                    "UPDATE outbox_sinks SET enabled = $2, disabled_at = $3 \
                     WHERE id = $1 AND enabled = $4",
                )
                .bind(*id.as_uuid())
                .bind(false)
                .bind(now)
                .bind(true)
                .execute(&self.pool)
                .await
                .map_err(super::db_err)?;
                Ok(done.rows_affected() > 0)
            }

            async fn wake_sink(
                &self,
                id: coffer_outbox::SinkId,
                now: i64,
            ) -> Result<(), coffer_outbox::OutboxError> {
                sqlx::query(
                    "UPDATE outbox_cursors SET due_at = $2, failures = 0, first_failed_at = NULL \
                     WHERE sink_id = $1 AND due_at > $2",
                )
                .bind(*id.as_uuid())
                .bind(now)
                .execute(&self.pool)
                .await
                .map_err(super::db_err)?;
                Ok(())
            }

            async fn scan(&self, limit: u32, now: i64) -> Result<usize, coffer_outbox::OutboxError> {
                use sqlx::Row;
                let mut tx = self.pool.begin_with(SQL.begin).await.map_err(super::db_err)?;
                let Some(position) = sqlx::query(&format!(
                    "SELECT CAST(xid AS TEXT) AS xid, pos FROM outbox_scan WHERE id = 1 {}",
                    SQL.lock_position
                ))
                .fetch_optional(&mut *tx)
                .await
                .map_err(super::db_err)?
                else {
                    return Ok(0);
                };
                let xid: String = position.try_get("xid").map_err(super::db_err)?;
                let pos: i64 = position.try_get("pos").map_err(super::db_err)?;
                let rows = sqlx::query(&format!(
                    "SELECT wallet_id, seq, CAST(xid AS TEXT) AS xid, pos FROM events \
                     WHERE (xid, pos) > (CAST($1 AS {t}), $2) {finished} \
                     ORDER BY xid, pos LIMIT $3",
                    t = SQL.xid_type,
                    finished = SQL.finished,
                ))
                .bind(&xid)
                .bind(pos)
                .bind(i64::from(limit))
                .fetch_all(&mut *tx)
                .await
                .map_err(super::db_err)?;
                let Some(last) = rows.last() else {
                    return Ok(0);
                };
                let last_xid: String = last.try_get("xid").map_err(super::db_err)?;
                let last_pos: i64 = last.try_get("pos").map_err(super::db_err)?;
                // Each wallet's highest number read, in first-seen order.
                let mut seen: Vec<(uuid::Uuid, i64)> = Vec::new();
                for row in &rows {
                    let wallet: uuid::Uuid = row.try_get("wallet_id").map_err(super::db_err)?;
                    let seq: i64 = row.try_get("seq").map_err(super::db_err)?;
                    match seen.iter_mut().find(|(w, _)| *w == wallet) {
                        Some(slot) => slot.1 = slot.1.max(seq),
                        None => seen.push((wallet, seq)),
                    }
                }
                for (wallet, seq) in &seen {
                    sqlx::query(
                        "UPDATE outbox_cursors SET last_seen = $2, \
                         due_at = COALESCE(due_at, $3), pending_since = COALESCE(pending_since, $3) \
                         WHERE wallet_id = $1 AND last_seen < $2",
                    )
                    .bind(*wallet)
                    .bind(*seq)
                    .bind(now)
                    .execute(&mut *tx)
                    .await
                    .map_err(super::db_err)?;
                    sqlx::query(
                        "INSERT INTO outbox_cursors \
                         (sink_id, wallet_id, next_seq, last_seen, due_at, pending_since, failures) \
                         SELECT f.sink_id, $1, f.first, $2, $3, $3, 0 FROM ( \
                           SELECT s.id AS sink_id, (SELECT MIN(e.seq) FROM events e \
                                  WHERE e.wallet_id = $1 AND e.seq <= $2 \
                                  AND e.created_at >= s.created_at) AS first \
                           FROM outbox_sinks s WHERE NOT EXISTS (SELECT 1 FROM outbox_cursors c \
                                WHERE c.sink_id = s.id AND c.wallet_id = $1)) f \
                         WHERE f.first IS NOT NULL \
                         ON CONFLICT (sink_id, wallet_id) DO NOTHING",
                    )
                    .bind(*wallet)
                    .bind(*seq)
                    .bind(now)
                    .execute(&mut *tx)
                    .await
                    .map_err(super::db_err)?;
                }
                sqlx::query(&format!(
                    "UPDATE outbox_scan SET xid = CAST($1 AS {}), pos = $2 WHERE id = 1",
                    SQL.xid_type
                ))
                .bind(&last_xid)
                .bind(last_pos)
                .execute(&mut *tx)
                .await
                .map_err(super::db_err)?;
                tx.commit().await.map_err(super::db_err)?;
                Ok(rows.len())
            }

            async fn claim(
                &self,
                now: i64,
                until: i64,
                limit: u32,
            ) -> Result<Vec<coffer_outbox::Claim>, coffer_outbox::OutboxError> {
                use sqlx::Row;
                let lease = uuid::Uuid::now_v7();
                let rows = sqlx::query(&format!(
                    "UPDATE outbox_cursors SET lease = $1, lease_until = $2 \
                     WHERE (sink_id, wallet_id) IN ( \
                       SELECT c.sink_id, c.wallet_id FROM outbox_cursors c \
                       JOIN outbox_sinks s ON s.id = c.sink_id \
                       WHERE s.enabled = $5 AND c.due_at IS NOT NULL AND c.due_at <= $3 \
                       AND (c.lease_until IS NULL OR c.lease_until <= $3) \
                       ORDER BY c.due_at LIMIT $4 {}) \
                     RETURNING sink_id, wallet_id, next_seq, last_seen, failures, first_failed_at",
                    SQL.lock_claimed
                ))
                .bind(lease)
                .bind(until)
                .bind(now)
                .bind(i64::from(limit))
                .bind(true)
                .fetch_all(&self.pool)
                .await
                .map_err(super::db_err)?;
                rows.iter()
                    .map(|row| {
                        let failures: i64 = row.try_get("failures").map_err(super::db_err)?;
                        Ok(coffer_outbox::Claim {
                            sink: coffer_outbox::SinkId::from_uuid(
                                row.try_get("sink_id").map_err(super::db_err)?,
                            ),
                            wallet: coffer_ledger::WalletId::from_uuid(
                                row.try_get("wallet_id").map_err(super::db_err)?,
                            ),
                            next_seq: row.try_get("next_seq").map_err(super::db_err)?,
                            last_seen: row.try_get("last_seen").map_err(super::db_err)?,
                            failures: u32::try_from(failures).unwrap_or(u32::MAX),
                            first_failed_at: row.try_get("first_failed_at").map_err(super::db_err)?,
                            lease,
                        })
                    })
                    .collect()
            }

            async fn events_from(
                &self,
                wallet: coffer_ledger::WalletId,
                from: i64,
                limit: u32,
            ) -> Result<Vec<coffer_ledger::port::EventRecord>, coffer_outbox::OutboxError> {
                let rows = sqlx::query(&format!(
                    "SELECT {} FROM events WHERE wallet_id = $1 AND seq >= $2 ORDER BY seq LIMIT $3",
                    crate::ledger::events::EVENT_COLUMNS
                ))
                .bind(*wallet.as_uuid())
                .bind(from)
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await
                .map_err(super::db_err)?;
                rows.iter().map(Self::event_from).collect()
            }

            async fn settle(
                &self,
                claim: &coffer_outbox::Claim,
                to: &coffer_outbox::Settlement,
                attempts: &[coffer_outbox::Attempt],
                now: i64,
            ) -> Result<coffer_outbox::Settled, coffer_outbox::OutboxError> {
                use sqlx::Row;
                let mut tx = self.pool.begin_with(SQL.begin).await.map_err(super::db_err)?;
                let moved = sqlx::query(
                    "UPDATE outbox_cursors SET next_seq = $4, failures = $5, first_failed_at = $6, \
                     lease = NULL, lease_until = NULL, \
                     due_at = CASE WHEN $7 IS NOT NULL THEN $7 \
                                   WHEN last_seen >= $4 THEN $8 ELSE NULL END, \
                     pending_since = CASE WHEN $7 IS NULL AND last_seen < $4 THEN NULL \
                                          ELSE pending_since END \
                     WHERE sink_id = $1 AND wallet_id = $2 AND lease = $3",
                )
                .bind(*claim.sink.as_uuid())
                .bind(*claim.wallet.as_uuid())
                .bind(claim.lease)
                .bind(to.next_seq)
                .bind(i64::from(to.failures))
                .bind(to.first_failed_at)
                .bind(to.retry_at)
                .bind(now)
                .execute(&mut *tx)
                .await
                .map_err(super::db_err)?;
                if moved.rows_affected() == 0 {
                    return Ok(coffer_outbox::Settled {
                        ours: false,
                        sink_failures: 0,
                    });
                }
                for a in attempts {
                    Self::insert_attempt(&mut *tx, a).await?;
                }
                // The sink's row is written only when its count changes: concurrent settlements
                // of one busy sink that all delivered do not queue on its row lock. Unchanged,
                // the count is 0 (a failure always changes it).
                let (reset, add) = coffer_outbox::failure_run(attempts);
                let failures: i64 = sqlx::query(
                    "UPDATE outbox_sinks SET failures = CASE WHEN $2 THEN $3 ELSE failures + $3 END \
                     WHERE id = $1 AND failures <> CASE WHEN $2 THEN $3 ELSE failures + $3 END \
                     RETURNING failures",
                )
                .bind(*claim.sink.as_uuid())
                .bind(reset)
                .bind(i64::from(add))
                .fetch_optional(&mut *tx)
                .await
                .map_err(super::db_err)?
                .map(|row| row.try_get("failures"))
                .transpose()
                .map_err(super::db_err)?
                .unwrap_or(0);
                tx.commit().await.map_err(super::db_err)?;
                Ok(coffer_outbox::Settled {
                    ours: true,
                    sink_failures: u32::try_from(failures).unwrap_or(u32::MAX),
                })
            }

            async fn record_attempt(
                &self,
                attempt: &coffer_outbox::Attempt,
            ) -> Result<(), coffer_outbox::OutboxError> {
                let mut conn = self.pool.acquire().await.map_err(super::db_err)?;
                Self::insert_attempt(&mut *conn, attempt).await
            }

            async fn attempts(
                &self,
                sink: coffer_outbox::SinkId,
                before: Option<coffer_outbox::AttemptId>,
                limit: u32,
            ) -> Result<Vec<coffer_outbox::Attempt>, coffer_outbox::OutboxError> {
                let before = before.map_or(uuid::Uuid::max(), |a| *a.as_uuid());
                let rows = sqlx::query(&format!(
                    "SELECT {} FROM outbox_attempts WHERE sink_id = $1 AND id < $2 \
                     ORDER BY id DESC LIMIT $3",
                    super::ATTEMPT_COLUMNS
                ))
                .bind(*sink.as_uuid())
                .bind(before)
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await
                .map_err(super::db_err)?;
                rows.iter().map(Self::attempt_from).collect()
            }

            async fn attempt(
                &self,
                sink: coffer_outbox::SinkId,
                id: coffer_outbox::AttemptId,
            ) -> Result<Option<coffer_outbox::Attempt>, coffer_outbox::OutboxError> {
                let row = sqlx::query(&format!(
                    "SELECT {} FROM outbox_attempts WHERE sink_id = $1 AND id = $2",
                    super::ATTEMPT_COLUMNS
                ))
                .bind(*sink.as_uuid())
                .bind(*id.as_uuid())
                .fetch_optional(&self.pool)
                .await
                .map_err(super::db_err)?;
                row.as_ref().map(Self::attempt_from).transpose()
            }

            async fn backlog(
                &self,
                now: i64,
            ) -> Result<coffer_outbox::Backlog, coffer_outbox::OutboxError> {
                use sqlx::Row;
                let row = sqlx::query(&format!(
                    "SELECT \
                     (SELECT MIN(c.pending_since) FROM outbox_cursors c \
                      JOIN outbox_sinks s ON s.id = c.sink_id \
                      WHERE s.enabled = $1 AND c.due_at IS NOT NULL) AS oldest, \
                     (SELECT COUNT(*) FROM outbox_cursors c \
                      JOIN outbox_sinks s ON s.id = c.sink_id \
                      WHERE s.enabled = $1 AND c.due_at IS NOT NULL) AS pending, \
                     (SELECT COUNT(*) FROM events e, outbox_scan p \
                      WHERE p.id = 1 AND (e.xid, e.pos) > (p.xid, p.pos)) AS unscanned"
                ))
                .bind(true)
                .fetch_one(&self.pool)
                .await
                .map_err(super::db_err)?;
                let oldest: Option<i64> = row.try_get("oldest").map_err(super::db_err)?;
                let pending: i64 = row.try_get("pending").map_err(super::db_err)?;
                let unscanned: i64 = row.try_get("unscanned").map_err(super::db_err)?;
                Ok(coffer_outbox::Backlog {
                    oldest_wait: oldest.map_or(0, |t| (now - t).max(0)),
                    pending: u64::try_from(pending).unwrap_or(0),
                    unscanned: u64::try_from(unscanned).unwrap_or(0),
                })
            }

            async fn prune(
                &self,
                before: i64,
                expired: i64,
                limit: u32,
            ) -> Result<u64, coffer_outbox::OutboxError> {
                self.prune_events(before, expired, limit).await
            }
        }

        impl $store {
            async fn insert_attempt(
                conn: &mut <<$Pool as PoolDb>::Db as sqlx::Database>::Connection,
                a: &coffer_outbox::Attempt,
            ) -> Result<(), coffer_outbox::OutboxError> {
                sqlx::query(&format!(
                    "INSERT INTO outbox_attempts ({}) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
                    super::ATTEMPT_COLUMNS
                ))
                .bind(*a.id.as_uuid())
                .bind(*a.sink.as_uuid())
                .bind(*a.event.as_uuid())
                .bind(*a.wallet.as_uuid())
                .bind(a.seq)
                .bind(a.kind.as_str())
                .bind(a.at)
                .bind(a.outcome.as_str())
                .bind(a.status.map(i32::from))
                .bind(i32::try_from(a.latency_ms).unwrap_or(i32::MAX))
                .bind(a.error.as_deref())
                .execute(conn)
                .await
                .map_err(super::db_err)?;
                Ok(())
            }
        }
    };
}
use outbox_store;

/// The database of a pool type, for the macro's signatures.
pub(crate) trait PoolDb {
    type Db: sqlx::Database;
}

impl<DB: sqlx::Database> PoolDb for sqlx::Pool<DB> {
    type Db = DB;
}
