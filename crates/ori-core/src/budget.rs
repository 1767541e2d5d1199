//! The instance's outbound budget.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::Notify;

/// The default limit: bytes queued to all connections of an instance.
pub const DEFAULT_BUDGET: usize = 8 << 20;
/// The default time a publisher waits for room before it fails.
pub const DEFAULT_WAIT_TIMEOUT: Duration = Duration::from_secs(5);
/// The default age a connection's backlog may reach, while the budget is
/// spent and someone waits, before the connection is closed with 1013.
pub const DEFAULT_SHED_AFTER: Duration = Duration::from_millis(250);

/// The shortest [`Budget::shed_after`].
pub const MIN_SHED_AFTER: Duration = Duration::from_millis(10);

/// The outbound budget of one instance: how many bytes may wait, summed over
/// every connection's outbound queue, before publishers are slowed down.
///
/// A publish never waits for a socket. It queues one shared frame per
/// subscriber and returns; the writers put the frames on the wire later. The
/// budget bounds how far the writers may fall behind: every byte queued to
/// an [`Outbox`](crate::Outbox) of the hub is charged to it and released once
/// written (or dropped). While more is queued than the limit,
/// [`Hub::reserve`](crate::Hub::reserve) waits: an HTTP handler's publish,
/// a service's, the Redis provider's reader. So under overload the
/// producers slow down to the pace of delivery, and the lag from publish to
/// socket stays about `limit / write rate`, instead of the queues growing.
///
/// The bound is soft by the publishes already admitted: a publish that
/// found room queues its whole fan-out, so the queues can exceed the limit
/// by one fan-out per concurrent publisher.
///
/// Shared by the hub and every outbox charged to it; the counters are
/// readable at any time (for `/metrics`).
#[derive(Debug)]
pub struct Budget {
    limit: AtomicUsize,
    /// Bytes queued. Signed: a fan-out charges its deliveries after
    /// queueing them, so a fast writer can release first for a moment.
    used: AtomicI64,
    wait_timeout_ms: AtomicU64,
    shed_after_ms: AtomicU64,
    /// Woken when `used` falls to the limit or below (or the limit grows).
    room: Notify,
    /// Waiters take turns, first come first served: only the first waits
    /// for room, so a release wakes one publisher, not all of them, and no
    /// publisher is overtaken again and again.
    gate: tokio::sync::Mutex<()>,
    /// One waiter at a time scans the queues.
    shedding: AtomicBool,
    /// When the queues were last scanned for readers that are behind.
    last_scan: std::sync::Mutex<Option<tokio::time::Instant>>,
    waits: AtomicU64,
    waiting: AtomicU64,
    waited_us: AtomicU64,
    timeouts: AtomicU64,
    shed: AtomicU64,
}

impl Default for Budget {
    fn default() -> Self {
        Self::new(DEFAULT_BUDGET)
    }
}

impl Budget {
    /// A budget of `limit` bytes, with the default wait timeout and shedding
    /// delay.
    pub fn new(limit: usize) -> Self {
        Self {
            limit: AtomicUsize::new(limit),
            used: AtomicI64::new(0),
            wait_timeout_ms: AtomicU64::new(DEFAULT_WAIT_TIMEOUT.as_millis() as u64),
            shed_after_ms: AtomicU64::new(DEFAULT_SHED_AFTER.as_millis() as u64),
            room: Notify::new(),
            gate: tokio::sync::Mutex::const_new(()),
            shedding: AtomicBool::new(false),
            last_scan: std::sync::Mutex::new(None),
            waits: AtomicU64::new(0),
            waiting: AtomicU64::new(0),
            waited_us: AtomicU64::new(0),
            timeouts: AtomicU64::new(0),
            shed: AtomicU64::new(0),
        }
    }

    /// The limit in bytes.
    pub fn limit(&self) -> usize {
        self.limit.load(Ordering::Relaxed)
    }

    /// Changes the limit; waiters re-check at once.
    pub fn set_limit(&self, limit: usize) {
        self.limit.store(limit, Ordering::Relaxed);
        self.room.notify_waiters();
    }

    /// How long a publisher waits for room before it fails with
    /// [`PublishError::Overloaded`](crate::PublishError::Overloaded).
    pub fn wait_timeout(&self) -> Duration {
        Duration::from_millis(self.wait_timeout_ms.load(Ordering::Relaxed))
    }

    /// Sets [`wait_timeout`](Self::wait_timeout) (millisecond resolution).
    pub fn set_wait_timeout(&self, timeout: Duration) {
        self.wait_timeout_ms
            .store(timeout.as_millis() as u64, Ordering::Relaxed);
    }

    /// How often waiters scan the queues while the budget is spent; a
    /// connection that did not drain what it held at the previous scan is
    /// closed with 1013 (see [`Hub::shed`](crate::Hub::shed)).
    pub fn shed_after(&self) -> Duration {
        Duration::from_millis(self.shed_after_ms.load(Ordering::Relaxed))
    }

    /// Sets [`shed_after`](Self::shed_after) (millisecond resolution, at
    /// least [`MIN_SHED_AFTER`]: scans closer together would find readers
    /// that keep up behind).
    pub fn set_shed_after(&self, after: Duration) {
        let after = after.max(MIN_SHED_AFTER);
        self.shed_after_ms
            .store(after.as_millis() as u64, Ordering::Relaxed);
    }

