//! [`Wallets`]: the wallet and money use cases (open, list, read, history, one transaction,
//! change the PIN, deposit, withdraw, transfer; holds placed, read, captured and voided), each checking the caller's permission and the
//! read rule, and giving money-out the second-factor cap ([`StepUp`]) the ledger applies to the
//! sending wallet's rolling window.

use std::sync::Arc;

use coffer_auth::mfa::MfaRequired;
use coffer_auth::{MfaRule, Permission, Principal, Rbac};
use coffer_ledger::port::HistoryFilter;
use coffer_ledger::{
    Amount, Caller, Currency, HistoryCursor, HistoryPageView, HoldId, HoldPageView, HoldView,
    IdempotencyKey, Ledger, LedgerError, LimitsView, MoneyRequest, Pin, StepUp, TransactionId,
    TransactionView, WalletCursor, WalletId, WalletPageView, WalletView,
};

use crate::UseCaseError;
use crate::shared::require;

/// The wallet and money use cases.
#[derive(Debug, Clone)]
pub struct Wallets {
    ledger: Arc<Ledger>,
    rbac: Rbac,
    mfa: MfaRule,
}

impl Wallets {
    /// The use cases over `ledger`, with `rbac` mapping roles to permissions and `mfa` the
    /// step-up rule for money-out.
    #[must_use]
    pub fn new(ledger: Arc<Ledger>, rbac: Rbac, mfa: MfaRule) -> Self {
        Self { ledger, rbac, mfa }
    }

    fn require(&self, principal: &Principal, permission: Permission) -> Result<(), UseCaseError> {
        require(&self.rbac, principal, permission)
    }

    /// Who the principal is to the ledger when reading: whoever may administer wallets reads
    /// any; everyone else reads their own.
    #[must_use]
    pub fn reader(&self, principal: &Principal) -> Caller {
        if principal.allows(&self.rbac, Permission::WalletWrite) {
            Caller::Admin(principal.user)
        } else {
            Caller::User(principal.user)
        }
    }

    /// Opens a wallet for the principal (`wallet:manage`).
    ///
    /// # Errors
    /// [`UseCaseError::Forbidden`]; the ledger's refusals.
    pub async fn open_wallet(
        &self,
        principal: &Principal,
        currency: Currency,
        pin: &Pin,
    ) -> Result<WalletView, UseCaseError> {
        self.require(principal, Permission::WalletManage)?;
        Ok(self
            .ledger
            .open_wallet(principal.user, currency, pin)
            .await?)
    }

    /// A page of the principal's own wallets (`wallet:read`).
    ///
    /// # Errors
    /// [`UseCaseError::Forbidden`]; the ledger's errors (a bad limit among them).
    pub async fn wallets(
        &self,
        principal: &Principal,
        cursor: Option<WalletCursor>,
        limit: u32,
    ) -> Result<WalletPageView, UseCaseError> {
        self.require(principal, Permission::WalletRead)?;
        Ok(self
            .ledger
            .wallets_of(principal.user, cursor, limit)
            .await?)
    }

    /// One wallet the principal may read (`wallet:read`).
    ///
    /// # Errors
    /// [`UseCaseError::Forbidden`]; not found for a wallet the principal may not read.
    pub async fn wallet(
        &self,
        principal: &Principal,
        wallet: WalletId,
    ) -> Result<WalletView, UseCaseError> {
        self.require(principal, Permission::WalletRead)?;
        Ok(self.ledger.wallet(self.reader(principal), wallet).await?)
    }

    /// A page of a wallet's holds, as payer and as payee (`wallet:read`).
    ///
    /// # Errors
    /// As [`Wallets::wallet`], and the ledger's refusal of a bad limit.
    pub async fn holds(
        &self,
        principal: &Principal,
        wallet: WalletId,
        before: Option<HoldId>,
        limit: u32,
    ) -> Result<HoldPageView, UseCaseError> {
        self.require(principal, Permission::WalletRead)?;
        Ok(self
            .ledger
            .holds_of(self.reader(principal), wallet, before, limit)
            .await?)
    }

