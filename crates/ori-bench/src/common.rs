//! Options every subcommand shares, the server-process probe, and the
//! checks of duration, rate and payload arguments.

use std::time::Duration;

use anyhow::bail;

use serde_json::{json, Map, Value};

use crate::sys;
use crate::target::Target;

/// Options shared by all subcommands.
#[derive(Debug, clap::Args)]
pub struct Common {
    /// The server's base URL: `http://127.0.0.1:PORT`, `http://localhost:PORT`
    /// or `http://[::1]:PORT` (no other hosts are accepted).
    #[arg(long)]
    pub url: String,
    /// The WebSocket endpoint path.
    #[arg(long, default_value = "/ws")]
    pub ws_path: String,
    /// Bearer token for the upgrade (for a server started with --token).
    #[arg(long)]
    pub token: Option<String>,
    /// PID of the server process, to report its CPU time and RSS (read from
    /// /proc; the server must run on this machine).
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// Offer permessage-deflate on every upgrade and inflate compressed
    /// messages (the generator's CPU then includes inflating them).
    #[arg(long)]
    pub compression: bool,
    /// Seconds any single connect, upgrade, request or reply may take.
    #[arg(long, default_value_t = 10.0)]
    pub timeout: f64,
}

impl Common {
    /// The parsed, loopback-only target.
    pub fn target(&self) -> anyhow::Result<Target> {
        let mut target = Target::parse(&self.url, &self.ws_path, self.token.clone())?;
        target.compression = self.compression;
        Ok(target)
    }

    /// The per-operation timeout (clamped to 0.1..=300 s).
    pub fn timeout(&self) -> Duration {
        let t = if self.timeout.is_finite() {
            self.timeout
        } else {
            10.0
        };
        Duration::from_secs_f64(t.clamp(0.1, 300.0))
    }
}

/// Reads the server's CPU time and RSS when `--server-pid` was given.
pub struct ServerProbe {
    pid: Option<String>,
}

impl ServerProbe {
    /// Checks that the PID (if any) is a live process.
    pub fn new(pid: Option<u32>) -> anyhow::Result<Self> {
        Ok(Self {
            pid: sys::check_pid(pid)?,
        })
    }

    /// Server CPU seconds (user + system) so far.
    pub fn cpu(&self) -> Option<f64> {
        sys::cpu_seconds(self.pid.as_deref()?)
    }

    /// Server RSS in KiB.
    pub fn rss(&self) -> Option<u64> {
        sys::rss_kib(self.pid.as_deref()?)
    }

    /// Adds `server_pid`, `server_cpu_s`, `server_cpu_pct` (of one core,
    /// over `secs`), `server_rss_before_kib` and `server_rss_after_kib`.
    pub fn report(
        &self,
        out: &mut Map<String, Value>,
        cpu0: Option<f64>,
        cpu1: Option<f64>,
        rss_before: Option<u64>,
        rss_after: Option<u64>,
        secs: f64,
    ) {
        let Some(pid) = &self.pid else { return };
        out.insert("server_pid".into(), json!(pid.parse::<u64>().ok()));
        if let (Some(c0), Some(c1)) = (cpu0, cpu1) {
            out.insert("server_cpu_s".into(), json!(crate::round3(c1 - c0)));
            if secs > 0.0 {
                out.insert(
                    "server_cpu_pct".into(),
                    json!(crate::round3((c1 - c0) / secs * 100.0)),
                );
            }
        }
        out.insert("server_rss_before_kib".into(), json!(rss_before));
        out.insert("server_rss_after_kib".into(), json!(rss_after));
    }
}

/// Counts a failed connection and keeps the first error's message.
pub fn record_failure(
    failures: &std::sync::atomic::AtomicUsize,
    first_error: &std::sync::Mutex<Option<String>>,
    e: &anyhow::Error,
) {
    failures.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    first_error
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get_or_insert_with(|| format!("{e:#}"));
}

