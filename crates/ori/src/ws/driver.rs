//! The task that owns one connection (decodes incoming frames, runs the
//! handlers in arrival order, pings quiet peers, performs the closing
//! handshake) and the shared writer that puts queued frames on the wire.
//!
//! Writing is not done by the connection's task. A publish pushes one
//! shared frame into each subscriber's [`Outbox`]; the first push into an
//! empty outbox schedules the connection on a writer shard (one waker call,
//! no task wake-up), and the shard's writer task writes every scheduled
//! connection's queue with one non-blocking vectored write. The writer runs
//! after the work that is ready at the time (a deferred wake-up), so frames
//! published meanwhile go out together. A socket that pushes back keeps
//! its queue and is scheduled again when it becomes writable; the writer
//! never waits for one peer. The connection's task is woken only for
//! input, its timer, and the rare write events (close frame written, write
//! failed, socket drained).
//!
//! An idle connection holds no read buffer (bytes are read into a stack
//! scratch buffer and only a partial frame is kept) and no queue buffer.

use std::collections::VecDeque;
use std::future::{poll_fn, Future};
use std::io::{self, IoSlice};
use std::mem::MaybeUninit;
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::future::Either;
use ori_core::codec::{self, close_code, Decoder, Frame, OpCode};
use ori_core::{Hub, Message, Outbox, OutboxStatus};
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

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Counts running tasks so a shutdown can wait for them; the WebSocket
/// tracker also hosts the writer shards of its connections.
#[derive(Default)]
pub(crate) struct Tracker {
    count: AtomicUsize,
    idle: Notify,
    writers: OnceLock<Writers>,
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

    fn writers(&self) -> &Writers {
        self.writers.get_or_init(Writers::new)
    }
}

impl Drop for TrackerGuard {
    fn drop(&mut self) {
        if self.0.count.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

/// The writer shards: one writer task each (while it has connections),
/// connections assigned round-robin. One shard per available core.
struct Writers {
    shards: Box<[Arc<Shard>]>,
    next: AtomicUsize,
}

impl Writers {
    fn new() -> Self {
        let n = std::thread::available_parallelism().map_or(1, |n| n.get().min(64));
        Self {
            shards: (0..n).map(|_| Arc::new(Shard::default())).collect(),
            next: AtomicUsize::new(0),
        }
    }

    fn pick(&self) -> Arc<Shard> {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.shards.len();
        self.shards[i].clone()
    }
}

/// A connection's write side, as the writer task sees it.
trait Flush: Send + Sync {
    /// Writes what the connection has queued without waiting; returns the
    /// frames written.
    fn flush(self: Arc<Self>) -> u64;
}

#[derive(Default)]
struct Shard {
    state: Mutex<ShardState>,
}

#[derive(Default)]
struct ShardState {
    /// Connections with something to write.
    queue: Vec<Arc<dyn Flush>>,
    /// The writer task, while it waits for work.
    waker: Option<Waker>,
    /// Whether a writer task exists.
    running: bool,
    /// Connections attached to this shard.
    links: usize,
}

impl Shard {
    /// A connection joins; starts the writer task if there is none. Must be
    /// called inside the runtime.
    fn attach(self: &Arc<Self>) {
        let mut st = lock(&self.state);
        st.links += 1;
        if !st.running {
            st.running = true;
            drop(st);
            // Unconstrained: the cooperative budget would make a write
            // after the 128th of a pass report a (false) `Pending`, which
            // here means "the socket is full".
            tokio::spawn(tokio::task::unconstrained(write_loop(self.clone())));
        }
    }

    /// A connection left; the writer task ends with the last one.
    fn detach(&self) {
        let mut st = lock(&self.state);
        st.links -= 1;
        let waker = if st.links == 0 { st.waker.take() } else { None };
        drop(st);
        if let Some(w) = waker {
            w.wake();
        }
    }

    fn schedule(&self, link: Arc<dyn Flush>) {
        let mut st = lock(&self.state);
        st.queue.push(link);
        let waker = st.waker.take();
        drop(st);
        if let Some(w) = waker {
            w.wake();
        }
    }
}

/// Marks the shard writer-less however its task ends (also when the runtime
/// drops it), so the next connection starts a new one.
struct Running<'a>(&'a Shard);

impl Drop for Running<'_> {
    fn drop(&mut self) {
        lock(&self.0.state).running = false;
    }
}

