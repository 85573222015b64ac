//! The handlers, one module per OpenAPI tag (`auth`, `wallets`, `money`, `admin`, `health`).
//! Each handler checks its permission, calls one service operation and maps the result;
//! ownership (a user reaches only their own wallets: another's answers 404) is the ledger's
//! rule, not a route's.
//!
//! The permission check is [`Principal::require`](crate::api::extract::Principal::require), the
//! route-level RBAC check, against the bearer token verified once by the API's `authenticate`
//! middleware (or by the extractor when that middleware did not run). The path of every route is
//! in its handler's `#[utoipa::path]` annotation, from which the OpenAPI document is generated;
//! `api::router` wires the same paths to the handlers.
//!
//! The use-case modules import nothing from each other; what they share is in [`shared`], a
//! leaf.

pub(super) mod admin;
pub(super) mod auth;
pub(super) mod health;
pub(super) mod money;
mod shared;
pub(super) mod wallets;
