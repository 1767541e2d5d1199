//! `soak`: steady churn for a long time. Stable subscribers stay connected
//! and must lose nothing; churning clients connect, join, leave and join
//! another topic, and disconnect, a fraction of them every second; one
//! publisher publishes at a steady rate. Every `--sample` seconds the
//! server's RSS, thread count (`/proc/PID/status`) and `/metrics` gauges
//! are recorded; the result has the first, last and largest RSS and its
//! slope.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use serde_json::{json, Map, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::{check_rate_payload, check_secs};
use crate::common::{BenchCpu, Common, ServerProbe};
use crate::sequenced::{connect_join, publish_loop, reader, Topics, Track};
use crate::sys::now_ns;
use crate::sys::sleep_until_ns;
use crate::target::Target;
use crate::ws::{self, WsConn};

/// Options of `ori-bench soak`.
#[derive(Debug, clap::Args)]
pub struct SoakArgs {
    #[command(flatten)]
    common: Common,
    /// Subscribers that stay connected the whole run (checked for loss).
    #[arg(long, default_value_t = 200)]
    stable: usize,
    /// Churning clients (each always has at most one connection open).
    #[arg(long, default_value_t = 1000)]
    churners: usize,
    /// Fraction of the churning clients that disconnect and reconnect every
    /// second (a connection lives `2 / churn` seconds at most, `1 / churn`
    /// on average).
    #[arg(long, default_value_t = 0.1)]
    churn: f64,
    /// Topics `soak-0` .. `soak-<T-1>`.
    #[arg(long, default_value_t = 20)]
    topics: usize,
    /// Publishes per second (one keep-alive HTTP publisher, topics in turn).
    #[arg(long, default_value_t = 100.0)]
    rate: f64,
    /// Length of the notification text in bytes.
    #[arg(long, default_value_t = 64)]
    payload: usize,
    /// Seconds of churn.
    #[arg(long, default_value_t = 600.0)]
    duration: f64,
    /// Seconds between samples of the server.
    #[arg(long, default_value_t = 10.0)]
    sample: f64,
    /// Seconds to wait for outstanding deliveries after publishing stops.
    #[arg(long, default_value_t = 5.0)]
    drain: f64,
}

/// One sample of the server.
#[derive(Debug, Clone, Copy, serde::Serialize)]
struct Sample {
    t_s: f64,
    rss_kib: Option<u64>,
    threads: Option<u64>,
    connections: Option<u64>,
    connections_total: Option<u64>,
    slow_closes: Option<u64>,
    churn_cycles: u64,
}

/// `Threads:` of `/proc/<pid>/status`.
fn threads(pid: &str) -> Option<u64> {
    crate::sys::status_field(pid, "Threads")?.parse().ok()
}

/// `GET /metrics` over a fresh connection (`Connection: close`); the body.
pub(crate) async fn get_metrics(target: &Target, timeout: Duration) -> anyhow::Result<String> {
    tokio::time::timeout(timeout, async {
        let mut s = TcpStream::connect(target.addr).await?;
        let req = format!(
            "GET /metrics HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            target.host_header
        );
        s.write_all(req.as_bytes()).await?;
        let mut buf = Vec::with_capacity(4096);
        (&mut s).take(1 << 20).read_to_end(&mut buf).await?;
        let text = String::from_utf8_lossy(&buf).into_owned();
        let body = text
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_owned())
            .context("no HTTP body")?;
        anyhow::Ok(body)
    })
    .await
    .map_err(|_| anyhow::anyhow!("GET /metrics timed out"))?
}

