//! The ledger's storage port: rows as stored (every amount, balance, memo and signing key an
//! envelope the store cannot read), decoded by the store into their types (an [`Envelope`], a
//! [`SealedSigningKey`], [`KdfParams`], a [`WrappedKey`]; bytes that do not decode are
//! [`Error::Corrupt`] there), and one transactional primitive, [`LedgerStore::apply`].
//!
//! `apply` is the whole of a ledger operation's database transaction: it locks the wallets (in
//! wallet-id order, so two operations never wait on each other in a cycle), reads their active
//! holds and the hold the operation resolves (every change to a hold holds its paying wallet's
//! lock) and, for an erasure, the active holds paying into them (placing one locks its payee
//! too), looks up the idempotency key, hands the locked rows to the caller's `decide` (pure and
//! synchronous: the service decrypts, asks the domain, encrypts), writes what `decide` returned
//! together with the audit records, and commits. Nothing slow runs inside it: data keys are unwrapped and PINs
//! checked before it is called.

use std::fmt;

use async_trait::async_trait;
use coffer_audit::{AuditEvent, Receipt};
use coffer_crypto::{Envelope, KdfParams, SealedSigningKey, WalletSignature};
use coffer_keys::WrappedKey;

use crate::domain::{
    EventId, EventKind, HoldId, HoldStatus, TransactionId, TransactionKind, UserId, WalletId,
    WalletStatus,
};
use crate::error::Error;
use crate::money::Currency;

/// A wallet row as stored.
#[derive(Clone, PartialEq, Eq)]
pub struct WalletRecord {
    /// Which wallet.
    pub id: WalletId,
    /// Its owner.
    pub owner: UserId,
    /// Its currency.
    pub currency: Currency,
    /// Its status.
    pub status: WalletStatus,
    /// Row version: 1 at creation, +1 on every write. The balance envelope is bound to it and
    /// the wallet's postings are numbered by it (the history cursor).
    pub version: i64,
    /// The balance envelope (under the data key, bound to wallet, field and version).
    pub balance: Envelope,
    /// The data key version new envelopes use.
    pub dek_version: u32,
    /// The signing key, sealed under the PIN key and then the data key.
    pub signing_key: SealedSigningKey,
    /// Its public half (public, stored plain so anyone can verify).
    pub public_key: [u8; 32],
    /// The PIN KDF's parameters (iterations and salt).
    pub kdf_params: KdfParams,
    /// Consecutive wrong PINs.
    pub failed_pins: u32,
    /// The rolling money-out sum's envelope (bound to wallet, field and version like the
    /// balance); `None` for an empty window (a row never written since the column was added).
    pub outflow: Option<Envelope>,
    /// The spending field's envelope ([`Spending`](crate::Spending): the wallet's own limits
    /// and what it has sent), bound like the balance; `None` for a row never written since the
    /// field was added (no own limits, nothing sent).
    pub spending: Option<Envelope>,
    /// Created, microseconds since the epoch.
    pub created_at: i64,
    /// Last written, microseconds since the epoch.
    pub updated_at: i64,
    /// When its owner was erased (its data keys destroyed; it was closed empty), microseconds
    /// since the epoch: its envelopes no longer open and it has no key rows.
    pub erased_at: Option<i64>,
    /// How many events it has had: the last number of its event sequence (0: none yet).
    pub event_seq: i64,
    /// Its active holds (as the paying wallet), oldest first, lapsed ones included: filled where
    /// a decision or a view needs them (loads and locks), empty in listings.
    pub holds: Vec<HoldRecord>,
}

coffer_macros::debug_non_exhaustive!(self => WalletRecord { id, owner, currency, status, version, dek_version, failed_pins, event_seq, erased_at, holds });

/// An event as the outbox stores it (see [`crate::domain::events`]): what routes and orders it
/// in the clear, its payload ([`EventData`](crate::EventData)) sealed under its wallet's data
/// key.
#[derive(Clone, PartialEq, Eq)]
pub struct EventRecord {
    /// Its id (UUID v7).
    pub id: EventId,
    /// The wallet it is about.
    pub wallet: WalletId,
    /// Its number in the wallet's sequence, from 1.
    pub seq: i64,
    /// What happened.
    pub kind: EventKind,
    /// When, microseconds since the epoch.
    pub at: i64,
    /// The payload, bound to id, wallet and number
    /// ([`event_aad`](crate::sealing::event_aad)).
    pub data: Envelope,
}

