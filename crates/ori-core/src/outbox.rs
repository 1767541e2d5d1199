//! One connection's bounded queue of encoded frames, charged to the
//! instance's [`Budget`].

use std::collections::VecDeque;
use std::sync::Arc;
use std::task::Waker;

use qcell::QCell;

use crate::codec::close_code;
use crate::codec::deflate::Agreed;
use crate::{Budget, Frame, SocketId};

mod lane;

pub(crate) use lane::Key;
pub use lane::Lane;

/// The state of an [`Outbox`] as its writer sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutboxStatus {
    /// Accepting frames.
    Open,
    /// A close was requested: write what is queued, then the close frame.
    Closing {
        /// Close code.
        code: u16,
        /// Close reason (boxed: every connection's outbox holds this state,
        /// and a `Box<str>` is 8 bytes smaller than a `String`).
        reason: Box<str>,
    },
    /// The reader fell too far behind: queued frames were dropped; close
    /// with 1013.
    Overflowed,
}

/// The outcome of [`Outbox::push`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Push {
    /// The frame is queued.
    Queued,
    /// The queue limit was exceeded; the connection is being closed (1013).
    Overflow,
    /// The connection is closing or closed; the frame was dropped.
    Closed,
}

struct OutboxState {
    frames: VecDeque<Frame>,
    /// Bytes queued and not yet written to the socket (including frames the
    /// writer has taken but not finished writing). Exactly what is charged
    /// to the budget for this outbox.
    queued_bytes: usize,
    status: OutboxStatus,
    /// The writer, woken when there is something to do.
    waker: Option<Waker>,
    /// Bytes that have left the queue since the outbox was made (modulo
    /// 2^32: only differences between two scans are used).
    dequeued: u32,
    /// What a budget scan saw last (`dequeued`, `queued_bytes` capped at
    /// `u32::MAX`), to tell a reader that stopped from one that keeps up.
    /// Before the first scan `(0, 0)`: nothing was held, so nothing can be
    /// behind (no `Option`: its tag would cost 4 bytes per connection).
    mark: (u32, u32),
    /// When `frames` last went from empty to non-empty, in
    /// [`clock::now`] microseconds: the age of the oldest frame queued, for
    /// the writer's delivery-lag figure. Meaningless while `frames` is empty.
    since: u32,
}

impl OutboxState {
    fn new() -> Self {
        Self {
            frames: VecDeque::new(),
            queued_bytes: 0,
            status: OutboxStatus::Open,
            waker: None,
            dequeued: 0,
            mark: (0, 0),
            since: 0,
        }
    }

    /// Marks the queue overflowed and takes out what was not taken yet.
    /// All of it is for after the lock is released: the frames to drop,
    /// their bytes to release from the budget, the writer to wake.
    fn overflow(&mut self) -> Enqueued {
        self.status = OutboxStatus::Overflowed;
        let frames = std::mem::take(&mut self.frames);
        let bytes: usize = frames.iter().map(|f| f.len()).sum();
        Enqueued {
            wake: self.waker.clone(),
            dropped: self.uncount(bytes),
            freed: (!frames.is_empty()).then_some(frames),
            rejected: None,
        }
    }

    /// Takes `n` bytes off the queued count; returns how many were counted.
    fn uncount(&mut self, n: usize) -> usize {
        let n = n.min(self.queued_bytes);
        self.queued_bytes -= n;
        self.dequeued = self.dequeued.wrapping_add(n as u32);
        n
    }
}

