//! Holds as stored: read one (by id, under its paying wallet's lock, or by the key that placed
//! it) or a wallet's page of them, insert a new one, and write how one resolved. A resolution
//! changes only a hold that is still active, and the count of rows it changed says whether
//! another got there first.

use coffer_crypto::Envelope;
use coffer_ledger::Error;
use coffer_ledger::domain::{HoldId, WalletId};
use coffer_ledger::port::{Changes, HoldRecord};
use sqlx::{Database, Encode, Executor, IntoArguments, Type};
use uuid::Uuid;

use super::rows::{HOLD_COLUMNS, hold_from};
use super::{Failure, Ledger, LedgerDialect, db_err};
use crate::dialect::Conn;

impl<D: LedgerDialect> Ledger<D>
where
    for<'c> &'c mut Conn<D>: Executor<'c, Database = D::Db>,
    for<'q> <D::Db as Database>::Arguments<'q>: IntoArguments<'q, D::Db>,
    for<'q> Uuid: Encode<'q, D::Db> + Type<D::Db> + sqlx::Decode<'q, D::Db>,
    for<'q> i64: Encode<'q, D::Db> + Type<D::Db> + sqlx::Decode<'q, D::Db>,
    for<'q> String: Type<D::Db> + sqlx::Decode<'q, D::Db>,
    for<'q> Vec<u8>: Encode<'q, D::Db> + Type<D::Db> + sqlx::Decode<'q, D::Db>,
    for<'q> &'q str: Encode<'q, D::Db> + Type<D::Db> + sqlx::ColumnIndex<<D::Db as Database>::Row>,
    for<'q> &'q [u8]: Encode<'q, D::Db> + Type<D::Db>,
    for<'q> Option<Uuid>: Encode<'q, D::Db>,
    for<'q> Option<&'q str>: Encode<'q, D::Db>,
    for<'q> Option<i64>: Encode<'q, D::Db>,
    for<'q> Option<&'q [u8]>: Encode<'q, D::Db>,
    for<'q> Option<Vec<u8>>: Encode<'q, D::Db>,
    usize: sqlx::ColumnIndex<<D::Db as Database>::Row>,
{
    /// One hold.
    pub(super) async fn one_hold(
        conn: &mut Conn<D>,
        id: HoldId,
    ) -> Result<Option<HoldRecord>, Error> {
        sqlx::query(&format!("SELECT {HOLD_COLUMNS} FROM holds WHERE id = $1"))
            .bind(*id.as_uuid())
            .fetch_optional(&mut *conn)
            .await
            .map_err(db_err)?
            .as_ref()
            .map(hold_from)
            .transpose()
    }

    /// Inserts the new hold and writes the resolved ones (after the transactions: a capture
    /// names its transaction). A resolution changes only a hold still active, so the count of
    /// rows written checks that no other resolution got there first.
    pub(super) async fn write_holds(conn: &mut Conn<D>, changes: &Changes) -> Result<(), Failure> {
        if let Some(h) = &changes.new_hold {
            sqlx::query(&format!(
                "INSERT INTO holds ({HOLD_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, \
                 NULL, NULL, $10, $11, $12, NULL, NULL, NULL, $13, $14)"
            ))
            .bind(*h.id.as_uuid())
            .bind(*h.wallet.as_uuid())
            .bind(h.to_wallet.map(|w| *w.as_uuid()))
            .bind(h.currency.code())
            .bind(h.amount.as_bytes())
            .bind(h.memo.as_ref().map(Envelope::as_bytes))
            .bind(h.created_at)
            .bind(h.expires_at)
            .bind(h.status.as_str())
            .bind(h.placed.scope.as_str())
            .bind(h.placed.key.as_str())
            .bind(h.placed.fingerprint.as_slice())
            .bind(h.signature.to_bytes().to_vec())
            .bind(h.public_key.as_slice())
            .execute(&mut *conn)
            .await
            .map_err(db_err)?;
        }
        for c in &changes.holds {
            let r = c.resolved.as_ref();
            let done = sqlx::query(
                "UPDATE holds SET status = $2, resolved_at = $3, capture_transaction = $4, \
                 resolve_scope = $5, resolve_key = $6, resolve_fingerprint = $7 \
                 WHERE id = $1 AND status = 'active'",
            )
            .bind(*c.id.as_uuid())
            .bind(c.status.as_str())
            .bind(c.at)
            .bind(c.capture.map(|t| *t.as_uuid()))
            .bind(r.map(|r| r.scope.as_str()))
            .bind(r.map(|r| r.key.as_str()))
            .bind(r.map(|r| r.fingerprint.to_vec()))
            .execute(&mut *conn)
            .await
            .map_err(db_err)?;
            if D::rows_affected(&done) != 1 {
                return Err(Error::Storage(
                    format!("hold {} was resolved while locked", c.id).into(),
                )
                .into());
            }
        }
        Ok(())
    }

    pub(super) async fn hold(&self, id: HoldId) -> Result<Option<HoldRecord>, Error> {
        let mut conn = self.pool.acquire().await.map_err(db_err)?;
        Self::one_hold(&mut conn, id).await
    }

    pub(super) async fn holds_of(
        &self,
        wallet: WalletId,
        before: Option<HoldId>,
        limit: u32,
    ) -> Result<Vec<HoldRecord>, Error> {
        sqlx::query(&format!(
            "SELECT {HOLD_COLUMNS} FROM holds WHERE (wallet_id = $1 OR to_wallet = $1) \
             AND ($2 IS NULL OR id < $2) ORDER BY id DESC LIMIT $3"
        ))
        .bind(*wallet.as_uuid())
        .bind(before.map(|h| *h.as_uuid()))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?
        .iter()
        .map(hold_from)
        .collect()
    }

    pub(super) async fn hold_by_key(
        &self,
        scope: &str,
        key: &str,
    ) -> Result<Option<HoldRecord>, Error> {
        sqlx::query(&format!(
            "SELECT {HOLD_COLUMNS} FROM holds WHERE scope = $1 AND idempotency_key = $2"
        ))
        .bind(scope)
        .bind(key)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err)?
        .as_ref()
        .map(hold_from)
        .transpose()
    }

    pub(super) async fn wallets_with_lapsed_holds(
        &self,
        now: i64,
        limit: u32,
    ) -> Result<Vec<WalletId>, Error> {
        let ids: Vec<Uuid> = sqlx::query_scalar(
            "SELECT wallet_id FROM holds WHERE status = 'active' AND expires_at <= $1 \
             GROUP BY wallet_id ORDER BY min(expires_at), wallet_id LIMIT $2",
        )
        .bind(now)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(ids.into_iter().map(WalletId::from_uuid).collect())
    }
}
