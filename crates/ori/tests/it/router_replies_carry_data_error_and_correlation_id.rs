//! PROTOCOL.md section 4: every socket-router reply is
//! `{"type","data","correlationId"}` (plus `"error"` on failure, with `data`
//! null); the client's correlation id is echoed when it is a string of 1 to
//! 128 characters, else a fresh UUID v4 is generated. Schema failures
//! (`on_with_schema`, `on_typed`) answer `Validation failed: /field: ...`,
//! handler errors answer their message, and a panicking handler answers an
//! error while the connection keeps working.

use crate::common;

use std::sync::Arc;

use ori::messages::{Schema, ServerMessage};
use ori::router::{SocketContext, SocketRouteBuilder, SocketRouter};
use ori::testing::{self, TestServer, TestSocket};
use ori::Ori;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
struct Rename {
    #[schemars(length(min = 1, max = 8))]
    name: String,
}

static RENAME_TYPED: ServerMessage<Rename> = ServerMessage::define("rename.typed");

struct Api;

impl SocketRouter for Api {
    type State = ();

    fn configure(&self, r: &mut SocketRouteBuilder<Self>) {
        r.on("echo", Self::echo);
        r.on("unit", Self::unit);
        r.on("null", Self::null);
        r.on("fail", Self::fail);
        r.on("panic", Self::panic);
        r.on("cid", Self::cid);
        r.on_with_schema("rename", Self::rename, Schema::of::<Rename>());
        r.on_typed(RENAME_TYPED, Self::rename_typed);
    }
}

impl Api {
    async fn echo(self: Arc<Self>, ctx: SocketContext<()>) -> Result<Value, String> {
        Ok(ctx.data().clone())
    }

    async fn unit(self: Arc<Self>, _ctx: SocketContext<()>) -> Result<(), String> {
        Ok(())
    }

    async fn null(self: Arc<Self>, _ctx: SocketContext<()>) -> Result<Value, String> {
        Ok(Value::Null)
    }

    async fn fail(self: Arc<Self>, ctx: SocketContext<()>) -> Result<Value, String> {
        Err(format!("it broke: {}", ctx.data()))
    }

    async fn panic(self: Arc<Self>, ctx: SocketContext<()>) -> Result<Value, String> {
        if ctx.data().is_null() {
            panic!("router handler panicked on purpose");
        }
        Ok(json!("no panic"))
    }

    async fn cid(self: Arc<Self>, ctx: SocketContext<()>) -> Result<Value, String> {
        Ok(json!({ "seen": ctx.correlation_id(), "type": ctx.message_type() }))
    }

    async fn rename(self: Arc<Self>, ctx: SocketContext<()>) -> Result<Value, String> {
        let data: Rename = ctx.json().map_err(|e| e.to_string())?;
        Ok(json!({ "renamed": data.name }))
    }

    async fn rename_typed(
        self: Arc<Self>,
        _ctx: SocketContext<()>,
        data: Rename,
    ) -> Result<Value, String> {
        Ok(json!({ "typed": data.name }))
    }
}

async fn server() -> TestServer {
    testing::spawn(Ori::create().websocket().socket_router(Api)).await
}

/// Sends one request frame and returns the reply.
async fn request(ws: &mut TestSocket, frame: Value) -> Value {
    ws.send_json(&frame).await;
    ws.recv_json().await
}

/// The reply's correlation id, asserted to be a generated UUID v4.
fn generated_id(reply: &Value) -> String {
    let id = reply["correlationId"]
        .as_str()
        .unwrap_or_else(|| panic!("correlationId is a string: {reply}"));
    let uuid = uuid::Uuid::parse_str(id).unwrap_or_else(|e| panic!("{id:?} is no UUID: {e}"));
    assert_eq!(uuid.get_version_num(), 4, "{id} is a UUID v4");
    assert_eq!(id, uuid.hyphenated().to_string(), "canonical form");
    id.to_owned()
}

