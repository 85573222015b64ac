//! Webhook rules, free of I/O, for the outbox's delivery to endpoints:
//!
//! - [`signature`]: an endpoint's signing secret (`whsec_…`, shown once) and the Standard
//!   Webhooks signature of a delivery (`webhook-signature: v1,<base64 HMAC-SHA256>` over
//!   `id.timestamp.body`), several at once while a rotated secret's old one is still honoured;
//! - [`schedule`]: when a failed delivery is tried again (exponential backoff with jitter, for a
//!   bounded time);
//! - [`address`]: which addresses a delivery may connect to (by default no loopback, private,
//!   link-local, shared, multicast or otherwise special address, IPv4-mapped IPv6 included).

pub mod address;
pub mod schedule;
pub mod signature;

pub use address::AddressPolicy;
pub use schedule::RetrySchedule;
pub use signature::{SecretError, SigningSecret, signature_header};
