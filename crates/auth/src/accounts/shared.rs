//! The small helpers every use case of the accounts service needs; a leaf: it imports nothing
//! from the other modules of the service.
//!
//! - [`RequestContext`]: where a request came from, for the audit log and the alert rules.
//! - Audit details: ids as entities, and codes that never fail the operation they describe (a
//!   value that is not a token is recorded as `unrepresentable`).
//! - The binding of a user's personal data: the key context their data key is generated and
//!   unwrapped under (`purpose=user-dek`, the user id), and the associated data each sealed field
//!   carries (`user.field`, the user id, the field name), so an envelope copied to another user
//!   or another field does not open.

use std::fmt;
use std::net::IpAddr;

use coffer_audit::{Code, DetailValue, EntityId};
use coffer_crypto::Aad;
use coffer_keys::KeyContext;

use crate::user::UserId;

/// Where a request came from (for the audit log and the alert rules).
#[derive(Debug, Clone, Default)]
pub struct RequestContext {
    /// The client's address.
    pub client_ip: Option<IpAddr>,
    /// The request id.
    pub request_id: Option<String>,
}

/// The key context of a user's data key.
#[must_use]
pub fn user_key_context(user: UserId) -> KeyContext {
    KeyContext::new()
        .with("purpose", "user-dek")
        .with("user_id", user.to_string())
}

pub(super) fn field_aad(user: UserId, field: &str) -> Aad {
    Aad::new("user.field").with(user.to_string()).with(field)
}

#[allow(clippy::expect_used)]
pub(super) fn entity(id: impl fmt::Display) -> EntityId {
    EntityId::parse(&id.to_string()).expect("UUIDs and kids are entity tokens")
}

/// A token detail (codes, UUIDs, addresses); anything else is recorded as `unrepresentable`
/// rather than failing the operation it describes.
#[allow(clippy::expect_used)]
pub(super) fn code(s: &str) -> DetailValue {
    DetailValue::Code(
        Code::parse(s)
            .unwrap_or_else(|_| Code::parse("unrepresentable").expect("a constant token")),
    )
}