    /// A wallet's spending limits and what remains under each (`wallet:read`).
    ///
    /// # Errors
    /// As [`Wallets::wallet`].
    pub async fn limits(
        &self,
        principal: &Principal,
        wallet: WalletId,
    ) -> Result<LimitsView, UseCaseError> {
        self.require(principal, Permission::WalletRead)?;
        Ok(self.ledger.limits(self.reader(principal), wallet).await?)
    }

    /// A page of a wallet's history, the transactions `filter` selects (`wallet:read`).
    ///
    /// # Errors
    /// As [`Wallets::wallet`], and the ledger's refusal of a bad limit or time range.
    pub async fn history(
        &self,
        principal: &Principal,
        wallet: WalletId,
        filter: &HistoryFilter,
        cursor: Option<HistoryCursor>,
        limit: u32,
    ) -> Result<HistoryPageView, UseCaseError> {
        self.require(principal, Permission::WalletRead)?;
        Ok(self
            .ledger
            .history_where(self.reader(principal), wallet, filter, cursor, limit)
            .await?)
    }

    /// One transaction of a wallet the principal may read (`wallet:read`).
    ///
    /// # Errors
    /// [`UseCaseError::Forbidden`]; not found for one the principal may not read.
    pub async fn transaction(
        &self,
        principal: &Principal,
        transaction: TransactionId,
    ) -> Result<TransactionView, UseCaseError> {
        self.require(principal, Permission::WalletRead)?;
        Ok(self
            .ledger
            .transaction(self.reader(principal), transaction)
            .await?)
    }

    /// Changes the PIN of the principal's wallet (`wallet:manage`).
    ///
    /// # Errors
    /// [`UseCaseError::Forbidden`]; the ledger's refusals (wrong PIN, lockout, not found).
    pub async fn change_pin(
        &self,
        principal: &Principal,
        wallet: WalletId,
        old_pin: &Pin,
        new_pin: &Pin,
    ) -> Result<WalletView, UseCaseError> {
        self.require(principal, Permission::WalletManage)?;
        Ok(self
            .ledger
            .change_pin(principal.user, wallet, old_pin, new_pin)
            .await?)
    }

    /// Deposits into the principal's wallet (`wallet:deposit`).
    ///
    /// # Errors
    /// [`UseCaseError::Forbidden`]; the ledger's refusals.
    pub async fn deposit(
        &self,
        principal: &Principal,
        wallet: WalletId,
        request: &MoneyRequest,
    ) -> Result<TransactionView, UseCaseError> {
        self.require(principal, Permission::WalletDeposit)?;
        Ok(self.ledger.deposit(principal.user, wallet, request).await?)
    }

    /// Withdraws from the principal's wallet (`wallet:withdraw`, its PIN, and a second factor
    /// when the wallet's rolling window would pass the threshold).
    ///
    /// # Errors
    /// [`UseCaseError::Forbidden`], [`UseCaseError::MfaRequired`]; the ledger's refusals.
    pub async fn withdraw(
        &self,
        principal: &Principal,
        wallet: WalletId,
        pin: &Pin,
        request: &MoneyRequest,
    ) -> Result<TransactionView, UseCaseError> {
        self.require(principal, Permission::WalletWithdraw)?;
        let step_up = self.step_up(principal, request);
        second_factor(
            self.ledger
                .withdraw(principal.user, wallet, pin, request, step_up)
                .await,
        )
    }

    /// Transfers from the principal's wallet to another (`wallet:transfer`, the sending
    /// wallet's PIN, and a second factor as for [`Wallets::withdraw`]).
    ///
    /// # Errors
    /// [`UseCaseError::Forbidden`], [`UseCaseError::MfaRequired`]; the ledger's refusals.
    pub async fn transfer(
        &self,
        principal: &Principal,
        from: WalletId,
        to: WalletId,
        pin: &Pin,
        request: &MoneyRequest,
    ) -> Result<TransactionView, UseCaseError> {
        self.require(principal, Permission::WalletTransfer)?;
        let step_up = self.step_up(principal, request);
        second_factor(
            self.ledger
                .transfer(principal.user, from, to, pin, request, step_up)
                .await,
        )
    }

