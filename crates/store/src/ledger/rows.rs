//! The ledger's rows: the column lists the statements of both databases select, the decoding of
//! a row into a port record (generic over the database's row type; a value that does not decode
//! or is out of range is [`Error::Corrupt`]), which transactions a read loads ([`Filter`]), and
//! the attaching of postings to their transactions.

use coffer_crypto::{Envelope, KdfParams, SealedSigningKey, WalletSignature};
use coffer_keys::WrappedKey;
use coffer_ledger::domain::{
    HoldId, HoldStatus, TransactionId, TransactionKind, UserId, WalletId, WalletStatus,
};
use coffer_ledger::error::context;
use coffer_ledger::port::{
    DataKeyRecord, HoldRecord, Idempotency, PostingRecord, TransactionRecord, WalletRecord,
};
use coffer_ledger::{Currency, Error};
use sqlx::Row;
use uuid::Uuid;

use super::db_err;

pub(super) const WALLET_COLUMNS: &str = "id, owner_id, currency, status, version, balance, \
     dek_version, signing_key, public_key, kdf_params, failed_pins, created_at, updated_at, \
     outflow, spending, erased_at, event_seq";

pub(super) const TRANSACTION_COLUMNS: &str = "t.id, t.kind, t.currency, t.at_micros, \
     t.from_wallet, t.to_wallet, t.key_wallet, t.reverses, t.scope, t.idempotency_key, t.memo, \
     t.receiver_memo, t.signature, t.public_key, t.fingerprint, t.hold_id, \
     (SELECT r.id FROM transactions r WHERE r.reverses = t.id) AS reversed_by";

pub(super) const HOLD_COLUMNS: &str = "id, wallet_id, to_wallet, currency, amount, memo, \
     created_at, expires_at, status, resolved_at, capture_transaction, scope, idempotency_key, \
     fingerprint, resolve_scope, resolve_key, resolve_fingerprint, signature, public_key";

pub(super) const POSTING_COLUMNS: &str = "transaction_id, line, wallet_id, wallet_seq, amount";

pub(super) fn corrupt(what: &str) -> impl Fn(String) -> Error + '_ {
    move |e| Error::Corrupt(context(format!("stored {what}"), e))
}

pub(super) fn u32_of(v: i64, what: &str) -> Result<u32, Error> {
    u32::try_from(v).map_err(|_| Error::Corrupt(format!("stored {what} out of range: {v}").into()))
}

pub(super) fn key32(v: Vec<u8>, what: &str) -> Result<[u8; 32], Error> {
    <[u8; 32]>::try_from(v.as_slice())
        .map_err(|_| Error::Corrupt(format!("stored {what} is not 32 bytes").into()))
}

/// A stored value decoded into its type; what does not decode is [`Error::Corrupt`].
fn decode<T, E>(parse: impl FnOnce(&[u8]) -> Result<T, E>, v: &[u8], what: &str) -> Result<T, Error>
where
    E: std::error::Error + Send + Sync + 'static,
{
    crate::db::decode(parse, v, what).map_err(Error::Corrupt)
}

pub(super) fn currency(s: &str) -> Result<Currency, Error> {
    Currency::parse(s).map_err(|e| corrupt("currency")(e.to_string()))
}

pub(super) fn wallet_from<R: Row>(row: &R) -> Result<WalletRecord, Error>
where
    for<'r> &'r str: sqlx::ColumnIndex<R>,
    for<'r> Uuid: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> Vec<u8>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let status: String = row.try_get("status").map_err(db_err)?;
    let bytes = |col: &str| -> Result<Vec<u8>, Error> { row.try_get(col).map_err(db_err) };
    Ok(WalletRecord {
        id: WalletId::from_uuid(row.try_get("id").map_err(db_err)?),
        owner: UserId::from_uuid(row.try_get("owner_id").map_err(db_err)?),
        currency: currency(&row.try_get::<String, _>("currency").map_err(db_err)?)?,
        status: WalletStatus::parse(&status)
            .ok_or_else(|| corrupt("wallet status")(status.clone()))?,
        version: row.try_get("version").map_err(db_err)?,
        balance: decode(Envelope::from_bytes, &bytes("balance")?, "balance")?,
        dek_version: u32_of(row.try_get("dek_version").map_err(db_err)?, "dek_version")?,
        signing_key: decode(
            SealedSigningKey::from_bytes,
            &bytes("signing_key")?,
            "signing key",
        )?,
        public_key: key32(row.try_get("public_key").map_err(db_err)?, "public key")?,
        kdf_params: decode(
            KdfParams::from_bytes,
            &bytes("kdf_params")?,
            "KDF parameters",
        )?,
        failed_pins: u32_of(row.try_get("failed_pins").map_err(db_err)?, "failed_pins")?,
        outflow: row
            .try_get::<Option<Vec<u8>>, _>("outflow")
            .map_err(db_err)?
            .map(|v| decode(Envelope::from_bytes, &v, "outflow"))
            .transpose()?,
        spending: row
            .try_get::<Option<Vec<u8>>, _>("spending")
            .map_err(db_err)?
            .map(|v| decode(Envelope::from_bytes, &v, "spending"))
            .transpose()?,
        created_at: row.try_get("created_at").map_err(db_err)?,
        updated_at: row.try_get("updated_at").map_err(db_err)?,
        erased_at: row.try_get("erased_at").map_err(db_err)?,
        event_seq: row.try_get("event_seq").map_err(db_err)?,
        holds: Vec::new(),
    })
}

