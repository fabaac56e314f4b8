//! Fixed-bucket histograms of durations (Prometheus style): run durations per plugin
//! and per instance, lateness per input.
//!
//! A [`Histogram`] is plain counts in an array sized at compile time, kept under its
//! owner's lock: one sits in every instance's entry, so at 10,000 instances it must be
//! a few words, not a boxed slice of atomics beside a pointer to its bounds
//! (docs/BENCHMARKS.md, "Instances at scale"). The bounds are passed in by the owner.

use std::time::Duration;

use serde::Serialize;

/// Upper bounds (seconds) of the run-duration histogram buckets.
pub const RUN_SECONDS_BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
];

/// Upper bounds (seconds) of the lateness histogram: how long after its due time a
/// run started (docs/OPERATIONS.md, "Lateness").
pub const LATENESS_SECONDS_BUCKETS: [f64; 15] = [
    0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0,
];

/// Slots of a run-duration histogram: one per bound and one above them all.
pub(super) const RUN_SLOTS: usize = RUN_SECONDS_BUCKETS.len() + 1;
/// Slots of a lateness histogram.
pub(super) const LATENESS_SLOTS: usize = LATENESS_SECONDS_BUCKETS.len() + 1;

/// Per-bucket counts (not cumulative; the last slot is above every bound) and the sum,
/// for bounds of `SLOTS - 1` entries.
#[derive(Clone, Copy, Debug)]
pub(super) struct Histogram<const SLOTS: usize> {
    counts: [u64; SLOTS],
    sum_micros: u64,
}

impl<const SLOTS: usize> Default for Histogram<SLOTS> {
    fn default() -> Self {
        Self {
            counts: [0; SLOTS],
            sum_micros: 0,
        }
    }
}

impl<const SLOTS: usize> Histogram<SLOTS> {
    pub(super) fn observe(&mut self, bounds: &[f64], took: Duration) {
        debug_assert_eq!(bounds.len() + 1, SLOTS);
        let seconds = took.as_secs_f64();
        let slot = bounds
            .iter()
            .position(|bound| seconds <= *bound)
            .unwrap_or(SLOTS - 1);
        self.counts[slot] += 1;
        let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        self.sum_micros = self.sum_micros.saturating_add(micros);
    }

    pub(super) fn snapshot(&self, bounds: &[f64]) -> HistogramSnapshot {
        debug_assert_eq!(bounds.len() + 1, SLOTS);
        let mut cumulative = 0;
        let mut buckets = Vec::with_capacity(bounds.len());
        for (bound, count) in bounds.iter().zip(self.counts.iter()) {
            cumulative += count;
            buckets.push((*bound, cumulative));
        }
        HistogramSnapshot {
            buckets,
            count: cumulative + self.counts[SLOTS - 1],
            sum: self.sum_micros as f64 / 1e6,
        }
    }

    /// Adds these counts to `sum`, a snapshot of a histogram with the same bounds.
    pub(super) fn add_to(&self, sum: &mut HistogramSnapshot) {
        let mut cumulative = 0;
        for (bucket, count) in sum.buckets.iter_mut().zip(self.counts.iter()) {
            cumulative += count;
            bucket.1 += cumulative;
        }
        sum.count += cumulative + self.counts[SLOTS - 1];
        sum.sum += self.sum_micros as f64 / 1e6;
    }
}

/// A histogram's cumulative buckets `(upper bound, count <= bound)`, total count and sum.
#[derive(Clone, Debug, Serialize)]
pub struct HistogramSnapshot {
    pub buckets: Vec<(f64, u64)>,
    pub count: u64,
    pub sum: f64,
}

impl HistogramSnapshot {
    /// The upper bound of the bucket holding quantile `q` (0..=1): "p99 ≤ this". `None`
    /// without observations, `f64::INFINITY` when it lies above every bound.
    pub fn quantile_bound(&self, q: f64) -> Option<f64> {
        if self.count == 0 {
            return None;
        }
        let rank = (q.clamp(0.0, 1.0) * self.count as f64).ceil().max(1.0) as u64;
        Some(
            self.buckets
                .iter()
                .find(|(_, count)| *count >= rank)
                .map_or(f64::INFINITY, |(bound, _)| *bound),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observations_land_in_their_buckets_cumulatively() {
        let mut h = Histogram::<RUN_SLOTS>::default();
        h.observe(&RUN_SECONDS_BUCKETS, Duration::from_millis(3));
        h.observe(&RUN_SECONDS_BUCKETS, Duration::from_millis(40));
        h.observe(&RUN_SECONDS_BUCKETS, Duration::from_secs(900));
        let s = h.snapshot(&RUN_SECONDS_BUCKETS);
        assert_eq!(s.count, 3);
        assert_eq!(s.buckets[0], (0.005, 1));
        assert_eq!(s.buckets[3], (0.05, 2));
        assert_eq!(
            s.buckets.last(),
            Some(&(300.0, 2)),
            "900 s is above every bound"
        );
        assert!((s.sum - 900.043).abs() < 1e-9);
        assert_eq!(s.quantile_bound(0.5), Some(0.05));
        assert_eq!(s.quantile_bound(0.99), Some(f64::INFINITY));
    }
}
