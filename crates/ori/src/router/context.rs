//! What guards and route handlers see.

use std::sync::{Arc, Mutex, PoisonError};

use ori_core::{Message, SocketId, SubscribeError};

use crate::PublishError;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use crate::context::AppContext;
use crate::emitter::{Emitter, IntoTopic, SocketEmitter};
use crate::messages::ValidationError;
use crate::ws::Conn;

/// What a connection guard sees: the connection, and the slot where it
/// writes the router's per-connection state. Cheap to clone.
pub struct GuardContext<S, D = (), E = SocketEmitter> {
    pub(crate) conn: Conn<D, E>,
    pub(crate) state: Arc<Mutex<S>>,
}

impl<S, D, E> Clone for GuardContext<S, D, E> {
    fn clone(&self) -> Self {
        Self {
            conn: self.conn.clone(),
            state: self.state.clone(),
        }
    }
}

impl<S: Send + 'static, D: Send + Sync + 'static, E: Emitter> GuardContext<S, D, E> {
    /// Replaces the router's state for this connection.
    pub fn set(&self, state: S) {
        *self.state.lock().unwrap_or_else(PoisonError::into_inner) = state;
    }

    /// Changes the router's state for this connection in place.
    pub fn update<R>(&self, f: impl FnOnce(&mut S) -> R) -> R {
        f(&mut self.state.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// The connection.
    pub fn conn(&self) -> &Conn<D, E> {
        &self.conn
    }

    /// The connection's id.
    pub fn socket_id(&self) -> SocketId {
        self.conn.id()
    }

    /// The upgrade handler's user data.
    pub fn user_data(&self) -> &D {
        self.conn.data()
    }

    /// The app context: services and the app's emitter.
    pub fn app(&self) -> &AppContext<E> {
        self.conn.app()
    }
}

/// What a message guard sees: the message, the connection and its state.
/// Cheap to clone.
pub struct MessageGuardContext<S, D = (), E = SocketEmitter> {
    pub(crate) conn: Conn<D, E>,
    pub(crate) state: Arc<S>,
    pub(crate) message_type: Arc<str>,
    pub(crate) data: Arc<Value>,
}

impl<S, D, E> Clone for MessageGuardContext<S, D, E> {
    fn clone(&self) -> Self {
        Self {
            conn: self.conn.clone(),
            state: self.state.clone(),
            message_type: self.message_type.clone(),
            data: self.data.clone(),
        }
    }
}

impl<S, D: Send + Sync + 'static, E: Emitter> MessageGuardContext<S, D, E> {
    /// The connection.
    pub fn conn(&self) -> &Conn<D, E> {
        &self.conn
    }

    /// The app context: services and the app's emitter.
    pub fn app(&self) -> &AppContext<E> {
        self.conn.app()
    }

    /// The router's state for this connection.
    pub fn state(&self) -> &S {
        &self.state
    }

    /// The message type.
    pub fn message_type(&self) -> &str {
        &self.message_type
    }

    /// The message's raw data.
    pub fn data(&self) -> &Value {
        &self.data
    }
}

/// What a route handler sees.
pub struct SocketContext<S, D = (), E: Emitter = SocketEmitter> {
    pub(crate) state: Arc<S>,
    pub(crate) data: Arc<Value>,
    pub(crate) conn: Conn<D, E>,
    pub(crate) correlation_id: Arc<str>,
    pub(crate) message_type: Arc<str>,
    pub(crate) span: tracing::Span,
}

impl<S, D: Send + Sync + 'static, E: Emitter> SocketContext<S, D, E> {
    /// The router's per-connection state, as the connection guards left it.
    pub fn state(&self) -> &S {
        &self.state
    }

    /// The message's raw `data` (`null` when absent).
    pub fn data(&self) -> &Value {
        &self.data
    }

    /// The data deserialized as `T`.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, ValidationError> {
        T::deserialize(&*self.data).map_err(|e| ValidationError::new("", e.to_string()))
    }

    /// The connection.
    pub fn ws(&self) -> &Conn<D, E> {
        &self.conn
    }

    /// The connection's id.
    pub fn socket_id(&self) -> SocketId {
        self.conn.id()
    }

    /// The upgrade handler's user data.
    pub fn user_data(&self) -> &D {
        self.conn.data()
    }

    /// Sends a message to this connection (besides the reply).
    pub fn send(&self, message: impl Into<Message>) -> bool {
        self.conn.send(message)
    }

    /// Sends a value serialized as JSON text to this connection.
    pub fn send_json<T: Serialize>(&self, value: &T) -> bool {
        match serde_json::to_string(value) {
            Ok(text) => self.conn.send(text),
            Err(_) => false,
        }
    }

    /// Joins a topic on the client's behalf: the app's join authorization
    /// ([`WsOptions::authorize_join`](crate::WsOptions::authorize_join))
    /// decides first; a refusal is [`SubscribeError::Forbidden`], whose
    /// message `Forbidden: <topic>` is the reply's `error` when the handler
    /// returns it. (`ctx.ws().subscribe(..)` joins without asking.)
    pub async fn subscribe(&self, topic: impl IntoTopic) -> Result<bool, SubscribeError> {
        self.conn.subscribe_as_client(topic).await
    }

    /// Leaves a topic.
    pub fn unsubscribe(&self, topic: impl IntoTopic) -> Result<bool, SubscribeError> {
        self.conn.unsubscribe(topic)
    }

    /// Publishes a value serialized as JSON text to a topic.
    pub async fn publish<T: Serialize>(
        &self,
        topic: impl IntoTopic,
        value: &T,
    ) -> Result<(), PublishError> {
        let text = serde_json::to_string(value).map_err(PublishError::Serialize)?;
        self.socket().socket_emitter().publish(topic, text).await
    }

    /// The app context (services).
    pub fn app(&self) -> &AppContext<E> {
        self.conn.app()
    }

    /// The app's emitter.
    pub fn socket(&self) -> &E {
        self.app().socket()
    }

    /// A tracing span carrying the socket id, message type and correlation
    /// id; handlers run inside it.
    pub fn log(&self) -> &tracing::Span {
        &self.span
    }

    /// The request's correlation id (the client's, or a generated UUID v4).
    pub fn correlation_id(&self) -> &str {
        &self.correlation_id
    }

    /// The message type.
    pub fn message_type(&self) -> &str {
        &self.message_type
    }
}
