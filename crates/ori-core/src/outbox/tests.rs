//! Unit tests of the outbox.

use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;

use super::*;

fn drain(o: &Outbox) -> Vec<Frame> {
    let mut q = VecDeque::new();
    o.take(&mut q);
    q.into_iter().collect()
}

struct WakeCount(AtomicUsize);

impl std::task::Wake for WakeCount {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

fn wake_counter() -> Arc<WakeCount> {
    Arc::new(WakeCount(Default::default()))
}

#[test]
fn a_registered_waker_is_woken_once_per_batch_and_dropped_on_shut() {
    let wakes = wake_counter();
    let count = || wakes.0.load(Ordering::Relaxed);
    let o = Outbox::new(SocketId::new(), 1 << 20);
    o.set_waker(Some(Waker::from(wakes.clone())));
    assert_eq!(count(), 0, "nothing to do yet");
    o.push(Bytes::from_static(b"a"));
    o.push(Bytes::from_static(b"bc"));
    assert_eq!(
        count(),
        1,
        "one wake-up for frames pushed before the writer ran"
    );
    let mut q = VecDeque::new();
    assert_eq!(o.take(&mut q), OutboxStatus::Open);
    assert_eq!(q.len(), 2);
    assert_eq!(o.queued_bytes(), 3);
    o.push(Bytes::from_static(b"d"));
    assert_eq!(count(), 2);
    q.clear();
    assert_eq!(o.written_and_take(3, &mut q).status, OutboxStatus::Open);
    assert_eq!((q.len(), o.queued_bytes()), (1, 1));
    assert!(o.close(1000, "bye"));
    assert_eq!(count(), 3, "a close wakes the writer");
    o.shut();
    assert_eq!(Arc::strong_count(&wakes), 1, "shut drops the waker");
    assert_eq!(o.push(Bytes::from_static(b"x")), Push::Closed);
}

#[test]
fn a_waker_set_while_work_is_pending_is_woken_at_once() {
    let o = Outbox::new(SocketId::new(), 1 << 20);
    o.push(Bytes::from_static(b"early"));
    let wakes = wake_counter();
    o.set_waker(Some(Waker::from(wakes.clone())));
    assert_eq!(wakes.0.load(Ordering::Relaxed), 1);
    // Overflow wakes it too.
    let small = Outbox::new(SocketId::new(), 4);
    let wakes = wake_counter();
    small.set_waker(Some(Waker::from(wakes.clone())));
    small.push(Bytes::from_static(b"1234"));
    assert_eq!(small.push(Bytes::from_static(b"5")), Push::Overflow);
    assert_eq!(wakes.0.load(Ordering::Relaxed), 2);
    assert_eq!(small.status(), OutboxStatus::Overflowed);
}

/// A waker that pushes into the outbox it belongs to: it would deadlock
/// if it were called under the outbox's lock.
struct Reentrant(std::sync::OnceLock<Arc<Outbox>>, AtomicUsize);

impl std::task::Wake for Reentrant {
    fn wake(self: Arc<Self>) {
        if let Some(o) = self.0.get() {
            self.1.fetch_add(1, Ordering::Relaxed);
            let _ = o.queued_bytes();
            let _ = o.status();
        }
    }
}

#[test]
fn the_waker_runs_after_the_lock_is_released() {
    let o = Arc::new(Outbox::new(SocketId::new(), 8));
    let w = Arc::new(Reentrant(Default::default(), AtomicUsize::new(0)));
    let _ = w.0.set(o.clone());
    o.set_waker(Some(Waker::from(w.clone())));
    o.push(Bytes::from_static(b"1234"));
    o.push(Bytes::from_static(b"56789"));
    assert!(o.close(1000, "") || o.status() == OutboxStatus::Overflowed);
    assert!(w.1.load(Ordering::Relaxed) >= 2);
    o.shut();
}

#[test]
fn written_bytes_free_queue_space() {
    let o = Outbox::new(SocketId::new(), 10);
    assert_eq!(o.push(Bytes::from_static(b"123456")), Push::Queued);
    let taken = drain(&o);
    assert_eq!(o.queued_bytes(), 6);
    o.written(taken[0].len());
    assert_eq!(o.push(Bytes::from_static(b"123456")), Push::Queued);
    assert!(o.close(1000, "bye"));
    assert!(!o.close(1000, "again"));
    assert_eq!(o.push(Bytes::from_static(b"x")), Push::Closed);
}

#[test]
fn the_budget_holds_exactly_what_is_queued() {
    let budget = Arc::new(Budget::new(1 << 20));
    let o = Outbox::with_budget(SocketId::new(), 100, budget.clone());
    o.push(Bytes::from_static(b"0123456789"));
    o.push(Bytes::from_static(b"abcde"));
    assert_eq!(budget.used(), 15);
    let mut q = VecDeque::new();
    o.take(&mut q);
    // More written than queued (the writer's own close frame): only
    // what was charged is released.
    o.written(12);
    assert_eq!(budget.used(), 3);
    o.push(Bytes::from_static(b"xyz"));
    assert!(o.overflow());
    assert_eq!(budget.used(), 3, "frames not taken are released at once");
    o.shut();
    assert_eq!(budget.used(), 0);
    let dropped = Outbox::with_budget(SocketId::new(), 100, budget.clone());
    dropped.push(Bytes::from_static(b"left behind"));
    drop(dropped);
    assert_eq!(budget.used(), 0, "a dropped outbox releases its bytes");
}

#[test]
fn a_queue_is_behind_only_if_it_did_not_drain_what_it_held_at_the_last_scan() {
    let o = Outbox::new(SocketId::new(), 1 << 20);
    o.push(Bytes::from_static(b"0123456789"));
    assert!(!o.behind_since_last_scan(true), "the first scan only looks");
    // A reader that keeps up: what was queued then has left since, even
    // though more is queued now.
    o.written(10);
    o.push(Bytes::from_static(b"abcdefghijklmnopqrst"));
    assert!(!o.behind_since_last_scan(true));
    // A reader that trickles: 5 of the 20 bytes left since.
    o.written(5);
    assert!(!o.behind_since_last_scan(false), "a stale mark only looks");
    o.written(0);
    assert!(o.behind_since_last_scan(true));
    // An empty queue is never behind.
    o.written(15);
    assert!(!o.behind_since_last_scan(true));
}

#[test]
fn a_take_tells_when_the_oldest_frame_was_queued_and_what_is_left() {
    let o = Outbox::new(SocketId::new(), 1 << 20);
    let mut q = VecDeque::new();
    let empty = o.written_and_take(0, &mut q);
    assert_eq!((empty.since, empty.queued_bytes), (None, 0));
    assert_eq!(
        o.enqueue(Bytes::from_static(b"abc").into(), &mut Some(1_000)),
        Push::Queued
    );
    // Later frames do not move the stamp: it is the oldest frame's.
    assert_eq!(
        o.enqueue(Bytes::from_static(b"de").into(), &mut Some(2_000)),
        Push::Queued
    );
    let taken = o.written_and_take(0, &mut q);
    assert_eq!((taken.since, taken.queued_bytes), (Some(1_000), 5));
    // The queue is empty again: the next frame stamps it anew.
    o.push(Bytes::from_static(b"f"));
    let before = clock::now();
    let taken = o.written_and_take(5, &mut q);
    let since = taken.since.unwrap();
    assert!(before.wrapping_sub(since) < 60_000_000, "stamped just now");
    assert_eq!(taken.queued_bytes, 1);
}

#[test]
fn a_waker_set_with_work_pending_may_use_the_outbox() {
    let o = Arc::new(Outbox::new(SocketId::new(), 1 << 20));
    o.push(Bytes::from_static(b"early"));
    let w = Arc::new(Reentrant(Default::default(), AtomicUsize::new(0)));
    let _ = w.0.set(o.clone());
    // Woken at once (work is pending): it would deadlock under the lock.
    o.set_waker(Some(Waker::from(w.clone())));
    assert_eq!(w.1.load(Ordering::Relaxed), 1);
    // Replacing it drops the old one outside the lock too.
    o.set_waker(None);
    o.shut();
}

/// Bytes whose owner, when the last copy goes, reads an outbox (which
/// takes that outbox's lane's lock: dropped under it, it would deadlock).
struct ReadsOnDrop(Arc<Outbox>, Arc<AtomicUsize>);

impl AsRef<[u8]> for ReadsOnDrop {
    fn as_ref(&self) -> &[u8] {
        b"frame"
    }
}

impl Drop for ReadsOnDrop {
    fn drop(&mut self) {
        self.1.store(self.0.queued_bytes() + 1, Ordering::Relaxed);
    }
}

#[test]
fn frames_refused_or_dropped_are_freed_after_the_lanes_lock() {
    let lane = Arc::new(Lane::new());
    let budget = Arc::new(Budget::default());
    let make = || {
        Arc::new(Outbox::in_lane(
            SocketId::new(),
            8,
            budget.clone(),
            lane.clone(),
        ))
    };
    let (closed, full, queued, other) = (make(), make(), make(), make());
    closed.shut();
    full.push(Bytes::from_static(b"1234567"));
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let seen = Arc::new(AtomicUsize::new(0));
        let frame = || Bytes::from_owner(ReadsOnDrop(other.clone(), seen.clone()));
        let mut freed = Vec::new();
        // Refused: the outbox is shut.
        freed.push((closed.push(frame()), seen.swap(0, Ordering::Relaxed)));
        // Refused: over the limit (and the queue dropped with it).
        freed.push((full.push(frame()), seen.swap(0, Ordering::Relaxed)));
        // Queued, then dropped by an overflow.
        let push = queued.push(frame());
        queued.push(Bytes::from_static(b"1234567"));
        freed.push((push, seen.swap(0, Ordering::Relaxed)));
        tx.send(freed).unwrap();
    });
    let freed = rx
        .recv_timeout(std::time::Duration::from_secs(10))
        .expect("no frame was freed under the lane's lock");
    assert_eq!(
        freed,
        vec![(Push::Closed, 1), (Push::Overflow, 1), (Push::Queued, 1)],
        "each frame freed once its push was over"
    );
}
