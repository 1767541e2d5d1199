//! Message definitions: a name plus a data type.

use std::borrow::Cow;
use std::marker::PhantomData;
use std::sync::Arc;

use ori_core::Topic;
use schemars::{JsonSchema, SchemaGenerator};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::schema::{Schema, SchemaError, FORMAT_CLIENT_TOPIC};

/// A message definition: a name, and the Rust type of its data whose JSON
/// Schema is enforced at run time.
///
/// Define your own with [`ServerMessage::define`]; the built-ins are
/// [`JoinRoom`], [`LeaveRoom`] and [`Heartbeat`].
pub trait Definition: Send + Sync + 'static {
    /// The message's data.
    type Data: Serialize + DeserializeOwned + JsonSchema + Send + Sync + 'static;

    /// The message name (the `type` on the wire).
    fn name(&self) -> &str;

    /// The compiled schema of the data (shared, computed once per type),
    /// or why it does not compile.
    fn schema(&self) -> Result<Arc<Schema>, SchemaError> {
        Schema::of::<Self::Data>()
    }

    /// The topic a message of this type asks to join, if it is a join
    /// (default: none). A [`MessageRegistry`](super::MessageRegistry)
    /// consults the app's join authorization
    /// ([`WsOptions::authorize_join`](crate::WsOptions::authorize_join))
    /// with it before the handler runs; [`JoinRoom`] names its room.
    fn join_topic(data: &Self::Data) -> Option<&Topic> {
        let _ = data;
        None
    }
}

impl<D: Definition> Definition for &'static D {
    type Data = D::Data;
    fn name(&self) -> &str {
        (**self).name()
    }
    fn join_topic(data: &Self::Data) -> Option<&Topic> {
        D::join_topic(data)
    }
}

/// A user-defined message: `ServerMessage::define("status.update")`, typed
/// by its data.
///
/// ```
/// use ori::messages::{Definition, ServerMessage};
/// use schemars::JsonSchema;
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Serialize, Deserialize, JsonSchema)]
/// #[serde(rename_all = "lowercase")]
/// enum Status { Online, Offline }
///
/// #[derive(Serialize, Deserialize, JsonSchema)]
/// #[serde(rename_all = "camelCase")]
/// struct StatusUpdate {
///     status: Status,
///     last_seen: Option<f64>,
/// }
///
/// static UPDATE_STATUS: ServerMessage<StatusUpdate> = ServerMessage::define("status.update");
///
/// let schema = UPDATE_STATUS.schema().expect("the schema compiles");
/// let err = schema.validate(&serde_json::json!({"status": "away"})).unwrap_err();
/// assert_eq!(err.to_string(), r#"/status: must be one of "online", "offline""#);
/// ```
pub struct ServerMessage<T> {
    name: &'static str,
    data: PhantomData<fn() -> T>,
}

impl<T> ServerMessage<T> {
    /// Defines a message called `name` whose data is a `T`.
    pub const fn define(name: &'static str) -> Self {
        Self {
            name,
            data: PhantomData,
        }
    }
}

impl<T> Clone for ServerMessage<T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for ServerMessage<T> {}

impl<T> std::fmt::Debug for ServerMessage<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("ServerMessage").field(&self.name).finish()
    }
}

impl<T: Serialize + DeserializeOwned + JsonSchema + Send + Sync + 'static> Definition
    for ServerMessage<T>
{
    type Data = T;
    fn name(&self) -> &str {
        self.name
    }
}

/// A topic a client may join: valid, and not reserved (`__`-prefixed).
/// Its JSON Schema carries the constraint, so a bad room fails validation
/// with the reason (`/room: reserved topic`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ClientTopic(Topic);

impl ClientTopic {
    /// Validates `name`.
    pub fn new(name: &str) -> Result<Self, ori_core::TopicError> {
        Topic::client(name).map(Self)
    }

    /// The topic.
    pub fn topic(&self) -> &Topic {
        &self.0
    }

    /// Unwraps the topic.
    pub fn into_topic(self) -> Topic {
        self.0
    }
}

impl std::ops::Deref for ClientTopic {
    type Target = Topic;
    fn deref(&self) -> &Topic {
        &self.0
    }
}

impl Serialize for ClientTopic {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.0.as_str())
    }
}

impl<'de> Deserialize<'de> for ClientTopic {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = Cow::<'de, str>::deserialize(d)?;
        Self::new(&s).map_err(serde::de::Error::custom)
    }
}

impl JsonSchema for ClientTopic {
    fn schema_name() -> Cow<'static, str> {
        "ClientTopic".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "minLength": 1,
            "maxLength": 256,
            "format": FORMAT_CLIENT_TOPIC,
            "description": "A topic: 1 to 256 characters of A-Z a-z 0-9 _ : . -, not starting with __"
        })
    }
}

/// The data of [`LeaveRoom`] (and of any message naming one room):
/// `{"room": "<topic>"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct RoomData {
    /// The room (topic) to join or leave.
    pub room: ClientTopic,
}

/// The data of [`JoinRoom`]: `{"room": "<topic>"}`, optionally with
/// positions (`"recover": true`) or a resume (`"since": {"epoch", "offset"}`)
/// (PROTOCOL.md section 8).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct JoinData {
    /// The room (topic) to join.
    pub room: ClientTopic,
    /// Join with positions: publications arrive as `room.message`
    /// envelopes with their offsets, after a `room.joined` reply.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recover: Option<bool>,
    /// Resume after this position: the missed publications are replayed
    /// first when they are all still there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<Since>,
}

/// A position a client saw: the history's epoch and the last offset
/// received.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Since {
    /// The epoch of the history (1 to 64 characters).
    #[schemars(length(min = 1, max = 64))]
    pub epoch: String,
    /// The last offset received (0: none yet).
    pub offset: u64,
}

impl JoinData {
    /// A plain join of `room`.
    pub fn new(room: ClientTopic) -> Self {
        Self {
            room,
            recover: None,
            since: None,
        }
    }

    /// How the join asks to be made: `None` for a plain (raw) join.
    pub fn recovery(&self) -> Option<ori_core::Recovery> {
        match (&self.since, self.recover) {
            (Some(since), _) => Some(ori_core::Recovery::Since {
                epoch: since.epoch.clone(),
                offset: since.offset,
            }),
            (None, Some(true)) => Some(ori_core::Recovery::Latest),
            _ => None,
        }
    }
}

/// The (empty) data of [`Heartbeat`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct HeartbeatData {}

/// Built-in `room.join`: subscribe to a topic.
#[derive(Debug, Clone, Copy, Default)]
pub struct JoinRoom;

/// Built-in `room.leave`: unsubscribe from a topic.
#[derive(Debug, Clone, Copy, Default)]
pub struct LeaveRoom;

/// Built-in `heartbeat`: JSON keep-alive.
#[derive(Debug, Clone, Copy, Default)]
pub struct Heartbeat;

impl Definition for JoinRoom {
    type Data = JoinData;
    fn name(&self) -> &str {
        "room.join"
    }
    fn join_topic(data: &JoinData) -> Option<&Topic> {
        Some(data.room.topic())
    }
}

impl Definition for LeaveRoom {
    type Data = RoomData;
    fn name(&self) -> &str {
        "room.leave"
    }
}

impl Definition for Heartbeat {
    type Data = HeartbeatData;
    fn name(&self) -> &str {
        "heartbeat"
    }
}
