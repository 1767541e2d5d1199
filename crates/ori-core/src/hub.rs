//! The local hub: every connection of this instance, every topic it joined,
//! and the fan-out of one encoded frame to each subscriber's bounded outbox.
//!
//! This is the single source of truth for local subscriptions (topic ->
//! subscribers and connection -> topics live in one structure under one
//! lock). Publishing clones a snapshot of a topic's subscriber list and
//! releases the lock before touching any outbox, so subscription changes
//! never wait for a fan-out and no lock is ever held across I/O.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::task::Waker;

use bytes::Bytes;
use tokio::sync::Notify;

use crate::codec::{self, close_code};
use crate::{Message, SocketId, SubscribeError, Topic};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nothing here panics while holding a lock, but a poisoned lock must not
    // take every other connection down with it.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The state of an [`Outbox`] as its writer sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutboxStatus {
    /// Accepting frames.
    Open,
    /// A close was requested: write what is queued, then the close frame.
    Closing {
        /// Close code.
        code: u16,
        /// Close reason.
        reason: String,
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
    frames: VecDeque<Bytes>,
    /// Bytes queued and not yet written to the socket (including frames the
    /// writer has taken but not finished writing).
    queued_bytes: usize,
    status: OutboxStatus,
    /// Woken instead of `notify` when set (see [`Outbox::set_waker`]).
    waker: Option<Waker>,
}

impl OutboxState {
    /// Tells the writer there is something to do. Called with the lock held,
    /// so a registered waker must not lock this outbox.
    fn wake(&self, notify: &Notify) {
        match &self.waker {
            Some(w) => w.wake_by_ref(),
            None => notify.notify_one(),
        }
    }
}

/// One connection's bounded queue of encoded frames.
///
/// Producers (publishes, direct sends, the connection's own replies) push
/// shared [`Bytes`]; the connection's writer takes everything queued at once
/// and writes it in one vectored call. A push never waits: past `limit`
/// queued bytes the outbox drops its queue and asks the writer to close the
/// connection with 1013.
///
/// The writer learns that there is work either through [`notified`]
/// (`Outbox::notified`) or, after [`set_waker`](Outbox::set_waker), through
/// a waker: one wake-up when the queue becomes non-empty, not one per frame,
/// so frames pushed before the writer runs go out together.
///
/// [`notified`]: Outbox::notified
pub struct Outbox {
    id: SocketId,
    limit: usize,
    state: Mutex<OutboxState>,
    notify: Notify,
}

impl Outbox {
    /// An empty outbox for connection `id`, holding at most `limit` bytes.
    pub fn new(id: SocketId, limit: usize) -> Self {
        Self {
            id,
            limit,
            state: Mutex::new(OutboxState {
                frames: VecDeque::new(),
                queued_bytes: 0,
                status: OutboxStatus::Open,
                waker: None,
            }),
            notify: Notify::new(),
        }
    }

    /// The connection this outbox belongs to.
    pub fn id(&self) -> &SocketId {
        &self.id
    }

    /// Queues an encoded frame. Fails with [`Push::Overflow`] when the bytes
    /// already queued plus this frame exceed the limit.
    pub fn push(&self, frame: Bytes) -> Push {
        let mut st = lock(&self.state);
        if st.status != OutboxStatus::Open {
            return Push::Closed;
        }
        // One frame larger than the limit still goes out on an empty queue:
        // the limit bounds how far a reader falls behind, not message size.
        if st.queued_bytes > 0 && st.queued_bytes + frame.len() > self.limit {
            st.status = OutboxStatus::Overflowed;
            st.frames = VecDeque::new();
            st.wake(&self.notify);
            return Push::Overflow;
        }
        let was_empty = st.frames.is_empty();
        st.queued_bytes += frame.len();
        st.frames.push_back(frame);
        if was_empty {
            st.wake(&self.notify);
        }
        Push::Queued
    }

