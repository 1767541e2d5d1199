//! The task that owns one connection: decodes incoming frames and runs the
//! handlers in arrival order, writes queued frames in batches, pings quiet
//! peers, and performs the closing handshake.
//!
//! One task per connection keeps an idle connection small: no read buffer
//! is held between reads (bytes are read into a stack scratch buffer and
//! only a partial frame is kept), and the outbound queue is empty.

use std::collections::VecDeque;
use std::future::{poll_fn, Future};
use std::io::{self, IoSlice};
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use ori_core::codec::{self, close_code, Decoder, Frame, OpCode};
use ori_core::{Message, Outbox, OutboxStatus};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::sync::Notify;
use tokio::time::Instant;

use super::conn::ReadyState;
use super::handlers::guarded;
use super::upgrade::{Upgrading, WsRuntime};
use super::Conn;
use crate::router::{Admission, ConnectionGuards};

const SCRATCH: usize = 8 * 1024;
const MAX_IOV: usize = 64;

/// Counts running tasks so a shutdown can wait for them.
#[derive(Default)]
pub(crate) struct Tracker {
    count: AtomicUsize,
    idle: Notify,
}

pub(crate) struct TrackerGuard(Arc<Tracker>);

impl Tracker {
    pub(crate) fn enter(self: &Arc<Self>) -> TrackerGuard {
        self.count.fetch_add(1, Ordering::AcqRel);
        TrackerGuard(self.clone())
    }

    pub(crate) fn count(&self) -> usize {
        self.count.load(Ordering::Acquire)
    }

    pub(crate) async fn wait_idle(&self) {
        loop {
            let notified = self.idle.notified();
            let mut notified = pin!(notified);
            notified.as_mut().enable();
            if self.count() == 0 {
                return;
            }
            notified.await;
        }
    }
}

impl Drop for TrackerGuard {
    fn drop(&mut self) {
        if self.0.count.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

/// What a flush achieved.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Flushed {
    /// Everything queued is written; `drained` if the socket pushed back
    /// on the way.
    Open { drained: bool },
    /// Our close frame is written.
    CloseSent { code: u16, reason: String },
}

struct Writer<'a, W> {
    io: W,
    outbox: &'a Outbox,
    metrics: &'a ori_core::HubMetrics,
    pending: VecDeque<Bytes>,
    /// Bytes of `pending[0]` already written.
    offset: usize,
    blocked: bool,
    close_sent: Option<(u16, String)>,
}

impl<'a, W: AsyncWrite + Unpin + Send> Writer<'a, W> {
    /// Waits until there is something to write, then writes it. Cancel-safe:
    /// partially written state lives in `self`.
    async fn flush_when_notified(&mut self) -> io::Result<Flushed> {
        if let Some((code, reason)) = &self.close_sent {
            let (code, reason) = (*code, reason.clone());
            std::future::pending::<()>().await;
            return Ok(Flushed::CloseSent { code, reason });
        }
        if self.pending.is_empty() {
            self.outbox.notified().await;
        }
        self.flush().await
    }

    /// Writes everything queued (and the close frame, if one is due).
    async fn flush(&mut self) -> io::Result<Flushed> {
        loop {
            let status = self.outbox.take(&mut self.pending);
            let close = match status {
                OutboxStatus::Open => None,
                OutboxStatus::Closing { code, reason } => Some((code, reason)),
                OutboxStatus::Overflowed => {
                    // Drop what the peer has not started to receive; a frame
                    // already partly on the wire must be finished, or the
                    // close frame would land inside it.
                    if self.offset > 0 {
                        self.pending.truncate(1);
                        self.write_pending().await?;
                    } else {
                        self.pending.clear();
                    }
                    Some((close_code::TRY_AGAIN_LATER, "Slow consumer".to_owned()))
                }
            };
            if !self.pending.is_empty() {
                self.write_pending().await?;
                continue;
            }
            if let Some((code, reason)) = close {
                self.pending.push_back(codec::encode_close(code, &reason));
                self.write_pending().await?;
                self.close_sent = Some((code, reason.clone()));
                return Ok(Flushed::CloseSent { code, reason });
            }
            if self.pending.capacity() > 64 {
                self.pending = VecDeque::new();
            }
            let drained = std::mem::take(&mut self.blocked);
            return Ok(Flushed::Open { drained });
        }
    }

