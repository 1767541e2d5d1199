//! Topic names: validated once, cheap to clone and hash.

use std::borrow::Borrow;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use crate::SocketId;

/// The internal topic every connection joins once it is accepted.
pub const BROADCAST_TOPIC: &str = "__broadcast__";
/// Prefix of the internal per-connection topic (`__socket__:<socketId>`).
pub const SOCKET_TOPIC_PREFIX: &str = "__socket__:";

const MAX_LEN: usize = 256;

/// A pub/sub topic: 1 to 256 characters of `A-Z a-z 0-9 _ : . -`.
///
/// Topics beginning with `__` are reserved for the server
/// ([`BROADCAST_TOPIC`], `__socket__:<id>`); the server may publish to them,
/// but a connection can never subscribe to or leave one
/// (see [`Topic::is_reserved`]). Cloning is a reference-count increment.
///
/// ```
/// use ori_protocol::Topic;
/// let t = Topic::new("room:42").unwrap();
/// assert_eq!(t.as_str(), "room:42");
/// assert!(Topic::new("no spaces").is_err());
/// assert!(Topic::new("__broadcast__").unwrap().is_reserved());
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Topic(Arc<str>);

/// Why a string is not a valid [`Topic`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TopicError {
    /// The empty string.
    #[error("must be at least 1 character")]
    Empty,
    /// More than 256 characters.
    #[error("must be at most 256 characters")]
    TooLong,
    /// A character outside `A-Z a-z 0-9 _ : . -`.
    #[error("must contain only A-Z a-z 0-9 _ : . -")]
    InvalidCharacter,
    /// A reserved (`__`-prefixed) topic where a client topic was required.
    #[error("reserved topic")]
    Reserved,
}

impl Topic {
    /// Validates `name` as a topic.
    pub fn new(name: &str) -> Result<Self, TopicError> {
        Self::validate(name)?;
        Ok(Self(Arc::from(name)))
    }

    /// Validates `name` as a topic a client may join: a valid topic that is
    /// not reserved.
    pub fn client(name: &str) -> Result<Self, TopicError> {
        Self::validate_client(name)?;
        Ok(Self(Arc::from(name)))
    }

    /// Checks `name` as [`Topic::client`] does, without allocating.
    pub fn validate_client(name: &str) -> Result<(), TopicError> {
        Self::validate(name)?;
        if name.starts_with("__") {
            return Err(TopicError::Reserved);
        }
        Ok(())
    }

    /// Checks `name` without allocating.
    pub fn validate(name: &str) -> Result<(), TopicError> {
        if name.is_empty() {
            return Err(TopicError::Empty);
        }
        // Every allowed character is one byte, so a byte scan decides both
        // the character set and the length in characters.
        let mut chars = 0usize;
        for b in name.bytes() {
            let ok = b.is_ascii_alphanumeric() || matches!(b, b'_' | b':' | b'.' | b'-');
            if !ok {
                // Report length first when the string is also too long, as a
                // user reading the error fixes that first.
                if name.chars().count() > MAX_LEN {
                    return Err(TopicError::TooLong);
                }
                return Err(TopicError::InvalidCharacter);
            }
            chars += 1;
        }
        if chars > MAX_LEN {
            return Err(TopicError::TooLong);
        }
        Ok(())
    }

    /// The internal topic of one connection, the target of direct sends.
    pub fn for_socket(id: &SocketId) -> Self {
        Self(Arc::from(format!("{SOCKET_TOPIC_PREFIX}{id}")))
    }

    /// The internal broadcast topic.
    pub fn broadcast() -> Self {
        Self(Arc::from(BROADCAST_TOPIC))
    }

    /// Whether the topic is reserved for the server (starts with `__`).
    pub fn is_reserved(&self) -> bool {
        self.0.starts_with("__")
    }

    /// If this is a `__socket__:<id>` topic, the socket it addresses.
    pub fn socket_target(&self) -> Option<SocketId> {
        self.0.strip_prefix(SOCKET_TOPIC_PREFIX)?.parse().ok()
    }

    /// The topic name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for Topic {
    type Err = TopicError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl TryFrom<&str> for Topic {
    type Error = TopicError;
    fn try_from(s: &str) -> Result<Self, Self::Error> {
        Self::new(s)
    }
}

impl TryFrom<String> for Topic {
    type Error = TopicError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::validate(&s)?;
        Ok(Self(Arc::from(s)))
    }
}

impl TryFrom<&String> for Topic {
    type Error = TopicError;
    fn try_from(s: &String) -> Result<Self, Self::Error> {
        Self::new(s)
    }
}

impl TryFrom<&Topic> for Topic {
    type Error = TopicError;
    fn try_from(t: &Topic) -> Result<Self, Self::Error> {
        Ok(t.clone())
    }
}

impl AsRef<str> for Topic {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl Borrow<str> for Topic {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Topic({:?})", &*self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_allowed_alphabet_and_lengths() {
        assert!(Topic::new("a").is_ok());
        assert!(Topic::new("Az09_:.-").is_ok());
        assert!(Topic::new(&"x".repeat(256)).is_ok());
    }

    #[test]
    fn rejects_bad_topics_with_the_reason() {
        assert_eq!(Topic::new(""), Err(TopicError::Empty));
        assert_eq!(Topic::new(&"x".repeat(257)), Err(TopicError::TooLong));
        assert_eq!(Topic::new("a b"), Err(TopicError::InvalidCharacter));
        assert_eq!(Topic::new("a/b"), Err(TopicError::InvalidCharacter));
        assert_eq!(Topic::new("é"), Err(TopicError::InvalidCharacter));
        assert_eq!(Topic::new(&"é".repeat(300)), Err(TopicError::TooLong));
        assert_eq!(Topic::new("a\0"), Err(TopicError::InvalidCharacter));
    }

    #[test]
    fn reserved_topics_are_valid_but_not_for_clients() {
        let t = Topic::new("__broadcast__").unwrap();
        assert!(t.is_reserved());
        assert_eq!(Topic::client("__x"), Err(TopicError::Reserved));
        assert!(Topic::client("_x").is_ok());
        assert_eq!(
            Topic::client("bad topic"),
            Err(TopicError::InvalidCharacter)
        );
    }

    #[test]
    fn socket_topics_round_trip() {
        let id = SocketId::new();
        let t = Topic::for_socket(&id);
        assert!(t.is_reserved());
        assert_eq!(t.socket_target(), Some(id));
        assert_eq!(Topic::new("room").unwrap().socket_target(), None);
    }
}
