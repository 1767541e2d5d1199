//! The broker: one instance's pub/sub. It owns the [`Hub`] (the single
//! source of truth for local subscriptions), readiness, the outbound budget
//! wait, local delivery and echo suppression, and drives a [`Provider`] for
//! the hop between instances.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::history::History;
use crate::positions::{self, Joined, Recovery};
use crate::provider::{ErrorKind, InstanceId, Outgoing, ProviderError, Sent, Target};
use crate::{Budget, HistoryConfig, Hub, InProcProvider, Message, Outbox, Provider};
use crate::{PublishError, SocketId, SubscribeError, Topic};

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// [`Provider`] with boxed futures, so that a broker holds any provider.
trait DynProvider: Send + Sync {
    fn start(&self, inbound: Inbound) -> BoxFuture<'_, Result<(), ProviderError>>;
    fn stop(&self) -> BoxFuture<'_, ()>;
    fn publish<'a>(&'a self, out: Outgoing<'a>) -> BoxFuture<'a, Result<Sent, ProviderError>>;
    fn watch(&self, target: &Target);
    fn unwatch(&self, target: &Target);
    fn is_local(&self) -> bool;
}

impl<P: Provider> DynProvider for P {
    fn start(&self, inbound: Inbound) -> BoxFuture<'_, Result<(), ProviderError>> {
        Box::pin(Provider::start(self, inbound))
    }
    fn stop(&self) -> BoxFuture<'_, ()> {
        Box::pin(Provider::stop(self))
    }
    fn publish<'a>(&'a self, out: Outgoing<'a>) -> BoxFuture<'a, Result<Sent, ProviderError>> {
        Box::pin(Provider::publish(self, out))
    }
    fn watch(&self, target: &Target) {
        Provider::watch(self, target);
    }
    fn unwatch(&self, target: &Target) {
        Provider::unwatch(self, target);
    }
    fn is_local(&self) -> bool {
        Provider::is_local(self)
    }
}

/// The outcome of a publication.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Published {
    /// Local connections it was queued to.
    pub local: usize,
    /// What the provider reported, when it carried the publication to
    /// other instances.
    pub remote: Option<Sent>,
}

impl Published {
    /// Whether anyone is known to have been reached: a local connection, or
    /// a receiver the backend counted.
    pub fn reached(&self) -> bool {
        self.local > 0 || self.remote.and_then(|s| s.receivers).is_some_and(|n| n > 0)
    }
}

struct Inner {
    hub: Hub,
    history: Option<Arc<History>>,
    instance: InstanceId,
    ready: AtomicBool,
    provider: Box<dyn DynProvider>,
}

/// Delivers a publication of `topic` to this instance's subscribers: with
/// the next offset of its history when it keeps one (assigned and
/// delivered under the history's lock, so every subscriber sees offsets in
/// order), else raw.
fn deliver_topic(hub: &Hub, history: Option<&History>, topic: &Topic, message: &Message) -> usize {
    let Some(history) = history.filter(|h| h.applies_to(topic)) else {
        return hub.publish_local(topic, message);
    };
    let stream = history.stream(topic);
    let queued = {
        let mut st = History::lock(&stream);
        let offset = history.append(&mut st, message);
        hub.publish_positioned(topic, message, || {
            positions::envelope(topic, offset, message)
        })
    };
    drop(stream);
    history.after_append(|t| hub.subscriber_count(t) > 0);
    queued
}

/// One instance's pub/sub: the local [`Hub`] and the [`Provider`] that
/// links it to other instances. Cheap to clone (a handle).
///
/// ```
/// use ori_core::{Broker, InProcProvider, Target, Topic};
/// # futures_util::future::FutureExt::now_or_never(async {
/// let broker = Broker::new(InProcProvider);
/// broker.start().await.unwrap();
/// let done = broker
///     .publish(Target::Topic(Topic::new("news").unwrap()), "hello".into())
///     .await
///     .unwrap();
/// assert_eq!(done.local, 0); // nobody subscribed
/// # }).unwrap();
/// ```
#[derive(Clone)]
pub struct Broker {
    inner: Arc<Inner>,
}

impl Default for Broker {
    fn default() -> Self {
        Self::new(InProcProvider)
    }
}

impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broker")
            .field("instance", &self.inner.instance)
            .field("ready", &self.is_ready())
            .field("local", &self.inner.provider.is_local())
            .finish_non_exhaustive()
    }
}

impl Broker {
    /// A broker with an empty hub, driving `provider`.
    pub fn new(provider: impl Provider) -> Self {
        Self::build(provider, None)
    }

    /// A broker whose topics keep history as `history` says, so that
    /// sockets can join with positions and resume ([`join`](Self::join)).
    ///
    /// The history lives in this process: a restart changes every epoch,
    /// and each instance behind a cross-instance provider numbers the
    /// publications it delivers itself (a resume on another instance is
    /// `recovered: false`).
    pub fn with_history(provider: impl Provider, history: HistoryConfig) -> Self {
        Self::build(provider, Some(history))
    }

