//! How the ledger's fields are sealed: which data key, and which associated data binds each
//! envelope to its wallet, field and row, so a ciphertext copied to another row, field or
//! version does not open.

use std::collections::HashMap;

use coffer_crypto::{Aad, DataKey, Envelope, KeyRef, open, seal};
use coffer_keys::{KeyContext, KeyProvider};

use crate::domain::{Account, EventId, HoldId, TransactionId, WalletId};
use crate::error::{Error, context};
use crate::port::LoadedWallet;

/// The key-provider context every wallet data key is wrapped with.
#[must_use]
pub fn wallet_key_context(wallet: WalletId) -> KeyContext {
    KeyContext::new()
        .with("purpose", "wallet")
        .with("wallet", wallet.to_string())
}

fn key_appeared(wallet: WalletId, version: u32) -> Error {
    Error::Changed(format!(
        "data key v{version} of wallet {wallet} was added during the operation"
    ))
}

/// A wallet's balance at a row version.
#[must_use]
pub fn balance_aad(wallet: WalletId, version: i64) -> Aad {
    Aad::new("wallet.balance")
        .with(wallet.as_uuid().as_bytes())
        .with(version.to_be_bytes())
}

/// A wallet's rolling money-out sum ([`crate::RollingSum`]) at a row version.
#[must_use]
pub fn outflow_aad(wallet: WalletId, version: i64) -> Aad {
    Aad::new("wallet.outflow")
        .with(wallet.as_uuid().as_bytes())
        .with(version.to_be_bytes())
}

/// A wallet's spending field ([`crate::Spending`]) at a row version.
#[must_use]
pub fn spending_aad(wallet: WalletId, version: i64) -> Aad {
    Aad::new("wallet.spending")
        .with(wallet.as_uuid().as_bytes())
        .with(version.to_be_bytes())
}

/// A wallet's sealed signing key.
#[must_use]
pub fn signing_key_aad(wallet: WalletId) -> Aad {
    Aad::new("wallet.signing_key").with(wallet.as_uuid().as_bytes())
}

/// One posting: transaction, line and account.
#[must_use]
pub fn posting_aad(transaction: TransactionId, line: u16, account: Account) -> Aad {
    let aad = Aad::new("ledger.posting")
        .with(transaction.as_uuid().as_bytes())
        .with(line.to_be_bytes());
    match account {
        Account::Wallet(w) => aad.with("wallet").with(w.as_uuid().as_bytes()),
        Account::Settlement(c) => aad.with("settlement").with(c.code()),
    }
}

/// A transaction's memo.
#[must_use]
pub fn memo_aad(transaction: TransactionId) -> Aad {
    Aad::new("ledger.memo").with(transaction.as_uuid().as_bytes())
}

/// A hold's amount, under its paying wallet's data key.
#[must_use]
pub fn hold_amount_aad(hold: HoldId) -> Aad {
    Aad::new("ledger.hold.amount").with(hold.as_uuid().as_bytes())
}

/// A hold's memo, under its paying wallet's data key.
#[must_use]
pub fn hold_memo_aad(hold: HoldId) -> Aad {
    Aad::new("ledger.hold.memo").with(hold.as_uuid().as_bytes())
}

/// The receiver's copy of a transfer's memo, under the receiving wallet's data key.
#[must_use]
pub fn receiver_memo_aad(transaction: TransactionId, receiver: WalletId) -> Aad {
    Aad::new("ledger.memo.receiver")
        .with(transaction.as_uuid().as_bytes())
        .with(receiver.as_uuid().as_bytes())
}

/// An event's payload, under its wallet's data key: bound to the event, its wallet and its place
/// in the wallet's sequence.
#[must_use]
pub fn event_aad(event: EventId, wallet: WalletId, seq: i64) -> Aad {
    Aad::new("ledger.event")
        .with(event.as_uuid().as_bytes())
        .with(wallet.as_uuid().as_bytes())
        .with(seq.to_be_bytes())
}

/// Unwrapped data keys of the wallets an operation touches, by wallet and version.
#[derive(Default)]
pub struct DataKeys {
    keys: HashMap<(WalletId, u32), DataKey>,
}

impl std::fmt::Debug for DataKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataKeys")
            .field("keys", &self.keys.len())
            .finish()
    }
}