/// The generator's own CPU use over a measured interval, so that a
/// saturated generator shows in every result (it would then measure itself
/// rather than the server), and how busy its cores were: a generator that
/// shares a saturated core with other processes (a server, Redis) waits
/// for it, and its latencies include that wait.
pub struct BenchCpu {
    extra_threads: usize,
    cpus: Vec<usize>,
    cpu0: Option<f64>,
    threads0: Vec<(u32, f64)>,
    ticks0: Option<(u64, u64)>,
    waits0: Vec<(u32, u64)>,
    t0: u64,
    cpu1: Option<f64>,
    threads1: Vec<(u32, f64)>,
    ticks1: Option<(u64, u64)>,
    waits1: Vec<(u32, u64)>,
    t1: u64,
}

impl BenchCpu {
    /// Starts measuring now.
    pub fn start() -> Self {
        let t0 = sys::now_ns();
        let cpus = sys::allowed_cpus();
        Self {
            extra_threads: 0,
            cpu0: sys::cpu_seconds("self"),
            threads0: sys::thread_cpu_seconds(),
            ticks0: sys::cpu_ticks(&cpus),
            waits0: sys::runqueue_wait_ns(),
            cpus,
            t0,
            cpu1: None,
            threads1: Vec::new(),
            ticks1: None,
            waits1: Vec::new(),
            t1: t0,
        }
    }

    /// Counts `n` busy threads of the run besides the runtime's workers
    /// (fan-out's publisher thread).
    pub fn with_extra_threads(mut self, n: usize) -> Self {
        self.extra_threads = n;
        self
    }

    /// Ends the interval (the last call counts).
    pub fn stop(&mut self) {
        self.cpu1 = sys::cpu_seconds("self");
        self.threads1 = sys::thread_cpu_seconds();
        self.ticks1 = sys::cpu_ticks(&self.cpus);
        self.waits1 = sys::runqueue_wait_ns();
        self.t1 = sys::now_ns();
    }

    /// Adds `bench_cpu_s`, `bench_cpu_pct` (percent of one core over the
    /// interval), `bench_threads` (runtime workers plus any extra busy
    /// thread) and `bench_cores` (the cores those threads can use: the
    /// smaller of the thread count and the CPUs this process may run on)
    /// and `bench_busiest_thread_pct` (the thread that used the most CPU,
    /// percent of one core), `bench_cores_busy_pct` (how busy the CPUs this
    /// process may run on were, whoever used them) and
    /// `bench_runqueue_wait_pct` (the time its threads were ready to run
    /// but waited for a CPU, percent of one core). Warns on stderr when the
    /// generator used more than 90 % of those cores, or one thread more
    /// than 90 % of a core, or when its cores were over 90 % busy and it
    /// waited over 5 % of the run for them.
    /// Stops the interval first if [`stop`](Self::stop) was not called.
    pub fn report(&mut self, out: &mut Map<String, Value>) {
        let cores = self.fields(out);
        let pct = |k: &str| out.get(k).and_then(Value::as_f64).unwrap_or(0.0);
        let (total, busiest) = (pct("bench_cpu_pct"), pct("bench_busiest_thread_pct"));
        if total > 90.0 * cores as f64 || busiest > 90.0 {
            eprintln!(
                "warning: the generator used {total:.0} % of one core ({cores} core(s) to use; \
                 its busiest thread {busiest:.0} %): it is probably the bottleneck, and its \
                 figures measure itself as much as the server (try more --threads, or another \
                 core)"
            );
        }
        let (busy, wait) = (pct("bench_cores_busy_pct"), pct("bench_runqueue_wait_pct"));
        if busy > 90.0 && wait > 5.0 {
            eprintln!(
                "warning: the generator's cores were {busy:.0} % busy and its threads waited \
                 for them {wait:.0} % of the run: it shares them with other busy processes, and \
                 its latencies include its own wait for a CPU (give it a core of its own)"
            );
        }
    }

