//! Emitters: how application code publishes to sockets.
//!
//! [`SocketEmitter`] is the base emitter every app has. A custom emitter is
//! an application type that wraps it and adds domain methods; it implements
//! [`Emitter`] and is chosen with [`Ori::with_emitter`](crate::Ori::with_emitter),
//! so services and handlers reach its methods with full type checking.

use std::future::Future;
use std::ops::Deref;
use std::sync::{Arc, OnceLock};

use ori_core::{Broker, HubMetrics, Message, SocketId, Target, Topic, TopicError};

use crate::PublishError;

use crate::messages::{Definition, DefinitionSchema as _};

/// Anything that names a topic: `&str`, `String`, or an already validated
/// [`Topic`].
pub trait IntoTopic {
    /// Validates (if needed) and converts; on failure returns the rejected
    /// name with the reason.
    fn into_topic(self) -> Result<Topic, (String, TopicError)>;
}

impl IntoTopic for Topic {
    fn into_topic(self) -> Result<Topic, (String, TopicError)> {
        Ok(self)
    }
}

impl IntoTopic for &Topic {
    fn into_topic(self) -> Result<Topic, (String, TopicError)> {
        Ok(self.clone())
    }
}

impl IntoTopic for &str {
    fn into_topic(self) -> Result<Topic, (String, TopicError)> {
        Topic::new(self).map_err(|e| (self.to_owned(), e))
    }
}

impl IntoTopic for String {
    fn into_topic(self) -> Result<Topic, (String, TopicError)> {
        match Topic::validate(&self) {
            Ok(()) => Topic::try_from(self).map_err(|e| (String::new(), e)),
            Err(e) => Err((self, e)),
        }
    }
}

impl IntoTopic for &String {
    fn into_topic(self) -> Result<Topic, (String, TopicError)> {
        self.as_str().into_topic()
    }
}

fn topic_error(name: String, reason: TopicError) -> PublishError {
    PublishError::InvalidTopic {
        topic: name,
        reason,
    }
}

/// The base emitter: publish to topics, send to one socket, broadcast.
///
/// Cheap to clone. Obtained from [`AppContext::socket`](crate::AppContext::socket),
/// [`RequestContext::socket`](crate::RequestContext::socket) or
/// [`Conn::emitter`](crate::Conn::emitter) (this type in an app with the
/// default emitter; a custom one gives it with
/// [`Emitter::socket_emitter`]).
///
/// Every operation is async and returns a `Result`: with a cross-instance
/// provider a publish travels over the network and can fail. Before the app
/// listens they fail with [`PublishError::NotReady`]; in an app built without
/// `.websocket()`, with [`PublishError::NotConfigured`].
///
/// When the `.await` completes, the message is **queued** for every local
/// subscriber (one shared frame each) and, with a cross-instance provider,
/// handed to the backend; the writers put it on the wire afterwards, each
/// fast reader's within one writer pass. Before queueing, a publish waits
/// while the instance's outbound budget is spent
/// ([`WsOptions::outbound_budget`](crate::WsOptions::outbound_budget)), so a
/// publisher never runs further ahead of delivery than the budget; past the
/// [publish timeout](crate::WsOptions::publish_timeout) it fails with
/// [`PublishError::Overloaded`]. Completion does not mean a client has
/// received the message.
#[derive(Clone, Default)]
pub struct SocketEmitter {
    inner: Arc<EmitterShared>,
}

/// What every clone of an app's emitter shares.
#[derive(Default)]
struct EmitterShared {
    broker: OnceLock<Broker>,
    /// The HTTP server's counters (for `/metrics`).
    http: crate::server::HttpCounters,
    /// The server's own metrics (for `/metrics`).
    metrics: crate::metrics::Metrics,
}

impl SocketEmitter {
    /// An emitter with no provider yet (attached when the app configures
    /// WebSocket support).
    pub(crate) fn unconfigured() -> Self {
        Self::default()
    }

    /// An emitter publishing through `broker`.
    pub fn new(broker: Broker) -> Self {
        let emitter = Self::default();
        let _ = emitter.inner.broker.set(broker);
        emitter
    }

    pub(crate) fn attach(&self, broker: Broker) -> bool {
        self.inner.broker.set(broker).is_ok()
    }

    /// The broker behind this emitter, if WebSocket support is configured.
    pub fn broker(&self) -> Option<&Broker> {
        self.inner.broker.get()
    }

    fn broker_or_err(&self) -> Result<&Broker, PublishError> {
        self.inner.broker.get().ok_or(PublishError::NotConfigured)
    }

