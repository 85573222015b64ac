//! Data-key rotation of one wallet.
//!
//! [`Ledger::rotate_data_key`] has the key provider generate the next version before locking,
//! then in one `apply` makes it current (`Changes::new_data_key`) and re-seals what is mutable
//! under it: the balance, the rolling money-out sum and the signing key's outer layer (`reseal_data_layer`; the PIN layer
//! inside is untouched, so no PIN is needed). Postings and memos are append-only and keep the
//! version they were written under, which stays readable. An operation that loaded the wallet
//! before such a commit meets a version it has not unwrapped (the `DataKeys` answers
//! [`Error::Changed`], as it does for a PIN changed meanwhile) and runs again from loading; so
//! does a rotation that finds, under the lock, that another one came first. Each rotation is
//! audited as `key.data_key_created` with its version.

use coffer_audit::{Action, Actor, AuditEvent, DetailValue, EntityId, Outcome, Subject};
use coffer_crypto::KeyRef;

use crate::domain::{LedgerError, WalletId};
use crate::error::{Error, context};
use crate::port::{Changes, DataKeyRecord, Locked, WalletChange};
use crate::sealing::{balance_aad, signing_key_aad, wallet_key_context};

use super::Ledger;
use super::support::{
    again_if_changed, entity, outflow, seal_outflow, seal_spending, spending, state, with,
};

impl Ledger {
    /// Rotates a wallet's data key: a new version, generated and wrapped by the key provider,
    /// becomes the wallet's current one, and its mutable fields move under it in the same
    /// transaction (the balance, the rolling money-out sum, and the signing key's outer layer; the PIN layer inside is
    /// untouched, so no PIN is needed). History (postings, memos) is append-only and stays
    /// sealed under the versions it was written with, which stay readable. An operation that
    /// loaded the wallet before the rotation committed finds the new version when it locks the
    /// row and runs again. Returns the new version.
    ///
    /// # Errors
    /// Not found, key provider, storage.
    pub async fn rotate_data_key(&self, wallet: WalletId) -> Result<u32, Error> {
        again_if_changed(|| self.rotate_data_key_once(wallet)).await
    }

    async fn rotate_data_key_once(&self, wallet: WalletId) -> Result<u32, Error> {
        let (loaded, mut keys) = self.load(&[wallet]).await?;
        let loaded = loaded
            .into_iter()
            .next()
            .ok_or(Error::WalletNotFound(wallet))?;
        if loaded.record.erased_at.is_some() {
            // Its keys are destroyed: nothing to rotate, and no new key to make for it.
            return Err(LedgerError::Erased.into());
        }
        let current = loaded.record.dek_version;
        let next = loaded
            .keys
            .iter()
            .map(|k| k.version)
            .max()
            .unwrap_or(current)
            .checked_add(1)
            .ok_or_else(|| {
                Error::Corrupt(format!("wallet {wallet} has too many data keys").into())
            })?;
        let generated = self
            .keys
            .generate_data_key(&wallet_key_context(wallet))
            .await?;
        let record = DataKeyRecord {
            wallet,
            version: next,
            kek_version: generated.wrapped.version,
            wrapped: generated.wrapped,
        };
        keys.insert(wallet, next, generated.plaintext);
        let event = AuditEvent::new(
            Actor::Service(EntityId::parse("coffer-ledger").map_err(|e| Error::Storage(e.into()))?),
            Action::KeyDataKeyCreated,
            Subject::Wallet(entity(wallet.as_uuid())),
            Outcome::Success,
        );
        let event = with(event, "version", DetailValue::Int(i64::from(next)));
        let decide = |locked: &Locked<'_>| {
            let rec = locked.wallet(wallet)?;
            if rec.dek_version != current {
                return Err(Error::Changed("its data key was rotated".into()));
            }
            let s = state(&keys, rec)?;
            let balance = keys.seal_i64(
                wallet,
                next,
                &balance_aad(wallet, rec.version + 1),
                s.balance.minor(),
            )?;
            let what = || format!("signing key of wallet {wallet}");
            let old = keys.key(wallet, rec.signing_key.data_key_ref().version())?;
            let moved = rec
                .signing_key
                .reseal_data_layer(
                    old,
                    keys.key(wallet, next)?,
                    &KeyRef::version_only(next),
                    &signing_key_aad(wallet),
                )
                .map_err(|e| Error::Corrupt(context(what(), e)))?;
            Ok(Changes {
                wallets: vec![WalletChange {
                    id: wallet,
                    status: rec.status,
                    balance,
                    signing_key: moved,
                    public_key: rec.public_key,
                    kdf_params: rec.kdf_params.clone(),
                    failed_pins: rec.failed_pins,
                    outflow: seal_outflow(&keys, rec, next, &outflow(&keys, rec)?)?,
                    spending: seal_spending(&keys, rec, next, &spending(&keys, rec)?)?,
                }],
                new_data_key: Some(record.clone()),
                audit: vec![event.clone()],
                ..Changes::default()
            })
        };
        let applied = self.on_wallet(wallet, &keys, &decide).await?;
        self.observe(&applied).await;
        Ok(next)
    }
}
