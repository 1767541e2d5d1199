//! PROTOCOL.md section 3, through the documented pattern: a raw `message`
//! handler runs `MessageRegistry::handle_text` and sends
//! `RegistryError::to_reply` back. Every error reply, the typed handlers'
//! success, a handler error reaching the caller, and the registry's set-up
//! API (`has`, `types`, `on` twice panicking, `try_on` refusing).

use crate::common;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex};

use ori::messages::{
    Heartbeat, JoinRoom, LeaveRoom, MessageRegistry, RegistryError, ServerMessage,
};
use ori::testing::{self, Received, TestServer, TestSocket};
use ori::{Conn, HandlerError, Handlers, Message, Ori, Topic};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
enum Status {
    Online,
    Offline,
}

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
struct StatusUpdate {
    status: Status,
    last_seen: Option<f64>,
}

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
struct Profile {
    #[schemars(length(min = 1, max = 16))]
    name: String,
    #[schemars(range(min = 0, max = 150))]
    age: u8,
    email: String,
}

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
struct Fail {
    reason: String,
}

static UPDATE_STATUS: ServerMessage<StatusUpdate> = ServerMessage::define("status.update");
static PROFILE: ServerMessage<Profile> = ServerMessage::define("profile");
static FAIL: ServerMessage<Fail> = ServerMessage::define("fail");

fn registry() -> MessageRegistry {
    MessageRegistry::new()
        .on(JoinRoom, |ws: Conn, data| async move {
            ws.subscribe(data.room.topic())
        })
        .on(LeaveRoom, |ws: Conn, data| async move {
            ws.unsubscribe(data.room.topic())
        })
        .on(Heartbeat, |ws: Conn, _| async move {
            ws.send(json!({ "type": "heartbeat", "from": "first" }).to_string());
        })
        .on(UPDATE_STATUS, |ws: Conn, data: StatusUpdate| async move {
            let reply =
                json!({ "type": "status", "status": data.status, "lastSeen": data.last_seen });
            ws.send(reply.to_string());
        })
        .on(PROFILE, |ws: Conn, data: Profile| async move {
            ws.send(json!({ "type": "profile", "name": data.name }).to_string());
        })
        .on(FAIL, |_ws: Conn, data: Fail| async move {
            Err::<(), String>(data.reason)
        })
        // A second heartbeat handler is refused; the first one stays.
        .try_on(Heartbeat, |ws: Conn, _| async move {
            ws.send("second heartbeat handler ran");
        })
        .unwrap_or_else(|unchanged| unchanged)
}

/// The documented pattern, plus `direct:<type> <json>` which calls
/// `MessageRegistry::handle` with any value as the data. Every error is
/// also recorded, so tests can check its variant.
fn app(errors: Arc<Mutex<Vec<RegistryError>>>) -> Ori {
    let registry = Arc::new(registry());
    Ori::create()
        .websocket()
        .on_websocket(Handlers::new().on_message(move |ws: Conn, msg: Message| {
            let registry = registry.clone();
            let errors = errors.clone();
            async move {
                let Some(text) = msg.as_text() else { return };
                let result = match text.strip_prefix("direct:") {
                    Some(rest) => {
                        let (kind, data) = rest.split_once(' ').expect("direct:<type> <json>");
                        let data: Value = serde_json::from_str(data).expect("JSON data");
                        registry.handle(&ws, kind, data).await
                    }
                    None => registry.handle_text(&ws, text).await,
                };
                if let Err(e) = result {
                    errors.lock().unwrap().push(e.clone());
                    ws.send(e.to_reply());
                }
            }
        }))
}

struct Fixture {
    server: TestServer,
    errors: Arc<Mutex<Vec<RegistryError>>>,
}

impl Fixture {
    async fn start() -> Self {
        let errors = Arc::new(Mutex::new(Vec::new()));
        let server = testing::spawn(app(errors.clone())).await;
        Self { server, errors }
    }

    fn last_error(&self) -> RegistryError {
        self.errors
            .lock()
            .unwrap()
            .last()
            .cloned()
            .expect("an error was recorded")
    }
}