    /// Publishes `message` to every subscriber of `topic`.
    ///
    /// Reserved topics (`__`-prefixed, such as `__broadcast__` and
    /// `__socket__:<id>`) are refused with [`PublishError::InvalidTopic`]:
    /// [`broadcast`](Self::broadcast) and [`send`](Self::send) are the ways
    /// to reach them, so a topic taken from a request cannot be turned into
    /// a broadcast or a message to someone else's socket.
    ///
    /// ```no_run
    /// # async fn f(socket: ori::SocketEmitter) -> Result<(), ori::PublishError> {
    /// socket.publish("room:123", r#"{"event":"update"}"#).await?;
    /// # Ok(()) }
    /// ```
    pub async fn publish(
        &self,
        topic: impl IntoTopic,
        message: impl Into<Message>,
    ) -> Result<(), PublishError> {
        let broker = self.broker_or_err()?;
        let topic = into_topic_checked(topic)?;
        broker.publish(Target::Topic(topic), message.into()).await?;
        Ok(())
    }

    /// Sends `message` to one socket. `Ok(false)`: no such socket anywhere
    /// the provider can see.
    pub async fn send(
        &self,
        socket: SocketId,
        message: impl Into<Message>,
    ) -> Result<bool, PublishError> {
        let broker = self.broker_or_err()?;
        let done = broker
            .publish(Target::Socket(socket), message.into())
            .await?;
        Ok(done.reached())
    }

    /// Sends `message` to every connected socket.
    pub async fn broadcast(&self, message: impl Into<Message>) -> Result<(), PublishError> {
        let broker = self.broker_or_err()?;
        broker.publish(Target::All, message.into()).await?;
        Ok(())
    }

    /// Validates `data` against `definition`'s schema, then publishes the
    /// envelope `{"name": <name>, "data": <data>, "timestamp": <unix ms>}`
    /// to `topic`. Invalid data is an error and nothing is published.
    ///
    /// ```no_run
    /// # async fn f(socket: ori::SocketEmitter) -> Result<(), ori::PublishError> {
    /// use ori::messages::{RoomData, ServerMessage};
    /// static ROOM_OPENED: ServerMessage<RoomData> = ServerMessage::define("room.opened");
    /// let data = RoomData { room: ori::messages::ClientTopic::new("lobby").unwrap() };
    /// socket.emit(&ROOM_OPENED, "announcements", &data).await?;
    /// # Ok(()) }
    /// ```
    pub async fn emit<Def: Definition>(
        &self,
        definition: &Def,
        topic: impl IntoTopic,
        data: &Def::Data,
    ) -> Result<(), PublishError> {
        let envelope = envelope(definition, data)?;
        self.publish(topic, envelope).await
    }

    /// Open connections on this instance (0 without WebSocket support).
    pub fn connection_count(&self) -> usize {
        self.inner.broker.get().map_or(0, |p| p.connection_count())
    }

    /// Subscribers of `topic` on this instance.
    pub fn subscriber_count(&self, topic: &Topic) -> usize {
        self.inner
            .broker
            .get()
            .map_or(0, |p| p.subscriber_count(topic))
    }

    /// Whether `socket` is connected to this instance.
    pub fn is_connected(&self, socket: &SocketId) -> bool {
        self.inner
            .broker
            .get()
            .is_some_and(|p| p.is_connected(socket))
    }

    /// The HTTP server's counters.
    pub(crate) fn http_counters(&self) -> &crate::server::HttpCounters {
        &self.inner.http
    }

    /// The local hub's counters, if WebSocket support is configured.
    pub fn hub_metrics(&self) -> Option<&HubMetrics> {
        self.inner.broker.get().map(|b| b.hub().metrics())
    }

    /// The server's own metrics of this app: messages in and out, closes
    /// by code, and the histograms that [`metrics::render`](crate::metrics::render)
    /// exposes.
    pub fn metrics(&self) -> &crate::metrics::Metrics {
        &self.inner.metrics
    }
}

/// The typed-emit envelope, validated.
pub(crate) fn envelope<Def: Definition>(
    definition: &Def,
    data: &Def::Data,
) -> Result<String, PublishError> {
    let value = serde_json::to_value(data).map_err(PublishError::Serialize)?;
    definition
        .schema()
        .map_err(|error| PublishError::Schema {
            message_type: definition.name().to_owned(),
            error,
        })?
        .validate(&value)
        .map_err(PublishError::Validation)?;
    let mut map = serde_json::Map::with_capacity(3);
    map.insert("name".into(), definition.name().into());
    map.insert("data".into(), value);
    map.insert("timestamp".into(), crate::messages::now_ms().into());
    Ok(serde_json::Value::Object(map).to_string())
}

/// A topic an application may publish to: valid and not reserved.
fn into_topic_checked(topic: impl IntoTopic) -> Result<Topic, PublishError> {
    let topic = topic
        .into_topic()
        .map_err(|(name, reason)| topic_error(name, reason))?;
    if topic.is_reserved() {
        return Err(topic_error(topic.to_string(), TopicError::Reserved));
    }
    Ok(topic)
}

