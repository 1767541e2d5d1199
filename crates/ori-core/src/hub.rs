//! The local hub: every connection of this instance, every topic it joined,
//! and the fan-out of one encoded frame to each subscriber's bounded outbox.
//!
//! This is the single source of truth for local subscriptions (topic ->
//! subscribers and connection -> topics live in one structure under one
//! lock). Publishing clones a snapshot of a topic's subscriber list and
//! releases the lock before touching any outbox, so subscription changes
//! never wait for a fan-out and no lock is ever held across I/O.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::pin::pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;

use crate::codec;
use crate::{Budget, Message, Outbox, Push, SocketId, SubscribeError, Topic};

/// Counters of the hub, readable at any time (for `/metrics`).
#[derive(Debug, Default)]
pub struct HubMetrics {
    /// Publishes handed to the local fan-out (including broadcasts and sends).
    pub publishes: AtomicU64,
    /// Frames queued to subscribers by the fan-out.
    pub deliveries: AtomicU64,
    /// Connections closed because their outbound queue overflowed (1013).
    pub slow_consumer_closes: AtomicU64,
    /// Data frames received from clients.
    pub frames_in: AtomicU64,
    /// Frames written to clients.
    pub frames_out: AtomicU64,
    /// Connections accepted since start.
    pub connections_total: AtomicU64,
}

/// The result of a subscription change on the hub.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subscription {
    /// Whether the connection's subscriptions changed (false: it was already
    /// subscribed, or was not subscribed, respectively).
    pub changed: bool,
    /// Whether the topic gained its first, or lost its last, local
    /// subscriber: the moment a cross-instance provider (un)subscribes the
    /// topic upstream.
    pub topic_edge: bool,
}

struct ConnEntry {
    outbox: Arc<Outbox>,
    topics: Vec<Topic>,
    max_topics: usize,
}

type Subscribers = Arc<Vec<Arc<Outbox>>>;

#[derive(Default)]
struct State {
    topics: HashMap<Topic, Subscribers>,
    conns: HashMap<SocketId, ConnEntry>,
}

/// The local subscription registry and fan-out of one instance. Cheap to
/// clone (a handle).
///
/// `__broadcast__` and `__socket__:<id>` are virtual topics: every registered
/// connection is in both, answered from the connection table rather than
/// stored per topic.
#[derive(Clone, Default)]
pub struct Hub {
    inner: Arc<HubInner>,
}

