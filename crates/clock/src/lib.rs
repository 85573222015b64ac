//! The clock port: time is an input, as the database and the key provider are.
//!
//! Services and stores read the time from an `Arc<dyn Clock>` they were given, never from
//! `SystemTime::now()` directly, so a test decides what time it is instead of waiting for it:
//!
//! - [`SystemClock`] is the machine's clock, what the composition root wires in production;
//!   constructors that take no clock default to it ([`system`]).
//! - [`ManualClock`] moves only when told ([`ManualClock::advance`], [`ManualClock::set`]): an
//!   expiry, a cache age or a rate limiter's refill happens the moment a test says so. It does no
//!   I/O and reads no ambient state after its creation, so it is always available, not only in
//!   test builds.
//!
//! A clock answers two kinds of time. [`Clock::now`] is wall-clock time: what is stored, signed,
//! sent or compared with another process's timestamps (token expiries, `created_at` columns,
//! TOTP steps). [`Clock::monotonic`] only measures how long ago something happened in this
//! process (cache ages, refetch intervals, a rate limiter's arrivals) and never goes back, even
//! when the wall clock is stepped back. [`Clock::unix_secs`] and [`Clock::unix_micros`] are
//! `now` in the units the stores and tokens use.
//!
//! Not everything takes the clock: a Redis adapter that keeps its state in Redis measures time
//! with Redis's own clock (`TIME`, key expiry), which a manual clock cannot move; its tests wait,
//! with short periods, for Redis to get there.

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The time, as an injected dependency. Used as `Arc<dyn Clock>`.
pub trait Clock: Send + Sync + fmt::Debug {
    /// Wall-clock time.
    fn now(&self) -> SystemTime;

    /// Monotonic time, for durations measured within this process; never goes back.
    fn monotonic(&self) -> Instant;

    /// [`Clock::now`] in whole seconds since the Unix epoch (0 before it).
    fn unix_secs(&self) -> u64 {
        self.now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    }

    /// [`Clock::now`] in microseconds since the Unix epoch (negative before it).
    fn unix_micros(&self) -> i64 {
        match self.now().duration_since(UNIX_EPOCH) {
            Ok(d) => i64::try_from(d.as_micros()).unwrap_or(i64::MAX),
            Err(e) => i64::try_from(e.duration().as_micros()).map_or(i64::MIN, |m| -m),
        }
    }
}

/// The machine's clock: `SystemTime::now()` and `Instant::now()`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }

    fn monotonic(&self) -> Instant {
        Instant::now()
    }
}

/// The machine's clock, shared: what a constructor that is given no clock uses.
#[must_use]
pub fn system() -> Arc<dyn Clock> {
    Arc::new(SystemClock)
}

#[derive(Debug, Clone, Copy)]
struct Reading {
    wall: SystemTime,
    monotonic: Instant,
}

/// A clock that moves only when told. Share it as `Arc<ManualClock>` between the test and the
/// code under test (`Arc<ManualClock>` coerces to `Arc<dyn Clock>`).
///
/// Its monotonic time starts at the moment it was made and moves forward with every
/// [`advance`](Self::advance), and with a [`set`](Self::set) to a later wall time; a `set` to an
/// earlier wall time moves the wall clock back and leaves monotonic time where it is, as stepping
/// a machine's clock back does.
#[derive(Debug)]
pub struct ManualClock {
    reading: Mutex<Reading>,
}

impl ManualClock {
    /// A clock showing `start`, standing still.
    #[must_use]
    pub fn new(start: SystemTime) -> Self {
        Self {
            reading: Mutex::new(Reading {
                wall: start,
                monotonic: Instant::now(),
            }),
        }
    }

    /// A clock showing `secs` seconds after the Unix epoch.
    #[must_use]
    pub fn at_unix_secs(secs: u64) -> Self {
        Self::new(UNIX_EPOCH + Duration::from_secs(secs))
    }

    fn reading(&self) -> std::sync::MutexGuard<'_, Reading> {
        self.reading.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Moves both times forward by `by`.
    pub fn advance(&self, by: Duration) {
        let mut r = self.reading();
        r.wall += by;
        r.monotonic += by;
    }

    /// Shows `to` from now on (see the type's documentation for monotonic time).
    pub fn set(&self, to: SystemTime) {
        let mut r = self.reading();
        if let Ok(forward) = to.duration_since(r.wall) {
            r.monotonic += forward;
        }
        r.wall = to;
    }
}

/// Starts at the machine's present (so its timestamps sit among those of real systems a test
/// also talks to, such as a database), then stands still.
impl Default for ManualClock {
    fn default() -> Self {
        Self::new(SystemTime::now())
    }
}

impl Clock for ManualClock {
    fn now(&self) -> SystemTime {
        self.reading().wall
    }

    fn monotonic(&self) -> Instant {
        self.reading().monotonic
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_stands_still_until_moved() {
        let c = ManualClock::at_unix_secs(1_000);
        let (wall, mono) = (c.now(), c.monotonic());
        assert_eq!((c.now(), c.monotonic()), (wall, mono));
        c.advance(Duration::from_millis(1_500));
        assert_eq!(c.unix_secs(), 1_001);
        assert_eq!(c.unix_micros(), 1_001_500_000);
        assert_eq!(c.monotonic() - mono, Duration::from_millis(1_500));
    }

    #[test]
    fn setting_the_wall_clock_back_leaves_monotonic_time_alone() {
        let c = ManualClock::at_unix_secs(100);
        let mono = c.monotonic();
        c.set(UNIX_EPOCH + Duration::from_secs(160));
        assert_eq!(c.monotonic() - mono, Duration::from_secs(60));
        c.set(UNIX_EPOCH + Duration::from_secs(10));
        assert_eq!(c.unix_secs(), 10);
        assert_eq!(c.monotonic() - mono, Duration::from_secs(60));
    }

    #[test]
    fn units_match_the_stores_and_tokens_before_the_epoch_too() {
        let c = ManualClock::new(UNIX_EPOCH - Duration::from_micros(5));
        assert_eq!((c.unix_secs(), c.unix_micros()), (0, -5));
    }

    #[test]
    fn a_shared_manual_clock_is_a_clock() {
        let manual = Arc::new(ManualClock::default());
        let clock: Arc<dyn Clock> = manual.clone();
        manual.advance(Duration::from_secs(7));
        assert_eq!(clock.now(), manual.now());
        assert!(system().now() > UNIX_EPOCH);
    }
}
