//! How a socket asks to join a topic (PROTOCOL.md section 8).

/// How a socket joins a topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recovery {
    /// With positions, from now on (`"recover": true`).
    Latest,
    /// Resuming after `offset` of `epoch` (`"since": {...}`).
    Since {
        /// The epoch the client saw.
        epoch: String,
        /// The last offset it received.
        offset: u64,
    },
}
