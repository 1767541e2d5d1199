//! The provider seam: the hop between instances, and nothing else.
//!
//! A [`Provider`] is a transport. It carries a publication to the other
//! instances ([`publish`](Provider::publish)), follows which channels this
//! instance needs ([`watch`](Provider::watch) /
//! [`unwatch`](Provider::unwatch)), and hands what it receives to the
//! [`Inbound`](crate::Inbound) it was started with. Everything else (the
//! [`Hub`](crate::Hub), local delivery, readiness, echo suppression,
//! subscription bookkeeping) belongs to the [`Broker`](crate::Broker) that
//! drives it, so no provider can get them wrong or differently.

use std::borrow::Cow;
use std::future::Future;

use crate::{Inbound, Message, SocketId, Topic, BROADCAST_TOPIC};

/// Where a publication goes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Target {
    /// Every subscriber of a topic, on every instance.
    Topic(Topic),
    /// One connection, wherever it is.
    Socket(SocketId),
    /// Every connection on every instance.
    All,
}

impl Target {
    /// The topic name used in errors and on the wire: the topic itself,
    /// `__socket__:<id>` or `__broadcast__`.
    pub fn name(&self) -> Cow<'_, str> {
        match self {
            Target::Topic(t) => Cow::Borrowed(t.as_str()),
            Target::Socket(id) => Cow::Owned(Topic::for_socket(id).to_string()),
            Target::All => Cow::Borrowed(BROADCAST_TOPIC),
        }
    }
}

/// The id of one broker (one server instance), carried with every
/// publication it hands to its provider so that the instance can recognise
/// its own echo.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct InstanceId([u8; 16]);

impl InstanceId {
    /// A fresh random id.
    pub fn random() -> Self {
        Self(*uuid::Uuid::new_v4().as_bytes())
    }

    /// The id from its 16 bytes.
    pub const fn from_bytes(bytes: [u8; 16]) -> Self {
        Self(bytes)
    }

    /// Its 16 bytes.
    pub const fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }
}

impl std::fmt::Display for InstanceId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        uuid::Uuid::from_bytes(self.0).fmt(f)
    }
}

/// A publication handed to a provider: already delivered to this
/// instance's own subscribers, unless it carries `history`.
#[derive(Debug, Clone, Copy)]
pub struct Outgoing<'a> {
    /// The publishing instance (to be handed back with the message by the
    /// instances that receive it).
    pub origin: InstanceId,
    /// Where it goes.
    pub target: &'a Target,
    /// The payload, text or binary.
    pub message: &'a Message,
    /// Set for a topic that keeps history on a provider that
    /// [keeps it](Provider::keeps_history): the provider assigns the next
    /// offset, appends the entry within these limits and carries the
    /// position with the publication, in one atomic step; every instance,
    /// this one included, delivers it when it comes back
    /// ([`Inbound::deliver_positioned`]), so all see one order.
    pub history: Option<HistoryLimits>,
}

/// How much history a topic keeps (from [`HistoryConfig`](crate::HistoryConfig)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistoryLimits {
    /// Entries kept.
    pub max_entries: usize,
    /// Age after which entries are dropped.
    pub ttl: std::time::Duration,
}

/// What a provider knows about a publication it carried.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Sent {
    /// How many receivers the backend counted (Redis: instances subscribed
    /// to the channel), when it counts them.
    pub receivers: Option<u64>,
    /// The position the backend gave it (publications with history).
    pub position: Option<crate::Position>,
}

impl Sent {
    /// A publication whose receivers the backend counted.
    pub fn counted(receivers: u64) -> Self {
        Self {
            receivers: Some(receivers),
            position: None,
        }
    }

    /// The same, with the position the backend assigned.
    pub fn at(mut self, position: crate::Position) -> Self {
        self.position = Some(position);
        self
    }
}

/// A topic's history as a provider read it (for a join with positions or
/// a resume).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryRead {
    /// The history's epoch (made when the topic had none).
    pub epoch: std::sync::Arc<str>,
    /// The latest offset (0: nothing published yet).
    pub last: u64,
    /// For a resume: every publication after its offset, in order, or
    /// `None` when they are not all there (or the epoch differs). Always
    /// `None` for a join without `since`.
    pub replay: Option<Vec<(u64, Message)>>,
}