#[derive(Default)]
struct HubInner {
    state: RwLock<State>,
    metrics: HubMetrics,
    budget: Arc<Budget>,
}

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
    /// An empty hub.
    pub fn new() -> Self {
        Self::default()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.inner
            .state
            .read()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.inner
            .state
            .write()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The hub's counters.
    pub fn metrics(&self) -> &HubMetrics {
        &self.inner.metrics
    }

    /// The instance's outbound budget: every outbox made with
    /// [`new_outbox`](Self::new_outbox) is charged to it.
    pub fn budget(&self) -> &Arc<Budget> {
        &self.inner.budget
    }

    /// An outbox for connection `id`, holding at most `limit` bytes, charged
    /// to this hub's [`budget`](Self::budget).
    pub fn new_outbox(&self, id: SocketId, limit: usize) -> Outbox {
        Outbox::with_budget(id, limit, self.inner.budget.clone())
    }

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

    /// Adds a connection: from now on it receives broadcasts and direct
    /// sends. `max_topics` bounds its own subscriptions.
    pub fn register(&self, outbox: Arc<Outbox>, max_topics: usize) {
        let id = *outbox.id();
        self.write().conns.insert(
            id,
            ConnEntry {
                outbox,
                topics: Vec::new(),
                max_topics,
            },
        );
        self.inner
            .metrics
            .connections_total
            .fetch_add(1, Ordering::Relaxed);
    }

    /// Removes a connection and all its subscriptions. Returns the topics
    /// that lost their last local subscriber.
    pub fn unregister(&self, id: &SocketId) -> Vec<Topic> {
        let mut st = self.write();
        let Some(entry) = st.conns.remove(id) else {
            return Vec::new();
        };
        let mut emptied = Vec::new();
        for topic in entry.topics {
            if remove_subscriber(&mut st.topics, &topic, &entry.outbox) {
                emptied.push(topic);
            }
        }
        emptied
    }

    /// Subscribes connection `id` to `topic`.
    pub fn subscribe(&self, id: &SocketId, topic: &Topic) -> Result<Subscription, SubscribeError> {
        if topic.is_reserved() {
            return Err(SubscribeError::InvalidTopic {
                topic: topic.to_string(),
                reason: crate::TopicError::Reserved,
            });
        }
        let mut st = self.write();
        let st = &mut *st;
        let entry = st.conns.get_mut(id).ok_or(SubscribeError::Closed)?;
        if entry.topics.contains(topic) {
            return Ok(Subscription {
                changed: false,
                topic_edge: false,
            });
        }
        if entry.topics.len() >= entry.max_topics {
            return Err(SubscribeError::TooManyTopics {
                limit: entry.max_topics,
            });
        }
        entry.topics.push(topic.clone());
        let outbox = entry.outbox.clone();
        let first = match st.topics.entry(topic.clone()) {
            Entry::Occupied(mut e) => {
                Arc::make_mut(e.get_mut()).push(outbox);
                false
            }
            Entry::Vacant(e) => {
                e.insert(Arc::new(vec![outbox]));
                true
            }
        };
        Ok(Subscription {
            changed: true,
            topic_edge: first,
        })
    }

    /// Unsubscribes connection `id` from `topic`.
    pub fn unsubscribe(
        &self,
        id: &SocketId,
        topic: &Topic,
    ) -> Result<Subscription, SubscribeError> {
        if topic.is_reserved() {
            return Err(SubscribeError::InvalidTopic {
                topic: topic.to_string(),
                reason: crate::TopicError::Reserved,
            });
        }
        let mut st = self.write();
        let st = &mut *st;
        let entry = st.conns.get_mut(id).ok_or(SubscribeError::Closed)?;
        let Some(pos) = entry.topics.iter().position(|t| t == topic) else {
            return Ok(Subscription {
                changed: false,
                topic_edge: false,
            });
        };
        entry.topics.swap_remove(pos);
        let outbox = entry.outbox.clone();
        let last = remove_subscriber(&mut st.topics, topic, &outbox);
        Ok(Subscription {
            changed: true,
            topic_edge: last,
        })
    }

    /// Every topic connection `id` is in, the virtual ones first; `None` if
    /// the connection is not registered.
    pub fn topics_of(&self, id: &SocketId) -> Option<Vec<Topic>> {
        let st = self.read();
        let entry = st.conns.get(id)?;
        let mut out = Vec::with_capacity(entry.topics.len() + 2);
        out.push(Topic::broadcast());
        out.push(Topic::for_socket(id));
        out.extend(entry.topics.iter().cloned());
        Some(out)
    }

    /// Whether connection `id` is registered here.
    pub fn is_connected(&self, id: &SocketId) -> bool {
        self.read().conns.contains_key(id)
    }

    /// Registered connections.
    pub fn connection_count(&self) -> usize {
        self.read().conns.len()
    }

    /// Local subscribers of `topic` (virtual topics included).
    pub fn subscriber_count(&self, topic: &Topic) -> usize {
        let st = self.read();
        if topic.as_str() == crate::BROADCAST_TOPIC {
            return st.conns.len();
        }
        if let Some(id) = topic.socket_target() {
            return usize::from(st.conns.contains_key(&id));
        }
        st.topics.get(topic).map_or(0, |s| s.len())
    }

    /// Topics with at least one local subscriber (virtual topics excluded).
    pub fn active_topics(&self) -> Vec<Topic> {
        self.read().topics.keys().cloned().collect()
    }

    /// Delivers `message` to the local subscribers of `topic`, encoding it
    /// once. Returns the number of connections it was queued for.
    pub fn publish_local(&self, topic: &Topic, message: &Message) -> usize {
        if topic.as_str() == crate::BROADCAST_TOPIC {
            return self.broadcast_local(message);
        }
        if let Some(id) = topic.socket_target() {
            return usize::from(self.send_local(&id, message));
        }
        self.count_publish();
        let subscribers = match self.read().topics.get(topic) {
            Some(s) => s.clone(),
            None => return 0,
        };
        let frame = codec::encode_message(message);
        self.fan_out(subscribers.iter().map(|o| &**o), &frame)
    }

    /// Delivers `message` to connection `id` if it is registered here.
    pub fn send_local(&self, id: &SocketId, message: &Message) -> bool {
        self.count_publish();
        let Some(outbox) = self.read().conns.get(id).map(|e| e.outbox.clone()) else {
            return false;
        };
        let frame = codec::encode_message(message);
        self.fan_out(std::iter::once(&*outbox), &frame) == 1
    }

    /// Delivers `message` to every registered connection.
    pub fn broadcast_local(&self, message: &Message) -> usize {
        self.count_publish();
        let frame = codec::encode_message(message);
        // Pushing is a short critical section per outbox; holding the read
        // lock meanwhile only delays subscription changes, never publishes.
        let st = self.read();
        self.fan_out(st.conns.values().map(|e| &*e.outbox), &frame)
    }

    /// Asks every connection to close with `code` and `reason`.
    pub fn close_all(&self, code: u16, reason: &str) {
        let outboxes: Vec<_> = self
            .read()
            .conns
            .values()
            .map(|e| e.outbox.clone())
            .collect();
        for o in outboxes {
            o.close(code, reason);
        }
    }

    fn count_publish(&self) {
        self.inner.metrics.publishes.fetch_add(1, Ordering::Relaxed);
    }

    fn fan_out<'a>(&self, outboxes: impl Iterator<Item = &'a Outbox>, frame: &Bytes) -> usize {
        let mut delivered = 0u64;
        let mut overflowed = 0u64;
        // The deliveries charged to the hub's budget are charged at once,
        // after the loop: one atomic update per publish, not one per
        // subscriber.
        let budget = &self.inner.budget;
        let mut charged = 0usize;
        for outbox in outboxes {
            match outbox.enqueue(frame.clone()) {
                Push::Queued => {
                    delivered += 1;
                    match outbox.budget() {
                        Some(b) if Arc::ptr_eq(b, budget) => charged += frame.len(),
                        Some(b) => b.charge(frame.len()),
                        None => {}
                    }
                }
                Push::Overflow => overflowed += 1,
                Push::Closed => {}
            }
        }
        budget.charge(charged);
        let m = &self.inner.metrics;
        m.deliveries.fetch_add(delivered, Ordering::Relaxed);
        if overflowed > 0 {
            m.slow_consumer_closes
                .fetch_add(overflowed, Ordering::Relaxed);
        }
        delivered as usize
    }
}

