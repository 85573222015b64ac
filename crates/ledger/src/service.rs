//! The ledger service: every use case, on the storage port, the key port and the audit log.
//!
//! Each operation runs in three steps. Before the database transaction: load the wallets
//! (unlocked), unwrap their data keys, check the PIN (the KDF on the blocking pool) and sign.
//! Inside it ([`LedgerStore::apply`]): decrypt the locked rows, let the domain decide, seal the
//! new balances, postings and memo. After it: hand the audit records to the alert rules. So no
//! key-provider call and no KDF runs while rows are locked.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use coffer_audit::{
    Action, Actor, AuditEvent, Code, DetailValue, EntityId, ObservedAuditLog, Outcome, StreamId,
    Subject, event::unix_micros,
};
use coffer_crypto::{
    KdfParams, KeyRef, Pin, SealedSigningKey, WalletPublicKey, WalletSignature, WalletSigningKey,
};
use coffer_keys::{KeyProvider, WrappedKey};

use crate::domain::{
    self, Account, LedgerError, Original, PIN_LOCK_THRESHOLD, Plan, Posting, TransactionId,
    TransactionKind, UserId, WalletId, WalletState, WalletStatus,
};
use crate::error::Error;
use crate::money::{Amount, Balance, Currency, Money};
use crate::pin::{PinCheckError, PinVerifier, PinVerifierConfig};
use crate::port::{
    Applied, Apply, Changes, DataKeyRecord, Idempotency, LedgerStore, LoadedWallet, Locked,
    NewWallet, PostingRecord, TransactionRecord, WalletChange, WalletRecord,
};
use crate::sealing::{
    Keyring, balance_aad, memo_aad, posting_aad, signing_key_aad, wallet_key_context,
};

/// Longest memo, in characters.
pub const MAX_MEMO_CHARS: usize = 256;
/// Longest idempotency key, in bytes.
pub const MAX_IDEMPOTENCY_KEY_LEN: usize = 255;
/// Largest history page.
pub const MAX_PAGE: u32 = 200;

/// Ledger settings.
#[derive(Debug, Clone)]
pub struct LedgerConfig {
    /// Largest amount of one operation, in minor units.
    pub max_amount_minor: i64,
    /// PBKDF2 iterations for new PINs.
    pub kdf_iterations: u32,
    /// The PIN verifier's bounds and cache.
    pub pins: PinVerifierConfig,
    /// Transactions above this many major units are flagged `large` in their audit record
    /// (the `large_transaction` alert); amounts themselves never enter the audit log.
    pub large_transaction_major_units: i64,
}

impl Default for LedgerConfig {
    fn default() -> Self {
        Self {
            max_amount_minor: 1_000_000_000_000,
            kdf_iterations: coffer_crypto::pin::DEFAULT_ITERATIONS,
            pins: PinVerifierConfig::default(),
            large_transaction_major_units: 10_000,
        }
    }
}

/// Who asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Caller {
    /// A user: sees and moves only their own wallets.
    User(UserId),
    /// An administrator: sees every wallet, moves no user's money except by reversal.
    Admin(UserId),
}

impl Caller {
    fn actor(self) -> Actor {
        match self {
            Self::User(u) => Actor::User(entity(u)),
            Self::Admin(u) => Actor::Admin(entity(u)),
        }
    }

    fn scope(self) -> String {
        match self {
            Self::User(u) => format!("user:{u}"),
            Self::Admin(u) => format!("admin:{u}"),
        }
    }

    fn may_see(self, wallet: &WalletRecord) -> bool {
        match self {
            Self::User(u) => wallet.owner == u,
            Self::Admin(_) => true,
        }
    }
}

/// A wallet as its owner sees it. `Debug` leaves the balance out: it is the owner's data, which
/// the database only holds encrypted, and logs should not hold it at all.
#[derive(Clone, PartialEq, Eq)]
pub struct WalletView {
    /// Its id.
    pub id: WalletId,
    /// Its owner.
    pub owner: UserId,
    /// Its currency.
    pub currency: Currency,
    /// Its status.
    pub status: WalletStatus,
    /// Its balance.
    pub balance: Balance,
    /// The public key its money-out transactions are signed with now.
    pub public_key: [u8; 32],
    /// Consecutive wrong PINs.
    pub failed_pins: u32,
    /// Created, microseconds since the epoch.
    pub created_at: i64,
    /// Last changed, microseconds since the epoch.
    pub updated_at: i64,
}

impl std::fmt::Debug for WalletView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WalletView")
            .field("id", &self.id)
            .field("owner", &self.owner)
            .field("currency", &self.currency)
            .field("status", &self.status)
            .field("failed_pins", &self.failed_pins)
            .finish_non_exhaustive()
    }
}

/// A transaction as its participants see it (`Debug` leaves out the amount and the memo).
#[derive(Clone, PartialEq, Eq)]
pub struct TransactionView {
    /// Its id.
    pub id: TransactionId,
    /// What kind.
    pub kind: TransactionKind,
    /// How much.
    pub money: Money,
    /// Where money left.
    pub from_wallet: Option<WalletId>,
    /// Where money arrived.
    pub to_wallet: Option<WalletId>,
    /// The memo.
    pub memo: Option<String>,
    /// When, microseconds since the epoch.
    pub at_micros: i64,
    /// The client's idempotency key (part of the signed bytes).
    pub idempotency_key: String,
    /// For a reversal, what it reversed.
    pub reverses: Option<TransactionId>,
    /// Its reversal, if any.
    pub reversed_by: Option<TransactionId>,
    /// Money-out: the signature.
    pub signature: Option<[u8; 64]>,
    /// Money-out: the signer's public key.
    pub public_key: Option<[u8; 32]>,
}

impl std::fmt::Debug for TransactionView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TransactionView")
            .field("id", &self.id)
            .field("kind", &self.kind)
            .field("currency", &self.money.currency)
            .field("from_wallet", &self.from_wallet)
            .field("to_wallet", &self.to_wallet)
            .finish_non_exhaustive()
    }
}

impl TransactionView {
    /// The bytes the signature covers.
    #[must_use]
    pub fn signed_bytes(&self) -> Option<Vec<u8>> {
        let from = self.from_wallet?;
        Some(domain::signing_bytes(
            self.id,
            self.kind,
            from,
            self.to_wallet,
            self.money,
            self.at_micros,
            &self.idempotency_key,
        ))
    }

    /// Checks the signature with the recorded public key (what any third party can do).
    /// `Ok(false)` for a transaction that carries none (deposits, reversals).
    ///
    /// # Errors
    /// [`Error::Corrupt`] when it does not verify.
    pub fn verify_signature(&self) -> Result<bool, Error> {
        let (Some(sig), Some(pk), Some(bytes)) =
            (self.signature, self.public_key, self.signed_bytes())
        else {
            return Ok(false);
        };
        let pk = WalletPublicKey::from_bytes(&pk).map_err(|e| Error::Corrupt(e.to_string()))?;
        let sig = WalletSignature::from_bytes(&sig).map_err(|e| Error::Corrupt(e.to_string()))?;
        pk.verify(&bytes, &sig)
            .map(|()| true)
            .map_err(|e| Error::Corrupt(format!("transaction {}: {e}", self.id)))
    }
}

