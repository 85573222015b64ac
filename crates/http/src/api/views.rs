//! Response bodies: what the API promises clients (their schemas are published in
//! `docs/openapi.json`). Money is integer minor units with its ISO 4217 code; times are RFC 3339;
//! keys and signatures base64url.
//!
//! Here the `wallets` and `money` tags' bodies (wallets, transactions, history) and the tokens;
//! the other tags' in [`auth`], [`admin`], [`api_keys`] and [`health`]; the problem sets each operation can
//! answer in [`errors`]. A body's component name in the document is its type's, or the name
//! given with `#[schema(as = ...)]` where generated clients know another one. Each module here
//! imports nothing from its siblings.

mod admin;
mod api_keys;
mod auth;
pub mod errors;
mod health;
mod webhooks;

pub use admin::{AuditPage, AuditVerify, Keys, PasswordReset, Roles, Rotation, UserErasure};
pub use api_keys::{ApiKey, ApiKeyCreated, ApiKeys};
pub use auth::{Me, TotpEnrollment, UserCreated};
pub use health::{Health, Ready};
pub use webhooks::{Deliveries, Delivery, Webhook, WebhookCreated, WebhookTest, Webhooks};

use std::time::{Duration, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use coffer_ledger::{
    HistoryPageView, HoldPageView, HoldView, LimitsView, TransactionView, WalletPageView,
    WalletView,
};
use serde::Serialize;

fn rfc3339(micros: i64) -> String {
    let t = UNIX_EPOCH + Duration::from_micros(u64::try_from(micros).unwrap_or(0));
    humantime::format_rfc3339_micros(t).to_string()
}

/// Seconds since the epoch as RFC 3339.
fn rfc3339_secs(secs: u64) -> String {
    rfc3339(i64::try_from(secs.saturating_mul(1_000_000)).unwrap_or(i64::MAX))
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A wallet.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Wallet {
    id: String,
    owner_id: String,
    currency: &'static str,
    status: &'static str,
    /// The posted balance, minor units.
    balance: i64,
    /// What may be spent: `balance` less the wallet's live holds, minor units.
    available_balance: i64,
    public_key: String,
    failed_pins: u32,
    created_at: String,
    updated_at: String,
    /// RFC 3339: when its owner was erased (it is closed, its balance was 0, its keys are
    /// destroyed); absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    erased_at: Option<String>,
}

impl From<&WalletView> for Wallet {
    fn from(w: &WalletView) -> Self {
        Self {
            id: w.id.to_string(),
            owner_id: w.owner.to_string(),
            currency: w.currency.code(),
            status: w.status.as_str(),
            balance: w.balance.minor(),
            available_balance: w.available.minor(),
            public_key: b64(&w.public_key),
            failed_pins: w.failed_pins,
            created_at: rfc3339(w.created_at),
            updated_at: rfc3339(w.updated_at),
            erased_at: w.erased_at.map(rfc3339),
        }
    }
}

/// A page of wallets, oldest first.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Wallets {
    items: Vec<Wallet>,
    /// Pass it as `cursor` for the next page; null at the end.
    next_cursor: Option<String>,
}

impl From<&WalletPageView> for Wallets {
    fn from(p: &WalletPageView) -> Self {
        Self {
            items: p.items.iter().map(Wallet::from).collect(),
            next_cursor: p.next_cursor.clone(),
        }
    }
}

/// A transaction, with its signature and the signer's public key for money-out.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Transaction {
    id: String,
    kind: &'static str,
    amount: i64,
    currency: &'static str,
    from_wallet_id: Option<String>,
    to_wallet_id: Option<String>,
    memo: Option<String>,
    created_at: String,
    idempotency_key: String,
    reverses: Option<String>,
    reversed_by: Option<String>,
    signature: Option<String>,
    public_key: Option<String>,
    /// Participants whose owner was erased (their data keys destroyed): their side stays sealed
    /// for good; absent when there are none.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    erased_wallets: Vec<String>,
}

impl From<&TransactionView> for Transaction {
    fn from(t: &TransactionView) -> Self {
        Self {
            id: t.id.to_string(),
            kind: t.kind.as_str(),
            amount: t.money.amount.minor(),
            currency: t.money.currency.code(),
            from_wallet_id: t.from_wallet.map(|w| w.to_string()),
            to_wallet_id: t.to_wallet.map(|w| w.to_string()),
            memo: t.memo.clone(),
            created_at: rfc3339(t.at_micros),
            idempotency_key: t.idempotency_key.clone(),
            reverses: t.reverses.map(|r| r.to_string()),
            reversed_by: t.reversed_by.map(|r| r.to_string()),
            signature: t.signature.map(|s| b64(&s)),
            public_key: t.public_key.map(|k| b64(&k)),
            erased_wallets: t.erased.iter().map(ToString::to_string).collect(),
        }
    }
}

