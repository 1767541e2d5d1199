//! Errors of publishing and subscribing, matchable by variant.

use crate::{SocketIdError, TopicError};

/// Why a publish, send or broadcast failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PublishError {
    /// The provider has not been started (the app is not listening yet) or
    /// has been stopped.
    #[error("Cannot publish to topic \"{topic}\": Provider not ready")]
    NotReady {
        /// The topic (or internal topic) of the failed publish.
        topic: String,
    },
    /// The application was built without WebSocket support.
    #[error("WebSocket not configured. Call .websocket() when creating the application.")]
    NotConfigured,
    /// The topic name is invalid.
    #[error("invalid topic {topic:?}: {reason}")]
    InvalidTopic {
        /// The rejected name.
        topic: String,
        /// Why it was rejected.
        reason: TopicError,
    },
    /// The socket id is invalid.
    #[error(transparent)]
    InvalidSocketId(#[from] SocketIdError),
    /// The message failed validation (typed emits).
    #[error("Validation failed: {0}")]
    Validation(String),
    /// The message could not be serialized.
    #[error("cannot serialize message: {0}")]
    Serialize(String),
    /// The instance's outbound budget stayed spent (more bytes queued to
    /// its connections than it allows) for the whole wait timeout: delivery
    /// is behind and the publish was refused rather than queued.
    #[error("Cannot publish to topic \"{topic}\": outbound budget exhausted for {waited:?} (delivery is behind)")]
    Overloaded {
        /// The topic (or internal topic) of the refused publish.
        topic: String,
        /// How long the publish waited for room.
        waited: std::time::Duration,
    },
    /// The provider's backend failed (for example Redis is unreachable).
    #[error("provider error: {0}")]
    Provider(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// Why a subscription change was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SubscribeError {
    /// The topic name is invalid, or reserved.
    #[error("invalid topic {topic:?}: {reason}")]
    InvalidTopic {
        /// The rejected name.
        topic: String,
        /// Why it was rejected.
        reason: TopicError,
    },
    /// The connection already has as many topics as allowed.
    #[error("too many topics for this connection (limit {limit})")]
    TooManyTopics {
        /// The configured limit.
        limit: usize,
    },
    /// The connection is closed or unknown.
    #[error("connection is closed")]
    Closed,
}
