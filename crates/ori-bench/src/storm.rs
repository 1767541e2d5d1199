//! `storm`: N subscribers over T topics, a steady sequenced publisher; then
//! every client disconnects and reconnects within a window, rejoins, and
//! must receive every message published after its rejoin was acknowledged
//! (what "acknowledged" means, and the numbering: `sequenced`).

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::bail;
use serde_json::{json, Map, Value};
use tokio::sync::{watch, Semaphore};

use crate::common::{check_rate_payload, check_secs};
use crate::common::{BenchCpu, Common, ServerProbe};
use crate::hist::Histogram;
use crate::sampler::Sampler;
use crate::sequenced::{connect_join, publish_loop, reader, Topics, Track};
use crate::sys::{now_ns, sleep_until_ns};
use crate::target::Target;

/// Options of `ori-bench storm`.
#[derive(Debug, clap::Args)]
pub struct StormArgs {
    #[command(flatten)]
    common: Common,
    /// WebSocket subscriber connections.
    #[arg(long, default_value_t = 10_000)]
    subscribers: usize,
    /// Topics `storm-0` .. `storm-<T-1>`; subscriber i joins `storm-<i % T>`.
    #[arg(long, default_value_t = 10)]
    topics: usize,
    /// Publishes per second (one keep-alive HTTP publisher, topics in turn).
    #[arg(long, default_value_t = 100.0)]
    rate: f64,
    /// Length of the notification text in bytes (at least the
    /// `<seq>:<send_ns>:` prefix).
    #[arg(long, default_value_t = 64)]
    payload: usize,
    /// Seconds of publishing before the storm.
    #[arg(long, default_value_t = 2.0)]
    before: f64,
    /// Seconds over which all clients disconnect and reconnect (client i
    /// drops its connection at `i * window / N`).
    #[arg(long, default_value_t = 3.0)]
    window: f64,
    /// Seconds of publishing after the last client rejoined.
    #[arg(long, default_value_t = 5.0)]
    after: f64,
    /// Seconds to wait for outstanding deliveries after publishing stops.
    #[arg(long, default_value_t = 5.0)]
    drain: f64,
    /// Connections being opened at once during the initial connect (the
    /// storm itself is paced by --window only).
    #[arg(long, default_value_t = 500)]
    connect_concurrency: usize,
    /// Attempts per reconnect before the client counts as failed.
    #[arg(long, default_value_t = 5)]
    attempts: u32,
    /// Initial read buffer per subscriber, bytes.
    #[arg(long, default_value_t = 4096)]
    read_buffer: usize,
}

/// One client's state, shared with the main task.
struct Client {
    /// The subscription after the rejoin (None until acknowledged).
    after: Mutex<Option<Arc<Track>>>,
    /// Disconnect-to-acknowledgement time of the rejoin, ns.
    rejoin_ns: AtomicU64,
    /// `now_ns` of the rejoin's acknowledgement.
    acked_at: AtomicU64,
    /// Reconnect attempts that failed (before a success or giving up).
    retries: AtomicU32,
}

struct Shared {
    target: Target,
    topics: Arc<Topics>,
    timeout: Duration,
    buf: usize,
    n: usize,
    window_ns: u64,
    attempts: u32,
    connected: AtomicUsize,
    rejoined: AtomicUsize,
    failed_initial: AtomicUsize,
    failed_rejoin: AtomicUsize,
    first_error: Mutex<Option<String>>,
    sem: Semaphore,
}

async fn storm_client(
    i: usize,
    client: Arc<Client>,
    sh: Arc<Shared>,
    mut storm_at: watch::Receiver<u64>,
) {
    let topic = i % sh.topics.len();
    let room = sh.topics.room(topic);
    let conn = {
        let Ok(_permit) = sh.sem.acquire().await else {
            return;
        };
        match connect_join(&sh.target, sh.buf, sh.timeout, &room).await {
            Ok(c) => c,
            Err(e) => {
                crate::common::record_failure(&sh.failed_initial, &sh.first_error, &e);
                return;
            }
        }
    };
    let before = Arc::new(Track::new(topic, sh.topics.next_seq(topic)));
    sh.connected.fetch_add(1, Relaxed);
    // Read until this client's turn in the storm.
    let start = match storm_at.wait_for(|&t| t != 0).await {
        Ok(t) => *t,
        Err(_) => return,
    };
    let at = start + (i as u64 * sh.window_ns) / sh.n.max(1) as u64;
    tokio::select! {
        _ = reader(conn, before, false) => {}
        _ = sleep_until_ns(at) => {}
    }
    // The connection was dropped with the reader: reconnect and rejoin.
    let t0 = now_ns();
    let mut last_err = None;
    for attempt in 0..sh.attempts.max(1) {
        match connect_join(&sh.target, sh.buf, sh.timeout, &room).await {
            Ok(conn) => {
                let t1 = now_ns();
                let track = Arc::new(Track::new(topic, sh.topics.next_seq(topic)));
                client.rejoin_ns.store(t1 - t0, Relaxed);
                client.acked_at.store(t1, Relaxed);
                *client.after.lock().unwrap_or_else(|e| e.into_inner()) = Some(track.clone());
                sh.rejoined.fetch_add(1, Relaxed);
                reader(conn, track, false).await;
                return;
            }
            Err(e) => {
                client.retries.fetch_add(1, Relaxed);
                last_err = Some(e);
                tokio::time::sleep(Duration::from_millis(50 * u64::from(attempt + 1))).await;
            }
        }
    }
    if let Some(e) = last_err {
        crate::common::record_failure(&sh.failed_rejoin, &sh.first_error, &e);
    }
}