coffer_macros::debug_non_exhaustive!(self => EventRecord { id, wallet, seq, kind, at });

/// A hold as stored: its amount and memo sealed under the paying wallet's data key.
#[derive(Clone, PartialEq, Eq)]
pub struct HoldRecord {
    /// Its id (UUID v7).
    pub id: HoldId,
    /// The paying wallet.
    pub wallet: WalletId,
    /// A held transfer's destination; `None` for a held withdrawal.
    pub to_wallet: Option<WalletId>,
    /// Its currency.
    pub currency: Currency,
    /// The most it may capture, an envelope bound to the hold.
    pub amount: Envelope,
    /// Its memo's envelope, if any.
    pub memo: Option<Envelope>,
    /// When it was placed, microseconds since the epoch.
    pub created_at: i64,
    /// When it stops counting and can no longer be captured.
    pub expires_at: i64,
    /// Its status as stored (an active hold past its expiry is expired for every purpose).
    pub status: HoldStatus,
    /// When it was captured, voided or written expired.
    pub resolved_at: Option<i64>,
    /// The capture's transaction.
    pub capture: Option<TransactionId>,
    /// Who placed it (the idempotency scope) and under which key, with the request's hash.
    pub placed: Idempotency,
    /// The key a capture or void was made under, when one was (the replay of that request).
    pub resolved: Option<Idempotency>,
    /// The paying wallet's signature over the hold's bytes: it authorises the captures.
    pub signature: WalletSignature,
    /// The public key that made it.
    pub public_key: [u8; 32],
}

coffer_macros::debug_non_exhaustive!(self => HoldRecord { id, wallet, to_wallet, currency, status, expires_at });

/// A hold's resolution, written under its paying wallet's lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HoldChange {
    /// Which hold.
    pub id: HoldId,
    /// Captured, voided or expired.
    pub status: HoldStatus,
    /// When.
    pub at: i64,
    /// The capture's transaction, for a capture.
    pub capture: Option<TransactionId>,
    /// The request's idempotency key (none for an expiry).
    pub resolved: Option<Idempotency>,
}

/// One version of a wallet's data key, wrapped by the key provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataKeyRecord {
    /// Whose.
    pub wallet: WalletId,
    /// Which version.
    pub version: u32,
    /// The wrapped key.
    pub wrapped: WrappedKey,
    /// The master key version it is wrapped under (the rotation work list).
    pub kek_version: u32,
}

/// A wallet with its data keys, as loaded before an operation.
#[derive(Debug, Clone)]
pub struct LoadedWallet {
    /// The row.
    pub record: WalletRecord,
    /// Every version of its data key.
    pub keys: Vec<DataKeyRecord>,
}

/// Which wallets a listing selects: each field set narrows it (none set: every wallet).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WalletFilter {
    /// Only this owner's.
    pub owner: Option<UserId>,
    /// Only in this status.
    pub status: Option<WalletStatus>,
    /// Only in this currency.
    pub currency: Option<Currency>,
}

/// Which of a wallet's transactions a history page selects: each field set narrows it. Kind,
/// time and the other wallet are served by what the database holds in the clear; the amount
/// range by the ledger after decryption.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HistoryFilter {
    /// Only this kind.
    pub kind: Option<TransactionKind>,
    /// Only at or after this time, microseconds since the epoch.
    pub from_micros: Option<i64>,
    /// Only before this time, microseconds since the epoch.
    pub to_micros: Option<i64>,
    /// Only those with this other wallet.
    pub counterparty: Option<WalletId>,
    /// Only those moving at least this many minor units: applied by the ledger after
    /// decryption (the store ignores it, as amounts are sealed).
    pub min_amount: Option<i64>,
    /// Only those moving at most this many minor units (likewise the ledger's).
    pub max_amount: Option<i64>,
}

impl HistoryFilter {
    /// Whether `amount` (minor units) is in the amount range.
    #[must_use]
    pub fn amount_matches(&self, amount: i64) -> bool {
        self.min_amount.is_none_or(|m| amount >= m) && self.max_amount.is_none_or(|m| amount <= m)
    }
}

