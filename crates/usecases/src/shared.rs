//! What the use cases share: the permission check, and a principal as the audit log's actor. A
//! leaf: it imports none of its siblings but the error.

use coffer_audit::EntityId;
use coffer_auth::{Permission, Principal, Rbac};

use crate::UseCaseError;

/// Refuses unless the principal may do `permission` (its roles grant it, and its API key names
/// it when it presented one).
pub(crate) fn require(
    rbac: &Rbac,
    principal: &Principal,
    permission: Permission,
) -> Result<(), UseCaseError> {
    if principal.allows(rbac, permission) {
        Ok(())
    } else {
        Err(UseCaseError::Forbidden(permission))
    }
}

/// The principal's user as an audit actor's id.
pub(crate) fn actor(principal: &Principal) -> EntityId {
    EntityId::from_uuid(principal.user.as_uuid())
}
