//! A revocation list that remembers its answers while it is told of every revocation.
//!
//! Every authenticated request asks the revocation list about its token: on a database that
//! is a round trip per request. [`CachedRevocationList`] answers [`RevocationList::status`]
//! from memory, but only while an invalidation feed is live: the feed (the Postgres adapter's
//! `LISTEN`, see `coffer-store`) reports each revocation committed by any process, and
//! reports when it stops being able to ([`CachedRevocationList::set_live`]). While it is not
//! live, nothing is remembered and every question goes to the wrapped list.
//!
//! What is deliberately absent: a remembered answer outliving a revocation this process was
//! told of. Each invalidation bumps a generation, and an answer read from the wrapped list is
//! kept only when no invalidation happened while it was read, so a read that raced a
//! revocation cannot put the old answer back. Entries also expire after a TTL, a bound for a
//! feed that is live but late, measured on an injected clock's monotonic time (the system's
//! unless [`CachedRevocationList::with_clock`] says otherwise).

use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use coffer_clock::Clock;
use lru::LruCache;

use crate::revocation::{RevocationError, RevocationList, RevocationStatus};

/// How many tokens and users are remembered (least recently used are dropped first).
const ENTRIES: usize = 100_000;

struct Cache {
    live: bool,
    generation: u64,
    /// Token id: whether it is denylisted.
    tokens: LruCache<String, (bool, Instant)>,
    /// User: their epoch.
    users: LruCache<String, (u64, Instant)>,
    global: Option<(u64, Instant)>,
}

impl Cache {
    fn forget_all(&mut self) {
        self.generation += 1;
        self.tokens.clear();
        self.users.clear();
        self.global = None;
    }
}

/// Remembers [`RevocationStatus`] answers of another list while an invalidation feed is live;
/// see the module documentation.
pub struct CachedRevocationList {
    inner: Arc<dyn RevocationList>,
    ttl: Duration,
    cache: Mutex<Cache>,
    clock: Arc<dyn Clock>,
}

coffer_macros::debug_non_exhaustive!(self => CachedRevocationList { inner, ttl });

impl CachedRevocationList {
    /// Wraps `inner`, keeping answers up to `ttl`. It starts not live: it remembers nothing
    /// until its feed says it is.
    #[must_use]
    pub fn new(inner: Arc<dyn RevocationList>, ttl: Duration) -> Self {
        let entries = NonZeroUsize::new(ENTRIES).unwrap_or(NonZeroUsize::MIN);
        Self {
            inner,
            ttl,
            cache: Mutex::new(Cache {
                live: false,
                generation: 0,
                tokens: LruCache::new(entries),
                users: LruCache::new(entries),
                global: None,
            }),
            clock: coffer_clock::system(),
        }
    }

    /// The same, measuring the TTL on `clock`.
    #[must_use]
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, Cache> {
        self.cache.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether the feed reports every revocation from now on (`true`) or may miss some
    /// (`false`). Either way, everything remembered is forgotten: revocations may have been
    /// missed before.
    pub fn set_live(&self, live: bool) {
        let mut c = self.cache();
        c.forget_all();
        c.live = live;
    }

    /// Whether answers are being remembered.
    #[must_use]
    pub fn is_live(&self) -> bool {
        self.cache().live
    }

    /// A token was denylisted.
    pub fn forget_token(&self, jti: &str) {
        let mut c = self.cache();
        c.generation += 1;
        c.tokens.pop(jti);
    }

    /// A user's epoch was bumped.
    pub fn forget_user(&self, user: &str) {
        let mut c = self.cache();
        c.generation += 1;
        c.users.pop(user);
    }

    /// The global epoch was bumped.
    pub fn forget_everyone(&self) {
        let mut c = self.cache();
        c.generation += 1;
        c.global = None;
    }

    /// The remembered answer, if every part of it is fresh; else the generation to check
    /// before remembering a new one.
    fn remembered(&self, jti: &str, user: &str) -> Result<RevocationStatus, Option<u64>> {
        let mut c = self.cache();
        if !c.live {
            return Err(None);
        }
        let now = self.clock.monotonic();
        let fresh = |at: Instant| now.saturating_duration_since(at) < self.ttl;
        let token = c.tokens.get(jti).copied().filter(|(_, at)| fresh(*at));
        let epoch = c.users.get(user).copied().filter(|(_, at)| fresh(*at));
        let global = c.global.filter(|(_, at)| fresh(*at));
        match (token, epoch, global) {
            (Some((token_revoked, _)), Some((user_epoch, _)), Some((global_epoch, _))) => {
                Ok(RevocationStatus {
                    token_revoked,
                    user_epoch,
                    global_epoch,
                })
            }
            _ => Err(Some(c.generation)),
        }
    }

    fn remember(&self, generation: u64, jti: &str, user: &str, s: RevocationStatus) {
        let mut c = self.cache();
        if !c.live || c.generation != generation {
            return;
        }
        let now = self.clock.monotonic();
        c.tokens.put(jti.to_owned(), (s.token_revoked, now));
        c.users.put(user.to_owned(), (s.user_epoch, now));
        c.global = Some((s.global_epoch, now));
    }
}

#[async_trait]
impl RevocationList for CachedRevocationList {
    async fn revoke_token(&self, jti: &str, expires: SystemTime) -> Result<(), RevocationError> {
        let result = self.inner.revoke_token(jti, expires).await;
        self.forget_token(jti);
        result
    }

