//! The in-process limiter: governor's keyed GCRA, one keyed limiter per policy.
//!
//! Governor keeps a key's state forever unless told otherwise; [`InProcessLimiter::evict_stale`]
//! (run on a schedule by [`InProcessLimiter::spawn_evictor`]) drops every key whose state is
//! indistinguishable from a fresh one, so memory follows the number of recently active keys.
//! Governor has no read-only query; `peek` reads the stored arrival time through a state store
//! shared with the limiter, without writing.
//!
//! Time is the injected clock's monotonic time, mapped onto governor's clock trait (`PortClock`):
//! the system's from [`InProcessLimiter::new`], another from [`InProcessLimiter::with_clock`]. A
//! test on a `coffer_clock::ManualClock` sees budgets refill the moment it moves the clock.

use std::collections::HashMap;
use std::fmt;
use std::num::NonZeroU32;
use std::sync::{Arc, PoisonError, RwLock, Weak};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use coffer_clock::Clock;
use governor::clock::{Clock as GovernorClock, Reference};
use governor::middleware::StateInformationMiddleware;
use governor::nanos::Nanos;
use governor::state::StateStore;
use governor::state::keyed::{DashMapStateStore, ShrinkableKeyedStateStore};
use governor::{Quota, RateLimiter as Governor};

use crate::{Decision, LimitError, Policy, RateLimiter};

/// A keyed state store shared between the governor limiter and `peek`.
#[derive(Clone, Default)]
struct SharedStore(Arc<DashMapStateStore<String>>);

impl StateStore for SharedStore {
    type Key = String;

    fn measure_and_replace<T, F, E>(&self, key: &String, f: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        self.0.measure_and_replace(key, f)
    }
}

impl ShrinkableKeyedStateStore<String> for SharedStore {
    fn retain_recent(&self, drop_below: Nanos) {
        self.0.retain_recent(drop_below);
    }

    fn shrink_to_fit(&self) {
        ShrinkableKeyedStateStore::shrink_to_fit(&*self.0);
    }

    fn len(&self) -> usize {
        self.0.len()
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The port's monotonic time as governor's clock.
#[derive(Clone)]
struct PortClock(Arc<dyn Clock>);

impl GovernorClock for PortClock {
    type Instant = Instant;

    fn now(&self) -> Instant {
        self.0.monotonic()
    }
}

type Limiter = Governor<String, SharedStore, PortClock, StateInformationMiddleware>;

struct PolicyLimiter {
    limiter: Limiter,
    store: SharedStore,
    clock: PortClock,
    /// Read just before the limiter was built, so never after governor's own start.
    start: Instant,
}

impl PolicyLimiter {
    fn new(policy: &Policy, clock: Arc<dyn Clock>) -> Self {
        let clock = PortClock(clock);
        let store = SharedStore::default();
        let burst = NonZeroU32::new(policy.limit()).unwrap_or(NonZeroU32::MIN);
        let quota = Quota::with_period(policy.emission_interval().max(Duration::from_nanos(1)))
            .unwrap_or_else(|| Quota::per_second(burst))
            .allow_burst(burst);
        let start = clock.now();
        let limiter = Limiter::new(quota, store.clone(), clock.clone());
        Self {
            limiter,
            store,
            clock,
            start,
        }
    }

    fn peek(&self, key: &str, policy: &Policy) -> Decision {
        let t = u64::try_from(policy.emission_interval().as_nanos())
            .unwrap_or(u64::MAX)
            .max(1);
        let limit = u64::from(policy.limit());
        let tau = t.saturating_mul(limit - 1);
        let now = Reference::duration_since(&self.clock.now(), self.start).as_u64();
        let tat = if self.store.0.contains_key(key) {
            // An always-failing update: reads the stored arrival time, writes nothing.
            self.store
                .measure_and_replace(&key.to_owned(), Err::<((), Nanos), _>)
                .err()
                .flatten()
                .map(u64::from)
        } else {
            None
        };
        let tat = tat.unwrap_or(now).max(now);
        // Governor's formula: remaining = min(now + tau + t - tat, tau + t) / t.
        let remaining = (now
            .saturating_add(tau)
            .saturating_add(t)
            .saturating_sub(tat))
        .min(tau + t)
            / t;
        let remaining = u32::try_from(remaining).unwrap_or(u32::MAX);
        let allow_at = tat.saturating_sub(tau);
        Decision {
            allowed: remaining >= 1,
            limit: policy.limit(),
            remaining,
            retry_after: Duration::from_nanos(allow_at.saturating_sub(now)),
            reset_after: Duration::from_nanos(tat - now),
        }
    }
}

/// See the [module documentation](self).
pub struct InProcessLimiter {
    limiters: RwLock<HashMap<Policy, Arc<PolicyLimiter>>>,
    clock: Arc<dyn Clock>,
}

impl Default for InProcessLimiter {
    fn default() -> Self {
        Self {
            limiters: RwLock::default(),
            clock: coffer_clock::system(),
        }
    }
}

impl fmt::Debug for InProcessLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InProcessLimiter")
            .field("keys", &self.len())
            .finish()
    }
}