/// One posting as stored. A wallet posting is sealed under its wallet's data key; a settlement
/// posting under the data key of the transaction's key wallet.
#[derive(Clone, PartialEq, Eq)]
pub struct PostingRecord {
    /// Position in the transaction, from 0.
    pub line: u16,
    /// The wallet, or `None` for the currency's settlement account.
    pub wallet: Option<WalletId>,
    /// For a wallet posting, the wallet's row version it produced (its place in the history).
    pub wallet_seq: Option<i64>,
    /// The signed amount (credit positive), an envelope bound to transaction, line and account.
    pub amount: Envelope,
}

coffer_macros::debug_non_exhaustive!(self => PostingRecord { line, wallet, wallet_seq });

/// A transaction as stored.
#[derive(Clone, PartialEq, Eq)]
pub struct TransactionRecord {
    /// Its id (UUID v7).
    pub id: TransactionId,
    /// What kind.
    pub kind: TransactionKind,
    /// In which currency.
    pub currency: Currency,
    /// When, microseconds since the epoch.
    pub at_micros: i64,
    /// The wallet money left (withdrawal, transfer; a reversal's is the original's receiver).
    pub from_wallet: Option<WalletId>,
    /// The wallet money reached.
    pub to_wallet: Option<WalletId>,
    /// The wallet whose data key seals the memo and the settlement posting.
    pub key_wallet: WalletId,
    /// For a reversal, what it reverses.
    pub reverses: Option<TransactionId>,
    /// For a capture, the hold it captures.
    pub hold: Option<HoldId>,
    /// Who started it (the idempotency scope: `user:<id>` or `admin:<id>`).
    pub scope: String,
    /// The client's idempotency key (unique per scope).
    pub idempotency_key: String,
    /// A hash of the request it was made for.
    pub fingerprint: [u8; 32],
    /// The memo envelope, if any.
    pub memo: Option<Envelope>,
    /// A transfer's memo sealed again under the receiving wallet's data key, so the receiver
    /// reads it without the sender's key (and still can once the sender's keys are destroyed).
    /// `None` without a memo, for money that has no receiver other than the key wallet, and for
    /// transfers written before it existed until the backfill has reached them.
    pub receiver_memo: Option<Envelope>,
    /// Money-out: the Ed25519 signature over the canonical bytes.
    pub signature: Option<WalletSignature>,
    /// Money-out: the public key that made it.
    pub public_key: Option<[u8; 32]>,
    /// The postings.
    pub postings: Vec<PostingRecord>,
    /// On reads: the reversal of this transaction, if any.
    pub reversed_by: Option<TransactionId>,
}

coffer_macros::debug_non_exhaustive!(self => TransactionRecord { id, kind, currency, from_wallet, to_wallet, reverses, postings });

impl TransactionRecord {
    /// The wallets it touches, sorted, without repeats.
    #[must_use]
    pub fn wallets(&self) -> Vec<WalletId> {
        let mut ids: Vec<_> = self.postings.iter().filter_map(|p| p.wallet).collect();
        ids.sort();
        ids.dedup();
        ids
    }
}

/// The idempotency key of an operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Idempotency {
    /// Whose keys these are (`user:<id>`, `admin:<id>`).
    pub scope: String,
    /// The client's key.
    pub key: String,
    /// A hash of the request: the same key with another request is a conflict.
    pub fingerprint: [u8; 32],
}

/// What `decide` sees: the locked rows.
#[derive(Debug)]
pub struct Locked<'a> {
    /// The locked wallets, in wallet-id order.
    pub wallets: &'a [WalletRecord],
    /// The transaction being reversed, locked, with its `reversed_by`.
    pub original: Option<&'a TransactionRecord>,
    /// The hold being resolved, read under its paying wallet's lock, whatever its status.
    pub hold: Option<&'a HoldRecord>,
    /// When [`Apply::incoming`]: the active holds that pay into the locked wallets (read under
    /// their locks, which every placement of such a hold takes too), lapsed ones included.
    pub incoming: &'a [HoldRecord],
}

impl Locked<'_> {
    /// The locked row of `id`.
    ///
    /// # Errors
    /// [`Error::WalletNotFound`].
    pub fn wallet(&self, id: WalletId) -> Result<&WalletRecord, Error> {
        self.wallets
            .iter()
            .find(|w| w.id == id)
            .ok_or(Error::WalletNotFound(id))
    }
}

