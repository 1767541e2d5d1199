//! One connection's write state and its non-blocking flush: what the
//! shard's writer (or the connection's own task) calls to put the
//! connection's queued frames on the wire, and the write events (close frame
//! written, write failed, socket drained) the connection's task waits for.

use std::collections::VecDeque;
use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};

use ori_core::__private as outbox;
use ori_core::codec::{self, close_code};
use ori_core::{Frame, OutboxStatus};
use tokio::io::AsyncWrite;

use super::conn::ConnInner;
use super::gather::{advance, poll_write_pending};
use super::lock;
use super::state::{CLOSE_SENT, CLOSE_STALLED, DRAINED, FAILED, TICK};
use super::writer::{Flush, Shard};
use crate::metrics::WriteTally;

/// One connection's write side, shared by its outbox (as the outbox's
/// waker), its shard's writer and its task.
pub(super) struct Link<D, W> {
    /// The connection: its outbox, its hub, its state (where the write
    /// events are recorded).
    conn: Arc<ConnInner<D>>,
    shard: Arc<Shard>,
    /// The connection's slot in the shard (for its timer ticks).
    slot: AtomicU32,
    /// In the shard's queue (or about to be).
    scheduled: AtomicBool,
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
    pending: VecDeque<Frame>,
    /// Bytes of `pending[0]` already written.
    offset: usize,
    /// The socket pushed back since everything was last written.
    blocked: bool,
    /// The close frame in `pending` (or sent): nothing is taken after it.
    close: Option<(u16, String)>,
    /// The close frame is written or the socket failed: nothing more goes out.
    done: bool,
    /// `CLOSE_STALLED` was signalled.
    close_stalled: bool,
    /// When the oldest frame in `pending` was queued (the outbox's clock),
    /// for the delivery lag observed once everything is written; valid
    /// while `timed`. A `u32` and a `bool` fit in the struct's padding (an
    /// `Option<u32>` would not): no byte more per connection.
    oldest: u32,
    timed: bool,
}

impl<D: Send + Sync + 'static, W: AsyncWrite + Unpin + Send + 'static> Link<D, W> {
    pub(super) fn new(conn: Arc<ConnInner<D>>, shard: Arc<Shard>, io: W) -> Arc<Self> {
        let link = Arc::new(Self {
            conn,
            shard,
            slot: AtomicU32::new(u32::MAX),
            scheduled: AtomicBool::new(false),
            task: Mutex::new(None),
            write: Mutex::new(WriteState {
                io: Some(io),
                pending: VecDeque::new(),
                offset: 0,
                blocked: false,
                close: None,
                done: false,
                close_stalled: false,
                oldest: 0,
                timed: false,
            }),
        });
        let weak: std::sync::Weak<dyn Flush> = Arc::downgrade(&link) as _;
        let slot = link.shard.attach(weak);
        link.slot.store(slot, Ordering::Relaxed);
        outbox::set_waker(&link.conn.outbox, Some(Waker::from(link.clone())));
        link
    }

    fn signal(&self, event: u8) {
        self.conn.state.signal(event);
        let waker = lock(&self.task).take();
        if let Some(w) = waker {
            w.wake();
        }
    }

    /// Waits for an event: `CLOSE_SENT` or `FAILED` (which stay set), or
    /// `DRAINED`, `CLOSE_STALLED` or `TICK` (each reported once).
    pub(super) fn event(&self) -> impl Future<Output = u8> + Send + '_ {
        poll_fn(|cx| {
            let check = || self.conn.state.take_event();
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
    pub(super) fn flush_now(self: &Arc<Self>) {
        if self.scheduled.load(Ordering::Acquire) {
            let mut tally = WriteTally::default();
            self.clone().flush(&mut tally);
            tally.commit(self.shard.metrics());
        }
    }

    /// The close frame that was written, if any.
    pub(super) fn sent_close(&self) -> Option<(u16, String)> {
        let ws = lock(&self.write);
        ws.done.then(|| ws.close.clone()).flatten()
    }

    /// The connection ended: stops writing, releases the socket's write half
    /// (a TCP stream closes with its read half) and leaves the shard.
    /// Idempotent.
    pub(super) fn detach(&self) {
        let mut ws = lock(&self.write);
        ws.done = true;
        let Some(io) = ws.io.take() else {
            return;
        };
        ws.pending = VecDeque::new();
        ws.timed = false;
        drop(ws);
        drop(io);
        self.shard.detach(self.slot.load(Ordering::Relaxed));
    }
}

/// Detaches a link however its connection's task ends, also when the task
/// is dropped (the runtime shuts down): the outbox lets go of the link (its
/// waker) and the shard of the connection.
pub(super) struct Detach<'a, D, W>(pub(super) &'a Link<D, W>)
where
    D: Send + Sync + 'static,
    W: AsyncWrite + Unpin + Send + 'static;

impl<D: Send + Sync + 'static, W: AsyncWrite + Unpin + Send + 'static> Drop for Detach<'_, D, W> {
    fn drop(&mut self) {
        self.0.conn.outbox.shut();
        self.0.detach();
    }
}

