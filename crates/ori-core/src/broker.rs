//! The broker: one instance's pub/sub. It owns the [`Hub`] (the single
//! source of truth for local subscriptions), readiness, the outbound budget
//! wait, local delivery and echo suppression, and drives a [`Provider`] for
//! the hop between instances.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::history::History;
use crate::positions::{self, Joined, Position, Recovery};
use crate::provider::{ErrorKind, HistoryLimits, HistoryRead, InstanceId, Outgoing};
use crate::provider::{ProviderError, ProviderMetric, Sent, Target};
use crate::{Budget, HistoryConfig, Hub, InProcProvider, Message, Outbox, Provider};
use crate::{PublishError, SocketId, SubscribeError, Topic};

mod join;

use join::{Gates, HistorySource};

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// [`Provider`] with boxed futures, so that a broker holds any provider.
trait DynProvider: Send + Sync {
    fn start(&self, inbound: Inbound) -> BoxFuture<'_, Result<(), ProviderError>>;
    fn stop(&self) -> BoxFuture<'_, ()>;
    fn publish<'a>(&'a self, out: Outgoing<'a>) -> BoxFuture<'a, Result<Sent, ProviderError>>;
    fn watch(&self, target: &Target);
    fn unwatch(&self, target: &Target);
    fn is_local(&self) -> bool;
    fn read_history<'a>(
        &'a self,
        topic: &'a Topic,
        limits: HistoryLimits,
        since: Option<(&'a str, u64)>,
    ) -> BoxFuture<'a, Result<HistoryRead, ProviderError>>;
    fn watched<'a>(&'a self, target: &'a Target) -> BoxFuture<'a, Result<(), ProviderError>>;
    fn metrics(&self) -> Vec<ProviderMetric>;
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
    fn read_history<'a>(
        &'a self,
        topic: &'a Topic,
        limits: HistoryLimits,
        since: Option<(&'a str, u64)>,
    ) -> BoxFuture<'a, Result<HistoryRead, ProviderError>> {
        Box::pin(Provider::read_history(self, topic, limits, since))
    }
    fn watched<'a>(&'a self, target: &'a Target) -> BoxFuture<'a, Result<(), ProviderError>> {
        Box::pin(Provider::watched(self, target))
    }
    fn metrics(&self) -> Vec<ProviderMetric> {
        Provider::metrics(self)
    }
}

/// The outcome of a publication.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
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
        self.local > 0
            || self
                .remote
                .as_ref()
                .and_then(|s| s.receivers)
                .is_some_and(|n| n > 0)
    }
}

/// What the broker and its [`Inbound`] share.
struct Core {
    hub: Hub,
    instance: InstanceId,
    /// The topics that keep history, and their store when it is kept here.
    history: Option<Arc<History>>,
    /// The provider keeps the history (one sequence for every instance).
    remote_history: bool,
    gates: Gates,
}

impl Core {
    /// `topic`'s history limits, when it keeps history on the provider.
    fn remote_limits(&self, topic: &Topic) -> Option<HistoryLimits> {
        if !self.remote_history {
            return None;
        }
        self.history
            .as_ref()
            .filter(|h| h.applies_to(topic))
            .map(|h| h.limits())
    }

    /// `topic`'s history in this process, when it keeps one here.
    fn local_history(&self, topic: &Topic) -> Option<&History> {
        if self.remote_history {
            return None;
        }
        self.history.as_deref().filter(|h| h.applies_to(topic))
    }

    /// Delivers a publication of `topic` to this instance's subscribers:
    /// with the next offset of the history kept here (assigned and
    /// delivered under the history's lock, so every subscriber sees offsets
    /// in order), else raw.
    fn deliver_topic(&self, topic: &Topic, message: &Message) -> usize {
        let hub = &self.hub;
        let Some(history) = self.local_history(topic) else {
            return hub.publish_local(topic, message);
        };
        let stream = history.stream(topic);
        let queued = {
            let mut st = History::lock(&stream);
            let offset = history.append(&mut st, message);
            let epoch = History::epoch(&st);
            hub.publish_positioned(topic, message, (&epoch, offset), || {
                positions::envelope(topic, offset, message)
            })
        };
        drop(stream);
        history.after_append(|t| hub.subscriber_count(t) > 0);
        queued
    }
}

struct Inner {
    core: Arc<Core>,
    ready: AtomicBool,
    provider: Box<dyn DynProvider>,
}

/// A gated join's view of the provider.
struct Source<'a> {
    core: &'a Core,
    provider: &'a dyn DynProvider,
}