/// The value of metric `name` in Prometheus text.
pub(crate) fn metric(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

/// Reads and discards frames until `until` (answering pings). Returns false
/// when the connection ended.
async fn drain_until(conn: &mut WsConn, until: u64) -> bool {
    loop {
        loop {
            match conn.next_frame() {
                Ok(Some(f)) => {
                    if f.op == ws::OP_CLOSE || (f.op == ws::OP_PING && conn.pong(&f).await.is_err())
                    {
                        return false;
                    }
                }
                Ok(None) => break,
                Err(_) => return false,
            }
        }
        let now = now_ns();
        if now >= until {
            return true;
        }
        match tokio::time::timeout(Duration::from_nanos(until - now), conn.fill()).await {
            Err(_) => return true,
            Ok(Ok(0) | Err(_)) => return false,
            Ok(Ok(_)) => {}
        }
    }
}

struct ChurnStats {
    cycles: AtomicU64,
    failures: AtomicU64,
    server_closed: AtomicU64,
}

/// One churning client: connect, join, read, leave and join another topic,
/// read, disconnect; again until `stop`.
async fn churner(
    i: usize,
    target: Target,
    topics: Arc<Topics>,
    max_life_ns: u64,
    stop: Arc<AtomicBool>,
    stats: Arc<ChurnStats>,
    timeout: Duration,
) {
    let mut k = i;
    // Spread the first connections over one lifetime.
    tokio::time::sleep(Duration::from_nanos(ws::rand_u64() % max_life_ns.max(1))).await;
    while !stop.load(Relaxed) {
        let t = k % topics.len();
        let life = max_life_ns / 4 + ws::rand_u64() % (max_life_ns * 3 / 4).max(1);
        let start = now_ns();
        let mut conn = match connect_join(&target, 4096, timeout, &topics.room(t)).await {
            Ok(c) => c,
            Err(_) => {
                stats.failures.fetch_add(1, Relaxed);
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        let mut alive = drain_until(&mut conn, start + life / 2).await;
        if alive {
            let t2 = (t + 1) % topics.len();
            let frames = format!(
                "{{\"type\":\"room.leave\",\"room\":\"{}\"}}",
                topics.room(t)
            );
            let join = format!(
                "{{\"type\":\"room.join\",\"room\":\"{}\"}}",
                topics.room(t2)
            );
            alive = conn.send_text(&frames).await.is_ok() && conn.send_text(&join).await.is_ok();
        }
        if alive {
            alive = drain_until(&mut conn, start + life).await;
        }
        if !alive && !stop.load(Relaxed) {
            stats.server_closed.fetch_add(1, Relaxed);
        }
        drop(conn);
        stats.cycles.fetch_add(1, Relaxed);
        k = k.wrapping_add(7);
    }
}

/// Least-squares slope of `ys` over `xs`.
fn slope(points: &[(f64, f64)]) -> Option<f64> {
    if points.len() < 2 {
        return None;
    }
    let n = points.len() as f64;
    let mx = points.iter().map(|p| p.0).sum::<f64>() / n;
    let my = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = points.iter().map(|p| (p.0 - mx) * (p.0 - mx)).sum();
    let sxy: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    (sxx > 0.0).then(|| sxy / sxx)
}

/// Runs the soak and returns its result line.
pub async fn run(a: SoakArgs) -> anyhow::Result<Value> {
    if a.stable == 0 || a.stable > 100_000 || a.churners > 100_000 {
        bail!("--stable must be 1..=100000 and --churners at most 100000");
    }
    if a.topics == 0 || a.topics > 10_000 {
        bail!("--topics must be 1..=10000");
    }
    if !(a.churn.is_finite() && a.churn > 0.0 && a.churn <= 10.0) {
        bail!("--churn must be in (0, 10]");
    }
    check_rate_payload(a.rate, a.payload)?;
    check_secs("duration", a.duration, 86_400.0)?;
    check_secs("drain", a.drain, 60.0)?;
    if !(a.sample.is_finite() && a.sample >= 0.1 && a.sample <= 3600.0) {
        bail!("--sample must be 0.1..=3600 seconds");
    }
    let target = a.common.target()?;
    let probe = ServerProbe::new(a.common.server_pid)?;
    crate::sys::ensure_nofile((a.stable + a.churners + 64) as u64)?;
    let timeout = a.common.timeout();
    let pid = a.common.server_pid.map(|p| p.to_string());
    let topics = Arc::new(Topics::new("soak", a.topics));

    // Stable subscribers.
    let mut stable = Vec::with_capacity(a.stable);
    let mut tasks = Vec::with_capacity(a.stable + a.churners + 1);
    for i in 0..a.stable {
        let t = i % a.topics;
        let conn = connect_join(&target, 16384, timeout, &topics.room(t))
            .await
            .with_context(|| format!("stable subscriber {i}"))?;
        let track = Arc::new(Track::new(t, topics.next_seq(t)));
        tasks.push(tokio::spawn(reader(conn, track.clone(), true)));
        stable.push(track);
    }
    eprintln!("{} stable subscribers joined", stable.len());

    let stop = Arc::new(AtomicBool::new(false));
    let churn_stop = Arc::new(AtomicBool::new(false));
    let publisher = tokio::spawn(publish_loop(
        target.clone(),
        topics.clone(),
        a.rate,
        a.payload,
        stop.clone(),
        timeout,
    ));
    let cstats = Arc::new(ChurnStats {
        cycles: AtomicU64::new(0),
        failures: AtomicU64::new(0),
        server_closed: AtomicU64::new(0),
    });
    let max_life_ns = (2e9 / a.churn) as u64;
    for i in 0..a.churners {
        tasks.push(tokio::spawn(churner(
            i,
            target.clone(),
            topics.clone(),
            max_life_ns,
            churn_stop.clone(),
            cstats.clone(),
            timeout,
        )));
    }

    // Samples.
    let t0 = now_ns();
    let cpu0 = probe.cpu();
    let mut bench_cpu = BenchCpu::start();
    let rss_before = probe.rss();
    let end = t0 + (a.duration * 1e9) as u64;
    let every = (a.sample * 1e9) as u64;
    let mut samples: Vec<Sample> = Vec::new();
    let mut next = t0;
    loop {
        sleep_until_ns(next.min(end)).await;
        let now = now_ns();
        let m = get_metrics(&target, timeout).await.ok();
        let get = |name| m.as_deref().and_then(|m| metric(m, name));
        let s = Sample {
            t_s: crate::round3((now - t0) as f64 / 1e9),
            rss_kib: pid.as_deref().and_then(crate::sys::rss_kib),
            threads: pid.as_deref().and_then(threads),
            connections: get("ori_connections"),
            connections_total: get("ori_connections_total"),
            slow_closes: get("ori_slow_consumer_closes_total"),
            churn_cycles: cstats.cycles.load(Relaxed),
        };
        eprintln!(
            "t={:6.0}s rss {:?} KiB threads {:?} connections {:?} cycles {}",
            s.t_s, s.rss_kib, s.threads, s.connections, s.churn_cycles
        );
        if samples.len() < 100_000 {
            samples.push(s);
        }
        if now >= end {
            break;
        }
        next += every;
    }
    let cpu1 = probe.cpu();
    bench_cpu.stop();

    churn_stop.store(true, Relaxed);
    stop.store(true, Relaxed);
    let pubs = tokio::time::timeout(timeout + Duration::from_secs(1), publisher)
        .await
        .map_err(|_| anyhow::anyhow!("the publisher did not stop in time"))??;
    let lost_now = || stable.iter().map(|t| t.loss_extra(&topics).0).sum::<u64>();
    let drain_end = now_ns() + (a.drain * 1e9) as u64;
    while lost_now() > 0 && now_ns() < drain_end {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (mut expected, mut received, mut lost, mut extra, mut disorder, mut with_loss) =
        (0, 0, 0, 0, 0, 0);
    let mut closed = 0u64;
    for t in &stable {
        expected += topics.expected(t.topic, t.from.load(Relaxed));
        received += t.received.load(Relaxed);
        let (l, x) = t.loss_extra(&topics);
        lost += l;
        extra += x;
        disorder += t.disorder.load(Relaxed);
        with_loss += u64::from(l > 0);
        closed += u64::from(t.closed.load(Relaxed) != 0);
    }
    for t in &tasks {
        t.abort();
    }
    // Let the aborted connections close, then one more sample.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let m = get_metrics(&target, timeout).await.ok();
    let connections_after = m.as_deref().and_then(|m| metric(m, "ori_connections"));
    let rss_after = probe.rss();

    let rss: Vec<(f64, f64)> = samples
        .iter()
        .filter_map(|s| Some((s.t_s / 60.0, s.rss_kib? as f64)))
        .collect();
    // The first tenth is warm-up (connections opening, buffers growing).
    let skip = rss.len() / 10;
    let mut out = Map::new();
    out.insert("mode".into(), json!("soak"));
    out.insert("stable".into(), json!(a.stable));
    out.insert("churners".into(), json!(a.churners));
    out.insert("churn_per_s".into(), json!(a.churn));
    out.insert("topics".into(), json!(a.topics));
    out.insert("rate".into(), json!(a.rate));
    out.insert("payload_bytes".into(), json!(a.payload));
    out.insert("duration_s".into(), json!(a.duration));
    out.insert("churn_cycles".into(), json!(cstats.cycles.load(Relaxed)));
    out.insert(
        "churn_connect_failures".into(),
        json!(cstats.failures.load(Relaxed)),
    );
    out.insert(
        "churn_closed_by_server".into(),
        json!(cstats.server_closed.load(Relaxed)),
    );
    out.insert("publishes".into(), json!(topics.total_ok()));
    out.insert("publish_errors".into(), json!(pubs.errors));
    out.insert("stable_expected".into(), json!(expected));
    out.insert("stable_received".into(), json!(received));
    out.insert("stable_lost".into(), json!(lost));
    out.insert("stable_extra".into(), json!(extra));
    out.insert("stable_out_of_order".into(), json!(disorder));
    out.insert("stable_with_loss".into(), json!(with_loss));
    out.insert("stable_closed_by_server".into(), json!(closed));
    crate::hist::merged_locals().summary_ms("stable_latency_", &mut out);
    if let (Some(first), Some(last)) = (rss.first(), rss.last()) {
        out.insert("server_rss_first_kib".into(), json!(first.1 as u64));
        out.insert("server_rss_last_kib".into(), json!(last.1 as u64));
        out.insert(
            "server_rss_max_kib".into(),
            json!(rss.iter().map(|p| p.1 as u64).max()),
        );
        out.insert(
            "server_rss_slope_kib_per_min".into(),
            json!(slope(&rss[skip..]).map(crate::round3)),
        );
    }
    let th: Vec<u64> = samples.iter().filter_map(|s| s.threads).collect();
    if let (Some(first), Some(last)) = (th.first(), th.last()) {
        out.insert("server_threads_first".into(), json!(first));
        out.insert("server_threads_last".into(), json!(last));
        out.insert("server_threads_max".into(), json!(th.iter().max()));
    }
    out.insert("server_connections_after".into(), json!(connections_after));
    probe.report(
        &mut out,
        cpu0,
        cpu1,
        rss_before,
        rss_after,
        a.duration.max(1e-3),
    );
    if let Some(e) = &pubs.last_error {
        out.insert("last_publish_error".into(), json!(e));
    }
    out.insert("samples".into(), json!(samples));
    bench_cpu.report(&mut out);
    Ok(Value::Object(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_lines() {
        let text = "# HELP ori_connections x\n# TYPE ori_connections gauge\nori_connections 12\nori_connections_total 40\n";
        assert_eq!(metric(text, "ori_connections"), Some(12));
        assert_eq!(metric(text, "ori_connections_total"), Some(40));
        assert_eq!(metric(text, "ori_missing"), None);
    }

    #[test]
    fn slope_of_a_line() {
        let pts: Vec<(f64, f64)> = (0..10).map(|i| (i as f64, 3.0 * i as f64 + 1.0)).collect();
        assert!((slope(&pts).unwrap() - 3.0).abs() < 1e-9);
        assert_eq!(slope(&pts[..1]), None);
    }
}
