//! The background task: owns the subscriber connection, reconciles channel
//! subscriptions with the hub, delivers what arrives, and reconnects.

use std::collections::HashSet;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ori_core::{Inbound, InstanceId, SocketId, Target, Topic, BROADCAST_TOPIC};
use tokio::sync::watch;

use crate::backend::{Backend, Event, Publisher, Subscriber};
use crate::channels::ChannelKind;
use crate::envelope::{self, Malformed};
use crate::{Dirty, Fault, RedisConfig, Shared};

/// One connected pair: the publisher and the subscriber (already
/// subscribed to the broadcast channel).
pub(crate) struct Live {
    pub(crate) publisher: Publisher,
    subscriber: Subscriber,
}

/// Opens both connections, each within the connect timeout, and subscribes
/// the broadcast channel.
pub(crate) async fn connect(
    shared: &Arc<Shared>,
    inbound: &Inbound,
    backend: &Backend,
) -> Result<Live, Fault> {
    let connect_timeout = shared.config.connect_timeout;
    let mut throttle = Throttle::default();
    let delivering = shared.clone();
    let handing = inbound.clone();
    let deliver = Box::new(move |channel: &str, payload: &[u8]| {
        deliver(&delivering, &handing, channel, payload, &mut throttle);
    });
    let pressing = shared.clone();
    let waiting = Box::new(move |behind: bool| pressing.pressure.set_local(behind));
    let (publisher, subscriber) = backend
        .connect(
            connect_timeout,
            shared.config.publish_timeout,
            inbound,
            deliver,
            waiting,
        )
        .await?;
    for channel in [shared.channels.broadcast(), shared.channels.pressure()] {
        let change = subscriber.change(true, channel.to_owned());
        tokio::time::timeout(connect_timeout, change)
            .await
            .map_err(|_| Fault::timeout("SUBSCRIBE", connect_timeout))??;
    }
    Ok(Live {
        publisher,
        subscriber,
    })
}

/// Channels every subscriber holds: broadcast and pressure.
const FIXED_CHANNELS: u64 = 2;

/// Exponential back-off with jitter.
pub(crate) struct Backoff {
    min: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    pub(crate) fn new(config: &RedisConfig) -> Self {
        Self {
            min: config.reconnect_min,
            max: config.reconnect_max,
            next: config.reconnect_min,
        }
    }

    pub(crate) fn next_delay(&mut self) -> Duration {
        let base = self.next;
        self.next = (self.next * 2).min(self.max);
        // Up to 25% jitter, so instances that lost Redis together do not
        // all come back in the same millisecond.
        let random = std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish();
        let jitter = base.mul_f64((random % 1000) as f64 / 4000.0);
        base + jitter
    }

    fn reset(&mut self) {
        self.next = self.min;
    }
}

/// What the subscriber connection currently holds (besides broadcast).
#[derive(Default)]
struct Upstream {
    topics: HashSet<Topic>,
    sockets: HashSet<SocketId>,
}

enum Exit {
    Shutdown,
    Lost(Fault),
}

/// Logs malformed envelopes once per burst.
#[derive(Default)]
struct Throttle {
    last: Option<Instant>,
    suppressed: u64,
}

const MALFORMED_LOG_WINDOW: Duration = Duration::from_secs(10);

impl Throttle {
    fn note(&mut self, shared: &Shared, channel: &str, why: &Malformed) {
        shared.counters.malformed.fetch_add(1, Ordering::Relaxed);
        let now = Instant::now();
        match self.last {
            Some(t) if now.duration_since(t) < MALFORMED_LOG_WINDOW => self.suppressed += 1,
            _ => {
                tracing::warn!(
                    channel,
                    error = %why,
                    dropped_since_last_report = self.suppressed,
                    "dropped a malformed envelope from Redis (further ones are counted, \
                     reported at most every {MALFORMED_LOG_WINDOW:?})"
                );
                self.last = Some(now);
                self.suppressed = 0;
            }
        }
    }
}

