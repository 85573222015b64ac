//! What the use cases share: the permission check, and who a principal is to the ledger and to
//! the audit log. A leaf: it imports none of its siblings but the error.

use coffer_audit::EntityId;
use coffer_auth::{Permission, Principal, Rbac};
use coffer_ledger::UserId;

use crate::UseCaseError;

/// Refuses unless the principal's roles grant `permission`.
pub(crate) fn require(
    rbac: &Rbac,
    principal: &Principal,
    permission: Permission,
) -> Result<(), UseCaseError> {
    if rbac.allows(&principal.claims.roles, permission) {
        Ok(())
    } else {
        Err(UseCaseError::Forbidden(permission))
    }
}

/// The ledger's id of a principal's user.
pub(crate) fn ledger_user(principal: &Principal) -> UserId {
    UserId::from_uuid(*principal.user.as_uuid())
}

/// The principal's user as an audit actor's id.
pub(crate) fn actor(principal: &Principal) -> EntityId {
    EntityId::from_uuid(principal.user.as_uuid())
}
