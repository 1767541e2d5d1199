//! The writer shards: each shard's writer task writes the queues of the
//! connections scheduled on it, one non-blocking write each.
//!
//! The first push into an empty outbox schedules its connection on a shard
//! (one waker call, no task wake-up). The writer runs after the work that is
//! ready at the time (a deferred wake-up), so frames published meanwhile go
//! out together. A socket that pushes back keeps its queue and is scheduled
//! again when it becomes writable; the writer never waits for one peer.

use std::future::{poll_fn, Future};
use std::pin::pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::task::{Poll, Waker};
use std::time::Duration;

use ori_core::Lane;

use super::lock;
use crate::metrics::{Metrics, WriteTally};

/// The writer shards: one writer task each (while it has connections),
/// connections assigned round-robin.
///
/// How many: [`WsOptions::writers`](crate::WsOptions::writers), or by
/// default one per two worker threads of the runtime (rounded up), counting
/// at most one thread per core this process may run on. More shards than
/// threads buy no parallelism, only shorter passes, so fewer frames per
/// write and more CPU per delivery; half as many leave the threads' other
/// half of the time to reading, requests and the fan-out.
/// The shards are made when the first connection picks one, so that the
/// count is of the runtime that serves the connections.
///
/// Each shard's writer task also keeps its connections' time: every `tick`
/// it tells each of them one timer period has passed (one timer per shard
/// instead of one per connection, which would cost every idle connection
/// the timer's state).
pub(crate) struct Writers {
    shards: OnceLock<Box<[Arc<Shard>]>>,
    /// The shards asked for (`None`: the default).
    count: Option<usize>,
    tick: Duration,
    metrics: Metrics,
    next: AtomicUsize,
}

impl Default for Writers {
    fn default() -> Self {
        Self::new(Duration::from_secs(30), Metrics::default(), None)
    }
}

impl Writers {
    /// `count` shards (`None`: the default count), each ticking its
    /// connections every `tick` and adding what it writes to `metrics`.
    pub(crate) fn new(tick: Duration, metrics: Metrics, count: Option<usize>) -> Self {
        Self {
            shards: OnceLock::new(),
            count,
            tick,
            metrics,
            next: AtomicUsize::new(0),
        }
    }

    /// The shard for a new connection.
    pub(super) fn pick(&self) -> Arc<Shard> {
        let shards = self.shards.get_or_init(|| {
            let n = self
                .count
                .unwrap_or_else(default_count)
                .clamp(1, MAX_WRITERS);
            (0..n)
                .map(|_| Arc::new(Shard::new(self.tick, self.metrics.clone())))
                .collect()
        });
        let i = self.next.fetch_add(1, Ordering::Relaxed) % shards.len();
        shards[i].clone()
    }

    /// The shard whose lane is `lane`: the shard of a connection whose
    /// outbox was made in the lane of a [`pick`](Self::pick); another one
    /// picked for an outbox made in no shard's lane.
    pub(super) fn shard_of(&self, lane: &Arc<Lane>) -> Arc<Shard> {
        let found = self
            .shards
            .get()
            .and_then(|shards| shards.iter().find(|s| Arc::ptr_eq(&s.lane, lane)));
        match found {
            Some(shard) => shard.clone(),
            None => self.pick(),
        }
    }

    /// How many shards there are (none before the first pick).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.shards.get().map_or(0, |s| s.len())
    }
}

/// Writers at most.
pub(crate) const MAX_WRITERS: usize = 64;

/// The default number of writers: one per two worker threads of the
/// current runtime, rounded up (one outside a runtime), the threads counted
/// at most one per core this process may run on.
fn default_count() -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let workers = tokio::runtime::Handle::try_current().map_or(1, |h| h.metrics().num_workers());
    per_threads(cores.min(workers))
}

/// Writers for `threads` worker threads: half of them, rounded up. Measured
/// on two shared cores (BENCHMARKS.md, nineteenth sitting): two workers
/// with one writer deliver as much as with two, at about half the p99 and
/// less CPU per delivery.
fn per_threads(threads: usize) -> usize {
    threads.div_ceil(2).max(1)
}

/// A connection's write side, as the writer task sees it.
pub(super) trait Flush: Send + Sync {
    /// Writes what the connection has queued without waiting, noting what
    /// it wrote in `tally`.
    fn flush(self: Arc<Self>, tally: &mut WriteTally);

    /// One timer period has passed (its idle and ping checks are due).
    fn tick(&self);
}

pub(super) struct Shard {
    state: Mutex<ShardState>,
    /// Where the outboxes of its connections keep their queues.
    lane: Arc<Lane>,
    /// The connections' timer period.
    tick: Duration,
    /// Where its writes are counted (the app's).
    metrics: Metrics,
}

#[derive(Default)]
struct ShardState {
    /// Connections with something to write.
    queue: Vec<Arc<dyn Flush>>,
    /// The writer task, while it waits for work.
    waker: Option<Waker>,
    /// Whether a writer task exists.
    running: bool,
    /// Which writer task it is (each new one takes the next number), so
    /// that one that is ending cannot mark its successor gone.
    generation: u64,
    /// Connections attached to this shard, by slot (for the ticks).
    links: Vec<Option<Weak<dyn Flush>>>,
    /// Empty slots of `links`.
    free: Vec<u32>,
    /// Occupied slots.
    attached: usize,
}

impl Shard {
    fn new(tick: Duration, metrics: Metrics) -> Self {
        Self {
            state: Mutex::default(),
            lane: Arc::default(),
            tick: tick.max(Duration::from_millis(10)),
            metrics,
        }
    }

