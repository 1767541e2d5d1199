//! `slow`: S clients that join and then never read (a small receive buffer,
//! the socket left open), F clients that read, one steady publisher to the
//! topic they all joined. The fast clients must lose nothing; the server
//! should close the slow ones with 1013 once their outbound queue exceeds
//! its limit, and its memory should stay bounded.
//!
//! A slow client can only see its close frame by reading: at the end every
//! slow socket's backlog is read to find it (or the end of the stream), and
//! the server's `ori_slow_consumer_closes_total` counter is compared before
//! and after.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use serde_json::{json, Map, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::common::{check_rate_payload, check_secs};
use crate::common::{BenchCpu, Common, ServerProbe};
use crate::sampler::Sampler;
use crate::sequenced::{connect_join, publish_loop, reader, Topics, Track};
use crate::soak::{get_metrics, metric};
use crate::sys::now_ns;
use crate::target::Target;
use crate::ws;

/// Options of `ori-bench slow`.
#[derive(Debug, clap::Args)]
pub struct SlowArgs {
    #[command(flatten)]
    common: Common,
    /// Clients that join and never read.
    #[arg(long, default_value_t = 100)]
    slow: usize,
    /// Clients that read everything.
    #[arg(long, default_value_t = 1000)]
    fast: usize,
    /// Publishes per second to the one topic all clients joined.
    #[arg(long, default_value_t = 100.0)]
    rate: f64,
    /// Length of the notification text in bytes.
    #[arg(long, default_value_t = 4096)]
    payload: usize,
    /// Seconds of publishing.
    #[arg(long, default_value_t = 30.0)]
    duration: f64,
    /// Seconds to wait for the fast clients' outstanding deliveries.
    #[arg(long, default_value_t = 5.0)]
    drain: f64,
    /// SO_RCVBUF of the slow clients' sockets, bytes (the kernel may round
    /// it up).
    #[arg(long, default_value_t = 4096)]
    slow_rcvbuf: u32,
}

/// What reading a slow socket's backlog at the end found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Fate {
    /// A close frame with this code.
    Close(u16),
    /// End of stream without a close frame.
    Eof,
    /// Connection reset.
    Reset,
    /// Still open: no end of stream after the backlog.
    Open,
}

impl Fate {
    fn name(self) -> String {
        match self {
            Fate::Close(c) => format!("close_{c}"),
            Fate::Eof => "eof_without_close".into(),
            Fate::Reset => "reset".into(),
            Fate::Open => "still_open".into(),
        }
    }
}

/// Connects with a small receive buffer, upgrades, joins `room`, and from
/// then on reads nothing.
async fn slow_client(
    target: &Target,
    rcvbuf: u32,
    room: &str,
    timeout: Duration,
) -> anyhow::Result<TcpStream> {
    tokio::time::timeout(timeout, async {
        let sock = if target.addr.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        sock.set_recv_buffer_size(rcvbuf)?;
        let mut s = sock.connect(target.addr).await?;
        s.set_nodelay(true)?;
        let mut req = format!(
            "GET {} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n",
            target.ws_path, target.host_header
        );
        if let Some(token) = &target.token {
            req.push_str(&format!("Authorization: Bearer {token}\r\n"));
        }
        req.push_str("\r\n");
        s.write_all(req.as_bytes()).await?;
        // Read the response head byte by byte: nothing after it is read.
        let mut head = Vec::with_capacity(256);
        let mut b = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            if head.len() > 8192 || s.read(&mut b).await? == 0 {
                bail!("bad upgrade response");
            }
            head.push(b[0]);
        }
        if !head.starts_with(b"HTTP/1.1 101") {
            bail!("upgrade refused");
        }
        let mut frame = Vec::with_capacity(64);
        ws::encode_client_frame(
            &mut frame,
            ws::OP_TEXT,
            format!("{{\"type\":\"room.join\",\"room\":\"{room}\"}}").as_bytes(),
        );
        s.write_all(&frame).await?;
        anyhow::Ok(s)
    })
    .await
    .map_err(|_| anyhow::anyhow!("slow client setup timed out"))?
}

