//! `MeteredKeyProvider`: a decorator implementing the same port that counts every call to the
//! provider it wraps, by operation: calls, errors by kind and time spent, and per minute in a
//! [`UsageCounter`] for the audit log's aggregate records. Placed under the cache, it counts what
//! reaches the key manager (the misses); the metrics endpoint reads [`stats`].
//!
//! [`stats`]: MeteredKeyProvider::stats

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use async_trait::async_trait;
use coffer_crypto::DataKey;

use crate::usage::{UsageCounter, outcome_of};
use crate::{
    Capabilities, GeneratedDataKey, KeyContext, KeyError, KeyProvider, KeyStatus, RewrapRequest,
    WrappedKey,
};

/// The error kinds counted apart (see [`outcome_of`]).
pub const ERROR_KINDS: [&str; 7] = [
    "unavailable",
    "denied",
    "not_found",
    "retired",
    "corrupt",
    "unsupported",
    "other",
];

/// The operations counted.
pub const OPERATIONS: [&str; 7] = [
    "generate_data_key",
    "unwrap_data_key",
    "rewrap_data_keys",
    "status",
    "rotate",
    "retire_versions_below",
    "health",
];

#[derive(Default)]
struct Counters {
    calls: AtomicU64,
    errors: [AtomicU64; 7],
    micros: AtomicU64,
}

/// One operation's figures since start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OperationStats {
    /// The operation (one of [`OPERATIONS`]).
    pub operation: &'static str,
    /// Calls.
    pub calls: u64,
    /// Calls that failed, by kind (in [`ERROR_KINDS`] order).
    pub errors: [(&'static str, u64); 7],
    /// Time spent, microseconds.
    pub micros: u64,
}

impl OperationStats {
    /// Failed calls of every kind.
    #[must_use]
    pub fn error_count(&self) -> u64 {
        self.errors.iter().map(|(_, n)| n).sum()
    }
}

/// See the [module documentation](self).
pub struct MeteredKeyProvider {
    inner: Arc<dyn KeyProvider>,
    counters: [Counters; 7],
    subject: String,
    usage: UsageCounter,
}

coffer_macros::debug_non_exhaustive!(self => MeteredKeyProvider { inner });

impl MeteredKeyProvider {
    /// Counts the calls made to `inner`.
    #[must_use]
    pub fn new(inner: Arc<dyn KeyProvider>) -> Self {
        Self {
            subject: format!("{}:{}", inner.name(), inner.key_id()),
            inner,
            counters: Default::default(),
            usage: UsageCounter::default(),
        }
    }

    /// The per-minute counts not yet written to the audit log.
    #[must_use]
    pub fn usage(&self) -> &UsageCounter {
        &self.usage
    }

    /// The figures of every operation.
    #[must_use]
    pub fn stats(&self) -> Vec<OperationStats> {
        OPERATIONS
            .iter()
            .zip(&self.counters)
            .map(|(operation, c)| OperationStats {
                operation,
                calls: c.calls.load(Ordering::Relaxed),
                errors: std::array::from_fn(|i| {
                    (
                        ERROR_KINDS.get(i).copied().unwrap_or("other"),
                        c.errors.get(i).map_or(0, |n| n.load(Ordering::Relaxed)),
                    )
                }),
                micros: c.micros.load(Ordering::Relaxed),
            })
            .collect()
    }

    async fn count<T>(
        &self,
        op: usize,
        call: impl Future<Output = Result<T, KeyError>>,
    ) -> Result<T, KeyError> {
        let started = Instant::now();
        let result = call.await;
        if let Some(c) = self.counters.get(op) {
            c.calls.fetch_add(1, Ordering::Relaxed);
            let outcome = match &result {
                Ok(_) => "ok",
                Err(e) => {
                    let kind = outcome_of(e);
                    let i = ERROR_KINDS.iter().position(|k| *k == kind).unwrap_or(6);
                    if let Some(n) = c.errors.get(i) {
                        n.fetch_add(1, Ordering::Relaxed);
                    }
                    kind
                }
            };
            if let Some(name) = OPERATIONS.get(op) {
                self.usage.record(&self.subject, name, outcome);
            }
            let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
            c.micros.fetch_add(micros, Ordering::Relaxed);
        }
        result
    }
}

#[async_trait]
impl KeyProvider for MeteredKeyProvider {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn key_id(&self) -> &str {
        self.inner.key_id()
    }

    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }

    async fn generate_data_key(&self, context: &KeyContext) -> Result<GeneratedDataKey, KeyError> {
        self.count(0, self.inner.generate_data_key(context)).await
    }

    async fn unwrap_data_key(
        &self,
        wrapped: &WrappedKey,
        context: &KeyContext,
    ) -> Result<DataKey, KeyError> {
        self.count(1, self.inner.unwrap_data_key(wrapped, context))
            .await
    }

    async fn rewrap_data_keys(
        &self,
        batch: &[RewrapRequest],
    ) -> Result<Vec<Result<WrappedKey, KeyError>>, KeyError> {
        self.count(2, self.inner.rewrap_data_keys(batch)).await
    }

    async fn status(&self) -> Result<KeyStatus, KeyError> {
        self.count(3, self.inner.status()).await
    }

    async fn rotate(&self) -> Result<u32, KeyError> {
        self.count(4, self.inner.rotate()).await
    }

    async fn retire_versions_below(&self, min_version: u32) -> Result<(), KeyError> {
        self.count(5, self.inner.retire_versions_below(min_version))
            .await
    }

    async fn health(&self) -> Result<(), KeyError> {
        self.count(6, self.inner.health()).await
    }

    fn forget(&self, context: &KeyContext) {
        self.inner.forget(context);
    }
}