/// One connection's bounded queue of encoded frames.
///
/// Producers (publishes, direct sends, the connection's own replies) push
/// shared [`Frame`]s; the connection's writer takes everything queued at once
/// and writes it with as few calls as it can. A push never waits: past `limit`
/// queued bytes the outbox drops its queue and asks the writer to close the
/// connection with 1013.
///
/// The writer learns that there is work through a waker: one wake-up when
/// the queue becomes non-empty, not one per frame, so frames pushed before
/// the writer runs go out together. The waker is always called after the
/// outbox's lock (its lane's) is released, so it may use the outbox; it is
/// cloned under that lock, so its clone must not use any outbox of the
/// lane. The writer's side
/// (registering the waker, taking frames, recording what was written) is
/// not part of this crate's API: the server crate reaches it through a
/// hidden seam that may change in any release.
///
/// An outbox made [`with_budget`](Outbox::with_budget) charges every queued
/// byte to the instance's [`Budget`] until it is written or dropped. Its
/// queue lives in a [`Lane`] (its own, unless it was made in one with
/// [`in_lane`](Outbox::in_lane)): the lock of an outbox is its lane's.
pub struct Outbox {
    id: SocketId,
    limit: usize,
    budget: Option<Arc<Budget>>,
    /// What was agreed with permessage-deflate: which frame of a
    /// publication this connection takes, and how its messages inflate.
    deflate: Option<Agreed>,
    lane: Arc<Lane>,
    /// The queue, opened by the lane's key.
    state: QCell<OutboxState>,
}

/// What is to be done once the lane's lock is released, after queuing one
/// frame (frames are dropped then too: the last copy of one may run its
/// owner's code). Made only when there is something to do.
#[derive(Default)]
pub(crate) struct Enqueued {
    /// The writer to wake.
    pub(crate) wake: Option<Waker>,
    /// Bytes dropped by an overflow, to release from the budget.
    pub(crate) dropped: usize,
    /// The frames an overflow dropped.
    pub(crate) freed: Option<VecDeque<Frame>>,
    /// The frame not queued.
    pub(crate) rejected: Option<Frame>,
}

impl Outbox {
    /// An empty outbox for connection `id`, holding at most `limit` bytes,
    /// charged to no budget.
    pub fn new(id: SocketId, limit: usize) -> Self {
        Self::build(id, limit, None, Arc::default())
    }

    /// An empty outbox whose queued bytes count against `budget` (the
    /// instance's, [`Hub::budget`](crate::Hub::budget)).
    pub fn with_budget(id: SocketId, limit: usize, budget: Arc<Budget>) -> Self {
        Self::build(id, limit, Some(budget), Arc::default())
    }

    /// [`with_budget`](Self::with_budget), its queue kept in `lane` (the
    /// lane of the writer that serves the connection). There is no form
    /// without a budget: a lane is a server's, and so is its budget.
    pub fn in_lane(id: SocketId, limit: usize, budget: Arc<Budget>, lane: Arc<Lane>) -> Self {
        Self::build(id, limit, Some(budget), lane)
    }

    fn build(id: SocketId, limit: usize, budget: Option<Arc<Budget>>, lane: Arc<Lane>) -> Self {
        Self {
            id,
            limit,
            budget,
            deflate: None,
            state: lane.cell(OutboxState::new()),
            lane,
        }
    }

    /// The connection this outbox belongs to.
    pub fn id(&self) -> &SocketId {
        &self.id
    }

    /// The lane its queue is kept in.
    pub fn lane(&self) -> &Arc<Lane> {
        &self.lane
    }

    /// This connection agreed permessage-deflate: messages worth it reach
    /// it compressed.
    pub fn with_deflate(mut self, agreed: Agreed) -> Self {
        self.deflate = Some(agreed);
        self
    }

    /// What was agreed with permessage-deflate, if it was.
    pub fn deflate(&self) -> Option<Agreed> {
        self.deflate
    }

    /// The server window agreed with permessage-deflate, 0 without it.
    pub(crate) fn deflate_bits(&self) -> u8 {
        self.deflate.map_or(0, |a| a.server_window_bits)
    }

    pub(crate) fn budget(&self) -> Option<&Arc<Budget>> {
        self.budget.as_ref()
    }

    fn release(&self, bytes: usize) {
        if let Some(b) = &self.budget {
            b.release(bytes);
        }
    }

    /// Runs `f` on this outbox's queue, under its lane's lock.
    fn with<R>(&self, f: impl FnOnce(&mut OutboxState) -> R) -> R {
        f(self.lane.lock().rw(&self.state))
    }

    /// Queues an encoded frame. Fails with [`Push::Overflow`] when the bytes
    /// already queued plus this frame exceed the limit.
    pub fn push(&self, frame: impl Into<Frame>) -> Push {
        let frame = frame.into();
        let len = frame.len();
        let push = self.enqueue(frame, &mut None);
        if push == Push::Queued {
            if let Some(b) = &self.budget {
                b.charge(len);
            }
        }
        push
    }

