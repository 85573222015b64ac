//! Wallet administration: freeze, unfreeze and close (administrators).
//!
//! Freezing stops money leaving a wallet; it still receives deposits and incoming transfers, so
//! freezing does not bounce payments to its owner. A closed wallet accepts nothing, and only an
//! empty one can be closed. Each is one locked update of the wallet's row with its audit record
//! (`wallet.freeze`, `wallet.unfreeze`, `wallet.close`), run again when the wallet changed
//! between loading and locking; the PIN verifier then forgets the wallet.

use coffer_audit::Action;

use crate::domain::{self, LedgerError, UserId, WalletId, WalletStatus};
use crate::error::Error;

use super::Ledger;
use super::views::WalletView;

impl Ledger {
    /// Freezes a wallet: it still receives, nothing leaves.
    ///
    /// # Errors
    /// [`LedgerError::WalletClosed`], not found, storage.
    pub async fn freeze(&self, admin: UserId, wallet: WalletId) -> Result<WalletView, Error> {
        self.set_frozen(admin, wallet, true).await
    }

    /// Unfreezes a wallet.
    ///
    /// # Errors
    /// [`LedgerError::WalletClosed`], not found, storage.
    pub async fn unfreeze(&self, admin: UserId, wallet: WalletId) -> Result<WalletView, Error> {
        self.set_frozen(admin, wallet, false).await
    }

    async fn set_frozen(
        &self,
        admin: UserId,
        wallet: WalletId,
        frozen: bool,
    ) -> Result<WalletView, Error> {
        let (action, status) = if frozen {
            (Action::WalletFreeze, WalletStatus::Frozen)
        } else {
            (Action::WalletUnfreeze, WalletStatus::Active)
        };
        self.admin_update(admin, wallet, action, &|s, c| {
            if s.status == WalletStatus::Closed {
                return Err(LedgerError::WalletClosed.into());
            }
            c.status = status;
            Ok(())
        })
        .await
    }

    /// Closes a wallet; only an empty one.
    ///
    /// # Errors
    /// [`LedgerError::WalletNotEmpty`], [`LedgerError::WalletClosed`], not found, storage.
    pub async fn close(&self, admin: UserId, wallet: WalletId) -> Result<WalletView, Error> {
        self.admin_update(admin, wallet, Action::WalletClose, &|s, c| {
            domain::close(s)?;
            c.status = WalletStatus::Closed;
            Ok(())
        })
        .await
    }
}
