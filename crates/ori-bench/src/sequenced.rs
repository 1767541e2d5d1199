//! The pieces `storm`, `slow` and `soak` share: the sequenced publisher
//! ([`Topics`], [`publish_loop`]), the join with its acknowledgement
//! ([`connect_join`]) and the delivery-checking reader ([`Track`],
//! [`reader`]).
//!
//! "Acknowledged" follows PROTOCOL.md: a successful `room.join` has no reply,
//! so the client sends `2` after it and waits for `3`; the server handles a
//! connection's frames in order, so the `3` proves the join took effect.
//! Each topic's publishes are numbered when the request is started; a
//! client reads the topic's counter after the `3`, and every successful
//! publish numbered from there on was sent after the join took effect, so
//! it must arrive.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::http::HttpConn;
use crate::stamp::{encode_publish, parse_seq_stamp};
use crate::sys::now_ns;
use crate::target::Target;
use crate::ws::{self, WsConn};

/// The numbered publishes of each topic.
pub(crate) struct Topics {
    /// The room name prefix (`<prefix>-<t>`).
    pub prefix: String,
    /// Per topic: publishes started so far (the next sequence number).
    started: Vec<AtomicU64>,
    /// Per topic: sequence numbers whose publish failed (no 2xx).
    failed: Mutex<Vec<Vec<u64>>>,
}

impl Topics {
    /// `n` topics named `<prefix>-0` ...
    pub fn new(prefix: &str, n: usize) -> Self {
        Self {
            prefix: prefix.to_owned(),
            started: (0..n).map(|_| AtomicU64::new(0)).collect(),
            failed: Mutex::new(vec![Vec::new(); n]),
        }
    }

    /// Number of topics.
    pub fn len(&self) -> usize {
        self.started.len()
    }

    /// The room name of topic `t`.
    pub fn room(&self, t: usize) -> String {
        format!("{}-{t}", self.prefix)
    }

    /// The next sequence number of topic `t` (read after a join's
    /// acknowledgement: the first one the subscriber must receive).
    pub fn next_seq(&self, t: usize) -> u64 {
        self.started[t].load(Relaxed)
    }

    /// Successful publishes of topic `t` numbered `from` or later.
    pub fn expected(&self, t: usize, from: u64) -> u64 {
        let end = self.started[t].load(Relaxed);
        if from >= end {
            return 0;
        }
        let failed = self.failed.lock().unwrap_or_else(|e| e.into_inner());
        let bad = failed[t].iter().filter(|&&s| s >= from).count() as u64;
        (end - from).saturating_sub(bad)
    }

    /// Successful publishes over all topics.
    pub fn total_ok(&self) -> u64 {
        (0..self.len()).map(|t| self.expected(t, 0)).sum()
    }
}

/// What the publisher did.
#[derive(Default, Debug)]
pub(crate) struct PubStats {
    pub ok: u64,
    pub errors: u64,
    pub last_error: Option<String>,
}