/// The new mutable state of a wallet; the store sets its version to the locked version + 1.
#[derive(Clone, PartialEq, Eq)]
pub struct WalletChange {
    /// Which wallet.
    pub id: WalletId,
    /// New status.
    pub status: WalletStatus,
    /// New balance envelope, bound to the new version.
    pub balance: Envelope,
    /// New sealed signing key.
    pub signing_key: SealedSigningKey,
    /// New public key (changes only on an admin PIN reset).
    pub public_key: [u8; 32],
    /// New KDF parameters.
    pub kdf_params: KdfParams,
    /// New count of consecutive wrong PINs.
    pub failed_pins: u32,
    /// The rolling money-out sum's envelope, bound to the new version.
    pub outflow: Envelope,
    /// The spending field's envelope, bound to the new version.
    pub spending: Envelope,
}

coffer_macros::debug_non_exhaustive!(self => WalletChange { id, status, failed_pins });

/// What an operation writes, decided on the locked rows.
#[derive(Debug, Default)]
pub struct Changes {
    /// Wallet rows to update.
    pub wallets: Vec<WalletChange>,
    /// Transactions to insert, with their postings; no two touch the same wallet (each wallet
    /// row is written once, and its postings are numbered by its new version).
    pub transactions: Vec<TransactionRecord>,
    /// A public key to add to a wallet's archive (a new signing key).
    pub new_public_key: Option<(WalletId, [u8; 32])>,
    /// A new data key version to store, which becomes its wallet's current one
    /// (`dek_version`): a data-key rotation.
    pub new_data_key: Option<DataKeyRecord>,
    /// Audit records, appended in the same database transaction.
    pub audit: Vec<AuditEvent>,
    /// Wallets to erase after the rows above are written (each closed by now): every version of
    /// their data keys destroyed, `erased_at` set.
    pub erase: Vec<WalletId>,
    /// A hold to insert.
    pub new_hold: Option<HoldRecord>,
    /// Holds resolved (captured, voided, expired).
    pub holds: Vec<HoldChange>,
    /// The events of the operation, per wallet numbered on from the locked row's
    /// [`WalletRecord::event_seq`] without gaps (the store refuses other numbers and stores
    /// each wallet's last one).
    pub events: Vec<EventRecord>,
}

/// An operation for [`LedgerStore::apply`].
pub struct Apply<'a> {
    /// Wallets to lock (the store adds the original's wallets and sorts).
    pub lock: Vec<WalletId>,
    /// A transaction to lock and hand to `decide` (a reversal's original).
    pub original: Option<TransactionId>,
    /// A hold to hand to `decide`, read after the locks (its paying wallet among them).
    pub hold: Option<HoldId>,
    /// Whether to hand `decide` the active holds paying into the locked wallets (an erasure).
    pub incoming: bool,
    /// The idempotency key, for operations that take one.
    pub idempotency: Option<&'a Idempotency>,
    /// Decides on the locked rows. It may be called more than once (the store retries when a
    /// concurrent request with the same idempotency key wins a race).
    #[allow(clippy::type_complexity)]
    pub decide: &'a (dyn Fn(&Locked<'_>) -> Result<Changes, Error> + Send + Sync),
}

