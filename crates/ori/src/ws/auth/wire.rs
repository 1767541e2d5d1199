//! The wire forms of in-band authentication (PROTOCOL.md section 9): which
//! frames are `auth.authenticate`, and the replies. Free of I/O.

use std::time::Duration;

use ori_core::{Message, SocketId};
use ori_protocol::wire::{self, Envelope};
use serde::Serialize;
use serde_json::{Map, Value};

/// The reply to anything a pending socket sends but `auth.authenticate`
/// and the `2` ping.
pub(crate) const NOT_AUTHENTICATED_REPLY: &str =
    r#"{"type":"error","message":"Not authenticated"}"#;

const TYPE: &str = wire::AUTHENTICATE;

/// The credentials of an `auth.authenticate` message (its fields beside
/// `type`), or `None` for any other frame. Frames that cannot be it are
/// told apart without parsing.
pub(crate) fn authenticate_credentials(message: &Message) -> Option<Map<String, Value>> {
    let Message::Text(text) = message else {
        return None;
    };
    if !text.contains(TYPE) {
        return None;
    }
    let Ok(Value::Object(mut fields)) = serde_json::from_str::<Value>(text) else {
        return None;
    };
    match fields.remove("type") {
        Some(Value::String(kind)) if kind == TYPE => Some(fields),
        _ => None,
    }
}

/// Whole seconds, rounded up (a credential that has 0.2 s left has 1).
fn whole_seconds(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

fn envelope<T: Serialize>(name: &str, data: T) -> String {
    serde_json::to_string(&Envelope {
        name: name.to_owned(),
        data,
        timestamp: Some(crate::messages::now_ms()),
    })
    .unwrap_or_default()
}

/// `{"name":"auth.authenticated","data":{"socketId","expiresIn"},"timestamp"}`.
pub(crate) fn authenticated_reply(id: SocketId, expires_in: Option<Duration>) -> String {
    envelope(
        wire::AUTHENTICATED,
        wire::Authenticated {
            socket_id: id.to_string(),
            expires_in: expires_in.map(whole_seconds),
        },
    )
}

/// `{"name":"auth.expiring","data":{"expiresIn"},"timestamp"}`.
pub(crate) fn expiring_reply(left: Duration) -> String {
    envelope(
        wire::EXPIRING,
        wire::Expiring {
            expires_in: whole_seconds(left),
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_object_typed_auth_authenticate_is_one() {
        let creds = authenticate_credentials(&Message::from(
            r#"{"type":"auth.authenticate","token":"t","app":1}"#,
        ))
        .unwrap();
        assert_eq!(creds.len(), 2);
        assert_eq!(creds["token"], "t");
        for other in [
            r#"{"type":"room.join","room":"auth.authenticate"}"#,
            r#"["auth.authenticate"]"#,
            r#"{"type":"auth.authenticate""#,
            r#"{"kind":"auth.authenticate"}"#,
            "2",
        ] {
            assert!(
                authenticate_credentials(&Message::from(other)).is_none(),
                "{other}"
            );
        }
        assert!(authenticate_credentials(&Message::Binary(
            br#"{"type":"auth.authenticate"}"#[..].into()
        ))
        .is_none());
    }

    #[test]
    fn replies_carry_whole_seconds_rounded_up() {
        let id = SocketId::new();
        let v: Value =
            serde_json::from_str(&authenticated_reply(id, Some(Duration::from_millis(2500))))
                .unwrap();
        assert_eq!(v["name"], "auth.authenticated");
        assert_eq!(v["data"]["socketId"], id.to_string());
        assert_eq!(v["data"]["expiresIn"], 3);
        assert!(v["timestamp"].is_u64());
        let v: Value = serde_json::from_str(&authenticated_reply(id, None)).unwrap();
        assert!(v["data"]["expiresIn"].is_null());
        let v: Value = serde_json::from_str(&expiring_reply(Duration::from_secs(4))).unwrap();
        assert_eq!(v["name"], "auth.expiring");
        assert_eq!(v["data"]["expiresIn"], 4);
    }
}
