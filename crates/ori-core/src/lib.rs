//! The small, stable vocabulary of [Ori](https://docs.rs/ori): validated
//! [`Topic`]s and [`SocketId`]s, [`Message`]s, the RFC 6455 frame [`codec`],
//! the local subscription [`Hub`] with its per-connection [`Outbox`]es, the
//! [`Broker`] that owns it, and the [`Provider`] trait that pluggable
//! pub/sub transports implement.
//!
//! Nothing here does I/O: the framework crate (`ori`) owns sockets and HTTP,
//! and backends such as a Redis provider depend only on this crate. The hub is
//! the single source of truth for local subscriptions and the broker owns
//! local delivery; providers add only the hop between instances and hand what
//! they receive to [`Inbound::deliver`].

mod broker;
mod budget;
pub mod codec;
mod error;
mod history;
mod hub;
mod message;
mod outbox;
pub mod positions;
mod provider;

pub use broker::{Broker, Inbound, Published};
pub use budget::{
    Budget, DEFAULT_BUDGET, DEFAULT_SHED_AFTER, DEFAULT_WAIT_TIMEOUT, MIN_SHED_AFTER,
};
pub use error::{PublishError, SubscribeError};
pub use history::HistoryConfig;
pub use hub::{
    Hub, HubMetrics, Overloaded, Subscription, DEFAULT_COMPRESSION_LEVEL,
    DEFAULT_COMPRESSION_THRESHOLD,
};
pub use message::{Message, Utf8Bytes};
pub use ori_protocol::{
    CloseCode, SocketId, SocketIdError, Topic, TopicError, BROADCAST_TOPIC, SOCKET_TOPIC_PREFIX,
};
pub use outbox::{Outbox, OutboxStatus, Push};
pub use positions::{Joined, Position, Recovery};
pub use provider::{
    ErrorKind, HistoryLimits, HistoryRead, InProcProvider, InstanceId, Outgoing, Provider,
    ProviderError, Sent, Target,
};
