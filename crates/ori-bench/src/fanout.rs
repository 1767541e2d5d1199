//! `fanout`: N subscribers over T topics, K HTTP publishers; measures
//! deliveries per second, losses and publish-to-delivery latency.

mod publish;
mod server_lag;
mod subscribe;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::bail;
use serde_json::{json, Map, Value};
use tokio::task::JoinHandle;

use crate::common::{BenchCpu, Common, ServerProbe};
use crate::hist;
use crate::sys::{now_ns, sleep_until_ns};
use crate::target::Target;
use crate::ws::WsConn;
use publish::PubConfig;
use subscribe::{subscriber, SubStats, Window};

/// Options of `ori-bench fanout`.
#[derive(Debug, clap::Args)]
pub struct FanoutArgs {
    #[command(flatten)]
    common: Common,
    /// WebSocket subscriber connections.
    #[arg(long, default_value_t = 100)]
    subscribers: usize,
    /// Topics `<prefix>-0` .. `<prefix>-<T-1>`; subscriber i joins
    /// `<prefix>-<i % T>`.
    #[arg(long, default_value_t = 1)]
    topics: usize,
    /// The topics' prefix (letters, digits, `_` and `.`): two runs at once
    /// with different prefixes use different topics.
    #[arg(long, default_value = "bench")]
    topic_prefix: String,
    /// HTTP publisher connections (keep-alive, one request in flight each).
    #[arg(long, default_value_t = 1)]
    publishers: usize,
    /// Publish to this server instead of `--url` (another instance of a
    /// multi-instance deployment, to measure cross-instance delivery).
    /// Loopback only, as `--url`.
    #[arg(long)]
    publish_url: Option<String>,
    /// Total publishes per second, spread over the publishers.
    #[arg(long, required_unless_present = "max", conflicts_with = "max")]
    rate: Option<f64>,
    /// Publish as fast as the publishers can (each waits for its response).
    #[arg(long)]
    max: bool,
    /// Measured seconds (after the warm-up).
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Seconds of publishing before measuring starts.
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// Length of the notification's `message` text in bytes (at least the
    /// `<seq>:<send_time_ns>:` prefix).
    #[arg(long, default_value_t = 64)]
    payload: usize,
    /// Seconds to wait for outstanding deliveries after publishing stops.
    #[arg(long, default_value_t = 2.0)]
    drain: f64,
    /// Subscriber connections being opened at once.
    #[arg(long, default_value_t = 200)]
    connect_concurrency: usize,
    /// Initial read buffer per subscriber, bytes (grows for larger frames).
    #[arg(long, default_value_t = 16384)]
    read_buffer: usize,
    /// Join with positions (`"recover": true`, PROTOCOL.md section 8): the
    /// notifications then arrive as `room.message` envelopes (the server
    /// needs history, e.g. `ori-demo --history N`).
    #[arg(long)]
    recover: bool,
}

struct Sub {
    topic: usize,
    stats: Arc<SubStats>,
    task: JoinHandle<()>,
}