/// A page of history.
#[derive(Debug, Clone)]
pub struct HistoryPageView {
    /// Newest first.
    pub items: Vec<TransactionView>,
    /// Pass it back for the next (older) page; `None` at the end.
    pub next_cursor: Option<String>,
}

/// A money request: what every money-moving operation takes (`Debug` leaves out the amount
/// and the memo).
#[derive(Clone)]
pub struct MoneyRequest<'a> {
    /// Minor units.
    pub amount_minor: i64,
    /// ISO 4217 code.
    pub currency: &'a str,
    /// Optional memo (at most [`MAX_MEMO_CHARS`] characters, no control characters).
    pub memo: Option<&'a str>,
    /// The client's idempotency key.
    pub idempotency_key: &'a str,
}

impl std::fmt::Debug for MoneyRequest<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MoneyRequest")
            .field("currency", &self.currency)
            .field("idempotency_key", &self.idempotency_key)
            .finish_non_exhaustive()
    }
}

/// See the [module documentation](self).
pub struct Ledger {
    store: Arc<dyn LedgerStore>,
    keys: Arc<dyn KeyProvider>,
    audit: Arc<ObservedAuditLog>,
    pins: PinVerifier,
    pin_turns: WalletTurns,
    config: LedgerConfig,
}

/// A queue per wallet (entries exist only while someone waits or holds the turn).
#[derive(Default)]
struct WalletTurns(Mutex<HashMap<WalletId, Arc<tokio::sync::Mutex<()>>>>);

/// One wallet's turn; released on drop.
struct Turn<'a> {
    turns: &'a WalletTurns,
    wallet: WalletId,
    queue: Arc<tokio::sync::Mutex<()>>,
    guard: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl WalletTurns {
    async fn lock(&self, wallet: WalletId) -> Turn<'_> {
        let queue = self
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(wallet)
            .or_default()
            .clone();
        let guard = queue.clone().lock_owned().await;
        Turn {
            turns: self,
            wallet,
            queue,
            guard: Some(guard),
        }
    }
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        drop(self.guard.take());
        let mut map = self.turns.0.lock().unwrap_or_else(PoisonError::into_inner);
        // Under the map's lock nobody can take a new handle: the map's and this one left means
        // nobody waits.
        if Arc::strong_count(&self.queue) == 2 {
            map.remove(&self.wallet);
        }
    }
}

impl std::fmt::Debug for Ledger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ledger")
            .field("store", &self.store)
            .field("keys", &self.keys)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

#[allow(clippy::expect_used)] // a UUID's hyphenated form is always a valid token
fn entity(id: impl std::fmt::Display) -> EntityId {
    EntityId::parse(&id.to_string()).expect("a UUID is an entity token")
}

/// A token detail: currency codes, UUIDs, action names and refusal codes are all valid tokens.
#[allow(clippy::expect_used)]
fn code(s: &str) -> DetailValue {
    DetailValue::Code(Code::parse(s).expect("ledger detail values are tokens"))
}

fn wallet_stream(wallet: WalletId) -> StreamId {
    Subject::Wallet(entity(wallet)).default_stream()
}

fn now_micros() -> i64 {
    unix_micros(SystemTime::now())
}

fn corrupt(what: &str, wallet: WalletId) -> impl FnOnce(String) -> Error + '_ {
    move |e| Error::Corrupt(format!("{what} of wallet {wallet}: {e}"))
}

/// Adds a detail. The keys here are literals of `[a-z_]` and no event gets more than six, so
/// the insert cannot fail.
fn with(mut event: AuditEvent, key: &str, value: DetailValue) -> AuditEvent {
    let inserted = event.details.insert(key, value);
    debug_assert!(inserted.is_ok(), "detail {key}");
    event
}

fn parse_money(max: i64, amount_minor: i64, currency: &str) -> Result<Money, Error> {
    Ok(Money {
        currency: Currency::parse(currency)?,
        amount: Amount::parse(amount_minor, max)?,
    })
}

fn check_memo(memo: Option<&str>) -> Result<(), Error> {
    if let Some(m) = memo {
        if m.chars().count() > MAX_MEMO_CHARS {
            return Err(Error::invalid(
                "memo",
                format!("longer than {MAX_MEMO_CHARS} characters"),
            ));
        }
        if m.chars().any(char::is_control) {
            return Err(Error::invalid("memo", "contains control characters"));
        }
    }
    Ok(())
}

fn check_idempotency_key(key: &str) -> Result<(), Error> {
    if key.is_empty() || key.len() > MAX_IDEMPOTENCY_KEY_LEN {
        return Err(Error::invalid(
            "idempotency_key",
            format!("must be 1 to {MAX_IDEMPOTENCY_KEY_LEN} bytes"),
        ));
    }
    if !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(Error::invalid(
            "idempotency_key",
            "must be printable ASCII without spaces",
        ));
    }
    Ok(())
}

fn parse_pin(pin: &str) -> Result<Pin, Error> {
    Pin::parse(pin).map_err(|e| Error::invalid("pin", e.to_string()))
}

/// Decrypts a locked or loaded row.
fn state(keys: &Keyring, rec: &WalletRecord) -> Result<WalletState, Error> {
    let minor = keys.open_i64(
        rec.id,
        &balance_aad(rec.id, rec.version),
        &rec.balance,
        "balance",
    )?;
    Ok(WalletState {
        id: rec.id,
        owner: rec.owner,
        currency: rec.currency,
        status: rec.status,
        balance: Balance::from_minor(minor)
            .ok_or_else(|| Error::Corrupt(format!("negative balance in wallet {}", rec.id)))?,
        failed_pins: rec.failed_pins,
    })
}

/// Runs `op` again, four times at most, when the wallet changed between loading it and locking
/// it (its PIN, or a data-key rotation): each run loads afresh.
async fn again_if_changed<T, F, Fut>(mut op: F) -> Result<T, Error>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, Error>>,
{
    for _ in 0..4 {
        match op().await {
            Err(Error::Changed(why)) => tracing::debug!(%why, "the wallet changed; trying again"),
            other => return other,
        }
    }
    op().await
}

/// `rec` unchanged but for `balance`, sealed for the next version.
fn rewrite(keys: &Keyring, rec: &WalletRecord, balance: Balance) -> Result<WalletChange, Error> {
    Ok(WalletChange {
        id: rec.id,
        status: rec.status,
        balance: keys.seal_i64(
            rec.id,
            rec.dek_version,
            &balance_aad(rec.id, rec.version + 1),
            balance.minor(),
        )?,
        signing_key: rec.signing_key.clone(),
        public_key: rec.public_key,
        kdf_params: rec.kdf_params.clone(),
        failed_pins: rec.failed_pins,
    })
}

fn wallet_view(rec: &WalletRecord, balance: Balance) -> WalletView {
    WalletView {
        id: rec.id,
        owner: rec.owner,
        currency: rec.currency,
        status: rec.status,
        balance,
        public_key: rec.public_key,
        failed_pins: rec.failed_pins,
        created_at: rec.created_at,
        updated_at: rec.updated_at,
    }
}

/// The wallet whose data key seals a posting on `account` of a transaction keyed by `key_wallet`.
fn sealer(account: Option<WalletId>, key_wallet: WalletId) -> WalletId {
    account.unwrap_or(key_wallet)
}

