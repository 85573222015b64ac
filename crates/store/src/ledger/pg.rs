//! The ledger store on Postgres: several wallets are read, and locked, by one statement, in id
//! order.

use coffer_ledger::port::{DataKeyRecord, PostingRecord, TransactionRecord, WalletRecord};
use coffer_ledger::{Error, TransactionId, UserId, WalletId};
use sqlx::postgres::PgPool;
use sqlx::{PgConnection, Postgres, Transaction};
use uuid::Uuid;

use super::{
    Failure, Filter, POSTING_COLUMNS, TRANSACTION_COLUMNS, WALLET_COLUMNS, attach, audit_err,
    db_err, key_from, key32, ledger_store, posting_from, transaction_from, unique_violation,
    wallet_from,
};
use crate::audit::PgAuditLog;

const FOR_UPDATE: &str = " FOR UPDATE";

async fn begin(pool: &PgPool) -> Result<Transaction<'static, Postgres>, sqlx::Error> {
    pool.begin().await
}

fn uuids(ids: &[WalletId]) -> Vec<Uuid> {
    ids.iter().map(|w| *w.as_uuid()).collect()
}

async fn select_wallets(
    conn: &mut PgConnection,
    ids: &[WalletId],
    lock: bool,
) -> Result<Vec<WalletRecord>, Error> {
    let sql = format!(
        "SELECT {WALLET_COLUMNS} FROM wallets WHERE id = ANY($1) ORDER BY id{}",
        if lock { FOR_UPDATE } else { "" }
    );
    let rows = sqlx::query(&sql)
        .bind(uuids(ids))
        .fetch_all(&mut *conn)
        .await
        .map_err(db_err)?;
    rows.iter().map(wallet_from).collect()
}

async fn select_keys(
    conn: &mut PgConnection,
    ids: &[WalletId],
) -> Result<Vec<DataKeyRecord>, Error> {
    let rows = sqlx::query(
        "SELECT wallet_id, version, wrapped, kek_version FROM wallet_keys \
         WHERE wallet_id = ANY($1) ORDER BY wallet_id, version",
    )
    .bind(uuids(ids))
    .fetch_all(&mut *conn)
    .await
    .map_err(db_err)?;
    rows.iter().map(key_from).collect()
}

ledger_store!(
    /// The ledger store on Postgres.
    PgLedgerStore,
    db = Postgres,
    pool = PgPool,
    conn = PgConnection,
    audit = PgAuditLog
);
