//! Sessions: refresh-token rotation with reuse detection, logout, revocation, and the cleanup of
//! sessions that ended.
//!
//! A session is a refresh family, named by the `sid` of its access tokens; it ends 30 days after
//! its login however often it is refreshed. A refresh reads the presented token and its
//! replacement, and decides on those fresh records ([`refresh::decide`]): rotate, refuse, or
//! reuse detected (a spent token presented again: the family is revoked and the use audited as
//! `user.refresh_reuse_detected`). A grace window lets the immediately previous token through
//! while its replacement is unused (a lost response retried), revoking that replacement as
//! superseded; if the superseded one turns up, the retry was a thief's and the family goes. Zero
//! turns the window off entirely.
//!
//! A rotation signs the new access token first, then applies a compare-and-swap in the store
//! ([`UserStore::rotate_refresh`](crate::store::UserStore::rotate_refresh)): the presented token
//! changes only while its `replaced_by` is still what was decided on, and the grace-window
//! orphan is revoked only while unused. Of two concurrent uses of one token exactly one rotates;
//! the other decides again on what the winner wrote. Every refusal is the one
//! [`AuthError::InvalidRefreshToken`].
//!
//! Logout revokes its session, then the access token's jti until the token would expire.
//! Revoke-all (the user's own or an admin's) revokes every family of the user, then bumps the
//! user's revocation epoch; the emergency revoke revokes every family, then bumps the global
//! epoch. The store repeats a family revocation until nothing is live, so a rotation racing it
//! cannot leave a token behind. A revocation always comes before the epoch or denylist step it
//! pairs with, so a failure in between never leaves a session able to mint tokens.

use coffer_audit::{Action, Actor, AuditEvent, Outcome, Subject};

use super::error::{AuthError, corrupt};
use super::shared::{RequestContext, code, entity};
use super::{Accounts, Session};
use crate::refresh::{self, Decision, RefreshRecord, RefreshToken};
use crate::store::Rotation;
use crate::token::{AccessClaims, TokenError};
use crate::user::UserId;

impl Accounts {
    /// Rotates a refresh token: a new access token and a new refresh token in the same family
    /// (ending when the family does). A spent token presented again revokes its family.
    ///
    /// # Errors
    /// [`AuthError::InvalidRefreshToken`], dependencies.
    pub async fn refresh(
        &self,
        presented: &str,
        ctx: &RequestContext,
    ) -> Result<Session, AuthError> {
        let presented =
            RefreshToken::parse(presented).map_err(|_| AuthError::InvalidRefreshToken)?;
        let hash = presented.hash();
        // A lost compare-and-swap means a concurrent use changed the records: decide again.
        for _ in 0..16 {
            let record = self.store.refresh_token(&hash).await?;
            let replacement = match record.as_ref().and_then(|r| r.replaced_by) {
                Some(next) => self.store.refresh_token(&next).await?,
                None => None,
            };
            // The two reads are not one snapshot: a concurrent retry may have superseded the
            // replacement between them, which would look like reuse. The presented token
            // changes in the same transaction, so reading it unchanged makes the pair
            // consistent; otherwise decide again.
            if replacement.is_some() && self.store.refresh_token(&hash).await? != record {
                continue;
            }
            let now = self.clock.unix_secs();
            match refresh::decide(
                record.as_ref(),
                replacement.as_ref(),
                now,
                self.config.refresh_grace.as_secs(),
            ) {
                Decision::Refuse => return Err(AuthError::InvalidRefreshToken),
                Decision::ReuseDetected { family } => {
                    let user = record.as_ref().and_then(|r| UserId::parse(&r.user).ok());
                    let mut event = self.event(
                        Actor::Anonymous,
                        Action::UserRefreshReuseDetected,
                        user,
                        Outcome::Denied,
                        ctx,
                    );
                    let _ = event.details.insert("session", code(&family.to_string()));
                    let (_, receipt) = self.store.revoke_family(family, Some(&event)).await?;
                    if let Some(receipt) = receipt {
                        self.audit.committed_elsewhere(&[(event, receipt)]).await;
                    }
                    return Err(AuthError::InvalidRefreshToken);
                }
                Decision::Rotate {
                    family,
                    family_expires_at,
                    orphan,
                } => {
                    let Some(record) = record else {
                        return Err(AuthError::InvalidRefreshToken);
                    };
                    let user_id =
                        UserId::parse(&record.user).map_err(|_| corrupt("refresh token user"))?;
                    let token = RefreshToken::generate();
                    let next = RefreshRecord {
                        hash: token.hash(),
                        family,
                        family_expires_at,
                        spent_at: None,
                        replaced_by: None,
                        revoked: false,
                        superseded: false,
                        ..record
                    };
                    // Signed before the rotation commits: a failure to sign spends nothing (a
                    // retry is not mistaken for reuse); a lost race throws the token away.
                    let session = match self.session(user_id, &next, token).await {
                        Err(AuthError::UserNotFound) => return Err(AuthError::InvalidRefreshToken),
                        other => other?,
                    };
                    let rotated = self
                        .store
                        .rotate_refresh(&Rotation {
                            presented: hash,
                            expected_replaced_by: orphan,
                            next: &next,
                            now,
                        })
                        .await?;
                    if rotated {
                        return Ok(session);
                    }
                }
            }
        }
        Err(AuthError::Unavailable(
            "refresh token contended: retry".into(),
        ))
    }

