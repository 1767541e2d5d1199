//! The fan-out of one frame to many outboxes: one lock per run of
//! subscribers in one lane, not one per subscriber.

use std::sync::atomic::Ordering;
use std::sync::{Arc, MutexGuard};

use super::frames::Frames;
use super::Hub;
use crate::outbox::{Enqueued, Key};
use crate::{Frame, Lane, Outbox, Push};

/// What one fan-out did, counted as it goes and added to the hub's
/// counters and budget once at the end.
#[derive(Default)]
struct Tally {
    delivered: u64,
    overflowed: u64,
    /// Bytes queued to outboxes charged to the hub's budget.
    charged: usize,
    /// At most one clock reading per fan-out, by the first queue that was
    /// empty: when it was queued, for the writers' delivery-lag figure (the
    /// other queues keep the instant of their oldest frame).
    now: Option<u32>,
}

impl Hub {
    /// Queues the frame of `frames` to each of `outboxes`; returns how many
    /// took it.
    ///
    /// The lane of the outbox last queued to stays locked while the next
    /// outboxes are in it too, for at most [`RUN`] of them: one lock per
    /// run of outboxes in one lane (a topic's subscribers are kept ordered
    /// by lane). No frame is compressed under the lock (the lock is let go
    /// first). What must wait until the lock is released (the writers to
    /// wake, the bytes of an overflow to release from the budget, frames to
    /// drop) is done each time it is.
    pub(super) fn fan_out<'a>(
        &self,
        outboxes: impl Iterator<Item = &'a Outbox>,
        frames: &mut Frames<'_>,
    ) -> usize {
        let mut tally = Tally::default();
        let mut after: Vec<(&Outbox, Enqueued)> = Vec::new();
        let mut held: Option<(&Lane, MutexGuard<'_, Key>, usize)> = None;
        for outbox in outboxes {
            let keep = held
                .as_ref()
                .is_some_and(|(lane, _, run)| std::ptr::eq(*lane, &**outbox.lane()) && *run < RUN);
            if !keep || !frames.is_cheap(outbox) {
                release(&mut held, &mut after);
            }
            let frame = frames.for_outbox(outbox);
            let (_, key, run) =
                held.get_or_insert_with(|| (outbox.lane(), outbox.lane().lock(), 0));
            *run += 1;
            self.deliver(outbox, key, frame, &mut tally, &mut after);
        }
        release(&mut held, &mut after);
        self.inner.budget.charge(tally.charged);
        let m = &self.inner.metrics;
        m.deliveries.fetch_add(tally.delivered, Ordering::Relaxed);
        if tally.overflowed > 0 {
            m.slow_consumer_closes
                .fetch_add(tally.overflowed, Ordering::Relaxed);
        }
        tally.delivered as usize
    }

    /// Queues `frame` to `outbox`, with its lane's `key`.
    fn deliver<'a>(
        &self,
        outbox: &'a Outbox,
        key: &mut Key,
        frame: Frame,
        tally: &mut Tally,
        after: &mut Vec<(&'a Outbox, Enqueued)>,
    ) {
        let len = frame.len();
        let mut later = None;
        match outbox.enqueue_in(key, frame, &mut tally.now, &mut later) {
            Push::Queued => {
                tally.delivered += 1;
                match outbox.budget() {
                    // The deliveries charged to the hub's budget are charged
                    // at once, after the loop: one atomic update per fan-out,
                    // not one per subscriber.
                    Some(b) if Arc::ptr_eq(b, &self.inner.budget) => tally.charged += len,
                    Some(b) => b.charge(len),
                    None => {}
                }
            }
            Push::Overflow => tally.overflowed += 1,
            Push::Closed => {}
        }
        if let Some(done) = later {
            after.push((outbox, done));
        }
    }
}

/// Outboxes queued to under one lock at most: a fan-out to a large topic
/// lets the lane's writer (and its other producers) in between runs.
const RUN: usize = 256;

/// Lets go of the lane held, then does what waited for that.
fn release(
    held: &mut Option<(&Lane, MutexGuard<'_, Key>, usize)>,
    after: &mut Vec<(&Outbox, Enqueued)>,
) {
    *held = None;
    for (outbox, done) in after.drain(..) {
        outbox.after(done);
    }
}
