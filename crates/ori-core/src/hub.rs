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
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use crate::{Budget, Frame, Lane, Message, Outbox, Push, SocketId, SubscribeError, Topic};

mod admission;
mod conns;
mod fan_out;
mod frames;
mod subscribers;

use frames::{Compression, Frames};
pub use frames::{
    DEFAULT_LEVEL as DEFAULT_COMPRESSION_LEVEL, DEFAULT_THRESHOLD as DEFAULT_COMPRESSION_THRESHOLD,
};

use conns::{ConnEntry, Conns};
use subscribers::{add_floor, lane_key, remove_subscriber, Subscribers};

pub use admission::Overloaded;

/// Counters of the hub, readable at any time (for `/metrics`). Each is
/// counted once per publication or connection, never per subscriber.
#[derive(Debug, Default)]
pub struct HubMetrics {
    publishes: AtomicU64,
    deliveries: AtomicU64,
    slow_consumer_closes: AtomicU64,
    connections_total: AtomicU64,
}

impl HubMetrics {
    /// Publishes handed to the local fan-out (including broadcasts and
    /// sends).
    pub fn publishes(&self) -> u64 {
        self.publishes.load(Ordering::Relaxed)
    }

    /// Frames queued to subscribers by the fan-out.
    pub fn deliveries(&self) -> u64 {
        self.deliveries.load(Ordering::Relaxed)
    }

    /// Connections closed because their outbound queue overflowed (1013),
    /// in a fan-out or a [`Hub::push`].
    pub fn slow_consumer_closes(&self) -> u64 {
        self.slow_consumer_closes.load(Ordering::Relaxed)
    }

    /// Connections registered since start.
    pub fn connections_total(&self) -> u64 {
        self.connections_total.load(Ordering::Relaxed)
    }
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

#[derive(Default)]
struct State {
    topics: HashMap<Topic, Subscribers>,
    conns: Conns,
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
    compression: Compression,
}

impl Hub {
    /// An empty hub.
    pub fn new() -> Self {
        Self::default()
    }

    /// How messages to connections that negotiated permessage-deflate are
    /// compressed: the zlib `level` (0 to 9, default 1) and the size below
    /// which they go uncompressed (default 128 bytes).
    pub fn set_compression(&self, level: u32, threshold: usize) {
        self.inner.compression.set(level, threshold);
    }

    /// The frame of `message` for `outbox` (compressed when it negotiated
    /// permessage-deflate and the message is worth it).
    pub fn frame_for(&self, outbox: &Outbox, message: &Message) -> Frame {
        Frames::new(message, &self.inner.compression).for_outbox(outbox)
    }

    fn frames<'a>(&self, message: &'a Message) -> Frames<'a> {
        Frames::new(message, &self.inner.compression)
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

    /// [`new_outbox`](Self::new_outbox), its queue kept in `lane` (that of
    /// the writer serving the connection: a publication takes a lock per
    /// run of at most a few hundred subscribers in one lane, and one per
    /// list it reaches, the raw and the positions-aware, not one per
    /// subscriber).
    pub fn new_outbox_in(&self, id: SocketId, limit: usize, lane: Arc<Lane>) -> Outbox {
        Outbox::in_lane(id, limit, self.inner.budget.clone(), lane)
    }

    /// Adds a connection: from now on it receives broadcasts and direct
    /// sends. `max_topics` bounds its own subscriptions.
    pub fn register(&self, outbox: Arc<Outbox>, max_topics: usize) {
        self.write().conns.insert(ConnEntry {
            outbox,
            topics: Vec::new(),
            max_topics,
        });
        self.inner
            .metrics
            .connections_total
            .fetch_add(1, Ordering::Relaxed);
    }

    /// Removes a connection and all its subscriptions. Returns the topics
    /// that lost their last local subscriber.
    pub fn unregister(&self, id: &SocketId) -> Vec<Topic> {
        self.unregister_with_topics(id).1
    }

