//! The ledger store on Postgres and SQLite: one body of SQL and row handling for both, expanded
//! per database by [`ledger_store!`]; the dialects differ only in how a transaction begins (SQLite
//! takes the write lock up front with `BEGIN IMMEDIATE`), how several wallets are selected and
//! locked (Postgres: one `= ANY($1) ORDER BY id FOR UPDATE`, locking in id order; SQLite: one row
//! at a time, its single writer already excludes everyone), and the audit adapter.
//!
//! `apply` follows [`coffer_ledger::port`]: read the original transaction (a reversal), lock the
//! wallets in id order (the original's among them), read the original again, check the idempotency key (after the locks, so a concurrent request with
//! the same key is seen once it commits), decide, write, append the audit records, commit. Two
//! requests racing with one new idempotency key both decide; the second insert fails on the
//! unique index of (scope, key) and that request starts again, finding the first one's result.
//!
//! The time a commit stamps on the rows it writes (the changed wallets' `updated_at`, new data
//! keys' and public keys' `created_at`) is read from the store's clock: the system's from `new`,
//! another from `with_clock`.

use coffer_ledger::domain::{TransactionId, TransactionKind, UserId, WalletId, WalletStatus};
use coffer_ledger::port::{DataKeyRecord, PostingRecord, TransactionRecord, WalletRecord};
use coffer_ledger::{Currency, Error};
use sqlx::Row;
use uuid::Uuid;

use crate::db::{Conflict, DbFailure, DbFailureKind};

mod pg;
mod sqlite;

pub use pg::PgLedgerStore;
pub use sqlite::SqliteLedgerStore;

const WALLET_COLUMNS: &str = "id, owner_id, currency, status, version, balance, dek_version, \
     signing_key, public_key, kdf_params, failed_pins, created_at, updated_at";

const TRANSACTION_COLUMNS: &str = "t.id, t.kind, t.currency, t.at_micros, t.from_wallet, \
     t.to_wallet, t.key_wallet, t.reverses, t.scope, t.idempotency_key, t.memo, t.signature, \
     t.public_key, t.fingerprint, (SELECT r.id FROM transactions r WHERE r.reverses = t.id) AS reversed_by";

const POSTING_COLUMNS: &str = "transaction_id, line, wallet_id, wallet_seq, amount";

/// Why a write did not go through: an error for the caller, or a lost idempotency race to retry.
pub(super) enum Failure {
    Error(Error),
    Retry,
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        Self::Error(e)
    }
}

impl From<sqlx::Error> for Failure {
    fn from(e: sqlx::Error) -> Self {
        Self::Error(db_err(e))
    }
}

impl From<DbFailure> for Error {
    fn from(f: DbFailure) -> Self {
        match f.kind() {
            DbFailureKind::Unavailable => Error::Unavailable(f.message()),
            DbFailureKind::Corrupt => Error::Corrupt(f.message()),
            DbFailureKind::Conflict(_) | DbFailureKind::Storage => Error::Storage(f.message()),
        }
    }
}

/// Translates a driver error into the port's.
fn db_err(e: sqlx::Error) -> Error {
    DbFailure::from(e).into()
}

fn audit_err(e: coffer_audit::AuditError) -> Failure {
    match e {
        coffer_audit::AuditError::Conflict(_) => Failure::Retry,
        coffer_audit::AuditError::Unavailable(m) => Failure::Error(Error::Unavailable(m)),
        other => Failure::Error(Error::Storage(format!("audit: {other}"))),
    }
}

/// A failed write: a second reversal loses to the unique index on `reverses`; a second use of
/// a new idempotency key loses to its primary key and is retried (it then finds the first), and
/// so is a transaction Postgres aborted as a serialization failure or deadlock.
fn write_failure(e: sqlx::Error) -> Failure {
    let f = DbFailure::from(e);
    if f.is_unique_on("reverses") {
        Failure::Error(Error::Rejected(coffer_ledger::LedgerError::AlreadyReversed))
    } else if f.is_unique_on("idempotency") || f.kind() == DbFailureKind::Conflict(Conflict::Retry)
    {
        Failure::Retry
    } else {
        Failure::Error(f.into())
    }
}

fn corrupt(what: &str) -> impl Fn(String) -> Error + '_ {
    move |e| Error::Corrupt(format!("stored {what}: {e}"))
}

fn u32_of(v: i64, what: &str) -> Result<u32, Error> {
    u32::try_from(v).map_err(|_| Error::Corrupt(format!("stored {what} out of range: {v}")))
}

