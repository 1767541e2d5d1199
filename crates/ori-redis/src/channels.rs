//! The Redis channel names of one prefix, and what a channel addresses.

use ori_core::{SocketId, Topic};

/// Channel names of one prefix.
pub(crate) struct Channels {
    topic: String,
    broadcast: String,
    socket: String,
    pressure: String,
}

/// What a channel name addresses.
pub(crate) enum ChannelKind<'a> {
    Topic(&'a str),
    Broadcast,
    Socket(&'a str),
}

impl Channels {
    pub(crate) fn new(prefix: &str) -> Self {
        Self {
            topic: format!("{prefix}:t:"),
            broadcast: format!("{prefix}:b"),
            socket: format!("{prefix}:s:"),
            pressure: format!("{prefix}:p"),
        }
    }

    /// The channel of backpressure announcements (see `pressure`).
    pub(crate) fn pressure(&self) -> &str {
        &self.pressure
    }

    pub(crate) fn topic(&self, topic: &Topic) -> String {
        format!("{}{}", self.topic, topic.as_str())
    }

    pub(crate) fn broadcast(&self) -> &str {
        &self.broadcast
    }

    pub(crate) fn socket(&self, id: &SocketId) -> String {
        format!("{}{id}", self.socket)
    }

    pub(crate) fn classify<'a>(&self, channel: &'a str) -> Option<ChannelKind<'a>> {
        if channel == self.broadcast {
            Some(ChannelKind::Broadcast)
        } else if let Some(t) = channel.strip_prefix(self.topic.as_str()) {
            Some(ChannelKind::Topic(t))
        } else {
            channel
                .strip_prefix(self.socket.as_str())
                .map(ChannelKind::Socket)
        }
    }
}