    /// [`push`](Self::push) without charging the budget. `now` is a
    /// reading of [`clock::now`], taken if the queue was empty and none
    /// was given.
    pub(crate) fn enqueue(&self, frame: Frame, now: &mut Option<u32>) -> Push {
        let mut later = None;
        let push = {
            let mut key = self.lane.lock();
            self.enqueue_in(&mut key, frame, now, &mut later)
        };
        if let Some(done) = later {
            self.after(done);
        }
        push
    }

    /// What is left of an [`enqueue_in`](Self::enqueue_in) once the lane's
    /// lock is released: the budget released, the writer woken.
    pub(crate) fn after(&self, done: Enqueued) {
        self.release(done.dropped);
        wake(done.wake);
        drop((done.freed, done.rejected));
    }

    /// Queues `frame` with `key`, this outbox's lane's; what is to be done
    /// once the lock is released, if anything, goes in `later` (the hub's
    /// fan-out queues a publication to every subscriber of a lane under
    /// one lock). `now` is the fan-out's reading of [`clock::now`], taken
    /// by the first queue that was empty and shared by the rest.
    pub(crate) fn enqueue_in(
        &self,
        key: &mut Key,
        frame: Frame,
        now: &mut Option<u32>,
        later: &mut Option<Enqueued>,
    ) -> Push {
        let st = key.rw(&self.state);
        if st.status != OutboxStatus::Open {
            *later = Some(Enqueued {
                rejected: Some(frame),
                ..Enqueued::default()
            });
            return Push::Closed;
        }
        // One frame larger than the limit still goes out on an empty queue:
        // the limit bounds how far a reader falls behind, not message size.
        if st.queued_bytes > 0 && st.queued_bytes + frame.len() > self.limit {
            *later = Some(Enqueued {
                rejected: Some(frame),
                ..st.overflow()
            });
            return Push::Overflow;
        }
        if st.frames.is_empty() {
            st.since = *now.get_or_insert_with(clock::now);
            if let Some(w) = &st.waker {
                *later = Some(Enqueued {
                    wake: Some(w.clone()),
                    ..Enqueued::default()
                });
            }
        }
        st.queued_bytes += frame.len();
        st.frames.push_back(frame);
        Push::Queued
    }

    /// Asks the writer to send `code`/`reason` after what is already queued.
    /// Returns `false` if the outbox was already closing.
    pub fn close(&self, code: u16, reason: &str) -> bool {
        let waker = self.with(|st| {
            if st.status != OutboxStatus::Open {
                return None;
            }
            st.status = OutboxStatus::Closing {
                code,
                reason: reason.into(),
            };
            Some(st.waker.clone())
        });
        let Some(waker) = waker else {
            return false;
        };
        wake(waker);
        true
    }

    /// Drops what is queued and asks the writer to close with 1013, as if
    /// the reader had overflowed its queue (the budget sheds readers that
    /// are behind this way). A connection already closing has its queue
    /// dropped too (its reader is not taking it). False if it had
    /// overflowed already, or was shut.
    pub fn overflow(&self) -> bool {
        let done = self.with(|st| {
            let nothing_to_drop = st.status != OutboxStatus::Open && st.queued_bytes == 0;
            if st.status == OutboxStatus::Overflowed || nothing_to_drop {
                return None;
            }
            Some(st.overflow())
        });
        let Some(done) = done else {
            return false;
        };
        self.after(done);
        true
    }

    /// One scan of the budget: true if, since the previous scan, less left
    /// this queue than it held then (its backlog is older than the time
    /// between the scans: the reader stopped or trickles). Remembers what
    /// it sees for the next scan.
    pub(crate) fn behind_since_last_scan(&self, judge: bool) -> bool {
        self.with(|st| {
            let now = (
                st.dequeued,
                u32::try_from(st.queued_bytes).unwrap_or(u32::MAX),
            );
            // A first scan compares with (0, 0): `x < 0` never holds.
            let (dequeued, queued) = st.mark;
            let behind = judge && st.queued_bytes > 0 && now.0.wrapping_sub(dequeued) < queued;
            st.mark = now;
            behind
        })
    }