    /// The fields of [`report`](Self::report) without the warning (for
    /// in-process runs that are meant to use a whole core). Returns the
    /// core count.
    pub fn fields(&mut self, out: &mut Map<String, Value>) -> usize {
        if self.cpu1.is_none() {
            self.stop();
        }
        let threads = sys::threads() + self.extra_threads;
        let cores = threads.min(sys::usable_cpus());
        out.insert("bench_threads".into(), json!(threads));
        out.insert("bench_cores".into(), json!(cores));
        if let (Some(c0), Some(c1)) = (self.cpu0, self.cpu1) {
            out.insert("bench_cpu_s".into(), json!(crate::round3(c1 - c0)));
            let secs = (self.t1 - self.t0) as f64 / 1e9;
            // Below 0.1 s the 10 ms clock ticks of /proc make it noise.
            if secs >= 0.1 {
                out.insert(
                    "bench_cpu_pct".into(),
                    json!(crate::round3((c1 - c0) / secs * 100.0)),
                );
                let busiest =
                    growth(&self.threads0, &self.threads1, |a, b| b - a).fold(0.0f64, f64::max);
                out.insert(
                    "bench_busiest_thread_pct".into(),
                    json!(crate::round3(busiest / secs * 100.0)),
                );
                let waited_ns: u64 =
                    growth(&self.waits0, &self.waits1, |a, b| b.saturating_sub(a)).sum();
                out.insert(
                    "bench_runqueue_wait_pct".into(),
                    json!(crate::round3(waited_ns as f64 / 1e9 / secs * 100.0)),
                );
            }
        }
        if let (Some((b0, n0)), Some((b1, n1))) = (self.ticks0, self.ticks1) {
            if n1 > n0 + 10 {
                let busy = (b1.saturating_sub(b0)) as f64 / (n1 - n0) as f64 * 100.0;
                out.insert("bench_cores_busy_pct".into(), json!(crate::round3(busy)));
            }
        }
        cores
    }
}

/// Per thread alive at the end, how much `after` grew since `before` (a
/// thread started meanwhile counts from zero).
fn growth<'a, T: Copy + Default>(
    before: &'a [(u32, T)],
    after: &'a [(u32, T)],
    delta: impl Fn(T, T) -> T + 'a,
) -> impl Iterator<Item = T> + 'a {
    after.iter().map(move |(tid, v1)| {
        let v0 = before
            .iter()
            .find(|(t, _)| t == tid)
            .map_or_else(T::default, |t| t.1);
        delta(v0, *v1)
    })
}

/// Checks a duration argument.
pub(crate) fn check_secs(name: &str, v: f64, max: f64) -> anyhow::Result<()> {
    if !(v.is_finite() && (0.0..=max).contains(&v)) {
        bail!("--{name} must be 0..={max} seconds");
    }
    Ok(())
}

/// Checks rate and payload arguments.
pub(crate) fn check_rate_payload(rate: f64, payload: usize) -> anyhow::Result<()> {
    if !(rate.is_finite() && rate > 0.0 && rate <= 1_000_000.0) {
        bail!("--rate must be in (0, 1e6]");
    }
    if payload > 1_000_000 {
        bail!("--payload must be at most 1000000 bytes (the demo's body limit is 1 MiB)");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_thread_growth_counts_new_threads_from_zero_and_ignores_ended_ones() {
        let before = [(1u32, 10u64), (2, 5)];
        let after = [(1u32, 25u64), (3, 7)];
        let grown: Vec<u64> = growth(&before, &after, |a, b| b.saturating_sub(a)).collect();
        assert_eq!(grown, [15, 7]);
    }

    #[test]
    fn a_result_carries_the_generators_cores_and_its_wait_for_them() {
        let mut cpu = BenchCpu::start();
        // Busy for a little over 0.1 s, so that the percentages are kept.
        let t = std::time::Instant::now();
        let mut x = 0u64;
        while t.elapsed() < std::time::Duration::from_millis(150) {
            x = std::hint::black_box(x.wrapping_add(1));
        }
        cpu.stop();
        let mut out = Map::new();
        let _ = cpu.fields(&mut out);
        let busy = out["bench_cores_busy_pct"].as_f64().unwrap();
        assert!((0.0..=100.0).contains(&busy), "{busy}");
        assert!(out["bench_runqueue_wait_pct"].as_f64().unwrap() >= 0.0);
    }
}