    async fn revoke_user(&self, user: &str) -> Result<u64, RevocationError> {
        let result = self.inner.revoke_user(user).await;
        self.forget_user(user);
        result
    }

    async fn revoke_everyone(&self) -> Result<u64, RevocationError> {
        let result = self.inner.revoke_everyone().await;
        self.forget_everyone();
        result
    }

    async fn epochs(&self, user: &str) -> Result<(u64, u64), RevocationError> {
        self.inner.epochs(user).await
    }

    async fn status(&self, jti: &str, user: &str) -> Result<RevocationStatus, RevocationError> {
        let generation = match self.remembered(jti, user) {
            Ok(status) => return Ok(status),
            Err(generation) => generation,
        };
        let status = self.inner.status(jti, user).await?;
        if let Some(generation) = generation {
            self.remember(generation, jti, user, status);
        }
        Ok(status)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::InMemoryRevocationList;
    use coffer_clock::ManualClock;

    /// The in-memory list, counting the questions that reach it; with `hold`, each answer is
    /// read, then held until released (a read racing a revocation).
    #[derive(Debug, Default)]
    struct Probe {
        list: InMemoryRevocationList,
        asked: AtomicUsize,
        hold: bool,
        read: tokio::sync::Notify,
        release: tokio::sync::Notify,
    }

    #[async_trait]
    impl RevocationList for Probe {
        async fn revoke_token(&self, jti: &str, until: SystemTime) -> Result<(), RevocationError> {
            self.list.revoke_token(jti, until).await
        }
        async fn revoke_user(&self, user: &str) -> Result<u64, RevocationError> {
            self.list.revoke_user(user).await
        }
        async fn revoke_everyone(&self) -> Result<u64, RevocationError> {
            self.list.revoke_everyone().await
        }
        async fn epochs(&self, user: &str) -> Result<(u64, u64), RevocationError> {
            self.list.epochs(user).await
        }
        async fn status(&self, jti: &str, user: &str) -> Result<RevocationStatus, RevocationError> {
            self.asked.fetch_add(1, Ordering::SeqCst);
            let s = self.list.status(jti, user).await;
            if self.hold {
                self.read.notify_one();
                self.release.notified().await;
            }
            s
        }
    }

    fn cached(ttl: Duration) -> (Arc<Probe>, CachedRevocationList) {
        let inner = Arc::new(Probe::default());
        let list = CachedRevocationList::new(inner.clone(), ttl);
        (inner, list)
    }

    fn later() -> SystemTime {
        SystemTime::now() + Duration::from_secs(600)
    }

    #[tokio::test]
    async fn nothing_is_remembered_until_the_feed_is_live() {
        let (inner, list) = cached(Duration::from_secs(60));
        list.status("t1", "u1").await.unwrap();
        list.status("t1", "u1").await.unwrap();
        assert_eq!(inner.asked.load(Ordering::SeqCst), 2);
        list.set_live(true);
        list.status("t1", "u1").await.unwrap();
        list.status("t1", "u1").await.unwrap();
        assert_eq!(inner.asked.load(Ordering::SeqCst), 3);
        // The feed dropped: revocations may be missed, so everything goes to the list again.
        list.set_live(false);
        list.status("t1", "u1").await.unwrap();
        assert_eq!(inner.asked.load(Ordering::SeqCst), 4);
    }

    #[tokio::test]
    async fn revocations_through_the_cache_are_seen_at_once() {
        let (_, list) = cached(Duration::from_secs(60));
        list.set_live(true);
        assert!(!list.status("t1", "u1").await.unwrap().token_revoked);
        list.revoke_token("t1", later()).await.unwrap();
        assert!(list.status("t1", "u1").await.unwrap().token_revoked);
        assert_eq!(list.status("t2", "u1").await.unwrap().user_epoch, 0);
        list.revoke_user("u1").await.unwrap();
        assert_eq!(list.status("t2", "u1").await.unwrap().user_epoch, 1);
        assert_eq!(list.status("t2", "u1").await.unwrap().global_epoch, 0);
        list.revoke_everyone().await.unwrap();
        assert_eq!(list.status("t2", "u1").await.unwrap().global_epoch, 1);
    }

    #[tokio::test]
    async fn revocations_elsewhere_are_seen_when_the_feed_reports_them() {
        let (inner, list) = cached(Duration::from_secs(60));
        list.set_live(true);
        list.status("t1", "u1").await.unwrap();
        // Another process revokes: this one's answer is remembered until the feed says so.
        inner.list.revoke_token("t1", later()).await.unwrap();
        inner.list.revoke_user("u1").await.unwrap();
        inner.list.revoke_everyone().await.unwrap();
        assert!(!list.status("t1", "u1").await.unwrap().token_revoked);
        list.forget_token("t1");
        let s = list.status("t1", "u1").await.unwrap();
        assert!(s.token_revoked);
        // Each part is forgotten on its own report.
        assert_eq!((s.user_epoch, s.global_epoch), (1, 1));
        inner.list.revoke_user("u1").await.unwrap();
        list.forget_user("u1");
        assert_eq!(list.status("t1", "u1").await.unwrap().user_epoch, 2);
        inner.list.revoke_everyone().await.unwrap();
        list.forget_everyone();
        assert_eq!(list.status("t1", "u1").await.unwrap().global_epoch, 2);
    }

    #[tokio::test]
    async fn answers_expire_after_the_ttl() {
        let clock = Arc::new(ManualClock::default());
        let inner = Arc::new(Probe::default());
        let list = CachedRevocationList::new(inner.clone(), Duration::from_millis(50))
            .with_clock(clock.clone());
        list.set_live(true);
        list.status("t1", "u1").await.unwrap();
        inner.list.revoke_token("t1", later()).await.unwrap();
        clock.advance(Duration::from_millis(80));
        assert!(list.status("t1", "u1").await.unwrap().token_revoked);
    }

    #[tokio::test]
    async fn an_answer_read_while_a_revocation_was_reported_is_not_kept() {
        let inner = Arc::new(Probe {
            hold: true,
            ..Probe::default()
        });
        let list = Arc::new(CachedRevocationList::new(
            inner.clone(),
            Duration::from_secs(60),
        ));
        list.set_live(true);
        let reader = tokio::spawn({
            let list = list.clone();
            async move { list.status("t1", "u1").await.unwrap() }
        });
        // The old answer is read; the revocation commits and is reported; then the read ends.
        inner.read.notified().await;
        inner.list.revoke_token("t1", later()).await.unwrap();
        list.forget_token("t1");
        inner.release.notify_one();
        assert!(!reader.await.unwrap().token_revoked);
        let next = tokio::spawn({
            let list = list.clone();
            async move { list.status("t1", "u1").await.unwrap() }
        });
        // Had the stale answer been kept, the list would not be asked again.
        tokio::time::timeout(Duration::from_secs(5), inner.read.notified())
            .await
            .expect("the list is asked again");
        inner.release.notify_one();
        assert!(next.await.unwrap().token_revoked);
    }
}
