//! `MeteredKeyProvider`: a decorator implementing the same port that counts every call to the
//! provider it wraps, by operation: calls, errors and time spent. Placed under the cache, it
//! counts what reaches the key manager (the misses); the metrics endpoint reads [`stats`].
//!
//! [`stats`]: MeteredKeyProvider::stats

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use async_trait::async_trait;
use coffer_crypto::DataKey;

use crate::{
    Capabilities, GeneratedDataKey, KeyContext, KeyError, KeyProvider, KeyStatus, RewrapRequest,
    WrappedKey,
};

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
    errors: AtomicU64,
    micros: AtomicU64,
}

/// One operation's figures since start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OperationStats {
    /// The operation (one of [`OPERATIONS`]).
    pub operation: &'static str,
    /// Calls.
    pub calls: u64,
    /// Calls that failed.
    pub errors: u64,
    /// Time spent, microseconds.
    pub micros: u64,
}

/// See the [module documentation](self).
pub struct MeteredKeyProvider {
    inner: Arc<dyn KeyProvider>,
    counters: [Counters; 7],
}

impl fmt::Debug for MeteredKeyProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MeteredKeyProvider")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl MeteredKeyProvider {
    /// Counts the calls made to `inner`.
    #[must_use]
    pub fn new(inner: Arc<dyn KeyProvider>) -> Self {
        Self {
            inner,
            counters: Default::default(),
        }
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
                errors: c.errors.load(Ordering::Relaxed),
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
            if result.is_err() {
                c.errors.fetch_add(1, Ordering::Relaxed);
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
}
