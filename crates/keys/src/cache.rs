//! A caching decorator for unwrapped data keys.
//!
//! Unwrapping through Vault Transit or KMS is a network round trip; a wallet's balance is read on
//! every transfer. [`CachingKeyProvider`] implements [`KeyProvider`] around another provider and
//! remembers unwrapped keys:
//!
//! - keyed by the whole wrapped key (provider, key id, version, ciphertext) and the whole
//!   context, so a hit is exactly the case the provider would have accepted;
//! - bounded in entries (least recently used evicted first) and in age;
//! - entries of versions retired through it are dropped at once; a retirement made by another
//!   process is seen when entries reach their maximum age;
//! - entries under a context it is told to forget (their owner was erased) are dropped at once;
//! - an evicted key's bytes are zeroized when its last user lets go (keys are shared, not copied:
//!   see [`coffer_crypto::DataKey`]).
//!
//! Ages are measured on the injected clock's monotonic time ([`Clock::monotonic`]): the system
//! clock from [`CachingKeyProvider::new`], a [`coffer_clock::ManualClock`] in tests of expiry.

use std::fmt;
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use coffer_clock::Clock;
use coffer_crypto::DataKey;
use lru::LruCache;

use crate::{
    Capabilities, GeneratedDataKey, KeyContext, KeyError, KeyProvider, KeyStatus, RewrapRequest,
    WrappedKey,
};

/// Bounds of the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheConfig {
    /// Most entries held.
    pub max_entries: NonZeroUsize,
    /// Longest an entry is served after it was unwrapped.
    pub max_age: Duration,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            max_entries: NonZeroUsize::new(10_000).unwrap_or(NonZeroUsize::MIN),
            max_age: Duration::from_secs(300),
        }
    }
}

/// Counters since start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Served from the cache.
    pub hits: u64,
    /// Sent to the provider.
    pub misses: u64,
    /// Dropped to make room.
    pub evictions: u64,
    /// Dropped for age.
    pub expirations: u64,
    /// Held now.
    pub entries: usize,
}

impl CacheStats {
    /// hits / (hits + misses), or 0 before any lookup.
    #[must_use]
    #[allow(clippy::cast_precision_loss)]
    pub fn hit_ratio(&self) -> f64 {
        let total = self.hits.saturating_add(self.misses);
        if total == 0 {
            0.0
        } else {
            self.hits as f64 / total as f64
        }
    }
}

struct Entry {
    key: DataKey,
    version: u32,
    /// The context's canonical bytes, for [`KeyProvider::forget`].
    context: Vec<u8>,
    inserted: Instant,
}

/// See the [module documentation](self).
pub struct CachingKeyProvider {
    inner: Arc<dyn KeyProvider>,
    config: CacheConfig,
    entries: Mutex<LruCache<Vec<u8>, Entry>>,
    clock: Arc<dyn Clock>,
    hits: AtomicU64,
    misses: AtomicU64,
    evictions: AtomicU64,
    expirations: AtomicU64,
    /// Versions below this were retired through this cache: never (re-)inserted.
    min_version: AtomicU32,
}

impl CachingKeyProvider {
    /// Wraps `inner`.
    #[must_use]
    pub fn new(inner: Arc<dyn KeyProvider>, config: CacheConfig) -> Self {
        Self::with_clock(inner, config, coffer_clock::system())
    }

