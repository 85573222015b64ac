//! The ledger store on Postgres ([`PgLedgerStore`]) and its [`LedgerDialect`] steps (those that
//! differ from SQLite's). Round trips are what a transfer costs here, so each step is one
//! statement: the wallets with their data keys (one join), the locks with the idempotency lookup
//! (one `FOR UPDATE` in id order), and every write of the operation with its audit record (one
//! statement of data-modifying `WITH` clauses over arrays, the audit append's among them while
//! this process remembers the head of the record's stream). With `BEGIN`/`COMMIT`, a transfer
//! is five round trips, three of them under the wallets' locks.

use coffer_audit::Receipt;
use coffer_crypto::Envelope;
use coffer_ledger::port::{
    Changes, DataKeyRecord, HoldRecord, Idempotency, LoadedWallet, WalletRecord,
};
use coffer_ledger::{Error, WalletId};
use sqlx::postgres::PgPool;
use sqlx::{PgConnection, Row};
use std::sync::LazyLock;
use uuid::Uuid;

use super::events::last_of;
use super::rows::{HOLD_COLUMNS, WALLET_COLUMNS, hold_from, u32_of, wallet_from, wrapped_from};
use super::shell::ledger_store;
use super::{Failure, Ledger, LedgerDialect, Side, audit_err, db_err, write_failure};
use crate::audit::{PgAuditLog, append_ctes, bind_append};
use crate::dialect::Pg;

fn uuids(ids: &[WalletId]) -> Vec<Uuid> {
    ids.iter().map(|w| *w.as_uuid()).collect()
}

