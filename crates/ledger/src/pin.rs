//! PIN verification: the slow KDF off the async runtime, bounded, with a short-lived cache of
//! verified PINs.
//!
//! PBKDF2 at the default cost takes tens of milliseconds of one core. It runs on tokio's blocking
//! pool, at most `max_in_flight` at a time, so a flood of PIN guesses queues on the semaphore
//! instead of starving request handling; at most `max_queued` wait behind them, and any more are
//! refused at once ([`PinCheckError::Busy`], a 503 to the client) rather than queueing without
//! bound while every other wallet's money-out waits. A PIN that unsealed a wallet's key is remembered for
//! `ttl`, keyed by wallet, KDF salt and an HMAC of the PIN under a per-process key (so the cache
//! never holds the PIN, and a PIN change, which draws a new salt, misses): a burst of transfers
//! pays the KDF once. Wrong PINs are never cached.

use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use coffer_crypto::{
    Aad, DataKey, HmacKey, KdfParams, Pin, PinKey, SealedSigningKey, UnsealError, WalletPublicKey,
    WalletSigningKey, derive_pin_key,
};
use lru::LruCache;
use tokio::sync::Semaphore;

use crate::domain::WalletId;

/// Bounds of the verifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PinVerifierConfig {
    /// KDF runs at once (at most the cores you want to give to PIN checks).
    pub max_in_flight: usize,
    /// Requests that may wait for a KDF run; more are refused with [`PinCheckError::Busy`].
    pub max_queued: usize,
    /// How long a verified PIN is remembered (zero disables the cache).
    pub ttl: Duration,
    /// Most remembered PINs.
    pub max_cached: NonZeroUsize,
}

impl Default for PinVerifierConfig {
    fn default() -> Self {
        Self {
            max_in_flight: 2,
            max_queued: 64,
            ttl: Duration::from_secs(60),
            max_cached: NonZeroUsize::new(10_000).unwrap_or(NonZeroUsize::MIN),
        }
    }
}

type CacheKey = (WalletId, [u8; 32]);

/// See the [module documentation](self).
pub struct PinVerifier {
    config: PinVerifierConfig,
    permits: Arc<Semaphore>,
    tag_key: HmacKey,
    cache: Mutex<LruCache<CacheKey, (Arc<PinKey>, Instant)>>,
    waiting: AtomicU64,
    derivations: AtomicU64,
}

coffer_macros::debug_non_exhaustive!(self => PinVerifier {
    config, queue_depth: self.queue_depth(),
});

/// Why a PIN did not unseal the wallet's key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PinCheckError {
    /// The PIN is wrong.
    #[error("wrong PIN")]
    WrongPin,
    /// The stored key is damaged or belongs elsewhere (never the user's fault).
    #[error("sealed signing key is corrupt: {0}")]
    Corrupt(String),
    /// The blocking pool is gone (shutting down).
    #[error("PIN verification unavailable")]
    Unavailable,
    /// Every KDF slot is taken and the queue behind them is full: try again shortly.
    #[error("PIN checks are at capacity")]
    Busy,
}

impl PinVerifier {
    /// A verifier with these bounds.
    #[must_use]
    pub fn new(config: PinVerifierConfig) -> Self {
        Self {
            config,
            permits: Arc::new(Semaphore::new(config.max_in_flight.max(1))),
            tag_key: HmacKey::generate(),
            cache: Mutex::new(LruCache::new(config.max_cached)),
            waiting: AtomicU64::new(0),
            derivations: AtomicU64::new(0),
        }
    }

    /// Requests waiting for or running the KDF now (a metric).
    #[must_use]
    pub fn queue_depth(&self) -> u64 {
        self.waiting.load(Ordering::Relaxed)
    }

    /// KDF runs since start (a metric, and how tests see the cache work).
    #[must_use]
    pub fn derivations(&self) -> u64 {
        self.derivations.load(Ordering::Relaxed)
    }

    fn cache_key(&self, wallet: WalletId, params: &KdfParams, pin: &Pin) -> CacheKey {
        let tag = self.tag_key.mac(&[
            wallet.as_uuid().as_bytes(),
            params.to_bytes().as_slice(),
            pin.expose_secret(),
        ]);
        (wallet, tag)
    }

    fn cached(&self, key: &CacheKey) -> Option<Arc<PinKey>> {
        let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        match cache.get(key) {
            Some((k, at)) if at.elapsed() < self.config.ttl => Some(k.clone()),
            Some(_) => {
                cache.pop(key);
                None
            }
            None => None,
        }
    }