    async fn write_pending(&mut self) -> io::Result<()> {
        while !self.pending.is_empty() {
            let Self {
                io,
                pending,
                offset,
                blocked,
                ..
            } = self;
            let n = poll_fn(|cx| {
                let mut slices = [IoSlice::new(&[]); MAX_IOV];
                let mut count = 0;
                for (i, frame) in pending.iter().take(MAX_IOV).enumerate() {
                    let start = if i == 0 { *offset } else { 0 };
                    slices[i] = IoSlice::new(&frame[start..]);
                    count += 1;
                }
                let polled = Pin::new(&mut *io).poll_write_vectored(cx, &slices[..count]);
                if polled.is_pending() {
                    *blocked = true;
                }
                polled
            })
            .await?;
            if n == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            self.advance(n);
        }
        poll_fn(|cx| Pin::new(&mut self.io).poll_flush(cx)).await
    }

    fn advance(&mut self, mut n: usize) {
        self.outbox.written(n);
        let mut frames = 0u64;
        while n > 0 {
            let Some(front) = self.pending.front() else {
                break;
            };
            let left = front.len() - self.offset;
            if n >= left {
                n -= left;
                self.offset = 0;
                self.pending.pop_front();
                frames += 1;
            } else {
                self.offset += n;
                n = 0;
            }
        }
        self.metrics.frames_out.fetch_add(frames, Ordering::Relaxed);
    }

    /// Runs `fut` (a handler) to completion while writing whatever it and
    /// others queue meanwhile, so a slow handler never stalls delivery.
    async fn while_running(&mut self, fut: impl Future<Output = ()>) -> io::Result<()> {
        let mut fut = pin!(fut);
        loop {
            tokio::select! {
                biased;
                () = &mut fut => return Ok(()),
                flushed = self.flush_when_notified() => {
                    if let Err(e) = flushed {
                        fut.await;
                        return Err(e);
                    }
                }
            }
        }
    }
}

