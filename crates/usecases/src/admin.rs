//! [`Admin`]: the operators' use cases, each behind the permission it needs: wallets (freeze,
//! unfreeze, close, PIN unlock and reset), reversals, users (roles, ending every session, a
//! password reset, API keys; erasure is in `erasure`), the master key (the rotation overview, a rotation request), the audit log (a
//! page, the verification) and the service's metrics.

use std::sync::Arc;

use coffer_audit::{AuditLog, AuditQuery, AuditRecord, VerifyReport};
use coffer_auth::accounts::{Accounts, AuthError, IssuedApiKey, IssuedReset, RequestContext};
use coffer_auth::api_key::{ApiKeyId, ApiKeyRecord, NewApiKey};
use coffer_auth::email::Email;
use coffer_auth::user::UserId;
use coffer_auth::{Permission, Principal, Rbac};
use coffer_ledger::port::WalletFilter;
use coffer_ledger::{
    Currency, IdempotencyKey, Ledger, LimitSet, LimitsView, Pin, Reason, TransactionId,
    TransactionView, WalletCursor, WalletId, WalletPageView, WalletStatus, WalletView,
};
use coffer_rotation::{KeysOverview, RotateRequest, RotationJob, Rotator};

use crate::UseCaseError;
use crate::shared::{actor, require};

/// The largest audit page.
pub const MAX_AUDIT_PAGE: u32 = 1000;

/// Whose wallets an operator looks for.
#[derive(Debug, Clone, Default)]
pub enum OwnerSearch {
    /// Anyone's.
    #[default]
    Any,
    /// This user's.
    Id(UserId),
    /// The user registered with this email's.
    Email(Email),
}

/// An operator's wallet search: each part set narrows it.
#[derive(Debug, Clone, Default)]
pub struct WalletSearch {
    /// Whose.
    pub owner: OwnerSearch,
    /// In which status.
    pub status: Option<WalletStatus>,
    /// In which currency.
    pub currency: Option<Currency>,
}

/// The largest page of API keys.
pub const MAX_API_KEY_PAGE: u32 = 200;

/// The operators' use cases.
#[derive(Clone)]
pub struct Admin {
    pub(crate) ledger: Arc<Ledger>,
    pub(crate) accounts: Arc<Accounts>,
    rotation: Arc<Rotator>,
    audit: Arc<dyn AuditLog>,
    rbac: Rbac,
}

impl std::fmt::Debug for Admin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Admin").finish_non_exhaustive()
    }
}

impl Admin {
    /// The use cases over the services, with the accounts' role table.
    #[must_use]
    pub fn new(
        ledger: Arc<Ledger>,
        accounts: Arc<Accounts>,
        rotation: Arc<Rotator>,
        audit: Arc<dyn AuditLog>,
    ) -> Self {
        let rbac = accounts.rbac().clone();
        Self {
            ledger,
            accounts,
            rotation,
            audit,
            rbac,
        }
    }

    pub(crate) fn require(
        &self,
        principal: &Principal,
        permission: Permission,
    ) -> Result<(), UseCaseError> {
        require(&self.rbac, principal, permission)
    }

    /// Freezes a wallet (`wallet:freeze`): it receives and sends nothing until unfrozen.
    ///
    /// # Errors
    /// [`UseCaseError::Forbidden`]; the ledger's refusals.
    pub async fn freeze(
        &self,
        principal: &Principal,
        wallet: WalletId,
    ) -> Result<WalletView, UseCaseError> {
        self.require(principal, Permission::WalletFreeze)?;
        Ok(self.ledger.freeze(principal.user, wallet).await?)
    }

    /// Sets a wallet's own spending limits, or with `None` returns it to its currency's default
    /// policy (`wallet:limits`).
    ///
    /// # Errors
    /// [`UseCaseError::Forbidden`]; the ledger's refusals.
    pub async fn set_limits(
        &self,
        principal: &Principal,
        wallet: WalletId,
        limits: Option<LimitSet>,
    ) -> Result<LimitsView, UseCaseError> {
        self.require(principal, Permission::WalletLimits)?;
        Ok(self
            .ledger
            .set_limits(principal.user, wallet, limits)
            .await?)
    }

    /// Unfreezes a wallet (`wallet:freeze`).
    ///
    /// # Errors
    /// [`UseCaseError::Forbidden`]; the ledger's refusals.
    pub async fn unfreeze(
        &self,
        principal: &Principal,
        wallet: WalletId,
    ) -> Result<WalletView, UseCaseError> {
        self.require(principal, Permission::WalletFreeze)?;
        Ok(self.ledger.unfreeze(principal.user, wallet).await?)
    }

    /// Closes an empty wallet for good (`wallet:close`).
    ///
    /// # Errors
    /// [`UseCaseError::Forbidden`]; the ledger's refusals.
    pub async fn close(
        &self,
        principal: &Principal,
        wallet: WalletId,
    ) -> Result<WalletView, UseCaseError> {
        self.require(principal, Permission::WalletClose)?;
        Ok(self.ledger.close(principal.user, wallet).await?)
    }