    fn build(provider: impl Provider, history: Option<HistoryConfig>) -> Self {
        Self {
            inner: Arc::new(Inner {
                hub: Hub::new(),
                history: history.map(|c| Arc::new(History::new(c))),
                instance: InstanceId::random(),
                ready: AtomicBool::new(false),
                provider: Box::new(provider),
            }),
        }
    }

    /// The local hub.
    pub fn hub(&self) -> &Hub {
        &self.inner.hub
    }

    /// This instance's id.
    pub fn instance(&self) -> InstanceId {
        self.inner.instance
    }

    /// Starts the provider; from then on publishes are accepted.
    pub async fn start(&self) -> Result<(), ProviderError> {
        let inbound = Inbound {
            hub: self.inner.hub.clone(),
            history: self.inner.history.clone(),
            instance: self.inner.instance,
        };
        self.inner.provider.start(inbound).await?;
        self.inner.ready.store(true, Ordering::Release);
        Ok(())
    }

    /// Stops the provider. Later publishes fail with
    /// [`PublishError::NotReady`].
    pub async fn stop(&self) {
        self.inner.ready.store(false, Ordering::Release);
        self.inner.provider.stop().await;
    }

    /// Whether the broker is started and accepts publishes.
    pub fn is_ready(&self) -> bool {
        self.inner.ready.load(Ordering::Acquire)
    }

    /// Publishes `message` to `target`.
    ///
    /// Waits first while the instance's outbound budget is spent
    /// ([`Hub::reserve`]; [`PublishError::Overloaded`] after its wait
    /// timeout), then queues it for this instance's connections, then hands
    /// it to the provider for the others. A [`Target::Socket`] connected
    /// here is served here only. An `Err` from the provider means other
    /// instances may not have it; this instance's connections do.
    pub async fn publish(
        &self,
        target: Target,
        message: Message,
    ) -> Result<Published, PublishError> {
        let inner = &*self.inner;
        if !self.is_ready() {
            return Err(PublishError::NotReady {
                topic: target.name().into_owned(),
            });
        }
        inner
            .hub
            .reserve()
            .await
            .map_err(|o| PublishError::Overloaded {
                topic: target.name().into_owned(),
                waited: o.waited,
            })?;
        let local = match &target {
            Target::Topic(topic) => {
                deliver_topic(&inner.hub, inner.history.as_deref(), topic, &message)
            }
            Target::All => inner.hub.broadcast_local(&message),
            Target::Socket(id) => {
                if inner.hub.is_connected(id) {
                    let queued = inner.hub.send_local(id, &message);
                    return Ok(Published {
                        local: usize::from(queued),
                        remote: None,
                    });
                }
                0
            }
        };
        if inner.provider.is_local() {
            return Ok(Published {
                local,
                remote: None,
            });
        }
        let out = Outgoing {
            origin: inner.instance,
            target: &target,
            message: &message,
        };
        let sent = inner
            .provider
            .publish(out)
            .await
            .map_err(|e| match (e.kind(), e.waited()) {
                (ErrorKind::Overloaded, Some(waited)) => PublishError::Overloaded {
                    topic: target.name().into_owned(),
                    waited,
                },
                _ => PublishError::Provider(e),
            })?;
        Ok(Published {
            local,
            remote: Some(sent),
        })
    }

    /// Adds a local connection: from now on it receives broadcasts and
    /// direct sends. `max_topics` bounds its own subscriptions.
    pub fn register(&self, outbox: Arc<Outbox>, max_topics: usize) {
        let id = *outbox.id();
        self.inner.hub.register(outbox, max_topics);
        self.inner.provider.watch(&Target::Socket(id));
    }

    /// Subscribes a local connection. `Ok(false)`: it already was.
    pub fn subscribe(&self, socket: &SocketId, topic: &Topic) -> Result<bool, SubscribeError> {
        let sub = self.inner.hub.subscribe(socket, topic)?;
        if sub.topic_edge {
            self.inner.provider.watch(&Target::Topic(topic.clone()));
        }
        Ok(sub.changed)
    }