/// Publishes `{"message":"<seq>:<send_ns>:xxx"}` to the topics in turn at
/// `rate` per second until `stop` is set. Every loop iteration either sleeps
/// until the next publish is due or sends one request (bounded by `timeout`).
pub(crate) async fn publish_loop(
    target: Target,
    topics: Arc<Topics>,
    rate: f64,
    payload: usize,
    stop: Arc<AtomicBool>,
    timeout: Duration,
) -> PubStats {
    let mut res = PubStats::default();
    let prefixes: Vec<Vec<u8>> = (0..topics.len())
        .map(|t| {
            format!(
                "POST /api/notify/{} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: ",
                topics.room(t),
                target.host_header
            )
            .into_bytes()
        })
        .collect();
    let mut body: Vec<u8> = Vec::with_capacity(payload + 64);
    let mut req: Vec<u8> = Vec::with_capacity(payload + 256);
    let mut conn: Option<HttpConn> = None;
    let start = now_ns();
    let mut attempts: u64 = 0;
    let mut topic = 0usize;
    while !stop.load(Relaxed) {
        let now = now_ns();
        let due = start + (attempts as f64 * 1e9 / rate) as u64;
        if due > now {
            tokio::time::sleep(Duration::from_nanos((due - now).min(50_000_000))).await;
            continue;
        }
        attempts += 1;
        let c = match conn.as_mut() {
            Some(c) => c,
            None => match HttpConn::connect(&target, timeout).await {
                Ok(c) => conn.insert(c),
                Err(e) => {
                    res.errors += 1;
                    res.last_error = Some(format!("{e:#}"));
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let seq = topics.started[topic].fetch_add(1, Relaxed);
        encode_publish(
            &mut req,
            &mut body,
            &prefixes[topic],
            seq,
            now_ns(),
            payload,
        );
        let ok = match c.request(&req, timeout).await {
            Ok(200..=299) => {
                if c.closed {
                    conn = None;
                }
                true
            }
            Ok(status) => {
                res.last_error = Some(format!("HTTP {status}"));
                if c.closed {
                    conn = None;
                }
                false
            }
            Err(e) => {
                res.last_error = Some(format!("{e:#}"));
                conn = None;
                false
            }
        };
        if ok {
            res.ok += 1;
        } else {
            res.errors += 1;
            topics.failed.lock().unwrap_or_else(|e| e.into_inner())[topic].push(seq);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        topic = (topic + 1) % topics.len();
    }
    res
}

/// Connects, joins `room`, and waits for the `3` that acknowledges the join.
pub(crate) async fn connect_join(
    target: &Target,
    buf: usize,
    timeout: Duration,
    room: &str,
) -> anyhow::Result<WsConn> {
    let mut conn = WsConn::connect(target, buf, timeout).await?;
    conn.send_text(&format!("{{\"type\":\"room.join\",\"room\":\"{room}\"}}"))
        .await?;
    conn.ping_roundtrip(timeout).await?;
    Ok(conn)
}

/// One subscription's delivery counters (updated once per read batch).
pub(crate) struct Track {
    /// The topic index.
    pub topic: usize,
    /// The first sequence number it must receive (`u64::MAX` until set).
    pub from: AtomicU64,
    /// Distinct notifications numbered `from` or later (in order).
    pub received: AtomicU64,
    /// Notifications numbered `from` or later that came out of order or
    /// twice.
    pub disorder: AtomicU64,
    /// 0 while open; the close code, or 1 for end of stream / read error.
    pub closed: AtomicU32,
}

impl Track {
    /// A subscription of topic `topic` that must receive from `from` on.
    pub fn new(topic: usize, from: u64) -> Self {
        Self {
            topic,
            from: AtomicU64::new(from),
            received: AtomicU64::new(0),
            disorder: AtomicU64::new(0),
            closed: AtomicU32::new(0),
        }
    }

    /// Expected minus received, and received minus expected, for it.
    pub fn loss_extra(&self, topics: &Topics) -> (u64, u64) {
        let exp = topics.expected(self.topic, self.from.load(Relaxed));
        let got = self.received.load(Relaxed);
        (exp.saturating_sub(got), got.saturating_sub(exp))
    }
}

/// Reads notifications until the connection ends (or the task is dropped).
/// With `latency`, records publish-to-delivery times in this thread's
/// histogram ([`crate::hist::with_local`]). No allocation per frame.
pub(crate) async fn reader(mut conn: WsConn, track: Arc<Track>, latency: bool) {
    let from = track.from.load(Relaxed);
    let mut last: Option<u64> = None;
    let mut need_fill = true;
    let mut now = 0;
    loop {
        if need_fill {
            match conn.fill().await {
                Ok(0) | Err(_) => {
                    track.closed.store(1, Relaxed);
                    return;
                }
                Ok(_) => {}
            }
            if latency {
                now = now_ns();
            }
        }
        let (mut got, mut disorder) = (0u64, 0u64);
        let mut ping = None;
        let mut close = None;
        let mut error = false;
        crate::hist::with_local(|h| loop {
            match conn.next_frame() {
                Ok(Some(f)) => match f.op {
                    ws::OP_TEXT => {
                        if let Some((seq, sent)) = parse_seq_stamp(conn.payload(&f)) {
                            if seq >= from {
                                if last.is_none_or(|l| seq > l) {
                                    got += 1;
                                    last = Some(seq);
                                    if latency {
                                        h.record(now.saturating_sub(sent));
                                    }
                                } else {
                                    disorder += 1;
                                }
                            }
                        }
                    }
                    ws::OP_PING => {
                        ping = Some(f);
                        break;
                    }
                    ws::OP_CLOSE => {
                        close = Some(conn.close_code(&f));
                        break;
                    }
                    _ => {}
                },
                Ok(None) => break,
                Err(_) => {
                    error = true;
                    break;
                }
            }
        });
        if got > 0 {
            track.received.fetch_add(got, Relaxed);
        }
        if disorder > 0 {
            track.disorder.fetch_add(disorder, Relaxed);
        }
        if error {
            track.closed.store(1, Relaxed);
            return;
        }
        if let Some(code) = close {
            track.closed.store(u32::from(code.max(2)), Relaxed);
            let _ = conn.send(ws::OP_CLOSE, &code.to_be_bytes()).await;
            return;
        }
        if let Some(f) = ping {
            if conn.pong(&f).await.is_err() {
                track.closed.store(1, Relaxed);
                return;
            }
            need_fill = false;
        } else {
            need_fill = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expected_skips_failed_publishes() {
        let t = Topics::new("x", 2);
        t.started[0].store(10, Relaxed);
        t.failed.lock().unwrap()[0].extend([2, 7]);
        assert_eq!(t.expected(0, 0), 8);
        assert_eq!(t.expected(0, 5), 4);
        assert_eq!(t.expected(0, 10), 0);
        assert_eq!(t.expected(1, 0), 0);
        assert_eq!(t.total_ok(), 8);
    }
}
