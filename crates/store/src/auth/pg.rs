//! The user store's and the revocation list's steps on Postgres beyond the common
//! [`Dialect`](crate::dialect::Dialect) (a plain `BEGIN`): each revocation is announced with
//! `pg_notify`, and role changes take an advisory lock.

use super::AuthDialect;
use crate::dialect::Pg;

impl AuthDialect for Pg {
    const ANNOUNCE: bool = true;
    // Role changes take one transaction-scoped advisory lock, so the count of administrators
    // each change reads is never stale.
    const SERIALIZE_ROLE_CHANGES: Option<&'static str> =
        Some("SELECT pg_advisory_xact_lock(hashtext('coffer.user_roles'))");
}
