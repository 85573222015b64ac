//! What the ledger tells integrators: an event per state change a client cares about, written
//! in the database transaction that makes the change (the transactional outbox), delivered later
//! by the worker.
//!
//! One event per affected wallet, not per transaction: a transfer is a `transaction.posted` on
//! the sender (a negative amount) and one on the receiver (a positive one), each with that
//! wallet's resulting balances. So each event is about exactly one wallet, is sealed under that
//! wallet's data key (an erasure shreds it with the rest), and takes the next number of that
//! wallet's own gap-free sequence ([`EventData::sequence`], from 1), which a consumer uses to
//! order a wallet's events and to notice one it has not seen. Events of one operation on one
//! wallet are numbered in the order listed by [`EventKind`]: holds resolved, then a hold placed,
//! then postings, then status changes. A refusal writes no event, but for a spending limit's
//! (`limit.exceeded`, written with the refusal's audit record).
//!
//! The payload names ids, kinds, amounts (minor units) and the currency, never a memo, a PIN,
//! key material or anything about the owner beyond their user id.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use coffer_ids::id_type;

id_type!(
    /// An event: its stable id, which consumers deduplicate on (UUID v7).
    EventId
);

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// A hold was captured (fully or in part); its posting follows as `transaction.posted`.
    HoldCaptured,
    /// A hold was voided: its money is available again.
    HoldVoided,
    /// A hold lapsed: its money is available again.
    HoldExpired,
    /// Money was reserved on the wallet.
    HoldCreated,
    /// Money was posted to the wallet (a deposit, withdrawal, transfer, reversal, capture or an
    /// erasure's sweep).
    TransactionPosted,
    /// The wallet was opened.
    WalletOpened,
    /// An administrator froze the wallet: nothing leaves it.
    WalletFrozen,
    /// An administrator unfroze it.
    WalletUnfrozen,
    /// The wallet was closed (by an administrator, or by its owner's erasure).
    WalletClosed,
    /// Wrong PINs locked the wallet's money-out until an administrator unlocks it.
    PinLocked,
    /// A withdrawal, transfer or hold was refused by one of the wallet's spending limits.
    LimitExceeded,
}

impl EventKind {
    /// Every kind.
    pub const ALL: [Self; 11] = [
        Self::HoldCaptured,
        Self::HoldVoided,
        Self::HoldExpired,
        Self::HoldCreated,
        Self::TransactionPosted,
        Self::WalletOpened,
        Self::WalletFrozen,
        Self::WalletUnfrozen,
        Self::WalletClosed,
        Self::PinLocked,
        Self::LimitExceeded,
    ];

    /// The name consumers see (the webhook body's `type`) and the store keeps.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::HoldCaptured => "hold.captured",
            Self::HoldVoided => "hold.voided",
            Self::HoldExpired => "hold.expired",
            Self::HoldCreated => "hold.created",
            Self::TransactionPosted => "transaction.posted",
            Self::WalletOpened => "wallet.opened",
            Self::WalletFrozen => "wallet.frozen",
            Self::WalletUnfrozen => "wallet.unfrozen",
            Self::WalletClosed => "wallet.closed",
            Self::PinLocked => "wallet.pin_locked",
            Self::LimitExceeded => "limit.exceeded",
        }
    }

    /// Parses [`EventKind::as_str`].
    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// An event's payload (the webhook body's `data`): what is sealed at rest. Fields that do not
/// apply to its kind are absent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventData {
    /// The event's id (also the webhook's `webhook-id`).
    pub event_id: Uuid,
    /// The wallet it is about.
    pub wallet_id: Uuid,
    /// Its place in the wallet's events: 1, 2, 3… with no gaps.
    pub sequence: i64,
    /// The wallet's currency (ISO 4217).
    pub currency: String,
    /// The wallet's owner (a `wallet.opened`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner_id: Option<Uuid>,
    /// The wallet's status after the change.
    pub status: String,
    /// The transaction posted, or the capture's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transaction_id: Option<Uuid>,
    /// The posted transaction's kind (`deposit`, `withdrawal`, `transfer`, `reversal`,
    /// `capture`, `sweep`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transaction_kind: Option<String>,
    /// The hold concerned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hold_id: Option<Uuid>,
    /// Minor units: a posting's signed amount on this wallet (credit positive), a hold's
    /// amount, or what a capture took.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amount_minor: Option<i64>,
    /// The other wallet of a transfer or a held transfer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub counterparty_wallet_id: Option<Uuid>,
    /// What a reversal reverses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reverses: Option<Uuid>,
    /// A new hold's expiry, microseconds since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at_micros: Option<i64>,
    /// What a limit refused (`limit.exceeded`): `withdrawal`, `transfer` or `hold`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation: Option<String>,
    /// The limit that refused it: its kind (`withdrawal`, `transfer`, `hold`)…
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit_kind: Option<String>,
    /// …its window (`per_transaction`, `rolling_24h`, `rolling_7d`, `rolling_30d`)…
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit_window: Option<String>,
    /// …and what one operation may still send under it, in minor units.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remaining_minor: Option<i64>,
    /// The posted balance after the operation, in minor units.
    pub balance_minor: i64,
    /// The available balance after the operation (posted less live holds).
    pub available_balance_minor: i64,
}

impl EventData {
    /// The payload as sealed: JSON.
    #[must_use]
    #[allow(clippy::expect_used)]
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("strings, numbers and UUIDs always serialize")
    }

    /// Reads [`EventData::to_bytes`].
    ///
    /// # Errors
    /// What is not such a payload.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, String> {
        serde_json::from_slice(bytes).map_err(|e| format!("event payload: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip_through_their_names() {
        for k in EventKind::ALL {
            assert_eq!(EventKind::parse(k.as_str()), Some(k));
        }
        assert_eq!(EventKind::parse("transaction.created"), None);
    }

    #[test]
    fn payload_leaves_out_what_does_not_apply_and_reads_back() {
        let data = EventData {
            event_id: Uuid::now_v7(),
            wallet_id: Uuid::now_v7(),
            sequence: 3,
            currency: "EUR".into(),
            owner_id: None,
            status: "active".into(),
            transaction_id: Some(Uuid::now_v7()),
            transaction_kind: Some("transfer".into()),
            hold_id: None,
            amount_minor: Some(-500),
            counterparty_wallet_id: None,
            reverses: None,
            expires_at_micros: None,
            operation: None,
            limit_kind: None,
            limit_window: None,
            remaining_minor: None,
            balance_minor: 1_000,
            available_balance_minor: 800,
        };
        let bytes = data.to_bytes();
        let text = String::from_utf8(bytes.clone()).unwrap_or_default();
        assert!(!text.contains("hold_id"), "{text}");
        assert!(text.contains("\"amount_minor\":-500"), "{text}");
        assert_eq!(EventData::from_bytes(&bytes), Ok(data));
        assert!(EventData::from_bytes(b"{}").is_err());
    }
}