/// The writer task of one shard.
async fn write_loop(shard: Arc<Shard>) {
    let _running = Running(&shard);
    let mut batch: Vec<Arc<dyn Flush>> = Vec::new();
    loop {
        let more = poll_fn(|cx| {
            let mut st = lock(&shard.state);
            if !st.queue.is_empty() {
                return Poll::Ready(true);
            }
            if st.links == 0 {
                return Poll::Ready(false);
            }
            if !st.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                st.waker = Some(cx.waker().clone());
            }
            Poll::Pending
        })
        .await;
        if !more {
            return;
        }
        // Let the work that is ready now (more publishes, more requests) run
        // first: whatever it queues goes out in the same writes.
        tokio::task::yield_now().await;
        std::mem::swap(&mut batch, &mut lock(&shard.state).queue);
        // Between chunks, give the runtime a turn as well: a publish that
        // arrives meanwhile joins the queues of the connections not yet
        // written in this pass. Every scheduled connection is written once
        // per pass, so a queue holds at most what was published during one
        // pass; and at most `MAX_YIELDS` turns per pass keep publishers from
        // outrunning the writes when the server is saturated.
        let chunk = CHUNK.max(batch.len().div_ceil(MAX_YIELDS + 1));
        let mut links = batch.drain(..);
        loop {
            for link in links.by_ref().take(chunk) {
                link.flush();
            }
            if links.len() == 0 {
                break;
            }
            tokio::task::yield_now().await;
        }
        drop(links);
        if batch.capacity() > 1024 {
            batch = Vec::new();
        }
    }
}

/// Connections a writer writes (at least) before it lets other tasks run.
const CHUNK: usize = 64;
/// Turns a writer gives other tasks during one pass (at most).
const MAX_YIELDS: usize = 32;

/// Write events the connection's task waits for.
const CLOSE_SENT: u8 = 1;
const FAILED: u8 = 2;
const DRAINED: u8 = 4;

/// One connection's write side, shared by its outbox (as the outbox's
/// waker), its shard's writer and its task.
struct Link<W> {
    outbox: Arc<Outbox>,
    hub: Hub,
    shard: Arc<Shard>,
    /// In the shard's queue (or about to be).
    scheduled: AtomicBool,
    /// `CLOSE_SENT`, `FAILED`, `DRAINED`, for the connection's task.
    events: AtomicU8,
    /// The connection's task, while it waits for an event.
    task: Mutex<Option<Waker>>,
    /// Touched by the writer and, at the start and end of the connection,
    /// by its task: never contended, never held while waiting.
    write: Mutex<WriteState<W>>,
}

struct WriteState<W> {
    /// `None` once the connection ended.
    io: Option<W>,
    /// Frames taken from the outbox, not yet fully written.
    pending: VecDeque<Bytes>,
    /// Bytes of `pending[0]` already written.
    offset: usize,
    /// The socket pushed back since everything was last written.
    blocked: bool,
    /// The close frame in `pending` (or sent): nothing is taken after it.
    close: Option<(u16, String)>,
    /// The close frame is written or the socket failed: nothing more goes out.
    done: bool,
}

