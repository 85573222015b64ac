//! The ledger store on SQLite ([`SqliteLedgerStore`]) and its [`LedgerDialect`] steps (those
//! that differ from Postgres's): `BEGIN IMMEDIATE` takes the database's one write lock up front,
//! so rows need no locks of their own; rows are read and written one statement at a time (there
//! is no network between the process and the database).

use coffer_audit::Receipt;
use coffer_crypto::Envelope;
use coffer_ledger::port::{Changes, HoldRecord, Idempotency, LoadedWallet, WalletRecord};
use coffer_ledger::{Error, WalletId};
use sqlx::SqliteConnection;
use sqlx::sqlite::SqlitePool;
use uuid::Uuid;

use super::events::last_of;
use super::rows::{HOLD_COLUMNS, WALLET_COLUMNS, hold_from, key_from, wallet_from};
use super::shell::ledger_store;
use super::{Failure, Ledger, LedgerDialect, Side, audit_err, db_err};
use crate::audit::SqliteAuditLog;
use crate::dialect::Sqlite;

async fn select_wallets(
    conn: &mut SqliteConnection,
    ids: &[WalletId],
) -> Result<Vec<WalletRecord>, Error> {
    let sql = format!("SELECT {WALLET_COLUMNS} FROM wallets WHERE id = $1");
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        if let Some(row) = sqlx::query(&sql)
            .bind(*id.as_uuid())
            .fetch_optional(&mut *conn)
            .await
            .map_err(db_err)?
        {
            out.push(wallet_from(&row)?);
        }
    }
    out.sort_by_key(|w| w.id);
    Ok(out)
}

impl LedgerDialect for Sqlite {
    const SERIALIZE_OWNER: Option<&'static str> = None;

    async fn select_loaded(
        conn: &mut SqliteConnection,
        ids: &[WalletId],
    ) -> Result<Vec<LoadedWallet>, Error> {
        let mut out = Vec::new();
        for record in select_wallets(conn, ids).await? {
            let rows = sqlx::query(
                "SELECT wallet_id, version, wrapped, kek_version FROM wallet_keys \
                 WHERE wallet_id = $1 ORDER BY version",
            )
            .bind(*record.id.as_uuid())
            .fetch_all(&mut *conn)
            .await
            .map_err(db_err)?;
            let keys = rows.iter().map(key_from).collect::<Result<_, _>>()?;
            out.push(LoadedWallet { record, keys });
        }
        Ok(out)
    }

    async fn lock_wallets(
        conn: &mut SqliteConnection,
        ids: &[WalletId],
        idempotency: Option<&Idempotency>,
    ) -> Result<(Vec<WalletRecord>, Option<(Vec<u8>, Uuid)>), Failure> {
        let wallets = select_wallets(conn, ids).await?;
        let earlier = match idempotency {
            Some(idem) => {
                sqlx::query_as(
                    "SELECT fingerprint, id FROM transactions \
                     WHERE scope = $1 AND idempotency_key = $2",
                )
                .bind(&idem.scope)
                .bind(&idem.key)
                .fetch_optional(&mut *conn)
                .await?
            }
            None => None,
        };
        Ok((wallets, earlier))
    }

