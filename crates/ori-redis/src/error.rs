//! The provider's errors, and how they map onto the broker's kinds.

use std::sync::Arc;
use std::time::Duration;

use ori_core::{ErrorKind, ProviderError};

use crate::Fault;

/// Why Redis could not carry a message or the provider could not start: the
/// [`source`](std::error::Error::source) of the [`ProviderError`] the broker
/// reports, whose [`kind`](ProviderError::kind) it sets (`Unavailable`,
/// `Timeout`, `Backend` or `Config`).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The connection to Redis is down; the provider is reconnecting.
    #[error("Redis is unavailable ({reason}); reconnecting in the background")]
    Unavailable {
        /// Why the connection is down.
        #[source]
        reason: Fault,
    },
    /// Redis did not answer within the publish timeout.
    #[error("Redis did not answer within {0:?}")]
    Timeout(Duration),
    /// Redis answered with an error, or the connection failed mid-command.
    #[error("Redis error: {0}")]
    Redis(#[from] redis::RedisError),
    /// No connection could be made at start-up.
    #[error("cannot connect to Redis at {url}: {reason}{}", retried(.retried_for))]
    Connect {
        /// The address (password redacted).
        url: String,
        /// What went wrong (the last attempt's failure).
        #[source]
        reason: Fault,
        /// How long the start-up kept retrying
        /// ([`StartupPolicy::Retry`](crate::StartupPolicy::Retry)), if it did.
        retried_for: Option<Duration>,
    },
    /// The configuration is invalid: an unparsable URL.
    #[error("invalid Redis configuration: cannot parse the Redis URL {url}")]
    Config {
        /// The URL (password redacted), or the cluster node's.
        url: String,
        /// Why it does not parse.
        #[source]
        source: Arc<redis::RedisError>,
    },
}

fn retried(for_: &Option<Duration>) -> String {
    for_.map_or_else(String::new, |d| {
        format!(" (still failing after retrying for {d:?})")
    })
}

impl From<Error> for ProviderError {
    fn from(e: Error) -> Self {
        let kind = match &e {
            Error::Unavailable { .. } | Error::Connect { .. } => ErrorKind::Unavailable,
            Error::Timeout(_) => ErrorKind::Timeout,
            Error::Redis(r) if r.is_io_error() || r.is_connection_dropped() => {
                ErrorKind::Unavailable
            }
            Error::Redis(r) if r.is_timeout() => ErrorKind::Timeout,
            Error::Redis(_) => ErrorKind::Backend,
            Error::Config { .. } => ErrorKind::Config,
        };
        ProviderError::new(kind, e.to_string()).with_source(e)
    }
}