impl<W: AsyncWrite + Unpin + Send + 'static> Link<W> {
    fn new(outbox: Arc<Outbox>, hub: Hub, shard: Arc<Shard>, io: W) -> Arc<Self> {
        let link = Arc::new(Self {
            outbox,
            hub,
            shard,
            scheduled: AtomicBool::new(false),
            events: AtomicU8::new(0),
            task: Mutex::new(None),
            write: Mutex::new(WriteState {
                io: Some(io),
                pending: VecDeque::new(),
                offset: 0,
                blocked: false,
                close: None,
                done: false,
            }),
        });
        link.shard.attach();
        link.outbox.set_waker(Some(Waker::from(link.clone())));
        link
    }

    fn signal(&self, event: u8) {
        self.events.fetch_or(event, Ordering::AcqRel);
        let waker = lock(&self.task).take();
        if let Some(w) = waker {
            w.wake();
        }
    }

    /// Waits for a write event: `CLOSE_SENT` or `FAILED` (which stay set),
    /// or `DRAINED` (reported once).
    fn event(&self) -> impl Future<Output = u8> + Send + '_ {
        poll_fn(|cx| {
            let check = || {
                let ev = self.events.load(Ordering::Acquire);
                if ev & (CLOSE_SENT | FAILED) != 0 {
                    Some(ev & (CLOSE_SENT | FAILED))
                } else if ev & DRAINED != 0 {
                    self.events.fetch_and(!DRAINED, Ordering::AcqRel);
                    Some(DRAINED)
                } else {
                    None
                }
            };
            if let Some(ev) = check() {
                return Poll::Ready(ev);
            }
            let mut task = lock(&self.task);
            if !task.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                *task = Some(cx.waker().clone());
            }
            drop(task);
            // An event signalled before the waker was stored.
            match check() {
                Some(ev) => Poll::Ready(ev),
                None => Poll::Pending,
            }
        })
    }

    /// Writes what is queued now, from the calling task, without waiting
    /// (the connection's own task, after it produced output: replies to
    /// the frames it just handled, its close frame), instead of leaving it
    /// to the shard's writer. Cheap when nothing is queued.
    fn flush_now(self: &Arc<Self>) {
        if self.scheduled.load(Ordering::Acquire) {
            self.clone().flush();
        }
    }

    /// After a close was requested: writes the close frame now if the socket
    /// takes it, else waits (at most `timeout`) until the writer has written
    /// it. False if the socket failed or timed out. The wait is boxed: a
    /// rare await that would otherwise enlarge every connection's future.
    fn close_sent(
        self: &Arc<Self>,
        timeout: Duration,
    ) -> Either<std::future::Ready<bool>, Pin<Box<impl Future<Output = bool> + Send + '_>>> {
        self.flush_now();
        let ev = self.events.load(Ordering::Acquire);
        if ev & (CLOSE_SENT | FAILED) != 0 {
            return Either::Left(std::future::ready(ev & CLOSE_SENT != 0));
        }
        Either::Right(Box::pin(async move {
            let wait = async {
                loop {
                    match self.event().await {
                        CLOSE_SENT => return true,
                        FAILED => return false,
                        _ => {}
                    }
                }
            };
            tokio::time::timeout(timeout, wait).await.unwrap_or(false)
        }))
    }

    /// The close frame that was written, if any.
    fn sent_close(&self) -> Option<(u16, String)> {
        let ws = lock(&self.write);
        ws.done.then(|| ws.close.clone()).flatten()
    }

    /// The connection ended: stops writing, releases the socket's write half
    /// (for a TCP stream: sends FIN) and leaves the shard. Idempotent.
    fn detach(&self) {
        let mut ws = lock(&self.write);
        ws.done = true;
        let Some(io) = ws.io.take() else {
            return;
        };
        ws.pending = VecDeque::new();
        drop(ws);
        drop(io);
        self.shard.detach();
    }
}

/// Detaches a link however its connection's task ends, also when the task
/// is dropped (the runtime shuts down): the outbox lets go of the link (its
/// waker) and the shard of the connection.
struct Detach<'a, W: AsyncWrite + Unpin + Send + 'static>(&'a Link<W>);

impl<W: AsyncWrite + Unpin + Send + 'static> Drop for Detach<'_, W> {
    fn drop(&mut self) {
        self.0.outbox.shut();
        self.0.detach();
    }
}

impl<W: AsyncWrite + Unpin + Send + 'static> Wake for Link<W> {
    fn wake(self: Arc<Self>) {
        if !self.scheduled.swap(true, Ordering::AcqRel) {
            let shard = self.shard.clone();
            shard.schedule(self);
        }
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if !self.scheduled.swap(true, Ordering::AcqRel) {
            self.shard.schedule(self.clone());
        }
    }
}

/// What one non-blocking write attempt achieved.
enum Wrote {
    /// Everything due is written.
    All,
    /// The socket pushed back; the link is woken when it is writable.
    Blocked,
    /// The socket failed.
    Failed,
}

