//! Spending limits: the most a wallet may send per kind of money-out, per transaction or within a
//! rolling window, checked under the wallet's lock with its balance.
//!
//! A wallet's [`Spending`] is one sealed field of its row (bound to its row version like the
//! balance, so an older copy does not open): the limits an administrator set for it (none set:
//! its currency's default policy from configuration) and its [`Usage`], one
//! [`RollingSum`](crate::RollingSum) per kind in hours (for the 24-hour window) and one in days
//! (for the 7- and 30-day windows). Checking and charging touch only those sums: no history is
//! read. A window may count up to one bucket (an hour, a day) more than its span, never less, so
//! a limit can bite early, never late.
//!
//! Holds count while they are live, at the time they were placed, against the hold limit and the
//! limit of the kind they will post as ([`Reserved`], computed from the wallet's live holds that
//! every decision reads anyway); the usage counters are charged only by what is posted. So a
//! void or an expiry gives the amount back by the hold no longer being live, and a capture
//! charges what it captured at the time of the placement: a smaller capture gives back the
//! difference, and a hold whose placement has left a window counts in it no longer.

use crate::domain::LedgerError;
use crate::money::{Amount, MoneyError};
use crate::window::{RollingSum, day_of, hour_of};

/// What a limit caps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LimitKind {
    /// Money out of the ledger (withdrawals, captured payouts).
    Withdrawal,
    /// Money to another wallet (transfers, captured held transfers).
    Transfer,
    /// Money reserved by holds (counted when placed).
    Hold,
}

/// Over what a limit sums.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LimitWindow {
    /// One operation.
    PerTransaction,
    /// The last 24 hours.
    Rolling24h,
    /// The last 7 days.
    Rolling7d,
    /// The last 30 days.
    Rolling30d,
}

impl LimitKind {
    /// Every kind.
    pub const ALL: [Self; 3] = [Self::Withdrawal, Self::Transfer, Self::Hold];

    /// The API and configuration name.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Withdrawal => "withdrawal",
            Self::Transfer => "transfer",
            Self::Hold => "hold",
        }
    }

    /// Parses [`LimitKind::as_str`].
    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    fn index(self) -> usize {
        self as usize
    }

    /// The kinds money of this posting kind counts against: a held transfer or withdrawal
    /// counts against the hold limit too.
    #[must_use]
    pub fn charged(transfer: bool, held: bool) -> Vec<Self> {
        let kind = if transfer {
            Self::Transfer
        } else {
            Self::Withdrawal
        };
        if held {
            vec![Self::Hold, kind]
        } else {
            vec![kind]
        }
    }
}

impl LimitWindow {
    /// Every window.
    pub const ALL: [Self; 4] = [
        Self::PerTransaction,
        Self::Rolling24h,
        Self::Rolling7d,
        Self::Rolling30d,
    ];

    /// The API and configuration name.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PerTransaction => "per_transaction",
            Self::Rolling24h => "rolling_24h",
            Self::Rolling7d => "rolling_7d",
            Self::Rolling30d => "rolling_30d",
        }
    }

    /// Parses [`LimitWindow::as_str`].
    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|w| w.as_str() == s)
    }
}

/// One limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    /// What it caps.
    pub kind: LimitKind,
    /// Over what.
    pub window: LimitWindow,
    /// The most, minor units.
    pub max: Amount,
}

/// A set of limits, at most one per kind and window, in kind then window order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LimitSet(Vec<Limit>);

/// A limit set that names one kind and window twice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the {} {} limit is given twice", .0.as_str(), .1.as_str())]
pub struct DuplicateLimit(pub LimitKind, pub LimitWindow);

impl LimitSet {
    /// No limit at all.
    #[must_use]
    pub const fn none() -> Self {
        Self(Vec::new())
    }

    /// The set of `limits`.
    ///
    /// # Errors
    /// [`DuplicateLimit`].
    pub fn new(mut limits: Vec<Limit>) -> Result<Self, DuplicateLimit> {
        limits.sort_by_key(|l| (l.kind, l.window));
        if let Some(w) = limits
            .windows(2)
            .find(|w| (w[0].kind, w[0].window) == (w[1].kind, w[1].window))
        {
            return Err(DuplicateLimit(w[0].kind, w[0].window));
        }
        Ok(Self(limits))
    }

    /// Its limits.
    #[must_use]
    pub fn limits(&self) -> &[Limit] {
        &self.0
    }
}