impl<D: Send + Sync + 'static, W: AsyncWrite + Unpin + Send + 'static> Wake for Link<D, W> {
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

impl<D: Send + Sync + 'static, W: AsyncWrite + Unpin + Send + 'static> Flush for Link<D, W> {
    fn tick(&self) {
        self.signal(TICK);
    }

    fn flush(self: Arc<Self>, tally: &mut WriteTally) {
        // Cleared before taking: a push after this schedules us again.
        self.scheduled.store(false, Ordering::Release);
        let mut guard = lock(&self.write);
        let ws = &mut *guard;
        if ws.done {
            return;
        }
        let Some(io) = ws.io.as_mut() else {
            return;
        };
        let waker = Waker::from(self.clone());
        let mut cx = Context::from_waker(&waker);
        let mut frames = 0u64;
        let mut written = 0usize;
        let outcome = loop {
            if ws.close.is_none() {
                // Everything taken before is on the wire when nothing is
                // pending: that batch's lag is known, and frames taken now
                // start a batch of their own.
                let batch_done = ws.pending.is_empty();
                let taken = outbox::take(
                    &self.conn.outbox,
                    std::mem::take(&mut written),
                    &mut ws.pending,
                );
                if let Some(since) = taken.since {
                    tally.queued(taken.queued_bytes);
                    if batch_done && ws.timed {
                        tally.lag(outbox::now().wrapping_sub(ws.oldest));
                    }
                    if batch_done || !ws.timed {
                        ws.oldest = since;
                        ws.timed = true;
                    }
                }
                let close = match taken.status {
                    OutboxStatus::Open => None,
                    OutboxStatus::Closing { code, reason } => Some((code, String::from(reason))),
                    OutboxStatus::Overflowed => {
                        // Dropped frames have no delivery lag.
                        ws.timed = false;
                        // Drop what the peer has not started to receive; a
                        // frame already partly on the wire must be finished,
                        // or the close frame would land inside it.
                        let keep = usize::from(ws.offset > 0);
                        let dropped: usize = ws.pending.iter().skip(keep).map(|f| f.len()).sum();
                        ws.pending.truncate(keep);
                        outbox::written(&self.conn.outbox, dropped);
                        Some((close_code::TRY_AGAIN_LATER, "Slow consumer".to_owned()))
                    }
                };
                if let Some((code, reason)) = close {
                    ws.pending
                        .push_back(codec::encode_close(code, &reason).into());
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
            outbox::written(&self.conn.outbox, written);
        }
        tally.frames(frames);
        if matches!(outcome, Wrote::All) && std::mem::take(&mut ws.timed) {
            // Everything taken is on the wire: the batch's oldest frame's lag.
            tally.lag(outbox::now().wrapping_sub(ws.oldest));
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
            Wrote::Blocked => {
                ws.blocked = true;
                if ws.close.is_some() && !std::mem::replace(&mut ws.close_stalled, true) {
                    // The close frame waits behind a socket that does not
                    // take data: the task's handshake timeout must start,
                    // so that the connection (and what it holds of the
                    // budget) does not linger.
                    drop(guard);
                    self.signal(CLOSE_STALLED);
                }
            }
            Wrote::Failed => {
                ws.done = true;
                ws.pending = VecDeque::new();
                ws.timed = false;
                drop(guard);
                self.signal(FAILED);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use ori_core::codec::OpCode;
    use ori_core::{Outbox, SocketId};

    use super::*;
    use crate::metrics::Metrics;
    use crate::ws::test_socket::TestSocket;
    use crate::ws::writer::Writers;

    fn text(s: &str) -> bytes::Bytes {
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

    fn link(limit: usize) -> (Arc<Link<(), TestSocket>>, TestSocket, Arc<Outbox>, Metrics) {
        let rt = crate::ws::driver::tests::runtime();
        let metrics = rt.emitter.metrics().clone();
        let id = SocketId::new();
        let outbox = Arc::new(Outbox::new(id, limit));
        let conn = Arc::new(ConnInner::new(
            id,
            std::sync::OnceLock::from(()),
            None,
            outbox.clone(),
            rt,
        ));
        let io = TestSocket::default();
        let writers = Writers::new(Duration::from_secs(30), metrics.clone(), None);
        let link = Link::new(conn, writers.pick(), io.clone());
        (link, io, outbox, metrics)
    }

    #[tokio::test]
    async fn frames_pushed_before_the_writer_runs_share_one_write() {
        let (link, io, outbox, metrics) = link(1 << 20);
        let frames = [text("a"), text("bb"), text("ccc")];
        for f in &frames {
            outbox.push(f.clone());
        }
        until(|| metrics.messages_out() == 3).await;
        assert_eq!(metrics.lag().0, 1, "one lag observation per write");
        assert_eq!(metrics.queue_depths(), 1);
        let expected: Vec<u8> = frames.iter().flat_map(|f| f.to_vec()).collect();
        {
            let r = io.state();
            assert_eq!(r.writes, vec![expected.len()], "one write");
            assert_eq!(r.data, expected);
        }
        assert_eq!(outbox.queued_bytes(), 0);
        // Later frames go out with a later write, in order.
        outbox.push(text("d"));
        until(|| metrics.messages_out() == 4).await;
        assert_eq!(io.state().writes.len(), 2);
        assert_eq!(metrics.lag().0, 2);
        outbox.shut();
        link.detach();
        assert_eq!(Arc::strong_count(&link), 1, "the outbox let go of the link");
    }

    #[tokio::test]
    async fn a_full_socket_keeps_its_queue_and_resumes_when_writable() {
        let (link, io, outbox, metrics) = link(1 << 20);
        io.state().accept_once = Some(3);
        let (a, b) = (text("hello"), text("world"));
        outbox.push(a.clone());
        outbox.push(b.clone());
        until(|| io.state().waker.is_some()).await;
        assert_eq!(io.state().data, a[..3].to_vec(), "partial write kept");
        assert_eq!(outbox.queued_bytes(), a.len() + b.len() - 3);
        // More frames queue up behind while the socket is full.
        let c = text("!");
        outbox.push(c.clone());
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(metrics.lag().0, 0, "nothing is fully written yet");
        io.unblock();
        assert_eq!(link.event().await, DRAINED);
        let expected: Vec<u8> = [a, b, c].iter().flat_map(|f| f.to_vec()).collect();
        assert_eq!(io.state().data, expected);
        until(|| metrics.messages_out() == 3).await;
        // One observation, of the oldest frame: it waited the whole time.
        let (count, micros) = metrics.lag();
        assert_eq!(count, 1);
        assert!(micros >= 20_000, "lag {micros} µs");
        assert_eq!(outbox.queued_bytes(), 0);
        link.detach();
    }

    #[tokio::test]
    async fn overflow_finishes_the_frame_on_the_wire_then_closes_with_1013() {
        let (link, io, outbox, _metrics) = link(16);
        io.state().accept_once = Some(2);
        let a = text("0123456789");
        outbox.push(a.clone());
        until(|| io.state().waker.is_some()).await;
        assert_eq!(outbox.push(text("overflowing")), ori_core::Push::Overflow);
        io.unblock();
        assert_eq!(link.event().await, CLOSE_SENT);
        let close = codec::encode_close(close_code::TRY_AGAIN_LATER, "Slow consumer");
        let expected: Vec<u8> = [a, close].iter().flat_map(|f| f.to_vec()).collect();
        assert_eq!(io.state().data, expected);
        assert_eq!(
            link.sent_close(),
            Some((close_code::TRY_AGAIN_LATER, "Slow consumer".to_owned()))
        );
        link.detach();
    }
}