    /// Subscribes a local connection with positions, or resumes it
    /// (PROTOCOL.md section 8), and queues the `room.joined` reply to it,
    /// then for a recovered resume the missed publications, before any
    /// later publication: no gap and no duplicate at the switch. On a topic
    /// without history it joins raw and replies `recovered: false`.
    pub fn join(
        &self,
        socket: &SocketId,
        topic: &Topic,
        recovery: &Recovery,
    ) -> Result<Joined, SubscribeError> {
        let inner = &*self.inner;
        let Some(history) = inner.history.as_ref().filter(|h| h.applies_to(topic)) else {
            self.subscribe(socket, topic)?;
            inner
                .hub
                .push_to(socket, [Message::from(Joined::NoHistory.reply(topic))]);
            return Ok(Joined::NoHistory);
        };
        let stream = history.stream(topic);
        let (joined, edge) = {
            let mut st = History::lock(&stream);
            let sub = inner.hub.subscribe_as(socket, topic, true)?;
            let found = history.find(&mut st, recovery);
            let recovered = match recovery {
                Recovery::Latest => None,
                Recovery::Since { .. } => Some(found.replay.as_ref().map(|r| r.len() as u64)),
            };
            let joined = Joined::Positions {
                epoch: found.epoch,
                offset: found.last,
                recovered,
            };
            let reply = Message::from(joined.reply(topic));
            let replay = found
                .replay
                .unwrap_or_default()
                .into_iter()
                .map(|(offset, m)| Message::from(positions::envelope(topic, offset, &m)));
            inner
                .hub
                .push_to(socket, std::iter::once(reply).chain(replay));
            (joined, sub.topic_edge)
        };
        if edge {
            inner.provider.watch(&Target::Topic(topic.clone()));
        }
        Ok(joined)
    }

    /// Bytes held by the histories (`None` without history).
    pub fn history_bytes(&self) -> Option<usize> {
        self.inner.history.as_ref().map(|h| h.bytes())
    }

    /// Topics that keep a history now (`None` without history).
    pub fn history_topics(&self) -> Option<usize> {
        self.inner.history.as_ref().map(|h| h.topics())
    }

    /// Unsubscribes a local connection. `Ok(false)`: it was not subscribed.
    pub fn unsubscribe(&self, socket: &SocketId, topic: &Topic) -> Result<bool, SubscribeError> {
        let sub = self.inner.hub.unsubscribe(socket, topic)?;
        if sub.topic_edge {
            self.inner.provider.unwatch(&Target::Topic(topic.clone()));
        }
        Ok(sub.changed)
    }

    /// Removes a local connection and all of its subscriptions.
    pub fn disconnect(&self, socket: &SocketId) {
        for topic in self.inner.hub.unregister(socket) {
            self.inner.provider.unwatch(&Target::Topic(topic));
        }
        self.inner.provider.unwatch(&Target::Socket(*socket));
    }

    /// Whether `socket` is connected to this instance.
    pub fn is_connected(&self, socket: &SocketId) -> bool {
        self.inner.hub.is_connected(socket)
    }

    /// Connections on this instance.
    pub fn connection_count(&self) -> usize {
        self.inner.hub.connection_count()
    }

    /// Subscribers of `topic` on this instance.
    pub fn subscriber_count(&self, topic: &Topic) -> usize {
        self.inner.hub.subscriber_count(topic)
    }
}

/// What a [`Provider`] hands received publications to, and asks what this
/// instance needs. Cheap to clone.
#[derive(Clone)]
pub struct Inbound {
    hub: Hub,
    history: Option<Arc<History>>,
    instance: InstanceId,
}

impl std::fmt::Debug for Inbound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inbound")
            .field("instance", &self.instance)
            .finish_non_exhaustive()
    }
}

impl Inbound {
    /// This instance's id (what its own publications carry as origin).
    pub fn instance(&self) -> InstanceId {
        self.instance
    }

    /// Whether `origin` is this instance (a publication carrying it is this
    /// instance's own echo).
    pub fn is_own(&self, origin: &InstanceId) -> bool {
        *origin == self.instance
    }

    /// Delivers a publication received from instance `origin` to this
    /// instance's connections; returns how many it was queued to. This
    /// instance's own echo is dropped (`None`): its connections were served
    /// when it was published.
    pub fn deliver(
        &self,
        origin: &InstanceId,
        target: &Target,
        message: &Message,
    ) -> Option<usize> {
        if self.is_own(origin) {
            return None;
        }
        Some(match target {
            Target::Topic(topic) => {
                deliver_topic(&self.hub, self.history.as_deref(), topic, message)
            }
            Target::All => self.hub.broadcast_local(message),
            Target::Socket(id) => usize::from(self.hub.send_local(id, message)),
        })
    }

    /// Whether this instance currently needs `target`'s publications: a
    /// topic with a local subscriber, a connection open here, or `All`.
    pub fn is_watched(&self, target: &Target) -> bool {
        match target {
            Target::Topic(topic) => self.hub.subscriber_count(topic) > 0,
            Target::Socket(id) => self.hub.is_connected(id),
            Target::All => true,
        }
    }

    /// Every topic with a local subscriber (what to resubscribe after a
    /// reconnect).
    pub fn watched_topics(&self) -> Vec<Topic> {
        self.hub.active_topics()
    }

    /// The instance's outbound budget, for a provider that paces its reads
    /// by it.
    pub fn budget(&self) -> &Arc<Budget> {
        self.hub.budget()
    }

    /// Completes when the outbound budget has room (at once when it has).
    pub async fn room(&self) {
        self.hub.room().await;
    }
}