pub(super) fn hold_from<R: Row>(row: &R) -> Result<HoldRecord, Error>
where
    for<'r> &'r str: sqlx::ColumnIndex<R>,
    for<'r> Uuid: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> Vec<u8>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let status: String = row.try_get("status").map_err(db_err)?;
    let id = |col: &str| -> Result<Option<Uuid>, Error> { row.try_get(col).map_err(db_err) };
    let optional =
        |col: &str| -> Result<Option<Vec<u8>>, Error> { row.try_get(col).map_err(db_err) };
    let text = |col: &str| -> Result<Option<String>, Error> { row.try_get(col).map_err(db_err) };
    let resolved = match (
        text("resolve_scope")?,
        text("resolve_key")?,
        optional("resolve_fingerprint")?,
    ) {
        (Some(scope), Some(key), Some(f)) => Some(Idempotency {
            scope,
            key,
            fingerprint: key32(f, "resolving request's fingerprint")?,
        }),
        _ => None,
    };
    Ok(HoldRecord {
        id: HoldId::from_uuid(row.try_get("id").map_err(db_err)?),
        wallet: WalletId::from_uuid(row.try_get("wallet_id").map_err(db_err)?),
        to_wallet: id("to_wallet")?.map(WalletId::from_uuid),
        currency: currency(&row.try_get::<String, _>("currency").map_err(db_err)?)?,
        amount: decode(
            Envelope::from_bytes,
            &row.try_get::<Vec<u8>, _>("amount").map_err(db_err)?,
            "hold amount",
        )?,
        memo: optional("memo")?
            .map(|m| decode(Envelope::from_bytes, &m, "hold memo"))
            .transpose()?,
        created_at: row.try_get("created_at").map_err(db_err)?,
        expires_at: row.try_get("expires_at").map_err(db_err)?,
        status: HoldStatus::parse(&status).ok_or_else(|| corrupt("hold status")(status.clone()))?,
        resolved_at: row.try_get("resolved_at").map_err(db_err)?,
        capture: id("capture_transaction")?.map(TransactionId::from_uuid),
        placed: Idempotency {
            scope: row.try_get("scope").map_err(db_err)?,
            key: row.try_get("idempotency_key").map_err(db_err)?,
            fingerprint: key32(
                row.try_get("fingerprint").map_err(db_err)?,
                "request fingerprint",
            )?,
        },
        resolved,
        signature: decode(
            WalletSignature::from_bytes,
            &row.try_get::<Vec<u8>, _>("signature").map_err(db_err)?,
            "hold signature",
        )?,
        public_key: key32(
            row.try_get("public_key").map_err(db_err)?,
            "hold public key",
        )?,
    })
}

pub(super) fn key_from<R: Row>(row: &R) -> Result<DataKeyRecord, Error>
where
    for<'r> &'r str: sqlx::ColumnIndex<R>,
    for<'r> Uuid: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> Vec<u8>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    Ok(DataKeyRecord {
        wallet: WalletId::from_uuid(row.try_get("wallet_id").map_err(db_err)?),
        version: u32_of(row.try_get("version").map_err(db_err)?, "key version")?,
        wrapped: wrapped_from(row)?,
        kek_version: u32_of(row.try_get("kek_version").map_err(db_err)?, "kek_version")?,
    })
}

/// The `wrapped` column of a data key row.
pub(super) fn wrapped_from<R: Row>(row: &R) -> Result<WrappedKey, Error>
where
    for<'r> &'r str: sqlx::ColumnIndex<R>,
    for<'r> Vec<u8>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let v: Vec<u8> = row.try_get("wrapped").map_err(db_err)?;
    decode(WrappedKey::from_bytes, &v, "wrapped data key")
}

pub(super) fn posting_from<R: Row>(row: &R) -> Result<(TransactionId, PostingRecord), Error>
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
            amount: decode(
                Envelope::from_bytes,
                &row.try_get::<Vec<u8>, _>("amount").map_err(db_err)?,
                "posting amount",
            )?,
        },
    ))
}

pub(super) fn transaction_from<R: Row>(row: &R) -> Result<TransactionRecord, Error>
where
    for<'r> &'r str: sqlx::ColumnIndex<R>,
    for<'r> Uuid: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> Vec<u8>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let kind: String = row.try_get("kind").map_err(db_err)?;
    let id = |col: &str| -> Result<Option<Uuid>, Error> { row.try_get(col).map_err(db_err) };
    let optional =
        |col: &str| -> Result<Option<Vec<u8>>, Error> { row.try_get(col).map_err(db_err) };
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
        hold: id("hold_id")?.map(HoldId::from_uuid),
        scope: row.try_get("scope").map_err(db_err)?,
        idempotency_key: row.try_get("idempotency_key").map_err(db_err)?,
        fingerprint: key32(
            row.try_get("fingerprint").map_err(db_err)?,
            "request fingerprint",
        )?,
        memo: optional("memo")?
            .map(|m| decode(Envelope::from_bytes, &m, "memo"))
            .transpose()?,
        receiver_memo: optional("receiver_memo")?
            .map(|m| decode(Envelope::from_bytes, &m, "receiver's memo"))
            .transpose()?,
        signature: optional("signature")?
            .map(|s| decode(WalletSignature::from_bytes, &s, "signature"))
            .transpose()?,
        public_key: optional("public_key")?
            .map(|k| key32(k, "signer public key"))
            .transpose()?,
        postings: Vec::new(),
        reversed_by: id("reversed_by")?.map(TransactionId::from_uuid),
    })
}

/// Which transactions to load.
#[derive(Debug, Clone, Copy)]
pub(super) enum Filter {
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
    pub(super) fn sql(self) -> &'static str {
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
pub(super) fn attach(
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
