//! Classifies one inbound text frame without doing any I/O: the `2` ping, a
//! socket-router request, a control message for the registry, or the exact
//! error reply PROTOCOL.md section 3 prescribes.

use ori::Topic;
use serde_json::{Map, Value};

/// The socket-router routes of the demo.
pub const ROUTES: [&str; 3] = ["echo", "whoami", "publish"];

/// A request to a socket-router route (PROTOCOL.md section 4).
#[derive(Debug, Clone, PartialEq)]
pub struct RouteRequest {
    /// The route (`echo`, `whoami`, `publish`).
    pub route: String,
    /// The request's `data` (`null` when absent).
    pub data: Value,
    /// The client's correlation id, or a generated UUID v4.
    pub correlation_id: String,
}

/// A control message of the registry.
#[derive(Debug, Clone, PartialEq)]
pub enum ControlMessage {
    /// `room.join`.
    Join(Topic),
    /// `room.leave`.
    Leave(Topic),
    /// `heartbeat`.
    Heartbeat,
}

/// What to do with one text frame.
#[derive(Debug, Clone, PartialEq)]
pub enum Inbound {
    /// The one-character `2` ping: reply `3`.
    Ping,
    /// A socket-router request.
    Route(RouteRequest),
    /// A valid control message.
    Control(ControlMessage),
    /// Reply `{"type":"error","message":<this>}`.
    Error(String),
}

/// Classifies a text frame.
///
/// ```
/// use ori_demo::{classify, ControlMessage, Inbound};
/// assert_eq!(classify("2"), Inbound::Ping);
/// assert!(matches!(classify(r#"{"type":"room.join","room":"a"}"#), Inbound::Control(ControlMessage::Join(_))));
/// assert_eq!(classify("nope"), Inbound::Error("Invalid JSON".into()));
/// ```
pub fn classify(text: &str) -> Inbound {
    if text == "2" {
        return Inbound::Ping;
    }
    let Ok(value) = serde_json::from_str::<Value>(text) else {
        return Inbound::Error("Invalid JSON".into());
    };
    let Value::Object(mut fields) = value else {
        return invalid_shape();
    };
    let Some(Value::String(kind)) = fields.remove("type") else {
        return invalid_shape();
    };
    if ROUTES.contains(&kind.as_str()) {
        return Inbound::Route(RouteRequest {
            correlation_id: correlation_id(fields.get("correlationId")),
            data: fields.remove("data").unwrap_or(Value::Null),
            route: kind,
        });
    }
    match kind.as_str() {
        "room.join" => room(&fields).map_or_else(Inbound::Error, |t| {
            Inbound::Control(ControlMessage::Join(t))
        }),
        "room.leave" => room(&fields).map_or_else(Inbound::Error, |t| {
            Inbound::Control(ControlMessage::Leave(t))
        }),
        "heartbeat" => Inbound::Control(ControlMessage::Heartbeat),
        _ => Inbound::Error(format!("Unknown message type: {kind}")),
    }
}

fn invalid_shape() -> Inbound {
    Inbound::Error("Invalid message: expected an object with a string \"type\"".into())
}

/// The client's correlation id when it is a string of 1 to 128 characters,
/// else a fresh UUID v4.
fn correlation_id(given: Option<&Value>) -> String {
    match given {
        Some(Value::String(s)) if (1..=128).contains(&s.chars().count()) => s.clone(),
        _ => uuid::Uuid::new_v4().to_string(),
    }
}

/// Validates a client topic at JSON Pointer `/<field>`.
pub(crate) fn client_topic(fields: &Map<String, Value>, field: &str) -> Result<Topic, String> {
    match fields.get(field) {
        None => Err(format!("Validation failed: /{field}: is required")),
        Some(Value::String(s)) => {
            Topic::client(s).map_err(|e| format!("Validation failed: /{field}: {e}"))
        }
        Some(_) => Err(format!("Validation failed: /{field}: must be a string")),
    }
}

fn room(fields: &Map<String, Value>) -> Result<Topic, String> {
    client_topic(fields, "room")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(s: &str) -> Inbound {
        Inbound::Error(s.into())
    }

    #[test]
    fn registry_errors_are_exact() {
        assert_eq!(classify("{"), err("Invalid JSON"));
        assert_eq!(classify(""), err("Invalid JSON"));
        let shape = "Invalid message: expected an object with a string \"type\"";
        assert_eq!(classify("[1]"), err(shape));
        assert_eq!(classify("3"), err(shape));
        assert_eq!(classify(r#"{"type":1}"#), err(shape));
        assert_eq!(classify(r#"{"room":"a"}"#), err(shape));
        assert_eq!(
            classify(r#"{"type":"nope"}"#),
            err("Unknown message type: nope")
        );
        assert_eq!(
            classify(r#"{"type":"room.join"}"#),
            err("Validation failed: /room: is required")
        );
        assert_eq!(
            classify(r#"{"type":"room.join","room":5}"#),
            err("Validation failed: /room: must be a string")
        );
        assert_eq!(
            classify(r#"{"type":"room.join","room":""}"#),
            err("Validation failed: /room: must be at least 1 character")
        );
        assert_eq!(
            classify(r#"{"type":"room.leave","room":"a b"}"#),
            err("Validation failed: /room: must contain only A-Z a-z 0-9 _ : . -")
        );
        assert_eq!(
            classify(r#"{"type":"room.join","room":"__broadcast__"}"#),
            err("Validation failed: /room: reserved topic")
        );
        let long = format!(r#"{{"type":"room.join","room":"{}"}}"#, "a".repeat(257));
        assert_eq!(
            classify(&long),
            err("Validation failed: /room: must be at most 256 characters")
        );
    }

    #[test]
    fn control_and_route_messages() {
        assert_eq!(
            classify(r#"{"type":"heartbeat"}"#),
            Inbound::Control(ControlMessage::Heartbeat)
        );
        assert_eq!(
            classify(r#"{"type":"room.leave","room":"r:1"}"#),
            Inbound::Control(ControlMessage::Leave(Topic::new("r:1").unwrap()))
        );
        let Inbound::Route(r) = classify(r#"{"type":"echo","data":{"a":1},"correlationId":"c-1"}"#)
        else {
            panic!("not a route");
        };
        assert_eq!(
            (r.route.as_str(), r.correlation_id.as_str()),
            ("echo", "c-1")
        );
        assert_eq!(r.data, serde_json::json!({"a":1}));
    }

    #[test]
    fn correlation_ids_are_generated_when_absent_or_invalid() {
        for frame in [
            r#"{"type":"whoami"}"#,
            r#"{"type":"whoami","correlationId":""}"#,
            r#"{"type":"whoami","correlationId":7}"#,
        ] {
            let Inbound::Route(r) = classify(frame) else {
                panic!()
            };
            let id: uuid::Uuid = r.correlation_id.parse().unwrap();
            assert_eq!(id.get_version_num(), 4);
            assert_eq!(r.data, Value::Null);
        }
        let long = format!(
            r#"{{"type":"whoami","correlationId":"{}"}}"#,
            "x".repeat(129)
        );
        let Inbound::Route(r) = classify(&long) else {
            panic!()
        };
        assert_eq!(r.correlation_id.len(), 36);
        let max = format!(
            r#"{{"type":"whoami","correlationId":"{}"}}"#,
            "é".repeat(128)
        );
        let Inbound::Route(r) = classify(&max) else {
            panic!()
        };
        assert_eq!(r.correlation_id, "é".repeat(128));
    }
}
