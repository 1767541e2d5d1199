//! The server's own delivery lag over the measured window, from its
//! `ori_delivery_lag_seconds` histogram (Ori's `/metrics`): an independent
//! check of the generator's latency. The histogram counts writes (each
//! observation is the age of a write's oldest frame when its last byte is
//! written), so its percentiles are of writes, as bucket upper bounds.

use serde_json::{json, Map, Value};

use crate::soak::get_metrics;
use crate::target::Target;

/// The histogram's name in the Prometheus text.
const NAME: &str = "ori_delivery_lag_seconds_bucket{le=\"";

/// Cumulative bucket counts, by upper bound in seconds (`+Inf` last).
#[derive(Debug, Clone, PartialEq)]
pub struct Buckets(Vec<(f64, u64)>);

impl Buckets {
    /// The histogram in `text`, `None` if it has no bucket (not an Ori
    /// server, or an older one).
    pub fn parse(text: &str) -> Option<Self> {
        let buckets: Vec<(f64, u64)> = text
            .lines()
            .filter_map(|l| {
                let (le, count) = l.strip_prefix(NAME)?.split_once("\"} ")?;
                let le = if le == "+Inf" {
                    f64::INFINITY
                } else {
                    le.parse().ok()?
                };
                Some((le, count.trim().parse().ok()?))
            })
            .collect();
        (!buckets.is_empty()).then_some(Self(buckets))
    }

    /// The observations made after `earlier` (the same buckets, read
    /// before); `None` if the buckets differ.
    pub fn since(&self, earlier: &Self) -> Option<Self> {
        if self.0.len() != earlier.0.len() {
            return None;
        }
        self.0
            .iter()
            .zip(&earlier.0)
            .map(|(&(le, n), &(le0, n0))| (le == le0).then(|| (le, n.saturating_sub(n0))))
            .collect::<Option<Vec<_>>>()
            .map(Self)
    }

    /// Observations counted.
    pub fn count(&self) -> u64 {
        self.0.last().map_or(0, |&(_, n)| n)
    }

    /// The upper bound (seconds) of the bucket holding quantile `q`.
    pub fn quantile_le(&self, q: f64) -> Option<f64> {
        let total = self.count();
        if total == 0 {
            return None;
        }
        let rank = (q * total as f64).ceil().max(1.0) as u64;
        self.0.iter().find(|&&(_, n)| n >= rank).map(|&(le, _)| le)
    }
}

/// The server's histogram now, if it has one (errors and non-Ori servers
/// give `None`: the figures are then left out).
pub async fn read(target: &Target, timeout: std::time::Duration) -> Option<Buckets> {
    Buckets::parse(&get_metrics(target, timeout).await.ok()?)
}

/// Adds `server_write_lag_{p50,p90,p99,p999}_le_ms` and
/// `server_write_lag_writes` for the writes between `before` and `after`.
pub fn report(before: Option<Buckets>, after: Option<Buckets>, out: &mut Map<String, Value>) {
    let Some(window) = after.zip(before).and_then(|(a, b)| a.since(&b)) else {
        return;
    };
    out.insert("server_write_lag_writes".into(), json!(window.count()));
    for (name, q) in crate::hist::QUANTILES {
        if let Some(le) = window.quantile_le(q) {
            // `+Inf` has no JSON number: past the last bound, say so.
            let v = if le.is_finite() {
                json!(crate::round3(le * 1e3))
            } else {
                json!("+Inf")
            };
            out.insert(format!("server_write_lag_{name}_le_ms"), v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BEFORE: &str = "# TYPE ori_delivery_lag_seconds histogram
ori_delivery_lag_seconds_bucket{le=\"0.01\"} 5
ori_delivery_lag_seconds_bucket{le=\"0.02\"} 10
ori_delivery_lag_seconds_bucket{le=\"+Inf\"} 10
ori_delivery_lag_seconds_count 10
ori_upgrade_seconds_bucket{le=\"0.01\"} 99
";

    #[test]
    fn the_window_is_the_difference_and_quantiles_are_bucket_bounds() {
        let before = Buckets::parse(BEFORE).unwrap();
        assert_eq!(before.count(), 10);
        let after = Buckets::parse(
            "ori_delivery_lag_seconds_bucket{le=\"0.01\"} 95
ori_delivery_lag_seconds_bucket{le=\"0.02\"} 108
ori_delivery_lag_seconds_bucket{le=\"+Inf\"} 110
",
        )
        .unwrap();
        let w = after.since(&before).unwrap();
        assert_eq!(w.count(), 100);
        assert_eq!(w.quantile_le(0.5), Some(0.01));
        assert_eq!(w.quantile_le(0.9), Some(0.01));
        assert_eq!(w.quantile_le(0.91), Some(0.02));
        assert_eq!(w.quantile_le(0.99), Some(f64::INFINITY));

        let mut out = Map::new();
        report(Some(before.clone()), Some(after), &mut out);
        assert_eq!(out["server_write_lag_writes"], json!(100));
        assert_eq!(out["server_write_lag_p50_le_ms"], json!(10.0));
        assert_eq!(out["server_write_lag_p999_le_ms"], json!("+Inf"));
    }

    #[test]
    fn no_histogram_or_other_buckets_report_nothing() {
        assert_eq!(Buckets::parse("# nothing\nother_total 3\n"), None);
        let other = Buckets::parse("ori_delivery_lag_seconds_bucket{le=\"+Inf\"} 3\n").unwrap();
        let before = Buckets::parse(BEFORE).unwrap();
        assert_eq!(other.since(&before), None);
        let mut out = Map::new();
        report(None, Some(before.clone()), &mut out);
        report(Some(before), Some(other), &mut out);
        assert!(out.is_empty());
        let empty = Buckets(vec![(f64::INFINITY, 0)]);
        assert_eq!(empty.quantile_le(0.5), None);
    }
}
