//! The user store's and the revocation list's steps on SQLite beyond the common
//! [`Dialect`](crate::dialect::Dialect) (`BEGIN IMMEDIATE`): revocations are not announced
//! (there is no other process to tell but through the database).

use super::AuthDialect;
use crate::dialect::Sqlite;

impl AuthDialect for Sqlite {
    const ANNOUNCE: bool = false;
    // Its transactions begin IMMEDIATE: one writer at a time already.
    const SERIALIZE_ROLE_CHANGES: Option<&'static str> = None;
}