/// Decrypts the postings of a stored transaction.
pub(crate) fn open_postings(keys: &Keyring, t: &TransactionRecord) -> Result<Vec<Posting>, Error> {
    t.postings
        .iter()
        .map(|p| {
            let account = p
                .wallet
                .map_or(Account::Settlement(t.currency), Account::Wallet);
            let delta = keys.open_i64(
                sealer(p.wallet, t.key_wallet),
                &posting_aad(t.id, p.line, account),
                &p.amount,
                "posting",
            )?;
            Ok(Posting { account, delta })
        })
        .collect()
}

/// Decrypts a stored transaction (the keyring holds the keys of its wallets).
pub(crate) fn transaction_view(
    keys: &Keyring,
    t: &TransactionRecord,
) -> Result<TransactionView, Error> {
    let postings = open_postings(keys, t)?;
    let amount = postings
        .first()
        .map(|p| p.delta.unsigned_abs())
        .and_then(|a| i64::try_from(a).ok())
        .ok_or_else(|| Error::Corrupt(format!("transaction {} has no postings", t.id)))?;
    let memo = match &t.memo {
        Some(m) => {
            let plain = keys.open(t.key_wallet, &memo_aad(t.id), m, "memo")?;
            Some(
                String::from_utf8(plain.expose_secret().to_vec())
                    .map_err(|_| Error::Corrupt(format!("memo of transaction {}", t.id)))?,
            )
        }
        None => None,
    };
    let signature = match &t.signature {
        Some(s) => Some(<[u8; 64]>::try_from(s.as_slice()).map_err(|_| {
            Error::Corrupt(format!("signature of transaction {} is not 64 bytes", t.id))
        })?),
        None => None,
    };
    Ok(TransactionView {
        id: t.id,
        kind: t.kind,
        money: Money {
            amount: Amount::parse(amount, i64::MAX)
                .map_err(|_| Error::Corrupt(format!("transaction {} moves nothing", t.id)))?,
            currency: t.currency,
        },
        from_wallet: t.from_wallet,
        to_wallet: t.to_wallet,
        memo,
        at_micros: t.at_micros,
        idempotency_key: t.idempotency_key.clone(),
        reverses: t.reverses,
        reversed_by: t.reversed_by,
        signature,
        public_key: t.public_key,
    })
}

/// Encodes a history cursor.
fn cursor(seq: i64) -> String {
    let mut b = vec![1u8];
    b.extend_from_slice(&seq.to_be_bytes());
    URL_SAFE_NO_PAD.encode(b)
}

fn parse_cursor(s: &str) -> Result<i64, Error> {
    let bad = || Error::invalid("cursor", "not a cursor this service issued");
    let b = URL_SAFE_NO_PAD.decode(s).map_err(|_| bad())?;
    match b.split_first() {
        Some((1, rest)) => <[u8; 8]>::try_from(rest)
            .map(i64::from_be_bytes)
            .map_err(|_| bad()),
        _ => Err(bad()),
    }
}

/// What [`Ledger::unlock`] found.
enum Unlocked {
    /// The signing key; `reserved` when an attempt was counted for it (the operation that
    /// follows resets the count, or gives the attempt back if it fails).
    Key {
        key: WalletSigningKey,
        reserved: bool,
    },
    /// The request repeats an earlier one: its answer.
    Replayed(TransactionView),
}

/// What a transaction to be written looks like before the locked rows are seen.
struct Draft<'a> {
    id: TransactionId,
    at_micros: i64,
    from: Option<WalletId>,
    to: Option<WalletId>,
    key_wallet: WalletId,
    reverses: Option<TransactionId>,
    idempotency: &'a Idempotency,
    memo: Option<&'a str>,
    signature: Option<(WalletSignature, [u8; 32])>,
}

impl Ledger {
    /// A ledger on these ports. `keys` should be a caching decorator in production.
    #[must_use]
    pub fn new(
        store: Arc<dyn LedgerStore>,
        keys: Arc<dyn KeyProvider>,
        audit: Arc<ObservedAuditLog>,
        config: LedgerConfig,
    ) -> Self {
        Self {
            store,
            keys,
            audit,
            pins: PinVerifier::new(config.pins),
            pin_turns: WalletTurns::default(),
            config,
        }
    }

    /// The storage port (for the worker's maintenance and the tests).
    #[must_use]
    pub fn store(&self) -> &Arc<dyn LedgerStore> {
        &self.store
    }

    /// The PIN verifier (its metrics).
    #[must_use]
    pub fn pins(&self) -> &PinVerifier {
        &self.pins
    }

    /// The settings.
    #[must_use]
    pub fn config(&self) -> &LedgerConfig {
        &self.config
    }

    async fn keyring(&self, wallets: &[LoadedWallet]) -> Result<Keyring, Error> {
        let mut keys = Keyring::default();
        keys.unwrap(self.keys.as_ref(), wallets).await?;
        Ok(keys)
    }

    /// Loads `ids` (all must exist) with their keys.
    async fn load(&self, ids: &[WalletId]) -> Result<(Vec<LoadedWallet>, Keyring), Error> {
        let loaded = self.store.load_wallets(ids).await?;
        if let Some(missing) = ids
            .iter()
            .find(|id| !loaded.iter().any(|w| w.record.id == **id))
        {
            return Err(Error::WalletNotFound(*missing));
        }
        let keys = self.keyring(&loaded).await?;
        Ok((loaded, keys))
    }

    async fn observe(&self, applied: &Applied) {
        if let Applied::Committed { audit, .. } = applied {
            self.audit.committed_elsewhere(audit).await;
        }
    }

    /// Records a refused money operation (feeds the `failed_transactions` alert). A failure to
    /// record it is logged, not returned: the caller's answer is the refusal.
    async fn record_refusal(&self, caller: Caller, action: Action, wallet: WalletId, e: &Error) {
        let reason = match e {
            Error::Rejected(r) => domain_code(r),
            Error::WrongPin { .. } => "wrong_pin",
            _ => return,
        };
        let event = AuditEvent::new(
            caller.actor(),
            Action::TransactionFailed,
            Subject::Wallet(entity(wallet)),
            Outcome::Denied,
        );
        let event = with(event, "reason", code(reason));
        let event = with(event, "operation", code(action.as_str()));
        if let Err(err) = coffer_audit::AuditLog::append(self.audit.as_ref(), &event).await {
            tracing::error!(error = %err, "could not record a refused transaction in the audit log");
        }
    }

    // ---- wallets ----