fn key32(v: Vec<u8>, what: &str) -> Result<[u8; 32], Error> {
    <[u8; 32]>::try_from(v.as_slice())
        .map_err(|_| Error::Corrupt(format!("stored {what} is not 32 bytes")))
}

fn currency(s: &str) -> Result<Currency, Error> {
    Currency::parse(s).map_err(|e| corrupt("currency")(e.to_string()))
}

fn wallet_from<R: Row>(row: &R) -> Result<WalletRecord, Error>
where
    for<'r> &'r str: sqlx::ColumnIndex<R>,
    for<'r> Uuid: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> Vec<u8>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let status: String = row.try_get("status").map_err(db_err)?;
    Ok(WalletRecord {
        id: WalletId::from_uuid(row.try_get("id").map_err(db_err)?),
        owner: UserId::from_uuid(row.try_get("owner_id").map_err(db_err)?),
        currency: currency(&row.try_get::<String, _>("currency").map_err(db_err)?)?,
        status: WalletStatus::parse(&status)
            .ok_or_else(|| corrupt("wallet status")(status.clone()))?,
        version: row.try_get("version").map_err(db_err)?,
        balance: row.try_get("balance").map_err(db_err)?,
        dek_version: u32_of(row.try_get("dek_version").map_err(db_err)?, "dek_version")?,
        signing_key: row.try_get("signing_key").map_err(db_err)?,
        public_key: key32(row.try_get("public_key").map_err(db_err)?, "public key")?,
        kdf_params: row.try_get("kdf_params").map_err(db_err)?,
        failed_pins: u32_of(row.try_get("failed_pins").map_err(db_err)?, "failed_pins")?,
        created_at: row.try_get("created_at").map_err(db_err)?,
        updated_at: row.try_get("updated_at").map_err(db_err)?,
    })
}

fn key_from<R: Row>(row: &R) -> Result<DataKeyRecord, Error>
where
    for<'r> &'r str: sqlx::ColumnIndex<R>,
    for<'r> Uuid: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> Vec<u8>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    Ok(DataKeyRecord {
        wallet: WalletId::from_uuid(row.try_get("wallet_id").map_err(db_err)?),
        version: u32_of(row.try_get("version").map_err(db_err)?, "key version")?,
        wrapped: row.try_get("wrapped").map_err(db_err)?,
        kek_version: u32_of(row.try_get("kek_version").map_err(db_err)?, "kek_version")?,
    })
}

fn posting_from<R: Row>(row: &R) -> Result<(TransactionId, PostingRecord), Error>
where
    for<'r> &'r str: sqlx::ColumnIndex<R>,
    for<'r> Uuid: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> Vec<u8>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let line: i64 = row.try_get("line").map_err(db_err)?;
    Ok((
        TransactionId::from_uuid(row.try_get("transaction_id").map_err(db_err)?),
        PostingRecord {
            line: u16::try_from(line).map_err(|_| corrupt("posting line")(line.to_string()))?,
            wallet: row
                .try_get::<Option<Uuid>, _>("wallet_id")
                .map_err(db_err)?
                .map(WalletId::from_uuid),
            wallet_seq: row.try_get("wallet_seq").map_err(db_err)?,
            amount: row.try_get("amount").map_err(db_err)?,
        },
    ))
}

fn transaction_from<R: Row>(row: &R) -> Result<TransactionRecord, Error>
where
    for<'r> &'r str: sqlx::ColumnIndex<R>,
    for<'r> Uuid: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> Vec<u8>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let kind: String = row.try_get("kind").map_err(db_err)?;
    let id = |col: &str| -> Result<Option<Uuid>, Error> { row.try_get(col).map_err(db_err) };
    Ok(TransactionRecord {
        id: TransactionId::from_uuid(row.try_get("id").map_err(db_err)?),
        kind: TransactionKind::parse(&kind)
            .ok_or_else(|| corrupt("transaction kind")(kind.clone()))?,
        currency: currency(&row.try_get::<String, _>("currency").map_err(db_err)?)?,
        at_micros: row.try_get("at_micros").map_err(db_err)?,
        from_wallet: id("from_wallet")?.map(WalletId::from_uuid),
        to_wallet: id("to_wallet")?.map(WalletId::from_uuid),
        key_wallet: WalletId::from_uuid(row.try_get("key_wallet").map_err(db_err)?),
        reverses: id("reverses")?.map(TransactionId::from_uuid),
        scope: row.try_get("scope").map_err(db_err)?,
        idempotency_key: row.try_get("idempotency_key").map_err(db_err)?,
        fingerprint: key32(
            row.try_get("fingerprint").map_err(db_err)?,
            "request fingerprint",
        )?,
        memo: row.try_get("memo").map_err(db_err)?,
        signature: row.try_get("signature").map_err(db_err)?,
        public_key: row
            .try_get::<Option<Vec<u8>>, _>("public_key")
            .map_err(db_err)?
            .map(|k| key32(k, "signer public key"))
            .transpose()?,
        postings: Vec::new(),
        reversed_by: id("reversed_by")?.map(TransactionId::from_uuid),
    })
}

