//! When a failed delivery is tried again: exponential backoff (each wait `factor` times the
//! last, up to `max_interval`) with jitter, until `give_up_after` has passed since the first
//! attempt; then the delivery is failed. The jitter is an input (a number in `[0, 1)` the caller
//! draws), so the schedule is a pure function and its tests need no randomness.

use std::time::Duration;

/// The retry schedule (configuration).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetrySchedule {
    /// The wait after the first failure.
    pub first: Duration,
    /// Each further wait is this many times the one before.
    pub factor: u32,
    /// The longest wait.
    pub max_interval: Duration,
    /// No attempt is scheduled this long after the first one.
    pub give_up_after: Duration,
}

impl Default for RetrySchedule {
    /// 5 s, doubling, at most an hour apart, for a day.
    fn default() -> Self {
        Self {
            first: Duration::from_secs(5),
            factor: 2,
            max_interval: Duration::from_secs(3600),
            give_up_after: Duration::from_secs(24 * 3600),
        }
    }
}

impl RetrySchedule {
    /// The wait before the next attempt after `failures` failed ones (1 or more), the first of
    /// them `elapsed` ago, with `jitter` in `[0, 1)`: between half the backoff and all of it
    /// ("equal jitter", so retries of many deliveries spread out but none comes early). `None`:
    /// give up, the next attempt would be past `give_up_after`.
    #[must_use]
    pub fn next_wait(&self, failures: u32, elapsed: Duration, jitter: f64) -> Option<Duration> {
        let steps = failures.saturating_sub(1);
        let growth = self.factor.max(1).checked_pow(steps).unwrap_or(u32::MAX);
        let backoff = self
            .first
            .checked_mul(growth)
            .unwrap_or(self.max_interval)
            .min(self.max_interval);
        let jitter = if jitter.is_finite() {
            jitter.clamp(0.0, 1.0)
        } else {
            0.0
        };
        let wait = backoff / 2 + (backoff / 2).mul_f64(jitter);
        (elapsed + wait <= self.give_up_after).then_some(wait)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: fn(u64) -> Duration = Duration::from_secs;

    #[test]
    fn waits_double_up_to_the_cap_within_half_and_all_of_the_backoff() {
        let r = RetrySchedule::default();
        assert_eq!(
            r.next_wait(1, S(0), 0.0),
            Some(Duration::from_millis(2_500))
        );
        assert_eq!(r.next_wait(1, S(0), 1.0), Some(S(5)));
        assert_eq!(r.next_wait(2, S(5), 1.0), Some(S(10)));
        assert_eq!(r.next_wait(4, S(60), 1.0), Some(S(40)));
        // 5 s × 2^10 passes the hour: capped.
        assert_eq!(r.next_wait(11, S(600), 1.0), Some(S(3600)));
        assert_eq!(r.next_wait(200, S(600), 0.0), Some(S(1800)));
        for failures in 1..40 {
            let low = r.next_wait(failures, S(0), 0.0).unwrap();
            let high = r.next_wait(failures, S(0), 0.999).unwrap();
            assert!(low <= high && high <= low * 2, "{failures}");
        }
        assert_eq!(r.next_wait(1, S(0), f64::NAN), r.next_wait(1, S(0), 0.0));
    }

    #[test]
    fn gives_up_once_the_next_attempt_would_be_too_late() {
        let r = RetrySchedule::default();
        assert_eq!(r.next_wait(30, S(24 * 3600 - 1800), 0.0), Some(S(1800)));
        assert_eq!(r.next_wait(30, S(24 * 3600 - 1800), 0.5), None);
        assert_eq!(r.next_wait(1, S(24 * 3600), 0.0), None);
        // Attempts a schedule allows in a day: each wait at least half the backoff.
        let (mut elapsed, mut failures) = (Duration::ZERO, 1);
        while let Some(wait) = r.next_wait(failures, elapsed, 0.0) {
            elapsed += wait;
            failures += 1;
        }
        assert!((20..60).contains(&failures), "{failures}");
    }
}