fn error_reply(kind: &str, error: &str, id: &str) -> Value {
    json!({ "type": kind, "data": null, "error": error, "correlationId": id })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn success_replies_carry_type_data_and_the_client_correlation_id() {
    let server = server().await;
    let mut ws = server.connect().await;
    for data in [
        json!({ "a": [1, 2, { "b": null }] }),
        json!("text"),
        json!(42),
        json!([]),
        json!(true),
    ] {
        let reply = request(
            &mut ws,
            json!({ "type": "echo", "data": data, "correlationId": "c-1" }),
        )
        .await;
        assert_eq!(
            reply,
            json!({ "type": "echo", "data": data, "correlationId": "c-1" })
        );
    }
    // The handler sees the same id the reply carries.
    let reply = request(&mut ws, json!({ "type": "cid", "correlationId": "mine" })).await;
    assert_eq!(
        reply,
        json!({ "type": "cid", "data": { "seen": "mine", "type": "cid" }, "correlationId": "mine" })
    );
    let reply = request(&mut ws, json!({ "type": "cid" })).await;
    let id = generated_id(&reply);
    assert_eq!(reply["data"]["seen"], json!(id));
    common::stop_server(&server, vec![ws]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_key_is_always_present_and_null_when_there_is_nothing() {
    let server = server().await;
    let mut ws = server.connect().await;
    for (frame, kind) in [
        (json!({ "type": "unit", "correlationId": "u" }), "unit"),
        (
            json!({ "type": "unit", "data": { "x": 1 }, "correlationId": "u" }),
            "unit",
        ),
        (json!({ "type": "null", "correlationId": "u" }), "null"),
        // no `data` in the request: the handler sees null, echoes null
        (json!({ "type": "echo", "correlationId": "u" }), "echo"),
        (
            json!({ "type": "echo", "data": null, "correlationId": "u" }),
            "echo",
        ),
    ] {
        ws.send_json(&frame).await;
        let text = ws.recv_text().await;
        let reply: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            reply,
            json!({ "type": kind, "data": null, "correlationId": "u" }),
            "for {frame}"
        );
        assert!(text.contains(r#""data":null"#), "data key present: {text}");
    }
    common::stop_server(&server, vec![ws]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_empty_non_string_or_overlong_correlation_ids_are_replaced_by_uuid_v4() {
    let server = server().await;
    let mut ws = server.connect().await;
    let mut seen = std::collections::HashSet::new();
    let cases = [
        None,
        Some(json!("")),
        Some(json!(7)),
        Some(json!(null)),
        Some(json!(true)),
        Some(json!({ "id": "x" })),
        Some(json!(["x"])),
        Some(json!("x".repeat(129))),
        Some(json!("é".repeat(129))),
        Some(json!("x".repeat(10_000))),
    ];
    for given in cases {
        let mut frame = json!({ "type": "echo", "data": 1 });
        if let Some(id) = &given {
            frame["correlationId"] = id.clone();
        }
        let reply = request(&mut ws, frame).await;
        let id = generated_id(&reply);
        assert_eq!(reply["data"], json!(1), "for {given:?}");
        assert!(seen.insert(id), "each generated id is fresh");
    }
    common::stop_server(&server, vec![ws]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn correlation_ids_of_1_to_128_characters_are_kept_exactly() {
    let server = server().await;
    let mut ws = server.connect().await;
    for id in [
        "a".to_owned(),
        " ".to_owned(),
        "x".repeat(128),
        // characters, not bytes: 128 two-byte characters are 256 bytes
        "é".repeat(128),
        "🙂".repeat(128),
        r#"quote " and \ backslash"#.to_owned(),
    ] {
        let reply = request(
            &mut ws,
            json!({ "type": "echo", "data": 0, "correlationId": id }),
        )
        .await;
        assert_eq!(reply["correlationId"], json!(id));
    }
    common::stop_server(&server, vec![ws]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schema_failures_answer_validation_failed_with_the_path() {
    let server = server().await;
    let mut ws = server.connect().await;
    for kind in ["rename", "rename.typed"] {
        let cases = [
            (json!({ "name": "" }), "/name: must be at least 1 character"),
            (
                json!({ "name": "ninechars" }),
                "/name: must be at most 8 characters",
            ),
            (json!({ "name": 5 }), "/name: must be a string"),
            (json!({}), "/name: is required"),
            // a violation of the whole value has no path
            (json!("bob"), "expected an object"),
            (Value::Null, "expected an object"),
        ];
        for (data, why) in cases {
            let reply = request(
                &mut ws,
                json!({ "type": kind, "data": data, "correlationId": "v" }),
            )
            .await;
            assert_eq!(
                reply,
                error_reply(kind, &format!("Validation failed: {why}"), "v"),
                "{kind} with {data}"
            );
        }
        // A generated id on a failure too.
        let reply = request(&mut ws, json!({ "type": kind, "data": {} })).await;
        let id = generated_id(&reply);
        assert_eq!(
            reply,
            error_reply(kind, "Validation failed: /name: is required", &id)
        );
    }
    let ok = request(
        &mut ws,
        json!({ "type": "rename", "data": { "name": "ann" }, "correlationId": "1" }),
    )
    .await;
    assert_eq!(
        ok,
        json!({ "type": "rename", "data": { "renamed": "ann" }, "correlationId": "1" })
    );
    let ok = request(
        &mut ws,
        json!({ "type": "rename.typed", "data": { "name": "日本語" }, "correlationId": "2" }),
    )
    .await;
    assert_eq!(
        ok,
        json!({ "type": "rename.typed", "data": { "typed": "日本語" }, "correlationId": "2" })
    );
    common::stop_server(&server, vec![ws]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handler_errors_answer_their_message() {
    let server = server().await;
    let mut ws = server.connect().await;
    let reply = request(
        &mut ws,
        json!({ "type": "fail", "data": "x", "correlationId": "f" }),
    )
    .await;
    assert_eq!(reply, error_reply("fail", r#"it broke: "x""#, "f"));
    let reply = request(&mut ws, json!({ "type": "fail" })).await;
    let id = generated_id(&reply);
    assert_eq!(reply, error_reply("fail", "it broke: null", &id));
    // The connection carries on.
    let reply = request(
        &mut ws,
        json!({ "type": "echo", "data": "after", "correlationId": "e" }),
    )
    .await;
    assert_eq!(
        reply,
        json!({ "type": "echo", "data": "after", "correlationId": "e" })
    );
    common::stop_server(&server, vec![ws]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handler_panic_answers_an_error_and_the_connection_keeps_working() {
    let server = server().await;
    let mut ws = server.connect().await;
    let mut other = server.connect().await;
    for round in 0..3 {
        let reply = request(&mut ws, json!({ "type": "panic", "correlationId": "p" })).await;
        assert_eq!(reply["type"], json!("panic"), "round {round}: {reply}");
        assert_eq!(reply["data"], Value::Null);
        assert_eq!(reply["correlationId"], json!("p"));
        let error = reply["error"].as_str().expect("an error message");
        assert!(!error.is_empty());
        assert!(
            !error.contains("on purpose"),
            "the panic message is not leaked to the client: {error}"
        );
        let reply = request(
            &mut ws,
            json!({ "type": "echo", "data": round, "correlationId": "e" }),
        )
        .await;
        assert_eq!(
            reply,
            json!({ "type": "echo", "data": round, "correlationId": "e" })
        );
    }
    // The same route without the panic, and other connections, are fine.
    let reply = request(
        &mut ws,
        json!({ "type": "panic", "data": 1, "correlationId": "q" }),
    )
    .await;
    assert_eq!(
        reply,
        json!({ "type": "panic", "data": "no panic", "correlationId": "q" })
    );
    let reply = request(&mut other, json!({ "type": "echo", "data": "other" })).await;
    assert_eq!(reply["data"], json!("other"));
    assert_eq!(server.app().connection_count(), 2);
    common::stop_server(&server, vec![ws, other]).await;
}
