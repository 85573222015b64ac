//! The outbox store on SQLite ([`SqliteOutboxStore`]): write transactions never interleave
//! (`BEGIN IMMEDIATE`), so the scan reads in `pos` order and nothing needs `SKIP LOCKED`;
//! pruning is the same rule as Postgres's `coffer_prune_events`, run in one transaction.

use sqlx::sqlite::SqlitePool;

use super::{Fragments, PoolDb, db_err, outbox_store};

outbox_store!(
    SqliteOutboxStore,
    pool = SqlitePool,
    sql = Fragments {
        begin: "BEGIN IMMEDIATE",
        xid_type: "INTEGER",
        finished: "",
        lock_position: "",
        lock_claimed: "",
    },
    db = "SQLite"
);

impl SqliteOutboxStore {
    async fn prune_events(
        &self,
        before: i64,
        expired: i64,
        limit: u32,
    ) -> Result<u64, coffer_outbox::OutboxError> {
        let mut tx = self
            .pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(db_err)?;
        let done = sqlx::query(
            "DELETE FROM events WHERE pos IN ( \
               SELECT e.pos FROM events e, outbox_scan s \
               WHERE e.created_at < $1 \
               AND (e.created_at < $2 \
                    OR ((e.xid, e.pos) <= (s.xid, s.pos) \
                        AND NOT EXISTS (SELECT 1 FROM outbox_cursors c \
                                        WHERE c.wallet_id = e.wallet_id AND c.next_seq <= e.seq))) \
               LIMIT $3)",
        )
        .bind(before)
        .bind(expired)
        .bind(i64::from(limit))
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        sqlx::query("DELETE FROM outbox_attempts WHERE at < $1")
            .bind(expired)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        tx.commit().await.map_err(db_err)?;
        Ok(done.rows_affected())
    }
}