/// Reads what is available into `buf`: into its spare capacity when a large
/// frame is expected, otherwise through a stack scratch buffer so an idle
/// connection holds no read buffer.
async fn read_some<R: AsyncRead + Unpin>(reader: &mut R, buf: &mut BytesMut) -> io::Result<usize> {
    if buf.capacity() - buf.len() >= SCRATCH {
        return reader.read_buf(buf).await;
    }
    poll_fn(|cx| {
        let mut scratch = [0u8; SCRATCH];
        let mut rb = ReadBuf::new(&mut scratch);
        match Pin::new(&mut *reader).poll_read(cx, &mut rb) {
            Poll::Ready(Ok(())) => {
                buf.extend_from_slice(rb.filled());
                Poll::Ready(Ok(rb.filled().len()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    })
    .await
}

/// How the connection ended, for the close handler.
struct End {
    code: u16,
    reason: String,
}

impl End {
    fn abnormal() -> Self {
        Self {
            code: close_code::ABNORMAL,
            reason: String::new(),
        }
    }
}

/// Drives one accepted connection until it closes.
pub(crate) async fn run<D, R, W>(
    rt: Arc<WsRuntime<D>>,
    conn: Conn<D>,
    mut reader: R,
    writer: W,
    leftover: Bytes,
) where
    D: Send + Sync + 'static,
    R: AsyncRead + Unpin + Send,
    W: AsyncWrite + Unpin + Send,
{
    // The connection counts as upgrading (for the connection limit) until
    // it is registered in the hub or refused.
    let upgrading = Upgrading(&rt.upgrading);
    let id = conn.id();
    let provider = conn.inner.provider.clone();
    let hub = provider.hub();
    let limits = &rt.limits;
    let mut out = Writer {
        io: writer,
        outbox: &conn.inner.outbox,
        metrics: hub.metrics(),
        pending: VecDeque::new(),
        offset: 0,
        blocked: false,
        close_sent: None,
    };
    let mut inbuf = BytesMut::from(&leftover[..]);
    let mut decoder = Decoder::new(codec::Limits {
        max_frame_size: limits.max_frame_size,
        max_message_size: limits.max_message_size,
        max_fragments: limits.max_fragments,
    });

    // Connection guards run before the connection joins anything.
    let states = match rt.routers.admit(&conn).await {
        Admission::Accepted(states) => states,
        refused => {
            let (code, reason) = match refused {
                Admission::Failed(e) => {
                    tracing::warn!(socket = %id, error = %e, "connection guard failed");
                    (close_code::INTERNAL_ERROR, "Connection guard failed")
                }
                _ => (close_code::POLICY_VIOLATION, "Connection rejected by guard"),
            };
            drop(upgrading);
            conn.close(code, reason);
            if out.flush().await.is_ok() {
                await_peer_close(&mut reader, &mut inbuf, &mut decoder, limits.close_timeout).await;
            }
            conn.inner.outbox.shut();
            conn.set_state(ReadyState::Closed);
            return;
        }
    };

    provider.register(conn.inner.outbox.clone(), limits.max_topics_per_connection);
    drop(upgrading);
    conn.set_state(ReadyState::Open);
    if rt.shutting_down() {
        conn.close(close_code::GOING_AWAY, "Server shutting down");
    }
    tracing::debug!(socket = %id, remote = ?conn.remote_addr(), "connection opened");

    let mut end = None;
    if let Some(open) = &rt.handlers.open {
        if out
            .while_running(guarded("open", id, open(conn.clone())))
            .await
            .is_err()
        {
            end = Some(End::abnormal());
        }
    }

    let tick = limits
        .ping_interval
        .unwrap_or(limits.idle_timeout)
        .min(limits.idle_timeout)
        .max(Duration::from_millis(10));
    let mut last_seen = Instant::now();
    let mut ping_sent = false;
    let mut timer = pin!(tokio::time::sleep(tick));

    // Bytes that arrived with the upgrade request are decoded before waiting.
    let mut skip_wait = !inbuf.is_empty();
    let end = match end {
        Some(end) => end,
        None => 'conn: loop {
            if !std::mem::take(&mut skip_wait) {
                tokio::select! {
                    biased;
                    flushed = out.flush_when_notified() => match flushed {
                        Ok(Flushed::Open { drained }) => {
                            if drained {
                                if let Some(drain) = &rt.handlers.drain {
                                    if out.while_running(guarded("drain", id, drain(conn.clone()))).await.is_err() {
                                        break 'conn End::abnormal();
                                    }
                                }
                            }
                        }
                        Ok(Flushed::CloseSent { code, reason }) => {
                            conn.set_state(ReadyState::Closing);
                            await_peer_close(&mut reader, &mut inbuf, &mut decoder, limits.close_timeout).await;
                            break 'conn End { code, reason };
                        }
                        Err(_) => break 'conn End::abnormal(),
                    },
                    read = read_some(&mut reader, &mut inbuf) => match read {
                        Ok(0) | Err(_) => break 'conn End::abnormal(),
                        Ok(_) => {
                            last_seen = Instant::now();
                            ping_sent = false;
                        }
                    },
                    () = &mut timer => {
                        let quiet = last_seen.elapsed();
                        if quiet >= limits.idle_timeout {
                            conn.close(close_code::GOING_AWAY, "Idle timeout");
                        } else if limits.ping_interval.is_some_and(|p| quiet >= p) && !ping_sent {
                            out.outbox.push(codec::encode_frame(OpCode::Ping, b""));
                            ping_sent = true;
                        }
                        timer.as_mut().reset(Instant::now() + tick);
                        continue 'conn;
                    }
                }
            }

            // Decode and dispatch everything complete in the buffer.
            loop {
                let frame = match decoder.decode(&mut inbuf) {
                    Ok(Some(frame)) => frame,
                    Ok(None) => break,
                    Err(e) => {
                        tracing::debug!(socket = %id, error = %e, "protocol error");
                        conn.close(e.code, e.reason);
                        let sent = out.flush().await;
                        conn.set_state(ReadyState::Closing);
                        if sent.is_ok() {
                            // The stream is unusable after a violation: wait for
                            // the peer's close with a fresh decoder on new bytes.
                            inbuf.clear();
                            let mut fresh = Decoder::new(codec::Limits::default());
                            await_peer_close(
                                &mut reader,
                                &mut inbuf,
                                &mut fresh,
                                limits.close_timeout,
                            )
                            .await;
                        }
                        break 'conn End {
                            code: e.code,
                            reason: e.reason.to_owned(),
                        };
                    }
                };
                let handled = match frame {
                    Frame::Message(message) => {
                        hub.metrics().frames_in.fetch_add(1, Ordering::Relaxed);
                        out.while_running(dispatch(&rt, &conn, &states, message))
                            .await
                    }
                    Frame::Ping(payload) => {
                        out.outbox.push(codec::encode_frame(OpCode::Pong, &payload));
                        match &rt.handlers.ping {
                            Some(h) => {
                                out.while_running(guarded("ping", id, h(conn.clone(), payload)))
                                    .await
                            }
                            None => Ok(()),
                        }
                    }
                    Frame::Pong(payload) => match &rt.handlers.pong {
                        Some(h) => {
                            out.while_running(guarded("pong", id, h(conn.clone(), payload)))
                                .await
                        }
                        None => Ok(()),
                    },
                    Frame::Close(close) => {
                        let (code, reason) =
                            close.unwrap_or((close_code::NO_STATUS, String::new()));
                        let echo = if code == close_code::NO_STATUS {
                            close_code::NORMAL
                        } else {
                            code
                        };
                        conn.close(echo, "");
                        conn.set_state(ReadyState::Closing);
                        let _ = out.flush().await;
                        break 'conn End { code, reason };
                    }
                };
                if handled.is_err() {
                    break 'conn End::abnormal();
                }
                if let Some((code, reason)) = out.close_sent.clone() {
                    // A handler closed the connection: stop dispatching.
                    conn.set_state(ReadyState::Closing);
                    await_peer_close(&mut reader, &mut inbuf, &mut decoder, limits.close_timeout)
                        .await;
                    break 'conn End { code, reason };
                }
            }
            if inbuf.is_empty() && inbuf.capacity() > 0 {
                inbuf = BytesMut::new();
            }
        },
    };

    provider.disconnect(&id);
    conn.inner.outbox.shut();
    conn.set_state(ReadyState::Closed);
    drop(out);
    drop(reader);
    tracing::debug!(socket = %id, code = end.code, "connection closed");
    if let Some(close) = &rt.handlers.close {
        guarded("close", id, close(conn.clone(), end.code, end.reason)).await;
    }
}

/// Routers first; what they do not route goes to the raw handler.
async fn dispatch<D: Send + Sync + 'static>(
    rt: &WsRuntime<D>,
    conn: &Conn<D>,
    states: &ConnectionGuards,
    message: Message,
) {
    if let Message::Text(text) = &message {
        if let Some(reply) = rt.routers.dispatch(conn, states, text).await {
            conn.send(reply);
            return;
        }
    }
    if let Some(h) = &rt.handlers.message {
        guarded("message", conn.id(), h(conn.clone(), message)).await;
    }
}

/// After our close frame: read until the peer's close frame, end of stream,
/// an unreadable frame, or the timeout, discarding data.
async fn await_peer_close<R: AsyncRead + Unpin>(
    reader: &mut R,
    inbuf: &mut BytesMut,
    decoder: &mut Decoder,
    timeout: Duration,
) {
    let wait = async {
        loop {
            loop {
                match decoder.decode(inbuf) {
                    Ok(Some(Frame::Close(_))) | Err(_) => return,
                    Ok(Some(_)) => {}
                    Ok(None) => break,
                }
            }
            match read_some(reader, inbuf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    let _ = tokio::time::timeout(timeout, wait).await;
}
