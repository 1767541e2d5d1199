//! Options every subcommand shares, and the server-process probe.

use std::time::Duration;

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
    /// Seconds any single connect, upgrade, request or reply may take.
    #[arg(long, default_value_t = 10.0)]
    pub timeout: f64,
}

impl Common {
    /// The parsed, loopback-only target.
    pub fn target(&self) -> anyhow::Result<Target> {
        Target::parse(&self.url, &self.ws_path, self.token.clone())
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
