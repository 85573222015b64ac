//! The auth tables' rows: their column lists, a decoder per row type (`*_from`, generic over the
//! database, so one decoder serves Postgres and SQLite), the value conversions the decoders and
//! the statements share (counts and times are stored as `BIGINT`, saturating; a stored value out
//! of range is corrupt), and the translation of driver errors into the port's: a unique violation
//! on the email's blind index is `DuplicateEmail`, a lost connection `Unavailable`, a column that
//! does not decode `Corrupt`. A leaf: it imports nothing from its siblings.

use coffer_auth::api_key::{ApiKeyId, ApiKeyName, ApiKeyRecord, parse_permissions};
use coffer_auth::opaque::TokenHash;
use coffer_auth::refresh::RefreshRecord;
use coffer_auth::reset::ResetRecord;
use coffer_auth::store::{
    ErasureRecord, LoadedUser, StoredSigningKey, TotpRecord, UserKeyRecord, UserRecord,
    UserStoreError,
};
use coffer_auth::user::UserId;
use coffer_crypto::Envelope;
use coffer_keys::WrappedKey;
use sqlx::Row;
use uuid::Uuid;

use crate::db::{DbFailure, DbFailureKind, decode};

/// A unique violation on the e-mail index is a duplicate e-mail; any other conflict is a
/// storage error.
impl From<DbFailure> for UserStoreError {
    fn from(f: DbFailure) -> Self {
        // Postgres names the constraint (`users_email_index_key`); SQLite only the column.
        if f.is_unique_on("email_index") {
            return Self::DuplicateEmail;
        }
        match f.kind() {
            DbFailureKind::Unavailable => Self::Unavailable(f.into_source().into()),
            DbFailureKind::Corrupt => Self::Corrupt(f.into_source().into()),
            DbFailureKind::Conflict(_) | DbFailureKind::Storage => {
                Self::Storage(f.into_source().into())
            }
        }
    }
}

pub(super) fn db_err(e: sqlx::Error) -> UserStoreError {
    DbFailure::from(e).into()
}

pub(super) fn corrupt(what: &str) -> UserStoreError {
    UserStoreError::Corrupt(what.into())
}

fn envelope(v: &[u8], what: &str) -> Result<Envelope, UserStoreError> {
    decode(Envelope::from_bytes, v, what).map_err(UserStoreError::Corrupt)
}