/// Which transactions to load.
#[derive(Debug, Clone, Copy)]
enum Filter {
    /// One.
    Id(Uuid),
    /// Those with a posting on the wallet between two of its sequence numbers.
    WalletSeqs(Uuid, i64, i64),
    /// The first `limit` after an id.
    After(Uuid, i64),
    /// Those after the first id up to the second.
    Range(Uuid, Uuid),
}

impl Filter {
    fn sql(self) -> &'static str {
        match self {
            Self::Id(_) => "t.id = $1",
            Self::WalletSeqs(..) => {
                "t.id IN (SELECT transaction_id FROM postings \
                 WHERE wallet_id = $1 AND wallet_seq BETWEEN $2 AND $3)"
            }
            Self::After(..) => {
                "t.id IN (SELECT id FROM transactions WHERE id > $1 ORDER BY id LIMIT $2)"
            }
            Self::Range(..) => "t.id > $1 AND t.id <= $2",
        }
    }
}

/// Attaches postings (rows of several transactions) to their transactions.
fn attach(
    mut transactions: Vec<TransactionRecord>,
    postings: Vec<(TransactionId, PostingRecord)>,
) -> Vec<TransactionRecord> {
    for (id, p) in postings {
        if let Some(t) = transactions.iter_mut().find(|t| t.id == id) {
            t.postings.push(p);
        }
    }
    for t in &mut transactions {
        t.postings.sort_by_key(|p| p.line);
    }
    transactions
}