/// Money held by a live hold of the wallet: counted in its windows at the time it was placed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reserved {
    /// A held transfer (else a held withdrawal).
    pub transfer: bool,
    /// The most it may capture.
    pub amount: Amount,
    /// When it was placed, microseconds since the epoch.
    pub at: i64,
}

/// What a wallet has sent, per kind, in hourly and daily buckets.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Usage {
    hours: [RollingSum; 3],
    days: [RollingSum; 3],
}

impl std::fmt::Debug for Usage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Usage").finish_non_exhaustive()
    }
}

/// The hours a 24-hour window spans, and the days the longest window spans.
const HOURS: u32 = 24;
const DAYS: u32 = 30;

fn span(window: LimitWindow) -> Option<(bool, u32)> {
    match window {
        LimitWindow::PerTransaction => None,
        LimitWindow::Rolling24h => Some((true, HOURS)),
        LimitWindow::Rolling7d => Some((false, 7)),
        LimitWindow::Rolling30d => Some((false, DAYS)),
    }
}

/// Whether a bucket at `at` still counts in a window of `window` at `now`.
fn in_window(window: LimitWindow, at: i64, now: i64) -> bool {
    match span(window) {
        None => false,
        Some((true, hours)) => hour_of(at) >= hour_of(now).saturating_sub(i64::from(hours)),
        Some((false, days)) => day_of(at) >= day_of(now).saturating_sub(i64::from(days)),
    }
}

impl Usage {
    /// What `kind` used within `window` at `now`: the posted sums and the live holds placed in
    /// it (`None` for a per-transaction limit).
    #[must_use]
    pub fn used(
        &self,
        kind: LimitKind,
        window: LimitWindow,
        now: i64,
        reserved: &[Reserved],
    ) -> Option<i64> {
        let (hourly, n) = span(window)?;
        let posted = if hourly {
            self.hours[kind.index()].within(hour_of(now), n)
        } else {
            self.days[kind.index()].within(day_of(now), n)
        };
        Some(
            reserved
                .iter()
                .filter(|r| LimitKind::charged(r.transfer, true).contains(&kind))
                .filter(|r| in_window(window, r.at, now))
                .fold(posted, |sum, r| sum.saturating_add(r.amount.minor())),
        )
    }

    /// These sums with `amount` posted against `kinds` at `at`, as seen at `now` (a capture
    /// posts at its hold's placement): a bucket no window can reach any more is not charged.
    ///
    /// # Errors
    /// [`MoneyError::Overflow`].
    pub fn charged(
        &self,
        kinds: &[LimitKind],
        at: i64,
        now: i64,
        amount: Amount,
    ) -> Result<Self, MoneyError> {
        let mut next = self.clone();
        for kind in kinds {
            let i = kind.index();
            if in_window(LimitWindow::Rolling24h, at, now) {
                next.hours[i] = next.hours[i].charged(hour_of(at), HOURS, amount)?;
            }
            if in_window(LimitWindow::Rolling30d, at, now) {
                next.days[i] = next.days[i].charged(day_of(at), DAYS, amount)?;
            }
        }
        Ok(next)
    }
}

/// A limit and where it stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitStatus {
    /// The limit.
    pub limit: Limit,
    /// Used within its window (`None` per transaction).
    pub used: Option<i64>,
    /// What one more operation may still send under it.
    pub remaining: i64,
}

/// Where each limit of `limits` stands at `now`.
#[must_use]
pub fn statuses(
    limits: &LimitSet,
    usage: &Usage,
    now: i64,
    reserved: &[Reserved],
) -> Vec<LimitStatus> {
    limits
        .limits()
        .iter()
        .map(|l| {
            let used = usage.used(l.kind, l.window, now, reserved);
            LimitStatus {
                limit: *l,
                used,
                remaining: l.max.minor().saturating_sub(used.unwrap_or(0)).max(0),
            }
        })
        .collect()
}

/// Checks `amount` counted against `kinds` at `now`.
///
/// # Errors
/// [`LedgerError::LimitExceeded`] naming the first limit (in kind, then window order) it would
/// pass and what remains under it.
pub fn check(
    limits: &LimitSet,
    usage: &Usage,
    now: i64,
    reserved: &[Reserved],
    kinds: &[LimitKind],
    amount: Amount,
) -> Result<(), LedgerError> {
    for s in statuses(limits, usage, now, reserved) {
        if kinds.contains(&s.limit.kind) && amount.minor() > s.remaining {
            return Err(LedgerError::LimitExceeded {
                kind: s.limit.kind,
                window: s.limit.window,
                remaining: s.remaining,
            });
        }
    }
    Ok(())
}

