//! The user store's and the revocation list's steps on Postgres beyond the common
//! [`Dialect`](crate::dialect::Dialect) (a plain `BEGIN`): each revocation is announced with
//! `pg_notify`.

use super::AuthDialect;
use crate::dialect::Pg;

impl AuthDialect for Pg {
    const ANNOUNCE: bool = true;
}
