//! The ledger store on SQLite: `BEGIN IMMEDIATE` takes the database's one write lock up front,
//! so rows need no locks of their own and are read one at a time.

use coffer_ledger::port::{DataKeyRecord, PostingRecord, TransactionRecord, WalletRecord};
use coffer_ledger::{Error, TransactionId, UserId, WalletId};
use sqlx::sqlite::SqlitePool;
use sqlx::{Sqlite, SqliteConnection, Transaction};
use uuid::Uuid;

use super::{
    Failure, Filter, POSTING_COLUMNS, TRANSACTION_COLUMNS, WALLET_COLUMNS, attach, audit_err,
    db_err, key_from, key32, ledger_store, posting_from, transaction_from, unique_violation,
    wallet_from,
};
use crate::audit::SqliteAuditLog;

const FOR_UPDATE: &str = "";

async fn begin(pool: &SqlitePool) -> Result<Transaction<'static, Sqlite>, sqlx::Error> {
    pool.begin_with("BEGIN IMMEDIATE").await
}

async fn select_wallets(
    conn: &mut SqliteConnection,
    ids: &[WalletId],
    _lock: bool,
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

async fn select_keys(
    conn: &mut SqliteConnection,
    ids: &[WalletId],
) -> Result<Vec<DataKeyRecord>, Error> {
    let mut out = Vec::new();
    for id in ids {
        let rows = sqlx::query(
            "SELECT wallet_id, version, wrapped, kek_version FROM wallet_keys \
             WHERE wallet_id = $1 ORDER BY version",
        )
        .bind(*id.as_uuid())
        .fetch_all(&mut *conn)
        .await
        .map_err(db_err)?;
        for row in &rows {
            out.push(key_from(row)?);
        }
    }
    Ok(out)
}

ledger_store!(
    /// The ledger store on SQLite (the embedded default).
    SqliteLedgerStore,
    db = Sqlite,
    pool = SqlitePool,
    conn = SqliteConnection,
    audit = SqliteAuditLog
);
