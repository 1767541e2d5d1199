//! The server's memory, sampled in the background while a run goes on.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Map, Value};

use crate::sys::now_ns;

/// Samples the server's RSS every `every` in the background: maximum, last,
/// and a coarse series.
pub(crate) struct Sampler {
    max: Arc<AtomicU64>,
    last: Arc<AtomicU64>,
    series: Arc<Mutex<Vec<(f64, u64)>>>,
    stop: Arc<AtomicBool>,
}

impl Sampler {
    /// Starts sampling (does nothing without a server PID). Keeps one series
    /// point per `keep_every` samples (bounded to 10,000 points).
    pub fn start(pid: Option<u32>, every: Duration, keep_every: u32) -> Self {
        let s = Self {
            max: Arc::default(),
            last: Arc::default(),
            series: Arc::default(),
            stop: Arc::default(),
        };
        if let Some(pid) = pid {
            let (max, last, series, stop) = (
                s.max.clone(),
                s.last.clone(),
                s.series.clone(),
                s.stop.clone(),
            );
            let pid = pid.to_string();
            let t0 = now_ns();
            tokio::spawn(async move {
                let mut n: u32 = 0;
                while !stop.load(Relaxed) {
                    if let Some(rss) = crate::sys::rss_kib(&pid) {
                        max.fetch_max(rss, Relaxed);
                        last.store(rss, Relaxed);
                        if n % keep_every.max(1) == 0 {
                            let mut v = series.lock().unwrap_or_else(|e| e.into_inner());
                            if v.len() < 10_000 {
                                v.push((crate::round3((now_ns() - t0) as f64 / 1e9), rss));
                            }
                        }
                    }
                    n = n.wrapping_add(1);
                    tokio::time::sleep(every).await;
                }
            });
        }
        s
    }

    /// Stops and adds `server_rss_max_kib`, `server_rss_end_kib` and
    /// `server_rss_series` (`[seconds, KiB]` pairs) to `out`.
    pub fn finish(&self, out: &mut Map<String, Value>) {
        self.stop.store(true, Relaxed);
        let max = self.max.load(Relaxed);
        if max == 0 {
            return;
        }
        out.insert("server_rss_max_kib".into(), json!(max));
        out.insert("server_rss_end_kib".into(), json!(self.last.load(Relaxed)));
        let series = self.series.lock().unwrap_or_else(|e| e.into_inner());
        out.insert("server_rss_series".into(), json!(*series));
    }
}
