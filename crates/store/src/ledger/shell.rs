//! The public store types' shell, one per dialect.

/// The public store type `$name` for one dialect: a thin shell that implements
/// [`coffer_ledger::port::LedgerStore`] by calling its [`Ledger`]. Its pool and audit log types
/// are named for the documentation (they are the dialect's).
macro_rules! ledger_store {
    (
        $(#[$doc:meta])*
        $name:ident, dialect = $D:ty, pool = $Pool:ty, audit = $Audit:ty
    ) => {
        $(#[$doc])*
        #[derive(Clone)]
        pub struct $name(super::Ledger<$D>);

        coffer_macros::debug_non_exhaustive!(self => $name {});

        impl $name {
            /// A store on `pool` (migrated), writing its audit records through `audit` (on the
            /// same database).
            #[must_use]
            pub fn new(pool: $Pool, audit: $Audit) -> Self {
                Self(super::Ledger::new(pool, audit))
            }

            /// The same store, reading the time from `clock`.
            #[must_use]
            pub fn with_clock(self, clock: std::sync::Arc<dyn coffer_clock::Clock>) -> Self {
                Self(self.0.with_clock(clock))
            }
        }

        #[async_trait::async_trait]
        impl coffer_ledger::port::LedgerStore for $name {
            async fn create_wallet(
                &self,
                new: coffer_ledger::port::NewWallet,
            ) -> Result<coffer_audit::Receipt, coffer_ledger::Error> {
                self.0.create_wallet(new).await
            }

            async fn load_wallets(
                &self,
                ids: &[coffer_ledger::WalletId],
            ) -> Result<Vec<coffer_ledger::port::LoadedWallet>, coffer_ledger::Error> {
                self.0.load_wallets(ids).await
            }

            async fn wallets_where(
                &self,
                filter: &coffer_ledger::port::WalletFilter,
                after: Option<coffer_ledger::WalletId>,
                limit: u32,
            ) -> Result<Vec<coffer_ledger::port::WalletRecord>, coffer_ledger::Error> {
                self.0.wallets_where(filter, after, limit).await
            }

            async fn apply(
                &self,
                op: coffer_ledger::port::Apply<'_>,
            ) -> Result<coffer_ledger::port::Applied, coffer_ledger::Error> {
                self.0.apply(op).await
            }

            async fn idempotent(
                &self,
                scope: &str,
                key: &str,
            ) -> Result<Option<coffer_ledger::port::TransactionRecord>, coffer_ledger::Error> {
                self.0.idempotent(scope, key).await
            }

            async fn transaction(
                &self,
                id: coffer_ledger::TransactionId,
            ) -> Result<Option<coffer_ledger::port::TransactionRecord>, coffer_ledger::Error> {
                self.0.transaction(id).await
            }

            async fn history(
                &self,
                wallet: coffer_ledger::WalletId,
                filter: &coffer_ledger::port::HistoryFilter,
                before: Option<i64>,
                limit: u32,
            ) -> Result<coffer_ledger::port::HistoryPage, coffer_ledger::Error> {
                self.0.history(wallet, filter, before, limit).await
            }

            async fn public_keys(
                &self,
                wallet: coffer_ledger::WalletId,
            ) -> Result<Vec<[u8; 32]>, coffer_ledger::Error> {
                self.0.public_keys(wallet).await
            }

            async fn wallets_after(
                &self,
                after: Option<coffer_ledger::WalletId>,
                limit: u32,
            ) -> Result<Vec<coffer_ledger::port::LoadedWallet>, coffer_ledger::Error> {
                self.0.wallets_after(after, limit).await
            }

            async fn postings_of(
                &self,
                wallet: coffer_ledger::WalletId,
            ) -> Result<
                Vec<(coffer_ledger::TransactionId, coffer_ledger::port::PostingRecord)>,
                coffer_ledger::Error,
            > {
                self.0.postings_of(wallet).await
            }

            async fn set_receiver_memo(
                &self,
                id: coffer_ledger::TransactionId,
                memo: &Envelope,
            ) -> Result<bool, coffer_ledger::Error> {
                self.0.set_receiver_memo(id, memo).await
            }

            async fn hold(
                &self,
                id: coffer_ledger::domain::HoldId,
            ) -> Result<Option<coffer_ledger::port::HoldRecord>, coffer_ledger::Error> {
                self.0.hold(id).await
            }

            async fn holds_of(
                &self,
                wallet: coffer_ledger::WalletId,
                before: Option<coffer_ledger::domain::HoldId>,
                limit: u32,
            ) -> Result<Vec<coffer_ledger::port::HoldRecord>, coffer_ledger::Error> {
                self.0.holds_of(wallet, before, limit).await
            }

            async fn hold_by_key(
                &self,
                scope: &str,
                key: &str,
            ) -> Result<Option<coffer_ledger::port::HoldRecord>, coffer_ledger::Error> {
                self.0.hold_by_key(scope, key).await
            }

            async fn wallets_with_lapsed_holds(
                &self,
                now: i64,
                limit: u32,
            ) -> Result<Vec<coffer_ledger::WalletId>, coffer_ledger::Error> {
                self.0.wallets_with_lapsed_holds(now, limit).await
            }

            async fn transactions_after(
                &self,
                after: Option<coffer_ledger::TransactionId>,
                limit: u32,
            ) -> Result<Vec<coffer_ledger::port::TransactionRecord>, coffer_ledger::Error> {
                self.0.transactions_after(after, limit).await
            }

            async fn events_after(
                &self,
                after: Option<coffer_ledger::EventId>,
                limit: u32,
            ) -> Result<Vec<coffer_ledger::port::EventRecord>, coffer_ledger::Error> {
                self.0.events_after(after, limit).await
            }

            async fn events_of(
                &self,
                wallet: coffer_ledger::WalletId,
            ) -> Result<Vec<coffer_ledger::port::EventRecord>, coffer_ledger::Error> {
                self.0.events_of(wallet).await
            }
        }
    };
}

pub(super) use ledger_store;