/// The task's whole life: serve the connection it was given (if any),
/// reconnect with back-off whenever it is lost, until shutdown.
pub(crate) async fn run(
    shared: Arc<Shared>,
    inbound: Inbound,
    backend: Backend,
    mut initial: Option<Live>,
    mut shutdown: watch::Receiver<bool>,
) {
    let url = shared.config.redacted_url();
    let mut upstream = Upstream::default();
    let mut backoff = Backoff::new(&shared.config);
    let mut throttle = Throttle::default();
    let mut down_since: Option<Instant> = initial.is_none().then(Instant::now);
    let mut ever_connected = initial.is_some();
    let mut attempts = 0u64;
    loop {
        let live = match initial.take() {
            Some(live) => live,
            None => {
                let connected = tokio::select! {
                    biased;
                    _ = stopped(&mut shutdown) => return,
                    r = connect(&shared, &inbound, &backend) => r,
                };
                match connected {
                    Ok(live) => live,
                    Err(reason) => {
                        attempts += 1;
                        tracing::debug!(redis = %url, attempt = attempts, error = %reason, "Redis reconnect failed");
                        shared.set_last_error(reason);
                        let wait = backoff.next_delay();
                        tokio::select! {
                            biased;
                            _ = stopped(&mut shutdown) => return,
                            _ = tokio::time::sleep(wait) => continue,
                        }
                    }
                }
            }
        };
        let mut live = live;
        shared.set_publisher(Some(live.publisher.clone()));
        shared.counters.connected.store(true, Ordering::Release);
        // A fresh connection holds only the broadcast channel: everything
        // that should be subscribed is dirty again.
        {
            let mut dirty = lock(&shared.dirty);
            dirty.topics.extend(upstream.topics.drain());
            dirty.topics.extend(inbound.watched_topics());
            lock(&shared.confirmed).clear();
            dirty.sockets.extend(upstream.sockets.drain());
        }
        shared
            .counters
            .channels
            .store(FIXED_CHANNELS, Ordering::Relaxed);
        let exit = match reconcile(&shared, &inbound, &live.subscriber, &mut upstream).await {
            Ok(()) => {
                if !ever_connected {
                    ever_connected = true;
                    down_since = None;
                    tracing::info!(redis = %url, "connected to Redis");
                } else if let Some(since) = down_since.take() {
                    shared.counters.reconnects.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(
                        redis = %url,
                        after = ?since.elapsed(),
                        attempts,
                        topics = upstream.topics.len(),
                        sockets = upstream.sockets.len(),
                        "Redis connection restored; channels resubscribed, cross-instance delivery resumed"
                    );
                }
                attempts = 0;
                backoff.reset();
                serve(
                    &shared,
                    &inbound,
                    &backend,
                    &mut live,
                    &mut upstream,
                    &mut throttle,
                    &mut shutdown,
                )
                .await
            }
            Err(reason) => Exit::Lost(reason),
        };
        shared.set_publisher(None);
        shared.counters.connected.store(false, Ordering::Release);
        shared.counters.channels.store(0, Ordering::Relaxed);
        lock(&shared.confirmed).clear();
        // The subscriber is gone, and with it any wait for room: this
        // instance is no longer holding anyone back (nor any channel).
        shared.pressure.set_local(false);
        shared.pressure.unhold_all();
        match exit {
            Exit::Shutdown => {
                // A later start resubscribes what this connection held.
                let mut dirty = lock(&shared.dirty);
                dirty.topics.extend(upstream.topics.drain());
                dirty.sockets.extend(upstream.sockets.drain());
                return;
            }
            Exit::Lost(reason) => {
                if down_since.is_none() {
                    // Counted once per outage: a resubscription that fails
                    // midway during the same outage drops nothing new.
                    let held = upstream.topics.len() + upstream.sockets.len();
                    shared
                        .counters
                        .dropped_subscriptions
                        .fetch_add(held as u64, Ordering::Relaxed);
                    shared.counters.disconnects.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(
                        redis = %url,
                        error = %reason,
                        "Redis connection lost; local delivery continues, cross-instance \
                         publishes fail until it is back; reconnecting with back-off"
                    );
                    down_since = Some(Instant::now());
                }
                shared.set_last_error(reason);
                let mut dirty = lock(&shared.dirty);
                dirty.topics.extend(upstream.topics.drain());
                dirty.sockets.extend(upstream.sockets.drain());
            }
        }
        drop(live);
        let wait = backoff.next_delay();
        tokio::select! {
            biased;
            _ = stopped(&mut shutdown) => return,
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

/// Resolves once shutdown is requested (or the provider is gone).
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|s| *s).await;
}

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

async fn serve(
    shared: &Shared,
    inbound: &Inbound,
    backend: &Backend,
    live: &mut Live,
    upstream: &mut Upstream,
    throttle: &mut Throttle,
    shutdown: &mut watch::Receiver<bool>,
) -> Exit {
    let period = shared.config.health_check_interval;
    let mut health = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    health.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let answer_within = shared.config.publish_timeout;
    loop {
        tokio::select! {
            biased;
            _ = stopped(shutdown) => return Exit::Shutdown,
            _ = shared.wake.notified() => {
                // (Un)subscriptions are confirmed on the subscriber
                // connection, behind the messages its reader holds back
                // while the budget is spent: wait for room first, so the
                // confirmations do not time out behind them.
                tokio::select! {
                    biased;
                    _ = stopped(shutdown) => return Exit::Shutdown,
                    () = inbound.room() => {}
                }
                if let Err(reason) = reconcile(shared, inbound, &live.subscriber, upstream).await {
                    return Exit::Lost(reason);
                }
            }
            _ = shared.publisher_suspect.notified() => {
                if let Err(reason) = check_publisher(shared, backend, live).await {
                    return Exit::Lost(reason);
                }
            }
            _ = health.tick() => {
                if !inbound.budget().has_room() {
                    // The paced reader is holding back, so a PONG would wait
                    // behind unread messages: check again next period.
                    continue;
                }
                match tokio::time::timeout(answer_within, live.subscriber.ping()).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => return Exit::Lost(e),
                    Err(_) => return Exit::Lost(Fault::timeout("PING on the subscriber", answer_within)),
                }
                if let Err(reason) = check_publisher(shared, backend, live).await {
                    return Exit::Lost(reason);
                }
            }
            event = live.subscriber.next() => match event {
                Event::Message(msg) => {
                    // A cluster's pushes: taken no faster than delivered.
                    if !inbound.budget().may_pass() {
                        shared.pressure.set_local(true);
                        inbound.room().await;
                        shared.pressure.set_local(false);
                    }
                    deliver(shared, inbound, msg.get_channel_name(), msg.get_payload_bytes(), throttle);
                }
                Event::Closed(reason) => return Exit::Lost(reason),
                Event::NodeDisconnected => {
                    if let Err(reason) = resync(shared, live, upstream).await {
                        return Exit::Lost(reason);
                    }
                }
            },
        }
    }
}

