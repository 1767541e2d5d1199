//! The fan-out's subscribers: read notifications, count them, and record
//! the latency of the ones stamped inside the measured window.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use crate::hist;
use crate::stamp::StampParser;
use crate::sys::now_ns;
use crate::ws::{self, WsConn};

/// Counters of one subscriber, updated once per read batch.
#[derive(Default)]
pub struct SubStats {
    pub received: AtomicU64,
    pub in_window: AtomicU64,
    pub other: AtomicU64,
    /// 0 while open; the close code, or 1 for end of stream / read error.
    pub closed: AtomicU32,
    /// Bytes of data frames read so far (what the wire carried).
    pub wire_bytes: AtomicU64,
}

/// The measurement window in `now_ns` time, set once publishing starts.
pub struct Window {
    pub start: AtomicU64,
    pub end: AtomicU64,
}

enum Event {
    None,
    Ping(ws::FrameRef),
    Close(u16),
    Error,
}

/// Reads notifications until the connection ends (or the task is aborted
/// at the end of the run). One clock read per read batch.
pub async fn subscriber(mut conn: WsConn, stats: Arc<SubStats>, window: Arc<Window>) {
    let mut need_fill = true;
    let mut stamps = StampParser::default();
    let (mut now, mut w_start, mut w_end) = (0, u64::MAX, u64::MAX);
    loop {
        if need_fill {
            match conn.fill().await {
                Ok(0) | Err(_) => {
                    stats.closed.store(1, Relaxed);
                    return;
                }
                Ok(_) => {}
            }
            now = now_ns();
            w_start = window.start.load(Relaxed);
            w_end = window.end.load(Relaxed);
        }
        let (mut got, mut other) = (0u64, 0u64);
        let event = hist::with_local(|h| loop {
            match conn.next_frame() {
                Ok(Some(f)) => match f.op {
                    ws::OP_TEXT | ws::OP_BINARY => {
                        match stamps.parse(conn.payload(&f)).map(|(_, sent)| sent) {
                            Some(sent) => {
                                got += 1;
                                if sent >= w_start && sent < w_end {
                                    h.record(now.saturating_sub(sent));
                                }
                            }
                            None => other += 1,
                        }
                    }
                    ws::OP_PING => break Event::Ping(f),
                    ws::OP_CLOSE => break Event::Close(conn.close_code(&f)),
                    _ => {}
                },
                Ok(None) => break Event::None,
                Err(_) => break Event::Error,
            }
        });
        if got > 0 {
            stats.wire_bytes.store(conn.wire_bytes, Relaxed);
            stats.received.fetch_add(got, Relaxed);
            if now >= w_start && now < w_end {
                stats.in_window.fetch_add(got, Relaxed);
            }
        }
        if other > 0 {
            stats.other.fetch_add(other, Relaxed);
        }
        match event {
            Event::None => need_fill = true,
            Event::Ping(f) => {
                if conn.pong(&f).await.is_err() {
                    stats.closed.store(1, Relaxed);
                    return;
                }
                need_fill = false;
            }
            Event::Close(code) => {
                stats.closed.store(u32::from(code.max(2)), Relaxed);
                let _ = conn.send(ws::OP_CLOSE, &code.to_be_bytes()).await;
                return;
            }
            Event::Error => {
                stats.closed.store(1, Relaxed);
                return;
            }
        }
    }
}
