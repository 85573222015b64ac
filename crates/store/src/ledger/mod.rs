//! The ledger store on Postgres and SQLite: one body of SQL and row handling for both, [`Ledger`],
//! generic over the database's [`LedgerDialect`]. The dialects differ only in how a transaction
//! begins (SQLite takes the write lock up front with `BEGIN IMMEDIATE`), how several wallets are
//! selected and locked (Postgres: one `= ANY($1) ORDER BY id FOR UPDATE`, locking in id order;
//! SQLite: one row at a time, its single writer already excludes everyone), how the changes of an
//! operation are written (Postgres: one statement, and one more per transaction beyond the
//! first; SQLite: one per row) and the audit adapter. How
//! a transaction begins and the audit adapter are every store's ([`crate::dialect`]); the rest is
//! [`LedgerDialect`], implemented in [`pg`] and [`sqlite`]. The public store types are thin shells
//! around `Ledger<dialect>`, made by `shell`'s `ledger_store!`; the rows and their decoding are in
//! [`rows`], the statements on holds in `holds`.
//!
//! `apply` follows [`coffer_ledger::port`]: read the original transaction (a reversal), lock the
//! wallets in id order (the original's among them), read the original again, check the
//! idempotency key (after the locks, so a concurrent request with the same key is seen once it
//! commits), decide, write, append the audit records, commit. Two
//! requests racing with one new idempotency key both decide; the second insert fails on the
//! unique index of (scope, key) and that request starts again, finding the first one's result.
//!
//! The time a commit stamps on the rows it writes (the changed wallets' `updated_at`, new data
//! keys' and public keys' `created_at`) is read from the store's clock: the system's from `new`,
//! another from `with_clock`.

use std::sync::Arc;

use coffer_audit::Receipt;
use coffer_crypto::Envelope;
use coffer_ledger::domain::{TransactionId, TransactionKind, WalletId, WalletStatus};
use coffer_ledger::error::context;
use coffer_ledger::port::{
    Applied, Apply, Changes, HistoryFilter, HistoryPage, HoldRecord, Idempotency, LoadedWallet,
    Locked, NewWallet, PostingRecord, TransactionRecord, WalletFilter, WalletRecord,
};
use coffer_ledger::{Error, LedgerError};
use sqlx::{Database, Encode, Executor, IntoArguments, Pool, Type};
use uuid::Uuid;

use crate::db::{Conflict, DbFailure, DbFailureKind};
use crate::dialect::{Conn, Dialect};

pub(crate) mod events;
mod holds;
mod pg;
mod rows;
mod shell;
mod sqlite;

pub use pg::PgLedgerStore;
pub use sqlite::SqliteLedgerStore;

use rows::{
    Filter, POSTING_COLUMNS, TRANSACTION_COLUMNS, WALLET_COLUMNS, attach, key32, posting_from,
    transaction_from, wallet_from,
};

/// Which side of a hold a wallet is on.
#[derive(Debug, Clone, Copy)]
pub(super) enum Side {
    /// The wallet the hold reserves money on.
    Payer,
    /// A held transfer's destination.
    Payee,
}

impl Side {
    /// Its column in `holds`.
    pub(super) fn column(self) -> &'static str {
        match self {
            Self::Payer => "wallet_id",
            Self::Payee => "to_wallet",
        }
    }
}
/// What the ledger store does differently on each database, beyond the [`Dialect`];
/// everything else is [`Ledger`]'s.
pub(super) trait LedgerDialect: Dialect {
    /// A statement that serializes wallet openings of one owner (bound to the owner's id) until
    /// the transaction ends, so the count of their wallets holds until the insert; `None` where
    /// a write transaction excludes every other already (SQLite).
    const SERIALIZE_OWNER: Option<&'static str>;

    /// The wallets among `ids` that exist, with their data keys, in id order.
    async fn select_loaded(
        conn: &mut Conn<Self>,
        ids: &[WalletId],
    ) -> Result<Vec<LoadedWallet>, Error>;

