//! The ledger as a client drives it. The cases send what a request carries (strings), and
//! [`Client`] parses them with the [`request`](crate::request) parsers, as a driving adapter
//! does, before it calls the service: so a case that sends a malformed field sees the refusal a
//! client sees. Everything else is the [`Ledger`] itself (`Client` dereferences to it).

use std::ops::Deref;

use crate::domain::HoldId;
use crate::request::{StepUp, parse_pin};
use crate::{
    Amount, Caller, Currency, Error, HistoryCursor, HistoryPageView, HoldView, IdempotencyKey,
    Ledger, Reason, TransactionId, TransactionView, UserId, WalletCursor, WalletId, WalletPageView,
    WalletView,
};

/// A money request as a client sends it (`Debug` leaves out the amount and the memo, as the
/// parsed request's does).
#[derive(Clone, Copy)]
pub struct MoneyRequest<'a> {
    /// Minor units.
    pub amount_minor: i64,
    /// ISO 4217 code.
    pub currency: &'a str,
    /// The memo, if any.
    pub memo: Option<&'a str>,
    /// The idempotency key.
    pub idempotency_key: &'a str,
}

impl MoneyRequest<'_> {
    /// Parses it against the ledger's maximum amount.
    ///
    /// # Errors
    /// What [`crate::MoneyRequest::parse`] refuses.
    pub fn parse(&self, ledger: &Ledger) -> Result<crate::MoneyRequest, Error> {
        crate::MoneyRequest::parse(
            self.amount_minor,
            self.currency,
            self.memo,
            self.idempotency_key,
            ledger.config().max_amount_minor,
        )
    }
}