/// Sends `frame` and asserts the error reply carries `message`.
async fn expect_error(ws: &mut TestSocket, frame: &str, message: &str) {
    ws.send_text(frame).await;
    let text = ws.recv_text().await;
    let reply: Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("reply is JSON ({e}): {text}"));
    assert_eq!(
        reply,
        json!({ "type": "error", "message": message }),
        "reply to {frame:?}"
    );
}

/// Sends a heartbeat and waits for its reply: every frame sent before it
/// has been handled.
async fn heartbeat(ws: &mut TestSocket) {
    ws.send_text(r#"{"type":"heartbeat"}"#).await;
    assert_eq!(
        ws.recv_json().await,
        json!({ "type": "heartbeat", "from": "first" })
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_that_is_not_json_answers_invalid_json() {
    let f = Fixture::start().await;
    let mut ws = f.server.connect().await;
    for frame in [
        "not json",
        "{",
        "",
        r#"{"type":"heartbeat",}"#,
        "{'type':'heartbeat'}",
        r#"{"type":"heartbeat"} trailing"#,
    ] {
        expect_error(&mut ws, frame, "Invalid JSON").await;
        assert_eq!(f.last_error(), RegistryError::InvalidJson);
    }
    heartbeat(&mut ws).await;
    common::stop_server(&f.server, vec![ws]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_without_an_object_and_string_type_answers_invalid_message() {
    let f = Fixture::start().await;
    let mut ws = f.server.connect().await;
    for frame in [
        "[1]",
        r#""x""#,
        r#"{"type":1}"#,
        "{}",
        "null",
        "22",
        r#"{"type":null}"#,
        r#"{"type":["heartbeat"]}"#,
        r#"{"kind":"heartbeat"}"#,
        r#"[{"type":"heartbeat"}]"#,
    ] {
        expect_error(
            &mut ws,
            frame,
            r#"Invalid message: expected an object with a string "type""#,
        )
        .await;
        assert_eq!(f.last_error(), RegistryError::InvalidMessage);
    }
    // The `2` ping is the server's, before any handler (PROTOCOL.md
    // section 2).
    ws.send_text("2").await;
    assert_eq!(ws.recv_text().await, "3");
    common::stop_server(&f.server, vec![ws]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unregistered_types_answer_unknown_message_type() {
    let f = Fixture::start().await;
    let mut ws = f.server.connect().await;
    for kind in ["nope", "", "Heartbeat", "room.join ", r#"a"b\c"#, "日本"] {
        let frame = json!({ "type": kind, "room": "lobby" }).to_string();
        expect_error(&mut ws, &frame, &format!("Unknown message type: {kind}")).await;
        assert_eq!(f.last_error(), RegistryError::UnknownType(kind.to_owned()));
    }
    ws.send_text(r#"direct:nope {}"#).await;
    assert_eq!(
        ws.recv_json().await,
        json!({ "type": "error", "message": "Unknown message type: nope" })
    );
    common::stop_server(&f.server, vec![ws]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_and_reserved_rooms_answer_validation_failed_for_room() {
    let f = Fixture::start().await;
    let mut ws = f.server.connect().await;
    let long = "r".repeat(257);
    let cases: Vec<(Value, &str)> = vec![
        (
            json!("bad topic"),
            "/room: must contain only A-Z a-z 0-9 _ : . -",
        ),
        (json!("a/b"), "/room: must contain only A-Z a-z 0-9 _ : . -"),
        (json!(""), "/room: must be at least 1 character"),
        (json!(long), "/room: must be at most 256 characters"),
        (json!("__broadcast__"), "/room: reserved topic"),
        (json!("__x"), "/room: reserved topic"),
        (json!("__"), "/room: reserved topic"),
        (json!(5), "/room: must be a string"),
        (json!(null), "/room: must be a string"),
    ];
    for kind in ["room.join", "room.leave"] {
        for (room, why) in &cases {
            let frame = json!({ "type": kind, "room": room }).to_string();
            expect_error(&mut ws, &frame, &format!("Validation failed: {why}")).await;
            assert!(
                matches!(f.last_error(), RegistryError::Validation(ref e) if e.to_string() == *why),
                "{:?}",
                f.last_error()
            );
        }
        expect_error(
            &mut ws,
            &json!({ "type": kind }).to_string(),
            "Validation failed: /room: is required",
        )
        .await;
    }
    // Nothing changed: no reserved topic was joined, __broadcast__ was not
    // left (broadcasts still arrive).
    let emitter = f.server.app().socket();
    assert_eq!(emitter.subscriber_count(&Topic::new("__x").unwrap()), 0);
    emitter.broadcast("still subscribed").await.unwrap();
    assert_eq!(ws.recv().await, Received::Text("still subscribed".into()));
    common::stop_server(&f.server, vec![ws]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn valid_control_messages_work_and_send_nothing_back() {
    let f = Fixture::start().await;
    let mut ws = f.server.connect().await;
    let longest = "z".repeat(256);
    for room in ["lobby", "Az09_:.-", longest.as_str()] {
        ws.send_text(json!({ "type": "room.join", "room": room }).to_string())
            .await;
        heartbeat(&mut ws).await; // the join was handled, silently
        f.server
            .app()
            .socket()
            .publish(room, format!("to {}", &room[..5.min(room.len())]))
            .await
            .unwrap();
        assert_eq!(
            ws.recv().await,
            Received::Text(format!("to {}", &room[..5.min(room.len())]))
        );
    }
    ws.send_text(r#"{"type":"room.leave","room":"lobby"}"#)
        .await;
    heartbeat(&mut ws).await;
    common::wait_for_subscribers(f.server.app(), "lobby", 0).await;
    // The typed handler saw typed data.
    ws.send_text(r#"{"type":"status.update","status":"online","lastSeen":17}"#)
        .await;
    assert_eq!(
        ws.recv_json().await,
        json!({ "type": "status", "status": "online", "lastSeen": 17.0 })
    );
    assert!(f.errors.lock().unwrap().is_empty());
    common::stop_server(&f.server, vec![ws]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enum_violations_and_several_violations_are_joined_with_commas() {
    let f = Fixture::start().await;
    let mut ws = f.server.connect().await;
    expect_error(
        &mut ws,
        r#"{"type":"status.update","status":"away"}"#,
        r#"Validation failed: /status: must be one of "online", "offline""#,
    )
    .await;
    expect_error(
        &mut ws,
        r#"{"type":"status.update","status":"online","lastSeen":"yesterday"}"#,
        "Validation failed: /lastSeen: must be a number or null",
    )
    .await;
    // Required fields first, then the properties' violations.
    expect_error(
        &mut ws,
        r#"{"type":"profile","name":"","age":200}"#,
        "Validation failed: /email: is required, /age: must be at most 150, /name: must be at least 1 character",
    )
    .await;
    match f.last_error() {
        RegistryError::Validation(e) => {
            let paths: Vec<&str> = e.violations().iter().map(|v| v.path.as_str()).collect();
            assert_eq!(paths, ["/email", "/age", "/name"]);
        }
        other => panic!("expected a validation error, got {other:?}"),
    }
    expect_error(
        &mut ws,
        r#"{"type":"profile"}"#,
        "Validation failed: /name: is required, /age: is required, /email: is required",
    )
    .await;
    common::stop_server(&f.server, vec![ws]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_violation_of_the_whole_data_has_no_path() {
    let f = Fixture::start().await;
    let mut ws = f.server.connect().await;
    for data in [r#""online""#, "[]", "null", "3"] {
        ws.send_text(format!("direct:status.update {data}")).await;
        assert_eq!(
            ws.recv_json().await,
            json!({ "type": "error", "message": "Validation failed: expected an object" }),
            "data {data}"
        );
        match f.last_error() {
            RegistryError::Validation(e) => {
                assert_eq!(e.violations().len(), 1);
                assert_eq!(e.violations()[0].path, "");
                assert_eq!(e.violations()[0].reason, "expected an object");
            }
            other => panic!("expected a validation error, got {other:?}"),
        }
    }
    // `handle` with good data runs the typed handler.
    ws.send_text(r#"direct:status.update {"status":"offline"}"#)
        .await;
    assert_eq!(
        ws.recv_json().await,
        json!({ "type": "status", "status": "offline", "lastSeen": null })
    );
    common::stop_server(&f.server, vec![ws]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_error_reaches_the_caller_and_the_connection_stays_usable() {
    let f = Fixture::start().await;
    let mut ws = f.server.connect().await;
    for reason in ["no such user", "second failure"] {
        let frame = json!({ "type": "fail", "reason": reason }).to_string();
        expect_error(&mut ws, &frame, reason).await;
        assert_eq!(
            f.last_error(),
            RegistryError::Handler(HandlerError::new(reason))
        );
        heartbeat(&mut ws).await;
    }
    ws.send_text(r#"{"type":"room.join","room":"after"}"#).await;
    heartbeat(&mut ws).await;
    f.server
        .app()
        .socket()
        .publish("after", "still here")
        .await
        .unwrap();
    assert_eq!(ws.recv().await, Received::Text("still here".into()));
    common::stop_server(&f.server, vec![ws]).await;
}

/// The table of section 3 gives the frames byte for byte, `type` first
/// (as router replies keep `type` first too).
#[test]
fn error_frames_are_byte_for_byte_as_documented() {
    assert_eq!(
        RegistryError::InvalidJson.to_reply(),
        r#"{"type":"error","message":"Invalid JSON"}"#
    );
    assert_eq!(
        RegistryError::UnknownType("x".into()).to_reply(),
        r#"{"type":"error","message":"Unknown message type: x"}"#
    );
    assert_eq!(
        RegistryError::InvalidMessage.to_reply(),
        r#"{"type":"error","message":"Invalid message: expected an object with a string \"type\""}"#
    );
}

#[test]
fn has_and_types_list_the_registered_types() {
    let registry = registry();
    for kind in [
        "room.join",
        "room.leave",
        "heartbeat",
        "status.update",
        "profile",
        "fail",
    ] {
        assert!(registry.has(kind), "{kind}");
    }
    for kind in ["", "room", "Room.join", "room.join ", "nope"] {
        assert!(!registry.has(kind), "{kind:?}");
    }
    let mut types: Vec<&str> = registry.types().collect();
    types.sort_unstable();
    assert_eq!(
        types,
        [
            "fail",
            "heartbeat",
            "profile",
            "room.join",
            "room.leave",
            "status.update"
        ]
    );
    let empty = MessageRegistry::<()>::new();
    assert_eq!(empty.types().count(), 0);
    assert!(!empty.has("heartbeat"));
}

#[test]
fn on_twice_for_one_type_panics_naming_it() {
    let registry = MessageRegistry::<()>::new().on(Heartbeat, |_ws: Conn, _| async {});
    let panic = catch_unwind(AssertUnwindSafe(|| {
        registry.on(Heartbeat, |_ws: Conn, _| async {})
    }))
    .err()
    .expect("registering heartbeat twice panics");
    let message = panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default();
    assert!(
        message.contains("heartbeat") && message.contains("twice"),
        "{message}"
    );
}

#[test]
#[should_panic(expected = "registered twice")]
fn on_twice_for_one_user_defined_type_panics() {
    static AGAIN: ServerMessage<Fail> = ServerMessage::define("fail");
    let _ = MessageRegistry::<()>::new()
        .on(FAIL, |_ws: Conn, _| async {})
        .on(AGAIN, |_ws: Conn, _| async {});
}

#[test]
fn try_on_returns_the_registry_unchanged_in_err() {
    let Ok(registry) = MessageRegistry::<()>::new().try_on(JoinRoom, |_ws: Conn, _| async {})
    else {
        panic!("a new type is accepted");
    };
    let unchanged = registry
        .try_on(JoinRoom, |_ws: Conn, _| async {})
        .err()
        .expect("a second handler for room.join is refused");
    assert!(unchanged.has("room.join"));
    assert_eq!(unchanged.types().collect::<Vec<_>>(), ["room.join"]);
    // And it can still take other types.
    let Ok(more) = unchanged.try_on(LeaveRoom, |_ws: Conn, _| async {}) else {
        panic!("room.leave is new");
    };
    assert_eq!(more.types().count(), 2);
}
