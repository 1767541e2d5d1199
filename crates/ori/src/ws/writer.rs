//! The writer shards: each shard's writer task writes the queues of the
//! connections scheduled on it, one non-blocking vectored write each.
//!
//! The first push into an empty outbox schedules its connection on a shard
//! (one waker call, no task wake-up). The writer runs after the work that is
//! ready at the time (a deferred wake-up), so frames published meanwhile go
//! out together. A socket that pushes back keeps its queue and is scheduled
//! again when it becomes writable; the writer never waits for one peer.

use std::future::poll_fn;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Poll, Waker};

use super::lock;

/// The writer shards: one writer task each (while it has connections),
/// connections assigned round-robin. One shard per available core.
pub(crate) struct Writers {
    shards: Box<[Arc<Shard>]>,
    next: AtomicUsize,
}

impl Default for Writers {
    fn default() -> Self {
        let n = std::thread::available_parallelism().map_or(1, |n| n.get().min(64));
        Self {
            shards: (0..n).map(|_| Arc::new(Shard::default())).collect(),
            next: AtomicUsize::new(0),
        }
    }
}

impl Writers {
    /// The shard for a new connection.
    pub(super) fn pick(&self) -> Arc<Shard> {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.shards.len();
        self.shards[i].clone()
    }
}

/// A connection's write side, as the writer task sees it.
pub(super) trait Flush: Send + Sync {
    /// Writes what the connection has queued without waiting.
    fn flush(self: Arc<Self>);
}

#[derive(Default)]
pub(super) struct Shard {
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
    pub(super) fn attach(self: &Arc<Self>) {
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
    pub(super) fn detach(&self) {
        let mut st = lock(&self.state);
        st.links -= 1;
        let waker = if st.links == 0 { st.waker.take() } else { None };
        drop(st);
        if let Some(w) = waker {
            w.wake();
        }
    }

    pub(super) fn schedule(&self, link: Arc<dyn Flush>) {
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