/// Reads a slow socket's backlog to its end (or until `idle` passes with
/// nothing to read) and reports the first close frame. Bytes read are
/// counted; frames are parsed as they stream by (one reusable buffer).
async fn read_backlog(mut s: TcpStream, idle: Duration) -> (Fate, u64) {
    let mut buf = vec![0u8; 1 << 16];
    let (mut start, mut end) = (0usize, 0usize);
    let mut total = 0u64;
    loop {
        // Parse complete frames.
        loop {
            let avail = &buf[start..end];
            if avail.len() < 2 {
                break;
            }
            let (hdr, len) = match avail[1] & 0x7f {
                126 if avail.len() >= 4 => {
                    (4, usize::from(u16::from_be_bytes([avail[2], avail[3]])))
                }
                127 if avail.len() >= 10 => {
                    let mut b = [0u8; 8];
                    b.copy_from_slice(&avail[2..10]);
                    (10, u64::from_be_bytes(b).min(1 << 30) as usize)
                }
                126 | 127 => break,
                n => (2, usize::from(n)),
            };
            if avail[0] & 0x0f == ws::OP_CLOSE {
                if avail.len() < hdr + len {
                    break;
                }
                let code = if len >= 2 {
                    u16::from_be_bytes([avail[hdr], avail[hdr + 1]])
                } else {
                    1005
                };
                return (Fate::Close(code), total);
            }
            if avail.len() >= hdr + len {
                start += hdr + len;
            } else {
                // Skip the payload as it streams by; keep only the header
                // if the frame is larger than the buffer.
                if hdr + len > buf.len() {
                    let skip = avail.len() - hdr;
                    let rest = len - skip;
                    // Re-encode a header for the remaining payload bytes.
                    let (h, l) = encode_len(rest);
                    buf[..h].copy_from_slice(&l[..h]);
                    buf[0] = 0x82;
                    start = 0;
                    end = h;
                }
                break;
            }
        }
        if start == end {
            start = 0;
            end = 0;
        } else if start > 0 {
            buf.copy_within(start..end, 0);
            end -= start;
            start = 0;
        }
        match tokio::time::timeout(idle, s.read(&mut buf[end..])).await {
            Err(_) => return (Fate::Open, total),
            Ok(Ok(0)) => return (Fate::Eof, total),
            Ok(Err(_)) => return (Fate::Reset, total),
            Ok(Ok(n)) => {
                end += n;
                total += n as u64;
            }
        }
    }
}

/// A server frame header (FIN + binary) announcing `len` payload bytes.
fn encode_len(len: usize) -> (usize, [u8; 10]) {
    let mut h = [0u8; 10];
    h[0] = 0x82;
    if len < 126 {
        h[1] = len as u8;
        (2, h)
    } else if len <= 0xFFFF {
        h[1] = 126;
        h[2..4].copy_from_slice(&(len as u16).to_be_bytes());
        (4, h)
    } else {
        h[1] = 127;
        h[2..10].copy_from_slice(&(len as u64).to_be_bytes());
        (10, h)
    }
}