    /// Asks the writer to send `code`/`reason` after what is already queued.
    /// Returns `false` if the outbox was already closing.
    pub fn close(&self, code: u16, reason: &str) -> bool {
        let mut st = lock(&self.state);
        if st.status != OutboxStatus::Open {
            return false;
        }
        st.status = OutboxStatus::Closing {
            code,
            reason: reason.to_owned(),
        };
        st.wake(&self.notify);
        true
    }

    /// Marks the outbox closed for good (the connection ended): later pushes
    /// are dropped, queued frames are freed and a registered waker is
    /// dropped.
    pub fn shut(&self) {
        let mut st = lock(&self.state);
        if st.status == OutboxStatus::Open {
            st.status = OutboxStatus::Closing {
                code: close_code::NORMAL,
                reason: String::new(),
            };
        }
        st.frames = VecDeque::new();
        st.queued_bytes = 0;
        let waker = st.waker.take();
        drop(st);
        drop(waker);
    }

    /// Routes wake-ups to `waker` instead of [`notified`](Self::notified):
    /// it is woken when the queue becomes non-empty, when a close is
    /// requested and when the queue overflows (and at once if there is
    /// already something to do). `None` goes back to `notified`; [`shut`]
    /// drops the waker.
    ///
    /// The waker is called while the outbox's lock is held: waking must be
    /// cheap and must not call back into this outbox.
    ///
    /// [`shut`]: Self::shut
    pub fn set_waker(&self, waker: Option<Waker>) {
        let mut st = lock(&self.state);
        let old = std::mem::replace(&mut st.waker, waker);
        if st.waker.is_some() && (!st.frames.is_empty() || st.status != OutboxStatus::Open) {
            st.wake(&self.notify);
        }
        drop(st);
        drop(old);
    }

    /// Moves every queued frame to the back of `into` and returns the status.
    pub fn take(&self, into: &mut VecDeque<Bytes>) -> OutboxStatus {
        let mut st = lock(&self.state);
        if into.is_empty() {
            std::mem::swap(into, &mut st.frames);
        } else {
            into.extend(st.frames.drain(..));
        }
        st.status.clone()
    }

    /// Records that `n` queued bytes reached the socket.
    pub fn written(&self, n: usize) {
        let mut st = lock(&self.state);
        st.queued_bytes = st.queued_bytes.saturating_sub(n);
    }

    /// [`written`](Self::written) and [`take`](Self::take) under one lock:
    /// records that `n` bytes reached the socket, then moves every queued
    /// frame to the back of `into` and returns the status.
    pub fn written_and_take(&self, n: usize, into: &mut VecDeque<Bytes>) -> OutboxStatus {
        let mut st = lock(&self.state);
        st.queued_bytes = st.queued_bytes.saturating_sub(n);
        if into.is_empty() {
            std::mem::swap(into, &mut st.frames);
        } else {
            into.extend(st.frames.drain(..));
        }
        st.status.clone()
    }

    /// Bytes queued and not yet written.
    pub fn queued_bytes(&self) -> usize {
        lock(&self.state).queued_bytes
    }

    /// The current status.
    pub fn status(&self) -> OutboxStatus {
        lock(&self.state).status.clone()
    }

    /// Resolves when something was pushed or a close was requested since the
    /// last time it resolved.
    pub async fn notified(&self) {
        self.notify.notified().await
    }
}

impl std::fmt::Debug for Outbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbox")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

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
        for outbox in outboxes {
            match outbox.push(frame.clone()) {
                Push::Queued => delivered += 1,
                Push::Overflow => overflowed += 1,
                Push::Closed => {}
            }
        }
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

    fn conn(hub: &Hub, limit: usize) -> Arc<Outbox> {
        let o = Arc::new(Outbox::new(SocketId::new(), limit));
        hub.register(o.clone(), 8);
        o
    }

    fn drain(o: &Outbox) -> Vec<Bytes> {
        let mut q = VecDeque::new();
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

    struct WakeCount(std::sync::atomic::AtomicUsize);

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
        assert_eq!(o.written_and_take(3, &mut q), OutboxStatus::Open);
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
}
