//! The Redis provider of [Ori](https://docs.rs/ori): several server
//! instances on one Redis form one logical pub/sub space.
//!
//! ```no_run
//! use ori::{Ori, WsOptions};
//! use ori_redis::{RedisConfig, RedisProvider};
//!
//! # async fn run() -> Result<(), ori::Error> {
//! let provider = RedisProvider::new(RedisConfig::url("redis://127.0.0.1:6379"));
//! let app = Ori::create()
//!     .websocket_with(provider, WsOptions::new())
//!     .listen(3000)
//!     .await?; // fails here, with the address and the cause, if Redis is unreachable
//! # Ok(()) }
//! ```
//!
//! # How it works
//!
//! The provider is a transport ([`ori_core::Provider`]): the app's
//! [`Broker`](ori_core::Broker) keeps the hub (the single source of truth
//! for local subscriptions), delivers every publication to this instance's
//! connections itself and then hands it to the provider, which carries it
//! through Redis; every instance hands what it receives to its broker
//! ([`Inbound::deliver`], which also drops the instance's own echo).
//!
//! Channels (prefix `ws` by default, see [`RedisConfig::prefix`]):
//!
//! | channel | subscribed while | carries |
//! |---|---|---|
//! | `<prefix>:t:<topic>` | the topic has at least one local subscriber | `publish(topic)` |
//! | `<prefix>:b` | always (while connected) | `broadcast` |
//! | `<prefix>:s:<socketId>` | the socket is connected to this instance | `send(socketId)` |
//! | `<prefix>:p` | always (while connected) | "behind" (with grants, or the channels held) / "caught up" announcements (see "Backpressure") |
//!
//! One background task owns the subscriber connection. Subscription hooks
//! ([`Provider::watch`] / [`Provider::unwatch`]) only mark a topic or
//! socket as changed and wake it; the task then compares what the broker
//! needs now ([`Inbound::is_watched`]) with what
//! its connection holds and sends `SUBSCRIBE` / `UNSUBSCRIBE` for the
//! difference. Because it always acts on the hub's current state, a
//! subscribe racing an unsubscribe of the same topic (either way round)
//! converges to the right channel set. A second, multiplexed connection
//! publishes (a subscribed Redis connection cannot).
//!
//! # Redis Cluster (feature `cluster`)
//!
//! With `RedisConfig::cluster` the provider talks to a Redis Cluster
//! (Redis 7.0 or later) with sharded pub/sub: the same channels, envelopes
//! and semantics, but `SPUBLISH` / `SSUBSCRIBE`, so each channel lives on
//! the shard that owns its hash slot and only that shard's nodes carry its
//! messages. The pub/sub load spreads over the shards instead of every node
//! seeing every message. When one node connection drops, the cluster client
//! replaces it and the task resubscribes every channel (idempotently).
//!
//! # Delivery semantics
//!
//! - `publish` and `broadcast` serve this instance's subscribers directly
//!   (the broker does, as with the in-process provider), then `PUBLISH` an
//!   envelope carrying this instance's id; every other instance delivers it
//!   to its own subscribers, and this instance's broker drops its own echo. Local subscribers
//!   are therefore served exactly once, and local delivery keeps working
//!   while Redis is down.
//! - An `Err` from `publish`/`broadcast` means the message may not have
//!   reached other instances (Redis down, or no answer within the publish
//!   timeout); this instance's subscribers did get it.
//! - `send(socket)` to a socket of this instance is local and returns
//!   whether it was queued. For any other socket it publishes to the
//!   socket's channel and returns `Ok(true)` when Redis counted a receiver,
//!   that is when some instance currently has that socket connected (its
//!   channel subscription follows the upgrade within a round trip to Redis,
//!   so a socket connected a moment ago may still read as absent).
//!   `Ok(false)`: no instance has it.
//! - Per publisher, messages arrive in the order they were published.
//!
//! # Backpressure
//!
//! An instance reads its subscription no faster than it delivers. Before it
//! hands on a message from Redis, the subscriber waits while the hub's
//! outbound budget is spent ([`Inbound::room`]); meanwhile nothing is
//! read from the socket, the kernel's buffers fill, and the backlog waits
//! in Redis, in this client's output buffer. Redis's
//! `client-output-buffer-limit pubsub` (default `32mb 8mb 60`) bounds that:
//! an instance that stays behind is disconnected by Redis, and the provider
//! reconnects as after any outage (counted in [`RedisStats::disconnects`],
//! logged); what was published meanwhile is not delivered there.
//!
//! So that it rarely comes to that, an instance whose subscriber has to
//! wait announces that it is **behind** on the channel `<prefix>:p` (at
//! once, repeated every 100 ms while it lasts, then "caught up" after
//! 50 ms without a wait), and while behind it **grants** every other
//! instance one publish per envelope of theirs it took from Redis (an
//! eighth less while it waits for room, so that the backlog in flight
//! when it fell behind drains; an eighth more while it does not, so that
//! their pace can grow back; eighths counted across batches, so a few
//! envelopes at a time count as much as many). Each "behind" is followed
//! by a filter of the channels it holds (a Bloom filter of at most
//! 8 KiB). On every other instance, a publish that would reach a busy
//! instance (a topic or socket whose channel it may hold, or a broadcast)
//! then waits for a grant of each busy instance it reaches, in arrival
//! order among those reaching the same instance; a publish to a channel
//! no busy instance holds goes on at once, so a flood of one topic that
//! puts one instance behind does not hold back unrelated topics. An
//! announcement holds 300 ms unless repeated, so a dead instance holds
//! nobody back; a publish that waits longer than the publish timeout
//! fails with `PublishError::Overloaded`. Publishers thus go at the pace
//! of the slowest instance they reach, with no more of their envelopes
//! queued in Redis than one announcement's round trip needs
//! ([`RedisConfig::cross_instance_backpressure`] turns the waiting off;
//! [`RedisStats::instances_behind`], [`RedisStats::pressure_waits`],
//! [`RedisStats::pressure_grants`]).
//!
//! The filter never misses a channel the instance holds or is
//! subscribing, but it is only as fresh as its last announcement (a
//! channel subscribed while behind goes out in a new filter at once, or
//! 10 ms after the last one for a burst; the others wait for it from when
//! that arrives), and it has false positives: about 0.24 % of other channels
//! while the instance holds up to 4,000, one in seven at 16,000. A publish
//! to a false positive waits like one that reaches the busy instance, and
//! since that instance never takes it, it is never granted back: a
//! publisher whose every publish is a false positive waits for it to catch
//! up (or fails at the timeout), as before filters. An instance of an
//! older version drops the grants and filters it does not know, counting
//! each as malformed (ten a second or more per busy instance during a rolling
//! upgrade), and still waits on the plain "behind". Anyone who can publish
//! on `<prefix>:p` can hold publishers back or let them on (a forged
//! "caught up" or filter): the channel is as trusted as the Redis server.
//! One server's subscriber speaks RESP2 itself for this (the client
//! library's pub/sub connection drains the socket into an unbounded queue);
//! with a Redis Cluster the library's push queue still fills while the
//! instance waits, so there the bound is the instance's pace, not Redis's
//! buffer limit.
//!
//! # Faults
//!
//! Start-up follows [`StartupPolicy`] (fail fast by default). When the
//! connection is lost while running, the task logs it once, reconnects
//! with back-off ([`RedisConfig::reconnect_backoff`]), resubscribes the
//! broadcast channel and every topic and socket that still has local
//! subscribers, and logs the recovery once (counted in
//! [`RedisStats::disconnects`], [`RedisStats::reconnects`] and
//! [`RedisStats::dropped_subscriptions`], and shown on the instance's
//! `/metrics` as `ori_redis_*`). Meanwhile local delivery never
//! stops, and cross-instance publishes fail at once with [`Error`] (or
//! after at most the publish timeout, before the loss is noticed): they
//! never hang. Envelopes that cannot be decoded are dropped (logged once
//! per burst, counted in [`RedisStats::malformed`]); they never reach a
//! client.
#![cfg_attr(docsrs, feature(doc_cfg))]