impl<W: AsyncWrite + Unpin + Send + 'static> Flush for Link<W> {
    fn flush(self: Arc<Self>) -> u64 {
        // Cleared before taking: a push after this schedules us again.
        self.scheduled.store(false, Ordering::Release);
        let mut guard = lock(&self.write);
        let ws = &mut *guard;
        if ws.done {
            return 0;
        }
        let Some(io) = ws.io.as_mut() else {
            return 0;
        };
        let waker = Waker::from(self.clone());
        let mut cx = Context::from_waker(&waker);
        let mut frames = 0u64;
        let mut written = 0usize;
        let outcome = loop {
            if ws.close.is_none() {
                let status = self
                    .outbox
                    .written_and_take(std::mem::take(&mut written), &mut ws.pending);
                let close = match status {
                    OutboxStatus::Open => None,
                    OutboxStatus::Closing { code, reason } => Some((code, reason)),
                    OutboxStatus::Overflowed => {
                        // Drop what the peer has not started to receive; a
                        // frame already partly on the wire must be finished,
                        // or the close frame would land inside it.
                        let keep = usize::from(ws.offset > 0);
                        let dropped: usize = ws.pending.iter().skip(keep).map(Bytes::len).sum();
                        ws.pending.truncate(keep);
                        self.outbox.written(dropped);
                        Some((close_code::TRY_AGAIN_LATER, "Slow consumer".to_owned()))
                    }
                };
                if let Some((code, reason)) = close {
                    ws.pending.push_back(codec::encode_close(code, &reason));
                    ws.close = Some((code, reason));
                }
            }
            if ws.pending.is_empty() {
                break match Pin::new(&mut *io).poll_flush(&mut cx) {
                    Poll::Ready(Ok(())) => Wrote::All,
                    Poll::Ready(Err(_)) => Wrote::Failed,
                    Poll::Pending => Wrote::Blocked,
                };
            }
            match poll_write_pending(io, &ws.pending, ws.offset, &mut cx) {
                Poll::Ready(Ok(n)) if n > 0 => {
                    frames += advance(&mut ws.pending, &mut ws.offset, n);
                    written += n;
                }
                Poll::Ready(_) => break Wrote::Failed,
                Poll::Pending => break Wrote::Blocked,
            }
            if ws.close.is_some() && ws.pending.is_empty() {
                break Wrote::All;
            }
        };
        if written > 0 {
            self.outbox.written(written);
        }
        if frames > 0 {
            self.hub
                .metrics()
                .frames_out
                .fetch_add(frames, Ordering::Relaxed);
        }
        match outcome {
            Wrote::All if ws.close.is_some() => {
                ws.done = true;
                drop(guard);
                self.signal(CLOSE_SENT);
            }
            Wrote::All => {
                // Idle: hold no queue buffer.
                ws.pending = VecDeque::new();
                if std::mem::take(&mut ws.blocked) {
                    drop(guard);
                    self.signal(DRAINED);
                }
            }
            Wrote::Blocked => ws.blocked = true,
            Wrote::Failed => {
                ws.done = true;
                ws.pending = VecDeque::new();
                drop(guard);
                self.signal(FAILED);
            }
        }
        frames
    }
}

/// One vectored write of (the start of) `pending`.
fn poll_write_pending<W: AsyncWrite + Unpin>(
    io: &mut W,
    pending: &VecDeque<Bytes>,
    offset: usize,
    cx: &mut Context<'_>,
) -> Poll<io::Result<usize>> {
    let mut slices = [IoSlice::new(&[]); MAX_IOV];
    let mut count = 0;
    for (i, frame) in pending.iter().take(MAX_IOV).enumerate() {
        let start = if i == 0 { offset } else { 0 };
        slices[i] = IoSlice::new(&frame[start..]);
        count += 1;
    }
    Pin::new(io).poll_write_vectored(cx, &slices[..count])
}

/// Drops the `n` written bytes from the front of `pending`; returns the
/// frames completed.
fn advance(pending: &mut VecDeque<Bytes>, offset: &mut usize, mut n: usize) -> u64 {
    let mut frames = 0;
    while n > 0 {
        let Some(front) = pending.front() else {
            break;
        };
        let left = front.len() - *offset;
        if n >= left {
            n -= left;
            *offset = 0;
            pending.pop_front();
            frames += 1;
        } else {
            *offset += n;
            n = 0;
        }
    }
    frames
}