coffer_macros::debug_non_exhaustive!(self => Apply<'_> { lock, original, hold, incoming, idempotency });

/// What [`LedgerStore::apply`] did.
#[derive(Debug)]
pub enum Applied {
    /// Committed: the inserted transactions and the audit records with their receipts.
    Committed {
        /// The new transactions.
        transactions: Vec<TransactionRecord>,
        /// The audit records written.
        audit: Vec<(AuditEvent, Receipt)>,
    },
    /// The idempotency key was used before for the same request: its transaction, unchanged.
    Replayed(Box<TransactionRecord>),
}

/// A new wallet, for [`LedgerStore::create_wallet`].
#[derive(Debug)]
pub struct NewWallet {
    /// The row (version 1; its `outflow` and `spending` are not stored: a new wallet has sent
    /// nothing and has no limits of its own).
    pub record: WalletRecord,
    /// The most wallets its owner may hold: the store refuses the insert with
    /// [`LedgerError::TooManyWallets`](crate::LedgerError::TooManyWallets) when the owner holds
    /// this many already, counted so that concurrent openings cannot pass it together.
    pub max_per_owner: u32,
    /// Its first data key.
    pub key: DataKeyRecord,
    /// Its creation record.
    pub audit: AuditEvent,
    /// Its `wallet.opened` event, number 1 of its sequence (the record's `event_seq` is 1).
    pub event: EventRecord,
}

/// A page of a wallet's history: `(wallet_seq, transaction)` pairs, newest first.
pub type HistoryPage = Vec<(i64, TransactionRecord)>;

/// The ledger's storage port. Adapters: `coffer_store::ledger::{PgLedgerStore,
/// SqliteLedgerStore}`; both run [the contract suite](crate::testkit).
#[async_trait]
pub trait LedgerStore: Send + Sync + fmt::Debug {
    /// Inserts a wallet, its first data key and its public key, with the audit record.
    async fn create_wallet(&self, new: NewWallet) -> Result<Receipt, Error>;

    /// The wallets (with their data keys) among `ids` that exist, unlocked.
    async fn load_wallets(&self, ids: &[WalletId]) -> Result<Vec<LoadedWallet>, Error>;

    /// The wallets `filter` selects with ids after `after` (all when `None`), in id order (ids
    /// grow with time, so oldest first), at most `limit`.
    async fn wallets_where(
        &self,
        filter: &WalletFilter,
        after: Option<WalletId>,
        limit: u32,
    ) -> Result<Vec<WalletRecord>, Error>;

    /// See the [module documentation](self).
    async fn apply(&self, op: Apply<'_>) -> Result<Applied, Error>;

    /// The transaction recorded under an idempotency key, if any.
    async fn idempotent(&self, scope: &str, key: &str) -> Result<Option<TransactionRecord>, Error>;

    /// One transaction.
    async fn transaction(&self, id: TransactionId) -> Result<Option<TransactionRecord>, Error>;

    /// A wallet's transactions that `filter` selects with `wallet_seq < before` (all when
    /// `None`), newest first.
    async fn history(
        &self,
        wallet: WalletId,
        filter: &HistoryFilter,
        before: Option<i64>,
        limit: u32,
    ) -> Result<HistoryPage, Error>;

    /// Every public key a wallet has had.
    async fn public_keys(&self, wallet: WalletId) -> Result<Vec<[u8; 32]>, Error>;

    /// Wallets with ids after `after`, in id order (verification).
    async fn wallets_after(
        &self,
        after: Option<WalletId>,
        limit: u32,
    ) -> Result<Vec<LoadedWallet>, Error>;

    /// A wallet's postings with their transaction ids, in history order (verification).
    async fn postings_of(
        &self,
        wallet: WalletId,
    ) -> Result<Vec<(TransactionId, PostingRecord)>, Error>;

    /// Sets a transfer's receiver memo while it has none (the backfill): false, changing
    /// nothing, when it has one already or there is no such transaction.
    async fn set_receiver_memo(&self, id: TransactionId, memo: &Envelope) -> Result<bool, Error>;

    /// One hold, unlocked.
    async fn hold(&self, id: HoldId) -> Result<Option<HoldRecord>, Error>;

    /// A wallet's holds, as payer or payee, with ids before `before` (all when `None`), newest
    /// first, at most `limit`.
    async fn holds_of(
        &self,
        wallet: WalletId,
        before: Option<HoldId>,
        limit: u32,
    ) -> Result<Vec<HoldRecord>, Error>;

    /// The hold placed under an idempotency key, if any.
    async fn hold_by_key(&self, scope: &str, key: &str) -> Result<Option<HoldRecord>, Error>;

    /// The paying wallets of active holds whose expiry is at or before `now`, the earliest
    /// expiry first, each once, at most `limit` (the expiry job's work list).
    async fn wallets_with_lapsed_holds(&self, now: i64, limit: u32)
    -> Result<Vec<WalletId>, Error>;

    /// Events with ids after `after` (all when `None`), in id order, at most `limit`. Ids are
    /// taken before commit, so a scan by id can pass an event that commits later with a smaller
    /// one: this reads a quiet store (tests, and a scan: the id has no index), it is no delivery
    /// cursor.
    async fn events_after(
        &self,
        after: Option<EventId>,
        limit: u32,
    ) -> Result<Vec<EventRecord>, Error>;

    /// A wallet's events, in number order (verification).
    async fn events_of(&self, wallet: WalletId) -> Result<Vec<EventRecord>, Error>;

    /// Transactions with ids after `after`, in id order (verification, the memo backfill).
    async fn transactions_after(
        &self,
        after: Option<TransactionId>,
        limit: u32,
    ) -> Result<Vec<TransactionRecord>, Error>;
}
