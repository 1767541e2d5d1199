//! Typed, validated messages: definitions (a name and a Rust data type whose
//! JSON Schema is checked at run time), the built-in control messages, and
//! the [`MessageRegistry`] that dispatches raw frames to typed handlers.
//!
//! The definitions themselves live in the light `ori-protocol` crate, which
//! the Rust client shares; they are re-exported here.

mod registry;
pub(crate) mod schema;

use std::sync::Arc;

pub use ori_protocol::messages::{
    ClientTopic, Definition, Heartbeat, HeartbeatData, JoinData, JoinRoom, LeaveRoom, RoomData,
    ServerMessage, Since, FORMAT_CLIENT_TOPIC, FORMAT_TOPIC,
};
pub use registry::{MessageRegistry, RegistryError};
pub use schema::{Schema, SchemaError, ValidationError, Violation};

/// The compiled schema of a definition's data: what the server checks a
/// message of that type against (shared, computed once per type).
///
/// ```
/// use ori::messages::{DefinitionSchema, ServerMessage};
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
pub trait DefinitionSchema: Definition {
    /// The compiled schema of [`Definition::Data`], or why it does not
    /// compile (the error is cached too).
    fn schema(&self) -> Result<Arc<Schema>, SchemaError> {
        Schema::of::<Self::Data>()
    }
}

impl<T: Definition + ?Sized> DefinitionSchema for T {}

/// Milliseconds since the Unix epoch: the `timestamp` of the envelopes the
/// server sends (PROTOCOL.md), for a handler's own messages to match (0 if
/// the clock is before 1970).
///
/// ```
/// let before = ori::now_ms();
/// assert!(before > 1_600_000_000_000 && ori::now_ms() >= before);
/// ```
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
