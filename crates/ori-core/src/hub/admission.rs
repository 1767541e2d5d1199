//! Admission to the fan-out: a publish waits for room in the instance's
//! outbound budget, first come first served, and readers that stopped are
//! shed so that they cannot hold the budget.

use std::pin::pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::Hub;
use crate::{Budget, Outbox};

/// One wait for room, counted in the budget's figures while it lasts.
struct Waiting<'a> {
    budget: &'a Budget,
    started: Instant,
    timed_out: bool,
}

impl<'a> Waiting<'a> {
    fn new(budget: &'a Budget, started: Instant) -> Self {
        budget.begin_wait();
        Self {
            budget,
            started,
            timed_out: false,
        }
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.budget.end_wait(self.started.elapsed(), self.timed_out);
    }
}

/// [`Hub::reserve`] gave up: the outbound budget stayed spent for its wait
/// timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Overloaded {
    /// How long the publisher waited.
    pub waited: Duration,
}

impl Hub {
    /// Waits until the outbound budget has room (at once when it has): what
    /// every publish does before it queues its fan-out, so that publishers
    /// slow down to the pace of delivery instead of growing the queues.
    ///
    /// Gives up after the budget's [wait timeout](Budget::wait_timeout).
    /// While it waits, every [`shed_after`](Budget::shed_after) it
    /// [sheds](Self::shed) the connections whose readers stopped, so that
    /// they cannot stall everyone else.
    ///
    /// ```
    /// # futures_util::future::FutureExt::now_or_never(async {
    /// let hub = ori_core::Hub::new();
    /// assert!(hub.reserve().await.is_ok()); // nothing queued: no wait
    /// # }).unwrap();
    /// ```
    pub async fn reserve(&self) -> Result<(), Overloaded> {
        if self.inner.budget.may_pass() {
            return Ok(());
        }
        let timeout = self.inner.budget.wait_timeout();
        match self.wait_for_room(Some(timeout)).await {
            Ok(()) => Ok(()),
            Err(waited) => Err(Overloaded { waited }),
        }
    }

    /// [`reserve`](Self::reserve) without a timeout: for a reader that
    /// cannot fail its input and must stop reading instead (the Redis
    /// provider's subscription).
    pub async fn room(&self) {
        if !self.inner.budget.may_pass() {
            let _ = self.wait_for_room(None).await;
        }
    }

    async fn wait_for_room(&self, timeout: Option<Duration>) -> Result<(), Duration> {
        let budget = &*self.inner.budget;
        let started = Instant::now();
        let deadline = timeout.map(|t| started + t);
        let shed_at = started + budget.shed_after();
        // Counted out however the wait ends, also when it is dropped.
        let mut waiting = Waiting::new(budget, started);
        // First come, first served: the others queue behind whoever waits.
        let _turn = match deadline {
            Some(d) => match tokio::time::timeout_at(d, budget.gate().lock()).await {
                Ok(turn) => turn,
                Err(_) => {
                    waiting.timed_out = true;
                    return Err(started.elapsed());
                }
            },
            None => budget.gate().lock().await,
        };
        let mut shed_at = shed_at.max(Instant::now());
        loop {
            let notified = pin!(budget.room().notified());
            let mut notified = notified;
            notified.as_mut().enable();
            if budget.has_room() {
                return Ok(());
            }
            let wake_at = deadline.map_or(shed_at, |d| d.min(shed_at));
            tokio::select! {
                () = notified => continue,
                () = tokio::time::sleep_until(wake_at) => {}
            }
            let now = Instant::now();
            if deadline.is_some_and(|d| now >= d) {
                waiting.timed_out = true;
                return Err(started.elapsed());
            }
            if now >= shed_at {
                self.shed();
                shed_at = now + budget.shed_after();
            }
        }
    }

