//! The correlation id of what is being handled, for code that has no
//! request in hand: a custom emitter's domain methods, the services a
//! handler calls.

use std::future::Future;
use std::sync::Arc;

tokio::task_local! {
    static CORRELATION_ID: Arc<str>;
}

/// The correlation id of the HTTP request (controller routes) or the
/// socket-router message being handled, when called from the task that
/// handles it; `None` elsewhere (a task spawned from a handler does not
/// inherit it: wrap its future in [`with_correlation_id`]).
///
/// ```
/// use ori::{Emitter, PublishError, SocketEmitter};
///
/// #[derive(Clone)]
/// struct AppEmitter(SocketEmitter);
/// # impl Emitter for AppEmitter {
/// #     fn from_socket_emitter(base: SocketEmitter) -> Self { Self(base) }
/// #     fn socket_emitter(&self) -> &SocketEmitter { &self.0 }
/// # }
///
/// impl AppEmitter {
///     async fn emit_to_account(&self, account: &str, event: &str) -> Result<(), PublishError> {
///         let body = serde_json::json!({
///             "event": event,
///             "correlationId": ori::correlation_id(), // the request's, in a controller
///         });
///         self.publish(format!("account:{account}"), body.to_string()).await
///     }
/// }
/// ```
pub fn correlation_id() -> Option<String> {
    CORRELATION_ID.try_with(|id| id.to_string()).ok()
}

/// Runs `fut` with `id` as its [`correlation_id`]: what Ori does around
/// every controller route and socket-router handler, and what a unit test
/// of a service, or a task spawned from a handler, does itself.
///
/// ```
/// # futures_util::future::FutureExt::now_or_never(async {
/// let seen = ori::with_correlation_id("req-1", async { ori::correlation_id() }).await;
/// assert_eq!(seen.as_deref(), Some("req-1"));
/// assert_eq!(ori::correlation_id(), None);
/// # }).unwrap();
/// ```
pub async fn with_correlation_id<F: Future>(id: impl Into<Arc<str>>, fut: F) -> F::Output {
    CORRELATION_ID.scope(id.into(), fut).await
}

/// The same, for a future that must be named (`Send` when `fut` is).
pub(crate) fn scoped<F: Future>(id: Arc<str>, fut: F) -> impl Future<Output = F::Output> {
    CORRELATION_ID.scope(id, fut)
}
