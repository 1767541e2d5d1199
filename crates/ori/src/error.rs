//! Errors of building and running an application.

/// A mistake in the application's set-up, reported when it starts
/// ([`Ori::listen`](crate::Ori::listen) / [`Ori::into_router`](crate::Ori::into_router)),
/// never at run time.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// A controller or service needs a service nobody registered.
    #[error(
        "missing dependency: service {0} is not registered (register it with .service() first)"
    )]
    MissingService(&'static str),
    /// Two handlers for one HTTP method and path.
    #[error("duplicate route: {method} {path}")]
    DuplicateRoute {
        /// HTTP method.
        method: String,
        /// Full path.
        path: String,
    },
    /// Two handlers for one message type: in two socket routers, or in a
    /// router and the message registry.
    #[error("duplicate message type: {0:?} is handled twice (socket routers, message registry)")]
    DuplicateMessageType(String),
    /// The schema of a message type's data does not compile (a registry's
    /// or a socket router's): the type would otherwise go unchecked.
    #[error("message type {message_type:?}: {error}")]
    Schema {
        /// The message type.
        message_type: String,
        /// Why its schema does not compile.
        error: crate::messages::SchemaError,
    },
    /// A route path that cannot be parsed.
    #[error("invalid route path {0:?}")]
    InvalidPath(String),
    /// A set-up step given twice (`on_websocket`, `message_registry`), or
    /// WebSocket options whose handlers disagree on the user data type.
    /// (Steps in the wrong order do not compile.)
    #[error("{0}")]
    Order(&'static str),
    /// Any other set-up error, from a user's factory (its cause is the
    /// [`source`](std::error::Error::source)): `BuildError::Other(e.into())`.
    #[error(transparent)]
    Other(Box<dyn std::error::Error + Send + Sync>),
}

/// Why an application failed to start or stop.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The set-up is invalid.
    #[error(transparent)]
    Build(#[from] BuildError),
    /// Binding or accepting failed.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// The provider failed to start.
    #[error(transparent)]
    Provider(#[from] ori_core::ProviderError),
}

/// Why a publish, send or broadcast failed.
///
/// The broker's own failures ([`ori_core::PublishError`]) map one to one
/// onto the variants of the same name.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PublishError {
    /// The app is not listening yet, or has stopped.
    #[error("Cannot publish to topic \"{topic}\": Provider not ready")]
    NotReady {
        /// The topic (or internal topic) of the failed publish.
        topic: String,
    },
    /// The application was built without WebSocket support.
    #[error("WebSocket not configured. Call .websocket() when creating the application.")]
    NotConfigured,
    /// The topic name is invalid, or reserved.
    #[error("invalid topic {topic:?}: {reason}")]
    InvalidTopic {
        /// The rejected name.
        topic: String,
        /// Why it was rejected.
        reason: crate::TopicError,
    },
    /// The socket id is invalid.
    #[error(transparent)]
    InvalidSocketId(#[from] crate::SocketIdError),
    /// The message failed validation (typed emits).
    #[error("Validation failed: {0}")]
    Validation(crate::messages::ValidationError),
    /// The schema of the message's data does not compile (typed emits):
    /// nothing was published.
    #[error("message type {message_type:?}: {error}")]
    Schema {
        /// The message type.
        message_type: String,
        /// Why its schema does not compile.
        error: crate::messages::SchemaError,
    },
    /// The message could not be serialized (a data type serde cannot write
    /// as JSON, such as a map with non-string keys).
    #[error("cannot serialize message")]
    Serialize(#[source] serde_json::Error),
    /// The instance's outbound budget stayed spent for the whole wait
    /// timeout: delivery is behind and the publish was refused rather than
    /// queued.
    #[error("Cannot publish to topic \"{topic}\": outbound budget exhausted for {waited:?} (delivery is behind)")]
    Overloaded {
        /// The topic (or internal topic) of the refused publish.
        topic: String,
        /// How long the publish waited for room.
        waited: std::time::Duration,
    },
    /// The provider could not carry the publication to other instances
    /// (this instance's connections got it); see
    /// [`ProviderError::kind`](ori_core::ProviderError::kind).
    #[error(transparent)]
    Provider(ori_core::ProviderError),
}

/// What kind of failure a [`PublishError`] is: what a caller acts on
/// ([`PublishError::kind`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PublishErrorKind {
    /// The request was wrong (a bad or reserved topic, a bad socket id,
    /// data that fails its schema): the same call always fails.
    InvalidInput,
    /// The application is wrong (no WebSocket configured, a schema that does
    /// not compile, data that cannot be serialized, a misconfigured
    /// provider): fix the code or the configuration.
    Misconfigured,
    /// The app is not listening yet, or has stopped.
    NotReady,
    /// Delivery is behind (this instance's outbound budget, or another
    /// instance's) for the whole publish timeout.
    Overloaded,
    /// The provider's backend cannot be reached; it reconnects by itself.
    Unavailable,
    /// The provider's backend did not answer in time.
    Timeout,
    /// The provider's backend answered with an error.
    Backend,
}

impl PublishError {
    /// What kind of failure this is.
    ///
    /// ```
    /// use ori::{PublishError, PublishErrorKind};
    /// let e = PublishError::NotReady { topic: "news".into() };
    /// assert_eq!(e.kind(), PublishErrorKind::NotReady);
    /// assert!(e.is_retryable() && !e.is_timeout());
    /// ```
    pub fn kind(&self) -> PublishErrorKind {
        use ori_core::ErrorKind as Provider;
        match self {
            Self::InvalidTopic { .. } | Self::InvalidSocketId(_) | Self::Validation(_) => {
                PublishErrorKind::InvalidInput
            }
            Self::NotConfigured | Self::Schema { .. } | Self::Serialize(_) => {
                PublishErrorKind::Misconfigured
            }
            Self::NotReady { .. } => PublishErrorKind::NotReady,
            Self::Overloaded { .. } => PublishErrorKind::Overloaded,
            Self::Provider(e) => match e.kind() {
                Provider::Unavailable => PublishErrorKind::Unavailable,
                Provider::Timeout => PublishErrorKind::Timeout,
                Provider::Overloaded => PublishErrorKind::Overloaded,
                Provider::Config => PublishErrorKind::Misconfigured,
                _ => PublishErrorKind::Backend,
            },
        }
    }

    /// Whether the same call may succeed later without any change: not
    /// ready yet, overloaded, unavailable or timed out.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self.kind(),
            PublishErrorKind::NotReady
                | PublishErrorKind::Overloaded
                | PublishErrorKind::Unavailable
                | PublishErrorKind::Timeout
        )
    }

    /// Whether the provider's backend did not answer in time.
    pub fn is_timeout(&self) -> bool {
        self.kind() == PublishErrorKind::Timeout
    }
}

impl From<ori_core::PublishError> for PublishError {
    fn from(e: ori_core::PublishError) -> Self {
        use ori_core::PublishError as Core;
        match e {
            Core::NotReady { topic } => Self::NotReady { topic },
            Core::InvalidTopic { topic, reason } => Self::InvalidTopic { topic, reason },
            Core::InvalidSocketId(e) => Self::InvalidSocketId(e),
            Core::Overloaded { topic, waited } => Self::Overloaded { topic, waited },
            Core::Provider(e) => Self::Provider(e),
            // `ori_core::PublishError` is non-exhaustive; a variant this
            // version does not know is reported as the broker worded it.
            other => Self::Provider(ori_core::ProviderError::new(
                ori_core::ErrorKind::Backend,
                other.to_string(),
            )),
        }
    }
}