    /// Closes (1013) the connections whose backlog is older than the time
    /// since the previous shed (they did not even drain what they held
    /// then: their readers stopped or trickle), largest first, until what
    /// is queued is back under the budget. Readers that keep up are never
    /// closed, however much is queued. Called by waiters every
    /// [`shed_after`](Budget::shed_after); returns how many were closed.
    pub fn shed(&self) -> usize {
        let budget = &*self.inner.budget;
        let Some((_guard, judge)) = budget.try_shed() else {
            return 0;
        };
        let outboxes: Vec<Arc<Outbox>> = self
            .read()
            .conns
            .values()
            .map(|e| e.outbox.clone())
            .collect();
        let mut behind: Vec<(usize, Arc<Outbox>)> = outboxes
            .into_iter()
            .filter(|o| o.behind_since_last_scan(judge))
            .map(|o| (o.queued_bytes(), o))
            .collect();
        behind.sort_unstable_by_key(|q| std::cmp::Reverse(q.0));
        let target = budget.limit();
        let mut used = budget.used();
        let mut closed = 0;
        for (queued, outbox) in behind {
            if used <= target {
                break;
            }
            if outbox.overflow() {
                closed += 1;
                used = used.saturating_sub(queued);
            }
        }
        if closed > 0 {
            budget.count_shed(closed as u64);
            self.inner
                .metrics
                .slow_consumer_closes
                .fetch_add(closed as u64, Ordering::Relaxed);
        }
        closed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Message, OutboxStatus, SocketId, Topic};

    fn budgeted(hub: &Hub, limit: usize) -> Arc<Outbox> {
        let o = Arc::new(hub.new_outbox(SocketId::new(), limit));
        hub.register(o.clone(), 8);
        o
    }

    #[test]
    fn a_fan_out_charges_every_delivery_and_writes_release_them() {
        let hub = Hub::new();
        let (a, b) = (budgeted(&hub, 1 << 20), budgeted(&hub, 1 << 20));
        let unbudgeted = Arc::new(Outbox::new(SocketId::new(), 1 << 20));
        hub.register(unbudgeted.clone(), 8);
        hub.broadcast_local(&"0123456789".into());
        let frame = 12;
        assert_eq!(hub.budget().used(), 2 * frame);
        let mut q = std::collections::VecDeque::new();
        a.take(&mut q);
        a.written(frame);
        assert_eq!(hub.budget().used(), frame);
        b.shut();
        unbudgeted.shut();
        assert_eq!(hub.budget().used(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn reserve_waits_for_room_then_fails_after_the_timeout() {
        let hub = Hub::new();
        hub.budget().set_limit(10);
        hub.budget().set_wait_timeout(Duration::from_millis(100));
        hub.budget().set_shed_after(Duration::from_secs(60));
        let o = budgeted(&hub, 1 << 20);
        hub.broadcast_local(&"0123456789".into());
        assert!(!hub.budget().has_room());
        // Room comes back when the writer writes.
        let (mut q, hub2, o2) = (std::collections::VecDeque::new(), hub.clone(), o.clone());
        let writer = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(30)).await;
            o2.take(&mut q);
            o2.written(12);
            drop(hub2);
        });
        assert_eq!(hub.reserve().await, Ok(()));
        writer.await.unwrap();
        assert_eq!(hub.budget().waits(), 1);
        // Nobody writes: the publisher gives up.
        hub.broadcast_local(&"0123456789".into());
        let err = hub.reserve().await.unwrap_err();
        assert!(err.waited >= Duration::from_millis(100));
        assert_eq!(hub.budget().timeouts(), 1);
        assert_eq!(
            o.status(),
            OutboxStatus::Open,
            "no shedding before shed_after"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_spent_budget_sheds_a_reader_that_stopped_and_spares_the_rest() {
        let hub = Hub::new();
        hub.budget().set_limit(100);
        hub.budget().set_shed_after(Duration::from_millis(50));
        let (slow, fast) = (budgeted(&hub, 1 << 20), budgeted(&hub, 1 << 20));
        let t = Topic::new("t").unwrap();
        hub.subscribe(slow.id(), &t).unwrap();
        let msg: Message = "x".repeat(40).into();
        for _ in 0..4 {
            hub.publish_local(&t, &msg);
        }
        hub.send_local(fast.id(), &"small".into());
        assert!(!hub.budget().has_room());
        assert_eq!(hub.reserve().await, Ok(()));
        assert_eq!(slow.status(), OutboxStatus::Overflowed);
        assert_eq!(fast.status(), OutboxStatus::Open);
        assert_eq!(hub.budget().shed_count(), 1);
        assert_eq!(
            hub.budget().used(),
            7,
            "only the fast reader's frame is left"
        );
    }
}