/// What kind of failure a [`ProviderError`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The backend cannot be reached right now; the provider reconnects by
    /// itself.
    Unavailable,
    /// The backend did not answer in time.
    Timeout,
    /// The backend answered with an error.
    Backend,
    /// Delivery elsewhere is behind (another instance announced it cannot
    /// keep up) and stayed so for the whole publish timeout.
    Overloaded,
    /// The provider is misconfigured (a start-up error; retrying is futile).
    Config,
}

/// Why a provider could not start or could not carry a publication.
///
/// Callers act on [`kind`](Self::kind) (or [`is_retryable`](Self::is_retryable));
/// the backend's own error, when there is one, is the
/// [`source`](std::error::Error::source).
#[derive(Debug, thiserror::Error)]
#[error("{}: {detail}", kind_text(*.kind))]
pub struct ProviderError {
    kind: ErrorKind,
    detail: Cow<'static, str>,
    #[source]
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
    /// How long an [`ErrorKind::Overloaded`] publication waited.
    waited: Option<std::time::Duration>,
}

fn kind_text(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::Unavailable => "provider backend unavailable",
        ErrorKind::Timeout => "provider backend timed out",
        ErrorKind::Backend => "provider backend error",
        ErrorKind::Config => "provider misconfigured",
        ErrorKind::Overloaded => "delivery on another instance is behind",
    }
}

impl ProviderError {
    /// An error of `kind`, described by `detail`.
    pub fn new(kind: ErrorKind, detail: impl Into<Cow<'static, str>>) -> Self {
        Self {
            kind,
            detail: detail.into(),
            source: None,
            waited: None,
        }
    }

    /// A publication refused after waiting `waited` for the instances that
    /// are behind ([`ErrorKind::Overloaded`]). The broker reports it as
    /// [`PublishError::Overloaded`](crate::PublishError::Overloaded).
    pub fn overloaded(waited: std::time::Duration) -> Self {
        Self {
            waited: Some(waited),
            ..Self::new(ErrorKind::Overloaded, format!("waited {waited:?}"))
        }
    }

    /// How long an overloaded publication waited.
    pub fn waited(&self) -> Option<std::time::Duration> {
        self.waited
    }

    /// The same error, caused by `source`.
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Box::new(source));
        self
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// Whether the same call may succeed later without any change
    /// (unavailable, timed out or overloaded).
    pub fn is_retryable(&self) -> bool {
        matches!(
            self.kind,
            ErrorKind::Unavailable | ErrorKind::Timeout | ErrorKind::Overloaded
        )
    }

    /// Whether the backend did not answer in time.
    pub fn is_timeout(&self) -> bool {
        self.kind == ErrorKind::Timeout
    }

    /// The description, without the kind.
    pub fn detail(&self) -> &str {
        &self.detail
    }
}

/// Whether a [`ProviderMetric`] only grows or goes up and down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    /// A count since start, only growing (exposed with a `_total` suffix).
    Counter,
    /// A value now.
    Gauge,
}

/// One figure a provider reports for the instance's `/metrics`
/// ([`Provider::metrics`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProviderMetric {
    /// The metric's name, without the `_total` suffix of a counter (for
    /// example `ori_redis_reconnects`).
    pub name: &'static str,
    /// One line saying what it counts, without a final full stop.
    pub help: &'static str,
    /// Counter or gauge.
    pub kind: MetricKind,
    /// The value now.
    pub value: u64,
}

impl ProviderMetric {
    /// A counter named `name` (without `_total`).
    pub const fn counter(name: &'static str, help: &'static str, value: u64) -> Self {
        Self {
            name,
            help,
            kind: MetricKind::Counter,
            value,
        }
    }

    /// A gauge named `name`.
    pub const fn gauge(name: &'static str, help: &'static str, value: u64) -> Self {
        Self {
            name,
            help,
            kind: MetricKind::Gauge,
            value,
        }
    }
}

