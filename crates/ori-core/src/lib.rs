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
mod frame;
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
pub use frame::Frame;
pub use history::HistoryConfig;
pub use hub::{
    Hub, HubMetrics, Overloaded, Subscription, DEFAULT_COMPRESSION_LEVEL,
    DEFAULT_COMPRESSION_THRESHOLD,
};
pub use message::{Message, Utf8Bytes};
pub use ori_protocol::{
    CloseCode, SocketId, SocketIdError, Topic, TopicError, BROADCAST_TOPIC, SOCKET_TOPIC_PREFIX,
};
pub use outbox::{Lane, Outbox, OutboxStatus, Push};
pub use positions::{Joined, Position, Recovery};
pub use provider::{
    ErrorKind, HistoryLimits, HistoryRead, InProcProvider, InstanceId, MetricKind, Outgoing,
    Provider, ProviderError, ProviderMetric, Sent, Target,
};

/// Not part of the API: the seam between an [`Outbox`] and the server
/// crate's writer, which lives in another crate. Nothing here follows
/// semantic versioning; it may change or go in any release.
#[doc(hidden)]
pub mod __private {
    use std::collections::VecDeque;
    use std::task::Waker;

    pub use crate::outbox::Taken;
    use crate::{Frame, Outbox};

    /// Registers (or with `None` removes) the writer's waker.
    pub fn set_waker(outbox: &Outbox, waker: Option<Waker>) {
        outbox.set_waker(waker);
    }

    /// Records that `written` bytes reached the socket, then moves every
    /// queued frame to the back of `into`, under one lock.
    pub fn take(outbox: &Outbox, written: usize, into: &mut VecDeque<Frame>) -> Taken {
        outbox.written_and_take(written, into)
    }

    /// Records that `n` bytes the writer took left the queue (written, or
    /// dropped by the writer).
    pub fn written(outbox: &Outbox, n: usize) {
        outbox.written(n);
    }

    /// The outboxes' clock: microseconds since the process epoch, modulo
    /// 2^32 (differences with `wrapping_sub`).
    pub fn now() -> u32 {
        crate::outbox::clock::now()
    }
}