/// Runs the fan-out benchmark and returns its result line.
pub async fn run(args: FanoutArgs) -> anyhow::Result<Value> {
    let a = &args;
    if a.subscribers == 0 || a.subscribers > 1_000_000 {
        bail!("--subscribers must be 1..=1000000");
    }
    if a.topics == 0 || a.topics > 100_000 {
        bail!("--topics must be 1..=100000");
    }
    let prefix = &a.topic_prefix;
    if prefix.is_empty()
        || prefix.len() > 64
        || prefix.starts_with("__")
        || !prefix
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.')
    {
        bail!(
            "--topic-prefix must be 1 to 64 letters, digits, '_' or '.', \
             not starting with \"__\" (reserved topics)"
        );
    }
    if a.publishers == 0 || a.publishers > 1024 {
        bail!("--publishers must be 1..=1024");
    }
    if !(a.duration > 0.0 && a.duration <= 3600.0) {
        bail!("--duration must be in (0, 3600] seconds");
    }
    if !(0.0..=600.0).contains(&a.warmup) || !(0.0..=60.0).contains(&a.drain) {
        bail!("--warmup must be 0..=600 and --drain 0..=60 seconds");
    }
    if a.payload > 1_000_000 {
        bail!("--payload must be at most 1000000 bytes (the demo's body limit is 1 MiB)");
    }
    if let Some(r) = a.rate {
        if !(r > 0.0 && r <= 10_000_000.0) {
            bail!("--rate must be in (0, 1e7]");
        }
    }
    let target = a.common.target()?;
    let probe = ServerProbe::new(a.common.server_pid)?;
    crate::sys::ensure_nofile((a.subscribers + a.publishers + 64) as u64)?;
    let timeout = a.common.timeout();
    let rss_before = probe.rss();

    // Subscribers: connect, join, prove the join with a 2/3 round trip.
    let window = Arc::new(Window {
        start: AtomicU64::new(u64::MAX),
        end: AtomicU64::new(u64::MAX),
    });
    let t_connect = now_ns();
    let next = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(AtomicUsize::new(0));
    let first_error: Arc<Mutex<Option<String>>> = Arc::default();
    let subs: Arc<Mutex<Vec<Sub>>> = Arc::new(Mutex::new(Vec::with_capacity(a.subscribers)));
    let mut workers = Vec::new();
    for _ in 0..a.connect_concurrency.clamp(1, 10_000).min(a.subscribers) {
        let (target, next, failures, first_error, subs, window) = (
            target.clone(),
            next.clone(),
            failures.clone(),
            first_error.clone(),
            subs.clone(),
            window.clone(),
        );
        let (n, topics, buf) = (a.subscribers, a.topics, a.read_buffer.clamp(256, 1 << 24));
        let extra = if a.recover { ",\"recover\":true" } else { "" };
        let prefix = a.topic_prefix.clone();
        workers.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Relaxed);
                if i >= n || failures.load(Relaxed) > 100 {
                    break;
                }
                let topic = i % topics;
                let setup = async {
                    let mut conn = WsConn::connect(&target, buf, timeout).await?;
                    conn.send_text(&format!(
                        "{{\"type\":\"room.join\",\"room\":\"{prefix}-{topic}\"{extra}}}"
                    ))
                    .await?;
                    conn.ping_roundtrip(timeout).await?;
                    anyhow::Ok(conn)
                };
                match setup.await {
                    Ok(conn) => {
                        let stats = Arc::new(SubStats::default());
                        let task = tokio::spawn(subscriber(conn, stats.clone(), window.clone()));
                        let mut subs = subs.lock().unwrap_or_else(|e| e.into_inner());
                        subs.push(Sub { topic, stats, task });
                        if subs.len() % 1000 == 0 {
                            eprintln!("{} subscribers joined", subs.len());
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
    let subs = std::mem::take(&mut *subs.lock().unwrap_or_else(|e| e.into_inner()));
    let failed = failures.load(Relaxed);
    let first_error = first_error
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    if failed > 100 || subs.is_empty() {
        for s in &subs {
            s.task.abort();
        }
        bail!(
            "{failed} subscriber connections failed; first error: {}",
            first_error.unwrap_or_default()
        );
    }
    if failed > 0 {
        eprintln!(
            "warning: {failed} subscribers failed to connect; first error: {}",
            first_error.as_deref().unwrap_or("")
        );
    }
    let connect_s = (now_ns() - t_connect) as f64 / 1e9;
    eprintln!("{} subscribers joined in {connect_s:.2}s", subs.len());
    let mut subs_per_topic = vec![0u64; a.topics];
    for s in &subs {
        subs_per_topic[s.topic] += 1;
    }

    // Publishers.
    let pub_target = match &a.publish_url {
        Some(url) => Target::parse(url, &a.common.ws_path, a.common.token.clone())?,
        None => target.clone(),
    };
    let published = Arc::new(AtomicU64::new(0));
    let (publishers, schedule) = publish::start(
        PubConfig {
            target: pub_target,
            publishers: a.publishers,
            topics: a.topics,
            topic_prefix: a.topic_prefix.clone(),
            rate: a.rate,
            payload: a.payload,
            warmup_ns: (a.warmup * 1e9) as u64,
            duration_ns: (a.duration * 1e9) as u64,
            timeout,
        },
        published.clone(),
    )
    .await?;
    let (window_start_ns, stop_ns) = (schedule.window_start_ns, schedule.stop_ns);
    window.start.store(window_start_ns, Relaxed);
    window.end.store(stop_ns, Relaxed);

    let received = |subs: &[Sub]| {
        subs.iter()
            .map(|s| s.stats.received.load(Relaxed))
            .sum::<u64>()
    };
    sleep_until_ns(window_start_ns).await;
    let cpu0 = probe.cpu();
    let mut bench_cpu = BenchCpu::start().with_extra_threads(1);
    let lag_before = server_lag::read(&target, timeout).await;
    let (mut last_pub, mut last_recv, mut last_t) =
        (published.load(Relaxed), received(&subs), now_ns());
    while now_ns() < stop_ns {
        sleep_until_ns((now_ns() + 1_000_000_000).min(stop_ns)).await;
        let (p, r, t) = (published.load(Relaxed), received(&subs), now_ns());
        let dt = (t - last_t) as f64 / 1e9;
        if dt > 0.05 {
            eprintln!(
                "t={:5.1}s  publishes/s {:9.0}  deliveries/s {:11.0}",
                (t - window_start_ns) as f64 / 1e9,
                (p - last_pub) as f64 / dt,
                (r - last_recv) as f64 / dt
            );
        }
        (last_pub, last_recv, last_t) = (p, r, t);
    }
    let cpu1 = probe.cpu();
    bench_cpu.stop();
    let rss_after = probe.rss();
    let lag_after = server_lag::read(&target, timeout).await;

    let mut per_topic = vec![0u64; a.topics];
    let (mut pub_in_window, mut pub_errors, mut pub_last_error) = (0, 0, None);
    let mut response = hist::Histogram::new();
    for r in publishers.finish(timeout + Duration::from_secs(2)).await? {
        response.merge(&r.response);
        for (t, n) in r.per_topic.iter().enumerate() {
            per_topic[t] += n;
        }
        pub_in_window += r.in_window;
        pub_errors += r.errors;
        if r.last_error.is_some() {
            pub_last_error = r.last_error;
        }
    }
    let expected: u64 = per_topic
        .iter()
        .zip(&subs_per_topic)
        .map(|(p, s)| p * s)
        .sum();

    // Drain: wait until everything arrived, or the drain period is over.
    let drain_start = now_ns();
    let drain_end = drain_start + (a.drain * 1e9) as u64;
    while received(&subs) < expected && now_ns() < drain_end {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let drain_s = (now_ns() - drain_start) as f64 / 1e9;
    for s in &subs {
        s.task.abort();
    }

    let mut recv_per_topic = vec![0u64; a.topics];
    let (mut deliveries, mut in_window, mut other) = (0u64, 0u64, 0u64);
    let mut wire_bytes = 0u64;
    let mut closes: BTreeMap<u32, u64> = BTreeMap::new();
    for s in &subs {
        let r = s.stats.received.load(Relaxed);
        recv_per_topic[s.topic] += r;
        deliveries += r;
        wire_bytes += s.stats.wire_bytes.load(Relaxed);
        in_window += s.stats.in_window.load(Relaxed);
        other += s.stats.other.load(Relaxed);
        let c = s.stats.closed.load(Relaxed);
        if c != 0 {
            *closes.entry(c).or_default() += 1;
        }
    }
    let (mut lost, mut extra) = (0u64, 0u64);
    for t in 0..a.topics {
        let exp = per_topic[t] * subs_per_topic[t];
        lost += exp.saturating_sub(recv_per_topic[t]);
        extra += recv_per_topic[t].saturating_sub(exp);
    }
    let latency = hist::merged_locals();

    let mut out = Map::new();
    out.insert("mode".into(), json!("fanout"));
    out.insert("subscribers".into(), json!(subs.len()));
    out.insert("subscribers_failed".into(), json!(failed));
    out.insert("topics".into(), json!(a.topics));
    out.insert("publishers".into(), json!(a.publishers));
    if let Some(url) = &a.publish_url {
        out.insert("publish_url".into(), json!(url));
    }
    out.insert("target_rate".into(), json!(a.rate));
    out.insert("payload_bytes".into(), json!(a.payload));
    out.insert("warmup_s".into(), json!(a.warmup));
    out.insert("duration_s".into(), json!(a.duration));
    out.insert("connect_s".into(), json!(crate::round3(connect_s)));
    out.insert("publishes".into(), json!(per_topic.iter().sum::<u64>()));
    out.insert("publish_errors".into(), json!(pub_errors));
    out.insert(
        "publishes_per_s".into(),
        json!(crate::round3(pub_in_window as f64 / a.duration)),
    );
    out.insert("deliveries".into(), json!(deliveries));
    out.insert("compression".into(), json!(a.common.compression));
    out.insert(
        "wire_bytes_per_delivery".into(),
        json!(crate::round3(wire_bytes as f64 / deliveries.max(1) as f64)),
    );
    out.insert(
        "deliveries_per_s".into(),
        json!(crate::round3(in_window as f64 / a.duration)),
    );
    out.insert("expected".into(), json!(expected));
    out.insert("lost".into(), json!(lost));
    out.insert("extra".into(), json!(extra));
    out.insert("recover".into(), json!(a.recover));
    out.insert("other_frames".into(), json!(other));
    out.insert(
        "subscribers_closed".into(),
        Value::Object(
            closes
                .iter()
                .map(|(c, n)| (close_name(*c), json!(n)))
                .collect(),
        ),
    );
    out.insert("drain_s".into(), json!(crate::round3(drain_s)));
    latency.summary_ms("latency_", &mut out);
    response.summary_ms("publish_response_", &mut out);
    probe.report(&mut out, cpu0, cpu1, rss_before, rss_after, a.duration);
    if let (Some(c0), Some(c1)) = (cpu0, cpu1) {
        if in_window > 0 {
            out.insert(
                "server_cpu_us_per_delivery".into(),
                json!(crate::round3((c1 - c0) * 1e6 / in_window as f64)),
            );
        }
    }
    bench_cpu.report(&mut out);
    server_lag::report(lag_before, lag_after, &mut out);
    if let Some(e) = pub_last_error {
        out.insert("last_publish_error".into(), json!(e));
    }
    if let Some(e) = first_error {
        out.insert("first_connect_error".into(), json!(e));
    }
    Ok(Value::Object(out))
}

fn close_name(code: u32) -> String {
    match code {
        1 => "eof".into(),
        c => c.to_string(),
    }
}