/// A wallet's sealed spending field: its own limits (`None`: its currency's default) and usage.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Spending {
    /// The limits an administrator set for the wallet.
    pub limits: Option<LimitSet>,
    /// What it has sent.
    pub usage: Usage,
}

impl std::fmt::Debug for Spending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spending")
            .field("own_limits", &self.limits.is_some())
            .finish_non_exhaustive()
    }
}

/// Bytes that are not a [`Spending`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed spending field: {0}")]
pub struct MalformedSpending(&'static str);

const FORMAT: u8 = 1;

impl Spending {
    /// The stored form: a format byte; 0, or 1 and a count (u8) of limits, each its kind and
    /// window (u8 each) and maximum (i64); then each kind's hourly and daily sums, each a u16
    /// length and [`RollingSum::to_bytes`]. Big-endian.
    #[must_use]
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = vec![FORMAT];
        match &self.limits {
            None => out.push(0),
            Some(set) => {
                out.push(1);
                let limits = &set.limits()[..set.limits().len().min(usize::from(u8::MAX))];
                out.push(u8::try_from(limits.len()).unwrap_or(u8::MAX));
                for l in limits {
                    out.push(l.kind as u8);
                    out.push(l.window as u8);
                    out.extend_from_slice(&l.max.minor().to_be_bytes());
                }
            }
        }
        for sum in self.usage.hours.iter().chain(&self.usage.days) {
            let bytes = sum.to_bytes();
            out.extend_from_slice(&u16::try_from(bytes.len()).unwrap_or(u16::MAX).to_be_bytes());
            out.extend_from_slice(&bytes);
        }
        out
    }

    /// Parses [`Spending::to_bytes`].
    ///
    /// # Errors
    /// [`MalformedSpending`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, MalformedSpending> {
        let mut r = Reader(bytes);
        if r.take(1)?[0] != FORMAT {
            return Err(MalformedSpending("unknown format"));
        }
        let limits = match r.take(1)?[0] {
            0 => None,
            1 => {
                let n = r.take(1)?[0];
                let mut limits = Vec::with_capacity(usize::from(n));
                for _ in 0..n {
                    let head = r.take(2)?;
                    let kind = *LimitKind::ALL
                        .get(usize::from(head[0]))
                        .ok_or(MalformedSpending("unknown kind"))?;
                    let window = *LimitWindow::ALL
                        .get(usize::from(head[1]))
                        .ok_or(MalformedSpending("unknown window"))?;
                    let max = i64::from_be_bytes(
                        r.take(8)?
                            .try_into()
                            .map_err(|_| MalformedSpending("short limit"))?,
                    );
                    let max = Amount::parse(max, i64::MAX)
                        .map_err(|_| MalformedSpending("a limit that is not positive"))?;
                    limits.push(Limit { kind, window, max });
                }
                Some(LimitSet::new(limits).map_err(|_| MalformedSpending("a limit twice"))?)
            }
            _ => return Err(MalformedSpending("unknown limits tag")),
        };
        let mut sums = Vec::with_capacity(6);
        for _ in 0..6 {
            let len = r.take(2)?;
            let len = usize::from(u16::from_be_bytes([len[0], len[1]]));
            sums.push(
                RollingSum::from_bytes(r.take(len)?)
                    .map_err(|_| MalformedSpending("malformed sum"))?,
            );
        }
        if !r.0.is_empty() {
            return Err(MalformedSpending("trailing bytes"));
        }
        let mut sums = sums.into_iter();
        let mut next = || sums.next().unwrap_or_default();
        let hours = [next(), next(), next()];
        let days = [next(), next(), next()];
        Ok(Self {
            limits,
            usage: Usage { hours, days },
        })
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], MalformedSpending> {
        if self.0.len() < n {
            return Err(MalformedSpending("truncated"));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const HOUR: i64 = 3_600_000_000;
    const T0: i64 = 1_800_000_000_000_000;

    fn amount(minor: i64) -> Amount {
        Amount::parse(minor, i64::MAX).unwrap()
    }

    fn limit(kind: LimitKind, window: LimitWindow, max: i64) -> Limit {
        Limit {
            kind,
            window,
            max: amount(max),
        }
    }

    fn set() -> LimitSet {
        LimitSet::new(vec![
            limit(LimitKind::Withdrawal, LimitWindow::Rolling24h, 1_000),
            limit(LimitKind::Withdrawal, LimitWindow::PerTransaction, 600),
            limit(LimitKind::Hold, LimitWindow::Rolling7d, 2_000),
        ])
        .unwrap()
    }

    #[test]
    fn posted_money_counts_until_it_leaves_the_window() {
        let (set, w) = (set(), [LimitKind::Withdrawal]);
        let usage = Usage::default();
        assert_eq!(
            check(&set, &usage, T0, &[], &w, amount(601)),
            Err(LedgerError::LimitExceeded {
                kind: LimitKind::Withdrawal,
                window: LimitWindow::PerTransaction,
                remaining: 600
            })
        );
        let usage = usage.charged(&w, T0, T0, amount(600)).unwrap();
        let later = T0 + 3 * HOUR;
        assert_eq!(
            check(&set, &usage, later, &[], &w, amount(401)),
            Err(LedgerError::LimitExceeded {
                kind: LimitKind::Withdrawal,
                window: LimitWindow::Rolling24h,
                remaining: 400
            })
        );
        assert!(check(&set, &usage, later, &[], &w, amount(400)).is_ok());
        assert!(
            check(&set, &usage, T0 + 25 * HOUR, &[], &w, amount(600)).is_ok(),
            "25 hours later the 24-hour window no longer holds it"
        );
        assert!(
            check(&set, &usage, T0, &[], &[LimitKind::Transfer], amount(5_000)).is_ok(),
            "another kind is not limited"
        );
    }

    #[test]
    fn live_holds_count_at_their_placement_and_a_capture_keeps_only_what_it_took() {
        let set = set();
        let held = Reserved {
            transfer: false,
            amount: amount(1_500),
            at: T0,
        };
        let usage = Usage::default();
        let used = |u: &Usage, r: &[Reserved], now| {
            u.used(LimitKind::Hold, LimitWindow::Rolling7d, now, r)
        };
        assert_eq!(used(&usage, &[held], T0), Some(1_500));
        assert_eq!(
            usage.used(LimitKind::Withdrawal, LimitWindow::Rolling24h, T0, &[held]),
            Some(1_500),
            "a held withdrawal counts as a withdrawal too"
        );
        assert!(matches!(
            check(&set, &usage, T0, &[held], &[LimitKind::Hold], amount(501)),
            Err(LedgerError::LimitExceeded { remaining: 500, .. })
        ));
        // Captured 200 a day later: the hold is no longer live, 200 stays at its placement.
        let captured = usage
            .charged(
                &LimitKind::charged(false, true),
                T0,
                T0 + 24 * HOUR,
                amount(200),
            )
            .unwrap();
        assert_eq!(used(&captured, &[], T0 + 24 * HOUR), Some(200));
        assert_eq!(
            used(&Usage::default(), &[], T0 + 24 * HOUR),
            Some(0),
            "a void"
        );
        assert_eq!(used(&captured, &[], T0 + 9 * 24 * HOUR), Some(0));
        let stale = Usage::default()
            .charged(&[LimitKind::Hold], T0, T0 + 40 * 24 * HOUR, amount(200))
            .unwrap();
        assert_eq!(stale, Usage::default(), "a bucket out of every window");
    }

    #[test]
    fn the_stored_form_round_trips_and_garbage_is_refused() {
        let usage = Usage::default()
            .charged(&[LimitKind::Transfer, LimitKind::Hold], T0, T0, amount(7))
            .unwrap();
        for s in [
            Spending::default(),
            Spending {
                limits: Some(set()),
                usage: usage.clone(),
            },
            Spending {
                limits: Some(LimitSet::default()),
                usage,
            },
        ] {
            let bytes = s.to_bytes();
            assert_eq!(Spending::from_bytes(&bytes).unwrap(), s);
            assert!(Spending::from_bytes(&bytes[..bytes.len() - 1]).is_err());
        }
        assert!(Spending::from_bytes(&[]).is_err());
        assert!(Spending::from_bytes(&[2, 0]).is_err());
        let dup = LimitSet::new(vec![
            limit(LimitKind::Hold, LimitWindow::Rolling7d, 1),
            limit(LimitKind::Hold, LimitWindow::Rolling7d, 2),
        ]);
        assert_eq!(
            dup,
            Err(DuplicateLimit(LimitKind::Hold, LimitWindow::Rolling7d))
        );
        assert_eq!(
            format!("{:?}", Spending::default()),
            "Spending { own_limits: false, .. }"
        );
    }
}