    /// Ends a wallet's PIN lockout (`wallet:write`).
    ///
    /// # Errors
    /// [`UseCaseError::Forbidden`]; the ledger's refusals.
    pub async fn unlock_pin(
        &self,
        principal: &Principal,
        wallet: WalletId,
    ) -> Result<WalletView, UseCaseError> {
        self.require(principal, Permission::WalletWrite)?;
        Ok(self.ledger.unlock_pin(principal.user, wallet).await?)
    }

    /// Gives a wallet a new PIN and signing key (`wallet:write`).
    ///
    /// # Errors
    /// [`UseCaseError::Forbidden`]; the ledger's refusals.
    pub async fn reset_pin(
        &self,
        principal: &Principal,
        wallet: WalletId,
        pin: &Pin,
    ) -> Result<WalletView, UseCaseError> {
        self.require(principal, Permission::WalletWrite)?;
        Ok(self.ledger.reset_pin(principal.user, wallet, pin).await?)
    }

    /// Reverses a transaction, once (`wallet:write`).
    ///
    /// # Errors
    /// [`UseCaseError::Forbidden`]; the ledger's refusals.
    pub async fn reverse(
        &self,
        principal: &Principal,
        transaction: TransactionId,
        reason: &Reason,
        idempotency_key: &IdempotencyKey,
    ) -> Result<TransactionView, UseCaseError> {
        self.require(principal, Permission::WalletWrite)?;
        Ok(self
            .ledger
            .reverse(principal.user, transaction, reason, idempotency_key)
            .await?)
    }

    /// Replaces a user's roles (`user:admin`); answers the roles now held.
    ///
    /// # Errors
    /// [`UseCaseError::Forbidden`]; the accounts' refusals (unknown user or role).
    pub async fn set_roles(
        &self,
        principal: &Principal,
        user: UserId,
        roles: &[String],
        ctx: &RequestContext,
    ) -> Result<Vec<String>, UseCaseError> {
        self.require(principal, Permission::UserAdmin)?;
        Ok(self
            .accounts
            .set_roles(principal.user, user, roles, ctx)
            .await?)
    }

    /// Ends every session of a user (`user:admin`).
    ///
    /// # Errors
    /// [`UseCaseError::Forbidden`]; the accounts' refusals (unknown user).
    pub async fn revoke_sessions(
        &self,
        principal: &Principal,
        user: UserId,
        ctx: &RequestContext,
    ) -> Result<(), UseCaseError> {
        self.require(principal, Permission::UserAdmin)?;
        let admin = coffer_audit::Actor::Admin(actor(principal));
        Ok(self.accounts.revoke_sessions(admin, user, ctx).await?)
    }

    /// Issues a password reset for a user (`user:admin`): the one-time token to hand over, and
    /// when it stops working. Not for the administrator's own account.
    ///
    /// # Errors
    /// [`UseCaseError::Forbidden`]; the accounts' refusals (unknown user, one's own account).
    pub async fn issue_password_reset(
        &self,
        principal: &Principal,
        user: UserId,
        ctx: &RequestContext,
    ) -> Result<IssuedReset, UseCaseError> {
        self.require(principal, Permission::UserAdmin)?;
        Ok(self
            .accounts
            .issue_password_reset(principal.user, user, ctx)
            .await?)
    }

    /// Wallets found by owner (by id, or by email through its blind index), status and
    /// currency, oldest first in pages: an operator finding a customer's wallets
    /// (`wallet:write`, the permission that reads any wallet). An email nobody registered finds
    /// nothing.
    ///
    /// # Errors
    /// [`UseCaseError::Forbidden`]; the ledger's (a bad limit or cursor).
    pub async fn wallets(
        &self,
        principal: &Principal,
        search: WalletSearch,
        cursor: Option<WalletCursor>,
        limit: u32,
    ) -> Result<WalletPageView, UseCaseError> {
        self.require(principal, Permission::WalletWrite)?;
        let owner = match search.owner {
            OwnerSearch::Any => None,
            OwnerSearch::Id(id) => Some(id),
            OwnerSearch::Email(email) => match self.accounts.user_with_email(&email).await? {
                Some(id) => Some(id),
                None => {
                    return Ok(WalletPageView {
                        items: Vec::new(),
                        next_cursor: None,
                    });
                }
            },
        };
        let filter = WalletFilter {
            owner,
            status: search.status,
            currency: search.currency,
        };
        Ok(self.ledger.wallets_where(&filter, cursor, limit).await?)
    }