coffer_macros::debug_non_exhaustive!(self => MoneyRequest<'_> { currency, idempotency_key });

/// A [`Ledger`] driven with strings (see the [module documentation](self)).
#[derive(Debug)]
pub struct Client(Ledger);

impl Client {
    /// Drives `ledger`.
    #[must_use]
    pub fn new(ledger: Ledger) -> Self {
        Self(ledger)
    }

    /// [`Ledger::open_wallet`].
    ///
    /// # Errors
    /// A malformed currency or PIN; the ledger's.
    pub async fn open_wallet(
        &self,
        owner: UserId,
        currency: &str,
        pin: &str,
    ) -> Result<WalletView, Error> {
        let currency = Currency::parse(currency)?;
        self.0.open_wallet(owner, currency, &parse_pin(pin)?).await
    }

    /// [`Ledger::deposit`].
    ///
    /// # Errors
    /// A malformed request; the ledger's.
    pub async fn deposit(
        &self,
        user: UserId,
        wallet: WalletId,
        request: &MoneyRequest<'_>,
    ) -> Result<TransactionView, Error> {
        let request = request.parse(&self.0)?;
        self.0.deposit(user, wallet, &request).await
    }

    /// [`Ledger::withdraw`], with no second-factor cap.
    ///
    /// # Errors
    /// A malformed request or PIN; the ledger's.
    pub async fn withdraw(
        &self,
        user: UserId,
        wallet: WalletId,
        pin: &str,
        request: &MoneyRequest<'_>,
    ) -> Result<TransactionView, Error> {
        let request = request.parse(&self.0)?;
        self.0
            .withdraw(user, wallet, &parse_pin(pin)?, &request, StepUp::default())
            .await
    }

    /// [`Ledger::transfer`], with no second-factor cap.
    ///
    /// # Errors
    /// A malformed request or PIN; the ledger's.
    pub async fn transfer(
        &self,
        user: UserId,
        from: WalletId,
        to: WalletId,
        pin: &str,
        request: &MoneyRequest<'_>,
    ) -> Result<TransactionView, Error> {
        let request = request.parse(&self.0)?;
        self.0
            .transfer(
                user,
                from,
                to,
                &parse_pin(pin)?,
                &request,
                StepUp::default(),
            )
            .await
    }

    /// [`Ledger::change_pin`].
    ///
    /// # Errors
    /// A malformed PIN; the ledger's.
    pub async fn change_pin(
        &self,
        user: UserId,
        wallet: WalletId,
        old_pin: &str,
        new_pin: &str,
    ) -> Result<WalletView, Error> {
        let (old, new) = (parse_pin(old_pin)?, parse_pin(new_pin)?);
        self.0.change_pin(user, wallet, &old, &new).await
    }

    /// [`Ledger::reset_pin`].
    ///
    /// # Errors
    /// A malformed PIN; the ledger's.
    pub async fn reset_pin(
        &self,
        admin: UserId,
        wallet: WalletId,
        new_pin: &str,
    ) -> Result<WalletView, Error> {
        self.0.reset_pin(admin, wallet, &parse_pin(new_pin)?).await
    }

    /// [`Ledger::reverse`].
    ///
    /// # Errors
    /// A malformed key or reason; the ledger's.
    pub async fn reverse(
        &self,
        admin: UserId,
        transaction: TransactionId,
        reason: &str,
        idempotency_key: &str,
    ) -> Result<TransactionView, Error> {
        let key = IdempotencyKey::parse(idempotency_key)?;
        let reason = Reason::parse(reason)?;
        self.0.reverse(admin, transaction, &reason, &key).await
    }

    /// [`Ledger::history`].
    ///
    /// # Errors
    /// A malformed cursor; the ledger's.
    pub async fn history(
        &self,
        caller: Caller,
        wallet: WalletId,
        cursor: Option<&str>,
        limit: u32,
    ) -> Result<HistoryPageView, Error> {
        let before = cursor.map(HistoryCursor::parse).transpose()?;
        self.0.history(caller, wallet, before, limit).await
    }

    /// [`Ledger::place_hold`], with no second-factor cap.
    ///
    /// # Errors
    /// A malformed request or PIN; the ledger's.
    pub async fn place_hold(
        &self,
        user: UserId,
        wallet: WalletId,
        to: Option<WalletId>,
        pin: &str,
        request: &MoneyRequest<'_>,
        expires_in_secs: Option<u32>,
    ) -> Result<HoldView, Error> {
        let request = request.parse(&self.0)?;
        self.0
            .place_hold(
                user,
                wallet,
                to,
                &parse_pin(pin)?,
                &request,
                expires_in_secs,
                StepUp::default(),
            )
            .await
    }

    /// [`Ledger::capture_hold`].
    ///
    /// # Errors
    /// A malformed amount or key; the ledger's.
    pub async fn capture(
        &self,
        by: Caller,
        hold: HoldId,
        amount_minor: Option<i64>,
        idempotency_key: &str,
    ) -> Result<(HoldView, TransactionView), Error> {
        let max = self.0.config().max_amount_minor;
        let amount = amount_minor
            .map(|a| Amount::parse(a, max))
            .transpose()
            .map_err(|e| Error::Rejected(e.into()))?;
        let key = IdempotencyKey::parse(idempotency_key)?;
        self.0.capture_hold(by, hold, amount, &key).await
    }

    /// [`Ledger::void_hold`].
    ///
    /// # Errors
    /// A malformed key; the ledger's.
    pub async fn void(
        &self,
        by: Caller,
        hold: HoldId,
        idempotency_key: &str,
    ) -> Result<HoldView, Error> {
        let key = IdempotencyKey::parse(idempotency_key)?;
        self.0.void_hold(by, hold, &key).await
    }

    /// [`Ledger::wallets_of`].
    ///
    /// # Errors
    /// A malformed cursor; the ledger's.
    pub async fn wallets_of(
        &self,
        owner: UserId,
        cursor: Option<&str>,
        limit: u32,
    ) -> Result<WalletPageView, Error> {
        let after = cursor.map(WalletCursor::parse).transpose()?;
        self.0.wallets_of(owner, after, limit).await
    }
}

impl Deref for Client {
    type Target = Ledger;

    fn deref(&self) -> &Ledger {
        &self.0
    }
}
