//! The handlers, one module per OpenAPI tag (`auth`, `wallets`, `money`, `admin`, `health`;
//! the admin tag's API keys in `api_keys`, a user's erasure in `erasure`, spending limits of
//! both tags in `limits`).
//! Each handler parses what the request carries into the ledger's and the accounts' types (ids,
//! money, PINs, idempotency keys, reasons), calls one use case (`coffer_usecases::Wallets`,
//! `Admin`, `Account`) with the caller the API's `authenticate` middleware verified, and maps
//! the answer. Who may do what (permissions, the second factor, the external-identity rule) is
//! the use cases'; ownership (a user reaches only their own wallets: another's answers 404) is
//! the ledger's. Neither is a route's. The path of every route is
//! in its handler's `#[utoipa::path]` annotation, from which the OpenAPI document is generated;
//! `api::router` wires the same paths to the handlers.
//!
//! The use-case modules import nothing from each other; what they share is in [`shared`], a
//! leaf.

pub(super) mod admin;
pub(super) mod api_keys;
pub(super) mod auth;
pub(super) mod erasure;
pub(super) mod health;
pub(super) mod holds;
pub(super) mod limits;
pub(super) mod money;
mod shared;
pub(super) mod wallets;
pub(super) mod webhooks;
