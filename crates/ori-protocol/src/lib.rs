//! The vocabulary Ori's server and clients share: [`Topic`] names,
//! [`SocketId`]s, [`CloseCode`]s, message definitions with the built-in
//! control messages ([`messages`]), and the wire forms of the protocol's
//! envelopes ([`wire`], PROTOCOL.md sections 3 to 5, 8 and 9).
//!
//! It is what a client needs and nothing of the server: serde, serde_json,
//! schemars, thiserror and uuid are its only dependencies. The server (`ori`), the Rust client
//! (`ori-client`) and the schema export (`ori-schemas`) all use these types,
//! so a message defined once is the same message on both sides.
//!
//! ```
//! use ori_protocol::messages::{Definition, JoinData, JoinRoom};
//! use ori_protocol::{wire, ClientTopic, CloseCode};
//!
//! let join = JoinData::new(ClientTopic::new("lobby").unwrap());
//! assert_eq!(JoinRoom.name(), "room.join");
//! assert_eq!(
//!     wire::flat(JoinRoom.name(), &join).unwrap(),
//!     r#"{"type":"room.join","room":"lobby"}"#
//! );
//! assert!(CloseCode::POLICY_VIOLATION.is_final("Authentication failed"));
//! assert!(!CloseCode::POLICY_VIOLATION.is_final("Token expired"));
//! ```

mod close;
pub mod messages;
mod recovery;
mod socket_id;
mod topic;
pub mod wire;

pub use close::CloseCode;
pub use messages::ClientTopic;
pub use recovery::Recovery;
pub use socket_id::{SocketId, SocketIdError};
pub use topic::{Topic, TopicError, BROADCAST_TOPIC, SOCKET_TOPIC_PREFIX};
