//! PINs: unsealing a wallet's signing key with its PIN, counting the attempts, and the PIN's own
//! use cases: change (the user, with the old PIN), reset (an administrator: a new signing key)
//! and unlock (an administrator lifts the lockout).
//!
//! Money-out and a PIN change need the wallet's PIN. The consecutive wrong PINs are counted in a
//! column of the wallet (`failed_pins`), so the count survives restarts; the fifth
//! ([`PIN_LOCK_THRESHOLD`]) locks money-out and PIN change until an administrator unlocks them
//! (or resets the PIN), and a right PIN resets the count. The lock holds against a PIN
//! remembered elsewhere too: the domain refuses money-out from a locked wallet, and a PIN change
//! checks the count, unless the request's own attempt was counted for a right PIN.
//!
//! `unlock` has two paths. The warm one: a PIN the verifier remembers as right for this wallet
//! (for a short time; wrong PINs are never remembered) opens the key at once, with no attempt
//! counted and no KDF. The cold one, for any other PIN, which is a guess:
//!
//! 1. Take the wallet's turn (PIN checks of one wallet take turns within a process) and look in
//!    the verifier's memory again: a burst of requests with the right PIN pays one KDF, and the
//!    others find it remembered.
//! 2. A request that repeats an earlier one under its idempotency key is answered as before
//!    without looking at the PIN: a retry reveals nothing and costs no attempt.
//! 3. Read the count: a locked wallet refuses every PIN, right or wrong, before any KDF runs.
//! 4. The KDF runs on the blocking pool. A wrong PIN's verdict is only answered once its attempt
//!    is counted: one transaction, under the wallet's row lock, adds it to the count and writes
//!    its `wallet.pin_failed` record (at the limit also `wallet.pin_locked`, and the verifier
//!    forgets the wallet). If the count reached the limit meanwhile (guesses sent all at once,
//!    or from other replicas), nothing is written and the answer is the lock, the same as for a
//!    right PIN: guesses get no more verdicts than the attempts left. A right PIN ends the run
//!    of wrong ones in the write of the operation that follows; when that operation writes
//!    nothing (refused, or done already by another request under its key), one transaction sets
//!    the count to zero and writes `wallet.pin_attempts_reset`. The count never changes without
//!    its audit record.
//!
//! A PIN change re-seals the same signing key under the new PIN (new salt), written only while
//! the wallet's sealed key is still the one the old PIN opened (otherwise it runs again,
//! [`Error::Changed`]). A reset generates a new signing key; earlier signatures stay verifiable
//! with the archived public key. After each of them, and after an unlock, the verifier forgets
//! the wallet.

use std::sync::atomic::{AtomicU32, Ordering};

use coffer_audit::{Action, AuditEvent, DetailValue, Outcome, Subject};
use coffer_crypto::{KdfParams, KeyRef, Pin, SealedSigningKey, WalletPublicKey, WalletSigningKey};

use crate::domain::{self, LedgerError, PIN_LOCK_THRESHOLD, UserId, WalletId};
use crate::error::{Error, context};
use crate::pin::PinCheckError;
use crate::port::{Changes, Idempotency, WalletRecord};
use crate::sealing::{DataKeys, signing_key_aad};

use super::support::{again_if_changed, corrupt, entity, pin_error, rewrite, state, with};
use super::views::WalletView;
use super::{Caller, Ledger, Unlocked};

impl Ledger {
    /// Unseals a wallet's signing key with `pin`.
    ///
    /// A PIN the verifier remembers as right opens the key at once. Any other PIN is a guess:
    /// first a request that repeats an earlier one under its idempotency key is answered as
    /// before without looking at the PIN (so a retry reveals nothing and costs no attempt);
    /// then a locked wallet is refused before the KDF runs, and a wrong PIN's verdict is given
    /// only after its attempt is counted under the wallet's row lock. Guesses sent all at once
    /// therefore get at most the attempts that are left, and a locked wallet refuses every PIN,
    /// right or wrong, in the same way.
    pub(super) async fn unlock(
        &self,
        caller: Caller,
        rec: &WalletRecord,
        keys: &DataKeys,
        pin: &Pin,
        idem: Option<&Idempotency>,
    ) -> Result<Unlocked, Error> {
        let public = WalletPublicKey::from_bytes(&rec.public_key)
            .map_err(|e| corrupt("public key", rec.id)(e.to_string()))?;
        let (params, sealed) = (&rec.kdf_params, &rec.signing_key);
        let dek = keys.key(rec.id, sealed.data_key_ref().version())?;
        let aad = signing_key_aad(rec.id);
        let cached = || {
            self.pins
                .unseal_if_cached(rec.id, pin, params, sealed, dek, &aad, &public)
                .map(|known| known.map(Unlocked::Key).map_err(pin_error))
        };
        if let Some(known) = cached() {
            return known;
        }
        // One PIN check per wallet at a time in this process: a burst of requests with the right
        // PIN pays one attempt and one KDF, and the others find it remembered.
        let _turn = self.pin_turns.lock(rec.id).await;
        if let Some(known) = cached() {
            return known;
        }
        if let Some(idem) = idem
            && let Some(view) = self.replay(idem).await?
        {
            return Ok(Unlocked::Replayed(view));
        }
        let current = self.store.load_wallets(&[rec.id]).await?;
        if current
            .first()
            .is_some_and(|w| w.record.failed_pins >= PIN_LOCK_THRESHOLD)
        {
            return Err(LedgerError::PinLocked.into());
        }
        match self
            .pins
            .unseal(rec.id, pin, params, sealed, dek, &aad, &public)
            .await
        {
            Ok(key) => Ok(Unlocked::Key(key)),
            Err(PinCheckError::WrongPin) => Err(self.count_wrong_pin(caller, rec.id, keys).await?),
            Err(e) => Err(pin_error(e)),
        }
    }