    /// Where the outboxes of its connections keep their queues.
    pub(super) fn lane(&self) -> &Arc<Lane> {
        &self.lane
    }

    /// Where the writes of this shard's connections are counted.
    pub(super) fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// A connection joins; starts the writer task if there is none. Must be
    /// called inside the runtime. Returns the connection's slot.
    pub(super) fn attach(self: &Arc<Self>, link: Weak<dyn Flush>) -> u32 {
        let mut st = lock(&self.state);
        let slot = match st.free.pop() {
            Some(slot) => {
                st.links[slot as usize] = Some(link);
                slot
            }
            None => {
                st.links.push(Some(link));
                u32::try_from(st.links.len() - 1).unwrap_or(u32::MAX)
            }
        };
        st.attached += 1;
        if !st.running {
            st.running = true;
            st.generation += 1;
            let generation = st.generation;
            drop(st);
            // Unconstrained: the cooperative budget would make a write
            // after the 128th of a pass report a (false) `Pending`, which
            // here means "the socket is full".
            tokio::spawn(tokio::task::unconstrained(write_loop(
                self.clone(),
                generation,
            )));
        }
        slot
    }

    /// The connection in `slot` left; the writer task ends with the last one.
    pub(super) fn detach(&self, slot: u32) {
        let mut st = lock(&self.state);
        if let Some(entry) = st.links.get_mut(slot as usize) {
            if entry.take().is_some() {
                st.free.push(slot);
                st.attached -= 1;
            }
        }
        if st.attached == 0 {
            // Nothing held for connections that are gone.
            st.links = Vec::new();
            st.free = Vec::new();
        }
        let waker = if st.attached == 0 {
            st.waker.take()
        } else {
            None
        };
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
/// drops it), so the next connection starts a new one; unless a newer
/// writer has started meanwhile.
struct Running<'a>(&'a Shard, u64);

impl Drop for Running<'_> {
    fn drop(&mut self) {
        let mut st = lock(&self.0.state);
        if st.generation == self.1 {
            st.running = false;
        }
    }
}

/// The writer task of one shard.
async fn write_loop(shard: Arc<Shard>, generation: u64) {
    let _running = Running(&shard, generation);
    let mut batch: Vec<Arc<dyn Flush>> = Vec::new();
    // What a chunk of writes saw, added to the metrics after the chunk:
    // a few atomic additions per chunk instead of some per write.
    let mut tally = WriteTally::default();
    let mut timer = pin!(tokio::time::sleep(shard.tick));
    loop {
        let more = poll_fn(|cx| {
            // Polled again after each reset, so that it wakes us next time.
            while timer.as_mut().poll(cx).is_ready() {
                timer
                    .as_mut()
                    .reset(tokio::time::Instant::now() + shard.tick);
                tick_all(&shard);
            }
            let mut st = lock(&shard.state);
            if !st.queue.is_empty() {
                return Poll::Ready(true);
            }
            if st.attached == 0 {
                // Marked under the same lock that saw the last connection
                // go, so a connection attaching from now on starts a new
                // writer instead of counting on this one.
                st.running = false;
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
                link.flush(&mut tally);
            }
            tally.commit(&shard.metrics);
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

/// Tells every connection of `shard` that a timer period has passed.
fn tick_all(shard: &Shard) {
    let links: Vec<Arc<dyn Flush>> = lock(&shard.state)
        .links
        .iter()
        .flatten()
        .filter_map(Weak::upgrade)
        .collect();
    for link in links {
        link.tick();
    }
}

/// Connections a writer writes (at least) before it lets other tasks run.
const CHUNK: usize = 64;
/// Turns a writer gives other tasks during one pass (at most).
const MAX_YIELDS: usize = 32;

#[cfg(test)]
mod tests {
    use super::*;

    fn distinct(writers: &Writers, picks: usize) -> usize {
        let mut seen: Vec<Arc<Shard>> = Vec::new();
        for _ in 0..picks {
            let s = writers.pick();
            if !seen.iter().any(|t| Arc::ptr_eq(t, &s)) {
                seen.push(s);
            }
        }
        seen.len()
    }

    #[test]
    fn the_count_asked_for_is_made_at_the_first_pick_and_used_in_turn() {
        let writers = Writers::new(Duration::from_secs(30), Metrics::default(), Some(3));
        assert_eq!(writers.len(), 0, "nothing is made before a connection");
        assert_eq!(distinct(&writers, 6), 3);
        assert_eq!(writers.len(), 3);
        let many = Writers::new(Duration::from_secs(30), Metrics::default(), Some(1000));
        assert_eq!(distinct(&many, 100), MAX_WRITERS);
        assert_eq!(many.len(), MAX_WRITERS);
    }

    #[test]
    fn by_default_one_writer_per_two_worker_threads() {
        let counts: Vec<usize> = (0..=5).map(per_threads).collect();
        assert_eq!(counts, [1, 1, 1, 2, 2, 3]);

        let one = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let writers = Writers::default();
        one.block_on(async { assert_eq!(distinct(&writers, 8), 1) });

        // Writers made by default inside a runtime of `workers` threads.
        let made_with = |workers: usize| {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(workers)
                .build()
                .unwrap();
            let writers = Writers::default();
            rt.block_on(async { distinct(&writers, 8) })
        };
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        assert_eq!(made_with(2), 1);
        assert_eq!(made_with(4), cores.min(4).div_ceil(2));

        // Outside a runtime: one.
        let writers = Writers::default();
        assert_eq!(distinct(&writers, 4), 1);
    }
}
