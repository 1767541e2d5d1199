//! Errors of publishing and subscribing, matchable by variant.

use std::sync::Arc;

use crate::{SocketIdError, TopicError};

/// Why a publish, send or broadcast failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PublishError {
    /// The broker has not been started (the app is not listening yet) or
    /// has been stopped.
    #[error("Cannot publish to topic \"{topic}\": Provider not ready")]
    NotReady {
        /// The topic (or internal topic) of the failed publish.
        topic: String,
    },
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
    /// The provider could not carry the publication to other instances
    /// (for example Redis is unreachable); this instance's connections got
    /// it.
    #[error(transparent)]
    Provider(#[from] crate::ProviderError),
}

/// Why a subscription change was refused.
///
/// Equality compares what each variant says; two
/// [`Unavailable`](Self::Unavailable)s are equal when they are the same
/// error or have the same kind and detail.
#[derive(Debug, Clone, thiserror::Error)]
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
    /// The join needed the provider (its subscription or the topic's
    /// history) and the provider failed; the socket did not join.
    #[error("cannot join now: {0}")]
    Unavailable(#[source] Arc<crate::ProviderError>),
    /// The application's join authorization refused this client-initiated
    /// join; the socket did not join.
    #[error("Forbidden: {topic}")]
    Forbidden {
        /// The topic the client asked for.
        topic: String,
    },
}

impl SubscribeError {
    /// Whether the same join may succeed later: the provider was
    /// unavailable (the connection's other refusals stay refusals).
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Unavailable(e) if e.is_retryable())
    }
}

impl PartialEq for SubscribeError {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (
                Self::InvalidTopic { topic, reason },
                Self::InvalidTopic {
                    topic: t,
                    reason: r,
                },
            ) => topic == t && reason == r,
            (Self::TooManyTopics { limit }, Self::TooManyTopics { limit: l }) => limit == l,
            (Self::Closed, Self::Closed) => true,
            (Self::Unavailable(a), Self::Unavailable(b)) => {
                Arc::ptr_eq(a, b) || (a.kind() == b.kind() && a.detail() == b.detail())
            }
            (Self::Forbidden { topic }, Self::Forbidden { topic: t }) => topic == t,
            _ => false,
        }
    }
}

impl Eq for SubscribeError {}
