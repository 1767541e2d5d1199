//! WebSocket close codes (RFC 6455 section 7.4) and what they mean to Ori
//! clients (PROTOCOL.md section 6).

use std::fmt;

/// A close code: a `u16` with names for the ones Ori sends.
///
/// Compares equal to its number (`code == 1000`), converts from and to
/// `u16`, and displays as the number.
///
/// ```
/// use ori_protocol::CloseCode;
/// assert_eq!(CloseCode::from(1013), CloseCode::TRY_AGAIN_LATER);
/// assert!(CloseCode::TRY_AGAIN_LATER == 1013);
/// assert_eq!(CloseCode::NORMAL.to_string(), "1000");
/// assert!(!CloseCode::ABNORMAL.is_valid_on_wire());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CloseCode(u16);

impl CloseCode {
    /// Normal closure.
    pub const NORMAL: Self = Self(1000);
    /// The server is going away (shutting down).
    pub const GOING_AWAY: Self = Self(1001);
    /// Protocol error.
    pub const PROTOCOL_ERROR: Self = Self(1002);
    /// No status code was present in the close frame (never sent on the wire).
    pub const NO_STATUS: Self = Self(1005);
    /// The connection dropped without a close frame (never sent on the wire).
    pub const ABNORMAL: Self = Self(1006);
    /// Text that is not valid UTF-8, or a compressed message that does not
    /// inflate.
    pub const INVALID_PAYLOAD: Self = Self(1007);
    /// Policy violation: a connection guard or an authenticator refused.
    pub const POLICY_VIOLATION: Self = Self(1008);
    /// A frame or message over the configured size.
    pub const MESSAGE_TOO_BIG: Self = Self(1009);
    /// An unexpected server error.
    pub const INTERNAL_ERROR: Self = Self(1011);
    /// Try again later: the client read too slowly.
    pub const TRY_AGAIN_LATER: Self = Self(1013);

    /// The code `code`.
    pub const fn new(code: u16) -> Self {
        Self(code)
    }

    /// The number.
    pub const fn as_u16(self) -> u16 {
        self.0
    }

    /// Whether the code may appear in a close frame on the wire.
    pub const fn is_valid_on_wire(self) -> bool {
        matches!(self.0, 1000..=1003 | 1007..=1014 | 3000..=4999)
    }

    /// Whether a client should stop reconnecting after a close with this
    /// code and `reason` (PROTOCOL.md section 6): a refused or failed
    /// connection (1008, 1011), except the 1008s that a fresh token cures
    /// ("Token expired", "Authentication timeout"). Those are final too for
    /// a client that has no way to get a fresh token: the caller decides
    /// that (the Rust and TypeScript clients stop after any 1008 when they
    /// have no token source).
    pub fn is_final(self, reason: &str) -> bool {
        match self {
            Self::POLICY_VIOLATION => !matches!(reason, "Token expired" | "Authentication timeout"),
            Self::INTERNAL_ERROR => true,
            _ => false,
        }
    }
}

impl From<u16> for CloseCode {
    fn from(code: u16) -> Self {
        Self(code)
    }
}

impl From<CloseCode> for u16 {
    fn from(code: CloseCode) -> Self {
        code.0
    }
}

impl PartialEq<u16> for CloseCode {
    fn eq(&self, other: &u16) -> bool {
        self.0 == *other
    }
}

impl PartialEq<CloseCode> for u16 {
    fn eq(&self, other: &CloseCode) -> bool {
        *self == other.0
    }
}

impl fmt::Display for CloseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_validity_follows_rfc_6455() {
        for ok in [1000, 1001, 1002, 1003, 1007, 1011, 1014, 3000, 4999] {
            assert!(CloseCode::new(ok).is_valid_on_wire(), "{ok}");
        }
        for bad in [0, 999, 1004, 1005, 1006, 1015, 2999, 5000] {
            assert!(!CloseCode::new(bad).is_valid_on_wire(), "{bad}");
        }
    }

    #[test]
    fn only_refusals_are_final() {
        assert!(CloseCode::POLICY_VIOLATION.is_final("Forbidden"));
        assert!(CloseCode::INTERNAL_ERROR.is_final(""));
        assert!(!CloseCode::POLICY_VIOLATION.is_final("Authentication timeout"));
        for code in [1000, 1001, 1006, 1009, 1013, 4401] {
            assert!(!CloseCode::new(code).is_final(""), "{code}");
        }
    }
}