    /// Wraps `inner`, reading time from `clock`.
    #[must_use]
    pub fn with_clock(
        inner: Arc<dyn KeyProvider>,
        config: CacheConfig,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            inner,
            config,
            entries: Mutex::new(LruCache::new(config.max_entries)),
            clock,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            evictions: AtomicU64::new(0),
            expirations: AtomicU64::new(0),
            min_version: AtomicU32::new(0),
        }
    }

    /// Counters and size.
    #[must_use]
    pub fn stats(&self) -> CacheStats {
        CacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            evictions: self.evictions.load(Ordering::Relaxed),
            expirations: self.expirations.load(Ordering::Relaxed),
            entries: self.lock().len(),
        }
    }

    /// Drops every entry.
    pub fn clear(&self) {
        self.lock().clear();
    }

    fn lock(&self) -> MutexGuard<'_, LruCache<Vec<u8>, Entry>> {
        // A panic while holding the lock cannot leave the map half-updated in a way that matters
        // here (each operation is a single map call), so a poisoned lock is still usable.
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn cache_key(wrapped: &WrappedKey, context: &KeyContext) -> Vec<u8> {
        let mut k = wrapped.to_bytes();
        k.extend_from_slice(&context.canonical_bytes());
        k
    }

    /// Looks `key` up, counting a hit, or an expiry and a miss.
    fn lookup(&self, key: &[u8]) -> Option<DataKey> {
        let now = self.clock.monotonic();
        let mut entries = self.lock();
        let fresh = match entries.get(key) {
            Some(e) if now.saturating_duration_since(e.inserted) < self.config.max_age => {
                Some(e.key.clone())
            }
            Some(_) => {
                entries.pop(key);
                self.expirations.fetch_add(1, Ordering::Relaxed);
                None
            }
            None => None,
        };
        drop(entries);
        let counter = if fresh.is_some() {
            &self.hits
        } else {
            &self.misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
        fresh
    }

    fn insert(&self, key: Vec<u8>, context: &KeyContext, data_key: DataKey, version: u32) {
        // An unwrap that was in flight while its version was retired must not repopulate the
        // cache with it.
        if version < self.min_version.load(Ordering::SeqCst) {
            return;
        }
        let entry = Entry {
            key: data_key,
            version,
            context: context.canonical_bytes(),
            inserted: self.clock.monotonic(),
        };
        let mut entries = self.lock();
        if let Some((old_key, _)) = entries.push(key, entry) {
            // `push` returns the displaced LRU entry, or the previous value for the same key.
            if !entries.contains(&old_key) {
                self.evictions.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

impl fmt::Debug for CachingKeyProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CachingKeyProvider")
            .field("inner", &self.inner)
            .field("config", &self.config)
            .field("stats", &self.stats())
            .finish()
    }
}

#[async_trait]
impl KeyProvider for CachingKeyProvider {
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
        let generated = self.inner.generate_data_key(context).await?;
        // A new key is about to be used (a wallet was just opened): remember it.
        self.insert(
            Self::cache_key(&generated.wrapped, context),
            context,
            generated.plaintext.clone(),
            generated.wrapped.version,
        );
        Ok(generated)
    }

    async fn unwrap_data_key(
        &self,
        wrapped: &WrappedKey,
        context: &KeyContext,
    ) -> Result<DataKey, KeyError> {
        let key = Self::cache_key(wrapped, context);
        if let Some(hit) = self.lookup(&key) {
            return Ok(hit);
        }
        let data_key = self.inner.unwrap_data_key(wrapped, context).await?;
        self.insert(key, context, data_key.clone(), wrapped.version);
        Ok(data_key)
    }

    async fn rewrap_data_keys(
        &self,
        batch: &[RewrapRequest],
    ) -> Result<Vec<Result<WrappedKey, KeyError>>, KeyError> {
        self.inner.rewrap_data_keys(batch).await
    }

    async fn status(&self) -> Result<KeyStatus, KeyError> {
        self.inner.status().await
    }

    async fn rotate(&self) -> Result<u32, KeyError> {
        self.inner.rotate().await
    }

    async fn retire_versions_below(&self, min_version: u32) -> Result<(), KeyError> {
        self.inner.retire_versions_below(min_version).await?;
        self.min_version.fetch_max(min_version, Ordering::SeqCst);
        self.lock().retain(|_, e| e.version >= min_version);
        Ok(())
    }

    async fn health(&self) -> Result<(), KeyError> {
        self.inner.health().await
    }

    fn forget(&self, context: &KeyContext) {
        let bytes = context.canonical_bytes();
        self.lock().retain(|_, e| e.context != bytes);
        self.inner.forget(context);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::MockProvider;
    use coffer_clock::ManualClock;

    fn wrapped(version: u32, ct: u8) -> WrappedKey {
        WrappedKey {
            provider: "mock".into(),
            key_id: "k".into(),
            version,
            ciphertext: vec![ct; 8],
        }
    }

    fn config(max_entries: usize, max_age_ms: u64) -> CacheConfig {
        CacheConfig {
            max_entries: NonZeroUsize::new(max_entries).unwrap(),
            max_age: Duration::from_millis(max_age_ms),
        }
    }

    #[tokio::test]
    async fn second_unwrap_is_served_from_cache() {
        let mut mock = MockProvider::new();
        mock.expect_unwrap_data_key()
            .times(1)
            .returning(|_, _| Ok(DataKey::generate()));
        let cache = CachingKeyProvider::new(Arc::new(mock), config(10, 60_000));
        let ctx = KeyContext::new().with("wallet_id", "w1");
        let a = cache.unwrap_data_key(&wrapped(1, 1), &ctx).await.unwrap();
        let b = cache.unwrap_data_key(&wrapped(1, 1), &ctx).await.unwrap();
        assert_eq!(a.expose_secret(), b.expose_secret());
        let s = cache.stats();
        assert_eq!((s.hits, s.misses, s.entries), (1, 1, 1));
        assert!((s.hit_ratio() - 0.5).abs() < f64::EPSILON);
    }

    #[tokio::test]
    async fn a_forgotten_context_is_unwrapped_again_and_no_other() {
        let mut mock = MockProvider::new();
        mock.expect_unwrap_data_key()
            .times(4)
            .returning(|_, _| Ok(DataKey::generate()));
        let cache = CachingKeyProvider::new(Arc::new(mock), config(10, 60_000));
        let (w1, w2) = (
            KeyContext::new().with("wallet_id", "w1"),
            KeyContext::new().with("wallet_id", "w2"),
        );
        for (w, ct) in [(&w1, 1), (&w1, 2), (&w2, 3)] {
            cache.unwrap_data_key(&wrapped(1, ct), w).await.unwrap();
        }
        cache.forget(&w1);
        assert_eq!(cache.stats().entries, 1);
        // w2 is still served from memory; w1 goes to the provider again.
        cache.unwrap_data_key(&wrapped(1, 3), &w2).await.unwrap();
        cache.unwrap_data_key(&wrapped(1, 1), &w1).await.unwrap();
        assert_eq!((cache.stats().hits, cache.stats().misses), (1, 4));
    }

    #[tokio::test]
    async fn another_context_is_never_a_hit() {
        let mut mock = MockProvider::new();
        mock.expect_unwrap_data_key()
            .times(1)
            .returning(|_, _| Ok(DataKey::generate()));
        mock.expect_unwrap_data_key()
            .times(1)
            .returning(|_, _| Err(KeyError::Corrupt("context mismatch".into())));
        let cache = CachingKeyProvider::new(Arc::new(mock), config(10, 60_000));
        let w = wrapped(1, 1);
        cache
            .unwrap_data_key(&w, &KeyContext::new().with("wallet_id", "w1"))
            .await
            .unwrap();
        let err = cache
            .unwrap_data_key(&w, &KeyContext::new().with("wallet_id", "w2"))
            .await
            .unwrap_err();
        assert!(matches!(err, KeyError::Corrupt(_)));
    }

    #[tokio::test]
    async fn provider_errors_are_not_cached() {
        let mut mock = MockProvider::new();
        let mut calls = 0;
        mock.expect_unwrap_data_key()
            .times(2)
            .returning(move |_, _| {
                calls += 1;
                if calls == 1 {
                    Err(KeyError::Unavailable {
                        provider: "mock".into(),
                        reason: "timeout".into(),
                    })
                } else {
                    Ok(DataKey::generate())
                }
            });
        let cache = CachingKeyProvider::new(Arc::new(mock), config(10, 60_000));
        let ctx = KeyContext::new();
        let err = cache
            .unwrap_data_key(&wrapped(1, 1), &ctx)
            .await
            .unwrap_err();
        assert!(err.is_retryable());
        cache.unwrap_data_key(&wrapped(1, 1), &ctx).await.unwrap();
        assert_eq!(cache.stats().entries, 1);
    }

    #[tokio::test]
    async fn entries_expire_after_max_age() {
        let mut mock = MockProvider::new();
        mock.expect_unwrap_data_key()
            .times(2)
            .returning(|_, _| Ok(DataKey::generate()));
        let clock = Arc::new(ManualClock::default());
        let cache =
            CachingKeyProvider::with_clock(Arc::new(mock), config(10, 1_000), clock.clone());
        let ctx = KeyContext::new();
        cache.unwrap_data_key(&wrapped(1, 1), &ctx).await.unwrap();
        clock.advance(Duration::from_millis(999));
        cache.unwrap_data_key(&wrapped(1, 1), &ctx).await.unwrap();
        clock.advance(Duration::from_millis(1));
        cache.unwrap_data_key(&wrapped(1, 1), &ctx).await.unwrap();
        let s = cache.stats();
        assert_eq!((s.hits, s.misses, s.expirations), (1, 2, 1));
    }

    #[tokio::test]
    async fn size_is_bounded_and_least_recently_used_goes_first() {
        let mut mock = MockProvider::new();
        mock.expect_unwrap_data_key()
            .returning(|_, _| Ok(DataKey::generate()));
        let cache = CachingKeyProvider::new(Arc::new(mock), config(2, 60_000));
        let ctx = KeyContext::new();
        for ct in [1, 2, 1, 3] {
            cache.unwrap_data_key(&wrapped(1, ct), &ctx).await.unwrap();
        }
        // 2 was least recently used when 3 arrived.
        let s = cache.stats();
        assert_eq!((s.entries, s.evictions, s.hits, s.misses), (2, 1, 1, 3));
        cache.unwrap_data_key(&wrapped(1, 1), &ctx).await.unwrap();
        assert_eq!(cache.stats().hits, 2);
        cache.unwrap_data_key(&wrapped(1, 2), &ctx).await.unwrap();
        assert_eq!(cache.stats().misses, 4);
    }

    #[tokio::test]
    async fn evicted_keys_are_released() {
        let mut mock = MockProvider::new();
        mock.expect_unwrap_data_key()
            .returning(|_, _| Ok(DataKey::generate()));
        let cache = CachingKeyProvider::new(Arc::new(mock), config(1, 60_000));
        let ctx = KeyContext::new();
        let first = cache.unwrap_data_key(&wrapped(1, 1), &ctx).await.unwrap();
        assert_eq!(first.holders(), 2, "the cache and this test hold it");
        cache.unwrap_data_key(&wrapped(1, 2), &ctx).await.unwrap();
        assert_eq!(
            first.holders(),
            1,
            "evicted: the cache let go, so it is zeroized when this test drops it"
        );
    }

    #[tokio::test]
    async fn retiring_through_the_cache_drops_those_versions() {
        let mut mock = MockProvider::new();
        mock.expect_unwrap_data_key()
            .returning(|_, _| Ok(DataKey::generate()));
        mock.expect_retire_versions_below()
            .times(1)
            .returning(|_| Ok(()));
        let cache = CachingKeyProvider::new(Arc::new(mock), config(10, 60_000));
        let ctx = KeyContext::new();
        cache.unwrap_data_key(&wrapped(1, 1), &ctx).await.unwrap();
        cache.unwrap_data_key(&wrapped(2, 2), &ctx).await.unwrap();
        cache.retire_versions_below(2).await.unwrap();
        assert_eq!(cache.stats().entries, 1);
        // A version-1 unwrap completing after the retirement is not cached.
        cache.unwrap_data_key(&wrapped(1, 3), &ctx).await.unwrap();
        assert_eq!(cache.stats().entries, 1);
    }
}
