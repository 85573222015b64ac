//! What the handlers, the extractors and the middleware share: [`ApiState`] (the services every
//! handler reaches), [`Readiness`] (what `/readyz` asks), [`Authenticated`] (the caller the
//! `authenticate` middleware verified, left in the request's extensions for the rate limiter and
//! the `Principal` extractor) and the request id header, [`REQUEST_ID`].
//!
//! Every module of the API imports these from here, never from `api` itself: the folder's
//! imports flow one way, from the router down.

use std::sync::Arc;

use async_trait::async_trait;
use axum::http::HeaderName;
use coffer_auth::Authenticator;
use coffer_auth::accounts::Accounts;
use coffer_ledger::Ledger;
use coffer_usecases::{Account, Admin, Wallets, Webhooks};

use super::{extract, metrics};

/// The request id header.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// What `/readyz` asks: each dependency's name and whether it answers.
#[async_trait]
pub trait Readiness: Send + Sync {
    /// One entry per dependency (database, key provider, Redis when configured).
    async fn check(&self) -> Vec<(&'static str, Result<(), String>)>;
}

/// What the handlers share.
#[derive(Clone)]
pub struct ApiState {
    /// The ledger (its settings and PIN queue; every use case goes through `wallets`, `admin`
    /// or `account`).
    pub ledger: Arc<Ledger>,
    /// The wallet and money use cases, with their permissions, read rule and second factor.
    pub wallets: Wallets,
    /// The operators' use cases, each behind its permission.
    pub admin: Admin,
    /// The caller's own account (sessions, second factor).
    pub account: Account,
    /// The webhook endpoints' use cases.
    pub webhooks: Webhooks,
    /// Accounts and tokens.
    pub accounts: Arc<Accounts>,
    /// Bearer tokens to principals: Coffer's own, and those of configured external issuers.
    pub authenticator: Authenticator,
    /// Readiness checks.
    pub readiness: Arc<dyn Readiness>,
    /// The metrics registry.
    pub metrics: Arc<metrics::Metrics>,
}

impl std::fmt::Debug for ApiState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiState").finish_non_exhaustive()
    }
}

/// The caller a request's token proved, verified once by `authenticate` (the rate limiter keys
/// by its user; the `Principal` extractor reuses it).
#[derive(Debug, Clone)]
pub struct Authenticated(pub extract::Principal);
