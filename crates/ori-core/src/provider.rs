//! The provider trait: where a publish goes before it reaches local
//! subscribers. [`InProcProvider`] delivers straight into the [`Hub`]; a
//! cross-instance provider (Redis) carries the message to every instance,
//! each of which hands it to its own hub.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::{Hub, Message, PublishError, SocketId, SubscribeError, Topic};

/// A boxed, sendable future (what [`Provider`] methods return, so the trait
/// can be used as `Arc<dyn Provider>`).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Why a provider could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProviderError {
    /// The backend could not be reached or refused the connection; the
    /// cause is the error's [`source`](std::error::Error::source).
    #[error("provider backend unavailable")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The provider is misconfigured.
    #[error("provider misconfigured: {0}")]
    Config(String),
}

/// A pub/sub backend.
///
/// The provider owns the instance's [`Hub`], the single source of truth for
/// local subscriptions; subscription bookkeeping, counts and local delivery
/// are provided methods that go through it. An implementation supplies the
/// lifecycle and the path a message takes to the hubs of every instance, and
/// may react to [`topic_activated`](Provider::topic_activated) /
/// [`topic_deactivated`](Provider::topic_deactivated) to (un)subscribe
/// upstream. Those hooks run outside the hub's lock and may interleave for
/// one topic; a provider should reconcile against
/// [`Hub::subscriber_count`] when it acts on them.
pub trait Provider: Send + Sync + 'static {
    /// The local hub this provider delivers into.
    fn hub(&self) -> &Hub;

    /// Starts the provider (connects to its backend). Publishing before this
    /// completes fails with [`PublishError::NotReady`].
    fn start(&self) -> BoxFuture<'_, Result<(), ProviderError>>;

    /// Stops the provider. Later publishes fail with
    /// [`PublishError::NotReady`].
    fn stop(&self) -> BoxFuture<'_, ()>;

    /// Whether the provider is started and accepts publishes.
    fn is_ready(&self) -> bool;

    /// Publishes `message` to every subscriber of `topic`, on every instance.
    fn publish(&self, topic: Topic, message: Message) -> BoxFuture<'_, Result<(), PublishError>>;

    /// Sends `message` to one connection, wherever it is. `Ok(false)` means
    /// no instance the provider can see has that connection.
    fn send(&self, socket: SocketId, message: Message)
        -> BoxFuture<'_, Result<bool, PublishError>>;

    /// Sends `message` to every connection on every instance.
    fn broadcast(&self, message: Message) -> BoxFuture<'_, Result<(), PublishError>>;

    /// Called after `topic` gained its first local subscriber.
    fn topic_activated(&self, _topic: &Topic) {}

    /// Called after `topic` lost its last local subscriber.
    fn topic_deactivated(&self, _topic: &Topic) {}

    /// Called after `socket` registered in the hub (it now receives
    /// broadcasts and direct sends); a cross-instance provider may announce
    /// it (for example to answer [`send`](Provider::send) for sockets on
    /// other instances).
    fn socket_registered(&self, _socket: &SocketId) {}

    /// Called after `socket` left the hub.
    fn socket_unregistered(&self, _socket: &SocketId) {}

    /// Adds a local connection to the hub, then calls
    /// [`socket_registered`](Provider::socket_registered).
    fn register(&self, outbox: std::sync::Arc<crate::Outbox>, max_topics: usize) {
        let id = *outbox.id();
        self.hub().register(outbox, max_topics);
        self.socket_registered(&id);
    }

    /// Subscribes a local connection. `Ok(false)`: it already was.
    fn subscribe(&self, socket: &SocketId, topic: &Topic) -> Result<bool, SubscribeError> {
        let sub = self.hub().subscribe(socket, topic)?;
        if sub.topic_edge {
            self.topic_activated(topic);
        }
        Ok(sub.changed)
    }

    /// Unsubscribes a local connection. `Ok(false)`: it was not subscribed.
    fn unsubscribe(&self, socket: &SocketId, topic: &Topic) -> Result<bool, SubscribeError> {
        let sub = self.hub().unsubscribe(socket, topic)?;
        if sub.topic_edge {
            self.topic_deactivated(topic);
        }
        Ok(sub.changed)
    }

    /// Removes a local connection and all of its subscriptions.
    fn disconnect(&self, socket: &SocketId) {
        for topic in self.hub().unregister(socket) {
            self.topic_deactivated(&topic);
        }
        self.socket_unregistered(socket);
    }

    /// Whether `socket` is connected to this instance.
    fn is_connected(&self, socket: &SocketId) -> bool {
        self.hub().is_connected(socket)
    }

    /// Connections on this instance.
    fn connection_count(&self) -> usize {
        self.hub().connection_count()
    }

    /// Subscribers of `topic` on this instance.
    fn topic_subscriber_count(&self, topic: &Topic) -> usize {
        self.hub().subscriber_count(topic)
    }
}

/// The default provider: one instance, delivery straight into the local hub.
///
/// ```
/// use ori_core::{InProcProvider, Provider, Topic};
/// # futures_util::future::FutureExt::now_or_never(async {
/// let provider = InProcProvider::new();
/// let topic = Topic::new("news").unwrap();
/// assert!(provider.publish(topic.clone(), "early".into()).await.is_err());
/// provider.start().await.unwrap();
/// provider.publish(topic, "hello".into()).await.unwrap();
/// # }).unwrap();
/// ```
#[derive(Debug, Default)]
pub struct InProcProvider {
    hub: Hub,
    ready: AtomicBool,
}

impl InProcProvider {
    /// A provider with an empty hub.
    pub fn new() -> Self {
        Self::default()
    }

    fn check_ready(&self, topic: &str) -> Result<(), PublishError> {
        if self.ready.load(Ordering::Acquire) {
            Ok(())
        } else {
            Err(PublishError::NotReady {
                topic: topic.to_owned(),
            })
        }
    }
}

impl Provider for InProcProvider {
    fn hub(&self) -> &Hub {
        &self.hub
    }

    fn start(&self) -> BoxFuture<'_, Result<(), ProviderError>> {
        self.ready.store(true, Ordering::Release);
        Box::pin(async { Ok(()) })
    }

    fn stop(&self) -> BoxFuture<'_, ()> {
        self.ready.store(false, Ordering::Release);
        Box::pin(async {})
    }

    fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    fn publish(&self, topic: Topic, message: Message) -> BoxFuture<'_, Result<(), PublishError>> {
        let result = self.check_ready(topic.as_str()).map(|()| {
            self.hub.publish_local(&topic, &message);
        });
        Box::pin(async move { result })
    }

    fn send(
        &self,
        socket: SocketId,
        message: Message,
    ) -> BoxFuture<'_, Result<bool, PublishError>> {
        let result = self
            .check_ready(Topic::for_socket(&socket).as_str())
            .map(|()| self.hub.send_local(&socket, &message));
        Box::pin(async move { result })
    }

    fn broadcast(&self, message: Message) -> BoxFuture<'_, Result<(), PublishError>> {
        let result = self.check_ready(crate::BROADCAST_TOPIC).map(|()| {
            self.hub.broadcast_local(&message);
        });
        Box::pin(async move { result })
    }
}
