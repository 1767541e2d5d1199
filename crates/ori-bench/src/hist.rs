//! A log-linear latency histogram (HDR-like): values in nanoseconds, 64
//! sub-buckets per power of two, so any recorded value is reported within
//! about 1.6 % of itself. Fixed size (3776 counters), no allocation when
//! recording.
//!
//! For hot paths spread over several runtime threads there is one histogram
//! per thread ([`with_local`]); [`merged_locals`] adds them up at the end.

use std::sync::{Arc, Mutex};

/// Bits of the linear range; the sub-bucket count per power of two is half
/// of `1 << SUB_BITS`.
const SUB_BITS: u32 = 7;
const HALF: u64 = 1 << (SUB_BITS - 1);
const BUCKETS: usize = ((64 - SUB_BITS as usize) + 2) * HALF as usize;

/// Latency histogram.
#[derive(Clone)]
pub struct Histogram {
    counts: Box<[u64]>,
    total: u64,
    max: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Self::new()
    }
}

fn index(v: u64) -> usize {
    if v < (1 << SUB_BITS) {
        return v as usize;
    }
    let msb = 63 - v.leading_zeros();
    let shift = msb - (SUB_BITS - 1);
    (u64::from(shift) * HALF + (v >> shift)) as usize
}

/// The highest value that lands in bucket `i`.
fn upper(i: usize) -> u64 {
    let i = i as u64;
    if i < (1 << SUB_BITS) {
        return i;
    }
    let shift = i / HALF - 1;
    let m = i - shift * HALF;
    ((m + 1) << shift).wrapping_sub(1)
}

impl Histogram {
    /// An empty histogram.
    pub fn new() -> Self {
        Self {
            counts: vec![0u64; BUCKETS].into_boxed_slice(),
            total: 0,
            max: 0,
        }
    }

    /// Records one value.
    #[inline]
    pub fn record(&mut self, v: u64) {
        self.counts[index(v)] += 1;
        self.total += 1;
        if v > self.max {
            self.max = v;
        }
    }

    /// Adds another histogram's counts.
    pub fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(other.counts.iter()) {
            *a += b;
        }
        self.total += other.total;
        self.max = self.max.max(other.max);
    }

    /// Number of recorded values.
    pub fn count(&self) -> u64 {
        self.total
    }

    /// Largest recorded value (0 when empty).
    pub fn max(&self) -> u64 {
        self.max
    }

    /// The value at quantile `q` (0..=1): the upper edge of the bucket
    /// holding the `ceil(q * count)`-th smallest value, capped at the
    /// maximum. 0 when empty.
    pub fn quantile(&self, q: f64) -> u64 {
        if self.total == 0 {
            return 0;
        }
        let rank = ((q * self.total as f64).ceil() as u64).clamp(1, self.total);
        let mut seen = 0;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return upper(i).min(self.max);
            }
        }
        self.max
    }

    /// The usual summary in milliseconds, as JSON fields with `prefix`
    /// (`<prefix>p50_ms`, ... `<prefix>max_ms`, `<prefix>samples`).
    pub fn summary_ms(&self, prefix: &str, out: &mut serde_json::Map<String, serde_json::Value>) {
        let ms = |ns: u64| serde_json::json!(crate::round3(ns as f64 / 1e6));
        out.insert(format!("{prefix}samples"), self.total.into());
        for (name, q) in QUANTILES {
            out.insert(format!("{prefix}{name}_ms"), ms(self.quantile(q)));
        }
        out.insert(format!("{prefix}max_ms"), ms(self.max()));
    }
}

/// The quantiles every latency summary reports, by field-name part.
pub const QUANTILES: [(&str, f64); 4] =
    [("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("p999", 0.999)];

static REGISTRY: Mutex<Vec<Arc<Mutex<Histogram>>>> = Mutex::new(Vec::new());

thread_local! {
    static LOCAL: Arc<Mutex<Histogram>> = {
        let h = Arc::new(Mutex::new(Histogram::new()));
        REGISTRY.lock().unwrap_or_else(|e| e.into_inner()).push(h.clone());
        h
    };
}

/// Runs `f` with this thread's histogram (an uncontended lock: take it once
/// per read batch, not per value).
pub fn with_local<R>(f: impl FnOnce(&mut Histogram) -> R) -> R {
    LOCAL.with(|h| {
        let mut guard = h.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut guard)
    })
}

/// The sum of every thread's histogram.
pub fn merged_locals() -> Histogram {
    let mut out = Histogram::new();
    for h in REGISTRY.lock().unwrap_or_else(|e| e.into_inner()).iter() {
        out.merge(&h.lock().unwrap_or_else(|e| e.into_inner()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_contiguous_and_tight() {
        let mut prev = 0;
        for v in (0..1_000_000u64).chain([u64::MAX / 3, u64::MAX]) {
            let i = index(v);
            assert!(i < BUCKETS);
            assert!(i >= prev || v > 1_000_000);
            prev = i;
            let hi = upper(i);
            assert!(hi >= v, "v {v} hi {hi}");
            assert!((hi - v) as f64 <= v as f64 / 60.0 + 1.0, "v {v} hi {hi}");
        }
        assert_eq!(index(u64::MAX), BUCKETS - 1);
    }

    #[test]
    fn quantiles() {
        let mut h = Histogram::new();
        for v in 1..=1000u64 {
            h.record(v * 1000);
        }
        let p50 = h.quantile(0.5) as f64;
        assert!((p50 - 500_000.0).abs() / 500_000.0 < 0.02, "{p50}");
        assert_eq!(h.quantile(1.0), 1_000_000);
        assert_eq!(h.max(), 1_000_000);
        let p99 = h.quantile(0.99) as f64;
        assert!((p99 - 990_000.0).abs() / 990_000.0 < 0.02, "{p99}");
        assert_eq!(Histogram::new().quantile(0.5), 0);
    }
}