/// The store type for one database; see the module documentation. The caller's module defines
/// `begin(pool)`, `select_loaded(conn, ids)` (wallets with their keys), `lock_wallets(conn, ids,
/// idempotency)` (locked rows, and the transaction recorded under the key), `write_changes(conn,
/// locked, changes, now, audit)` (every write of the changes, their audit records included; the
/// records' receipts in order).
macro_rules! ledger_store {
    (
        $(#[$doc:meta])*
        $name:ident, db = $Db:ty, pool = $Pool:ty, conn = $Conn:ty, audit = $Audit:ty
    ) => {
        $(#[$doc])*
        #[derive(Clone)]
        pub struct $name {
            pool: $Pool,
            audit: $Audit,
            clock: std::sync::Arc<dyn coffer_clock::Clock>,
        }

        impl std::fmt::Debug for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct(stringify!($name)).finish_non_exhaustive()
            }
        }

        impl $name {
            /// A store on `pool` (migrated), writing its audit records through `audit` (on the
            /// same database).
            #[must_use]
            pub fn new(pool: $Pool, audit: $Audit) -> Self {
                Self {
                    pool,
                    audit,
                    clock: coffer_clock::system(),
                }
            }

            /// The same store, reading the time from `clock`.
            #[must_use]
            pub fn with_clock(mut self, clock: std::sync::Arc<dyn coffer_clock::Clock>) -> Self {
                self.clock = clock;
                self
            }

            async fn load_transactions(
                conn: &mut $Conn,
                filter: Filter,
            ) -> Result<Vec<TransactionRecord>, Error> {
                fn bind<'q>(
                    q: sqlx::query::Query<'q, $Db, <$Db as sqlx::Database>::Arguments<'q>>,
                    filter: Filter,
                ) -> sqlx::query::Query<'q, $Db, <$Db as sqlx::Database>::Arguments<'q>> {
                    match filter {
                        Filter::Id(id) => q.bind(id),
                        Filter::WalletSeqs(w, lo, hi) => q.bind(w).bind(lo).bind(hi),
                        Filter::After(id, limit) => q.bind(id).bind(limit),
                        Filter::Range(after, last) => q.bind(after).bind(last),
                    }
                }
                let sql = format!(
                    "SELECT {TRANSACTION_COLUMNS} FROM transactions t WHERE {} ORDER BY t.id",
                    filter.sql()
                );
                let rows = bind(sqlx::query(&sql), filter)
                    .fetch_all(&mut *conn)
                    .await
                    .map_err(db_err)?;
                let transactions = rows
                    .iter()
                    .map(transaction_from)
                    .collect::<Result<Vec<_>, _>>()?;
                if transactions.is_empty() {
                    return Ok(transactions);
                }
                // The postings of exactly the transactions loaded: for a page, the id range it
                // spans (a transaction committing meanwhile inside the range is not in the list,
                // and its postings are dropped by `attach`).
                let postings_filter = match (filter, transactions.last()) {
                    (Filter::After(after, _), Some(last)) => Filter::Range(after, *last.id.as_uuid()),
                    _ => filter,
                };
                let sql = format!(
                    "SELECT {POSTING_COLUMNS} FROM postings WHERE transaction_id IN \
                     (SELECT t.id FROM transactions t WHERE {})",
                    postings_filter.sql()
                );
                let rows = bind(sqlx::query(&sql), postings_filter)
                    .fetch_all(&mut *conn)
                    .await
                    .map_err(db_err)?;
                let postings = rows
                    .iter()
                    .map(posting_from)
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(attach(transactions, postings))
            }

            async fn one_transaction(
                conn: &mut $Conn,
                id: TransactionId,
            ) -> Result<Option<TransactionRecord>, Error> {
                Ok(Self::load_transactions(conn, Filter::Id(*id.as_uuid()))
                    .await?
                    .pop())
            }

            async fn by_key(
                conn: &mut $Conn,
                scope: &str,
                key: &str,
            ) -> Result<Option<TransactionRecord>, Error> {
                let id: Option<Uuid> = sqlx::query_scalar(
                    "SELECT id FROM transactions WHERE scope = $1 AND idempotency_key = $2",
                )
                .bind(scope)
                .bind(key)
                .fetch_optional(&mut *conn)
                .await
                .map_err(db_err)?;
                match id {
                    Some(id) => Self::one_transaction(conn, TransactionId::from_uuid(id)).await,
                    None => Ok(None),
                }
            }

            async fn try_apply(
                &self,
                op: &coffer_ledger::port::Apply<'_>,
            ) -> Result<coffer_ledger::port::Applied, Failure> {
                use coffer_ledger::port::{Applied, Locked};
                let mut tx = begin(&self.pool).await.map_err(db_err)?;
                let mut ids = op.lock.clone();
                // A reversal's original is read, its wallets locked with the others, and then
                // read again: every reversal of it locks the same wallets first, so the second
                // read sees a reversal that committed while this one waited. (Locking the
                // transaction row itself would need UPDATE on transactions, which the
                // application role does not have; the unique index on `reverses` is the last
                // word either way.)
                if let Some(id) = op.original {
                    let t = Self::one_transaction(&mut tx, id)
                        .await?
                        .ok_or(Error::TransactionNotFound(id))?;
                    ids.extend(t.wallets());
                }
                ids.sort();
                ids.dedup();
                let (wallets, earlier) = lock_wallets(&mut tx, &ids, op.idempotency).await?;
                if let Some(missing) = ids.iter().find(|id| !wallets.iter().any(|w| w.id == **id)) {
                    return Err(Error::WalletNotFound(*missing).into());
                }
                if let (Some(idem), Some((fingerprint, id))) = (op.idempotency, earlier) {
                    if fingerprint.as_slice() != idem.fingerprint.as_slice() {
                        return Err(Error::IdempotencyConflict.into());
                    }
                    let id = TransactionId::from_uuid(id);
                    let t = Self::one_transaction(&mut tx, id).await?.ok_or_else(|| {
                        Error::Corrupt(format!("idempotency key names missing transaction {id}"))
                    })?;
                    return Ok(Applied::Replayed(t));
                }
                let original = match op.original {
                    Some(id) => Some(
                        Self::one_transaction(&mut tx, id)
                            .await?
                            .ok_or(Error::TransactionNotFound(id))?,
                    ),
                    None => None,
                };
                let changes = match (op.decide)(&Locked {
                    wallets: &wallets,
                    original: original.as_ref(),
                }) {
                    Ok(changes) => changes,
                    Err(refusal) => {
                        // On Postgres the key was looked up in the snapshot taken before the
                        // locks were granted: a request with the same key may have committed
                        // while this one waited, and its answer is the one to give.
                        if let Some(idem) = op.idempotency
                            && let Some(t) = Self::by_key(&mut tx, &idem.scope, &idem.key).await?
                        {
                            if t.fingerprint != idem.fingerprint {
                                return Err(Error::IdempotencyConflict.into());
                            }
                            return Ok(Applied::Replayed(t));
                        }
                        return Err(refusal.into());
                    }
                };
                let now = self.clock.unix_micros();
                let receipts = write_changes(&mut tx, &wallets, &changes, now, &self.audit).await?;
                tx.commit().await?;
                Ok(Applied::Committed {
                    transaction: changes.transaction,
                    audit: changes.audit.into_iter().zip(receipts).collect(),
                })
            }
        }

        async fn insert_public_key(
            conn: &mut $Conn,
            wallet: WalletId,
            key: &[u8; 32],
            now: i64,
        ) -> Result<(), sqlx::Error> {
            sqlx::query(
                "INSERT INTO wallet_public_keys (wallet_id, public_key, created_at) \
                 VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
            )
            .bind(*wallet.as_uuid())
            .bind(key.as_slice())
            .bind(now)
            .execute(&mut *conn)
            .await
            .map(|_| ())
        }

        #[async_trait::async_trait]
        impl coffer_ledger::port::LedgerStore for $name {
            async fn create_wallet(
                &self,
                new: coffer_ledger::port::NewWallet,
            ) -> Result<coffer_audit::Receipt, Error> {
                let r = &new.record;
                let mut tx = begin(&self.pool).await.map_err(db_err)?;
                let inserted = sqlx::query(&format!(
                    "INSERT INTO wallets ({WALLET_COLUMNS}) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"
                ))
                .bind(*r.id.as_uuid())
                .bind(*r.owner.as_uuid())
                .bind(r.currency.code())
                .bind(r.status.as_str())
                .bind(r.version)
                .bind(&r.balance)
                .bind(i64::from(r.dek_version))
                .bind(&r.signing_key)
                .bind(r.public_key.as_slice())
                .bind(&r.kdf_params)
                .bind(i64::from(r.failed_pins))
                .bind(r.created_at)
                .bind(r.updated_at)
                .execute(&mut *tx)
                .await;
                if let Err(e) = inserted {
                    let f = crate::db::DbFailure::from(e);
                    return Err(if f.is_unique() {
                        Error::DuplicateWallet(r.id)
                    } else {
                        f.into()
                    });
                }
                sqlx::query(
                    "INSERT INTO wallet_keys (wallet_id, version, wrapped, kek_version, created_at) \
                     VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(*new.key.wallet.as_uuid())
                .bind(i64::from(new.key.version))
                .bind(&new.key.wrapped)
                .bind(i64::from(new.key.kek_version))
                .bind(r.created_at)
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
                insert_public_key(&mut tx, r.id, &r.public_key, r.created_at)
                    .await
                    .map_err(db_err)?;
                let receipt = self
                    .audit
                    .append_in(&mut tx, &new.audit)
                    .await
                    .map_err(|e| match audit_err(e) {
                        Failure::Error(e) => e,
                        Failure::Retry => Error::Unavailable("audit conflict; retry".into()),
                    })?;
                tx.commit().await.map_err(db_err)?;
                Ok(receipt)
            }

            async fn load_wallets(
                &self,
                ids: &[WalletId],
            ) -> Result<Vec<coffer_ledger::port::LoadedWallet>, Error> {
                let mut conn = self.pool.acquire().await.map_err(db_err)?;
                select_loaded(&mut conn, ids).await
            }

            async fn wallets_of(&self, owner: UserId) -> Result<Vec<WalletRecord>, Error> {
                let rows = sqlx::query(&format!(
                    "SELECT {WALLET_COLUMNS} FROM wallets WHERE owner_id = $1 \
                     ORDER BY created_at, id"
                ))
                .bind(*owner.as_uuid())
                .fetch_all(&self.pool)
                .await
                .map_err(db_err)?;
                rows.iter().map(wallet_from).collect()
            }

            async fn apply(
                &self,
                op: coffer_ledger::port::Apply<'_>,
            ) -> Result<coffer_ledger::port::Applied, Error> {
                let mut attempts = 0;
                loop {
                    match self.try_apply(&op).await {
                        Ok(applied) => return Ok(applied),
                        Err(Failure::Error(e)) => return Err(e),
                        Err(Failure::Retry) if attempts < 5 => attempts += 1,
                        Err(Failure::Retry) => {
                            return Err(Error::Unavailable(
                                "lost too many races for one idempotency key; retry".into(),
                            ));
                        }
                    }
                }
            }

            async fn idempotent(
                &self,
                scope: &str,
                key: &str,
            ) -> Result<Option<TransactionRecord>, Error> {
                let mut conn = self.pool.acquire().await.map_err(db_err)?;
                Self::by_key(&mut conn, scope, key).await
            }

            async fn transaction(
                &self,
                id: TransactionId,
            ) -> Result<Option<TransactionRecord>, Error> {
                let mut conn = self.pool.acquire().await.map_err(db_err)?;
                Self::one_transaction(&mut conn, id).await
            }

            async fn history(
                &self,
                wallet: WalletId,
                before: Option<i64>,
                limit: u32,
            ) -> Result<coffer_ledger::port::HistoryPage, Error> {
                let mut conn = self.pool.acquire().await.map_err(db_err)?;
                let seqs: Vec<(Uuid, i64)> = sqlx::query_as(
                    "SELECT transaction_id, wallet_seq FROM postings \
                     WHERE wallet_id = $1 AND wallet_seq < $2 \
                     ORDER BY wallet_seq DESC LIMIT $3",
                )
                .bind(*wallet.as_uuid())
                .bind(before.unwrap_or(i64::MAX))
                .bind(i64::from(limit))
                .fetch_all(&mut *conn)
                .await
                .map_err(db_err)?;
                let (Some((_, newest)), Some((_, oldest))) = (seqs.first(), seqs.last()) else {
                    return Ok(Vec::new());
                };
                let (newest, oldest, w) = (*newest, *oldest, *wallet.as_uuid());
                let transactions =
                    Self::load_transactions(&mut conn, Filter::WalletSeqs(w, oldest, newest))
                        .await?;
                Ok(seqs
                    .into_iter()
                    .filter_map(|(id, seq)| {
                        let id = TransactionId::from_uuid(id);
                        transactions.iter().find(|t| t.id == id).map(|t| (seq, t.clone()))
                    })
                    .collect())
            }

            async fn public_keys(&self, wallet: WalletId) -> Result<Vec<[u8; 32]>, Error> {
                let keys: Vec<Vec<u8>> = sqlx::query_scalar(
                    "SELECT public_key FROM wallet_public_keys WHERE wallet_id = $1 \
                     ORDER BY created_at",
                )
                .bind(*wallet.as_uuid())
                .fetch_all(&self.pool)
                .await
                .map_err(db_err)?;
                keys.into_iter().map(|k| key32(k, "public key")).collect()
            }

            async fn wallets_after(
                &self,
                after: Option<WalletId>,
                limit: u32,
            ) -> Result<Vec<coffer_ledger::port::LoadedWallet>, Error> {
                let rows = sqlx::query(&format!(
                    "SELECT {WALLET_COLUMNS} FROM wallets WHERE id > $1 ORDER BY id LIMIT $2"
                ))
                .bind(after.map_or(Uuid::nil(), |w| *w.as_uuid()))
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await
                .map_err(db_err)?;
                let ids = rows
                    .iter()
                    .map(wallet_from)
                    .map(|w| w.map(|w| w.id))
                    .collect::<Result<Vec<_>, _>>()?;
                self.load_wallets(&ids).await
            }

            async fn postings_of(
                &self,
                wallet: WalletId,
            ) -> Result<Vec<(TransactionId, PostingRecord)>, Error> {
                let rows = sqlx::query(&format!(
                    "SELECT {POSTING_COLUMNS} FROM postings WHERE wallet_id = $1 \
                     ORDER BY wallet_seq"
                ))
                .bind(*wallet.as_uuid())
                .fetch_all(&self.pool)
                .await
                .map_err(db_err)?;
                rows.iter().map(posting_from).collect()
            }

            async fn transactions_after(
                &self,
                after: Option<TransactionId>,
                limit: u32,
            ) -> Result<Vec<TransactionRecord>, Error> {
                let mut conn = self.pool.acquire().await.map_err(db_err)?;
                let after = after.map_or(Uuid::nil(), |t| *t.as_uuid());
                Self::load_transactions(&mut conn, Filter::After(after, i64::from(limit))).await
            }
        }
    };
}

use ledger_store;
