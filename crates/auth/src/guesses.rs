//! Guesses per account: a doubling backoff on wrong passwords and wrong codes.
//!
//! The per-address rate limits stop one client; they do not stop many addresses guessing one
//! account. [`GuessBackoff`] counts wrong guesses per account, keyed by what the guess is aimed
//! at: the email's blind index for a login's password (so an unknown email is treated exactly as
//! a known one), the user id for what is guessed with a session (TOTP codes at login, enrollment
//! confirmation and removal, the password asked again at enrollment).
//!
//! The first [`FREE_GUESSES`] wrong guesses cost nothing; each one after that closes the account
//! to guesses for twice as long as the one before, from one second up to [`MAX_BACKOFF`]. While
//! closed, a guess is refused before anything is checked (no Argon2 run, no code compared), so
//! being refused tells nothing about the guess. A right guess ends the run; a run whose last
//! wrong guess is older than [`RUN_FORGOTTEN_AFTER`] is forgotten. Nothing ever locks an account
//! for good: the worst a stranger can impose on a victim is a wait of [`MAX_BACKOFF`].
//!
//! At that pace an account takes at most 96 guesses a day once the wait is at its longest; a
//! six-digit code guessed against three accepted codes has a 3-in-a-million chance each time, so
//! an even chance of getting in takes some 230,000 guesses: over six years of a replica's pace
//! (the contract case `guesses_at_one_account_back_off_from_any_address` counts a simulated day).
//! The count lives in this process's memory, bounded to [`TRACKED_ACCOUNTS`]
//! accounts (least recently guessed forgotten first): replicas each keep their own, so `n`
//! replicas allow `n` times the guesses.

use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use coffer_clock::Clock;
use lru::LruCache;

use crate::user::UserId;

/// Wrong guesses allowed before the backoff starts.
pub const FREE_GUESSES: u32 = 5;
/// The longest wait after a wrong guess.
pub const MAX_BACKOFF: Duration = Duration::from_secs(15 * 60);
/// A run of wrong guesses is forgotten this long after its last one.
pub const RUN_FORGOTTEN_AFTER: Duration = Duration::from_secs(24 * 3600);
/// How many accounts' runs are kept.
pub const TRACKED_ACCOUNTS: usize = 100_000;

/// What a guess is aimed at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GuessTarget {
    /// A login's password, by the email's blind index.
    Email([u8; 32]),
    /// A code or password given with a session, or a login's code, by the user.
    User(UserId),
}

#[derive(Debug, Clone, Copy)]
struct Run {
    wrong: u32,
    last_micros: u64,
    closed_until_micros: u64,
}

/// Wrong guesses per account (see the [module documentation](self)).
#[derive(Debug)]
pub struct GuessBackoff {
    clock: Arc<dyn Clock>,
    runs: Mutex<LruCache<GuessTarget, Run>>,
}

impl GuessBackoff {
    /// An empty record on `clock`.
    #[must_use]
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        Self {
            clock,
            runs: Mutex::new(LruCache::new(
                NonZeroUsize::new(TRACKED_ACCOUNTS).unwrap_or(NonZeroUsize::MIN),
            )),
        }
    }

    fn now(&self) -> u64 {
        u64::try_from(self.clock.unix_micros()).unwrap_or(0)
    }

    fn runs(&self) -> std::sync::MutexGuard<'_, LruCache<GuessTarget, Run>> {
        self.runs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether `target` may be guessed now.
    ///
    /// # Errors
    /// How long until it may, when it is closed.
    pub fn admit(&self, target: GuessTarget) -> Result<(), Duration> {
        let now = self.now();
        match self.runs().peek(&target) {
            Some(run) if run.closed_until_micros > now => {
                Err(Duration::from_micros(run.closed_until_micros - now)
                    .max(Duration::from_secs(1)))
            }
            _ => Ok(()),
        }
    }

    /// Records a wrong guess at `target`.
    pub fn wrong(&self, target: GuessTarget) {
        let now = self.now();
        let mut runs = self.runs();
        let fresh = Run {
            wrong: 0,
            last_micros: now,
            closed_until_micros: 0,
        };
        let mut run = runs.get(&target).copied().unwrap_or(fresh);
        if now.saturating_sub(run.last_micros) > micros(RUN_FORGOTTEN_AFTER) {
            run = fresh;
        }
        run.wrong = run.wrong.saturating_add(1);
        run.last_micros = now;
        if let Some(beyond) = run.wrong.checked_sub(FREE_GUESSES + 1) {
            let wait = 1u64
                .checked_shl(beyond)
                .map_or(MAX_BACKOFF, Duration::from_secs)
                .min(MAX_BACKOFF);
            run.closed_until_micros = now.saturating_add(micros(wait));
        }
        runs.put(target, run);
    }

    /// Records a right guess at `target`: its run ends.
    pub fn right(&self, target: GuessTarget) {
        self.runs().pop(&target);
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use coffer_clock::ManualClock;

    use super::*;

    fn backoff() -> (Arc<ManualClock>, GuessBackoff) {
        let clock = Arc::new(ManualClock::at_unix_secs(1_700_000_000));
        (clock.clone(), GuessBackoff::new(clock))
    }

    #[test]
    fn five_free_guesses_then_a_doubling_wait_capped_at_fifteen_minutes() {
        let (clock, b) = backoff();
        let t = GuessTarget::User(UserId::new());
        for _ in 0..FREE_GUESSES {
            b.admit(t).unwrap();
            b.wrong(t);
        }
        b.admit(t).unwrap();
        let mut waits = Vec::new();
        for _ in 0..14 {
            b.wrong(t);
            let wait = b.admit(t).unwrap_err();
            waits.push(wait.as_secs());
            clock.advance(wait);
            b.admit(t).unwrap();
        }
        assert_eq!(
            waits,
            [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 900, 900, 900, 900]
        );
        // Other accounts are not touched.
        b.admit(GuessTarget::User(UserId::new())).unwrap();
        b.admit(GuessTarget::Email([7; 32])).unwrap();
    }

    #[test]
    fn a_right_guess_or_a_quiet_day_ends_the_run() {
        let (clock, b) = backoff();
        let t = GuessTarget::Email([1; 32]);
        for _ in 0..=FREE_GUESSES {
            b.wrong(t);
        }
        assert!(b.admit(t).is_err());
        b.right(t);
        b.admit(t).unwrap();
        for _ in 0..=FREE_GUESSES {
            b.wrong(t);
        }
        clock.advance(RUN_FORGOTTEN_AFTER + Duration::from_secs(1));
        b.wrong(t);
        b.admit(t).unwrap();
    }
}