/// Runs the slow-consumer run and returns its result line.
pub async fn run(a: SlowArgs) -> anyhow::Result<Value> {
    if a.slow > 100_000 || a.fast == 0 || a.fast > 100_000 {
        bail!("--slow must be at most 100000 and --fast 1..=100000");
    }
    check_rate_payload(a.rate, a.payload)?;
    check_secs("duration", a.duration, 3600.0)?;
    check_secs("drain", a.drain, 60.0)?;
    let target = a.common.target()?;
    let probe = ServerProbe::new(a.common.server_pid)?;
    crate::sys::ensure_nofile((a.slow + a.fast + 64) as u64)?;
    let timeout = a.common.timeout();
    let topics = Arc::new(Topics::new("slow", 1));
    let room = topics.room(0);
    let closes_before = get_metrics(&target, timeout)
        .await
        .ok()
        .and_then(|m| metric(&m, "ori_slow_consumer_closes_total"));
    let rss_before = probe.rss();
    let sampler = Sampler::start(a.common.server_pid, Duration::from_millis(500), 2);

    let mut slow = Vec::with_capacity(a.slow);
    for i in 0..a.slow {
        slow.push(
            slow_client(&target, a.slow_rcvbuf.max(1), &room, timeout)
                .await
                .with_context(|| format!("slow client {i}"))?,
        );
    }
    let mut fast = Vec::with_capacity(a.fast);
    let mut tasks = Vec::with_capacity(a.fast);
    for i in 0..a.fast {
        let conn = connect_join(&target, 65536, timeout, &room)
            .await
            .with_context(|| format!("fast client {i}"))?;
        let track = Arc::new(Track::new(0, topics.next_seq(0)));
        tasks.push(tokio::spawn(reader(conn, track.clone(), true)));
        fast.push(track);
    }
    eprintln!("{} slow and {} fast clients joined", slow.len(), fast.len());

    let stop = Arc::new(AtomicBool::new(false));
    let cpu0 = probe.cpu();
    let mut bench_cpu = BenchCpu::start();
    let t0 = now_ns();
    let publisher = tokio::spawn(publish_loop(
        target.clone(),
        topics.clone(),
        a.rate,
        a.payload,
        stop.clone(),
        timeout,
    ));
    let mut last = 0;
    while now_ns() < t0 + (a.duration * 1e9) as u64 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let got: u64 = fast.iter().map(|t| t.received.load(Relaxed)).sum();
        let closes = get_metrics(&target, timeout)
            .await
            .ok()
            .and_then(|m| metric(&m, "ori_slow_consumer_closes_total"));
        eprintln!(
            "t={:5.1}s fast deliveries/s {:9} slow-consumer closes {:?}",
            (now_ns() - t0) as f64 / 1e9,
            got - last,
            closes
        );
        last = got;
    }
    stop.store(true, Relaxed);
    let pubs = tokio::time::timeout(timeout + Duration::from_secs(1), publisher)
        .await
        .map_err(|_| anyhow::anyhow!("the publisher did not stop in time"))??;
    let cpu1 = probe.cpu();
    bench_cpu.stop();
    let secs = (now_ns() - t0) as f64 / 1e9;
    let lost_now = || fast.iter().map(|t| t.loss_extra(&topics).0).sum::<u64>();
    let drain_end = now_ns() + (a.drain * 1e9) as u64;
    while lost_now() > 0 && now_ns() < drain_end {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (mut expected, mut received, mut lost, mut with_loss, mut closed) = (0, 0, 0, 0, 0);
    for t in &fast {
        expected += topics.expected(0, t.from.load(Relaxed));
        received += t.received.load(Relaxed);
        let (l, _) = t.loss_extra(&topics);
        lost += l;
        with_loss += u64::from(l > 0);
        closed += u64::from(t.closed.load(Relaxed) != 0);
    }
    let latency = crate::hist::merged_locals();
    for t in &tasks {
        t.abort();
    }
    let closes_after = get_metrics(&target, timeout)
        .await
        .ok()
        .and_then(|m| metric(&m, "ori_slow_consumer_closes_total"));
    let rss_end = probe.rss();

    // The slow clients' fates, read concurrently.
    let readers: Vec<_> = slow
        .into_iter()
        .map(|s| tokio::spawn(read_backlog(s, Duration::from_secs(2))))
        .collect();
    let mut fates: BTreeMap<Fate, u64> = BTreeMap::new();
    let mut backlog = 0u64;
    for r in readers {
        let (fate, bytes) = r.await?;
        *fates.entry(fate).or_default() += 1;
        backlog += bytes;
    }

    let mut out = Map::new();
    out.insert("mode".into(), json!("slow"));
    out.insert("slow".into(), json!(a.slow));
    out.insert("fast".into(), json!(a.fast));
    out.insert("rate".into(), json!(a.rate));
    out.insert("payload_bytes".into(), json!(a.payload));
    out.insert("duration_s".into(), json!(a.duration));
    out.insert("slow_rcvbuf".into(), json!(a.slow_rcvbuf));
    out.insert("publishes".into(), json!(topics.total_ok()));
    out.insert("publish_errors".into(), json!(pubs.errors));
    out.insert("fast_expected".into(), json!(expected));
    out.insert("fast_received".into(), json!(received));
    out.insert("fast_lost".into(), json!(lost));
    out.insert("fast_with_loss".into(), json!(with_loss));
    out.insert("fast_closed_by_server".into(), json!(closed));
    latency.summary_ms("fast_latency_", &mut out);
    out.insert(
        "slow_fates".into(),
        Value::Object(fates.iter().map(|(f, n)| (f.name(), json!(n))).collect()),
    );
    out.insert("slow_backlog_bytes".into(), json!(backlog));
    if let (Some(b), Some(c)) = (closes_before, closes_after) {
        out.insert(
            "server_slow_consumer_closes".into(),
            json!(c.saturating_sub(b)),
        );
    }
    probe.report(&mut out, cpu0, cpu1, rss_before, rss_end, secs);
    if let Some(e) = &pubs.last_error {
        out.insert("last_publish_error".into(), json!(e));
    }
    sampler.finish(&mut out);
    bench_cpu.report(&mut out);
    Ok(Value::Object(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn length_headers() {
        assert_eq!(encode_len(5).0, 2);
        assert_eq!(encode_len(300).0, 4);
        assert_eq!(encode_len(70_000).0, 10);
        let (_, h) = encode_len(300);
        assert_eq!(u16::from_be_bytes([h[2], h[3]]), 300);
    }
}