    /// Opens a wallet for `owner` with `pin`.
    ///
    /// # Errors
    /// Unknown currency, malformed PIN, key provider or storage failures.
    pub async fn open_wallet(
        &self,
        owner: UserId,
        currency: &str,
        pin: &str,
    ) -> Result<WalletView, Error> {
        let currency = Currency::parse(currency)?;
        let pin = parse_pin(pin)?;
        let id = WalletId::new();
        let generated = self.keys.generate_data_key(&wallet_key_context(id)).await?;
        let params = KdfParams::generate(self.config.kdf_iterations)
            .map_err(|e| Error::Storage(format!("KDF parameters: {e}")))?;
        let pin_key = self.pins.derive(&pin, &params).await.map_err(pin_error)?;
        let signing = WalletSigningKey::generate();
        let sealed = signing
            .seal(
                &pin_key,
                &generated.plaintext,
                &KeyRef::version_only(1),
                &signing_key_aad(id),
            )
            .map_err(|e| Error::Storage(e.to_string()))?;
        let mut keys = Keyring::default();
        keys.insert(id, 1, generated.plaintext);
        let now = now_micros();
        let record = WalletRecord {
            id,
            owner,
            currency,
            status: WalletStatus::Active,
            version: 1,
            balance: keys.seal_i64(id, 1, &balance_aad(id, 1), 0)?,
            dek_version: 1,
            signing_key: sealed.as_bytes().to_vec(),
            public_key: signing.public_key().to_bytes(),
            kdf_params: params.to_bytes().to_vec(),
            failed_pins: 0,
            created_at: now,
            updated_at: now,
        };
        let audit = with(
            AuditEvent::new(
                Caller::User(owner).actor(),
                Action::WalletCreate,
                Subject::Wallet(entity(id)),
                Outcome::Success,
            )
            .at(now),
            "currency",
            code(currency.code()),
        );
        let wrapped: &WrappedKey = &generated.wrapped;
        let receipt = self
            .store
            .create_wallet(NewWallet {
                record: record.clone(),
                key: DataKeyRecord {
                    wallet: id,
                    version: 1,
                    wrapped: wrapped.to_bytes(),
                    kek_version: wrapped.version,
                },
                audit: audit.clone(),
            })
            .await?;
        self.audit.committed_elsewhere(&[(audit, receipt)]).await;
        Ok(wallet_view(&record, Balance::ZERO))
    }

    /// One wallet, decrypted.
    ///
    /// # Errors
    /// [`Error::WalletNotFound`] also when it is not the caller's.
    pub async fn wallet(&self, caller: Caller, id: WalletId) -> Result<WalletView, Error> {
        let (loaded, keys) = self.load(&[id]).await?;
        let rec = &loaded.first().ok_or(Error::WalletNotFound(id))?.record;
        if !caller.may_see(rec) {
            return Err(Error::WalletNotFound(id));
        }
        Ok(wallet_view(rec, state(&keys, rec)?.balance))
    }

    /// The caller's wallets.
    ///
    /// # Errors
    /// Storage, keys, corruption.
    pub async fn wallets_of(&self, owner: UserId) -> Result<Vec<WalletView>, Error> {
        let records = self.store.wallets_of(owner).await?;
        let ids: Vec<_> = records.iter().map(|r| r.id).collect();
        let (loaded, keys) = self.load(&ids).await?;
        loaded
            .iter()
            .map(|w| Ok(wallet_view(&w.record, state(&keys, &w.record)?.balance)))
            .collect()
    }

    // ---- money ----

    fn idempotency(
        &self,
        caller: Caller,
        kind: TransactionKind,
        wallets: &[Option<WalletId>],
        money: Money,
        request: &MoneyRequest<'_>,
    ) -> Result<Idempotency, Error> {
        check_idempotency_key(request.idempotency_key)?;
        check_memo(request.memo)?;
        let ids: Vec<[u8; 16]> = wallets
            .iter()
            .map(|w| w.map_or([0; 16], |w| *w.as_uuid().as_bytes()))
            .collect();
        let mut parts: Vec<&[u8]> = vec![kind.as_str().as_bytes()];
        parts.extend(ids.iter().map(<[u8; 16]>::as_slice));
        let amount = money.amount.minor().to_be_bytes();
        parts.push(&amount);
        parts.push(money.currency.code().as_bytes());
        parts.push(request.memo.map_or(&b"\0none"[..], str::as_bytes));
        Ok(Idempotency {
            scope: caller.scope(),
            key: request.idempotency_key.to_owned(),
            fingerprint: domain::request_fingerprint(&parts),
        })
    }

    /// The earlier result under this idempotency key, if the same request made it.
    async fn replay(&self, idem: &Idempotency) -> Result<Option<TransactionView>, Error> {
        match self.store.idempotent(&idem.scope, &idem.key).await? {
            Some(t) if t.fingerprint != idem.fingerprint => Err(Error::IdempotencyConflict),
            Some(t) => Ok(Some(self.view_of(&t).await?)),
            None => Ok(None),
        }
    }

    async fn view_of(&self, t: &TransactionRecord) -> Result<TransactionView, Error> {
        let mut ids = t.wallets();
        ids.push(t.key_wallet);
        ids.sort();
        ids.dedup();
        let loaded = self.store.load_wallets(&ids).await?;
        let keys = self.keyring(&loaded).await?;
        transaction_view(&keys, t)
    }

    /// Builds what a money operation writes from the domain's plan.
    fn changes(
        &self,
        keys: &Keyring,
        locked: &Locked<'_>,
        plan: &Plan,
        draft: &Draft<'_>,
        currency: Currency,
        audit: AuditEvent,
    ) -> Result<Changes, Error> {
        let mut wallets = Vec::with_capacity(plan.balances.len());
        for (id, balance) in &plan.balances {
            let rec = locked.wallet(*id)?;
            let mut change = rewrite(keys, rec, *balance)?;
            if draft.signature.is_some() && draft.from == Some(*id) {
                // A correct PIN ends a run of wrong ones.
                change.failed_pins = 0;
            }
            wallets.push(change);
        }
        let mut postings = Vec::with_capacity(plan.postings.len());
        for (line, p) in plan.postings.iter().enumerate() {
            let line =
                u16::try_from(line).map_err(|_| Error::Storage("too many postings".into()))?;
            let wallet = match p.account {
                Account::Wallet(w) => Some(w),
                Account::Settlement(_) => None,
            };
            let by = locked.wallet(sealer(wallet, draft.key_wallet))?;
            postings.push(PostingRecord {
                line,
                wallet,
                wallet_seq: wallet
                    .map(|w| locked.wallet(w).map(|r| r.version + 1))
                    .transpose()?,
                amount: keys.seal_i64(
                    by.id,
                    by.dek_version,
                    &posting_aad(draft.id, line, p.account),
                    p.delta,
                )?,
            });
        }
        let memo = match draft.memo {
            Some(m) => {
                let by = locked.wallet(draft.key_wallet)?;
                Some(keys.seal(by.id, by.dek_version, &memo_aad(draft.id), m.as_bytes())?)
            }
            None => None,
        };
        Ok(Changes {
            wallets,
            transaction: Some(TransactionRecord {
                id: draft.id,
                kind: plan.kind,
                currency,
                at_micros: draft.at_micros,
                from_wallet: draft.from,
                to_wallet: draft.to,
                key_wallet: draft.key_wallet,
                reverses: draft.reverses,
                scope: draft.idempotency.scope.clone(),
                idempotency_key: draft.idempotency.key.clone(),
                fingerprint: draft.idempotency.fingerprint,
                memo,
                signature: draft.signature.as_ref().map(|(s, _)| s.to_bytes().to_vec()),
                public_key: draft.signature.as_ref().map(|(_, pk)| *pk),
                postings,
                reversed_by: None,
            }),
            new_public_key: None,
            new_data_key: None,
            audit: vec![audit],
        })
    }

