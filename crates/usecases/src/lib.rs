//! Coffer's application layer: every use case as a driving adapter calls it (the HTTP API today;
//! a CLI or another protocol tomorrow), with the application's rules applied in one place:
//!
//! - **Who may do what.** Each use case names the permission it needs, and the caller's roles
//!   must grant it ([`Rbac`](coffer_auth::Rbac)); otherwise [`UseCaseError::Forbidden`].
//! - **Which wallets a caller reads.** Whoever may administer wallets (`wallet:write`) reads any
//!   wallet; everyone else reads their own, and another user's wallet is "not found"
//!   ([`Wallets::reader`]).
//! - **The second factor for money-out.** Withdrawals and transfers that take the sending
//!   wallet's rolling window (what left it over the last `auth.mfa_window_hours`) above the
//!   configured number of major units need a second factor in the token's `amr`
//!   ([`MfaRule`](coffer_auth::MfaRule)). This layer turns the token into the cap
//!   ([`StepUp`](coffer_ledger::StepUp)); the ledger sums the window under the wallet's lock, so
//!   concurrent chunks cannot pass it together. A wallet that is not the caller's is "not found"
//!   first, as everywhere ([`UseCaseError::MfaRequired`]).
//! - **Whose account.** An external issuer's principal has no sessions or factors here
//!   ([`UseCaseError::ExternalIdentity`], [`Account`]).
//!
//! [`Wallets`] holds the wallet and money use cases, [`Admin`] the operators' (wallets,
//! reversals, users and their erasure, keys, the audit log, metrics), [`Webhooks`] the webhook
//! endpoints, [`Account`] the caller's own account. Each
//! takes what the driving adapter parsed (ids, money, PINs, reasons): nothing here parses a
//! string.
//!
//! The domain services ([`Ledger`](coffer_ledger::Ledger)) keep their own rules (ownership on
//! money-out, balances, PINs, idempotency); this layer adds only what depends on how the caller
//! proved who they are. It does no I/O of its own.

mod account;
mod admin;
mod erasure;
mod error;
mod shared;
mod wallets;
mod webhooks;

pub use account::Account;
pub use admin::{Admin, MAX_API_KEY_PAGE, MAX_AUDIT_PAGE, OwnerSearch, WalletSearch};
pub use erasure::UserErasure;
pub use error::UseCaseError;
pub use wallets::Wallets;
pub use webhooks::{MAX_DELIVERY_PAGE, NewWebhook, WebhookPatch, Webhooks};