    /// Forgets every remembered PIN of `wallet` (after a lockout, a PIN reset, or a freeze).
    pub fn forget(&self, wallet: WalletId) {
        self.cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|(w, _), _| *w != wallet);
    }

    /// Derives the PIN key on the blocking pool, waiting for one of the `max_in_flight` permits
    /// (for setting a new PIN; checking one goes through [`PinVerifier::unseal`]).
    ///
    /// # Errors
    /// [`PinCheckError::Busy`] when the queue is full, [`PinCheckError::Unavailable`] when the
    /// runtime is shutting down.
    pub async fn derive(&self, pin: &Pin, params: &KdfParams) -> Result<PinKey, PinCheckError> {
        let most = (self.config.max_in_flight.max(1) + self.config.max_queued) as u64;
        if self.waiting.fetch_add(1, Ordering::Relaxed) >= most {
            self.waiting.fetch_sub(1, Ordering::Relaxed);
            return Err(PinCheckError::Busy);
        }
        let derived = async {
            let _permit = self
                .permits
                .clone()
                .acquire_owned()
                .await
                .map_err(|_| PinCheckError::Unavailable)?;
            let (pin, params) = (pin.clone(), params.clone());
            self.derivations.fetch_add(1, Ordering::Relaxed);
            tokio::task::spawn_blocking(move || derive_pin_key(&pin, &params))
                .await
                .map_err(|_| PinCheckError::Unavailable)
        }
        .await;
        self.waiting.fetch_sub(1, Ordering::Relaxed);
        derived
    }

    /// Unseals `wallet`'s signing key with `pin` if this PIN is remembered as right; `None`
    /// (nothing run) when it is not, so the caller can count the attempt before the KDF runs.
    #[allow(clippy::too_many_arguments)]
    pub fn unseal_if_cached(
        &self,
        wallet: WalletId,
        pin: &Pin,
        params: &KdfParams,
        sealed: &SealedSigningKey,
        dek: &DataKey,
        aad: &Aad,
        public: &WalletPublicKey,
    ) -> Option<Result<WalletSigningKey, PinCheckError>> {
        let pin_key = self.cached(&self.cache_key(wallet, params, pin))?;
        Some(match sealed.unseal(&pin_key, dek, aad, public) {
            Ok(k) => Ok(k),
            Err(UnsealError::WrongPin) => Err(PinCheckError::WrongPin),
            Err(UnsealError::Corrupt(reason)) => Err(PinCheckError::Corrupt(reason.to_string())),
        })
    }

    /// Unseals `wallet`'s signing key with `pin`.
    ///
    /// # Errors
    /// [`PinCheckError::WrongPin`], [`PinCheckError::Corrupt`], [`PinCheckError::Unavailable`].
    #[allow(clippy::too_many_arguments)]
    pub async fn unseal(
        &self,
        wallet: WalletId,
        pin: &Pin,
        params: &KdfParams,
        sealed: &SealedSigningKey,
        dek: &DataKey,
        aad: &Aad,
        public: &WalletPublicKey,
    ) -> Result<WalletSigningKey, PinCheckError> {
        let key = self.cache_key(wallet, params, pin);
        let pin_key = match self.cached(&key) {
            Some(k) => k,
            None => Arc::new(self.derive(pin, params).await?),
        };
        match sealed.unseal(&pin_key, dek, aad, public) {
            Ok(signing_key) => {
                if !self.config.ttl.is_zero() {
                    self.cache
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .put(key, (pin_key, Instant::now()));
                }
                Ok(signing_key)
            }
            Err(UnsealError::WrongPin) => Err(PinCheckError::WrongPin),
            Err(UnsealError::Corrupt(reason)) => Err(PinCheckError::Corrupt(reason.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use coffer_crypto::{KeyRef, pin::MIN_ITERATIONS};

    struct Wallet {
        id: WalletId,
        params: KdfParams,
        sealed: SealedSigningKey,
        dek: DataKey,
        aad: Aad,
        public: WalletPublicKey,
    }

    fn wallet(pin: &str, iterations: u32) -> Wallet {
        let id = WalletId::new();
        let params = KdfParams::generate(iterations).unwrap();
        let dek = DataKey::generate();
        let aad = Aad::new("wallet.signing_key").with(id.to_string());
        let key = WalletSigningKey::generate();
        let pin_key = derive_pin_key(&Pin::parse(pin).unwrap(), &params);
        let sealed = key
            .seal(&pin_key, &dek, &KeyRef::version_only(1), &aad)
            .unwrap();
        Wallet {
            id,
            params,
            sealed,
            dek,
            aad,
            public: key.public_key(),
        }
    }

    async fn check(
        v: &PinVerifier,
        w: &Wallet,
        pin: &str,
    ) -> Result<WalletSigningKey, PinCheckError> {
        v.unseal(
            w.id,
            &Pin::parse(pin).unwrap(),
            &w.params,
            &w.sealed,
            &w.dek,
            &w.aad,
            &w.public,
        )
        .await
    }

    #[tokio::test]
    async fn a_verified_pin_is_remembered_and_a_wrong_one_never() {
        let v = PinVerifier::new(PinVerifierConfig::default());
        let w = wallet("123456", MIN_ITERATIONS);
        check(&v, &w, "123456").await.unwrap();
        check(&v, &w, "123456").await.unwrap();
        assert_eq!(v.derivations(), 1, "the burst paid the KDF once");
        for _ in 0..3 {
            assert_eq!(
                check(&v, &w, "654321").await.unwrap_err(),
                PinCheckError::WrongPin
            );
        }
        assert_eq!(v.derivations(), 4, "every wrong guess pays the KDF");
        v.forget(w.id);
        check(&v, &w, "123456").await.unwrap();
        assert_eq!(v.derivations(), 5);
    }

    /// Ten checks at once with one KDF slot and two places in the queue: three are run, seven
    /// are refused at once, and the queue is empty again afterwards.
    #[tokio::test]
    async fn a_full_queue_refuses_at_once() {
        let v = PinVerifier::new(PinVerifierConfig {
            max_in_flight: 1,
            max_queued: 2,
            ..PinVerifierConfig::default()
        });
        let pin = Pin::parse("493817").unwrap();
        let params = KdfParams::generate(MIN_ITERATIONS * 20).unwrap();
        let results =
            futures_util::future::join_all((0..10).map(|_| v.derive(&pin, &params))).await;
        let busy = results
            .iter()
            .filter(|r| matches!(r, Err(PinCheckError::Busy)))
            .count();
        assert_eq!((results.len() - busy, busy), (3, 7));
        assert_eq!((v.derivations(), v.queue_depth()), (3, 0));
        v.derive(&pin, &params).await.unwrap();
    }

    #[tokio::test]
    async fn a_changed_pin_misses_the_cache() {
        let v = PinVerifier::new(PinVerifierConfig::default());
        let w = wallet("111111", MIN_ITERATIONS);
        check(&v, &w, "111111").await.unwrap();
        // The PIN changes: same key re-sealed under new KDF parameters (a new salt).
        let key = check(&v, &w, "111111").await.unwrap();
        let params = KdfParams::generate(MIN_ITERATIONS).unwrap();
        let new_key = derive_pin_key(&Pin::parse("222222").unwrap(), &params);
        let sealed = key
            .seal(&new_key, &w.dek, &KeyRef::version_only(1), &w.aad)
            .unwrap();
        let changed = Wallet {
            params,
            sealed,
            ..w
        };
        assert_eq!(
            check(&v, &changed, "111111").await.unwrap_err(),
            PinCheckError::WrongPin
        );
        check(&v, &changed, "222222").await.unwrap();
    }

    #[tokio::test]
    async fn entries_expire() {
        let v = PinVerifier::new(PinVerifierConfig {
            ttl: Duration::from_millis(30),
            ..PinVerifierConfig::default()
        });
        let w = wallet("123456", MIN_ITERATIONS);
        check(&v, &w, "123456").await.unwrap();
        tokio::time::sleep(Duration::from_millis(60)).await;
        check(&v, &w, "123456").await.unwrap();
        assert_eq!(v.derivations(), 2);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_flood_of_guesses_queues_without_blocking_the_runtime() {
        let v = Arc::new(PinVerifier::new(PinVerifierConfig {
            max_in_flight: 1,
            ..PinVerifierConfig::default()
        }));
        let w = Arc::new(wallet("123456", 50_000));
        let guesses: Vec<_> = (0..6)
            .map(|i| {
                let (v, w) = (v.clone(), w.clone());
                tokio::spawn(async move { check(&v, &w, &format!("00000{i}")).await })
            })
            .collect();
        // While the KDF runs on the blocking pool, the runtime still serves other work.
        let mut ticks = 0;
        while guesses.iter().any(|g| !g.is_finished()) {
            tokio::time::sleep(Duration::from_millis(5)).await;
            ticks += 1;
            assert!(v.queue_depth() <= 6);
        }
        assert!(
            ticks > 1,
            "the runtime kept running while guesses were checked"
        );
        for g in guesses {
            assert_eq!(g.await.unwrap().unwrap_err(), PinCheckError::WrongPin);
        }
        assert_eq!(v.queue_depth(), 0);
    }

    #[tokio::test]
    async fn corruption_is_not_a_wrong_pin() {
        let v = PinVerifier::new(PinVerifierConfig::default());
        let w = wallet("123456", MIN_ITERATIONS);
        let other_dek = Wallet {
            dek: DataKey::generate(),
            ..w
        };
        assert!(matches!(
            check(&v, &other_dek, "123456").await,
            Err(PinCheckError::Corrupt(_))
        ));
    }
}