    async fn write_changes(
        conn: &mut SqliteConnection,
        locked: &[WalletRecord],
        changes: &Changes,
        last: &[(WalletId, i64)],
        now: i64,
        audit: &SqliteAuditLog,
    ) -> Result<Vec<Receipt>, Failure> {
        for c in &changes.wallets {
            let old = locked
                .iter()
                .find(|w| w.id == c.id)
                .ok_or(Error::WalletNotFound(c.id))?;
            let updated = sqlx::query(
                "UPDATE wallets SET status = $2, version = $3, balance = $4, signing_key = $5, \
                 public_key = $6, kdf_params = $7, failed_pins = $8, updated_at = $9, \
                 outflow = $11, spending = $12, event_seq = $13 WHERE id = $1 AND version = $10",
            )
            .bind(*c.id.as_uuid())
            .bind(c.status.as_str())
            .bind(old.version + 1)
            .bind(c.balance.as_bytes())
            .bind(c.signing_key.as_bytes())
            .bind(c.public_key.as_slice())
            .bind(c.kdf_params.to_bytes().as_slice())
            .bind(i64::from(c.failed_pins))
            .bind(now)
            .bind(old.version)
            .bind(c.outflow.as_bytes())
            .bind(c.spending.as_bytes())
            .bind(last_of(last, old))
            .execute(&mut *conn)
            .await?;
            if updated.rows_affected() != 1 {
                return Err(
                    Error::Storage(format!("wallet {} changed while locked", c.id).into()).into(),
                );
            }
        }
        if let Some((wallet, key)) = changes.new_public_key {
            Ledger::<Self>::insert_public_key(conn, wallet, &key, now).await?;
        }
        if let Some(k) = &changes.new_data_key {
            sqlx::query(
                "INSERT INTO wallet_keys (wallet_id, version, wrapped, kek_version, created_at) \
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(*k.wallet.as_uuid())
            .bind(i64::from(k.version))
            .bind(k.wrapped.to_bytes())
            .bind(i64::from(k.kek_version))
            .bind(now)
            .execute(&mut *conn)
            .await?;
            sqlx::query("UPDATE wallets SET dek_version = $2 WHERE id = $1")
                .bind(*k.wallet.as_uuid())
                .bind(i64::from(k.version))
                .execute(&mut *conn)
                .await?;
        }
        for t in &changes.transactions {
            Ledger::<Self>::insert_transaction(conn, t).await?;
        }
        for e in &changes.events {
            Ledger::<Self>::insert_event(conn, e).await?;
        }
        let mut receipts = Vec::with_capacity(changes.audit.len());
        for event in &changes.audit {
            receipts.push(audit.append_in(conn, event).await.map_err(audit_err)?);
        }
        Ok(receipts)
    }

    async fn active_holds(
        conn: &mut SqliteConnection,
        side: Side,
        ids: &[WalletId],
    ) -> Result<Vec<HoldRecord>, Error> {
        let column = side.column();
        let sql = format!(
            "SELECT {HOLD_COLUMNS} FROM holds WHERE {column} = $1 AND status = 'active' \
             ORDER BY id"
        );
        let mut out = Vec::new();
        for id in ids {
            let rows = sqlx::query(&sql)
                .bind(*id.as_uuid())
                .fetch_all(&mut *conn)
                .await
                .map_err(db_err)?;
            for row in &rows {
                out.push(hold_from(row)?);
            }
        }
        out.sort_by_key(|h| h.id);
        Ok(out)
    }

    async fn erase_wallets(
        conn: &mut SqliteConnection,
        wallets: &[WalletId],
        now: i64,
    ) -> Result<(), Failure> {
        // What Postgres's `coffer_erase_wallets` does (SQLite has no roles to keep apart).
        for id in wallets {
            let closed = sqlx::query(
                "UPDATE wallets SET erased_at = COALESCE(erased_at, $2) \
                 WHERE id = $1 AND status = 'closed'",
            )
            .bind(*id.as_uuid())
            .bind(now)
            .execute(&mut *conn)
            .await?;
            if closed.rows_affected() != 1 {
                return Err(Error::Storage(format!("wallet {id} is not closed").into()).into());
            }
            sqlx::query("DELETE FROM wallet_keys WHERE wallet_id = $1")
                .bind(*id.as_uuid())
                .execute(&mut *conn)
                .await?;
        }
        Ok(())
    }
}

ledger_store!(
    /// The ledger store on SQLite (the embedded default).
    SqliteLedgerStore,
    dialect = Sqlite,
    pool = SqlitePool,
    audit = SqliteAuditLog
);