    fn transaction_event(
        &self,
        caller: Caller,
        action: Action,
        draft: &Draft<'_>,
        money: Money,
    ) -> AuditEvent {
        let mut e = AuditEvent::new(
            caller.actor(),
            action,
            Subject::Transaction(entity(draft.id)),
            Outcome::Success,
        )
        .at(draft.at_micros)
        .on_stream(wallet_stream(draft.key_wallet));
        e = with(e, "currency", code(money.currency.code()));
        if let Some(f) = draft.from {
            e = with(e, "from", code(&f.to_string()));
        }
        if let Some(t) = draft.to {
            e = with(e, "to", code(&t.to_string()));
        }
        if let Some(r) = draft.reverses {
            e = with(e, "reverses", code(&r.to_string()));
        }
        let large = 10i64
            .checked_pow(u32::from(money.currency.exponent()))
            .and_then(|scale| self.config.large_transaction_major_units.checked_mul(scale))
            .is_some_and(|limit| money.amount.minor() > limit);
        if large {
            e = with(e, "large", DetailValue::Bool(true));
        }
        e
    }

    /// The view of what `apply` wrote or replayed. `keys` holds the keys of the request's
    /// wallets, which are the transaction's (a replay had the same request).
    async fn finish(&self, applied: Applied, keys: &Keyring) -> Result<TransactionView, Error> {
        self.observe(&applied).await;
        match applied {
            Applied::Committed {
                transaction: Some(t),
                ..
            }
            | Applied::Replayed(t) => transaction_view(keys, &t),
            Applied::Committed {
                transaction: None, ..
            } => Err(Error::Storage("the store wrote no transaction".into())),
        }
    }

    /// Deposits money into the caller's wallet.
    ///
    /// # Errors
    /// Money and memo validation, [`Error::WalletNotFound`], the domain's refusals,
    /// [`Error::IdempotencyConflict`], storage and keys.
    pub async fn deposit(
        &self,
        user: UserId,
        wallet: WalletId,
        request: &MoneyRequest<'_>,
    ) -> Result<TransactionView, Error> {
        again_if_changed(|| self.deposit_once(user, wallet, request)).await
    }