    /// Locks the wallets among `ids` (sorted) that exist and returns them in id order, with the
    /// fingerprint and id of the transaction recorded under the idempotency key, if any.
    async fn lock_wallets(
        conn: &mut Conn<Self>,
        ids: &[WalletId],
        idempotency: Option<&Idempotency>,
    ) -> Result<(Vec<WalletRecord>, Option<(Vec<u8>, Uuid)>), Failure>;

    /// Every write of `changes` to the `locked` wallets, their audit records and events
    /// included, the changed wallets' last event numbers taken from `last` (in `locked` order);
    /// the records' receipts in order.
    async fn write_changes(
        conn: &mut Conn<Self>,
        locked: &[WalletRecord],
        changes: &Changes,
        last: &[(WalletId, i64)],
        now: i64,
        audit: &Self::Audit,
    ) -> Result<Vec<Receipt>, Failure>;

    /// The active holds whose `side` is among `ids` (paid by them, or paying into them), oldest
    /// first.
    async fn active_holds(
        conn: &mut Conn<Self>,
        side: Side,
        ids: &[WalletId],
    ) -> Result<Vec<HoldRecord>, Error>;

    /// Erases `wallets` (closed by the writes before): every version of their data keys
    /// deleted, `erased_at` set, and other processes told ([`crate::auth::ERASED_WALLET`]).
    async fn erase_wallets(
        conn: &mut Conn<Self>,
        wallets: &[WalletId],
        now: i64,
    ) -> Result<(), Failure>;
}

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
            DbFailureKind::Unavailable => Error::Unavailable(f.into_source().into()),
            DbFailureKind::Corrupt => Error::Corrupt(f.into_source().into()),
            DbFailureKind::Conflict(_) | DbFailureKind::Storage => {
                Error::Storage(f.into_source().into())
            }
        }
    }
}

/// Gives each wallet its holds (`holds` is oldest first).
fn attach_holds(mut holds: Vec<HoldRecord>, wallets: &mut [WalletRecord]) {
    for w in wallets {
        w.holds = holds.extract_if(.., |h| h.wallet == w.id).collect();
    }
}

/// Translates a driver error into the port's.
fn db_err(e: sqlx::Error) -> Error {
    DbFailure::from(e).into()
}

