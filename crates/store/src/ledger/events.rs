//! The outbox's rows: events written with the changes they announce, in the same database
//! transaction, and each wallet's last event number (`wallets.event_seq`) with them. The numbers
//! come from `decide`, counted on from the locked rows; the store checks that they go on from
//! there without a gap before it writes anything, so a sequence can only ever be 1, 2, 3…
//! (the primary key, `(wallet_id, seq)`, is the last word).

use coffer_crypto::Envelope;
use coffer_ledger::Error;
use coffer_ledger::domain::{EventId, EventKind, WalletId};
use coffer_ledger::port::{Changes, EventRecord, WalletRecord};
use sqlx::{Database, Encode, Executor, IntoArguments, Row, Type};
use uuid::Uuid;

use super::rows::corrupt;
use super::{Ledger, LedgerDialect, db_err};
use crate::dialect::Conn;

pub(crate) const EVENT_COLUMNS: &str = "id, wallet_id, seq, kind, created_at, data";

/// Each wallet's last event number once `changes` are written, in `locked` order: the locked
/// one where it has no new event. Refuses numbers that do not go on from the locked row's
/// without a gap, or events of a wallet that is not locked.
pub(super) fn last_numbers(
    locked: &[WalletRecord],
    changes: &Changes,
) -> Result<Vec<(WalletId, i64)>, Error> {
    let mut last: Vec<(WalletId, i64)> = locked.iter().map(|w| (w.id, w.event_seq)).collect();
    for e in &changes.events {
        let slot = last
            .iter_mut()
            .find(|(w, _)| *w == e.wallet)
            .ok_or(Error::WalletNotFound(e.wallet))?;
        if e.seq != slot.1 + 1 {
            return Err(Error::Storage(
                format!(
                    "event {} of wallet {} numbered {} after {}",
                    e.id, e.wallet, e.seq, slot.1
                )
                .into(),
            ));
        }
        slot.1 = e.seq;
    }
    Ok(last)
}

/// `wallet`'s entry of [`last_numbers`] (its locked number when it has none).
pub(super) fn last_of(last: &[(WalletId, i64)], wallet: &WalletRecord) -> i64 {
    last.iter()
        .find(|(w, _)| *w == wallet.id)
        .map_or(wallet.event_seq, |(_, n)| *n)
}

pub(crate) fn event_from<R: Row>(row: &R) -> Result<EventRecord, Error>
where
    for<'r> &'r str: sqlx::ColumnIndex<R>,
    for<'r> Uuid: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> Vec<u8>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let kind: String = row.try_get("kind").map_err(db_err)?;
    let data: Vec<u8> = row.try_get("data").map_err(db_err)?;
    Ok(EventRecord {
        id: EventId::from_uuid(row.try_get("id").map_err(db_err)?),
        wallet: WalletId::from_uuid(row.try_get("wallet_id").map_err(db_err)?),
        seq: row.try_get("seq").map_err(db_err)?,
        kind: EventKind::parse(&kind).ok_or_else(|| corrupt("event kind")(kind.clone()))?,
        at: row.try_get("created_at").map_err(db_err)?,
        data: crate::db::decode(Envelope::from_bytes, &data, "event payload")
            .map_err(Error::Corrupt)?,
    })
}

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
{
    /// Inserts one event.
    pub(super) async fn insert_event(conn: &mut Conn<D>, e: &EventRecord) -> Result<(), Error> {
        sqlx::query(&format!(
            "INSERT INTO events ({EVENT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6)"
        ))
        .bind(*e.id.as_uuid())
        .bind(*e.wallet.as_uuid())
        .bind(e.seq)
        .bind(e.kind.as_str())
        .bind(e.at)
        .bind(e.data.as_bytes())
        .execute(&mut *conn)
        .await
        .map_err(db_err)?;
        Ok(())
    }

    /// Stores the last event number of the wallets among `last` that have new events but no
    /// other change in `changes` (the others' is written with their row).
    pub(super) async fn set_event_numbers(
        conn: &mut Conn<D>,
        locked: &[WalletRecord],
        changes: &Changes,
        last: &[(WalletId, i64)],
    ) -> Result<(), Error> {
        for (wallet, seq) in last {
            let moved = locked
                .iter()
                .any(|w| w.id == *wallet && w.event_seq != *seq);
            if moved && !changes.wallets.iter().any(|c| c.id == *wallet) {
                sqlx::query("UPDATE wallets SET event_seq = $2 WHERE id = $1")
                    .bind(*wallet.as_uuid())
                    .bind(*seq)
                    .execute(&mut *conn)
                    .await
                    .map_err(db_err)?;
            }
        }
        Ok(())
    }

    pub(super) async fn events_after(
        &self,
        after: Option<EventId>,
        limit: u32,
    ) -> Result<Vec<EventRecord>, Error> {
        let rows = sqlx::query(&format!(
            "SELECT {EVENT_COLUMNS} FROM events WHERE id > $1 ORDER BY id LIMIT $2"
        ))
        .bind(after.map_or(Uuid::nil(), |e| *e.as_uuid()))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        rows.iter().map(event_from).collect()
    }

    pub(super) async fn events_of(&self, wallet: WalletId) -> Result<Vec<EventRecord>, Error> {
        let rows = sqlx::query(&format!(
            "SELECT {EVENT_COLUMNS} FROM events WHERE wallet_id = $1 ORDER BY seq"
        ))
        .bind(*wallet.as_uuid())
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        rows.iter().map(event_from).collect()
    }
}