pub(super) fn i64_of(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

pub(super) fn u64_of(v: i64, what: &str) -> Result<u64, UserStoreError> {
    u64::try_from(v).map_err(|_| corrupt(what))
}

pub(super) fn u32_of(v: i64, what: &str) -> Result<u32, UserStoreError> {
    u32::try_from(v).map_err(|_| corrupt(what))
}

pub(super) fn hash_of(bytes: &[u8]) -> Result<TokenHash, UserStoreError> {
    Ok(TokenHash(
        bytes.try_into().map_err(|_| corrupt("token hash"))?,
    ))
}

pub(super) const USER_COLUMNS: &str = "id, email_index, email, phone, tax_id, password_hash, roles, \
     dek_version, totp, totp_confirmed, totp_last_step, created_at, erased_at, erasure_key, \
     erasure_reason";

pub(super) fn user_from<R: Row>(row: &R) -> Result<UserRecord, UserStoreError>
where
    for<'r> &'r str: sqlx::ColumnIndex<R>,
    for<'r> Uuid: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> Vec<u8>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> bool: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let get_err = db_err;
    let roles: String = row.try_get("roles").map_err(get_err)?;
    let sealed = |col: &str| -> Result<Option<Vec<u8>>, UserStoreError> {
        row.try_get(col).map_err(get_err)
    };
    let totp = sealed("totp")?;
    let email_index: Vec<u8> = row.try_get("email_index").map_err(get_err)?;
    Ok(UserRecord {
        id: UserId::from_uuid(row.try_get("id").map_err(get_err)?),
        email_index: email_index
            .as_slice()
            .try_into()
            .map_err(|_| corrupt("email index"))?,
        email: envelope(
            &row.try_get::<Vec<u8>, _>("email").map_err(get_err)?,
            "email",
        )?,
        phone: sealed("phone")?
            .map(|v| envelope(&v, "phone"))
            .transpose()?,
        tax_id: sealed("tax_id")?
            .map(|v| envelope(&v, "tax id"))
            .transpose()?,
        password_hash: row.try_get("password_hash").map_err(get_err)?,
        roles: serde_json::from_str(&roles).map_err(|_| corrupt("roles"))?,
        dek_version: u32_of(row.try_get("dek_version").map_err(get_err)?, "dek version")?,
        totp: match totp {
            Some(sealed) => Some(TotpRecord {
                sealed: envelope(&sealed, "TOTP secret")?,
                confirmed: row.try_get("totp_confirmed").map_err(get_err)?,
                last_step: u64_of(row.try_get("totp_last_step").map_err(get_err)?, "totp step")?,
            }),
            None => None,
        },
        created_at: row.try_get("created_at").map_err(get_err)?,
        erased: match row
            .try_get::<Option<i64>, _>("erased_at")
            .map_err(get_err)?
        {
            Some(at) => Some(ErasureRecord {
                at,
                idempotency_key: row
                    .try_get::<Option<String>, _>("erasure_key")
                    .map_err(get_err)?
                    .unwrap_or_default(),
                reason: row
                    .try_get::<Option<String>, _>("erasure_reason")
                    .map_err(get_err)?
                    .unwrap_or_default(),
            }),
            None => None,
        },
    })
}

pub(super) fn key_from<R: Row>(row: &R) -> Result<UserKeyRecord, UserStoreError>
where
    for<'r> &'r str: sqlx::ColumnIndex<R>,
    for<'r> Vec<u8>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    Ok(UserKeyRecord {
        version: u32_of(row.try_get("version").map_err(db_err)?, "key version")?,
        wrapped: decode(
            WrappedKey::from_bytes,
            &row.try_get::<Vec<u8>, _>("wrapped").map_err(db_err)?,
            "wrapped user key",
        )
        .map_err(UserStoreError::Corrupt)?,
        kek_version: u32_of(row.try_get("kek_version").map_err(db_err)?, "kek version")?,
    })
}

pub(super) const REFRESH_COLUMNS: &str = "hash, family, user_id, client_id, amr, family_expires_at, \
     spent_at, replaced_by, revoked, superseded";

pub(super) fn refresh_from<R: Row>(row: &R) -> Result<RefreshRecord, UserStoreError>
where
    for<'r> &'r str: sqlx::ColumnIndex<R>,
    for<'r> Uuid: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> Vec<u8>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> bool: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let hash: Vec<u8> = row.try_get("hash").map_err(db_err)?;
    let replaced_by: Option<Vec<u8>> = row.try_get("replaced_by").map_err(db_err)?;
    let user: Uuid = row.try_get("user_id").map_err(db_err)?;
    let amr: String = row.try_get("amr").map_err(db_err)?;
    let spent_at: Option<i64> = row.try_get("spent_at").map_err(db_err)?;
    Ok(RefreshRecord {
        hash: hash_of(&hash)?,
        family: row.try_get("family").map_err(db_err)?,
        user: user.to_string(),
        client_id: row.try_get("client_id").map_err(db_err)?,
        amr: serde_json::from_str(&amr).map_err(|_| corrupt("amr"))?,
        family_expires_at: u64_of(
            row.try_get("family_expires_at").map_err(db_err)?,
            "family expiry",
        )?,
        spent_at: spent_at.map(|s| u64_of(s, "spent_at")).transpose()?,
        replaced_by: replaced_by.as_deref().map(hash_of).transpose()?,
        revoked: row.try_get("revoked").map_err(db_err)?,
        superseded: row.try_get("superseded").map_err(db_err)?,
    })
}

