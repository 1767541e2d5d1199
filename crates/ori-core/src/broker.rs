//! The broker: one instance's pub/sub. It owns the [`Hub`] (the single
//! source of truth for local subscriptions), readiness, the outbound budget
//! wait, local delivery and echo suppression, and drives a [`Provider`] for
//! the hop between instances.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::provider::{ErrorKind, InstanceId, Outgoing, ProviderError, Sent, Target};
use crate::{Budget, Hub, InProcProvider, Message, Outbox, Provider, PublishError, SocketId};
use crate::{SubscribeError, Topic};

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
    instance: InstanceId,
    ready: AtomicBool,
    provider: Box<dyn DynProvider>,
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
        Self {
            inner: Arc::new(Inner {
                hub: Hub::new(),
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
            Target::Topic(topic) => inner.hub.publish_local(topic, &message),
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
            Target::Topic(topic) => self.hub.publish_local(topic, message),
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
