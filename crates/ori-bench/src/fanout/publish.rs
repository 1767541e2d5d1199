//! The fan-out's HTTP publishers, on a thread of their own.
//!
//! They run on a current-thread runtime on a separate OS thread rather than
//! among the subscribers. On the subscribers' runtime a response waits in
//! the same run queue as every subscriber woken by the publish it answers
//! (a thousand of them for one topic), so the next request went out only
//! after those reads: the publishers then measured the generator's backlog,
//! not the server. On their own thread the kernel wakes them when the
//! response arrives, and with `--max` the next request follows at once.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use crate::hist::Histogram;
use crate::http::HttpConn;
use crate::stamp::encode_publish;
use crate::sys::now_ns;
use crate::target::Target;

/// What one publisher did.
#[derive(Default)]
pub struct PubResult {
    /// 2xx publishes per topic.
    pub per_topic: Vec<u64>,
    /// 2xx publishes stamped inside the measured window.
    pub in_window: u64,
    pub errors: u64,
    pub last_error: Option<String>,
    /// Time from a request's send to its response (any status) or its
    /// failure, for the requests sent inside the measured window: what a
    /// publishing client waits, backpressure included.
    pub response: Histogram,
}

/// The settings every publisher shares.
#[derive(Clone)]
pub struct PubConfig {
    pub target: Target,
    pub publishers: usize,
    pub topics: usize,
    /// Topic names are `<topic_prefix>-<n>`.
    pub topic_prefix: String,
    /// Total publishes per second; `None` = as fast as possible.
    pub rate: Option<f64>,
    pub payload: usize,
    pub warmup_ns: u64,
    pub duration_ns: u64,
    pub timeout: Duration,
}

/// When publishing starts, the measured window begins and publishing stops
/// (`now_ns` time), fixed once the publishers are connected.
#[derive(Clone, Copy)]
pub struct Schedule {
    pub start_ns: u64,
    pub window_start_ns: u64,
    pub stop_ns: u64,
}

/// The running publisher thread.
pub struct Publishers {
    done: tokio::sync::oneshot::Receiver<Vec<PubResult>>,
    thread: std::thread::JoinHandle<()>,
}

/// Starts the publisher thread: it connects the K keep-alive connections
/// and fixes the schedule (publishing starts 20 ms later). Returns once
/// they are connected, or the first connection error.
pub async fn start(
    cfg: PubConfig,
    published: Arc<AtomicU64>,
) -> anyhow::Result<(Publishers, Schedule)> {
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let (done_tx, done) = tokio::sync::oneshot::channel();
    let thread = std::thread::Builder::new()
        .name("publishers".into())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(r) => r,
                Err(e) => {
                    let _ = ready_tx.send(Err(anyhow::Error::from(e)));
                    return;
                }
            };
            runtime.block_on(async move {
                let mut conns = Vec::with_capacity(cfg.publishers);
                for _ in 0..cfg.publishers {
                    match HttpConn::connect(&cfg.target, cfg.timeout).await {
                        Ok(c) => conns.push(c),
                        Err(e) => {
                            let _ = ready_tx.send(Err(e));
                            return;
                        }
                    }
                }
                let start_ns = now_ns() + 20_000_000;
                let window_start_ns = start_ns + cfg.warmup_ns;
                let schedule = Schedule {
                    start_ns,
                    window_start_ns,
                    stop_ns: window_start_ns + cfg.duration_ns,
                };
                if ready_tx.send(Ok(schedule)).is_err() {
                    return;
                }
                let tasks: Vec<_> = conns
                    .into_iter()
                    .enumerate()
                    .map(|(index, conn)| {
                        tokio::spawn(publisher(
                            cfg.clone(),
                            schedule,
                            index,
                            conn,
                            published.clone(),
                        ))
                    })
                    .collect();
                let mut results = Vec::with_capacity(tasks.len());
                for t in tasks {
                    results.push(t.await.unwrap_or_else(|e| PubResult {
                        errors: 1,
                        last_error: Some(format!("publisher task failed: {e}")),
                        ..Default::default()
                    }));
                }
                let _ = done_tx.send(results);
            });
        })?;
    let schedule = ready_rx
        .await
        .map_err(|_| anyhow::anyhow!("the publisher thread ended before connecting"))??;
    Ok((Publishers { done, thread }, schedule))
}