/// Reads what is available into `buf`: into its spare capacity when a large
/// frame is expected, otherwise through a stack scratch buffer so an idle
/// connection holds no read buffer.
async fn read_some<R: AsyncRead + Unpin>(reader: &mut R, buf: &mut BytesMut) -> io::Result<usize> {
    if buf.capacity() - buf.len() >= SCRATCH {
        return reader.read_buf(buf).await;
    }
    poll_fn(|cx| {
        let mut scratch = [MaybeUninit::<u8>::uninit(); SCRATCH];
        let mut rb = ReadBuf::uninit(&mut scratch);
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

/// Drives one accepted connection until it closes. `inbuf` holds bytes that
/// arrived with the upgrade request.
///
/// Every idle connection is one suspended instance of this future, so it is
/// kept small: rare awaits (guards, handlers, the closing handshake) are
/// boxed, and the arguments are used in place (an `async fn` would keep a
/// second copy of them).
pub(crate) fn run<D, R, W>(
    rt: Arc<WsRuntime<D>>,
    conn: Conn<D>,
    mut reader: R,
    writer: W,
    mut inbuf: BytesMut,
) -> impl Future<Output = ()> + Send
where
    D: Send + Sync + 'static,
    R: AsyncRead + Unpin + Send,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let link = Link::new(
        conn.inner.outbox.clone(),
        conn.inner.provider.hub().clone(),
        rt.tasks.writers().pick(),
        writer,
    );
    async move {
        let _detach = Detach(&link);
        // The connection counts as upgrading (for the connection limit) until
        // it is registered in the hub or refused.
        let upgrading = Upgrading(&rt.upgrading);
        let id = conn.id();
        let hub = conn.inner.provider.hub();
        let limits = &rt.limits;
        let mut decoder = Decoder::new(codec::Limits {
            max_frame_size: limits.max_frame_size,
            max_message_size: limits.max_message_size,
            max_fragments: limits.max_fragments,
        });

        // Connection guards run before the connection joins anything.
        let states = match Box::pin(rt.routers.admit(&conn)).await {
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
                if link.close_sent(limits.close_timeout).await {
                    await_peer_close(&mut reader, &mut inbuf, &mut decoder, limits.close_timeout)
                        .await;
                }
                conn.inner.outbox.shut();
                conn.set_state(ReadyState::Closed);
                link.detach();
                return;
            }
        };

        conn.inner
            .provider
            .register(conn.inner.outbox.clone(), limits.max_topics_per_connection);
        drop(upgrading);
        conn.set_state(ReadyState::Open);
        if rt.shutting_down() {
            conn.close(close_code::GOING_AWAY, "Server shutting down");
        }
        tracing::debug!(socket = %id, remote = ?conn.remote_addr(), "connection opened");

        if let Some(open) = &rt.handlers.open {
            Box::pin(guarded("open", id, open(conn.clone()))).await;
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
        // Boxed: a connection without the limit keeps 8 bytes for it.
        let mut bucket = limits.inbound_rate.map(|r| Box::new(Bucket::new(r)));
        let end = 'conn: loop {
            if !std::mem::take(&mut skip_wait) {
                tokio::select! {
                    biased;
                    event = link.event() => match event {
                        DRAINED => {
                            if let Some(drain) = &rt.handlers.drain {
                                Box::pin(guarded("drain", id, drain(conn.clone()))).await;
                            }
                            continue 'conn;
                        }
                        CLOSE_SENT => {
                            conn.set_state(ReadyState::Closing);
                            await_peer_close(&mut reader, &mut inbuf, &mut decoder, limits.close_timeout).await;
                            let (code, reason) = link.sent_close().unwrap_or((close_code::NORMAL, String::new()));
                            break 'conn End { code, reason };
                        }
                        _ => break 'conn End::abnormal(),
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
                            conn.inner.outbox.push(codec::encode_frame(OpCode::Ping, b""));
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
                        let sent = link.close_sent(limits.close_timeout).await;
                        conn.set_state(ReadyState::Closing);
                        if sent {
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
                match frame {
                    Frame::Message(message) => {
                        hub.metrics().frames_in.fetch_add(1, Ordering::Relaxed);
                        match bucket.as_deref_mut().map(Bucket::take) {
                            None | Some(Admit::Yes) => {
                                Box::pin(dispatch(&rt, &conn, &states, message)).await;
                            }
                            Some(Admit::Drop) => {
                                conn.inner.outbox.push(codec::encode_frame(
                                    OpCode::Text,
                                    RATE_LIMITED_REPLY.as_bytes(),
                                ));
                            }
                            Some(Admit::Close) => {
                                tracing::debug!(socket = %id, "inbound rate limit: closing");
                                conn.close(close_code::POLICY_VIOLATION, "Rate limit exceeded");
                            }
                        }
                    }
                    Frame::Ping(payload) => {
                        conn.inner
                            .outbox
                            .push(codec::encode_frame(OpCode::Pong, &payload));
                        if let Some(h) = &rt.handlers.ping {
                            Box::pin(guarded("ping", id, h(conn.clone(), payload))).await;
                        }
                    }
                    Frame::Pong(payload) => {
                        if let Some(h) = &rt.handlers.pong {
                            Box::pin(guarded("pong", id, h(conn.clone(), payload))).await;
                        }
                    }
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
                        link.close_sent(limits.close_timeout).await;
                        break 'conn End { code, reason };
                    }
                }
                if link.events.load(Ordering::Acquire) & FAILED != 0 {
                    break 'conn End::abnormal();
                }
                if conn.inner.outbox.status() != OutboxStatus::Open {
                    // A handler closed the connection (or it overflowed): stop
                    // dispatching, finish the closing handshake.
                    conn.set_state(ReadyState::Closing);
                    if !link.close_sent(limits.close_timeout).await {
                        break 'conn End::abnormal();
                    }
                    await_peer_close(&mut reader, &mut inbuf, &mut decoder, limits.close_timeout)
                        .await;
                    let (code, reason) = link
                        .sent_close()
                        .unwrap_or((close_code::NORMAL, String::new()));
                    break 'conn End { code, reason };
                }
            }
            // Replies to what was just handled go out now, not with the
            // writer's next pass.
            link.flush_now();
            if inbuf.is_empty() && inbuf.capacity() > 0 {
                inbuf = BytesMut::new();
            }
        };

        conn.inner.provider.disconnect(&id);
        conn.inner.outbox.shut();
        conn.set_state(ReadyState::Closed);
        link.detach();
        drop(reader);
        tracing::debug!(socket = %id, code = end.code, "connection closed");
        if let Some(close) = &rt.handlers.close {
            Box::pin(guarded(
                "close",
                id,
                close(conn.clone(), end.code, end.reason),
            ))
            .await;
        }
    }
}

/// The reply to a message dropped by the inbound rate limit.
const RATE_LIMITED_REPLY: &str = r#"{"type":"error","message":"Rate limit exceeded"}"#;

/// A connection's inbound token bucket (see `WsOptions::inbound_rate_limit`).
struct Bucket {
    per_second: f32,
    burst: u32,
    tokens: f32,
    /// Messages refused in a row.
    refused: u32,
    at: Instant,
}

/// The bucket's verdict on one message.
enum Admit {
    Yes,
    Drop,
    Close,
}

impl Bucket {
    fn new(rate: super::options::InboundRate) -> Self {
        Self {
            per_second: rate.per_second as f32,
            burst: rate.burst,
            tokens: rate.burst as f32,
            refused: 0,
            at: Instant::now(),
        }
    }

    fn take(&mut self) -> Admit {
        let now = Instant::now();
        let elapsed = now.saturating_duration_since(self.at).as_secs_f32();
        self.tokens = (self.tokens + elapsed * self.per_second).min(self.burst as f32);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            self.refused = 0;
            Admit::Yes
        } else {
            self.refused += 1;
            if self.refused >= self.burst {
                Admit::Close
            } else {
                Admit::Drop
            }
        }
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
/// an unreadable frame, or the timeout, discarding data. Boxed: a rare
/// await that would otherwise enlarge every connection's future.
fn await_peer_close<'a, R: AsyncRead + Unpin + Send>(
    reader: &'a mut R,
    inbuf: &'a mut BytesMut,
    decoder: &'a mut Decoder,
    timeout: Duration,
) -> Pin<Box<impl Future<Output = ()> + Send + 'a>> {
    Box::pin(async move { await_peer_close_inner(reader, inbuf, decoder, timeout).await })
}

async fn await_peer_close_inner<R: AsyncRead + Unpin>(
    reader: &mut R,
    inbuf: &mut BytesMut,
    decoder: &mut Decoder,
    timeout: Duration,
) {
    let wait = async {
        // Once the bytes stop making sense (the rest of an oversized frame,
        // say), keep reading and dropping them until the peer closes: closing
        // with unread input would reset the connection and could destroy our
        // close frame before the peer reads it.
        let mut discard = false;
        loop {
            while !discard {
                match decoder.decode(inbuf) {
                    Ok(Some(Frame::Close(_))) => return,
                    Ok(Some(_)) => {}
                    Ok(None) => break,
                    Err(_) => discard = true,
                }
            }
            if discard {
                inbuf.clear();
            }
            match read_some(reader, inbuf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    let _ = tokio::time::timeout(timeout, wait).await;
}

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::atomic::{AtomicBool, AtomicU8};

    use ori_core::{InProcProvider, Provider, SocketId};
    use tokio::net::{TcpListener, TcpStream};

    use super::*;
    use crate::emitter::SocketEmitter;
    use crate::ws::conn::ConnInner;
    use crate::ws::Handlers;

    pub(crate) fn runtime() -> Arc<WsRuntime<()>> {
        let provider: Arc<dyn Provider> = Arc::new(InProcProvider::new());
        Arc::new(WsRuntime {
            provider: provider.clone(),
            emitter: SocketEmitter::new(provider),
            handlers: Handlers::default(),
            routers: Default::default(),
            upgrade: None,
            limits: Default::default(),
            tasks: Default::default(),
            shutting_down: Arc::new(AtomicBool::new(false)),
            upgrading: Default::default(),
        })
    }

    pub(crate) fn conn(rt: &WsRuntime<()>) -> Conn<()> {
        let id = SocketId::new();
        Conn {
            inner: Arc::new(ConnInner {
                id,
                data: (),
                remote_addr: None,
                outbox: Arc::new(Outbox::new(id, 1024)),
                provider: rt.provider.clone(),
                emitter: rt.emitter.clone(),
                state: AtomicU8::new(0),
            }),
        }
    }

    /// A write half that records each write and can push back.
    #[derive(Clone, Default)]
    struct Recorder(Arc<Mutex<Recorded>>);

    #[derive(Default)]
    struct Recorded {
        /// Bytes accepted by each write call.
        writes: Vec<usize>,
        data: Vec<u8>,
        /// While set, writes return `Pending` (the socket is full), or accept
        /// only this many bytes once, then push back.
        full: bool,
        accept_once: Option<usize>,
        waker: Option<Waker>,
    }

    impl Recorder {
        fn unblock(&self) {
            let mut r = lock(&self.0);
            r.full = false;
            if let Some(w) = r.waker.take() {
                w.wake();
            }
        }
    }

    impl AsyncWrite for Recorder {
        fn poll_write(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            self.poll_write_vectored(cx, &[IoSlice::new(buf)])
        }

        fn poll_write_vectored(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            bufs: &[IoSlice<'_>],
        ) -> Poll<io::Result<usize>> {
            let mut r = lock(&self.0);
            if r.full {
                r.waker = Some(cx.waker().clone());
                return Poll::Pending;
            }
            let mut room = r.accept_once.take().unwrap_or(usize::MAX);
            if room != usize::MAX {
                r.full = true;
            }
            let mut n = 0;
            for b in bufs {
                let take = b.len().min(room);
                r.data.extend_from_slice(&b[..take]);
                n += take;
                room -= take;
            }
            r.writes.push(n);
            Poll::Ready(Ok(n))
        }

        fn is_write_vectored(&self) -> bool {
            true
        }

        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }

        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    fn text(s: &str) -> Bytes {
        codec::encode_frame(OpCode::Text, s.as_bytes())
    }

    async fn until(mut done: impl FnMut() -> bool) {
        for _ in 0..1000 {
            if done() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        panic!("condition not reached within 1 s");
    }

    fn link(limit: usize) -> (Arc<Link<Recorder>>, Recorder, Arc<Outbox>, Hub) {
        let tracker = Arc::new(Tracker::default());
        let outbox = Arc::new(Outbox::new(SocketId::new(), limit));
        let hub = Hub::new();
        let io = Recorder::default();
        let link = Link::new(
            outbox.clone(),
            hub.clone(),
            tracker.writers().pick(),
            io.clone(),
        );
        (link, io, outbox, hub)
    }

    #[tokio::test]
    async fn frames_pushed_before_the_writer_runs_share_one_write() {
        let (link, io, outbox, hub) = link(1 << 20);
        let frames = [text("a"), text("bb"), text("ccc")];
        for f in &frames {
            outbox.push(f.clone());
        }
        let out = &hub.metrics().frames_out;
        until(|| out.load(Ordering::Relaxed) == 3).await;
        let expected: Vec<u8> = frames.iter().flat_map(|f| f.to_vec()).collect();
        {
            let r = lock(&io.0);
            assert_eq!(r.writes, vec![expected.len()], "one vectored write");
            assert_eq!(r.data, expected);
        }
        assert_eq!(outbox.queued_bytes(), 0);
        // Later frames go out with a later write, in order.
        outbox.push(text("d"));
        until(|| out.load(Ordering::Relaxed) == 4).await;
        assert_eq!(lock(&io.0).writes.len(), 2);
        outbox.shut();
        link.detach();
        assert_eq!(Arc::strong_count(&link), 1, "the outbox let go of the link");
    }

    #[tokio::test]
    async fn a_full_socket_keeps_its_queue_and_resumes_when_writable() {
        let (link, io, outbox, hub) = link(1 << 20);
        lock(&io.0).accept_once = Some(3);
        let (a, b) = (text("hello"), text("world"));
        outbox.push(a.clone());
        outbox.push(b.clone());
        until(|| lock(&io.0).waker.is_some()).await;
        assert_eq!(lock(&io.0).data, a[..3].to_vec(), "partial write kept");
        assert_eq!(outbox.queued_bytes(), a.len() + b.len() - 3);
        // More frames queue up behind while the socket is full.
        let c = text("!");
        outbox.push(c.clone());
        io.unblock();
        assert_eq!(link.event().await, DRAINED);
        let expected: Vec<u8> = [a, b, c].iter().flat_map(|f| f.to_vec()).collect();
        assert_eq!(lock(&io.0).data, expected);
        assert_eq!(hub.metrics().frames_out.load(Ordering::Relaxed), 3);
        assert_eq!(outbox.queued_bytes(), 0);
        link.detach();
    }

    #[tokio::test]
    async fn overflow_finishes_the_frame_on_the_wire_then_closes_with_1013() {
        let (link, io, outbox, _hub) = link(16);
        lock(&io.0).accept_once = Some(2);
        let a = text("0123456789");
        outbox.push(a.clone());
        until(|| lock(&io.0).waker.is_some()).await;
        assert_eq!(outbox.push(text("overflowing")), ori_core::Push::Overflow);
        io.unblock();
        assert_eq!(link.event().await, CLOSE_SENT);
        let close = codec::encode_close(close_code::TRY_AGAIN_LATER, "Slow consumer");
        let expected: Vec<u8> = [a, close].iter().flat_map(|f| f.to_vec()).collect();
        assert_eq!(lock(&io.0).data, expected);
        assert_eq!(
            link.sent_close(),
            Some((close_code::TRY_AGAIN_LATER, "Slow consumer".to_owned()))
        );
        link.detach();
    }

    /// The connection task's state is what every idle connection costs.
    #[tokio::test]
    async fn connection_future_stays_small() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (r, w) = client.into_split();
        let rt = runtime();
        let fut = run(rt.clone(), conn(&rt), r, w, BytesMut::new());
        let size = std::mem::size_of_val(&fut);
        println!("driver::run future: {size} bytes");
        assert!(size <= 1024, "driver future grew to {size} bytes");
    }
}
