//! Typed, validated messages: definitions (a name and a Rust data type whose
//! JSON Schema is checked at run time), the built-in control messages, and
//! the [`MessageRegistry`] that dispatches raw frames to typed handlers.

mod definition;
mod registry;
pub(crate) mod schema;

pub use definition::{
    ClientTopic, Definition, Heartbeat, HeartbeatData, JoinData, JoinRoom, LeaveRoom, RoomData,
    ServerMessage, Since,
};
pub use registry::{MessageRegistry, RegistryError};
pub use schema::{
    Schema, SchemaError, ValidationError, Violation, FORMAT_CLIENT_TOPIC, FORMAT_TOPIC,
};

/// Milliseconds since the Unix epoch (the `timestamp` of envelopes).
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