/// Runs the reconnect storm and returns its result line.
pub async fn run(a: StormArgs) -> anyhow::Result<Value> {
    if a.subscribers == 0 || a.subscribers > 200_000 {
        bail!("--subscribers must be 1..=200000");
    }
    if a.topics == 0 || a.topics > 10_000 {
        bail!("--topics must be 1..=10000");
    }
    check_rate_payload(a.rate, a.payload)?;
    check_secs("before", a.before, 600.0)?;
    check_secs("window", a.window, 600.0)?;
    check_secs("after", a.after, 600.0)?;
    check_secs("drain", a.drain, 60.0)?;
    if a.attempts == 0 || a.attempts > 100 {
        bail!("--attempts must be 1..=100");
    }
    let target = a.common.target()?;
    let probe = ServerProbe::new(a.common.server_pid)?;
    // A client drops its connection before it reconnects: one descriptor each.
    crate::sys::ensure_nofile((a.subscribers + 64) as u64)?;
    let timeout = a.common.timeout();
    let rss_before = probe.rss();
    let sampler = Sampler::start(a.common.server_pid, Duration::from_millis(200), 5);

    let topics = Arc::new(Topics::new("storm", a.topics));
    let sh = Arc::new(Shared {
        target: target.clone(),
        topics: topics.clone(),
        timeout,
        buf: a.read_buffer.clamp(256, 1 << 24),
        n: a.subscribers,
        window_ns: (a.window * 1e9) as u64,
        attempts: a.attempts,
        connected: AtomicUsize::new(0),
        rejoined: AtomicUsize::new(0),
        failed_initial: AtomicUsize::new(0),
        failed_rejoin: AtomicUsize::new(0),
        first_error: Mutex::new(None),
        sem: Semaphore::new(a.connect_concurrency.clamp(1, 10_000)),
    });
    let (storm_tx, storm_rx) = watch::channel(0u64);
    let clients: Vec<Arc<Client>> = (0..a.subscribers)
        .map(|_| {
            Arc::new(Client {
                after: Mutex::new(None),
                rejoin_ns: AtomicU64::new(0),
                acked_at: AtomicU64::new(0),
                retries: AtomicU32::new(0),
            })
        })
        .collect();
    let tasks: Vec<_> = clients
        .iter()
        .enumerate()
        .map(|(i, c)| tokio::spawn(storm_client(i, c.clone(), sh.clone(), storm_rx.clone())))
        .collect();

    // Initial connect (bounded by the hang guard).
    let t_connect = now_ns();
    let guard = t_connect + (timeout.as_nanos() as u64) * 4 + a.subscribers as u64 * 5_000_000;
    loop {
        let done = sh.connected.load(Relaxed) + sh.failed_initial.load(Relaxed);
        if done >= a.subscribers || now_ns() > guard {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let connect_s = (now_ns() - t_connect) as f64 / 1e9;
    let connected = sh.connected.load(Relaxed);
    eprintln!("{connected} subscribers joined in {connect_s:.2}s");
    if connected == 0 {
        for t in &tasks {
            t.abort();
        }
        bail!(
            "no subscriber could join; first error: {}",
            sh.first_error
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone()
                .unwrap_or_default()
        );
    }

    // Publisher.
    let stop = Arc::new(AtomicBool::new(false));
    let publisher = tokio::spawn(publish_loop(
        target.clone(),
        topics.clone(),
        a.rate,
        a.payload,
        stop.clone(),
        timeout,
    ));
    tokio::time::sleep(Duration::from_secs_f64(a.before)).await;

    // The storm.
    let cpu0 = probe.cpu();
    let mut bench_cpu = BenchCpu::start();
    let storm_start = now_ns() + 10_000_000;
    storm_tx.send_replace(storm_start);
    let guard = storm_start
        + (a.window * 1e9) as u64
        + (timeout.as_nanos() as u64) * u64::from(a.attempts) * 2
        + 30_000_000_000;
    loop {
        let done = sh.rejoined.load(Relaxed) + sh.failed_rejoin.load(Relaxed);
        if done >= connected || now_ns() > guard {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let storm_end = clients
        .iter()
        .map(|c| c.acked_at.load(Relaxed))
        .max()
        .unwrap_or(storm_start);
    let reconnect_s = storm_end.saturating_sub(storm_start) as f64 / 1e9;
    eprintln!(
        "{} clients rejoined within {reconnect_s:.2}s of the storm's start",
        sh.rejoined.load(Relaxed)
    );
    let cpu1 = probe.cpu();
    bench_cpu.stop();

    tokio::time::sleep(Duration::from_secs_f64(a.after)).await;
    stop.store(true, Relaxed);
    let pubs = tokio::time::timeout(timeout + Duration::from_secs(1), publisher)
        .await
        .map_err(|_| anyhow::anyhow!("the publisher did not stop in time"))??;

    // Drain.
    let tracks: Vec<Arc<Track>> = clients
        .iter()
        .filter_map(|c| c.after.lock().unwrap_or_else(|e| e.into_inner()).clone())
        .collect();
    let lost_now =
        |tracks: &[Arc<Track>]| tracks.iter().map(|t| t.loss_extra(&topics).0).sum::<u64>();
    let drain_end = now_ns() + (a.drain * 1e9) as u64;
    while lost_now(&tracks) > 0 && now_ns() < drain_end {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for t in &tasks {
        t.abort();
    }
    let rss_after = probe.rss();

    let mut rejoin = Histogram::new();
    let mut retries = 0u64;
    for c in &clients {
        let ns = c.rejoin_ns.load(Relaxed);
        if ns > 0 {
            rejoin.record(ns);
        }
        retries += u64::from(c.retries.load(Relaxed));
    }
    let (mut expected, mut received, mut lost, mut extra, mut disorder) = (0, 0, 0, 0, 0);
    let (mut with_loss, mut closed) = (0u64, 0u64);
    let mut worst: Option<(u64, u64, u64)> = None;
    for t in &tracks {
        let exp = topics.expected(t.topic, t.from.load(Relaxed));
        let got = t.received.load(Relaxed);
        expected += exp;
        received += got;
        let (l, x) = t.loss_extra(&topics);
        lost += l;
        extra += x;
        disorder += t.disorder.load(Relaxed);
        if l > 0 {
            with_loss += 1;
            if worst.is_none_or(|w| l > w.2) {
                worst = Some((exp, got, l));
            }
        }
        if t.closed.load(Relaxed) != 0 {
            closed += 1;
        }
    }

    let mut out = Map::new();
    out.insert("mode".into(), json!("storm"));
    out.insert("subscribers".into(), json!(a.subscribers));
    out.insert("subscribers_joined".into(), json!(connected));
    out.insert("topics".into(), json!(a.topics));
    out.insert("rate".into(), json!(a.rate));
    out.insert("payload_bytes".into(), json!(a.payload));
    out.insert("window_s".into(), json!(a.window));
    out.insert("connect_s".into(), json!(crate::round3(connect_s)));
    out.insert("rejoined".into(), json!(tracks.len()));
    out.insert(
        "rejoin_failed".into(),
        json!(sh.failed_rejoin.load(Relaxed)),
    );
    out.insert("reconnect_retries".into(), json!(retries));
    out.insert("reconnect_s".into(), json!(crate::round3(reconnect_s)));
    rejoin.summary_ms("rejoin_", &mut out);
    out.insert("publishes".into(), json!(topics.total_ok()));
    out.insert("publish_errors".into(), json!(pubs.errors));
    out.insert("expected_after_rejoin".into(), json!(expected));
    out.insert("received_after_rejoin".into(), json!(received));
    out.insert("lost".into(), json!(lost));
    out.insert("extra".into(), json!(extra));
    out.insert("out_of_order".into(), json!(disorder));
    out.insert("subscribers_with_loss".into(), json!(with_loss));
    out.insert("subscribers_closed_by_server".into(), json!(closed));
    if let Some((e, g, l)) = worst {
        out.insert(
            "worst_subscriber".into(),
            json!({"expected": e, "received": g, "lost": l}),
        );
    }
    probe.report(
        &mut out,
        cpu0,
        cpu1,
        rss_before,
        rss_after,
        reconnect_s.max(1e-3),
    );
    if let Some(e) = &pubs.last_error {
        out.insert("last_publish_error".into(), json!(e));
    }
    if let Some(e) = sh
        .first_error
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone()
    {
        out.insert("first_connect_error".into(), json!(e));
    }
    sampler.finish(&mut out);
    bench_cpu.report(&mut out);
    Ok(Value::Object(out))
}