/// A hold: money reserved on `wallet_id` for a capture to `to_wallet_id` (a held transfer) or
/// out (a held withdrawal, `to_wallet_id` null).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Hold {
    id: String,
    wallet_id: String,
    to_wallet_id: Option<String>,
    /// The most it may capture, minor units.
    amount: i64,
    currency: &'static str,
    memo: Option<String>,
    /// `active`, `captured`, `voided` or `expired` (an active hold past its expiry reads as
    /// expired).
    status: &'static str,
    created_at: String,
    expires_at: String,
    resolved_at: Option<String>,
    /// The capture's transaction.
    capture_transaction_id: Option<String>,
    idempotency_key: String,
    /// The payer's signature over the hold (it authorises the captures), and its public key.
    signature: String,
    public_key: String,
}

impl From<&HoldView> for Hold {
    fn from(h: &HoldView) -> Self {
        Self {
            id: h.id.to_string(),
            wallet_id: h.wallet.to_string(),
            to_wallet_id: h.to_wallet.map(|w| w.to_string()),
            amount: h.money.amount.minor(),
            currency: h.money.currency.code(),
            memo: h.memo.clone(),
            status: h.status.as_str(),
            created_at: rfc3339(h.created_at),
            expires_at: rfc3339(h.expires_at),
            resolved_at: h.resolved_at.map(rfc3339),
            capture_transaction_id: h.capture.map(|t| t.to_string()),
            idempotency_key: h.idempotency_key.clone(),
            signature: b64(&h.signature),
            public_key: b64(&h.public_key),
        }
    }
}

/// A wallet's spending limits: its own (set by an administrator) or its currency's default.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Limits {
    wallet_id: String,
    /// The currency of every amount here.
    currency: &'static str,
    /// `wallet`: set for this wallet; `default`: its currency's policy.
    source: &'static str,
    limits: Vec<LimitState>,
}

/// One limit and where it stands now.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct LimitState {
    /// `withdrawal`, `transfer` or `hold` (a held transfer or withdrawal counts against the hold
    /// limit and its kind's while it is live).
    kind: &'static str,
    /// `per_transaction`, `rolling_24h`, `rolling_7d` or `rolling_30d`.
    window: &'static str,
    /// The most, minor units.
    max_minor: i64,
    /// Sent (or held) within the window, minor units; null per transaction.
    used_minor: Option<i64>,
    /// What one more operation may send under it, minor units.
    remaining_minor: i64,
}

impl From<&LimitsView> for Limits {
    fn from(v: &LimitsView) -> Self {
        Self {
            wallet_id: v.wallet.to_string(),
            currency: v.currency.code(),
            source: if v.own { "wallet" } else { "default" },
            limits: v
                .limits
                .iter()
                .map(|s| LimitState {
                    kind: s.limit.kind.as_str(),
                    window: s.limit.window.as_str(),
                    max_minor: s.limit.max.minor(),
                    used_minor: s.used,
                    remaining_minor: s.remaining,
                })
                .collect(),
        }
    }
}

/// A page of a wallet's holds.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Holds {
    /// Newest first.
    items: Vec<Hold>,
    /// Pass it as `cursor` for the next page; null at the end.
    next_cursor: Option<String>,
}

impl From<&HoldPageView> for Holds {
    fn from(p: &HoldPageView) -> Self {
        Self {
            items: p.items.iter().map(Hold::from).collect(),
            next_cursor: p.next.map(|h| h.to_string()),
        }
    }
}

/// A capture: the hold, captured, and the transaction that moved the money.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Capture {
    hold: Hold,
    transaction: Transaction,
}

impl Capture {
    pub(super) fn new(hold: &HoldView, transaction: &TransactionView) -> Self {
        Self {
            hold: Hold::from(hold),
            transaction: Transaction::from(transaction),
        }
    }
}

/// A page of history, newest first.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct History {
    items: Vec<Transaction>,
    next_cursor: Option<String>,
    /// With an amount range: the page stopped at the bound on transactions read before it was
    /// full; `next_cursor` goes on from there.
    stopped_early: bool,
    /// The wallet's posted balance when the page was read, minor units.
    balance: i64,
    /// Its available balance then (posted less its live holds), minor units.
    available_balance: i64,
}

impl From<&HistoryPageView> for History {
    fn from(p: &HistoryPageView) -> Self {
        Self {
            items: p.items.iter().map(Transaction::from).collect(),
            next_cursor: p.next_cursor.clone(),
            stopped_early: p.stopped_early,
            balance: p.balance.minor(),
            available_balance: p.available.minor(),
        }
    }
}

/// Tokens after a login or refresh.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Tokens {
    pub(super) access_token: String,
    pub(super) token_type: &'static str,
    pub(super) expires_in: u64,
    pub(super) refresh_token: String,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tokens([REDACTED])")
    }
}

impl From<&coffer_auth::accounts::Session> for Tokens {
    fn from(s: &coffer_auth::accounts::Session) -> Self {
        Self {
            access_token: s.access_token.to_string(),
            token_type: "Bearer",
            expires_in: s.expires_in,
            refresh_token: s.refresh_token.expose().to_owned(),
        }
    }
}
