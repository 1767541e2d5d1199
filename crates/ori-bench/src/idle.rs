//! `idle`: N idle connections; reports the server's RSS cost per connection.

use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::bail;
use serde_json::{json, Map, Value};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::common::{BenchCpu, Common, ServerProbe};
use crate::sys::now_ns;
use crate::ws::{self, WsConn};

/// Options of `ori-bench idle`.
#[derive(Debug, clap::Args)]
pub struct IdleArgs {
    #[command(flatten)]
    common: Common,
    /// Connections to open and hold.
    #[arg(long, default_value_t = 1000)]
    connections: usize,
    /// Connections being opened at once.
    #[arg(long, default_value_t = 200)]
    concurrency: usize,
    /// Seconds to wait after the last connection opened before reading the
    /// server's RSS.
    #[arg(long, default_value_t = 2.0)]
    settle: f64,
    /// Seconds to hold the connections open after measuring (server pings
    /// are answered meanwhile); then each is checked with a 2/3 round trip.
    #[arg(long, default_value_t = 0.0)]
    hold: f64,
    /// Initial read buffer per connection, bytes.
    #[arg(long, default_value_t = 512)]
    read_buffer: usize,
}

/// Keeps one connection open (answering pings) until released, then checks
/// it is still served and closes it. Returns whether it was alive.
async fn holder(mut conn: WsConn, mut release: watch::Receiver<bool>, timeout: Duration) -> bool {
    loop {
        let read = tokio::select! {
            _ = async { drop(release.wait_for(|v| *v).await) } => None,
            r = conn.fill() => Some(r),
        };
        let Some(r) = read else { break };
        if !matches!(r, Ok(n) if n > 0) {
            return false;
        }
        loop {
            match conn.next_frame() {
                Ok(Some(f)) if f.op == ws::OP_PING => {
                    if conn.pong(&f).await.is_err() {
                        return false;
                    }
                }
                Ok(Some(f)) if f.op == ws::OP_CLOSE => return false,
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(_) => return false,
            }
        }
    }
    let alive = conn.ping_roundtrip(timeout).await.is_ok();
    let _ = conn.close(Duration::from_secs(2)).await;
    alive
}

/// Runs the idle-connection benchmark and returns its result line.
pub async fn run(args: IdleArgs) -> anyhow::Result<Value> {
    let a = &args;
    if a.connections == 0 || a.connections > 1_000_000 {
        bail!("--connections must be 1..=1000000");
    }
    if !(0.0..=600.0).contains(&a.settle) || !(0.0..=3600.0).contains(&a.hold) {
        bail!("--settle must be 0..=600 and --hold 0..=3600 seconds");
    }
    let target = a.common.target()?;
    let probe = ServerProbe::new(a.common.server_pid)?;
    crate::sys::ensure_nofile((a.connections + 64) as u64)?;
    let timeout = a.common.timeout();
    let rss_before = probe.rss();

    let (release_tx, release_rx) = watch::channel(false);
    let t_open = now_ns();
    let mut bench_cpu = BenchCpu::start();
    let next = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(AtomicUsize::new(0));
    let first_error: Arc<Mutex<Option<String>>> = Arc::default();
    let holders: Arc<Mutex<Vec<JoinHandle<bool>>>> = Arc::default();
    let mut workers = Vec::new();
    for _ in 0..a.concurrency.clamp(1, 10_000).min(a.connections) {
        let (target, next, failures, first_error, holders, release_rx) = (
            target.clone(),
            next.clone(),
            failures.clone(),
            first_error.clone(),
            holders.clone(),
            release_rx.clone(),
        );
        let (n, buf) = (a.connections, a.read_buffer.clamp(64, 1 << 20));
        workers.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Relaxed);
                if i >= n || failures.load(Relaxed) > 100 {
                    break;
                }
                let setup = async {
                    let mut conn = WsConn::connect(&target, buf, timeout).await?;
                    conn.ping_roundtrip(timeout).await?;
                    anyhow::Ok(conn)
                };
                match setup.await {
                    Ok(conn) => {
                        let task = tokio::spawn(holder(conn, release_rx.clone(), timeout));
                        let mut holders = holders.lock().unwrap_or_else(|e| e.into_inner());
                        holders.push(task);
                        if holders.len() % 5000 == 0 {
                            eprintln!("{} connections open", holders.len());
                        }
                    }
                    Err(e) => {
                        crate::common::record_failure(&failures, &first_error, &e);
                    }
                }
            }
        }));
    }
    for w in workers {
        w.await?;
    }
    drop(release_rx);
    bench_cpu.stop();
    let open_s = (now_ns() - t_open) as f64 / 1e9;
    let holders = std::mem::take(&mut *holders.lock().unwrap_or_else(|e| e.into_inner()));
    let failed = failures.load(Relaxed);
    let first_error = first_error
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let open = holders.len();
    eprintln!("{open} connections open in {open_s:.2}s ({failed} failed)");

    tokio::time::sleep(Duration::from_secs_f64(a.settle)).await;
    let rss_after = probe.rss();
    let bench_rss = crate::sys::rss_kib("self");
    if a.hold > 0.0 {
        eprintln!("holding for {}s", a.hold);
        tokio::time::sleep(Duration::from_secs_f64(a.hold)).await;
    }

    let _ = release_tx.send(true);
    let deadline = tokio::time::Instant::now() + timeout + Duration::from_secs(5);
    let mut alive = 0usize;
    for h in holders {
        match tokio::time::timeout_at(deadline, h).await {
            Ok(Ok(true)) => alive += 1,
            Ok(_) => {}
            Err(_) => break,
        }
    }
    tokio::time::sleep(Duration::from_secs_f64(a.settle)).await;
    let rss_closed = probe.rss();

    let mut out = Map::new();
    out.insert("mode".into(), json!("idle"));
    out.insert("connections".into(), json!(open));
    out.insert("failed".into(), json!(failed));
    out.insert("open_s".into(), json!(crate::round3(open_s)));
    if open_s > 0.0 {
        out.insert(
            "opens_per_s".into(),
            json!(crate::round3(open as f64 / open_s)),
        );
    }
    out.insert("settle_s".into(), json!(a.settle));
    out.insert("hold_s".into(), json!(a.hold));
    out.insert("alive_after_hold".into(), json!(alive));
    probe.report(&mut out, None, None, rss_before, rss_after, 0.0);
    if let (Some(b), Some(after)) = (rss_before, rss_after) {
        if open > 0 {
            let per = (after as f64 - b as f64) * 1024.0 / open as f64;
            out.insert("bytes_per_connection".into(), json!(per.round()));
        }
    }
    if rss_closed.is_some() {
        out.insert("server_rss_closed_kib".into(), json!(rss_closed));
    }
    out.insert("bench_rss_kib".into(), json!(bench_rss));
    if let Some(e) = first_error {
        out.insert("first_error".into(), json!(e));
    }
    bench_cpu.report(&mut out);
    Ok(Value::Object(out))
}