    /// Marks the outbox closed for good (the connection ended): later pushes
    /// are dropped, queued frames are freed (and released from the budget)
    /// and a registered waker is dropped.
    pub fn shut(&self) {
        let (frames, released, waker) = self.with(|st| {
            if st.status == OutboxStatus::Open {
                st.status = OutboxStatus::Closing {
                    code: close_code::NORMAL,
                    reason: Box::default(),
                };
            }
            (
                std::mem::take(&mut st.frames),
                std::mem::take(&mut st.queued_bytes),
                st.waker.take(),
            )
        });
        drop(frames);
        self.release(released);
        drop(waker);
    }

    /// The writer to wake: when the queue becomes non-empty, when a close is
    /// requested and when the queue overflows (and at once if there is
    /// already something to do). [`shut`](Self::shut) drops it. Both the
    /// waker replaced and the one woken are dropped or called after the
    /// lock is released (a waker may use the outbox, and dropping the last
    /// clone of one may run arbitrary code).
    pub(crate) fn set_waker(&self, waker: Option<Waker>) {
        let (old, now) = self.with(|st| {
            let old = std::mem::replace(&mut st.waker, waker);
            let now = (!st.frames.is_empty() || st.status != OutboxStatus::Open)
                .then(|| st.waker.clone())
                .flatten();
            (old, now)
        });
        drop(old);
        wake(now);
    }

    /// Moves every queued frame to the back of `into` and returns the status.
    #[cfg(test)]
    pub(crate) fn take(&self, into: &mut VecDeque<Frame>) -> OutboxStatus {
        self.written_and_take(0, into).status
    }

    /// Records that `n` queued bytes left the queue: written to the socket,
    /// or dropped by the writer.
    pub(crate) fn written(&self, n: usize) {
        let released = self.with(|st| st.uncount(n));
        self.release(released);
    }

    /// [`written`](Self::written) and [`take`](Self::take) under one lock:
    /// records that `n` bytes reached the socket, then moves every queued
    /// frame to the back of `into`.
    pub(crate) fn written_and_take(&self, n: usize, into: &mut VecDeque<Frame>) -> Taken {
        let (released, taken) = self.with(|st| {
            let released = st.uncount(n);
            let since = (!st.frames.is_empty()).then_some(st.since);
            if into.is_empty() {
                std::mem::swap(into, &mut st.frames);
            } else {
                into.extend(st.frames.drain(..));
            }
            let taken = Taken {
                status: st.status.clone(),
                since,
                queued_bytes: st.queued_bytes,
            };
            (released, taken)
        });
        self.release(released);
        taken
    }

    /// Bytes queued and not yet written.
    pub fn queued_bytes(&self) -> usize {
        self.with(|st| st.queued_bytes)
    }

    /// The current status.
    pub fn status(&self) -> OutboxStatus {
        self.with(|st| st.status.clone())
    }
}

/// What the writer learns from one take (reached through the hidden
/// `__private` seam only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Taken {
    /// The outbox's status.
    pub status: OutboxStatus,
    /// When the oldest frame taken was queued (a `clock::now` reading), if
    /// any frame was taken.
    pub since: Option<u32>,
    /// Bytes queued and not yet written, after the take (including what
    /// the writer holds and has not finished writing).
    pub queued_bytes: usize,
}

/// A compact process clock: microseconds since the first reading, modulo
/// 2^32 (it wraps after 71 minutes; only differences of readings taken
/// less than that apart mean anything, computed with `wrapping_sub`).
pub(crate) mod clock {
    use std::sync::OnceLock;
    use std::time::Instant;

    static EPOCH: OnceLock<Instant> = OnceLock::new();

    /// Microseconds since the process epoch, modulo 2^32.
    pub(crate) fn now() -> u32 {
        EPOCH.get_or_init(Instant::now).elapsed().as_micros() as u32
    }
}

fn wake(waker: Option<Waker>) {
    if let Some(w) = waker {
        w.wake();
    }
}

impl Drop for Outbox {
    fn drop(&mut self) {
        let left = std::mem::take(&mut self.state.get_mut().queued_bytes);
        self.release(left);
    }
}

impl std::fmt::Debug for Outbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbox")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests;