mod backend;
mod channels;
mod config;
pub mod envelope;
mod error;
mod fault;
mod history;
mod metrics;
mod paced;
mod pressure;
mod task;
#[cfg(feature = "testing")]
pub mod testing;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, RwLock};
use std::time::Duration;

use ori_core::{
    HistoryLimits, HistoryRead, Inbound, Message, Outgoing, Provider, ProviderError,
    ProviderMetric, Sent, SocketId, Target, Topic,
};
use tokio::sync::{watch, Notify};

use backend::{Backend, Publisher};
use channels::Channels;
pub use config::{RedisConfig, StartupPolicy};
use envelope::InstanceId;
pub use error::Error;
pub use fault::Fault;
pub use metrics::RedisStats;

/// The Redis provider. Cheap to clone (a handle): keep a clone to read
/// [`stats`](Self::stats) after handing one to the app.
#[derive(Clone)]
pub struct RedisProvider {
    shared: Arc<Shared>,
}

/// Topics and sockets whose upstream subscription may need to change.
#[derive(Default)]
pub(crate) struct Dirty {
    pub(crate) topics: HashSet<Topic>,
    pub(crate) sockets: HashSet<SocketId>,
}

#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) connected: AtomicBool,
    pub(crate) disconnects: AtomicU64,
    pub(crate) reconnects: AtomicU64,
    pub(crate) dropped_subscriptions: AtomicU64,
    pub(crate) malformed: AtomicU64,
    pub(crate) received: AtomicU64,
    pub(crate) published: AtomicU64,
    pub(crate) channels: AtomicU64,
}