impl DataKeys {
    /// Unwraps every data key of `wallets` not held yet.
    ///
    /// # Errors
    /// [`Error::Keys`] from the provider, [`Error::Corrupt`] for a malformed wrapped key.
    pub async fn unwrap(
        &mut self,
        provider: &dyn KeyProvider,
        wallets: &[LoadedWallet],
    ) -> Result<(), Error> {
        for w in wallets {
            for k in &w.keys {
                if self.keys.contains_key(&(k.wallet, k.version)) {
                    continue;
                }
                let key = provider
                    .unwrap_data_key(&k.wrapped, &wallet_key_context(k.wallet))
                    .await?;
                self.keys.insert((k.wallet, k.version), key);
            }
        }
        Ok(())
    }

    /// Adds a key (a freshly generated one).
    pub fn insert(&mut self, wallet: WalletId, version: u32, key: DataKey) {
        self.keys.insert((wallet, version), key);
    }

    /// Whether any key of `wallet` is held (all of its versions were unwrapped together).
    #[must_use]
    pub fn holds(&self, wallet: WalletId) -> bool {
        self.keys.keys().any(|(w, _)| *w == wallet)
    }

    /// `wallet`'s data key `version`.
    ///
    /// # Errors
    /// [`Error::Changed`] when it was not unwrapped (a data key rotated during the
    /// operation).
    pub fn key(&self, wallet: WalletId, version: u32) -> Result<&DataKey, Error> {
        self.keys
            .get(&(wallet, version))
            .ok_or_else(|| key_appeared(wallet, version))
    }

    /// The newest version held for `wallet`.
    fn newest(&self, wallet: WalletId) -> Option<u32> {
        self.keys
            .keys()
            .filter(|(w, _)| *w == wallet)
            .map(|(_, v)| *v)
            .max()
    }

    /// Seals `plaintext` under `wallet`'s data key `version`.
    ///
    /// # Errors
    /// As [`DataKeys::key`].
    pub fn seal(
        &self,
        wallet: WalletId,
        version: u32,
        aad: &Aad,
        plaintext: &[u8],
    ) -> Result<Envelope, Error> {
        let key = self.key(wallet, version)?;
        seal(key, &KeyRef::version_only(version), aad, plaintext)
            .map_err(|e| Error::Storage(e.into()))
    }

    /// Opens an envelope sealed under one of `wallet`'s data keys.
    ///
    /// # Errors
    /// [`Error::Corrupt`] when it does not parse or authenticate.
    pub fn open(
        &self,
        wallet: WalletId,
        aad: &Aad,
        envelope: &Envelope,
        what: &str,
    ) -> Result<coffer_crypto::SecretBytes, Error> {
        // The wallet's keys were all unwrapped: an envelope naming a version below the newest
        // one held is damaged; one above it was sealed under a data key rotated in since.
        let version = envelope.key_ref().version();
        let key = self.keys.get(&(wallet, version)).ok_or_else(|| {
            if self.newest(wallet).is_some_and(|newest| version > newest) {
                key_appeared(wallet, version)
            } else {
                Error::Corrupt(format!("{what} of wallet {wallet}: no data key v{version}").into())
            }
        })?;
        open(key, aad, envelope)
            .map_err(|e| Error::Corrupt(context(format!("{what} of wallet {wallet}"), e)))
    }

    /// Seals an integer.
    ///
    /// # Errors
    /// As [`DataKeys::seal`].
    pub fn seal_i64(
        &self,
        wallet: WalletId,
        version: u32,
        aad: &Aad,
        value: i64,
    ) -> Result<Envelope, Error> {
        self.seal(wallet, version, aad, &value.to_be_bytes())
    }

    /// Opens an integer.
    ///
    /// # Errors
    /// As [`DataKeys::open`], and for a plaintext that is not 8 bytes.
    pub fn open_i64(
        &self,
        wallet: WalletId,
        aad: &Aad,
        envelope: &Envelope,
        what: &str,
    ) -> Result<i64, Error> {
        let plain = self.open(wallet, aad, envelope, what)?;
        <[u8; 8]>::try_from(plain.expose_secret())
            .map(i64::from_be_bytes)
            .map_err(|_| Error::Corrupt(format!("{what} of wallet {wallet}: not 8 bytes").into()))
    }
}