    async fn deposit_once(
        &self,
        user: UserId,
        wallet: WalletId,
        request: &MoneyRequest<'_>,
    ) -> Result<TransactionView, Error> {
        let caller = Caller::User(user);
        let money = parse_money(
            self.config.max_amount_minor,
            request.amount_minor,
            request.currency,
        )?;
        let kind = TransactionKind::Deposit;
        let idem = self.idempotency(caller, kind, &[Some(wallet)], money, request)?;
        let (loaded, keys) = self.load(&[wallet]).await?;
        if !loaded.iter().all(|w| caller.may_see(&w.record)) {
            return Err(Error::WalletNotFound(wallet));
        }
        let draft = Draft {
            id: TransactionId::new(),
            at_micros: now_micros(),
            from: None,
            to: Some(wallet),
            key_wallet: wallet,
            reverses: None,
            idempotency: &idem,
            memo: request.memo,
            signature: None,
        };
        let event = self.transaction_event(caller, Action::TransactionDeposit, &draft, money);
        let decide = |locked: &Locked<'_>| {
            let s = state(&keys, locked.wallet(wallet)?)?;
            let plan = domain::deposit(&s, money)?;
            self.changes(&keys, locked, &plan, &draft, money.currency, event.clone())
        };
        let result = self
            .store
            .apply(Apply {
                lock: vec![wallet],
                original: None,
                idempotency: Some(&idem),
                decide: &decide,
            })
            .await;
        match result {
            Ok(applied) => self.finish(applied, &keys).await,
            Err(e) => {
                self.record_refusal(caller, Action::TransactionDeposit, wallet, &e)
                    .await;
                Err(e)
            }
        }
    }

    /// Withdraws money from the caller's wallet; needs its PIN.
    ///
    /// # Errors
    /// As [`Ledger::deposit`], plus [`Error::WrongPin`] and the lockout.
    pub async fn withdraw(
        &self,
        user: UserId,
        wallet: WalletId,
        pin: &str,
        request: &MoneyRequest<'_>,
    ) -> Result<TransactionView, Error> {
        self.money_out(user, wallet, None, pin, request).await
    }

    /// Transfers money from the caller's wallet to another wallet of the same currency; needs
    /// the PIN of the sending wallet.
    ///
    /// # Errors
    /// As [`Ledger::withdraw`], and [`Error::WalletNotFound`] for an unknown receiver.
    pub async fn transfer(
        &self,
        user: UserId,
        from: WalletId,
        to: WalletId,
        pin: &str,
        request: &MoneyRequest<'_>,
    ) -> Result<TransactionView, Error> {
        self.money_out(user, from, Some(to), pin, request).await
    }

    async fn money_out(
        &self,
        user: UserId,
        from: WalletId,
        to: Option<WalletId>,
        pin: &str,
        request: &MoneyRequest<'_>,
    ) -> Result<TransactionView, Error> {
        again_if_changed(|| self.money_out_once(user, from, to, pin, request)).await
    }

    async fn money_out_once(
        &self,
        user: UserId,
        from: WalletId,
        to: Option<WalletId>,
        pin: &str,
        request: &MoneyRequest<'_>,
    ) -> Result<TransactionView, Error> {
        let caller = Caller::User(user);
        let (kind, action) = match to {
            Some(_) => (TransactionKind::Transfer, Action::TransactionTransfer),
            None => (TransactionKind::Withdrawal, Action::TransactionWithdrawal),
        };
        let money = parse_money(
            self.config.max_amount_minor,
            request.amount_minor,
            request.currency,
        )?;
        let idem = self.idempotency(caller, kind, &[Some(from), to], money, request)?;
        let pin = parse_pin(pin)?;
        if to == Some(from) {
            return Err(LedgerError::SameWallet.into());
        }
        let mut ids = vec![from];
        ids.extend(to);
        let (loaded, keys) = self.load(&ids).await?;
        let sender = loaded
            .iter()
            .find(|w| w.record.id == from)
            .filter(|w| caller.may_see(&w.record))
            .ok_or(Error::WalletNotFound(from))?;
        let sealed_key = sender.record.signing_key.clone();
        let (signing, reserved) = match self
            .unlock(caller, &sender.record, &keys, &pin, Some(&idem))
            .await
        {
            Ok(Unlocked::Key { key, reserved }) => (key, reserved),
            Ok(Unlocked::Replayed(view)) => return Ok(view),
            Err(e) => {
                self.record_refusal(caller, action, from, &e).await;
                return Err(e);
            }
        };
        let mut draft = Draft {
            id: TransactionId::new(),
            at_micros: now_micros(),
            from: Some(from),
            to,
            key_wallet: from,
            reverses: None,
            idempotency: &idem,
            memo: request.memo,
            signature: None,
        };
        let bytes =
            domain::signing_bytes(draft.id, kind, from, to, money, draft.at_micros, &idem.key);
        draft.signature = Some((signing.sign(&bytes), signing.public_key().to_bytes()));
        drop(signing);
        let event = self.transaction_event(caller, action, &draft, money);
        let decide = |locked: &Locked<'_>| {
            let sender = locked.wallet(from)?;
            if sender.signing_key != sealed_key {
                // The PIN changed (or was reset) since it was checked: the PIN just checked
                // may be the old one.
                return Err(Error::Changed(
                    "its PIN changed, or its data key was rotated".into(),
                ));
            }
            let mut s = state(&keys, sender)?;
            if reserved {
                // This request's own attempt is in the count, and its PIN was right.
                s.failed_pins = 0;
            }
            let plan = match to {
                Some(to) => domain::transfer(&s, &state(&keys, locked.wallet(to)?)?, money)?,
                None => domain::withdrawal(&s, money)?,
            };
            self.changes(&keys, locked, &plan, &draft, money.currency, event.clone())
        };
        let result = self
            .store
            .apply(Apply {
                lock: ids.clone(),
                original: None,
                idempotency: Some(&idem),
                decide: &decide,
            })
            .await;
        match result {
            Ok(applied) => {
                if reserved && matches!(applied, Applied::Replayed(_)) {
                    // Another request with this key did the work; this one's right PIN still
                    // ends the run of wrong ones.
                    self.release_pin_attempt(from, &keys).await?;
                }
                self.finish(applied, &keys).await
            }
            Err(e) => {
                if reserved {
                    self.release_pin_attempt(from, &keys).await?;
                }
                self.record_refusal(caller, action, from, &e).await;
                Err(e)
            }
        }
    }

    /// Unseals a wallet's signing key with `pin`.
    ///
    /// A PIN the verifier remembers as right opens the key at once. Any other PIN is a guess:
    /// first a request that repeats an earlier one under its idempotency key is answered as
    /// before without looking at the PIN (so a retry reveals nothing and costs no attempt);
    /// then an attempt is reserved in the database, under the wallet's row lock, before the KDF
    /// runs. Guesses sent all at once therefore get at most the attempts that are left, and a
    /// locked wallet refuses every PIN, right or wrong, in the same way.
    async fn unlock(
        &self,
        caller: Caller,
        rec: &WalletRecord,
        keys: &Keyring,
        pin: &Pin,
        idem: Option<&Idempotency>,
    ) -> Result<Unlocked, Error> {
        let params = KdfParams::from_bytes(&rec.kdf_params)
            .map_err(|e| corrupt("KDF parameters", rec.id)(e.to_string()))?;
        let sealed = SealedSigningKey::from_bytes(&rec.signing_key)
            .map_err(|e| corrupt("signing key", rec.id)(e.to_string()))?;
        let public = WalletPublicKey::from_bytes(&rec.public_key)
            .map_err(|e| corrupt("public key", rec.id)(e.to_string()))?;
        let dek = keys.key(rec.id, sealed.data_key_ref().version())?;
        let aad = signing_key_aad(rec.id);
        let cached = || {
            self.pins
                .unseal_if_cached(rec.id, pin, &params, &sealed, dek, &aad, &public)
                .map(|known| {
                    known
                        .map(|key| Unlocked::Key {
                            key,
                            reserved: false,
                        })
                        .map_err(pin_error)
                })
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
        let count = self.reserve_pin_attempt(rec.id, keys).await?;
        match self
            .pins
            .unseal(rec.id, pin, &params, &sealed, dek, &aad, &public)
            .await
        {
            Ok(key) => Ok(Unlocked::Key {
                key,
                reserved: true,
            }),
            Err(PinCheckError::WrongPin) => {
                self.record_wrong_pin(caller, rec.id, count).await?;
                Err(Error::WrongPin {
                    attempts_left: PIN_LOCK_THRESHOLD.saturating_sub(count),
                })
            }
            Err(e) => {
                self.release_pin_attempt(rec.id, keys).await?;
                Err(pin_error(e))
            }
        }
    }

    /// Counts a PIN attempt before it is checked (it survives restarts); returns the count.
    ///
    /// # Errors
    /// [`LedgerError::PinLocked`] when no attempt is left.
    async fn reserve_pin_attempt(&self, wallet: WalletId, keys: &Keyring) -> Result<u32, Error> {
        self.set_failed_pins(wallet, keys, &|n| {
            if n >= PIN_LOCK_THRESHOLD {
                Err(LedgerError::PinLocked.into())
            } else {
                Ok(n + 1)
            }
        })
        .await
    }

    /// Gives back a reserved attempt whose PIN was right but whose operation did not happen: a
    /// right PIN ends the run of wrong ones.
    async fn release_pin_attempt(&self, wallet: WalletId, keys: &Keyring) -> Result<(), Error> {
        self.set_failed_pins(wallet, keys, &|_| Ok(0))
            .await
            .map(|_| ())
    }

    /// Sets a wallet's wrong-PIN count to `next(current)` under its row lock; returns it.
    async fn set_failed_pins(
        &self,
        wallet: WalletId,
        keys: &Keyring,
        next: &(dyn Fn(u32) -> Result<u32, Error> + Send + Sync),
    ) -> Result<u32, Error> {
        let count = AtomicU32::new(0);
        self.on_wallet(wallet, &|locked| {
            let rec = locked.wallet(wallet)?;
            let mut change = rewrite(keys, rec, state(keys, rec)?.balance)?;
            change.failed_pins = next(rec.failed_pins)?;
            count.store(change.failed_pins, Ordering::Relaxed);
            Ok(Changes {
                wallets: vec![change],
                ..Changes::default()
            })
        })
        .await?;
        Ok(count.load(Ordering::Relaxed))
    }

    /// `apply` on one wallet, for the operations that take no idempotency key.
    async fn on_wallet(
        &self,
        wallet: WalletId,
        decide: &(dyn Fn(&Locked<'_>) -> Result<Changes, Error> + Send + Sync),
    ) -> Result<Applied, Error> {
        self.store
            .apply(Apply {
                lock: vec![wallet],
                original: None,
                idempotency: None,
                decide,
            })
            .await
    }

    /// Audits a wrong PIN (its attempt is already counted) and, at the limit, the lock.
    async fn record_wrong_pin(
        &self,
        caller: Caller,
        wallet: WalletId,
        count: u32,
    ) -> Result<(), Error> {
        let failed = AuditEvent::new(
            caller.actor(),
            Action::WalletPinFailed,
            Subject::Wallet(entity(wallet)),
            Outcome::Denied,
        );
        let mut audit = vec![with(
            failed,
            "failed_pins",
            DetailValue::Int(i64::from(count)),
        )];
        if count >= PIN_LOCK_THRESHOLD {
            audit.push(AuditEvent::new(
                caller.actor(),
                Action::WalletPinLocked,
                Subject::Wallet(entity(wallet)),
                Outcome::Success,
            ));
            self.pins.forget(wallet);
        }
        let applied = self
            .on_wallet(wallet, &|_| {
                Ok(Changes {
                    audit: audit.clone(),
                    ..Changes::default()
                })
            })
            .await?;
        self.observe(&applied).await;
        Ok(())
    }

    /// Reverses a transaction (administrators only): posts the exact opposite, once.
    ///
    /// # Errors
    /// [`Error::TransactionNotFound`], [`LedgerError::ReversalOfReversal`],
    /// [`LedgerError::AlreadyReversed`], [`LedgerError::InsufficientFunds`], idempotency.
    pub async fn reverse(
        &self,
        admin: UserId,
        transaction: TransactionId,
        reason: &str,
        idempotency_key: &str,
    ) -> Result<TransactionView, Error> {
        again_if_changed(|| self.reverse_once(admin, transaction, reason, idempotency_key)).await
    }

    async fn reverse_once(
        &self,
        admin: UserId,
        transaction: TransactionId,
        reason: &str,
        idempotency_key: &str,
    ) -> Result<TransactionView, Error> {
        let caller = Caller::Admin(admin);
        check_idempotency_key(idempotency_key)?;
        let reason_code = Code::parse(reason)
            .map_err(|_| Error::invalid("reason", "a short token (letters, digits, . _ : -)"))?;
        let original = self
            .store
            .transaction(transaction)
            .await?
            .ok_or(Error::TransactionNotFound(transaction))?;
        let idem = Idempotency {
            scope: caller.scope(),
            key: idempotency_key.to_owned(),
            fingerprint: domain::request_fingerprint(&[
                b"reversal",
                transaction.as_uuid().as_bytes(),
                reason.as_bytes(),
            ]),
        };
        let ids = original.wallets();
        let (_, keys) = self.load(&ids).await?;
        let draft = Draft {
            id: TransactionId::new(),
            at_micros: now_micros(),
            from: original.to_wallet,
            to: original.from_wallet,
            key_wallet: original.key_wallet,
            reverses: Some(transaction),
            idempotency: &idem,
            memo: None,
            signature: None,
        };
        let decide = |locked: &Locked<'_>| {
            let orig = locked
                .original
                .ok_or(Error::TransactionNotFound(transaction))?;
            let states = locked
                .wallets
                .iter()
                .map(|w| state(&keys, w))
                .collect::<Result<Vec<_>, _>>()?;
            let plan = domain::reversal(
                &Original {
                    kind: orig.kind,
                    postings: open_postings(&keys, orig)?,
                    reversed: orig.reversed_by.is_some(),
                },
                &states,
            )?;
            let view = transaction_view(&keys, orig)?;
            let event = with(
                self.transaction_event(caller, Action::TransactionReversal, &draft, view.money),
                "reason",
                DetailValue::Code(reason_code.clone()),
            );
            self.changes(&keys, locked, &plan, &draft, orig.currency, event)
        };
        let applied = self
            .store
            .apply(Apply {
                lock: ids,
                original: Some(transaction),
                idempotency: Some(&idem),
                decide: &decide,
            })
            .await?;
        self.finish(applied, &keys).await
    }

    // ---- wallet administration ----

    /// Applies `mutate` to one wallet's locked state and records `action`.
    async fn update_wallet(
        &self,
        caller: Caller,
        wallet: WalletId,
        action: Action,
        keys: &Keyring,
        mutate: &(dyn Fn(&WalletState, &mut WalletChange) -> Result<(), Error> + Send + Sync),
    ) -> Result<WalletView, Error> {
        let view = Mutex::new(None);
        let decide = |locked: &Locked<'_>| {
            let rec = locked.wallet(wallet)?;
            if !caller.may_see(rec) {
                return Err(Error::WalletNotFound(wallet));
            }
            let s = state(keys, rec)?;
            let mut change = rewrite(keys, rec, s.balance)?;
            mutate(&s, &mut change)?;
            let updated = WalletRecord {
                status: change.status,
                version: rec.version + 1,
                public_key: change.public_key,
                failed_pins: change.failed_pins,
                updated_at: now_micros(),
                ..rec.clone()
            };
            *view.lock().unwrap_or_else(PoisonError::into_inner) =
                Some(wallet_view(&updated, s.balance));
            let new_public_key =
                (change.public_key != rec.public_key).then_some((wallet, change.public_key));
            Ok(Changes {
                wallets: vec![change],
                new_public_key,
                audit: vec![AuditEvent::new(
                    caller.actor(),
                    action,
                    Subject::Wallet(entity(wallet)),
                    Outcome::Success,
                )],
                transaction: None,
                new_data_key: None,
            })
        };
        let applied = self.on_wallet(wallet, &decide).await?;
        self.observe(&applied).await;
        view.into_inner()
            .unwrap_or_else(PoisonError::into_inner)
            .ok_or_else(|| Error::Storage("wallet update decided nothing".into()))
    }

    async fn admin_update(
        &self,
        admin: UserId,
        wallet: WalletId,
        action: Action,
        mutate: &(dyn Fn(&WalletState, &mut WalletChange) -> Result<(), Error> + Send + Sync),
    ) -> Result<WalletView, Error> {
        again_if_changed(|| self.admin_update_once(admin, wallet, action, mutate)).await
    }

    async fn admin_update_once(
        &self,
        admin: UserId,
        wallet: WalletId,
        action: Action,
        mutate: &(dyn Fn(&WalletState, &mut WalletChange) -> Result<(), Error> + Send + Sync),
    ) -> Result<WalletView, Error> {
        let (_, keys) = self.load(&[wallet]).await?;
        let view = self
            .update_wallet(Caller::Admin(admin), wallet, action, &keys, mutate)
            .await?;
        self.pins.forget(wallet);
        Ok(view)
    }

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
        old_pin: &str,
        new_pin: &str,
    ) -> Result<WalletView, Error> {
        again_if_changed(|| self.change_pin_once(user, wallet, old_pin, new_pin)).await
    }

    async fn change_pin_once(
        &self,
        user: UserId,
        wallet: WalletId,
        old_pin: &str,
        new_pin: &str,
    ) -> Result<WalletView, Error> {
        let caller = Caller::User(user);
        let (old, new) = (parse_pin(old_pin)?, parse_pin(new_pin)?);
        let (loaded, keys) = self.load(&[wallet]).await?;
        let rec = loaded
            .first()
            .map(|w| &w.record)
            .filter(|r| caller.may_see(r))
            .ok_or(Error::WalletNotFound(wallet))?;
        let (signing, reserved) = match self.unlock(caller, rec, &keys, &old, None).await? {
            Unlocked::Key { key, reserved } => (key, reserved),
            Unlocked::Replayed(_) => {
                return Err(Error::Storage("a PIN change has no idempotency key".into()));
            }
        };
        let sealed = self.seal_signing_key(&signing, &new, rec, &keys).await?;
        let expected_key = rec.signing_key.clone();
        let result = self
            .update_wallet(caller, wallet, Action::WalletPinChanged, &keys, &|s, c| {
                if c.signing_key != expected_key {
                    return Err(Error::Changed(
                        "its PIN changed, or its data key was rotated".into(),
                    ));
                }
                if s.failed_pins >= PIN_LOCK_THRESHOLD && !reserved {
                    return Err(LedgerError::PinLocked.into());
                }
                (c.signing_key, c.kdf_params) = sealed.clone();
                c.failed_pins = 0;
                Ok(())
            })
            .await;
        if result.is_err() && reserved {
            self.release_pin_attempt(wallet, &keys).await?;
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
        new_pin: &str,
    ) -> Result<WalletView, Error> {
        again_if_changed(|| self.reset_pin_once(admin, wallet, new_pin)).await
    }

    async fn reset_pin_once(
        &self,
        admin: UserId,
        wallet: WalletId,
        new_pin: &str,
    ) -> Result<WalletView, Error> {
        let pin = parse_pin(new_pin)?;
        let (loaded, keys) = self.load(&[wallet]).await?;
        let rec = &loaded.first().ok_or(Error::WalletNotFound(wallet))?.record;
        let signing = WalletSigningKey::generate();
        let public = signing.public_key().to_bytes();
        let sealed = self.seal_signing_key(&signing, &pin, rec, &keys).await?;
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
        keys: &Keyring,
    ) -> Result<(Vec<u8>, Vec<u8>), Error> {
        let params = KdfParams::generate(self.config.kdf_iterations)
            .map_err(|e| Error::Storage(format!("KDF parameters: {e}")))?;
        let pin_key = self.pins.derive(pin, &params).await.map_err(pin_error)?;
        let sealed = signing
            .seal(
                &pin_key,
                keys.key(rec.id, rec.dek_version)?,
                &KeyRef::version_only(rec.dek_version),
                &signing_key_aad(rec.id),
            )
            .map_err(|e| Error::Storage(e.to_string()))?;
        Ok((sealed.as_bytes().to_vec(), params.to_bytes().to_vec()))
    }

    // ---- data-key rotation ----

    /// Rotates a wallet's data key: a new version, generated and wrapped by the key provider,
    /// becomes the wallet's current one, and its mutable fields move under it in the same
    /// transaction (the balance, and the signing key's outer layer; the PIN layer inside is
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
        let current = loaded.record.dek_version;
        let next = loaded
            .keys
            .iter()
            .map(|k| k.version)
            .max()
            .unwrap_or(current)
            .checked_add(1)
            .ok_or_else(|| Error::Corrupt(format!("wallet {wallet} has too many data keys")))?;
        let generated = self
            .keys
            .generate_data_key(&wallet_key_context(wallet))
            .await?;
        let record = DataKeyRecord {
            wallet,
            version: next,
            wrapped: generated.wrapped.to_bytes(),
            kek_version: generated.wrapped.version,
        };
        keys.insert(wallet, next, generated.plaintext);
        let event = AuditEvent::new(
            Actor::Service(
                EntityId::parse("coffer-ledger").map_err(|e| Error::Storage(e.to_string()))?,
            ),
            Action::KeyDataKeyCreated,
            Subject::Wallet(entity(wallet)),
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
            let corrupt = |e: &dyn std::fmt::Display| {
                Error::Corrupt(format!("signing key of wallet {wallet}: {e}"))
            };
            let sealed = SealedSigningKey::from_bytes(&rec.signing_key).map_err(|e| corrupt(&e))?;
            let old = keys.key(wallet, sealed.data_key_ref().version())?;
            let moved = sealed
                .reseal_data_layer(
                    old,
                    keys.key(wallet, next)?,
                    &KeyRef::version_only(next),
                    &signing_key_aad(wallet),
                )
                .map_err(|e| corrupt(&e))?;
            Ok(Changes {
                wallets: vec![WalletChange {
                    id: wallet,
                    status: rec.status,
                    balance,
                    signing_key: moved.as_bytes().to_vec(),
                    public_key: rec.public_key,
                    kdf_params: rec.kdf_params.clone(),
                    failed_pins: rec.failed_pins,
                }],
                new_data_key: Some(record.clone()),
                audit: vec![event.clone()],
                ..Changes::default()
            })
        };
        let applied = self.on_wallet(wallet, &decide).await?;
        self.observe(&applied).await;
        Ok(next)
    }

    // ---- reads ----

    /// One transaction, for a caller who owns one of its wallets (or an administrator).
    ///
    /// # Errors
    /// [`Error::TransactionNotFound`] also when the caller has no part in it.
    pub async fn transaction(
        &self,
        caller: Caller,
        id: TransactionId,
    ) -> Result<TransactionView, Error> {
        let t = self
            .store
            .transaction(id)
            .await?
            .ok_or(Error::TransactionNotFound(id))?;
        let mut ids = t.wallets();
        ids.push(t.key_wallet);
        ids.sort();
        ids.dedup();
        let loaded = self.store.load_wallets(&ids).await?;
        if !loaded.iter().any(|w| caller.may_see(&w.record)) {
            return Err(Error::TransactionNotFound(id));
        }
        let keys = self.keyring(&loaded).await?;
        transaction_view(&keys, &t)
    }

    /// A wallet's transactions, newest first, `limit` (1 to [`MAX_PAGE`]) at a time. The
    /// cursor points into the wallet's own sequence, so new transactions never shift a page.
    ///
    /// # Errors
    /// [`Error::Invalid`] for a bad cursor or limit; not found.
    pub async fn history(
        &self,
        caller: Caller,
        wallet: WalletId,
        cursor_in: Option<&str>,
        limit: u32,
    ) -> Result<HistoryPageView, Error> {
        if limit == 0 || limit > MAX_PAGE {
            return Err(Error::invalid("limit", format!("1 to {MAX_PAGE}")));
        }
        let before = cursor_in.map(parse_cursor).transpose()?;
        let (loaded, mut keys) = self.load(&[wallet]).await?;
        if !loaded.iter().all(|w| caller.may_see(&w.record)) {
            return Err(Error::WalletNotFound(wallet));
        }
        let page = self.store.history(wallet, before, limit).await?;
        let mut others: Vec<WalletId> = page
            .iter()
            .flat_map(|(_, t)| t.wallets().into_iter().chain([t.key_wallet]))
            .filter(|w| !keys.holds(*w))
            .collect();
        others.sort();
        others.dedup();
        if !others.is_empty() {
            let more = self.store.load_wallets(&others).await?;
            keys.unwrap(self.keys.as_ref(), &more).await?;
        }
        let items = page
            .iter()
            .map(|(_, t)| transaction_view(&keys, t))
            .collect::<Result<Vec<_>, _>>()?;
        let full = page.len() == usize::try_from(limit).unwrap_or(usize::MAX);
        Ok(HistoryPageView {
            items,
            next_cursor: page.last().filter(|_| full).map(|(seq, _)| cursor(*seq)),
        })
    }

    pub(crate) fn key_provider(&self) -> &dyn KeyProvider {
        self.keys.as_ref()
    }

    pub(crate) fn audit_log(&self) -> &ObservedAuditLog {
        &self.audit
    }
}