struct Running {
    shutdown: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

pub(crate) struct Shared {
    /// Set when the broker starts the provider.
    inbound: OnceLock<Inbound>,
    pub(crate) config: RedisConfig,
    /// The backend, or the URL that does not parse and why.
    pub(crate) backend: Result<Backend, (String, Arc<redis::RedisError>)>,
    pub(crate) channels: Channels,
    /// The publishing connection; `None` while disconnected.
    publisher: RwLock<Option<Publisher>>,
    /// Why the connection is down, for the errors publishes return.
    pub(crate) last_error: Mutex<Fault>,
    pub(crate) dirty: Mutex<Dirty>,
    /// Wakes the task: something is dirty.
    pub(crate) wake: Notify,
    /// Wakes the task: a publish failed, check the publisher connection.
    pub(crate) publisher_suspect: Notify,
    pub(crate) counters: Counters,
    pub(crate) pressure: pressure::Pressure,
    running: tokio::sync::Mutex<Option<Running>>,
    scripts: history::Scripts,
    /// Topic channels the subscriber connection holds, confirmed by Redis.
    pub(crate) confirmed: Mutex<HashSet<Topic>>,
    /// Wakes joins waiting for a confirmation.
    pub(crate) confirmed_changed: Notify,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Shared {
    pub(crate) fn set_publisher(&self, conn: Option<Publisher>) {
        *self
            .publisher
            .write()
            .unwrap_or_else(PoisonError::into_inner) = conn;
    }

    pub(crate) fn publisher(&self) -> Option<Publisher> {
        self.publisher
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub(crate) fn set_last_error(&self, reason: Fault) {
        *lock(&self.last_error) = reason;
    }

    /// Marks a target for the task to reconcile with the hub.
    fn mark(&self, target: &Target) {
        {
            let mut dirty = lock(&self.dirty);
            match target {
                Target::Topic(topic) => {
                    dirty.topics.insert(topic.clone());
                }
                Target::Socket(id) => {
                    dirty.sockets.insert(*id);
                }
                Target::All => return,
            }
        }
        self.wake.notify_one();
    }

    /// This instance's id (all zeros before the first start).
    pub(crate) fn instance(&self) -> InstanceId {
        self.inbound
            .get()
            .map_or([0; 16], |i| *i.instance().as_bytes())
    }

    /// Waits while another instance that holds `channel` is behind (see
    /// `pressure`), up to the publish timeout.
    async fn wait_for_others(&self, channel: &str) -> Result<(), ProviderError> {
        if !self.config.cross_instance_backpressure {
            return Ok(());
        }
        let held = (channel != self.channels.broadcast()).then_some(channel);
        self.pressure
            .wait_clear(held, self.config.publish_timeout)
            .await
            .map_err(ProviderError::overloaded)
    }

    /// Publishes one envelope; the number of subscribed connections Redis
    /// counted.
    async fn publish_envelope(
        &self,
        channel: String,
        origin: &InstanceId,
        topic: &str,
        message: &Message,
    ) -> Result<usize, Error> {
        let Some(mut conn) = self.publisher() else {
            return Err(Error::Unavailable {
                reason: lock(&self.last_error).clone(),
            });
        };
        let payload = envelope::encode(origin, topic, message);
        let timeout = self.config.publish_timeout;
        match tokio::time::timeout(timeout, conn.publish(&channel, &payload)).await {
            Ok(Ok(n)) => {
                self.counters.published.fetch_add(1, Ordering::Relaxed);
                Ok(n)
            }
            Ok(Err(e)) => {
                if e.is_io_error() || e.is_connection_dropped() || e.is_unrecoverable_error() {
                    self.publisher_suspect.notify_one();
                }
                Err(Error::Redis(e))
            }
            Err(_) => {
                self.publisher_suspect.notify_one();
                Err(Error::Timeout(timeout))
            }
        }
    }
}

impl RedisProvider {
    /// A provider for `config`, with an empty hub. Nothing connects until
    /// the app starts it; an unparsable URL fails then, too.
    pub fn new(config: RedisConfig) -> Self {
        let backend = Self::backend(&config);
        let channels = Channels::new(&config.prefix);
        Self {
            shared: Arc::new(Shared {
                inbound: OnceLock::new(),
                backend,
                channels,
                publisher: RwLock::new(None),
                last_error: Mutex::new(Fault::NotYet),
                dirty: Mutex::new(Dirty::default()),
                wake: Notify::new(),
                publisher_suspect: Notify::new(),
                counters: Counters::default(),
                pressure: pressure::Pressure::default(),
                running: tokio::sync::Mutex::new(None),
                scripts: history::Scripts::default(),
                confirmed: Mutex::new(HashSet::new()),
                confirmed_changed: Notify::new(),
                config,
            }),
        }
    }

    fn backend(config: &RedisConfig) -> Result<Backend, (String, Arc<redis::RedisError>)> {
        #[cfg(feature = "cluster")]
        if !config.cluster.is_empty() {
            for node in &config.cluster {
                redis::Client::open(node.as_str())
                    .map_err(|e| (config::redact(node), Arc::new(e)))?;
            }
            return Ok(Backend::Cluster(config.cluster.clone()));
        }
        redis::Client::open(config.url.as_str())
            .map(Backend::Single)
            .map_err(|e| (config.redacted_url(), Arc::new(e)))
    }

    /// The configuration.
    pub fn config(&self) -> &RedisConfig {
        &self.shared.config
    }

    /// This instance's id, carried in every envelope it publishes (the
    /// broker's; nil before the provider was started).
    pub fn instance_id(&self) -> uuid::Uuid {
        uuid::Uuid::from_bytes(self.shared.instance())
    }

    /// Current counters and connection state.
    pub fn stats(&self) -> RedisStats {
        let c = &self.shared.counters;
        RedisStats {
            connected: c.connected.load(Ordering::Acquire),
            disconnects: c.disconnects.load(Ordering::Relaxed),
            reconnects: c.reconnects.load(Ordering::Relaxed),
            dropped_subscriptions: c.dropped_subscriptions.load(Ordering::Relaxed),
            malformed: c.malformed.load(Ordering::Relaxed),
            received: c.received.load(Ordering::Relaxed),
            published: c.published.load(Ordering::Relaxed),
            channels: c.channels.load(Ordering::Relaxed),
            instances_behind: self.shared.pressure.others_behind() as u64,
            pressure_waits: self.shared.pressure.waits(),
            pressure_grants: self.shared.pressure.granted(),
        }
    }

    /// The Redis channel that carries `topic` (for inspection with
    /// `PUBSUB NUMSUB`).
    pub fn topic_channel(&self, topic: &Topic) -> String {
        self.shared.channels.topic(topic)
    }

    /// The Redis channel that carries broadcasts.
    pub fn broadcast_channel(&self) -> String {
        self.shared.channels.broadcast().to_owned()
    }

    /// The Redis channel that carries direct sends to `socket`.
    pub fn socket_channel(&self, socket: &SocketId) -> String {
        self.shared.channels.socket(socket)
    }

    async fn start_inner(&self, inbound: Inbound) -> Result<(), ProviderError> {
        let shared = &self.shared;
        let mut running = shared.running.lock().await;
        if running.is_some() {
            return Ok(());
        }
        // A provider serves one broker: a later start keeps the first one's.
        let inbound = shared.inbound.get_or_init(|| inbound).clone();
        let url = shared.config.redacted_url();
        let backend = shared
            .backend
            .clone()
            .map_err(|(url, source)| ProviderError::from(Error::Config { url, source }))?;
        let connect_error = |reason: Fault, retried_for: Option<Duration>| {
            ProviderError::from(Error::Connect {
                url: url.clone(),
                reason,
                retried_for,
            })
        };
        let initial = match shared.config.startup {
            StartupPolicy::FailFast => Some(
                task::connect(shared, &inbound, &backend)
                    .await
                    .map_err(|reason| connect_error(reason, None))?,
            ),
            StartupPolicy::Retry(limit) => {
                let deadline = tokio::time::Instant::now() + limit;
                let mut backoff = task::Backoff::new(&shared.config);
                loop {
                    match task::connect(shared, &inbound, &backend).await {
                        Ok(live) => break Some(live),
                        Err(reason) => {
                            let wait = backoff.next_delay();
                            if tokio::time::Instant::now() + wait > deadline {
                                return Err(connect_error(reason, Some(limit)));
                            }
                            tracing::debug!(redis = %url, error = %reason, "Redis not reachable yet; retrying");
                            tokio::time::sleep(wait).await;
                        }
                    }
                }
            }
            StartupPolicy::Background => None,
        };
        if let Some(live) = &initial {
            shared.set_publisher(Some(live.publisher.clone()));
            shared.counters.connected.store(true, Ordering::Release);
            tracing::info!(redis = %url, "connected to Redis");
        } else {
            tracing::info!(redis = %url, "connecting to Redis in the background");
        }
        let (tx, rx) = watch::channel(false);
        tokio::spawn(pressure::announce(shared.clone(), rx.clone()));
        let task = tokio::spawn(task::run(shared.clone(), inbound, backend, initial, rx));
        *running = Some(Running { shutdown: tx, task });
        Ok(())
    }

    async fn stop_inner(&self) {
        let shared = &self.shared;
        let Some(running) = shared.running.lock().await.take() else {
            return;
        };
        running.shutdown.send_replace(true);
        let mut task = running.task;
        if tokio::time::timeout(Duration::from_secs(5), &mut task)
            .await
            .is_err()
        {
            task.abort();
        }
        shared.set_publisher(None);
        shared.counters.connected.store(false, Ordering::Release);
        shared.counters.channels.store(0, Ordering::Relaxed);
    }

    async fn publish_inner(&self, out: Outgoing<'_>) -> Result<Sent, ProviderError> {
        let shared = &self.shared;
        let channel = match out.target {
            Target::Topic(topic) => shared.channels.topic(topic),
            Target::Socket(id) => shared.channels.socket(id),
            Target::All => shared.channels.broadcast().to_owned(),
        };
        shared.wait_for_others(&channel).await?;
        if let (Some(limits), Target::Topic(topic)) = (out.history, out.target) {
            return self
                .publish_with_history(&out, topic, &channel, limits)
                .await;
        }
        let receivers = shared
            .publish_envelope(
                channel,
                out.origin.as_bytes(),
                &out.target.name(),
                out.message,
            )
            .await?;
        Ok(Sent::counted(receivers as u64))
    }
}

impl std::fmt::Debug for RedisProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisProvider")
            .field("redis", &self.shared.config.redacted_url())
            .field("prefix", &self.shared.config.prefix)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl Provider for RedisProvider {
    async fn start(&self, inbound: Inbound) -> Result<(), ProviderError> {
        self.start_inner(inbound).await
    }

    async fn stop(&self) {
        self.stop_inner().await;
    }

    async fn publish(&self, out: Outgoing<'_>) -> Result<Sent, ProviderError> {
        self.publish_inner(out).await
    }

    fn watch(&self, target: &Target) {
        self.shared.mark(target);
    }

    fn unwatch(&self, target: &Target) {
        self.shared.mark(target);
    }

    fn keeps_history(&self) -> bool {
        true
    }

    async fn read_history(
        &self,
        topic: &Topic,
        limits: HistoryLimits,
        since: Option<(&str, u64)>,
    ) -> Result<HistoryRead, ProviderError> {
        self.read_history_inner(topic, limits, since).await
    }

    async fn watched(&self, target: &Target) -> Result<(), ProviderError> {
        self.watched_inner(target).await
    }

    fn metrics(&self) -> Vec<ProviderMetric> {
        metrics::of(&self.stats())
    }
}