impl Publishers {
    /// Waits (at most `limit`) for the publishers to stop, and returns what
    /// each did.
    pub async fn finish(self, limit: Duration) -> anyhow::Result<Vec<PubResult>> {
        let results = tokio::time::timeout(limit, self.done)
            .await
            .map_err(|_| anyhow::anyhow!("the publishers did not stop in time"))?
            .map_err(|_| anyhow::anyhow!("the publisher thread failed"))?;
        let _ = self.thread.join();
        Ok(results)
    }
}

/// One keep-alive publisher: requests round-robin over the topics, one in
/// flight, until the schedule's stop time.
async fn publisher(
    cfg: PubConfig,
    schedule: Schedule,
    index: usize,
    conn: HttpConn,
    published: Arc<AtomicU64>,
) -> PubResult {
    let mut res = PubResult {
        per_topic: vec![0; cfg.topics],
        ..Default::default()
    };
    let prefixes: Vec<Vec<u8>> = (0..cfg.topics)
        .map(|t| {
            format!(
                "POST /api/notify/{}-{t} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: ",
                cfg.topic_prefix, cfg.target.host_header
            )
            .into_bytes()
        })
        .collect();
    // Per-publisher rate; publisher i runs i/K of an interval behind
    // publisher 0, so that the K publishers together send evenly spaced
    // publishes rather than K at once (a burst queues each publish's
    // deliveries behind the others' and adds to the latency).
    let rate = cfg.rate.map(|r| r / cfg.publishers as f64);
    let phase = index as f64 / cfg.publishers as f64;
    let mut conn = Some(conn);
    let mut body: Vec<u8> = Vec::with_capacity(cfg.payload + 64);
    let mut req: Vec<u8> = Vec::with_capacity(cfg.payload + 256);
    let mut topic = index % cfg.topics;
    let mut count: u64 = 0;
    let mut attempts: u64 = 0;
    let mut consecutive_errors = 0u32;
    loop {
        let now = now_ns();
        if now >= schedule.stop_ns {
            break;
        }
        if let Some(rate) = rate {
            // Send what is due; sleep until the next one is.
            let due_ns = schedule.start_ns + ((attempts as f64 + phase) * 1e9 / rate) as u64;
            if due_ns > now {
                let wait = (due_ns - now).min(schedule.stop_ns - now);
                tokio::time::sleep(Duration::from_nanos(wait)).await;
                continue;
            }
        } else if now < schedule.start_ns {
            tokio::time::sleep(Duration::from_nanos(schedule.start_ns - now)).await;
            continue;
        }
        attempts += 1;
        let Some(c) = conn.as_mut() else {
            match HttpConn::connect(&cfg.target, cfg.timeout).await {
                Ok(c) => conn = Some(c),
                Err(e) => {
                    res.errors += 1;
                    res.last_error = Some(format!("{e:#}"));
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
            continue;
        };
        let seq = count * cfg.publishers as u64 + index as u64;
        let sent = now_ns();
        encode_publish(
            &mut req,
            &mut body,
            &prefixes[topic],
            seq,
            sent,
            cfg.payload,
        );
        let answer = c.request(&req, cfg.timeout).await;
        if sent >= schedule.window_start_ns {
            // Failures too (a timeout counts as its full wait): leaving
            // them out would flatter the tail exactly under backpressure.
            res.response.record(now_ns().saturating_sub(sent));
        }
        match answer {
            Ok(200..=299) => {
                res.per_topic[topic] += 1;
                count += 1;
                consecutive_errors = 0;
                published.fetch_add(1, Relaxed);
                if sent >= schedule.window_start_ns {
                    res.in_window += 1;
                }
                if c.closed {
                    conn = None;
                }
            }
            Ok(status) => {
                res.errors += 1;
                consecutive_errors += 1;
                res.last_error = Some(format!(
                    "HTTP {status} from POST /api/notify/{}-{topic}",
                    cfg.topic_prefix
                ));
                if c.closed {
                    conn = None;
                }
            }
            Err(e) => {
                res.errors += 1;
                consecutive_errors += 1;
                res.last_error = Some(format!("{e:#}"));
                conn = None;
            }
        }
        if consecutive_errors > 0 {
            // Back off a little so a broken server is not hammered.
            tokio::time::sleep(Duration::from_millis(
                u64::from(consecutive_errors.min(20)) * 5,
            ))
            .await;
        }
        topic += 1;
        if topic == cfg.topics {
            topic = 0;
        }
    }
    res
}
