//! A histogram of integer observations in atomics, and the writer's local
//! tally of one pass that is added to it at once.
//!
//! `prometheus-client`'s own histogram takes a mutex per observation; the
//! writer observes once per connection it writes, so these keep relaxed
//! atomic counts instead (and the writer adds a whole pass's observations
//! with one addition per bucket that changed).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::exemplar::Exemplar;
use prometheus_client::metrics::{MetricType, TypedMetric};

/// Upper bounds (inclusive), in the observations' unit, the last one
/// `u64::MAX` (the `+Inf` bucket).
pub(crate) type Bounds<const N: usize> = [u64; N];

/// Delivery lag and upgrade time, in microseconds: 50 µs to 10 s, with
/// 15, 20 and 35 ms between the decades' steps, where a server's lag at
/// saturation falls (a 99th percentile read between 10 and 25 ms would
/// say little).
pub(crate) const MICROS: Bounds<21> = [
    50,
    100,
    250,
    500,
    1_000,
    2_500,
    5_000,
    10_000,
    15_000,
    20_000,
    25_000,
    35_000,
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    u64::MAX,
];

/// Bytes queued to one connection: 256 B to 16 MiB, by fours.
pub(crate) const BYTES: Bounds<10> = [
    256,
    1 << 10,
    4 << 10,
    16 << 10,
    64 << 10,
    256 << 10,
    1 << 20,
    4 << 20,
    16 << 20,
    u64::MAX,
];

fn bucket<const N: usize>(bounds: &Bounds<N>, value: u64) -> usize {
    bounds.iter().position(|&b| value <= b).unwrap_or(N - 1)
}

/// A histogram with fixed buckets; cheap to clone (a handle).
#[derive(Debug, Clone)]
pub(crate) struct Histogram<const N: usize> {
    inner: Arc<Inner<N>>,
}

#[derive(Debug)]
struct Inner<const N: usize> {
    bounds: Bounds<N>,
    /// Units per exposed unit (a million for microseconds as seconds):
    /// divided by, so that bounds print as written (`0.00005`, not
    /// `4.9999999999999996e-05`).
    per: f64,
    /// Observations per bucket (not cumulative).
    counts: [AtomicU64; N],
    /// Sum of the observations, in the unit.
    sum: AtomicU64,
}

impl<const N: usize> Histogram<N> {
    pub(crate) fn new(bounds: Bounds<N>, per: f64) -> Self {
        Self {
            inner: Arc::new(Inner {
                bounds,
                per,
                counts: std::array::from_fn(|_| AtomicU64::new(0)),
                sum: AtomicU64::new(0),
            }),
        }
    }

    /// One observation: two relaxed atomic additions.
    pub(crate) fn observe(&self, value: u64) {
        let i = bucket(&self.inner.bounds, value);
        self.inner.counts[i].fetch_add(1, Ordering::Relaxed);
        self.inner.sum.fetch_add(value, Ordering::Relaxed);
    }

    /// Adds what `tally` holds and empties it.
    pub(crate) fn add(&self, tally: &mut Tally<N>) {
        if tally.sum == 0 && tally.counts.iter().all(|&c| c == 0) {
            return;
        }
        for (count, held) in self.inner.counts.iter().zip(tally.counts.iter_mut()) {
            if *held > 0 {
                count.fetch_add(u64::from(std::mem::take(held)), Ordering::Relaxed);
            }
        }
        self.inner
            .sum
            .fetch_add(std::mem::take(&mut tally.sum), Ordering::Relaxed);
    }

    /// Observations so far.
    #[cfg(test)]
    pub(crate) fn count(&self) -> u64 {
        self.inner
            .counts
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .sum()
    }

    /// Sum of the observations, in the unit.
    pub(crate) fn sum(&self) -> u64 {
        self.inner.sum.load(Ordering::Relaxed)
    }
}

impl<const N: usize> TypedMetric for Histogram<N> {
    const TYPE: MetricType = MetricType::Histogram;
}

impl<const N: usize> EncodeMetric for Histogram<N> {
    fn encode(&self, mut encoder: MetricEncoder<'_>) -> Result<(), std::fmt::Error> {
        let inner = &*self.inner;
        let buckets: Vec<(f64, u64)> = inner
            .bounds
            .iter()
            .zip(&inner.counts)
            .map(|(&bound, count)| {
                let le = if bound == u64::MAX {
                    f64::INFINITY
                } else {
                    bound as f64 / inner.per
                };
                (le, count.load(Ordering::Relaxed))
            })
            .collect();
        let count = buckets.iter().map(|(_, c)| c).sum();
        let sum = self.sum() as f64 / inner.per;
        encoder.encode_histogram::<NoLabelSet>(
            sum,
            count,
            &buckets,
            None::<&HashMap<usize, Exemplar<NoLabelSet, f64>>>,
        )
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

/// Observations gathered without atomics (by one writer pass), added to a
/// [`Histogram`] with the same bounds at once.
#[derive(Debug)]
pub(crate) struct Tally<const N: usize> {
    counts: [u32; N],
    sum: u64,
}

impl<const N: usize> Default for Tally<N> {
    fn default() -> Self {
        Self {
            counts: [0; N],
            sum: 0,
        }
    }
}

impl<const N: usize> Tally<N> {
    pub(crate) fn observe(&mut self, bounds: &Bounds<N>, value: u64) {
        let i = bucket(bounds, value);
        self.counts[i] = self.counts[i].saturating_add(1);
        self.sum = self.sum.saturating_add(value);
    }
}

#[cfg(test)]
mod tests {
    use prometheus_client::encoding::prometheus_text::encode;
    use prometheus_client::registry::{Registry, Unit};

    use super::*;

    #[test]
    fn buckets_are_cumulative_in_seconds_and_tallies_add_up() {
        let h = Histogram::new(MICROS, 1e6);
        h.observe(40); // <= 50 µs
        h.observe(700); // <= 1 ms
        h.observe(17_000); // <= 20 ms
        let mut t = Tally::default();
        t.observe(&MICROS, 20_000_000); // +Inf
        t.observe(&MICROS, 1_000); // <= 1 ms
        h.add(&mut t);
        h.add(&mut t); // emptied by the first add
        assert_eq!((h.count(), h.sum()), (5, 20_018_740));
        let mut registry = Registry::default();
        registry.register_with_unit("lag", "Lag", Unit::Seconds, h.clone());
        let mut text = String::new();
        encode(&mut text, &registry).unwrap();
        for line in [
            "# TYPE lag_seconds histogram",
            "lag_seconds_bucket{le=\"5e-05\"} 1",
            "lag_seconds_bucket{le=\"0.001\"} 3",
            "lag_seconds_bucket{le=\"0.015\"} 3",
            "lag_seconds_bucket{le=\"0.02\"} 4",
            "lag_seconds_bucket{le=\"10\"} 4",
            "lag_seconds_bucket{le=\"+Inf\"} 5",
            "lag_seconds_count 5",
        ] {
            assert!(text.contains(line), "{line} missing in\n{text}");
        }
        assert!(text.contains("lag_seconds_sum 20.01874"), "{text}");
    }
}