pub(super) fn signing_key_from<R: Row>(row: &R) -> Result<StoredSigningKey, UserStoreError>
where
    for<'r> &'r str: sqlx::ColumnIndex<R>,
    for<'r> Vec<u8>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let retired_at: Option<i64> = row.try_get("retired_at").map_err(db_err)?;
    Ok(StoredSigningKey {
        kid: row.try_get("kid").map_err(db_err)?,
        wrapped_dek: row.try_get("wrapped_dek").map_err(db_err)?,
        kek_version: u32_of(row.try_get("kek_version").map_err(db_err)?, "kek version")?,
        sealed: row.try_get("sealed").map_err(db_err)?,
        created_at: u64_of(row.try_get("created_at").map_err(db_err)?, "created_at")?,
        retired_at: retired_at.map(|r| u64_of(r, "retired_at")).transpose()?,
    })
}

pub(super) fn loaded(record: UserRecord, keys: Vec<UserKeyRecord>) -> LoadedUser {
    LoadedUser { record, keys }
}

pub(super) const RESET_COLUMNS: &str = "user_id, token_hash, issued_by, expires_at";

pub(super) fn reset_from<R: Row>(row: &R) -> Result<ResetRecord, UserStoreError>
where
    for<'r> &'r str: sqlx::ColumnIndex<R>,
    for<'r> Uuid: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> Vec<u8>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let hash: Vec<u8> = row.try_get("token_hash").map_err(db_err)?;
    Ok(ResetRecord {
        hash: hash_of(&hash)?,
        user: UserId::from_uuid(row.try_get("user_id").map_err(db_err)?),
        issued_by: UserId::from_uuid(row.try_get("issued_by").map_err(db_err)?),
        expires_at: u64_of(row.try_get("expires_at").map_err(db_err)?, "reset expiry")?,
    })
}

pub(super) const API_KEY_COLUMNS: &str = "id, user_id, name, token_hash, permissions, \
     rate_per_minute, created_by, created_at, expires_at, revoked_at";

pub(super) fn api_key_from<R: Row>(row: &R) -> Result<ApiKeyRecord, UserStoreError>
where
    for<'r> &'r str: sqlx::ColumnIndex<R>,
    for<'r> Uuid: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> Vec<u8>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let hash: Vec<u8> = row.try_get("token_hash").map_err(db_err)?;
    let name: String = row.try_get("name").map_err(db_err)?;
    let permissions: String = row.try_get("permissions").map_err(db_err)?;
    let permissions: Vec<String> =
        serde_json::from_str(&permissions).map_err(|_| corrupt("key permissions"))?;
    let rate: Option<i64> = row.try_get("rate_per_minute").map_err(db_err)?;
    let revoked_at: Option<i64> = row.try_get("revoked_at").map_err(db_err)?;
    Ok(ApiKeyRecord {
        id: ApiKeyId::from_uuid(row.try_get("id").map_err(db_err)?),
        user: UserId::from_uuid(row.try_get("user_id").map_err(db_err)?),
        name: ApiKeyName::parse(&name).map_err(|_| corrupt("key name"))?,
        hash: hash_of(&hash)?,
        permissions: parse_permissions(&permissions).map_err(|_| corrupt("key permissions"))?,
        rate_per_minute: rate
            .map(|r| u32::try_from(r).map_err(|_| corrupt("key rate")))
            .transpose()?,
        created_by: UserId::from_uuid(row.try_get("created_by").map_err(db_err)?),
        created_at: u64_of(row.try_get("created_at").map_err(db_err)?, "key created_at")?,
        expires_at: u64_of(row.try_get("expires_at").map_err(db_err)?, "key expiry")?,
        revoked_at: revoked_at
            .map(|r| u64_of(r, "key revoked_at"))
            .transpose()?,
    })
}
