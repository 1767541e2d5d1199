//! The wire forms of the protocol's messages (PROTOCOL.md): the error
//! reply (section 3), router replies (section 4), typed-emit envelopes
//! (section 5), positions (section 8) and in-band authentication
//! (section 9). Each serializes to exactly the JSON the protocol names,
//! field order included, and parses from it. Parsing does not check a
//! message's `type` (serde ignores a struct's tag when it reads one): tell
//! messages apart by their `type` or `name` first, then parse.
//!
//! ```
//! use ori_protocol::wire::{Envelope, ErrorMessage, Reply};
//!
//! let error = ErrorMessage::new("Invalid JSON");
//! assert_eq!(serde_json::to_string(&error).unwrap(), r#"{"type":"error","message":"Invalid JSON"}"#);
//!
//! let reply = Reply::<()>::failed("rename", "Forbidden", "c-1");
//! assert_eq!(
//!     serde_json::to_string(&reply).unwrap(),
//!     r#"{"type":"rename","data":null,"error":"Forbidden","correlationId":"c-1"}"#
//! );
//!
//! let env: Envelope<serde_json::Value> =
//!     serde_json::from_str(r#"{"name":"order.created","data":{"id":1},"timestamp":5}"#).unwrap();
//! assert_eq!((env.name.as_str(), env.timestamp), ("order.created", Some(5)));
//! ```

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

/// The `type` of an error reply.
pub const ERROR: &str = "error";
/// The `type` of a client's in-band authentication.
pub const AUTHENTICATE: &str = "auth.authenticate";
/// The envelope `name` of an accepted authentication or refresh.
pub const AUTHENTICATED: &str = "auth.authenticated";
/// The envelope `name` of the warning before a credential expires.
pub const EXPIRING: &str = "auth.expiring";
/// The `type` of a publication to a socket joined with positions.
pub const ROOM_MESSAGE: &str = "room.message";
/// The `type` of the reply to a join with positions or a resume.
pub const ROOM_JOINED: &str = "room.joined";

/// `{"type": ty, ...data}`: a message sent flat, as the original browser
/// client sends them. Data that is not an object goes as
/// `{"type": ty, "data": data}`.
pub fn flat<T: Serialize + ?Sized>(ty: &str, data: &T) -> Result<String, serde_json::Error> {
    // `type` first, whatever order the data's map keeps.
    let mut out = String::from("{\"type\":");
    out.push_str(&serde_json::to_string(ty)?);
    match serde_json::to_value(data)? {
        Value::Object(fields) => {
            for (k, v) in fields.iter().filter(|(k, _)| *k != "type") {
                out.push(',');
                out.push_str(&serde_json::to_string(k)?);
                out.push(':');
                out.push_str(&serde_json::to_string(v)?);
            }
        }
        Value::Null => {}
        other => {
            out.push_str(",\"data\":");
            out.push_str(&serde_json::to_string(&other)?);
        }
    }
    out.push('}');
    Ok(out)
}

/// `{"type":"error","message":"<message>"}`: the server's answer to a
/// message it cannot take (section 3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename = "error")]
pub struct ErrorMessage {
    /// Why (`Invalid JSON`, `Unknown message type: <t>`,
    /// `Validation failed: ...`, `Not authenticated`, ...).
    pub message: String,
}

impl ErrorMessage {
    /// An error reply saying `message`.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
        }
    }
}

/// A socket router's reply (section 4):
/// `{"type","data","error"?,"correlationId"}`, `data` null when it failed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reply<T> {
    /// The request's type.
    #[serde(rename = "type")]
    pub ty: String,
    /// The handler's result (`null` on failure).
    pub data: Option<T>,
    /// Why it failed (`Forbidden`, `Validation failed: ...`, the handler's
    /// message).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The request's correlation id.
    #[serde(rename = "correlationId")]
    pub correlation_id: String,
}

impl<T> Reply<T> {
    /// A successful reply.
    pub fn ok(ty: impl Into<String>, data: T, correlation_id: impl Into<String>) -> Self {
        Self {
            ty: ty.into(),
            data: Some(data),
            error: None,
            correlation_id: correlation_id.into(),
        }
    }

    /// A failed reply.
    pub fn failed(
        ty: impl Into<String>,
        error: impl Into<String>,
        correlation_id: impl Into<String>,
    ) -> Self {
        Self {
            ty: ty.into(),
            data: None,
            error: Some(error.into()),
            correlation_id: correlation_id.into(),
        }
    }
}

/// A typed emit (section 5): `{"name","data","timestamp"}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope<T> {
    /// The message name.
    pub name: String,
    /// The validated data.
    pub data: T,
    /// Unix milliseconds when the server emitted it (always sent; optional
    /// when parsing, as the original client treats it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<u64>,
}

