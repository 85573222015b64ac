//! Rolling sums: how much left a wallet over the last hours, the input of the rule that money-out
//! above a threshold within a window needs a second factor (so splitting a large transfer into
//! small ones does not avoid it).
//!
//! A [`RollingSum`] keeps one sum per clock hour (hours since the epoch) for the hours that can
//! still fall inside the window. The sum over a window of `h` hours at hour `n` adds the buckets
//! of hours `n - h` to `n`: `h + 1` buckets, so any `h`-hour span that ends now is covered and
//! the window is never under-counted (it may over-count by up to an hour: a cap can bite up to an
//! hour early, never late). Charging drops the buckets no window can reach any more, so a sum
//! holds at most `h + 1` buckets (and any later ones a clock that stepped back left behind, which
//! count until they leave the window).
//!
//! The sum is stored on the wallet's row, sealed under its data key and bound to the row version
//! like the balance (`sealing::outflow_aad`); its bytes are [`RollingSum::to_bytes`]. A row that
//! has none (written before the window existed) has an empty window.

use crate::domain::LedgerError;
use crate::money::{Amount, MoneyError};

/// Microseconds in an hour: the width of a bucket.
const HOUR_MICROS: i64 = 3_600_000_000;

/// The format version of [`RollingSum::to_bytes`].
const FORMAT: u8 = 1;

/// The hour (since the epoch) of a time in microseconds since the epoch.
#[must_use]
pub fn hour_of(at_micros: i64) -> i64 {
    at_micros.div_euclid(HOUR_MICROS)
}

/// The day (since the epoch, UTC) of a time in microseconds since the epoch: the buckets of the
/// spending limits' longer windows, where a [`RollingSum`]'s "hours" are days.
#[must_use]
pub fn day_of(at_micros: i64) -> i64 {
    at_micros.div_euclid(24 * HOUR_MICROS)
}

/// Sums of minor units per hour, oldest first. `Debug` shows how many hours it holds, never an
/// amount.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct RollingSum {
    buckets: Vec<(i64, i64)>,
}

impl std::fmt::Debug for RollingSum {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RollingSum")
            .field("hours", &self.buckets.len())
            .finish_non_exhaustive()
    }
}