impl std::fmt::Debug for SocketEmitter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SocketEmitter")
            .field("configured", &self.inner.broker.get().is_some())
            .finish()
    }
}

/// An application's emitter type: the base [`SocketEmitter`] plus whatever
/// domain methods the application adds.
///
/// ```
/// use ori::{Emitter, PublishError, SocketEmitter};
///
/// #[derive(Clone)]
/// pub struct AppSocketEmitter(SocketEmitter);
///
/// impl Emitter for AppSocketEmitter {
///     fn from_socket_emitter(base: SocketEmitter) -> Self {
///         Self(base)
///     }
///     fn socket_emitter(&self) -> &SocketEmitter {
///         &self.0
///     }
/// }
///
/// impl AppSocketEmitter {
///     pub async fn emit_to_account(&self, account: &str, event: &str) -> Result<(), PublishError> {
///         let body = format!(r#"{{"event":"{event}"}}"#);
///         self.publish(format!("account:{account}"), body).await
///     }
/// }
/// ```
pub trait Emitter: Clone + Send + Sync + 'static {
    /// Builds the emitter around the app's base emitter.
    fn from_socket_emitter(base: SocketEmitter) -> Self;

    /// The base emitter inside.
    fn socket_emitter(&self) -> &SocketEmitter;

    /// Publishes `message` to every subscriber of `topic`.
    fn publish(
        &self,
        topic: impl IntoTopic + Send,
        message: impl Into<Message> + Send,
    ) -> impl Future<Output = Result<(), PublishError>> + Send {
        self.socket_emitter().publish(topic, message)
    }

    /// Sends `message` to one socket; `Ok(false)` if it is nowhere.
    fn send(
        &self,
        socket: SocketId,
        message: impl Into<Message> + Send,
    ) -> impl Future<Output = Result<bool, PublishError>> + Send {
        self.socket_emitter().send(socket, message)
    }

    /// Sends `message` to every connected socket.
    fn broadcast(
        &self,
        message: impl Into<Message> + Send,
    ) -> impl Future<Output = Result<(), PublishError>> + Send {
        self.socket_emitter().broadcast(message)
    }

    /// Validates and publishes a typed message (see [`SocketEmitter::emit`]).
    fn emit<Def: Definition>(
        &self,
        definition: &Def,
        topic: impl IntoTopic + Send,
        data: &Def::Data,
    ) -> impl Future<Output = Result<(), PublishError>> + Send {
        self.socket_emitter().emit(definition, topic, data)
    }
}

impl Emitter for SocketEmitter {
    fn from_socket_emitter(base: SocketEmitter) -> Self {
        base
    }

    fn socket_emitter(&self) -> &SocketEmitter {
        self
    }
}

/// The emitter of one HTTP request: the app's emitter `E` (its domain
/// methods included, through `Deref`) bound to the request's correlation id.
///
/// [`RequestContext::socket`](crate::RequestContext::socket) returns it, and
/// it is an extractor of its own in a controller's extractor handlers:
///
/// ```
/// use std::sync::Arc;
/// use ori::extract::Path;
/// use ori::{HttpError, RequestEmitter};
///
/// struct Notify;
///
/// impl Notify {
///     async fn notify(
///         self: Arc<Self>,
///         Path(topic): Path<String>,
///         socket: RequestEmitter,
///     ) -> Result<String, HttpError> {
///         socket.publish(topic, socket.correlation_id().to_owned()).await?;
///         Ok("sent".into())
///     }
/// }
/// ```
#[derive(Clone)]
pub struct RequestEmitter<E: Emitter = SocketEmitter> {
    emitter: E,
    correlation_id: Arc<str>,
}

impl<E: Emitter> RequestEmitter<E> {
    pub(crate) fn new(emitter: E, correlation_id: Arc<str>) -> Self {
        Self {
            emitter,
            correlation_id,
        }
    }

    /// The request's correlation id, for payloads and logs (the emitter's
    /// own methods, and the services the handler calls, read it with
    /// [`ori::correlation_id()`](crate::correlation_id)).
    pub fn correlation_id(&self) -> &str {
        &self.correlation_id
    }

    /// The app's emitter inside.
    pub fn emitter(&self) -> &E {
        &self.emitter
    }
}

impl<E: Emitter> Deref for RequestEmitter<E> {
    type Target = E;
    fn deref(&self) -> &E {
        &self.emitter
    }
}

impl<E: Emitter> std::fmt::Debug for RequestEmitter<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestEmitter")
            .field("correlation_id", &self.correlation_id)
            .finish_non_exhaustive()
    }
}
