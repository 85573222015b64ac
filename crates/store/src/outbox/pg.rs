//! The outbox store on Postgres ([`PgOutboxStore`]): the scan reads below
//! `pg_snapshot_xmin(pg_current_snapshot())`, positions and claims are locked `FOR UPDATE SKIP
//! LOCKED`, and pruning goes through `coffer_prune_events`, the one function the application
//! role may delete events with (`SECURITY DEFINER`, migration 0016).

use sqlx::PgPool;

use super::{Fragments, PoolDb, db_err, outbox_store};

outbox_store!(
    PgOutboxStore,
    pool = PgPool,
    sql = Fragments {
        begin: "BEGIN",
        xid_type: "xid8",
        finished: "AND xid < pg_snapshot_xmin(pg_current_snapshot())",
        lock_position: "FOR UPDATE SKIP LOCKED",
        lock_claimed: "FOR UPDATE OF c SKIP LOCKED",
    },
    db = "Postgres"
);

impl PgOutboxStore {
    async fn prune_events(
        &self,
        before: i64,
        expired: i64,
        limit: u32,
    ) -> Result<u64, coffer_outbox::OutboxError> {
        let deleted: i64 = sqlx::query_scalar("SELECT coffer_prune_events($1, $2, $3)")
            .bind(before)
            .bind(expired)
            .bind(i32::try_from(limit).unwrap_or(i32::MAX))
            .fetch_one(&self.pool)
            .await
            .map_err(db_err)?;
        Ok(u64::try_from(deleted).unwrap_or(0))
    }
}