/// Bytes that are not a [`RollingSum`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed rolling sum: {0}")]
pub struct MalformedSum(&'static str);

impl RollingSum {
    /// The sum over the `hours` hours up to `hour`: its bucket and the `hours` before it (and any
    /// later ones).
    #[must_use]
    pub fn within(&self, hour: i64, hours: u32) -> i64 {
        let from = hour.saturating_sub(i64::from(hours));
        self.buckets
            .iter()
            .filter(|(h, _)| *h >= from)
            .fold(0i64, |acc, (_, sum)| acc.saturating_add(*sum))
    }

    /// This sum with `amount` added at `hour`, without the buckets a window of `hours` can no
    /// longer reach.
    ///
    /// # Errors
    /// [`MoneyError::Overflow`] when an hour's sum would not fit.
    pub fn charged(&self, hour: i64, hours: u32, amount: Amount) -> Result<Self, MoneyError> {
        let from = hour.saturating_sub(i64::from(hours));
        let mut buckets: Vec<(i64, i64)> = self
            .buckets
            .iter()
            .copied()
            .filter(|(h, _)| *h >= from)
            .collect();
        match buckets.iter_mut().find(|(h, _)| *h == hour) {
            Some((_, sum)) => {
                *sum = sum
                    .checked_add(amount.minor())
                    .ok_or(MoneyError::Overflow)?;
            }
            None => {
                buckets.push((hour, amount.minor()));
                buckets.sort_unstable_by_key(|(h, _)| *h);
            }
        }
        Ok(Self { buckets })
    }

    /// Money-out of `amount` at `hour`, when at most `cap` minor units may leave within a window
    /// of `hours` without a second factor (`None`: no cap). Returns the sum charged with it.
    ///
    /// # Errors
    /// [`LedgerError::SecondFactorRequired`] when the window, with `amount`, would hold more than
    /// the cap; [`LedgerError::Money`] on overflow.
    pub fn spend(
        &self,
        hour: i64,
        hours: u32,
        amount: Amount,
        cap: Option<i64>,
    ) -> Result<Self, LedgerError> {
        if let Some(cap) = cap
            && self.within(hour, hours).saturating_add(amount.minor()) > cap
        {
            return Err(LedgerError::SecondFactorRequired);
        }
        Ok(self.charged(hour, hours, amount)?)
    }

    /// The stored form: a format byte, the bucket count (u16) and each bucket's hour and sum
    /// (i64 each), big-endian.
    #[must_use]
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(3 + 16 * self.buckets.len());
        out.push(FORMAT);
        let count = u16::try_from(self.buckets.len()).unwrap_or(u16::MAX);
        out.extend_from_slice(&count.to_be_bytes());
        for (hour, sum) in self.buckets.iter().take(usize::from(count)) {
            out.extend_from_slice(&hour.to_be_bytes());
            out.extend_from_slice(&sum.to_be_bytes());
        }
        out
    }

    /// Parses [`RollingSum::to_bytes`].
    ///
    /// # Errors
    /// [`MalformedSum`] for another format, a length that does not match the count, buckets out
    /// of order or a negative sum.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, MalformedSum> {
        let (&format, rest) = bytes.split_first().ok_or(MalformedSum("empty"))?;
        if format != FORMAT {
            return Err(MalformedSum("unknown format"));
        }
        let (count, rest) = rest
            .split_first_chunk::<2>()
            .ok_or(MalformedSum("no bucket count"))?;
        let count = usize::from(u16::from_be_bytes(*count));
        if rest.len() != count * 16 {
            return Err(MalformedSum("length does not match the bucket count"));
        }
        let mut buckets: Vec<(i64, i64)> = Vec::with_capacity(count);
        for chunk in rest.chunks_exact(16) {
            let (hour, sum) = chunk.split_at(8);
            let word = |b: &[u8]| <[u8; 8]>::try_from(b).map(i64::from_be_bytes);
            let (hour, sum) = (
                word(hour).map_err(|_| MalformedSum("short bucket"))?,
                word(sum).map_err(|_| MalformedSum("short bucket"))?,
            );
            if sum < 0 {
                return Err(MalformedSum("negative sum"));
            }
            if buckets.last().is_some_and(|(last, _)| *last >= hour) {
                return Err(MalformedSum("buckets out of order"));
            }
            buckets.push((hour, sum));
        }
        Ok(Self { buckets })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn amount(minor: i64) -> Amount {
        Amount::parse(minor, i64::MAX).unwrap()
    }

    #[test]
    fn a_window_counts_its_hours_and_forgets_older_ones() {
        let start = hour_of(1_700_000_000_000_000);
        let mut sum = RollingSum::default();
        for h in 0..30 {
            sum = sum.charged(start + h, 24, amount(10)).unwrap();
        }
        // At hour start+29, a 24-hour window holds hours start+5 ..= start+29: 25 buckets.
        assert_eq!(sum.within(start + 29, 24), 250);
        assert_eq!(sum.buckets.len(), 25, "older buckets are dropped");
        assert_eq!(
            sum.within(start + 29 + 24, 24),
            10,
            "only the last hour is left"
        );
        assert_eq!(sum.within(start + 29 + 25, 24), 0);
        let twice = sum.charged(start + 29, 24, amount(5)).unwrap();
        assert_eq!(twice.within(start + 29, 24), 255, "one bucket per hour");
        assert_eq!(twice.buckets.len(), 25);
    }

    #[test]
    fn chunks_under_the_cap_add_up_to_it() {
        let hour = hour_of(1_700_000_000_000_000);
        let sum = RollingSum::default();
        let sum = sum.spend(hour, 24, amount(600), Some(1_000)).unwrap();
        assert_eq!(
            sum.spend(hour + 3, 24, amount(401), Some(1_000)),
            Err(LedgerError::SecondFactorRequired)
        );
        let sum = sum.spend(hour + 3, 24, amount(400), Some(1_000)).unwrap();
        assert_eq!(
            sum.within(hour + 3, 24),
            1_000,
            "exactly the cap is allowed"
        );
        assert!(
            sum.spend(hour + 3, 24, amount(1_000_000), None).is_ok(),
            "no cap: a second factor was shown"
        );
        assert_eq!(
            sum.spend(hour + 24, 24, amount(1), Some(1_000)),
            Err(LedgerError::SecondFactorRequired),
            "24 hours after the first, it still counts (the bucket may be up to an hour early)"
        );
        assert!(sum.spend(hour + 25, 24, amount(400), Some(1_000)).is_ok());
    }

    #[test]
    fn a_clock_that_steps_back_under_counts_nothing() {
        let hour = hour_of(1_700_000_000_000_000);
        let sum = RollingSum::default()
            .charged(hour + 2, 24, amount(700))
            .unwrap();
        let sum = sum.charged(hour, 24, amount(100)).unwrap();
        assert_eq!(sum.within(hour, 24), 800, "the later bucket counts too");
        assert_eq!(RollingSum::from_bytes(&sum.to_bytes()).unwrap(), sum);
        assert_eq!(
            format!("{sum:?}"),
            "RollingSum { hours: 2, .. }",
            "no amount shown"
        );
    }

    #[test]
    fn stored_bytes_round_trip_and_garbage_is_refused() {
        let hour = hour_of(1_700_000_000_000_000);
        let sum = RollingSum::default()
            .charged(hour, 24, amount(7))
            .unwrap()
            .charged(hour + 1, 24, amount(9))
            .unwrap();
        let bytes = sum.to_bytes();
        assert_eq!(bytes.len(), 3 + 32);
        assert_eq!(RollingSum::from_bytes(&bytes).unwrap(), sum);
        assert_eq!(
            RollingSum::from_bytes(&RollingSum::default().to_bytes()).unwrap(),
            RollingSum::default()
        );
        assert!(RollingSum::from_bytes(&[]).is_err());
        assert!(RollingSum::from_bytes(&[2, 0, 0]).is_err());
        assert!(RollingSum::from_bytes(&bytes[..bytes.len() - 1]).is_err());
        let mut swapped = vec![FORMAT, 0, 2];
        swapped.extend_from_slice(&bytes[19..]);
        swapped.extend_from_slice(&bytes[3..19]);
        assert!(RollingSum::from_bytes(&swapped).is_err(), "out of order");
        let mut negative = bytes.clone();
        negative[11] = 0x80;
        assert!(RollingSum::from_bytes(&negative).is_err());
    }
}
