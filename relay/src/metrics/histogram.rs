//! A fixed-bucket latency histogram over atomics: observing is a few
//! relaxed atomic additions, never a lock.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the buckets, in microseconds (the `+Inf` bucket is
/// implicit): 100 µs to 10 s, roughly ×2.5 apart. A store operation on
/// SQLite takes tens of microseconds to a few milliseconds; the top buckets
/// catch a disk that stalls.
pub const BOUNDS_MICROS: [u64; 16] = [
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 2_500_000, 5_000_000, 10_000_000,
];

/// Counts of observations per bucket (not cumulative; the last slot is
/// the overflow above the highest bound), and their sum.
#[derive(Debug, Default)]
pub struct Histogram {
    buckets: [AtomicU64; BOUNDS_MICROS.len() + 1],
    sum_nanos: AtomicU64,
}

/// What a histogram held at one moment, cumulative as Prometheus wants it.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    /// `(upper bound in seconds, observations at or below it)`.
    pub buckets: Vec<(f64, u64)>,
    /// Every observation (the `+Inf` bucket and `_count`).
    pub count: u64,
    /// Sum of the observations, seconds.
    pub sum_seconds: f64,
}

impl Histogram {
    /// Records one duration.
    pub fn observe(&self, elapsed: Duration) {
        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        let slot = BOUNDS_MICROS
            .iter()
            .position(|&bound| micros <= bound)
            .unwrap_or(BOUNDS_MICROS.len());
        self.buckets[slot].fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    /// The cumulative view. The count is the sum of the buckets read, so
    /// `+Inf` always equals `_count` even while others observe.
    pub fn snapshot(&self) -> Snapshot {
        let mut running = 0u64;
        let mut buckets = Vec::with_capacity(BOUNDS_MICROS.len());
        for (bound, slot) in BOUNDS_MICROS.iter().zip(&self.buckets) {
            running = running.saturating_add(slot.load(Ordering::Relaxed));
            buckets.push((*bound as f64 / 1e6, running));
        }
        let overflow = self.buckets[BOUNDS_MICROS.len()].load(Ordering::Relaxed);
        Snapshot {
            buckets,
            count: running.saturating_add(overflow),
            sum_seconds: self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn observations_land_in_the_first_bucket_that_holds_them_and_accumulate() {
        let h = Histogram::default();
        h.observe(Duration::from_micros(100)); // on the bound: first bucket
        h.observe(Duration::from_micros(101)); // second
        h.observe(Duration::from_millis(3)); // 5 ms bucket
        h.observe(Duration::from_secs(60)); // above every bound
        let s = h.snapshot();
        assert_eq!(s.count, 4);
        assert_eq!(s.buckets[0], (0.0001, 1));
        assert_eq!(s.buckets[1], (0.00025, 2));
        assert_eq!(s.buckets[4].1, 2, "2.5 ms holds the first two only");
        assert_eq!(s.buckets[5], (0.005, 3));
        assert_eq!(s.buckets.last().unwrap(), &(10.0, 3));
        assert!(
            (s.sum_seconds - 60.003201).abs() < 1e-9,
            "{}",
            s.sum_seconds
        );
        let counts: Vec<u64> = s.buckets.iter().map(|b| b.1).collect();
        assert!(counts.windows(2).all(|w| w[0] <= w[1]), "cumulative");
    }
}