/// A publication to a socket joined with positions (section 8):
/// `{"type":"room.message","room","offset","data"}`; `data` is the payload
/// as it was published when it is JSON, else the text as a JSON string;
/// a binary payload comes as `"binary"` (standard base64) instead. The
/// payload is borrowed from the frame as it was spliced.
#[derive(Debug, Deserialize)]
pub struct RoomMessage<'a> {
    /// The room.
    #[serde(borrow)]
    pub room: Cow<'a, str>,
    /// The publication's offset in the room's history.
    pub offset: u64,
    /// A text payload: JSON as it was published, other text as a string.
    #[serde(default, borrow)]
    pub data: Option<&'a RawValue>,
    /// A binary payload, base64.
    #[serde(default, borrow)]
    pub binary: Option<Cow<'a, str>>,
}

/// The reply to a join with positions or a resume (section 8):
/// `{"type":"room.joined","room","epoch"?,"offset"?,"recovered"?,"missed"?}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename = "room.joined")]
pub struct RoomJoined {
    /// The room.
    pub room: String,
    /// The history's epoch (absent when the topic keeps no history).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epoch: Option<String>,
    /// The last offset: live delivery continues after it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
    /// For a resume: whether every missed publication was replayed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovered: Option<bool>,
    /// For a recovered resume: how many were replayed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub missed: Option<u64>,
}

/// The data of the `auth.authenticated` envelope (section 9).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Authenticated {
    /// The connection's socket id.
    pub socket_id: String,
    /// Whole seconds until the credential expires (`null`: it does not).
    pub expires_in: Option<u64>,
}

/// The data of the `auth.expiring` envelope (section 9).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Expiring {
    /// Whole seconds left, rounded up.
    pub expires_in: u64,
}

/// A client's `{"type":"auth.authenticate","token":"<T>", ...}`.
///
/// Parsing keeps every field but `type` and `token` in `credentials`, so a
/// parsed message serializes back to the same fields.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename = "auth.authenticate")]
pub struct Authenticate {
    /// The token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// Other credential fields, passed to the server's authenticator.
    #[serde(flatten)]
    pub credentials: Map<String, Value>,
}

impl<'de> Deserialize<'de> for Authenticate {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let mut credentials = Map::<String, Value>::deserialize(d)?;
        credentials.remove("type");
        let token = match credentials.remove("token") {
            None | Some(Value::Null) => None,
            Some(Value::String(token)) => Some(token),
            Some(_) => return Err(serde::de::Error::custom("`token` must be a string")),
        };
        Ok(Self { token, credentials })
    }
}

impl Authenticate {
    /// `{"type":"auth.authenticate","token":"<token>"}`.
    pub fn token(token: impl Into<String>) -> Self {
        Self {
            token: Some(token.into()),
            credentials: Map::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn text<T: Serialize>(v: &T) -> String {
        serde_json::to_string(v).unwrap()
    }

    #[test]
    fn each_form_is_byte_for_byte_the_protocols() {
        assert_eq!(
            text(&Reply::ok("whoami", json!({"socketId": "s"}), "c")),
            r#"{"type":"whoami","data":{"socketId":"s"},"correlationId":"c"}"#
        );
        assert_eq!(
            text(&Envelope {
                name: AUTHENTICATED.into(),
                data: Authenticated {
                    socket_id: "s".into(),
                    expires_in: None
                },
                timestamp: Some(7),
            }),
            r#"{"name":"auth.authenticated","data":{"socketId":"s","expiresIn":null},"timestamp":7}"#
        );
        assert_eq!(
            text(&RoomJoined {
                room: "r".into(),
                epoch: Some("e".into()),
                offset: Some(3),
                recovered: Some(true),
                missed: Some(2),
            }),
            r#"{"type":"room.joined","room":"r","epoch":"e","offset":3,"recovered":true,"missed":2}"#
        );
        assert_eq!(
            text(&Authenticate::token("t")),
            r#"{"type":"auth.authenticate","token":"t"}"#
        );
        assert_eq!(
            flat("room.join", &json!({"room": "lobby", "type": "x"})).unwrap(),
            r#"{"type":"room.join","room":"lobby"}"#
        );
        assert_eq!(flat("ping", &3).unwrap(), r#"{"type":"ping","data":3}"#);
    }

    #[test]
    fn parsing_reads_each_form_and_borrows_payloads() {
        let e: ErrorMessage = serde_json::from_str(r#"{"type":"error","message":"m"}"#).unwrap();
        assert_eq!(e, ErrorMessage::new("m"));
        let m: RoomMessage<'_> = serde_json::from_str(
            r#"{"type":"room.message","room":"r","offset":4,"data":{"a":[1]}}"#,
        )
        .unwrap();
        assert_eq!((m.room.as_ref(), m.offset), ("r", 4));
        assert_eq!(m.data.map(RawValue::get), Some(r#"{"a":[1]}"#));
        let a: Authenticate =
            serde_json::from_str(r#"{"type":"auth.authenticate","token":"t","app":1}"#).unwrap();
        assert_eq!(a.token.as_deref(), Some("t"));
        assert_eq!(a.credentials.get("app"), Some(&json!(1)));
        assert_eq!(
            text(&a),
            r#"{"type":"auth.authenticate","token":"t","app":1}"#,
            "a parsed message round-trips, `type` once"
        );
        assert!(
            serde_json::from_str::<Authenticate>(r#"{"type":"auth.authenticate","token":5}"#)
                .is_err()
        );
    }
}