fn unavailable(e: ProviderError) -> SubscribeError {
    SubscribeError::Unavailable(std::sync::Arc::new(e))
}

impl HistorySource for Source<'_> {
    fn watched<'a>(&'a self, target: &'a Target) -> BoxFuture<'a, Result<(), SubscribeError>> {
        Box::pin(async move { self.provider.watched(target).await.map_err(unavailable) })
    }

    fn read<'a>(
        &'a self,
        topic: &'a Topic,
        limits: HistoryLimits,
        since: Option<(&'a str, u64)>,
    ) -> BoxFuture<'a, Result<HistoryRead, SubscribeError>> {
        Box::pin(async move {
            self.provider
                .read_history(topic, limits, since)
                .await
                .map_err(unavailable)
        })
    }

    fn gate_opened(&self, topic: &Topic) {
        if self.core.hub.subscriber_count(topic) == 0 {
            self.provider.watch(&Target::Topic(topic.clone()));
        }
    }

    fn gate_closed(&self, topic: &Topic) {
        if self.core.hub.subscriber_count(topic) == 0 {
            self.provider.unwatch(&Target::Topic(topic.clone()));
        }
    }
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
            .field("instance", &self.instance())
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
        let remote_history = history.is_some() && provider.keeps_history();
        Self {
            inner: Arc::new(Inner {
                core: Arc::new(Core {
                    hub: Hub::new(),
                    instance: InstanceId::random(),
                    history: history.map(|c| Arc::new(History::new(c))),
                    remote_history,
                    gates: Gates::default(),
                }),
                ready: AtomicBool::new(false),
                provider: Box::new(provider),
            }),
        }
    }

    /// The local hub.
    pub fn hub(&self) -> &Hub {
        &self.inner.core.hub
    }

    /// This instance's id.
    pub fn instance(&self) -> InstanceId {
        self.inner.core.instance
    }

    /// Starts the provider; from then on publishes are accepted.
    pub async fn start(&self) -> Result<(), ProviderError> {
        let inbound = Inbound {
            core: self.inner.core.clone(),
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
        let core = &*inner.core;
        if !self.is_ready() {
            return Err(PublishError::NotReady {
                topic: target.name().into_owned(),
            });
        }
        core.hub
            .reserve()
            .await
            .map_err(|o| PublishError::Overloaded {
                topic: target.name().into_owned(),
                waited: o.waited,
            })?;
        // A topic whose history the provider keeps is delivered when it
        // comes back with its position, here as everywhere.
        let history = match &target {
            Target::Topic(topic) => core.remote_limits(topic),
            _ => None,
        };
        let local = match &target {
            Target::Topic(_) if history.is_some() => 0,
            Target::Topic(topic) => core.deliver_topic(topic, &message),
            Target::All => core.hub.broadcast_local(&message),
            Target::Socket(id) => {
                if core.hub.is_connected(id) {
                    let queued = core.hub.send_local(id, &message);
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
            origin: core.instance,
            target: &target,
            message: &message,
            history,
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
        self.hub().register(outbox, max_topics);
        self.inner.provider.watch(&Target::Socket(id));
    }

    /// Subscribes a local connection. `Ok(false)`: it already was.
    pub fn subscribe(&self, socket: &SocketId, topic: &Topic) -> Result<bool, SubscribeError> {
        let sub = self.hub().subscribe(socket, topic)?;
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
    pub async fn join(
        &self,
        socket: &SocketId,
        topic: &Topic,
        recovery: &Recovery,
    ) -> Result<Joined, SubscribeError> {
        let inner = &*self.inner;
        let core = &*inner.core;
        let (joined, edge) = if let Some(limits) = core.remote_limits(topic) {
            let source = Source {
                core,
                provider: &*inner.provider,
            };
            join::join_gated(core, &source, limits, socket, topic, recovery).await?
        } else if let Some(history) = core.local_history(topic) {
            join::join_local(core, history, socket, topic, recovery)?
        } else {
            let sub = core.hub.subscribe(socket, topic)?;
            core.hub
                .push_to(socket, [Message::from(Joined::NoHistory.reply(topic))]);
            (Joined::NoHistory, sub.topic_edge)
        };
        if edge {
            inner.provider.watch(&Target::Topic(topic.clone()));
        }
        Ok(joined)
    }

    /// Bytes held by the histories in this process (`None` without
    /// history, or when the provider keeps it).
    pub fn history_bytes(&self) -> Option<usize> {
        self.local_store().map(History::bytes)
    }

    /// Topics that keep a history in this process now (`None` without
    /// history, or when the provider keeps it).
    pub fn history_topics(&self) -> Option<usize> {
        self.local_store().map(History::topics)
    }

    /// The provider's own figures ([`Provider::metrics`]).
    pub fn provider_metrics(&self) -> Vec<ProviderMetric> {
        self.inner.provider.metrics()
    }

    fn local_store(&self) -> Option<&History> {
        let core = &*self.inner.core;
        core.history.as_deref().filter(|_| !core.remote_history)
    }

    /// Unsubscribes a local connection. `Ok(false)`: it was not subscribed.
    pub fn unsubscribe(&self, socket: &SocketId, topic: &Topic) -> Result<bool, SubscribeError> {
        let sub = self.hub().unsubscribe(socket, topic)?;
        if sub.topic_edge {
            self.inner.provider.unwatch(&Target::Topic(topic.clone()));
        }
        Ok(sub.changed)
    }

    /// Removes a local connection and all of its subscriptions.
    pub fn disconnect(&self, socket: &SocketId) {
        self.disconnect_with_topics(socket);
    }

    /// Like [`disconnect`](Self::disconnect), returning every topic the
    /// connection was in (see [`Hub::unregister_with_topics`]).
    pub fn disconnect_with_topics(&self, socket: &SocketId) -> Vec<Topic> {
        let (all, emptied) = self.hub().unregister_with_topics(socket);
        for topic in emptied {
            self.inner.provider.unwatch(&Target::Topic(topic));
        }
        self.inner.provider.unwatch(&Target::Socket(*socket));
        all
    }

    /// Whether `socket` is connected to this instance.
    pub fn is_connected(&self, socket: &SocketId) -> bool {
        self.hub().is_connected(socket)
    }

    /// Connections on this instance.
    pub fn connection_count(&self) -> usize {
        self.hub().connection_count()
    }

    /// Subscribers of `topic` on this instance.
    pub fn subscriber_count(&self, topic: &Topic) -> usize {
        self.hub().subscriber_count(topic)
    }
}

/// What a [`Provider`] hands received publications to, and asks what this
/// instance needs. Cheap to clone.
#[derive(Clone)]
pub struct Inbound {
    core: Arc<Core>,
}

impl std::fmt::Debug for Inbound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inbound")
            .field("instance", &self.core.instance)
            .finish_non_exhaustive()
    }
}

impl Inbound {
    /// This instance's id (what its own publications carry as origin).
    pub fn instance(&self) -> InstanceId {
        self.core.instance
    }

    /// Whether `origin` is this instance (a publication carrying it is this
    /// instance's own echo).
    pub fn is_own(&self, origin: &InstanceId) -> bool {
        *origin == self.core.instance
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
        let hub = &self.core.hub;
        Some(match target {
            Target::Topic(topic) => self.core.deliver_topic(topic, message),
            Target::All => hub.broadcast_local(message),
            Target::Socket(id) => usize::from(hub.send_local(id, message)),
        })
    }

    /// Delivers a publication of `topic` that carries the position the
    /// provider gave it (see [`Outgoing::history`]), from any instance,
    /// this one included; returns how many connections it was queued to.
    pub fn deliver_positioned(
        &self,
        topic: &Topic,
        message: &Message,
        position: &Position,
    ) -> usize {
        join::deliver_positioned(&self.core.hub, &self.core.gates, topic, message, position)
    }

    /// Whether this instance currently needs `target`'s publications: a
    /// topic with a local subscriber or a socket joining it, a connection
    /// open here, or `All`.
    pub fn is_watched(&self, target: &Target) -> bool {
        let hub = &self.core.hub;
        match target {
            Target::Topic(topic) => {
                hub.subscriber_count(topic) > 0 || self.core.gates.is_open(topic)
            }
            Target::Socket(id) => hub.is_connected(id),
            Target::All => true,
        }
    }

    /// Every topic with a local subscriber (what to resubscribe after a
    /// reconnect; topics with joins in flight are watched again by them).
    pub fn watched_topics(&self) -> Vec<Topic> {
        self.core.hub.active_topics()
    }

    /// The instance's outbound budget, for a provider that paces its reads
    /// by it.
    pub fn budget(&self) -> &Arc<Budget> {
        self.core.hub.budget()
    }

    /// Completes when the outbound budget has room (at once when it has).
    pub async fn room(&self) {
        self.core.hub.room().await;
    }
}