    /// Like [`unregister`](Self::unregister), also returning every topic
    /// the connection was in, as [`topics_of`](Self::topics_of) lists them
    /// (the virtual ones first), taken under the same lock: a subscription
    /// made concurrently is either in both or in neither.
    pub fn unregister_with_topics(&self, id: &SocketId) -> (Vec<Topic>, Vec<Topic>) {
        let mut st = self.write();
        let Some(entry) = st.conns.remove(id) else {
            return (Vec::new(), Vec::new());
        };
        let mut all = Vec::with_capacity(entry.topics.len() + 2);
        all.push(Topic::broadcast());
        all.push(Topic::for_socket(id));
        let mut emptied = Vec::new();
        for (topic, positioned) in entry.topics {
            if remove_subscriber(&mut st.topics, &topic, positioned, &entry.outbox) {
                emptied.push(topic.clone());
            }
            all.push(topic);
        }
        (all, emptied)
    }

    /// Subscribes connection `id` to `topic` (raw payloads).
    pub fn subscribe(&self, id: &SocketId, topic: &Topic) -> Result<Subscription, SubscribeError> {
        self.subscribe_as(id, topic, false)
    }

    /// Subscribes connection `id` to `topic`, with positions (it then takes
    /// the `room.message` envelopes of [`publish_positioned`](Self::publish_positioned))
    /// or raw. Subscribing again in the other form switches the form.
    pub fn subscribe_as(
        &self,
        id: &SocketId,
        topic: &Topic,
        positioned: bool,
    ) -> Result<Subscription, SubscribeError> {
        self.subscribe_from(id, topic, positioned, None)
    }

    /// [`subscribe_as`](Self::subscribe_as) with positions for a connection
    /// that already got every publication up to `floor` (epoch, offset):
    /// live publications at or below it are not queued to it again.
    pub fn subscribe_after(
        &self,
        id: &SocketId,
        topic: &Topic,
        floor: (Arc<str>, u64),
    ) -> Result<Subscription, SubscribeError> {
        self.subscribe_from(id, topic, true, Some(floor))
    }

    fn subscribe_from(
        &self,
        id: &SocketId,
        topic: &Topic,
        positioned: bool,
        floor: Option<(Arc<str>, u64)>,
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
        if let Some(joined) = entry.topics.iter_mut().find(|(t, _)| t == topic) {
            if joined.1 == positioned {
                return Ok(Subscription {
                    changed: false,
                    topic_edge: false,
                });
            }
            joined.1 = positioned;
            let outbox = entry.outbox.clone();
            if let Some(subs) = st.topics.get_mut(topic) {
                subs.remove(!positioned, &outbox);
                subs.add(positioned, outbox.clone());
            }
            add_floor(&mut st.topics, topic, outbox, floor);
            return Ok(Subscription {
                changed: true,
                topic_edge: false,
            });
        }
        if entry.topics.len() >= entry.max_topics {
            return Err(SubscribeError::TooManyTopics {
                limit: entry.max_topics,
            });
        }
        entry.topics.push((topic.clone(), positioned));
        let outbox = entry.outbox.clone();
        let first = match st.topics.entry(topic.clone()) {
            Entry::Occupied(mut e) => {
                e.get_mut().add(positioned, outbox.clone());
                false
            }
            Entry::Vacant(e) => {
                e.insert(Subscribers::default())
                    .add(positioned, outbox.clone());
                true
            }
        };
        add_floor(&mut st.topics, topic, outbox, floor);
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
        let Some(pos) = entry.topics.iter().position(|(t, _)| t == topic) else {
            return Ok(Subscription {
                changed: false,
                topic_edge: false,
            });
        };
        let (_, positioned) = entry.topics.swap_remove(pos);
        let outbox = entry.outbox.clone();
        let last = remove_subscriber(&mut st.topics, topic, positioned, &outbox);
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
        out.extend(entry.topics.iter().map(|(t, _)| t.clone()));
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
        self.fan_out_topic(topic, message, None::<(fn() -> String, &str, u64)>)
    }

    /// Delivers a publication of `topic` that has a position: the raw
    /// payload to the raw subscribers, the `room.message` envelope (made by
    /// `envelope`, only when someone takes it) to the positions-aware ones;
    /// each form encoded once.
    ///
    /// A subscriber that joined after this position (its replay had it,
    /// [`subscribe_after`](Self::subscribe_after)) is skipped.
    pub fn publish_positioned(
        &self,
        topic: &Topic,
        message: &Message,
        (epoch, offset): (&str, u64),
        envelope: impl FnOnce() -> String,
    ) -> usize {
        self.fan_out_topic(topic, message, Some((envelope, epoch, offset)))
    }

