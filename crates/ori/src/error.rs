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
    /// Two socket-router handlers for one message type.
    #[error("duplicate message type: {0:?} has more than one socket-router handler")]
    DuplicateMessageType(String),
    /// A route path that cannot be parsed.
    #[error("invalid route path {0:?}")]
    InvalidPath(String),
    /// Builder methods called in an order that loses configuration.
    #[error("{0}")]
    Order(&'static str),
    /// Any other set-up error, from a user's factory.
    #[error("{0}")]
    Other(String),
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
