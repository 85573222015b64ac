//! Each user's data key, and its rotation.
//!
//! Every user has a data key of their own, generated and wrapped by the key port; their email,
//! phone, tax id and TOTP secret are envelopes under its current version, bound to the user and
//! the field (the `shared` module holds the key context and associated data; unwrapping the key
//! and sealing a field are shared with registration and TOTP and live in the parent module).
//!
//! A rotation generates the next version, opens every field under the current one and seals it
//! under the new one, and stores the new key with the fields in one conditional write
//! ([`UserStore::rotate_user_key`](crate::store::UserStore::rotate_user_key)): only while the
//! user's key version and TOTP secret are still the ones read, with its audit record. A user
//! changed meanwhile (an enrollment, another rotation) is read again, a few times. Earlier
//! versions stay stored.

use coffer_audit::{Action, Actor, AuditEvent, DetailValue, Outcome, Subject};
use coffer_crypto::{Envelope, open};

use super::error::{AuthError, corrupt};
use super::shared::{entity, field_aad, user_key_context};
use super::{Accounts, seal_field};
use crate::store::UserKeyRecord;
use crate::user::UserId;

impl Accounts {
    /// Rotates a user's data key: a new version, generated and wrapped by the key provider,
    /// becomes current and every personal field (email, phone, tax id, TOTP secret) is sealed
    /// under it in one conditional write; the previous versions stay stored. A user changed
    /// meanwhile (an enrollment, another rotation) is read again, a few times. Returns the new
    /// version.
    ///
    /// # Errors
    /// [`AuthError::UserNotFound`], dependencies; [`AuthError::Unavailable`] when the user kept
    /// changing.
    pub async fn rotate_user_key(&self, user: UserId) -> Result<u32, AuthError> {
        for _ in 0..5 {
            let u = self.load_user(user).await?;
            let old = self.user_key(&u).await?;
            let next = u
                .keys
                .iter()
                .map(|k| k.version)
                .max()
                .unwrap_or(u.record.dek_version)
                .saturating_add(1);
            let generated = self.keys.generate_data_key(&user_key_context(user)).await?;
            let new = &generated.plaintext;
            let move_field = |field: &str, sealed: &Envelope| -> Result<Envelope, AuthError> {
                let plain = open(&old, &field_aad(user, field), sealed).map_err(corrupt)?;
                seal_field(new, user, field, plain.expose_secret())
            };
            let email = move_field("email", &u.record.email)?;
            let phone = u
                .record
                .phone
                .as_ref()
                .map(|p| move_field("phone", p))
                .transpose()?;
            let tax_id = u
                .record
                .tax_id
                .as_ref()
                .map(|t| move_field("tax_id", t))
                .transpose()?;
            let totp_was = u.record.totp.as_ref().map(|t| &t.sealed);
            let totp = totp_was.map(|t| move_field("totp", t)).transpose()?;
            let key = UserKeyRecord {
                version: next,
                kek_version: generated.wrapped.version,
                wrapped: generated.wrapped.clone(),
            };
            let mut event = AuditEvent::new(
                Actor::Service(entity("coffer-auth")),
                Action::KeyDataKeyCreated,
                Subject::User(entity(user)),
                Outcome::Success,
            );
            let _ = event
                .details
                .insert("version", DetailValue::Int(i64::from(next)));
            let receipt = self
                .store
                .rotate_user_key(&crate::store::UserKeyRotation {
                    user,
                    from: u.record.dek_version,
                    key: &key,
                    email: &email,
                    phone: phone.as_ref(),
                    tax_id: tax_id.as_ref(),
                    totp: totp.as_ref(),
                    totp_was,
                    audit: &event,
                })
                .await?;
            if let Some(receipt) = receipt {
                self.audit.committed_elsewhere(&[(event, receipt)]).await;
                return Ok(next);
            }
        }
        Err(AuthError::Unavailable(
            format!("user {user} kept changing during a data-key rotation; try again later").into(),
        ))
    }
}