    /// Logout: this access token stops working now, and so does its session (refresh family).
    ///
    /// # Errors
    /// Dependencies.
    pub async fn logout(
        &self,
        claims: &AccessClaims,
        ctx: &RequestContext,
    ) -> Result<(), AuthError> {
        let user = UserId::parse(&claims.sub).ok();
        let actor = user.map_or(Actor::Anonymous, |u| Actor::User(entity(u)));
        let event = self.event(actor, Action::UserLogout, user, Outcome::Success, ctx);
        let family = claims
            .sid
            .as_deref()
            .and_then(|s| uuid::Uuid::parse_str(s).ok());
        // The session first: if the token's revocation then fails, a retry revokes it; the
        // other order could leave a session that mints new tokens.
        match family {
            Some(family) => {
                let (_, receipt) = self.store.revoke_family(family, Some(&event)).await?;
                if let Some(receipt) = receipt {
                    self.audit.committed_elsewhere(&[(event, receipt)]).await;
                }
            }
            None => {
                coffer_audit::AuditLog::append(self.audit.as_ref(), &event)
                    .await
                    .map_err(|e| AuthError::Unavailable(e.into()))?;
            }
        }
        self.tokens.revoke(claims).await?;
        Ok(())
    }

    /// Every session of `user` stops working: access tokens (the user's epoch) and refresh
    /// families. Called by the user (revoke-all) or an admin (`actor`).
    ///
    /// # Errors
    /// Dependencies.
    pub async fn revoke_sessions(
        &self,
        actor: Actor,
        user: UserId,
        ctx: &RequestContext,
    ) -> Result<(), AuthError> {
        // No sessions to end for a user that does not exist: say so (no record is written).
        self.load_user(user).await?;
        // Sessions first (with the record), then the epoch: a failure in between leaves the
        // user's access tokens working until the retry, never sessions minting new ones.
        let event = self.event(
            actor,
            Action::UserSessionRevoked,
            Some(user),
            Outcome::Success,
            ctx,
        );
        let receipt = self.store.revoke_user_families(user, &event).await?;
        self.audit.committed_elsewhere(&[(event, receipt)]).await;
        self.revocation
            .revoke_user(&user.to_string())
            .await
            .map_err(TokenError::from)?;
        Ok(())
    }

    /// The emergency revoke: every session (refresh family), then every access token issued so
    /// far (the global epoch), stops working. Everyone logs in again.
    ///
    /// # Errors
    /// Dependencies.
    pub async fn revoke_everyone(
        &self,
        actor: Actor,
        ctx: &RequestContext,
    ) -> Result<u64, AuthError> {
        let mut event = AuditEvent::new(
            actor,
            Action::UserSessionRevoked,
            Subject::System,
            Outcome::Success,
        );
        self.add_context(&mut event, ctx);
        let _ = event.details.insert("scope", code("everyone"));
        let receipt = self.store.revoke_every_family(&event).await?;
        self.audit.committed_elsewhere(&[(event, receipt)]).await;
        Ok(self
            .revocation
            .revoke_everyone()
            .await
            .map_err(TokenError::from)?)
    }

    /// Deletes the refresh tokens of sessions that ended (expired families), the worker's
    /// cleanup. Returns how many tokens went.
    ///
    /// # Errors
    /// Store failures.
    pub async fn purge_ended_sessions(&self) -> Result<u64, AuthError> {
        Ok(self.store.purge_families(self.clock.unix_secs()).await?)
    }
}