    /// Creates an API key for a service account (`user:admin`, from a signed-in administrator:
    /// a key never makes keys). The key's permissions must be granted by its owner's roles.
    ///
    /// # Errors
    /// [`UseCaseError::Forbidden`]; `api_key_credential` for a caller with a key; the accounts'
    /// refusals (unknown user, a permission the owner lacks).
    pub async fn create_api_key(
        &self,
        principal: &Principal,
        new: NewApiKey,
        ctx: &RequestContext,
    ) -> Result<IssuedApiKey, UseCaseError> {
        self.require(principal, Permission::UserAdmin)?;
        if principal.api_key.is_some() {
            return Err(AuthError::ApiKeyCredential.into());
        }
        Ok(self
            .accounts
            .create_api_key(principal.user, new, ctx)
            .await?)
    }

    /// A page of API keys in id order after `after`, of `user` or everyone's (`user:admin`).
    ///
    /// # Errors
    /// [`UseCaseError::Forbidden`]; [`UseCaseError::PageSize`] outside 1 to
    /// [`MAX_API_KEY_PAGE`]; the store's.
    pub async fn api_keys(
        &self,
        principal: &Principal,
        user: Option<UserId>,
        after: Option<ApiKeyId>,
        limit: u32,
    ) -> Result<Vec<ApiKeyRecord>, UseCaseError> {
        self.require(principal, Permission::UserAdmin)?;
        if !(1..=MAX_API_KEY_PAGE).contains(&limit) {
            return Err(UseCaseError::PageSize {
                max: MAX_API_KEY_PAGE,
            });
        }
        Ok(self.accounts.api_keys(user, after, limit).await?)
    }

    /// One API key (`user:admin`).
    ///
    /// # Errors
    /// [`UseCaseError::Forbidden`]; `api_key_not_found`.
    pub async fn api_key(
        &self,
        principal: &Principal,
        id: ApiKeyId,
    ) -> Result<ApiKeyRecord, UseCaseError> {
        self.require(principal, Permission::UserAdmin)?;
        Ok(self.accounts.api_key(id).await?)
    }

    /// Revokes an API key (`user:admin`): it stops working at once on every replica.
    ///
    /// # Errors
    /// [`UseCaseError::Forbidden`]; `api_key_not_found`.
    pub async fn revoke_api_key(
        &self,
        principal: &Principal,
        id: ApiKeyId,
        ctx: &RequestContext,
    ) -> Result<(), UseCaseError> {
        self.require(principal, Permission::UserAdmin)?;
        Ok(self
            .accounts
            .revoke_api_key(principal.user, id, ctx)
            .await?)
    }

    /// The master key's versions, the data keys per version and the rotations (`key:read`).
    ///
    /// # Errors
    /// [`UseCaseError::Forbidden`]; [`UseCaseError::Rotation`].
    pub async fn keys(&self, principal: &Principal) -> Result<KeysOverview, UseCaseError> {
        self.require(principal, Permission::KeyRead)?;
        Ok(self.rotation.overview().await?)
    }

    /// Requests a master key rotation (`key:rotate`): the job a worker will run, and whether
    /// it is new (`false`: the one already requested or running).
    ///
    /// # Errors
    /// [`UseCaseError::Forbidden`]; [`UseCaseError::Rotation`] (refused, or unavailable).
    pub async fn request_rotation(
        &self,
        principal: &Principal,
        emergency: bool,
        retire: bool,
    ) -> Result<(RotationJob, bool), UseCaseError> {
        self.require(principal, Permission::KeyRotate)?;
        Ok(self
            .rotation
            .request(RotateRequest {
                requested_by: format!("admin:{}", principal.user),
                emergency,
                retire,
            })
            .await?)
    }

    /// A page of the audit log, newest first, before the event id `before` (`audit:read`).
    ///
    /// # Errors
    /// [`UseCaseError::Forbidden`]; [`UseCaseError::PageSize`] for a `limit` outside 1 to
    /// [`MAX_AUDIT_PAGE`]; [`UseCaseError::Audit`].
    pub async fn audit_page(
        &self,
        principal: &Principal,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<AuditRecord>, UseCaseError> {
        self.require(principal, Permission::AuditRead)?;
        if !(1..=MAX_AUDIT_PAGE).contains(&limit) {
            return Err(UseCaseError::PageSize {
                max: MAX_AUDIT_PAGE,
            });
        }
        let query = AuditQuery {
            before_id: before,
            stream: None,
            limit,
        };
        Ok(self.audit.list(&query).await?)
    }

    /// Verifies the whole audit log (`audit:read`).
    ///
    /// # Errors
    /// [`UseCaseError::Forbidden`]; [`UseCaseError::Audit`].
    pub async fn audit_verify(&self, principal: &Principal) -> Result<VerifyReport, UseCaseError> {
        self.require(principal, Permission::AuditRead)?;
        Ok(self.audit.verify(None, &|_| {}).await?)
    }

    /// Whether the principal may read the service's metrics (`system:metrics`).
    ///
    /// # Errors
    /// [`UseCaseError::Forbidden`].
    pub fn read_metrics(&self, principal: &Principal) -> Result<(), UseCaseError> {
        self.require(principal, Permission::SystemMetrics)
    }
}