fn audit_err(e: coffer_audit::AuditError) -> Failure {
    match e {
        coffer_audit::AuditError::Conflict(_) => Failure::Retry,
        e @ coffer_audit::AuditError::Unavailable(_) => {
            Failure::Error(Error::Unavailable(e.into()))
        }
        other => Failure::Error(Error::Storage(context("audit", other))),
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

/// The ledger store on the database of `D`: every statement both databases share, and the
/// steps of `apply` around the dialect's.
pub(super) struct Ledger<D: LedgerDialect> {
    pool: Pool<D::Db>,
    audit: D::Audit,
    clock: Arc<dyn coffer_clock::Clock>,
}

impl<D: LedgerDialect> Clone for Ledger<D> {
    fn clone(&self) -> Self {
        Self {
            pool: self.pool.clone(),
            audit: self.audit.clone(),
            clock: Arc::clone(&self.clock),
        }
    }
}

/// What the shared statements need of a database: sqlx's executor and argument traits, and the
/// types they bind and read. Postgres and SQLite both have them all.
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
    /// A store on `pool` (migrated), writing its audit records through `audit` (on the same
    /// database), reading the time from the system's clock.
    pub(super) fn new(pool: Pool<D::Db>, audit: D::Audit) -> Self {
        Self {
            pool,
            audit,
            clock: coffer_clock::system(),
        }
    }

    /// The same store, reading the time from `clock`.
    pub(super) fn with_clock(mut self, clock: Arc<dyn coffer_clock::Clock>) -> Self {
        self.clock = clock;
        self
    }

    fn bind_filter<'q>(
        q: sqlx::query::Query<'q, D::Db, <D::Db as Database>::Arguments<'q>>,
        filter: Filter,
    ) -> sqlx::query::Query<'q, D::Db, <D::Db as Database>::Arguments<'q>> {
        match filter {
            Filter::Id(id) => q.bind(id),
            Filter::WalletSeqs(w, lo, hi) => q.bind(w).bind(lo).bind(hi),
            Filter::After(id, limit) => q.bind(id).bind(limit),
            Filter::Range(after, last) => q.bind(after).bind(last),
        }
    }

    async fn load_transactions(
        conn: &mut Conn<D>,
        filter: Filter,
    ) -> Result<Vec<TransactionRecord>, Error> {
        let sql = format!(
            "SELECT {TRANSACTION_COLUMNS} FROM transactions t WHERE {} ORDER BY t.id",
            filter.sql()
        );
        let rows = Self::bind_filter(sqlx::query(&sql), filter)
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
        // The postings of exactly the transactions loaded: for a page, the id range it spans (a
        // transaction committing meanwhile inside the range is not in the list, and its postings
        // are dropped by `attach`).
        let postings_filter = match (filter, transactions.last()) {
            (Filter::After(after, _), Some(last)) => Filter::Range(after, *last.id.as_uuid()),
            _ => filter,
        };
        let sql = format!(
            "SELECT {POSTING_COLUMNS} FROM postings WHERE transaction_id IN \
             (SELECT t.id FROM transactions t WHERE {})",
            postings_filter.sql()
        );
        let rows = Self::bind_filter(sqlx::query(&sql), postings_filter)
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
        conn: &mut Conn<D>,
        id: TransactionId,
    ) -> Result<Option<TransactionRecord>, Error> {
        Ok(Self::load_transactions(conn, Filter::Id(*id.as_uuid()))
            .await?
            .pop())
    }

    async fn by_key(
        conn: &mut Conn<D>,
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

    async fn try_apply(&self, op: &Apply<'_>) -> Result<Applied, Failure> {
        let mut tx = D::begin(&self.pool).await.map_err(db_err)?;
        let mut ids = op.lock.clone();
        // A reversal's original is read, its wallets locked with the others, and then read
        // again: every reversal of it locks the same wallets first, so the second read sees a
        // reversal that committed while this one waited. (Locking the transaction row itself
        // would need UPDATE on transactions, which the application role does not have; the
        // unique index on `reverses` is the last word either way.)
        if let Some(id) = op.original {
            let t = Self::one_transaction(&mut tx, id)
                .await?
                .ok_or(Error::TransactionNotFound(id))?;
            ids.extend(t.wallets());
        }
        ids.sort();
        ids.dedup();
        let (mut wallets, earlier) = D::lock_wallets(&mut tx, &ids, op.idempotency).await?;
        attach_holds(
            D::active_holds(&mut tx, Side::Payer, &ids).await?,
            &mut wallets,
        );
        if let Some(missing) = ids.iter().find(|id| !wallets.iter().any(|w| w.id == **id)) {
            return Err(Error::WalletNotFound(*missing).into());
        }
        if let (Some(idem), Some((fingerprint, id))) = (op.idempotency, earlier) {
            if fingerprint.as_slice() != idem.fingerprint.as_slice() {
                return Err(Error::IdempotencyConflict.into());
            }
            let id = TransactionId::from_uuid(id);
            let t = Self::one_transaction(&mut tx, id).await?.ok_or_else(|| {
                Error::Corrupt(format!("idempotency key names missing transaction {id}").into())
            })?;
            return Ok(Applied::Replayed(Box::new(t)));
        }
        let original = match op.original {
            Some(id) => Some(
                Self::one_transaction(&mut tx, id)
                    .await?
                    .ok_or(Error::TransactionNotFound(id))?,
            ),
            None => None,
        };
        // The hold is read once its paying wallet is locked: every change to it holds that lock.
        let hold = match op.hold {
            Some(id) => Some(
                Self::one_hold(&mut tx, id)
                    .await?
                    .ok_or(Error::HoldNotFound(id))?,
            ),
            None => None,
        };
        let incoming = if op.incoming {
            D::active_holds(&mut tx, Side::Payee, &ids).await?
        } else {
            Vec::new()
        };
        let changes = match (op.decide)(&Locked {
            wallets: &wallets,
            original: original.as_ref(),
            hold: hold.as_ref(),
            incoming: &incoming,
        }) {
            Ok(changes) => changes,
            Err(refusal) => {
                // On Postgres the key was looked up in the snapshot taken before the locks were
                // granted: a request with the same key may have committed while this one
                // waited, and its answer is the one to give.
                if let Some(idem) = op.idempotency
                    && let Some(t) = Self::by_key(&mut tx, &idem.scope, &idem.key).await?
                {
                    if t.fingerprint != idem.fingerprint {
                        return Err(Error::IdempotencyConflict.into());
                    }
                    return Ok(Applied::Replayed(Box::new(t)));
                }
                return Err(refusal.into());
            }
        };
        let now = self.clock.unix_micros();
        let last = events::last_numbers(&wallets, &changes)?;
        let receipts =
            D::write_changes(&mut tx, &wallets, &changes, &last, now, &self.audit).await?;
        Self::set_event_numbers(&mut tx, &wallets, &changes, &last).await?;
        Self::write_holds(&mut tx, &changes).await?;
        if !changes.erase.is_empty() {
            D::erase_wallets(&mut tx, &changes.erase, now).await?;
        }
        tx.commit().await?;
        Ok(Applied::Committed {
            transactions: changes.transactions,
            audit: changes.audit.into_iter().zip(receipts).collect(),
        })
    }

    /// Records a public key of a wallet (again: nothing).
    pub(super) async fn insert_public_key(
        conn: &mut Conn<D>,
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

    /// Inserts a transaction and its postings (a second reversal of one transaction is
    /// [`LedgerError::AlreadyReversed`]; a lost race on the idempotency key, [`Failure::Retry`]).
    pub(super) async fn insert_transaction(
        conn: &mut Conn<D>,
        t: &TransactionRecord,
    ) -> Result<(), Failure> {
        sqlx::query(
            "INSERT INTO transactions (id, kind, currency, at_micros, from_wallet, to_wallet, \
             key_wallet, reverses, scope, idempotency_key, fingerprint, memo, signature, \
             public_key, receiver_memo, hold_id) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)",
        )
        .bind(*t.id.as_uuid())
        .bind(t.kind.as_str())
        .bind(t.currency.code())
        .bind(t.at_micros)
        .bind(t.from_wallet.map(|w| *w.as_uuid()))
        .bind(t.to_wallet.map(|w| *w.as_uuid()))
        .bind(*t.key_wallet.as_uuid())
        .bind(t.reverses.map(|r| *r.as_uuid()))
        .bind(t.scope.as_str())
        .bind(t.idempotency_key.as_str())
        .bind(t.fingerprint.as_slice())
        .bind(t.memo.as_ref().map(Envelope::as_bytes))
        .bind(t.signature.map(|s| s.to_bytes().to_vec()))
        .bind(t.public_key.as_ref().map(<[u8; 32]>::as_slice))
        .bind(t.receiver_memo.as_ref().map(Envelope::as_bytes))
        .bind(t.hold.map(|h| *h.as_uuid()))
        .execute(&mut *conn)
        .await
        .map_err(write_failure)?;
        for p in &t.postings {
            sqlx::query(
                "INSERT INTO postings (transaction_id, line, wallet_id, wallet_seq, amount) \
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(*t.id.as_uuid())
            .bind(i64::from(p.line))
            .bind(p.wallet.map(|w| *w.as_uuid()))
            .bind(p.wallet_seq)
            .bind(p.amount.as_bytes())
            .execute(&mut *conn)
            .await
            .map_err(db_err)?;
        }
        Ok(())
    }

    pub(super) async fn create_wallet(&self, new: NewWallet) -> Result<Receipt, Error> {
        let r = &new.record;
        let (kdf_params, wrapped) = (r.kdf_params.to_bytes(), new.key.wrapped.to_bytes());
        let mut tx = D::begin(&self.pool).await.map_err(db_err)?;
        if let Some(lock) = D::SERIALIZE_OWNER {
            sqlx::query(lock)
                .bind(*r.owner.as_uuid())
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
        }
        let held: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM wallets WHERE owner_id = $1")
            .bind(*r.owner.as_uuid())
            .fetch_one(&mut *tx)
            .await
            .map_err(db_err)?;
        if held >= i64::from(new.max_per_owner) {
            return Err(LedgerError::TooManyWallets {
                max: new.max_per_owner,
            }
            .into());
        }
        let inserted = sqlx::query(&format!(
            "INSERT INTO wallets ({WALLET_COLUMNS}) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, NULL, NULL, NULL, \
             $14)"
        ))
        .bind(*r.id.as_uuid())
        .bind(*r.owner.as_uuid())
        .bind(r.currency.code())
        .bind(r.status.as_str())
        .bind(r.version)
        .bind(r.balance.as_bytes())
        .bind(i64::from(r.dek_version))
        .bind(r.signing_key.as_bytes())
        .bind(r.public_key.as_slice())
        .bind(kdf_params.as_slice())
        .bind(i64::from(r.failed_pins))
        .bind(r.created_at)
        .bind(r.updated_at)
        .bind(new.event.seq)
        .execute(&mut *tx)
        .await;
        if let Err(e) = inserted {
            let f = DbFailure::from(e);
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
        .bind(wrapped.as_slice())
        .bind(i64::from(new.key.kek_version))
        .bind(r.created_at)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        Self::insert_public_key(&mut tx, r.id, &r.public_key, r.created_at)
            .await
            .map_err(db_err)?;
        if new.event.wallet != r.id || new.event.seq != 1 {
            return Err(Error::Storage(
                "a new wallet's first event is its number 1".into(),
            ));
        }
        Self::insert_event(&mut tx, &new.event).await?;
        let receipt = D::append_audit(&self.audit, &mut tx, &new.audit)
            .await
            .map_err(|e| match audit_err(e) {
                Failure::Error(e) => e,
                Failure::Retry => Error::Unavailable("audit conflict; retry".into()),
            })?;
        tx.commit().await.map_err(db_err)?;
        Ok(receipt)
    }

    pub(super) async fn load_wallets(&self, ids: &[WalletId]) -> Result<Vec<LoadedWallet>, Error> {
        let mut conn = self.pool.acquire().await.map_err(db_err)?;
        let mut loaded = D::select_loaded(&mut conn, ids).await?;
        let mut holds = D::active_holds(&mut conn, Side::Payer, ids).await?;
        for w in &mut loaded {
            w.record.holds = holds.extract_if(.., |h| h.wallet == w.record.id).collect();
        }
        Ok(loaded)
    }

    pub(super) async fn wallets_where(
        &self,
        filter: &WalletFilter,
        after: Option<WalletId>,
        limit: u32,
    ) -> Result<Vec<WalletRecord>, Error> {
        let rows = sqlx::query(&format!(
            "SELECT {WALLET_COLUMNS} FROM wallets \
             WHERE ($1 IS NULL OR owner_id = $1) AND ($2 IS NULL OR status = $2) \
             AND ($3 IS NULL OR currency = $3) AND id > $4 ORDER BY id LIMIT $5"
        ))
        .bind(filter.owner.map(|o| *o.as_uuid()))
        .bind(filter.status.map(WalletStatus::as_str))
        .bind(filter.currency.map(|c| c.code()))
        .bind(after.map_or(Uuid::nil(), |w| *w.as_uuid()))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        rows.iter().map(wallet_from).collect()
    }

    pub(super) async fn apply(&self, op: Apply<'_>) -> Result<Applied, Error> {
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

    pub(super) async fn idempotent(
        &self,
        scope: &str,
        key: &str,
    ) -> Result<Option<TransactionRecord>, Error> {
        let mut conn = self.pool.acquire().await.map_err(db_err)?;
        Self::by_key(&mut conn, scope, key).await
    }

    pub(super) async fn transaction(
        &self,
        id: TransactionId,
    ) -> Result<Option<TransactionRecord>, Error> {
        let mut conn = self.pool.acquire().await.map_err(db_err)?;
        Self::one_transaction(&mut conn, id).await
    }

    pub(super) async fn history(
        &self,
        wallet: WalletId,
        filter: &HistoryFilter,
        before: Option<i64>,
        limit: u32,
    ) -> Result<HistoryPage, Error> {
        let mut conn = self.pool.acquire().await.map_err(db_err)?;
        // The wallet's postings in its own order (its index), each filter on the transaction's
        // clear columns.
        let seqs: Vec<(Uuid, i64)> = sqlx::query_as(
            "SELECT p.transaction_id, p.wallet_seq FROM postings p \
             JOIN transactions t ON t.id = p.transaction_id \
             WHERE p.wallet_id = $1 AND p.wallet_seq < $2 \
             AND ($4 IS NULL OR t.kind = $4) \
             AND ($5 IS NULL OR t.at_micros >= $5) AND ($6 IS NULL OR t.at_micros < $6) \
             AND ($7 IS NULL OR t.from_wallet = $7 OR t.to_wallet = $7) \
             ORDER BY p.wallet_seq DESC LIMIT $3",
        )
        .bind(*wallet.as_uuid())
        .bind(before.unwrap_or(i64::MAX))
        .bind(i64::from(limit))
        .bind(filter.kind.map(TransactionKind::as_str))
        .bind(filter.from_micros)
        .bind(filter.to_micros)
        .bind(filter.counterparty.map(|w| *w.as_uuid()))
        .fetch_all(&mut *conn)
        .await
        .map_err(db_err)?;
        let (Some((_, newest)), Some((_, oldest))) = (seqs.first(), seqs.last()) else {
            return Ok(Vec::new());
        };
        let (newest, oldest, w) = (*newest, *oldest, *wallet.as_uuid());
        let transactions =
            Self::load_transactions(&mut conn, Filter::WalletSeqs(w, oldest, newest)).await?;
        Ok(seqs
            .into_iter()
            .filter_map(|(id, seq)| {
                let id = TransactionId::from_uuid(id);
                transactions
                    .iter()
                    .find(|t| t.id == id)
                    .map(|t| (seq, t.clone()))
            })
            .collect())
    }

    pub(super) async fn public_keys(&self, wallet: WalletId) -> Result<Vec<[u8; 32]>, Error> {
        let keys: Vec<Vec<u8>> = sqlx::query_scalar(
            "SELECT public_key FROM wallet_public_keys WHERE wallet_id = $1 ORDER BY created_at",
        )
        .bind(*wallet.as_uuid())
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        keys.into_iter().map(|k| key32(k, "public key")).collect()
    }

    pub(super) async fn wallets_after(
        &self,
        after: Option<WalletId>,
        limit: u32,
    ) -> Result<Vec<LoadedWallet>, Error> {
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

    pub(super) async fn postings_of(
        &self,
        wallet: WalletId,
    ) -> Result<Vec<(TransactionId, PostingRecord)>, Error> {
        let rows = sqlx::query(&format!(
            "SELECT {POSTING_COLUMNS} FROM postings WHERE wallet_id = $1 ORDER BY wallet_seq"
        ))
        .bind(*wallet.as_uuid())
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        rows.iter().map(posting_from).collect()
    }

    pub(super) async fn set_receiver_memo(
        &self,
        id: TransactionId,
        memo: &Envelope,
    ) -> Result<bool, Error> {
        let done = sqlx::query(
            "UPDATE transactions SET receiver_memo = $2 WHERE id = $1 AND receiver_memo IS NULL",
        )
        .bind(*id.as_uuid())
        .bind(memo.as_bytes())
        .execute(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(D::rows_affected(&done) > 0)
    }

    pub(super) async fn transactions_after(
        &self,
        after: Option<TransactionId>,
        limit: u32,
    ) -> Result<Vec<TransactionRecord>, Error> {
        let mut conn = self.pool.acquire().await.map_err(db_err)?;
        let after = after.map_or(Uuid::nil(), |t| *t.as_uuid());
        Self::load_transactions(&mut conn, Filter::After(after, i64::from(limit))).await
    }
}
