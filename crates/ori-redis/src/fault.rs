//! Why a connection to Redis failed or was lost: the cause carried by
//! [`Error::Unavailable`](crate::Error::Unavailable) and
//! [`Error::Connect`](crate::Error::Connect), with the underlying I/O or
//! client error as its [`source`](std::error::Error::source).

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

/// Why a connection to Redis failed or was lost.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Fault {
    /// A step did not finish in time.
    #[error("{what} timed out after {after:?}")]
    Timeout {
        /// The step (connecting, `SUBSCRIBE`, a `PING`...).
        what: &'static str,
        /// How long it was given.
        after: Duration,
    },
    /// The socket failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The I/O error.
        #[source]
        source: Arc<std::io::Error>,
    },
    /// The client library failed.
    #[error("{what}: {source}")]
    Redis {
        /// What was being done.
        what: &'static str,
        /// The client library's error.
        #[source]
        source: Arc<redis::RedisError>,
    },
    /// Redis answered with an error.
    #[error("{what} refused: {message}")]
    Refused {
        /// The command.
        what: &'static str,
        /// Redis's error reply.
        message: String,
    },
    /// Redis sent something this client does not read.
    #[error("malformed reply from Redis: {0}")]
    Protocol(Cow<'static, str>),
    /// The connection was closed.
    #[error("{0} closed")]
    Closed(&'static str),
    /// The address cannot be reached by this client.
    #[error("unsupported Redis address {0}")]
    Unsupported(String),
    /// No connection was made yet.
    #[error("not connected yet")]
    NotYet,
}

impl Fault {
    pub(crate) fn io(what: &'static str) -> impl FnOnce(std::io::Error) -> Self {
        move |e| Fault::Io {
            what,
            source: Arc::new(e),
        }
    }

    pub(crate) fn redis(what: &'static str) -> impl FnOnce(redis::RedisError) -> Self {
        move |e| Fault::Redis {
            what,
            source: Arc::new(e),
        }
    }

    pub(crate) fn timeout(what: &'static str, after: Duration) -> Self {
        Fault::Timeout { what, after }
    }
}