/// Removes `outbox` from `topic`; true if the topic became empty (and was
/// dropped).
fn remove_subscriber(
    topics: &mut HashMap<Topic, Subscribers>,
    topic: &Topic,
    outbox: &Arc<Outbox>,
) -> bool {
    let Some(subs) = topics.get_mut(topic) else {
        return false;
    };
    let list = Arc::make_mut(subs);
    if let Some(pos) = list.iter().position(|o| Arc::ptr_eq(o, outbox)) {
        list.swap_remove(pos);
    }
    if list.is_empty() {
        topics.remove(topic);
        return true;
    }
    false
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub")
            .field("connections", &self.connection_count())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::OutboxStatus;

    fn conn(hub: &Hub, limit: usize) -> Arc<Outbox> {
        let o = Arc::new(Outbox::new(SocketId::new(), limit));
        hub.register(o.clone(), 8);
        o
    }

    fn drain(o: &Outbox) -> Vec<Bytes> {
        let mut q = std::collections::VecDeque::new();
        o.take(&mut q);
        q.into_iter().collect()
    }

    #[test]
    fn subscribers_receive_one_shared_frame_and_others_do_not() {
        let hub = Hub::new();
        let (a, b, c) = (
            conn(&hub, 1 << 20),
            conn(&hub, 1 << 20),
            conn(&hub, 1 << 20),
        );
        let t = Topic::new("room").unwrap();
        assert!(hub.subscribe(a.id(), &t).unwrap().topic_edge);
        assert!(!hub.subscribe(b.id(), &t).unwrap().topic_edge);
        assert!(!hub.subscribe(b.id(), &t).unwrap().changed);
        assert_eq!(hub.publish_local(&t, &"hi".into()), 2);
        let (fa, fb) = (drain(&a), drain(&b));
        assert_eq!(fa, vec![codec::encode_frame(codec::OpCode::Text, b"hi")]);
        assert_eq!(fa[0].as_ptr(), fb[0].as_ptr(), "one encoding shared");
        assert!(drain(&c).is_empty());
        assert_eq!(hub.subscriber_count(&t), 2);
    }

    #[test]
    fn unsubscribe_and_unregister_report_the_last_subscriber() {
        let hub = Hub::new();
        let (a, b) = (conn(&hub, 1024), conn(&hub, 1024));
        let t = Topic::new("room").unwrap();
        hub.subscribe(a.id(), &t).unwrap();
        hub.subscribe(b.id(), &t).unwrap();
        assert!(!hub.unsubscribe(a.id(), &t).unwrap().topic_edge);
        assert!(!hub.unsubscribe(a.id(), &t).unwrap().changed);
        assert_eq!(hub.unregister(b.id()), vec![t.clone()]);
        assert_eq!(hub.subscriber_count(&t), 0);
        assert!(hub.active_topics().is_empty());
        assert_eq!(hub.publish_local(&t, &"x".into()), 0);
    }

    #[test]
    fn virtual_topics_cover_every_connection() {
        let hub = Hub::new();
        let (a, b) = (conn(&hub, 1024), conn(&hub, 1024));
        assert_eq!(hub.subscriber_count(&Topic::broadcast()), 2);
        assert_eq!(hub.publish_local(&Topic::broadcast(), &"all".into()), 2);
        assert_eq!(
            hub.publish_local(&Topic::for_socket(a.id()), &"one".into()),
            1
        );
        assert_eq!(drain(&a).len(), 2);
        assert_eq!(drain(&b).len(), 1);
        assert!(!hub.send_local(&SocketId::new(), &"x".into()));
        let topics = hub.topics_of(a.id()).unwrap();
        assert_eq!(topics[0], Topic::broadcast());
        assert_eq!(topics[1].socket_target(), Some(*a.id()));
        assert!(matches!(
            hub.subscribe(a.id(), &Topic::broadcast()),
            Err(SubscribeError::InvalidTopic { .. })
        ));
    }

    #[test]
    fn topic_limit_per_connection() {
        let hub = Hub::new();
        let o = Arc::new(Outbox::new(SocketId::new(), 1024));
        hub.register(o.clone(), 2);
        for name in ["a", "b"] {
            hub.subscribe(o.id(), &Topic::new(name).unwrap()).unwrap();
        }
        assert_eq!(
            hub.subscribe(o.id(), &Topic::new("c").unwrap()),
            Err(SubscribeError::TooManyTopics { limit: 2 })
        );
    }

    #[test]
    fn overflow_drops_the_queue_and_counts_a_slow_consumer() {
        let hub = Hub::new();
        let slow = conn(&hub, 100);
        let fast = conn(&hub, 1 << 20);
        let msg: Message = "x".repeat(40).into();
        for _ in 0..3 {
            hub.broadcast_local(&msg);
            drain(&fast);
        }
        assert_eq!(slow.status(), OutboxStatus::Overflowed);
        assert!(drain(&slow).is_empty());
        assert_eq!(slow.push(Bytes::from_static(b"late")), Push::Closed);
        assert_eq!(
            hub.metrics().slow_consumer_closes.load(Ordering::Relaxed),
            1
        );
        assert_eq!(fast.status(), OutboxStatus::Open);
    }

    fn budgeted(hub: &Hub, limit: usize) -> Arc<Outbox> {
        let o = Arc::new(hub.new_outbox(SocketId::new(), limit));
        hub.register(o.clone(), 8);
        o
    }

    #[test]
    fn a_fan_out_charges_every_delivery_and_writes_release_them() {
        let hub = Hub::new();
        let (a, b) = (budgeted(&hub, 1 << 20), budgeted(&hub, 1 << 20));
        let unbudgeted = conn(&hub, 1 << 20);
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
