//! The message registry: typed handlers by message type, with the data
//! validated before a handler sees it.

use std::collections::HashMap;
use std::future::Future;
use std::marker::PhantomData;
use std::sync::Arc;

use crate::BoxFuture;
use futures_util::FutureExt;
use serde_json::{Map, Value};

use super::schema::{SchemaError, ValidationError};
use super::{Definition, DefinitionSchema as _};
use crate::emitter::{Emitter, SocketEmitter};
use crate::error::BuildError;
use crate::ws::{Conn, HandlerError, HandlerResult};
use ori_core::Topic;

type Handler<D> =
    Arc<dyn Fn(Conn<D>, Value) -> BoxFuture<'static, Result<(), RegistryError>> + Send + Sync>;

struct Entry<D> {
    handler: Handler<D>,
    /// `None` when the schema does not compile (every message is refused).
    schema: Option<Arc<super::Schema>>,
}

impl<D> Clone for Entry<D> {
    fn clone(&self) -> Self {
        Self {
            handler: self.handler.clone(),
            schema: self.schema.clone(),
        }
    }
}

/// Why [`MessageRegistry::handle`] did not handle a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// Nobody registered this type.
    #[error("Unknown message type: {0}")]
    UnknownType(String),
    /// The frame is not a JSON object with a string `type`.
    #[error("Invalid message: expected an object with a string \"type\"")]
    InvalidMessage,
    /// The frame is not JSON.
    #[error("Invalid JSON")]
    InvalidJson,
    /// The data failed the definition's schema.
    #[error("Validation failed: {0}")]
    Validation(ValidationError),
    /// The app's join authorization refused the topic the message asks to
    /// join ([`Definition::join_topic`]); the handler did not run.
    #[error("Forbidden: {0}")]
    Forbidden(Topic),
    /// The handler returned an error.
    #[error(transparent)]
    Handler(HandlerError),
    /// The schema of this type's data does not compile, so no message of
    /// it is accepted. [`Ori::message_registry`](crate::Ori::message_registry)
    /// makes this a start-up error instead.
    #[error("Cannot validate message type {message_type:?}: {error}")]
    Schema {
        /// The message type.
        message_type: String,
        /// Why its schema does not compile.
        error: SchemaError,
    },
}

/// Typed handlers by message type: give it to
/// [`Ori::message_registry`](crate::Ori::message_registry), which runs it
/// after the socket routers, or call [`handle_text`](Self::handle_text)
/// from a handler of your own.
///
/// A message whose definition names a topic to join ([`JoinRoom`](super::JoinRoom)) is
/// checked by the app's join authorization first
/// ([`WsOptions::authorize_join`](crate::WsOptions::authorize_join)): a
/// refusal is [`RegistryError::Forbidden`] and the handler does not run.
///
/// ```
/// use ori::messages::{Heartbeat, JoinRoom, LeaveRoom, MessageRegistry};
/// use ori::Conn;
///
/// let registry = MessageRegistry::<()>::new()
///     .on(JoinRoom, |ws: Conn, data| async move { ws.subscribe(data.room.topic()) })
///     .on(LeaveRoom, |ws: Conn, data| async move { ws.unsubscribe(data.room.topic()) })
///     .on(Heartbeat, |ws: Conn, _| async move {
///         ws.send(r#"{"type":"heartbeat"}"#);
///     });
/// assert!(registry.has("room.join"));
/// ```
pub struct MessageRegistry<D = (), E = SocketEmitter> {
    handlers: HashMap<String, Entry<D>>,
    /// The first type whose schema does not compile.
    schema_error: Option<(String, SchemaError)>,
    /// Handlers are stored for the server's connection handle and given
    /// the app's.
    emitter: PhantomData<fn() -> E>,
}

impl<D, E> Clone for MessageRegistry<D, E> {
    fn clone(&self) -> Self {
        Self {
            handlers: self.handlers.clone(),
            schema_error: self.schema_error.clone(),
            emitter: PhantomData,
        }
    }
}

impl<D: Send + Sync + 'static, E: Emitter> Default for MessageRegistry<D, E> {
    fn default() -> Self {
        Self::new()
    }
}

impl<D, E> MessageRegistry<D, E> {
    /// The same registry, as the server stores it.
    pub(crate) fn erase(self) -> MessageRegistry<D> {
        MessageRegistry {
            handlers: self.handlers,
            schema_error: self.schema_error,
            emitter: PhantomData,
        }
    }
}

