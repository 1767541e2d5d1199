//! Connection identifiers: random UUID v4, never sequential.

use std::fmt;
use std::str::FromStr;

use uuid::Uuid;

/// The identity of one WebSocket connection: a random UUID v4.
///
/// Parsing accepts only version-4 UUIDs in their hyphenated form, so an id
/// that came from the wire is known to be well formed.
///
/// ```
/// use ori_protocol::SocketId;
/// let id = SocketId::new();
/// let parsed: SocketId = id.to_string().parse().unwrap();
/// assert_eq!(id, parsed);
/// assert!("not-an-id".parse::<SocketId>().is_err());
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SocketId(Uuid);

impl SocketId {
    /// A fresh random id.
    pub fn new() -> Self {
        Self(Uuid::new_v4())
    }

    /// The underlying UUID.
    pub fn as_uuid(&self) -> &Uuid {
        &self.0
    }
}

impl Default for SocketId {
    fn default() -> Self {
        Self::new()
    }
}

/// Why a string is not a [`SocketId`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SocketIdError {
    /// Not a hyphenated UUID.
    #[error("invalid socket id: not a UUID")]
    Malformed,
    /// A UUID, but not version 4.
    #[error("invalid socket id: not a UUID v4")]
    NotV4,
}

impl FromStr for SocketId {
    type Err = SocketIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() != 36 {
            return Err(SocketIdError::Malformed);
        }
        let uuid = Uuid::try_parse(s).map_err(|_| SocketIdError::Malformed)?;
        if uuid.get_version_num() != 4 || uuid.get_variant() != uuid::Variant::RFC4122 {
            return Err(SocketIdError::NotV4);
        }
        Ok(Self(uuid))
    }
}

impl fmt::Display for SocketId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0.hyphenated(), f)
    }
}

impl fmt::Debug for SocketId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SocketId({})", self.0.hyphenated())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fresh_ids_are_v4_and_distinct() {
        let a = SocketId::new();
        let b = SocketId::new();
        assert_ne!(a, b);
        assert_eq!(a.as_uuid().get_version_num(), 4);
    }

    #[test]
    fn parsing_rejects_other_versions_and_forms() {
        assert_eq!(
            "6ba7b810-9dad-11d1-80b4-00c04fd430c8".parse::<SocketId>(),
            Err(SocketIdError::NotV4)
        );
        assert_eq!(
            "6ba7b8109dad11d180b400c04fd430c8".parse::<SocketId>(),
            Err(SocketIdError::Malformed)
        );
        assert_eq!("".parse::<SocketId>(), Err(SocketIdError::Malformed));
        assert!("9f0e7b1c-3c1a-4d2e-9b7a-2f1c0d9e8a7b"
            .parse::<SocketId>()
            .is_ok());
        // version nibble 4 but wrong variant
        assert_eq!(
            "9f0e7b1c-3c1a-4d2e-cb7a-2f1c0d9e8a7b".parse::<SocketId>(),
            Err(SocketIdError::NotV4)
        );
    }
}