/// A pub/sub transport between instances.
///
/// Its methods are called by a [`Broker`](crate::Broker):
///
/// - [`start`](Self::start) once, with the [`Inbound`] to hand received
///   publications to ([`Inbound::deliver`], which delivers them to this
///   instance's subscribers and drops this instance's own echo);
/// - [`publish`](Self::publish) for every publication, after the broker
///   delivered it locally, so local delivery never waits for the backend;
/// - [`watch`](Self::watch) when this instance starts to need a target's
///   publications (a topic's first local subscriber, a connection
///   registering) and [`unwatch`](Self::unwatch) when it stops. These are
///   edges, called outside any lock, and for one target they may arrive out
///   of order under a race: a provider acts on [`Inbound::is_watched`] (the
///   current state) rather than on the order of the calls. Every instance
///   receives [`Target::All`] without watching it.
///
/// ```
/// use ori_core::{Inbound, Outgoing, Provider, ProviderError, Sent, Target};
///
/// /// A transport that carries nothing (what the in-process provider is).
/// struct Nowhere;
///
/// impl Provider for Nowhere {
///     async fn start(&self, _inbound: Inbound) -> Result<(), ProviderError> {
///         Ok(())
///     }
///     async fn stop(&self) {}
///     async fn publish(&self, _out: Outgoing<'_>) -> Result<Sent, ProviderError> {
///         Ok(Sent::default())
///     }
///     fn watch(&self, _target: &Target) {}
///     fn unwatch(&self, _target: &Target) {}
/// }
/// ```
pub trait Provider: Send + Sync + 'static {
    /// Connects to the backend. Publishing before this completes fails with
    /// [`PublishError::NotReady`](crate::PublishError::NotReady).
    fn start(&self, inbound: Inbound) -> impl Future<Output = Result<(), ProviderError>> + Send;

    /// Disconnects. Later publishes fail with `NotReady`.
    fn stop(&self) -> impl Future<Output = ()> + Send;

    /// Carries a publication to the other instances.
    fn publish(
        &self,
        out: Outgoing<'_>,
    ) -> impl Future<Output = Result<Sent, ProviderError>> + Send;

    /// This instance now needs `target`'s publications.
    fn watch(&self, target: &Target);

    /// This instance no longer needs `target`'s publications.
    fn unwatch(&self, target: &Target);

    /// Whether publications stay on this instance (the broker then never
    /// calls [`publish`](Self::publish)). False unless overridden.
    fn is_local(&self) -> bool {
        false
    }

    /// Whether the backend keeps the history of topics (one sequence per
    /// topic for every instance on it). False unless overridden: the
    /// broker then keeps history in process, per instance.
    fn keeps_history(&self) -> bool {
        false
    }

    /// Reads `topic`'s history for a join with positions (`since: None`) or
    /// a resume after `since` (epoch, offset). Only called when
    /// [`keeps_history`](Self::keeps_history) is true, after
    /// [`watched`](Self::watched) completed for the topic.
    fn read_history(
        &self,
        topic: &Topic,
        limits: HistoryLimits,
        since: Option<(&str, u64)>,
    ) -> impl Future<Output = Result<HistoryRead, ProviderError>> + Send {
        let _ = (topic, limits, since);
        async {
            Err(ProviderError::new(
                ErrorKind::Config,
                "this provider keeps no history",
            ))
        }
    }

    /// Completes once every later publication to `target`, from any
    /// instance, will reach this instance (its subscription to the target
    /// is confirmed by the backend). At once unless overridden.
    fn watched(&self, target: &Target) -> impl Future<Output = Result<(), ProviderError>> + Send {
        let _ = target;
        async { Ok(()) }
    }

    /// The provider's own figures (reconnects, say), read at every scrape
    /// of the instance's `/metrics`. None unless overridden.
    fn metrics(&self) -> Vec<ProviderMetric> {
        Vec::new()
    }
}

/// The default provider: one instance, nothing carried anywhere.
///
/// ```
/// use ori_core::{Broker, InProcProvider, Target, Topic};
/// # futures_util::future::FutureExt::now_or_never(async {
/// let broker = Broker::new(InProcProvider);
/// let topic = Target::Topic(Topic::new("news").unwrap());
/// assert!(broker.publish(topic.clone(), "early".into()).await.is_err());
/// broker.start().await.unwrap();
/// broker.publish(topic, "hello".into()).await.unwrap();
/// # }).unwrap();
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct InProcProvider;

impl InProcProvider {
    /// The in-process provider (same as `InProcProvider`).
    pub const fn new() -> Self {
        Self
    }
}

impl Provider for InProcProvider {
    async fn start(&self, _inbound: Inbound) -> Result<(), ProviderError> {
        Ok(())
    }

    async fn stop(&self) {}

    async fn publish(&self, _out: Outgoing<'_>) -> Result<Sent, ProviderError> {
        Ok(Sent::default())
    }

    fn watch(&self, _target: &Target) {}

    fn unwatch(&self, _target: &Target) {}

    fn is_local(&self) -> bool {
        true
    }
}
