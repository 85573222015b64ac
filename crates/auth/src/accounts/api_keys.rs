//! API keys ([`crate::api_key`]): an administrator (`user:admin`, checked by the caller)
//! creates one for a service account, lists and revokes them; every request that presents one
//! is checked here.
//!
//! Creating checks that the owner's roles grant each permission asked for (a key is a subset of
//! its owner, never more), shows the secret once and records `api_key.created` naming the key;
//! revoking records `api_key.revoked`. A presented key is looked up by its hash on every request
//! together with its owner's roles now: unknown keys are [`AuthError::InvalidApiKey`], revoked
//! and expired ones the token reasons `revoked` and `expired`.

use coffer_audit::{Action, Actor, Outcome};

use super::Accounts;
use super::error::AuthError;
use super::shared::{RequestContext, code, entity};
use crate::api_key::{ApiKeyGrant, ApiKeyId, ApiKeyRecord, ApiKeySecret, NewApiKey};
use crate::token::TokenError;
use crate::user::UserId;

/// A created key: its record and its secret, shown once.
#[derive(Debug)]
pub struct IssuedApiKey {
    /// The key as stored.
    pub record: ApiKeyRecord,
    /// The secret to hand to the service.
    pub secret: ApiKeySecret,
}

/// A verified key: who it acts as, with which roles now, and the key.
#[derive(Debug, Clone)]
pub struct VerifiedApiKey {
    /// The owner.
    pub user: UserId,
    /// The owner's roles now.
    pub roles: Vec<String>,
    /// The key.
    pub grant: ApiKeyGrant,
    /// When it was created, seconds since the epoch.
    pub created_at: u64,
}

impl Accounts {
    /// Creates a key for `new.user` on `admin`'s behalf.
    ///
    /// # Errors
    /// [`AuthError::UserNotFound`]; [`AuthError::Invalid`] on `permissions` when the owner's
    /// roles do not grant one; dependencies.
    pub async fn create_api_key(
        &self,
        admin: UserId,
        new: NewApiKey,
        ctx: &RequestContext,
    ) -> Result<IssuedApiKey, AuthError> {
        let owner = self.load_user(new.user).await?;
        let granted = self.rbac.permissions(&owner.record.roles);
        if let Some(p) = new.permissions.iter().find(|p| !granted.contains(p)) {
            return Err(AuthError::Invalid {
                field: "permissions",
                reason: format!("the owner's roles do not grant {p}"),
            });
        }
        let secret = ApiKeySecret::generate();
        let now = self.clock.unix_secs();
        let record = ApiKeyRecord {
            id: ApiKeyId::new(),
            user: new.user,
            name: new.name,
            hash: secret.hash(),
            permissions: new.permissions,
            rate_per_minute: new.rate_per_minute,
            created_by: admin,
            created_at: now,
            expires_at: now + u64::from(new.lifetime_days) * 86_400,
            revoked_at: None,
        };
        let mut audit = self.event(
            Actor::Admin(entity(admin)),
            Action::ApiKeyCreated,
            Some(new.user),
            Outcome::Success,
            ctx,
        );
        let _ = audit.details.insert("key_id", code(&record.id.to_string()));
        let receipt = self
            .store
            .create_api_key(&record, &audit)
            .await?
            .ok_or(AuthError::UserNotFound)?;
        self.audit.committed_elsewhere(&[(audit, receipt)]).await;
        Ok(IssuedApiKey { record, secret })
    }

    /// A key by id.
    ///
    /// # Errors
    /// [`AuthError::ApiKeyNotFound`]; the store's.
    pub async fn api_key(&self, id: ApiKeyId) -> Result<ApiKeyRecord, AuthError> {
        self.store
            .api_key(id)
            .await?
            .ok_or(AuthError::ApiKeyNotFound)
    }

    /// Up to `limit` keys after `after` in id order, of `user` or everyone's.
    ///
    /// # Errors
    /// The store's.
    pub async fn api_keys(
        &self,
        user: Option<UserId>,
        after: Option<ApiKeyId>,
        limit: u32,
    ) -> Result<Vec<ApiKeyRecord>, AuthError> {
        Ok(self.store.api_keys(user, after, limit).await?)
    }

    /// Revokes a key on `admin`'s behalf: no request authenticates with it afterwards, on any
    /// replica. Revoking a revoked key changes nothing and records nothing.
    ///
    /// # Errors
    /// [`AuthError::ApiKeyNotFound`]; the store's.
    pub async fn revoke_api_key(
        &self,
        admin: UserId,
        id: ApiKeyId,
        ctx: &RequestContext,
    ) -> Result<(), AuthError> {
        let key = self.api_key(id).await?;
        if key.revoked_at.is_some() {
            return Ok(());
        }
        let mut audit = self.event(
            Actor::Admin(entity(admin)),
            Action::ApiKeyRevoked,
            Some(key.user),
            Outcome::Success,
            ctx,
        );
        let _ = audit.details.insert("key_id", code(&id.to_string()));
        let now = self.clock.unix_secs();
        if let Some(receipt) = self.store.revoke_api_key(id, now, &audit).await? {
            self.audit.committed_elsewhere(&[(audit, receipt)]).await;
        }
        Ok(())
    }

    /// Checks a presented key.
    ///
    /// # Errors
    /// [`AuthError::InvalidApiKey`] for a value that is no live key's; the token reasons
    /// `revoked` and `expired`; the store's.
    pub async fn verify_api_key(&self, presented: &str) -> Result<VerifiedApiKey, AuthError> {
        let secret = ApiKeySecret::parse(presented).map_err(|_| AuthError::InvalidApiKey)?;
        let found = self
            .store
            .api_key_by_hash(&secret.hash())
            .await?
            .ok_or(AuthError::InvalidApiKey)?;
        let key = found.key;
        if key.revoked_at.is_some() {
            return Err(TokenError::Revoked.into());
        }
        if !key.live_at(self.clock.unix_secs()) {
            return Err(TokenError::Expired.into());
        }
        Ok(VerifiedApiKey {
            user: key.user,
            roles: found.roles,
            created_at: key.created_at,
            grant: ApiKeyGrant {
                id: key.id,
                name: key.name,
                permissions: key.permissions,
                rate_per_minute: key.rate_per_minute,
                expires_at: key.expires_at,
            },
        })
    }
}
