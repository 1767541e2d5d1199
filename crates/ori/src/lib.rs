//! # Ori
//!
//! Real-time web services in Rust: WebSocket connections, topic pub/sub,
//! HTTP controllers that publish to sockets, custom emitters, and pluggable
//! providers (in-process by default, Redis for many instances).
//!
//! ```no_run
//! use ori::{Conn, Handlers, Message, Ori};
//!
//! #[tokio::main]
//! async fn main() -> Result<(), ori::Error> {
//!     let app = Ori::create()
//!         .websocket()
//!         .on_websocket(
//!             Handlers::new()
//!                 .on_open(|ws: Conn| async move {
//!                     println!("Client connected: {}", ws.id());
//!                     let _ = ws.subscribe("global");
//!                 })
//!                 .on_message(|ws: Conn, msg: Message| async move {
//!                     ws.send(msg); // echo back to sender
//!                 })
//!                 .on_close(|ws: Conn, _code, _reason| async move {
//!                     println!("Client disconnected: {}", ws.id());
//!                 }),
//!         )
//!         .listen(3000)
//!         .await?;
//!     println!("WebSocket server running at ws://localhost:{}/ws", app.port());
//!     tokio::signal::ctrl_c().await?;
//!     app.stop().await;
//!     Ok(())
//! }
//! ```
//!
//! The pieces: [`Ori`] builds the app; [`Handlers`] receive each [`Conn`];
//! [`Controller`]s serve HTTP with axum-style [`extract`]ors or a whole
//! [`RequestContext`]; an [`Emitter`]
//! (the base [`SocketEmitter`] or your own type) publishes; an
//! [`AppContext`] holds services; a [`Provider`] carries publishes between
//! instances.
#![cfg_attr(docsrs, feature(doc_cfg))]

mod app;
mod context;
mod correlation;
mod emitter;
mod error;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
mod http;
pub mod messages;
pub mod metrics;
pub mod prelude;
mod rate;
pub mod router;
mod server;
#[cfg(feature = "testing")]
#[cfg_attr(docsrs, doc(cfg(feature = "testing")))]
pub mod testing;
mod ws;

pub use app::{App, ListenAddr, NoWebSocket, Ori, WebSocketState, WithWebSocket};
pub use context::AppContext;
pub use correlation::{correlation_id, with_correlation_id};
pub use emitter::{Emitter, IntoTopic, RequestEmitter, SocketEmitter};
pub use error::{BuildError, Error, PublishError, PublishErrorKind};
pub use http::{Controller, ControllerHandler, HttpError, RequestContext, RouteBuilder};
pub use ws::{
    AuthRequest, Authenticated, Compression, Conn, HandlerError, HandlerResult, Handlers,
    IntoUpgrade, ReadyState, Upgrade, UpgradeRequest, WsOptions,
};

pub use axum::http::StatusCode;
pub use axum::response::{IntoResponse, Response};
pub use axum::Router;
pub use http::extract::Json;

/// Extractors for controller handlers written the axum way
/// ([`ControllerHandler`]): Ori's own (the request's emitter, a service by
/// type, a JSON body with Ori's limits and JSON errors) and axum's that
/// controllers use most.
pub mod extract {
    pub use crate::emitter::RequestEmitter;
    pub use crate::http::extract::{Json, Service};
    pub use crate::http::RequestContext;
    pub use axum::extract::{Path, Query, State};
}
pub use ori_core::codec::close_code;
pub use ori_core::{
    Broker, CloseCode, Hub, InProcProvider, Message, Provider, ProviderError, SocketId,
    SocketIdError, SubscribeError, Target, Topic, TopicError, Utf8Bytes,
};

/// A boxed, sendable future (handlers are stored as trait objects).
pub(crate) type BoxFuture<'a, T> =
    std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

/// The core crate, for provider implementations and advanced use.
pub use ori_core as core;
/// The vocabulary shared with clients: definitions, close codes, the wire
/// envelopes of PROTOCOL.md.
pub use ori_protocol as protocol;

pub use messages::now_ms;
/// The JSON Schema crate of message definitions, so that an app derives
/// `JsonSchema` with the version Ori uses (see [`prelude`]).
pub use schemars;
/// The JSON crate of handlers and envelopes (`serde_json::Value`, `json!`).
pub use serde_json;

/// The README's examples, compiled as doc-tests.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
struct ReadmeDoctests;