fn pin_error(e: PinCheckError) -> Error {
    match e {
        PinCheckError::WrongPin => Error::WrongPin { attempts_left: 0 },
        PinCheckError::Corrupt(r) => Error::Corrupt(r),
        PinCheckError::Unavailable => Error::Unavailable("PIN verification unavailable".into()),
    }
}

/// The stable code of a domain refusal (audit records and the API's problem codes).
#[must_use]
pub fn domain_code(e: &LedgerError) -> &'static str {
    use crate::money::MoneyError;
    match e {
        LedgerError::InsufficientFunds => "insufficient_funds",
        LedgerError::WalletFrozen => "wallet_frozen",
        LedgerError::WalletClosed => "wallet_closed",
        LedgerError::WalletNotEmpty => "wallet_not_empty",
        LedgerError::CurrencyMismatch { .. } => "currency_mismatch",
        LedgerError::SameWallet => "same_wallet",
        LedgerError::PinLocked => "pin_locked",
        LedgerError::AlreadyReversed => "already_reversed",
        LedgerError::ReversalOfReversal => "reversal_of_reversal",
        LedgerError::WalletNotLoaded(_) => "internal",
        LedgerError::Money(m) => match m {
            MoneyError::UnknownCurrency(_) => "unknown_currency",
            MoneyError::NotPositive => "amount_not_positive",
            MoneyError::TooLarge { .. } => "amount_too_large",
            MoneyError::CurrencyMismatch { .. } => "currency_mismatch",
            MoneyError::Overflow => "amount_overflow",
        },
    }
}