    /// Counts a wrong PIN and audits it in one transaction; returns the answer it gets:
    /// [`Error::WrongPin`] with the attempts left, or the lock when none was left.
    async fn count_wrong_pin(
        &self,
        caller: Caller,
        wallet: WalletId,
        keys: &DataKeys,
    ) -> Result<Error, Error> {
        let subject = || Subject::Wallet(entity(wallet.as_uuid()));
        // Stays zero when the wallet was locked already: nothing counted.
        let count = AtomicU32::new(0);
        let applied = self
            .on_wallet(wallet, keys, &|locked| {
                let rec = locked.wallet(wallet)?;
                if rec.failed_pins >= PIN_LOCK_THRESHOLD {
                    return Ok(Changes::default());
                }
                let mut change = rewrite(keys, rec, state(keys, rec)?.balance)?;
                change.failed_pins = rec.failed_pins + 1;
                count.store(change.failed_pins, Ordering::Relaxed);
                let failed = AuditEvent::new(
                    caller.actor(),
                    Action::WalletPinFailed,
                    subject(),
                    Outcome::Denied,
                );
                let n = DetailValue::Int(i64::from(change.failed_pins));
                let mut audit = vec![with(failed, "failed_pins", n)];
                if change.failed_pins >= PIN_LOCK_THRESHOLD {
                    audit.push(AuditEvent::new(
                        caller.actor(),
                        Action::WalletPinLocked,
                        subject(),
                        Outcome::Success,
                    ));
                }
                Ok(Changes {
                    wallets: vec![change],
                    audit,
                    ..Changes::default()
                })
            })
            .await?;
        self.observe(&applied).await;
        let count = count.load(Ordering::Relaxed);
        if count >= PIN_LOCK_THRESHOLD {
            self.pins.forget(wallet);
        }
        Ok(match count {
            0 => LedgerError::PinLocked.into(),
            n => Error::WrongPin {
                attempts_left: PIN_LOCK_THRESHOLD.saturating_sub(n),
            },
        })
    }

    /// A right PIN whose operation wrote nothing still ends the run of wrong ones: sets the
    /// count back to zero with its audit record, unless the wallet is locked (only an
    /// administrator lifts a lock). Best effort: a failure is logged and leaves the count as it
    /// was, and the caller answers what its operation answered.
    pub(super) async fn end_wrong_run(
        &self,
        caller: Caller,
        loaded: &WalletRecord,
        keys: &DataKeys,
    ) {
        if loaded.failed_pins == 0 {
            return;
        }
        if let Err(e) = self.reset_wrong_run(caller, loaded.id, keys).await {
            tracing::warn!(error = %e, "could not end a run of wrong PINs after a right one");
        }
    }

    async fn reset_wrong_run(
        &self,
        caller: Caller,
        wallet: WalletId,
        keys: &DataKeys,
    ) -> Result<(), Error> {
        let applied = self
            .on_wallet(wallet, keys, &|locked| {
                let rec = locked.wallet(wallet)?;
                if rec.failed_pins == 0 || rec.failed_pins >= PIN_LOCK_THRESHOLD {
                    return Ok(Changes::default());
                }
                let mut change = rewrite(keys, rec, state(keys, rec)?.balance)?;
                change.failed_pins = 0;
                let event = AuditEvent::new(
                    caller.actor(),
                    Action::WalletPinAttemptsReset,
                    Subject::Wallet(entity(wallet.as_uuid())),
                    Outcome::Success,
                );
                let n = DetailValue::Int(i64::from(rec.failed_pins));
                Ok(Changes {
                    wallets: vec![change],
                    audit: vec![with(event, "failed_pins", n)],
                    ..Changes::default()
                })
            })
            .await?;
        self.observe(&applied).await;
        Ok(())
    }