impl<D: Send + Sync + 'static, E: Emitter> MessageRegistry<D, E> {
    /// An empty registry.
    pub fn new() -> Self {
        Self {
            handlers: HashMap::new(),
            schema_error: None,
            emitter: PhantomData,
        }
    }

    /// Registers the handler of `definition`'s type; the handler receives
    /// the validated, typed data.
    ///
    /// A data type whose schema does not compile is remembered
    /// ([`check`](Self::check)): pass the registry to
    /// [`Ori::message_registry`](crate::Ori::message_registry) and `listen`
    /// fails with it; until then every message of that type is refused
    /// ([`RegistryError::Schema`]).
    ///
    /// # Panics
    ///
    /// If the type already has a handler: a set-up mistake, reported when
    /// the registry is built rather than when a message arrives. Use
    /// [`try_on`](Self::try_on) to handle it yourself.
    pub fn on<Def, F, Fut>(self, definition: Def, handler: F) -> Self
    where
        Def: Definition,
        F: Fn(Conn<D, E>, Def::Data) -> Fut + Send + Sync + 'static,
        Fut: Future + Send + 'static,
        Fut::Output: HandlerResult,
    {
        let name = definition.name().to_owned();
        match self.try_on(definition, handler) {
            Ok(registry) => registry,
            Err(_) => panic!("message type {name:?} is registered twice"),
        }
    }

    /// Like [`on`](Self::on), returning the registry unchanged in `Err` when
    /// the type already has a handler.
    pub fn try_on<Def, F, Fut>(mut self, definition: Def, handler: F) -> Result<Self, Self>
    where
        Def: Definition,
        F: Fn(Conn<D, E>, Def::Data) -> Fut + Send + Sync + 'static,
        Fut: Future + Send + 'static,
        Fut::Output: HandlerResult,
    {
        let name = definition.name().to_owned();
        if self.handlers.contains_key(&name) {
            return Err(self);
        }
        let schema = match definition.schema() {
            Ok(schema) => Ok(schema),
            Err(error) => {
                self.schema_error
                    .get_or_insert_with(|| (name.clone(), error.clone()));
                Err(RegistryError::Schema {
                    message_type: name.clone(),
                    error,
                })
            }
        };
        let entry_schema = schema.as_ref().ok().cloned();
        let handler = Arc::new(handler);
        let boxed: Handler<D> = Arc::new(move |ws: Conn<D>, data| {
            let parsed = match &schema {
                Ok(schema) => schema
                    .parse::<Def::Data>(data)
                    .map_err(RegistryError::Validation),
                Err(refused) => Err(refused.clone()),
            };
            let handler = handler.clone();
            Box::pin(async move {
                let data = parsed?;
                if let Some(topic) = Def::join_topic(&data) {
                    if !ws.may_join(topic).await {
                        return Err(RegistryError::Forbidden(topic.clone()));
                    }
                }
                handler(ws.retype(), data)
                    .map(HandlerResult::into_outcome)
                    .await
                    .map_err(RegistryError::Handler)
            })
        });
        self.handlers.insert(
            name,
            Entry {
                handler: boxed,
                schema: entry_schema,
            },
        );
        Ok(self)
    }

    /// Whether `kind` has a handler.
    pub fn has(&self, kind: &str) -> bool {
        self.handlers.contains_key(kind)
    }

    /// The registered types.
    pub fn types(&self) -> impl Iterator<Item = &str> {
        self.handlers.keys().map(String::as_str)
    }

    /// The JSON Schema of every registered type's data, by type: what
    /// clients and other languages validate against (a schema that does
    /// not compile is left out).
    pub fn schemas(&self) -> Map<String, Value> {
        self.handlers
            .iter()
            .filter_map(|(name, e)| Some((name.clone(), e.schema.as_ref()?.json().clone())))
            .collect()
    }

    /// The set-up mistake of the first type whose schema does not compile
    /// ([`BuildError::Schema`]), if any.
    pub fn check(&self) -> Result<(), BuildError> {
        match &self.schema_error {
            None => Ok(()),
            Some((message_type, error)) => Err(BuildError::Schema {
                message_type: message_type.clone(),
                error: error.clone(),
            }),
        }
    }

    /// Validates `data` for `kind` and runs its handler.
    pub async fn handle(
        &self,
        ws: &Conn<D, E>,
        kind: &str,
        data: Value,
    ) -> Result<(), RegistryError> {
        let entry = self
            .handlers
            .get(kind)
            .ok_or_else(|| RegistryError::UnknownType(kind.to_owned()))?;
        (entry.handler)(ws.clone().retype(), data).await
    }

    /// Handles a raw text frame in the flat format of PROTOCOL.md section 2
    /// (`{"type": "<t>", ...fields}`; the fields beside `type` are the data).
    ///
    /// On failure, send [`RegistryError::to_reply`] back, as
    /// [`Ori::message_registry`](crate::Ori::message_registry) does.
    pub async fn handle_text(&self, ws: &Conn<D, E>, text: &str) -> Result<(), RegistryError> {
        let value: Value = serde_json::from_str(text).map_err(|_| RegistryError::InvalidJson)?;
        let Value::Object(mut fields) = value else {
            return Err(RegistryError::InvalidMessage);
        };
        let Some(Value::String(kind)) = fields.remove("type") else {
            return Err(RegistryError::InvalidMessage);
        };
        self.handle(ws, &kind, Value::Object(fields)).await
    }
}

impl RegistryError {
    /// The error frame of PROTOCOL.md section 3:
    /// `{"type":"error","message":"<this error>"}`.
    pub fn to_reply(&self) -> String {
        serde_json::to_string(&ori_protocol::wire::ErrorMessage::new(self.to_string()))
            .unwrap_or_default()
    }
}