    /// The fan-out of one publication of `topic`: the raw frame to the raw
    /// subscribers, and to the positions-aware ones the envelope when there
    /// is one (else the raw frame too); each frame encoded at most once.
    fn fan_out_topic(
        &self,
        topic: &Topic,
        message: &Message,
        positioned: Option<(impl FnOnce() -> String, &str, u64)>,
    ) -> usize {
        self.count_publish();
        let subscribers = match self.read().topics.get(topic) {
            Some(s) => s.clone(),
            None => return 0,
        };
        let mut frames = self.frames(message);
        let mut queued = 0;
        if !subscribers.raw.is_empty() {
            queued += self.fan_out(subscribers.raw.iter().map(|o| &**o), &mut frames);
        }
        if subscribers.positioned.is_empty() {
            return queued;
        }
        let Some((envelope, epoch, offset)) = positioned else {
            return queued + self.fan_out(subscribers.positioned.iter().map(|o| &**o), &mut frames);
        };
        let envelope = Message::from(envelope());
        let mut frames = self.frames(&envelope);
        let all = subscribers.positioned.iter().map(|o| &**o);
        match &subscribers.floors {
            Some(floors) if floors.iter().any(|f| f.covers(epoch, offset)) => {
                let skip = |o: &Outbox| {
                    floors
                        .iter()
                        .any(|f| std::ptr::eq(&*f.outbox, o) && f.covers(epoch, offset))
                };
                queued += self.fan_out(all.filter(|o| !skip(o)), &mut frames);
            }
            Some(_) => {
                queued += self.fan_out(all, &mut frames);
                self.prune_floors(topic, epoch, offset);
            }
            None => queued += self.fan_out(all, &mut frames),
        }
        queued
    }

    /// Drops the floors that publications have passed (or of another epoch).
    fn prune_floors(&self, topic: &Topic, epoch: &str, offset: u64) {
        let mut st = self.write();
        if let Some(subs) = st.topics.get_mut(topic) {
            if let Some(floors) = &mut subs.floors {
                Arc::make_mut(floors).retain(|f| f.covers(epoch, offset));
                if floors.is_empty() {
                    subs.floors = None;
                }
            }
        }
    }

    /// Queues an encoded frame (a reply, a ping or pong, a message) to one
    /// connection's outbox, charged to its budget, like [`Outbox::push`];
    /// an overflow is counted as a slow-consumer close.
    pub fn push(&self, outbox: &Outbox, frame: impl Into<Frame>) -> Push {
        let push = outbox.push(frame);
        if push == Push::Overflow {
            self.inner
                .metrics
                .slow_consumer_closes
                .fetch_add(1, Ordering::Relaxed);
        }
        push
    }

    /// Queues `messages`, in order, to connection `id` alone (a reply and
    /// the replay of a resume). False if it is not registered here.
    pub fn push_to(&self, id: &SocketId, messages: impl IntoIterator<Item = Message>) -> bool {
        let Some(outbox) = self.read().conns.get(id).map(|e| e.outbox.clone()) else {
            return false;
        };
        for message in messages {
            self.fan_out(std::iter::once(&*outbox), &mut self.frames(&message));
        }
        true
    }

    /// Delivers `message` to connection `id` if it is registered here.
    pub fn send_local(&self, id: &SocketId, message: &Message) -> bool {
        self.count_publish();
        let Some(outbox) = self.read().conns.get(id).map(|e| e.outbox.clone()) else {
            return false;
        };
        self.fan_out(std::iter::once(&*outbox), &mut self.frames(message)) == 1
    }

    /// Delivers `message` to every registered connection.
    pub fn broadcast_local(&self, message: &Message) -> usize {
        self.count_publish();
        let mut frames = self.frames(message);
        // Fanned out outside the lock: a frame may be compressed on the
        // way, which must not hold up subscription changes.
        let mut outboxes: Vec<Arc<Outbox>> = self
            .read()
            .conns
            .values()
            .map(|e| e.outbox.clone())
            .collect();
        // By lane, as a topic's subscribers are kept (a sort per broadcast,
        // of pointers: cheaper than a lock per connection).
        outboxes.sort_unstable_by_key(|o| lane_key(o));
        self.fan_out(outboxes.iter().map(|o| &**o), &mut frames)
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
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub")
            .field("connections", &self.connection_count())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests;