    /// Lifts a PIN lockout.
    ///
    /// # Errors
    /// Not found, storage.
    pub async fn unlock_pin(&self, admin: UserId, wallet: WalletId) -> Result<WalletView, Error> {
        self.admin_update(admin, wallet, Action::WalletPinUnlocked, &|_, c| {
            c.failed_pins = 0;
            Ok(())
        })
        .await
    }

    /// Changes the PIN: the same signing key, re-sealed under the new PIN (new salt).
    ///
    /// # Errors
    /// [`Error::WrongPin`] (counted), the lockout, malformed PINs, not found.
    pub async fn change_pin(
        &self,
        user: UserId,
        wallet: WalletId,
        old_pin: &Pin,
        new_pin: &Pin,
    ) -> Result<WalletView, Error> {
        again_if_changed(|| self.change_pin_once(user, wallet, old_pin, new_pin)).await
    }

    async fn change_pin_once(
        &self,
        user: UserId,
        wallet: WalletId,
        old: &Pin,
        new: &Pin,
    ) -> Result<WalletView, Error> {
        let caller = Caller::User(user);
        let (loaded, keys) = self.load(&[wallet]).await?;
        let rec = loaded
            .first()
            .map(|w| &w.record)
            .filter(|r| caller.may_see(r))
            .ok_or(Error::WalletNotFound(wallet))?;
        domain::new_pin(new)?;
        let signing = match self.unlock(caller, rec, &keys, old, None).await? {
            Unlocked::Key(key) => key,
            Unlocked::Replayed(_) => {
                return Err(Error::Storage("a PIN change has no idempotency key".into()));
            }
        };
        let sealed = self.seal_signing_key(&signing, new, rec, &keys).await?;
        let expected_key = rec.signing_key.clone();
        let result = self
            .update_wallet(caller, wallet, Action::WalletPinChanged, &keys, &|s, c| {
                if c.signing_key != expected_key {
                    return Err(Error::Changed(
                        "its PIN changed, or its data key was rotated".into(),
                    ));
                }
                if s.failed_pins >= PIN_LOCK_THRESHOLD {
                    return Err(LedgerError::PinLocked.into());
                }
                (c.signing_key, c.kdf_params) = sealed.clone();
                c.failed_pins = 0;
                Ok(())
            })
            .await;
        if result.is_err() {
            self.end_wrong_run(caller, rec, &keys).await;
        }
        self.pins.forget(wallet);
        result
    }

    /// Resets a forgotten PIN (administrators): a new signing key under the new PIN. Earlier
    /// signatures stay verifiable with the archived public key.
    ///
    /// # Errors
    /// Malformed PIN, not found, storage.
    pub async fn reset_pin(
        &self,
        admin: UserId,
        wallet: WalletId,
        new_pin: &Pin,
    ) -> Result<WalletView, Error> {
        again_if_changed(|| self.reset_pin_once(admin, wallet, new_pin)).await
    }

    async fn reset_pin_once(
        &self,
        admin: UserId,
        wallet: WalletId,
        pin: &Pin,
    ) -> Result<WalletView, Error> {
        let (loaded, keys) = self.load(&[wallet]).await?;
        let rec = &loaded.first().ok_or(Error::WalletNotFound(wallet))?.record;
        domain::new_pin(pin)?;
        let signing = WalletSigningKey::generate();
        let public = signing.public_key().to_bytes();
        let sealed = self.seal_signing_key(&signing, pin, rec, &keys).await?;
        self.admin_update(admin, wallet, Action::WalletPinChanged, &|_, c| {
            (c.signing_key, c.kdf_params) = sealed.clone();
            c.public_key = public;
            c.failed_pins = 0;
            Ok(())
        })
        .await
    }

    async fn seal_signing_key(
        &self,
        signing: &WalletSigningKey,
        pin: &Pin,
        rec: &WalletRecord,
        keys: &DataKeys,
    ) -> Result<(SealedSigningKey, KdfParams), Error> {
        let params = KdfParams::generate(self.config.kdf_iterations)
            .map_err(|e| Error::Storage(context("KDF parameters", e)))?;
        let pin_key = self.pins.derive(pin, &params).await.map_err(pin_error)?;
        let sealed = signing
            .seal(
                &pin_key,
                keys.key(rec.id, rec.dek_version)?,
                &KeyRef::version_only(rec.dek_version),
                &signing_key_aad(rec.id),
            )
            .map_err(|e| Error::Storage(e.into()))?;
        Ok((sealed, params))
    }
}