/// After a cluster node connection dropped: the cluster must answer, and
/// every channel is subscribed again (idempotent; the cluster client may
/// already have done it on the replacement connection). The cluster client
/// replaces the node connection on its next use, so failures are retried
/// for up to the connect timeout before the connection counts as lost.
async fn resync(shared: &Shared, live: &mut Live, upstream: &Upstream) -> Result<(), Fault> {
    let within = shared.config.publish_timeout;
    let deadline = tokio::time::Instant::now() + shared.config.connect_timeout;
    tracing::debug!("a Redis node connection dropped; checking and resubscribing");
    let mut channels = vec![
        shared.channels.broadcast().to_owned(),
        shared.channels.pressure().to_owned(),
    ];
    channels.extend(upstream.topics.iter().map(|t| shared.channels.topic(t)));
    channels.extend(upstream.sockets.iter().map(|s| shared.channels.socket(s)));
    loop {
        let attempt = match tokio::time::timeout(within, live.subscriber.ping()).await {
            Ok(Ok(())) => run_batch(shared, &live.subscriber, true, &channels).await,
            Ok(Err(e)) => Err(e),
            Err(_) => Err(Fault::timeout("PING on the subscriber", within)),
        };
        match attempt {
            Ok(()) => return Ok(()),
            Err(e) if tokio::time::Instant::now() < deadline => {
                tracing::debug!(error = %e, "cluster not answering yet; retrying");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Pings the publisher; if it does not answer, replaces it once. An error
/// means Redis itself is unreachable.
async fn check_publisher(shared: &Shared, backend: &Backend, live: &mut Live) -> Result<(), Fault> {
    let within = shared.config.publish_timeout;
    match tokio::time::timeout(within, live.publisher.ping()).await {
        Ok(Ok(())) => return Ok(()),
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "Redis publisher connection failed; replacing it")
        }
        Err(_) => tracing::debug!("Redis publisher connection did not answer; replacing it"),
    }
    shared.set_publisher(None);
    let conn = backend
        .connect_publisher(shared.config.connect_timeout, within)
        .await?;
    shared.set_publisher(Some(conn.clone()));
    live.publisher = conn;
    Ok(())
}

/// Brings the subscriber connection in line with the hub, until nothing is
/// dirty. On failure everything it took is dirty again.
async fn reconcile(
    shared: &Shared,
    inbound: &Inbound,
    subscriber: &Subscriber,
    upstream: &mut Upstream,
) -> Result<(), Fault> {
    loop {
        let Dirty { topics, sockets } = std::mem::take(&mut *lock(&shared.dirty));
        if topics.is_empty() && sockets.is_empty() {
            return Ok(());
        }
        let mut subscribe = Vec::new();
        let mut unsubscribe = Vec::new();
        let mut add_topics = Vec::new();
        let mut drop_topics = Vec::new();
        for topic in &topics {
            let want = inbound.is_watched(&Target::Topic(topic.clone()));
            let have = upstream.topics.contains(topic);
            if want && !have {
                subscribe.push(shared.channels.topic(topic));
                add_topics.push(topic.clone());
            } else if !want && have {
                unsubscribe.push(shared.channels.topic(topic));
                drop_topics.push(topic.clone());
            }
        }
        let mut add_sockets = Vec::new();
        let mut drop_sockets = Vec::new();
        for socket in &sockets {
            let want = inbound.is_watched(&Target::Socket(*socket));
            let have = upstream.sockets.contains(socket);
            if want && !have {
                subscribe.push(shared.channels.socket(socket));
                add_sockets.push(*socket);
            } else if !want && have {
                unsubscribe.push(shared.channels.socket(socket));
                drop_sockets.push(*socket);
            }
        }
        // Held from before the SUBSCRIBE goes out (Redis delivers on a
        // channel from then on, and the confirmation may wait behind
        // messages while this instance is behind), no longer held once the
        // UNSUBSCRIBE is confirmed; a failure ends the connection, and with
        // it everything held.
        shared.pressure.holding(&subscribe, &[]);
        let result = async {
            run_batch(shared, subscriber, true, &subscribe).await?;
            run_batch(shared, subscriber, false, &unsubscribe).await
        }
        .await;
        if let Err(reason) = result {
            let mut dirty = lock(&shared.dirty);
            dirty.topics.extend(topics);
            dirty.sockets.extend(sockets);
            return Err(reason);
        }
        {
            let mut confirmed = lock(&shared.confirmed);
            confirmed.extend(add_topics.iter().cloned());
            for t in &drop_topics {
                confirmed.remove(t);
            }
        }
        shared.confirmed_changed.notify_waiters();
        shared.pressure.holding(&[], &unsubscribe);
        upstream.topics.extend(add_topics);
        upstream.sockets.extend(add_sockets);
        for t in &drop_topics {
            upstream.topics.remove(t);
        }
        for s in &drop_sockets {
            upstream.sockets.remove(s);
        }
        shared.counters.channels.store(
            FIXED_CHANNELS + (upstream.topics.len() + upstream.sockets.len()) as u64,
            Ordering::Relaxed,
        );
    }
}

/// Sends one `SUBSCRIBE` / `UNSUBSCRIBE` per channel, pipelined in chunks.
/// (One channel per command keeps the connection's replies in step with
/// its requests: a multi-channel command answers once per channel.)
async fn run_batch(
    shared: &Shared,
    subscriber: &Subscriber,
    subscribe: bool,
    channels: &[String],
) -> Result<(), Fault> {
    const CHUNK: usize = 512;
    let within = shared.config.publish_timeout;
    for chunk in channels.chunks(CHUNK) {
        let requests = chunk
            .iter()
            .map(|channel| subscriber.change(subscribe, channel.clone()));
        let verb = if subscribe {
            "SUBSCRIBE"
        } else {
            "UNSUBSCRIBE"
        };
        match tokio::time::timeout(within, futures_util::future::try_join_all(requests)).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(e),
            Err(_) => return Err(Fault::timeout(verb, within)),
        }
    }
    Ok(())
}

/// Hands one received envelope to the broker, or drops it.
fn deliver(
    shared: &Shared,
    inbound: &Inbound,
    channel: &str,
    payload: &[u8],
    throttle: &mut Throttle,
) {
    if channel == shared.channels.pressure() {
        match crate::pressure::decode(payload) {
            Some(a) if inbound.is_own(&InstanceId::from_bytes(a.instance)) => {}
            Some(a) => shared.pressure.note(inbound.instance().as_bytes(), a),
            None => throttle.note(shared, channel, &Malformed::Announcement),
        }
        return;
    }
    match decode_for(shared, channel, payload) {
        Ok((target, env)) => {
            if let Some((epoch, offset)) = env.position {
                // Positioned: delivered here as everywhere, own echo included
                // (it was not delivered when published).
                let position = ori_core::Position {
                    epoch: epoch.into(),
                    offset,
                };
                inbound.deliver_positioned(&env.topic, &env.message, &position);
                shared.counters.received.fetch_add(1, Ordering::Relaxed);
                if !inbound.is_own(&InstanceId::from_bytes(env.origin)) {
                    shared.pressure.took(&env.origin);
                }
                return;
            }
            let origin = InstanceId::from_bytes(env.origin);
            if inbound.deliver(&origin, &target, &env.message).is_some() {
                shared.counters.received.fetch_add(1, Ordering::Relaxed);
                shared.pressure.took(&env.origin);
            }
        }
        Err(why) => throttle.note(shared, channel, &why),
    }
}

/// Decodes an envelope and checks it against its channel.
fn decode_for(
    shared: &Shared,
    channel: &str,
    payload: &[u8],
) -> Result<(Target, envelope::Envelope), Malformed> {
    let kind = shared
        .channels
        .classify(channel)
        .ok_or_else(|| Malformed::UnknownChannel(channel.to_owned()))?;
    let env = envelope::decode(payload)?;
    let wrong = || Malformed::WrongChannel {
        topic: env.topic.to_string(),
        channel: channel.to_owned(),
    };
    let target = match kind {
        ChannelKind::Topic(name) if env.topic.as_str() == name && !env.topic.is_reserved() => {
            Target::Topic(env.topic.clone())
        }
        ChannelKind::Broadcast if env.topic.as_str() == BROADCAST_TOPIC => Target::All,
        ChannelKind::Socket(id) => match env.topic.socket_target() {
            Some(target) if target.to_string() == id => Target::Socket(target),
            _ => return Err(wrong()),
        },
        _ => return Err(wrong()),
    };
    Ok((target, env))
}
