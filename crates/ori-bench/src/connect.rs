//! `connect`: N upgrades, C at a time, each closed right away; reports
//! upgrades per second and handshake latency.

use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::bail;
use serde_json::{json, Map, Value};

use crate::common::{BenchCpu, Common, ServerProbe};
use crate::hist::Histogram;
use crate::sys::now_ns;
use crate::ws::WsConn;

/// Options of `ori-bench connect`.
#[derive(Debug, clap::Args)]
pub struct ConnectArgs {
    #[command(flatten)]
    common: Common,
    /// Upgrades to perform.
    #[arg(long, default_value_t = 1000)]
    connections: usize,
    /// Upgrades in flight at once.
    #[arg(long, default_value_t = 50)]
    concurrency: usize,
    /// How each connection ends once upgraded: `handshake` sends a close
    /// frame and waits for the server's close and the end of the stream
    /// (the server closes TCP first and keeps the TIME_WAIT); `reset`
    /// drops it at once with a TCP reset (no close frame, no TIME_WAIT),
    /// which costs both ends the least per upgrade.
    #[arg(long, value_enum, default_value_t = CloseMode::Handshake)]
    close: CloseMode,
}

/// How `connect` ends each connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum CloseMode {
    Handshake,
    Reset,
}

/// Runs the upgrade-rate benchmark and returns its result line.
pub async fn run(args: ConnectArgs) -> anyhow::Result<Value> {
    let a = &args;
    if a.connections == 0 || a.connections > 10_000_000 {
        bail!("--connections must be 1..=10000000");
    }
    let target = a.common.target()?;
    let probe = ServerProbe::new(a.common.server_pid)?;
    let concurrency = a.concurrency.clamp(1, 10_000).min(a.connections);
    crate::sys::ensure_nofile((concurrency + 64) as u64)?;
    let timeout = a.common.timeout();

    let cpu0 = probe.cpu();
    let mut bench_cpu = BenchCpu::start();
    let rss_before = probe.rss();
    let t0 = now_ns();
    let next = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(AtomicUsize::new(0));
    let first_error: Arc<Mutex<Option<String>>> = Arc::default();
    let mut workers = Vec::new();
    for _ in 0..concurrency {
        let (target, next, failures, first_error) = (
            target.clone(),
            next.clone(),
            failures.clone(),
            first_error.clone(),
        );
        let (n, close) = (a.connections, a.close);
        workers.push(tokio::spawn(async move {
            let (mut hist, mut close_hist) = (Histogram::new(), Histogram::new());
            loop {
                let i = next.fetch_add(1, Relaxed);
                if i >= n || failures.load(Relaxed) > 100 {
                    break;
                }
                let start = now_ns();
                match WsConn::connect(&target, 256, timeout).await {
                    Ok(conn) => {
                        let upgraded = now_ns();
                        hist.record(upgraded - start);
                        match close {
                            CloseMode::Handshake => {
                                let _ = conn.close(Duration::from_secs(2)).await;
                                close_hist.record(now_ns() - upgraded);
                            }
                            CloseMode::Reset => conn.reset(),
                        }
                    }
                    Err(e) => {
                        crate::common::record_failure(&failures, &first_error, &e);
                    }
                }
                if (i + 1) % 10_000 == 0 {
                    eprintln!("{} upgrades started", i + 1);
                }
            }
            (hist, close_hist)
        }));
    }
    let (mut hist, mut close_hist) = (Histogram::new(), Histogram::new());
    for w in workers {
        let (h, c) = w.await?;
        hist.merge(&h);
        close_hist.merge(&c);
    }
    bench_cpu.stop();
    let elapsed = (now_ns() - t0) as f64 / 1e9;
    let cpu1 = probe.cpu();
    let rss_after = probe.rss();
    let failed = failures.load(Relaxed);

    let mut out = Map::new();
    out.insert("mode".into(), json!("connect"));
    out.insert("connections".into(), json!(a.connections));
    out.insert("concurrency".into(), json!(concurrency));
    out.insert(
        "close".into(),
        json!(match a.close {
            CloseMode::Handshake => "handshake",
            CloseMode::Reset => "reset",
        }),
    );
    out.insert("upgrades".into(), json!(hist.count()));
    out.insert("failed".into(), json!(failed));
    out.insert("elapsed_s".into(), json!(crate::round3(elapsed)));
    out.insert(
        "upgrades_per_s".into(),
        json!(crate::round3(hist.count() as f64 / elapsed.max(1e-9))),
    );
    hist.summary_ms("handshake_", &mut out);
    if a.close == CloseMode::Handshake {
        close_hist.summary_ms("close_", &mut out);
    }
    bench_cpu.report(&mut out);
    probe.report(&mut out, cpu0, cpu1, rss_before, rss_after, elapsed);
    if let Some(e) = first_error
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone()
    {
        out.insert("first_error".into(), json!(e));
    }
    Ok(Value::Object(out))
}