impl InProcessLimiter {
    /// An empty limiter.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty limiter on `clock` (its monotonic time).
    #[must_use]
    pub fn with_clock(clock: Arc<dyn Clock>) -> Self {
        Self {
            limiters: RwLock::default(),
            clock,
        }
    }

    fn for_policy(&self, policy: &Policy) -> Arc<PolicyLimiter> {
        if let Some(l) = self
            .limiters
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(policy)
        {
            return l.clone();
        }
        self.limiters
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(policy.clone())
            .or_insert_with(|| Arc::new(PolicyLimiter::new(policy, self.clock.clone())))
            .clone()
    }

    /// Keys tracked, over all policies.
    #[must_use]
    pub fn len(&self) -> usize {
        self.limiters
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .map(|l| l.limiter.len())
            .sum()
    }

    /// Whether no key is tracked.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drops every key whose budget is full again (its state carries no information) and
    /// returns the memory.
    pub fn evict_stale(&self) {
        let limiters: Vec<_> = self
            .limiters
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .cloned()
            .collect();
        for l in limiters {
            l.limiter.retain_recent();
            l.limiter.shrink_to_fit();
        }
    }

    /// Runs [`InProcessLimiter::evict_stale`] every `every` while the limiter lives.
    pub fn spawn_evictor(self: &Arc<Self>, every: Duration) -> tokio::task::JoinHandle<()> {
        let weak: Weak<Self> = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                match weak.upgrade() {
                    Some(limiter) => limiter.evict_stale(),
                    None => break,
                }
            }
        })
    }

    /// The synchronous check behind [`RateLimiter::check`] (no I/O, so no need to await).
    ///
    /// # Errors
    /// [`LimitError::CostExceedsLimit`].
    pub fn check_now(&self, key: &str, policy: &Policy, cost: u32) -> Result<Decision, LimitError> {
        let l = self.for_policy(policy);
        let cost_nz = NonZeroU32::new(cost).unwrap_or(NonZeroU32::MIN);
        let key = key.to_owned();
        match l.limiter.check_key_n(&key, cost_nz) {
            Ok(Ok(snapshot)) => {
                let remaining = snapshot.remaining_burst_capacity();
                Ok(Decision {
                    allowed: true,
                    limit: policy.limit(),
                    remaining,
                    retry_after: Duration::ZERO,
                    reset_after: policy.emission_interval()
                        * (policy.limit() - remaining.min(policy.limit())),
                })
            }
            Ok(Err(not_until)) => {
                let retry_after = not_until.wait_time_from(l.clock.now());
                let mut d = l.peek(&key, policy);
                d.allowed = false;
                d.retry_after = retry_after;
                Ok(d)
            }
            Err(_) => Err(LimitError::CostExceedsLimit {
                policy: policy.name().to_owned(),
                cost,
                limit: policy.limit(),
            }),
        }
    }
}

#[async_trait]
impl RateLimiter for InProcessLimiter {
    async fn check(&self, key: &str, policy: &Policy, cost: u32) -> Result<Decision, LimitError> {
        self.check_now(key, policy, cost)
    }

    async fn peek(&self, key: &str, policy: &Policy) -> Result<Decision, LimitError> {
        Ok(self.for_policy(policy).peek(key, policy))
    }
}