    /// Places a hold on the principal's wallet for `to` (a held transfer, `wallet:transfer`) or
    /// for a payout (`None`, `wallet:withdraw`), with its PIN and a second factor as for
    /// [`Wallets::withdraw`].
    ///
    /// # Errors
    /// [`UseCaseError::Forbidden`], [`UseCaseError::MfaRequired`]; the ledger's refusals.
    pub async fn place_hold(
        &self,
        principal: &Principal,
        wallet: WalletId,
        to: Option<WalletId>,
        pin: &Pin,
        request: &MoneyRequest,
        expires_in_secs: Option<u32>,
    ) -> Result<HoldView, UseCaseError> {
        self.require(
            principal,
            if to.is_some() {
                Permission::WalletTransfer
            } else {
                Permission::WalletWithdraw
            },
        )?;
        let step_up = self.step_up(principal, request);
        self.ledger
            .place_hold(
                principal.user,
                wallet,
                to,
                pin,
                request,
                expires_in_secs,
                step_up,
            )
            .await
            .map_err(second_factor_of)
    }

    /// A hold (`wallet:read`, or a capturing service's `hold:capture`): its payer, its payee,
    /// an administrator or a capturing service sees it.
    ///
    /// # Errors
    /// [`UseCaseError::Forbidden`]; not found.
    pub async fn hold(&self, principal: &Principal, id: HoldId) -> Result<HoldView, UseCaseError> {
        let by = self.hold_party(principal, Permission::HoldCapture)?;
        Ok(self.ledger.hold(by, id).await?)
    }

    /// Captures a hold, in full or `amount` of it: a held transfer's payee (`wallet:read`), or
    /// any hold by a capturing service (`hold:capture`).
    ///
    /// # Errors
    /// [`UseCaseError::Forbidden`]; not found; the ledger's refusals.
    pub async fn capture_hold(
        &self,
        principal: &Principal,
        id: HoldId,
        amount: Option<Amount>,
        key: &IdempotencyKey,
    ) -> Result<(HoldView, TransactionView), UseCaseError> {
        let by = self.hold_party(principal, Permission::HoldCapture)?;
        Ok(self.ledger.capture_hold(by, id, amount, key).await?)
    }

    /// Voids a hold: a held transfer's payee or a held withdrawal's payer (`wallet:read`), or
    /// any hold by an administrator (`hold:void`).
    ///
    /// # Errors
    /// [`UseCaseError::Forbidden`]; not found; the ledger's refusals.
    pub async fn void_hold(
        &self,
        principal: &Principal,
        id: HoldId,
        key: &IdempotencyKey,
    ) -> Result<HoldView, UseCaseError> {
        let by = self.hold_party(principal, Permission::HoldVoid)?;
        Ok(self.ledger.void_hold(by, id, key).await?)
    }

    /// Who the principal is to a hold: a capturing service (`hold:capture`) or an administrator
    /// (`hold:void`) when it holds `elevated`; else a user, who needs `wallet:read` (the ledger
    /// then lets only the hold's parties through).
    fn hold_party(
        &self,
        principal: &Principal,
        elevated: Permission,
    ) -> Result<Caller, UseCaseError> {
        if principal.allows(&self.rbac, elevated) {
            return Ok(match elevated {
                Permission::HoldVoid => Caller::Admin(principal.user),
                _ => Caller::Service(principal.user),
            });
        }
        self.require(principal, Permission::WalletRead)?;
        Ok(Caller::User(principal.user))
    }

    /// The cap on the sending wallet's rolling window for this token: the ledger applies it
    /// under the wallet's lock, after "not found" for a wallet that is not the caller's.
    fn step_up(&self, principal: &Principal, request: &MoneyRequest) -> StepUp {
        let exponent = u32::from(request.money.currency.exponent());
        StepUp {
            cap_minor: self.mfa.cap_minor(&principal.claims.amr, exponent),
        }
    }
}

/// The ledger's refusal for want of a second factor is the use case's [`MfaRequired`].
fn second_factor(
    result: Result<TransactionView, coffer_ledger::Error>,
) -> Result<TransactionView, UseCaseError> {
    result.map_err(second_factor_of)
}

fn second_factor_of(e: coffer_ledger::Error) -> UseCaseError {
    match e {
        coffer_ledger::Error::Rejected(LedgerError::SecondFactorRequired) => MfaRequired.into(),
        e => e.into(),
    }
}