impl LedgerDialect for Pg {
    const SERIALIZE_OWNER: Option<&'static str> = Some(
        "SELECT pg_advisory_xact_lock(hashtext('coffer.wallets_of'), hashtext(CAST($1 AS text)))",
    );

    async fn select_loaded(
        conn: &mut PgConnection,
        ids: &[WalletId],
    ) -> Result<Vec<LoadedWallet>, Error> {
        // An erased wallet has no key rows: it comes with none.
        let rows = sqlx::query(
            "SELECT w.*, k.version AS key_version, k.wrapped, k.kek_version \
             FROM wallets w LEFT JOIN wallet_keys k ON k.wallet_id = w.id \
             WHERE w.id = ANY($1) ORDER BY w.id, k.version",
        )
        .bind(uuids(ids))
        .fetch_all(&mut *conn)
        .await
        .map_err(db_err)?;
        let mut out: Vec<LoadedWallet> = Vec::new();
        for row in &rows {
            let id = WalletId::from_uuid(row.try_get("id").map_err(db_err)?);
            if out.last().is_none_or(|w| w.record.id != id) {
                out.push(LoadedWallet {
                    record: wallet_from(row)?,
                    keys: Vec::new(),
                });
            }
            let Some(version) = row
                .try_get::<Option<i64>, _>("key_version")
                .map_err(db_err)?
            else {
                continue;
            };
            let key = DataKeyRecord {
                wallet: id,
                version: u32_of(version, "key version")?,
                wrapped: wrapped_from(row)?,
                kek_version: u32_of(row.try_get("kek_version").map_err(db_err)?, "kek_version")?,
            };
            if let Some(w) = out.last_mut() {
                w.keys.push(key);
            }
        }
        Ok(out)
    }

    async fn lock_wallets(
        conn: &mut PgConnection,
        ids: &[WalletId],
        idempotency: Option<&Idempotency>,
    ) -> Result<(Vec<WalletRecord>, Option<(Vec<u8>, Uuid)>), Failure> {
        // The rows are locked in id order. The key lookup shares the statement's snapshot, taken
        // before any wait for a lock: a request that committed the same new key meanwhile is not
        // seen here, and this one's insert of the key then fails and it starts again.
        let sql = format!(
            "WITH locked AS (SELECT {WALLET_COLUMNS} FROM wallets WHERE id = ANY($1) \
                 ORDER BY id FOR UPDATE), \
             earlier AS (SELECT fingerprint, id FROM transactions \
                 WHERE scope = $2 AND idempotency_key = $3) \
             SELECT locked.*, earlier.fingerprint AS earlier_fingerprint, \
                 earlier.id AS earlier_transaction \
             FROM locked LEFT JOIN earlier ON true ORDER BY locked.id"
        );
        let rows = sqlx::query(&sql)
            .bind(uuids(ids))
            .bind(idempotency.map(|i| i.scope.as_str()))
            .bind(idempotency.map(|i| i.key.as_str()))
            .fetch_all(&mut *conn)
            .await?;
        let mut earlier = None;
        let mut wallets = Vec::with_capacity(rows.len());
        for row in &rows {
            let fingerprint: Option<Vec<u8>> = row.try_get("earlier_fingerprint")?;
            let transaction: Option<Uuid> = row.try_get("earlier_transaction")?;
            earlier = fingerprint.zip(transaction);
            wallets.push(wallet_from(row)?);
        }
        Ok((wallets, earlier))
    }

    /// Every write of `changes` in one statement (a second transaction and more follow as
    /// statements of their own), with the first audit record when this process
    /// remembers its stream's head (the others, and that one when the head moved, follow as
    /// statements of their own).
    async fn write_changes(
        conn: &mut PgConnection,
        locked: &[WalletRecord],
        changes: &Changes,
        last: &[(WalletId, i64)],
        now: i64,
        audit: &PgAuditLog,
    ) -> Result<Vec<Receipt>, Failure> {
        static SQL: LazyLock<String> = LazyLock::new(|| {
            format!(
                "WITH w AS ( \
                     UPDATE wallets SET status = v.status, version = v.version + 1, \
                         balance = v.balance, signing_key = v.signing_key, \
                         public_key = v.public_key, kdf_params = v.kdf_params, \
                         failed_pins = v.failed_pins, outflow = v.outflow, spending = v.spending, \
                         event_seq = v.event_seq, updated_at = $9, \
                         dek_version = CASE WHEN wallets.id = $30 THEN $31 \
                             ELSE wallets.dek_version END \
                     FROM unnest($1::uuid[], $2::text[], $3::bigint[], $4::bytea[], $5::bytea[], \
                         $6::bytea[], $7::bytea[], $8::bigint[], $34::bytea[], $50::bytea[], \
                         $51::bigint[]) \
                         AS v(id, status, version, balance, signing_key, public_key, kdf_params, \
                         failed_pins, outflow, spending, event_seq) \
                     WHERE wallets.id = v.id AND wallets.version = v.version \
                     RETURNING 1), \
                 dk AS ( \
                     INSERT INTO wallet_keys (wallet_id, version, wrapped, kek_version, created_at) \
                     SELECT $30, $31, $32, $33, $9 WHERE $30::uuid IS NOT NULL), \
                 k AS ( \
                     INSERT INTO wallet_public_keys (wallet_id, public_key, created_at) \
                     SELECT $10, $11, $9 WHERE $10::uuid IS NOT NULL ON CONFLICT DO NOTHING), \
                 t AS ( \
                     INSERT INTO transactions (id, kind, currency, at_micros, from_wallet, \
                         to_wallet, key_wallet, reverses, scope, idempotency_key, fingerprint, \
                         memo, signature, public_key, receiver_memo, hold_id) \
                     SELECT $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $29, $22, $23, $24, \
                         $35, $36 \
                     WHERE $12::uuid IS NOT NULL), \
                 p AS ( \
                     INSERT INTO postings (transaction_id, line, wallet_id, wallet_seq, amount) \
                     SELECT $12, * FROM unnest($25::bigint[], $26::uuid[], $27::bigint[], \
                         $28::bytea[])), \
                 ev AS ( \
                     INSERT INTO events (id, wallet_id, seq, kind, created_at, data) \
                     SELECT * FROM unnest($52::uuid[], $53::uuid[], $54::bigint[], $55::text[], \
                         $56::bigint[], $57::bytea[])), \
                 {} \
                 SELECT (SELECT count(*) FROM w), (SELECT id FROM ae)",
                append_ctes(37)
            )
        });
        let first = changes
            .audit
            .first()
            .map(|e| audit.prepare(e))
            .transpose()
            .map_err(audit_err)?
            .flatten();
        let mut versions = Vec::with_capacity(changes.wallets.len());
        let mut numbers = Vec::with_capacity(changes.wallets.len());
        for c in &changes.wallets {
            let old = locked
                .iter()
                .find(|w| w.id == c.id)
                .ok_or(Error::WalletNotFound(c.id))?;
            versions.push(old.version);
            numbers.push(last_of(last, old));
        }
        let ev = &changes.events;
        let w = &changes.wallets;
        let t = changes.transactions.first();
        let dk = changes.new_data_key.as_ref();
        let postings = t.map_or(&[][..], |t| t.postings.as_slice());
        // Each `.bind` is the statement's next parameter, in order, named by its `$n`; `w`
        // parameters are arrays with an element per changed wallet, `t` ones the first new
        // transaction's (NULL without one), `dk` ones the new data key's (NULL without one).
        let row = sqlx::query(&SQL)
            // $1..$8, $34 and $50: the changed wallets (`w`), unnested together.
            // $1: the wallets' ids.
            .bind(w.iter().map(|c| *c.id.as_uuid()).collect::<Vec<_>>())
            // $2: their new statuses.
            .bind(w.iter().map(|c| c.status.as_str()).collect::<Vec<_>>())
            // $3: their versions as locked (the update requires them, and stores each plus one).
            .bind(versions)
            // $4: their new balances.
            .bind(w.iter().map(|c| c.balance.as_bytes()).collect::<Vec<_>>())
            // $5: their new signing keys (sealed).
            .bind(
                w.iter()
                    .map(|c| c.signing_key.as_bytes())
                    .collect::<Vec<_>>(),
            )
            // $6: their new public keys.
            .bind(w.iter().map(|c| c.public_key.to_vec()).collect::<Vec<_>>())
            // $7: their new PIN KDF parameters.
            .bind(
                w.iter()
                    .map(|c| c.kdf_params.to_bytes().to_vec())
                    .collect::<Vec<_>>(),
            )
            // $8: their new failed-PIN counts.
            .bind(
                w.iter()
                    .map(|c| i64::from(c.failed_pins))
                    .collect::<Vec<_>>(),
            )
            // $9: now: the wallets' `updated_at`, the new keys' `created_at`.
            .bind(now)
            // $10: the wallet of a new public key (`k`; NULL: none).
            .bind(changes.new_public_key.map(|(w, _)| *w.as_uuid()))
            // $11: the new public key.
            .bind(changes.new_public_key.map(|(_, k)| k.to_vec()))
            // $12..$24, $29, $35 and $36: the first new transaction (`t`; $12 NULL: none).
            // $12: its id (also the postings' `transaction_id`).
            .bind(t.map(|t| *t.id.as_uuid()))
            // $13: its kind.
            .bind(t.map(|t| t.kind.as_str()))
            // $14: its currency.
            .bind(t.map(|t| t.currency.code()))
            // $15: its time.
            .bind(t.map(|t| t.at_micros))
            // $16: the wallet money left.
            .bind(t.and_then(|t| t.from_wallet).map(|w| *w.as_uuid()))
            // $17: the wallet money reached.
            .bind(t.and_then(|t| t.to_wallet).map(|w| *w.as_uuid()))
            // $18: the wallet whose data key seals its memo and settlement posting.
            .bind(t.map(|t| *t.key_wallet.as_uuid()))
            // $19: the transaction it reverses.
            .bind(t.and_then(|t| t.reverses).map(|r| *r.as_uuid()))
            // $20: its idempotency scope.
            .bind(t.map(|t| t.scope.as_str()))
            // $21: its idempotency key.
            .bind(t.map(|t| t.idempotency_key.as_str()))
            // $22: its memo (an envelope).
            .bind(t.and_then(|t| t.memo.as_ref().map(Envelope::as_bytes)))
            // $23: its signature.
            .bind(t.and_then(|t| t.signature.map(|s| s.to_bytes().to_vec())))
            // $24: the public key that made the signature.
            .bind(
                t.and_then(|t| t.public_key.as_ref())
                    .map(<[u8; 32]>::as_slice),
            )
            // $25..$28: its postings (`p`), unnested together.
            // $25: the postings' line numbers.
            .bind(
                postings
                    .iter()
                    .map(|p| i64::from(p.line))
                    .collect::<Vec<_>>(),
            )
            // $26: their wallets (NULL: the currency's settlement account).
            .bind(
                postings
                    .iter()
                    .map(|p| p.wallet.map(|w| *w.as_uuid()))
                    .collect::<Vec<_>>(),
            )
            // $27: the wallet row versions they produced.
            .bind(postings.iter().map(|p| p.wallet_seq).collect::<Vec<_>>())
            // $28: their amounts.
            .bind(
                postings
                    .iter()
                    .map(|p| p.amount.as_bytes())
                    .collect::<Vec<_>>(),
            )
            // $29: the transaction's request fingerprint.
            .bind(t.map(|t| t.fingerprint.as_slice()))
            // $30..$33: the new data key (`dk`; $30 NULL: none).
            // $30: its wallet (whose `dek_version` becomes $31).
            .bind(dk.map(|k| *k.wallet.as_uuid()))
            // $31: its version.
            .bind(dk.map(|k| i64::from(k.version)))
            // $32: the key, wrapped.
            .bind(dk.map(|k| k.wrapped.to_bytes()))
            // $33: the KEK version it is wrapped under.
            .bind(dk.map(|k| i64::from(k.kek_version)))
            // $34: the changed wallets' new rolling money-out sums.
            .bind(w.iter().map(|c| c.outflow.as_bytes()).collect::<Vec<_>>())
            // $35: the transaction's memo sealed for its receiver.
            .bind(t.and_then(|t| t.receiver_memo.as_ref().map(Envelope::as_bytes)))
            // $36: the hold a capture captures.
            .bind(t.and_then(|t| t.hold).map(|h| *h.as_uuid()));
        // $37..$49: the first audit record (`ah`, `ae`), bound by `bind_append`.
        let row = bind_append(row, first.as_ref())
            // $50: the changed wallets' new spending fields.
            .bind(w.iter().map(|c| c.spending.as_bytes()).collect::<Vec<_>>())
            // $51: the changed wallets' last event numbers.
            .bind(numbers)
            // $52..$57: the events (`ev`), unnested together: ids, wallets, numbers, kinds,
            // times and sealed payloads.
            .bind(ev.iter().map(|e| *e.id.as_uuid()).collect::<Vec<_>>())
            .bind(ev.iter().map(|e| *e.wallet.as_uuid()).collect::<Vec<_>>())
            .bind(ev.iter().map(|e| e.seq).collect::<Vec<_>>())
            .bind(ev.iter().map(|e| e.kind.as_str()).collect::<Vec<_>>())
            .bind(ev.iter().map(|e| e.at).collect::<Vec<_>>())
            .bind(ev.iter().map(|e| e.data.as_bytes()).collect::<Vec<_>>())
            .fetch_one(&mut *conn)
            .await
            .map_err(write_failure)?;
        let updated: i64 = row.try_get(0).map_err(db_err)?;
        if usize::try_from(updated).ok() != Some(w.len()) {
            return Err(Error::Storage("a locked wallet changed under its lock".into()).into());
        }
        let audit_id: Option<i64> = row.try_get(1).map_err(db_err)?;
        for t in changes.transactions.iter().skip(1) {
            Ledger::<Self>::insert_transaction(conn, t).await?;
        }
        let mut receipts = Vec::with_capacity(changes.audit.len());
        let mut rest = changes.audit.iter();
        if let Some(first) = &first {
            match audit_id {
                Some(id) => receipts.push(audit.appended(first, id)),
                // Another process appended to the stream since this one last did.
                None => receipts.push(
                    audit
                        .append_locked(conn, first.event())
                        .await
                        .map_err(audit_err)?,
                ),
            }
            rest.next();
        }
        for event in rest {
            receipts.push(audit.append_in(conn, event).await.map_err(audit_err)?);
        }
        Ok(receipts)
    }

    async fn active_holds(
        conn: &mut PgConnection,
        side: Side,
        ids: &[WalletId],
    ) -> Result<Vec<HoldRecord>, Error> {
        let column = side.column();
        let rows = sqlx::query(&format!(
            "SELECT {HOLD_COLUMNS} FROM holds WHERE {column} = ANY($1) AND status = 'active' \
             ORDER BY id"
        ))
        .bind(uuids(ids))
        .fetch_all(&mut *conn)
        .await
        .map_err(db_err)?;
        rows.iter().map(hold_from).collect()
    }

    async fn erase_wallets(
        conn: &mut PgConnection,
        wallets: &[WalletId],
        now: i64,
    ) -> Result<(), Failure> {
        // The function refuses a wallet that is not closed; the application role may not delete
        // key rows otherwise. The announcements go out at commit.
        sqlx::query(
            "SELECT coffer_erase_wallets($1, $2), \
             (SELECT count(pg_notify($3, $4 || w::text)) FROM unnest($1::uuid[]) AS w)",
        )
        .bind(uuids(wallets))
        .bind(now)
        .bind(crate::auth::REVOCATION_CHANNEL)
        .bind(crate::auth::ERASED_WALLET)
        .execute(&mut *conn)
        .await
        .map_err(write_failure)?;
        Ok(())
    }
}

ledger_store!(
    /// The ledger store on Postgres.
    PgLedgerStore,
    dialect = Pg,
    pool = PgPool,
    audit = PgAuditLog
);