    /// Bytes queued to the connections charged to this budget.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed).max(0) as usize
    }

    /// Whether a publish may go ahead now (no more than the limit queued).
    pub fn has_room(&self) -> bool {
        self.used.load(Ordering::Relaxed) <= self.limit_i64()
    }

    fn limit_i64(&self) -> i64 {
        i64::try_from(self.limit()).unwrap_or(i64::MAX)
    }

    /// Whether a publish may go ahead without joining the waiters: there is
    /// room and nobody waits for it (a newcomer does not overtake them).
    pub fn may_pass(&self) -> bool {
        self.waiting.load(Ordering::Relaxed) == 0 && self.has_room()
    }

    pub(crate) fn gate(&self) -> &tokio::sync::Mutex<()> {
        &self.gate
    }

    /// Publishes (and Redis reads) that found the budget spent and waited
    /// (or wait now).
    pub fn waits(&self) -> u64 {
        self.waits.load(Ordering::Relaxed)
    }

    /// Publishers (and Redis readers) waiting for room now.
    pub fn waiting(&self) -> u64 {
        self.waiting.load(Ordering::Relaxed)
    }

    /// Total time spent waiting for room.
    pub fn waited(&self) -> Duration {
        Duration::from_micros(self.waited_us.load(Ordering::Relaxed))
    }

    /// Publishes that gave up after the wait timeout.
    pub fn timeouts(&self) -> u64 {
        self.timeouts.load(Ordering::Relaxed)
    }

    /// Connections closed (1013) because the budget was spent and their
    /// backlog older than [`shed_after`](Self::shed_after).
    pub fn shed_count(&self) -> u64 {
        self.shed.load(Ordering::Relaxed)
    }

    pub(crate) fn charge(&self, bytes: usize) {
        if bytes > 0 {
            self.used
                .fetch_add(i64::try_from(bytes).unwrap_or(i64::MAX), Ordering::Relaxed);
        }
    }

    pub(crate) fn release(&self, bytes: usize) {
        if bytes == 0 {
            return;
        }
        let bytes = i64::try_from(bytes).unwrap_or(i64::MAX);
        let before = self.used.fetch_sub(bytes, Ordering::AcqRel);
        let limit = self.limit_i64();
        if before > limit && before.saturating_sub(bytes) <= limit {
            self.room.notify_waiters();
        }
    }

    pub(crate) fn room(&self) -> &Notify {
        &self.room
    }

    pub(crate) fn begin_wait(&self) {
        self.waits.fetch_add(1, Ordering::Relaxed);
        self.waiting.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn end_wait(&self, waited: Duration, timed_out: bool) {
        self.waiting.fetch_sub(1, Ordering::Relaxed);
        self.waited_us
            .fetch_add(waited.as_micros() as u64, Ordering::Relaxed);
        if timed_out {
            self.timeouts.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Takes the right to scan the queues; `None` while another waiter
    /// scans, or when the last scan was less than `shed_after` ago (a scan
    /// compares each queue with what the previous one saw, so they must be
    /// that far apart). With the guard: whether the previous scan is recent
    /// enough (within twice `shed_after`) to judge by; an older one only
    /// sets new marks.
    pub(crate) fn try_shed(&self) -> Option<(ShedGuard<'_>, bool)> {
        if self.shedding.swap(true, Ordering::AcqRel) {
            return None;
        }
        let guard = ShedGuard(self);
        let now = tokio::time::Instant::now();
        let mut last = self
            .last_scan
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let after = self.shed_after();
        if last.is_some_and(|t| now < t + after) {
            return None;
        }
        let judge = last.is_some_and(|t| now <= t + 2 * after);
        *last = Some(now);
        drop(last);
        Some((guard, judge))
    }

    pub(crate) fn count_shed(&self, connections: u64) {
        self.shed.fetch_add(connections, Ordering::Relaxed);
    }
}

/// Held while one waiter scans the queues.
pub(crate) struct ShedGuard<'a>(&'a Budget);

impl Drop for ShedGuard<'_> {
    fn drop(&mut self) {
        self.0.shedding.store(false, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_is_the_limit_or_less_and_a_release_below_it_wakes_waiters() {
        let b = Budget::new(100);
        assert!(b.has_room());
        b.charge(100);
        assert!(b.has_room(), "exactly the limit still has room");
        b.charge(1);
        assert!(!b.has_room());
        let woken = b.room().notified();
        let mut woken = std::pin::pin!(woken);
        woken.as_mut().enable();
        b.release(1);
        assert!(b.has_room());
        assert!(futures_util::FutureExt::now_or_never(woken).is_some());
        assert_eq!(b.used(), 100);
    }

    #[test]
    fn a_limit_past_i64_means_no_limit() {
        let b = Budget::new(usize::MAX);
        b.charge(1 << 40);
        assert!(b.has_room());
        b.release(1 << 40);
        b.set_shed_after(Duration::ZERO);
        assert_eq!(b.shed_after(), MIN_SHED_AFTER);
    }

    #[test]
    fn a_release_before_its_charge_does_not_underflow() {
        let b = Budget::new(10);
        b.release(5);
        assert_eq!(b.used(), 0);
        assert!(b.has_room());
        b.charge(5);
        assert_eq!(b.used(), 0);
    }
}
