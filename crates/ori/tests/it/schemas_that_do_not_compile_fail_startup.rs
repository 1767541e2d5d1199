//! A message schema that does not compile is never an open door: a
//! registry checked with `Ori::message_registry` and a socket router
//! (`on_typed`, `on_with_schema`) fail `listen` with `BuildError::Schema`
//! naming the message type and the reason; an unchecked registry refuses
//! every message of that type; a typed emit fails with
//! `PublishError::Schema` (HTTP 500 through a controller) and publishes
//! nothing.

use crate::common;

use std::borrow::Cow;
use std::sync::Arc;

use common::{command_handlers, subscribe};
use ori::messages::{Heartbeat, MessageRegistry, Schema, ServerMessage};
use ori::router::{SocketContext, SocketRouteBuilder, SocketRouter};
use ori::testing::{self, Received};
use ori::{
    BuildError, Conn, Controller, Error, Handlers, HttpError, Json, Message, Ori, PublishError,
    RequestContext, RouteBuilder,
};
use schemars::{JsonSchema, SchemaGenerator};
use serde::{Deserialize, Serialize};
use serde_json::json;

/// A derived schema whose `pattern` is no regular expression.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
struct BadPattern {
    #[schemars(regex(pattern = "("))]
    code: String,
}

/// A hand-written schema whose `$ref` points nowhere.
#[derive(Debug, Serialize, Deserialize)]
struct Dangling {
    n: u32,
}

impl JsonSchema for Dangling {
    fn schema_name() -> Cow<'static, str> {
        "Dangling".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "object",
            "properties": { "n": { "$ref": "#/$defs/Nowhere" } }
        })
    }
}

static BAD_PATTERN: ServerMessage<BadPattern> = ServerMessage::define("bad.pattern");
static DANGLING: ServerMessage<Dangling> = ServerMessage::define("dangling");

fn registry() -> MessageRegistry {
    MessageRegistry::new()
        .on(Heartbeat, |ws: Conn, _| async move {
            ws.send(r#"{"type":"heartbeat"}"#);
        })
        .on(BAD_PATTERN, |ws: Conn, _| async move {
            ws.send("the handler of bad.pattern ran");
        })
        .on(DANGLING, |ws: Conn, _| async move {
            ws.send("the handler of dangling ran");
        })
}

fn handlers(registry: Arc<MessageRegistry>) -> Handlers {
    Handlers::new().on_message(move |ws: Conn, msg: Message| {
        let registry = registry.clone();
        async move {
            let Some(text) = msg.as_text() else { return };
            if let Err(e) = registry.handle_text(&ws, text).await {
                ws.send(e.to_reply());
            }
        }
    })
}

/// `result` failed with the schema error of `kind`, whose text names the
/// type and contains `why`.
fn assert_schema_error<T>(result: Result<T, Error>, kind: &str, why: &str) {
    match result {
        Err(Error::Build(e @ BuildError::Schema { .. })) => {
            let BuildError::Schema { message_type, .. } = &e else {
                unreachable!()
            };
            assert_eq!(message_type, kind);
            let text = e.to_string();
            assert!(
                text.starts_with(&format!("message type {kind:?}: invalid schema: ")),
                "{text}"
            );
            assert!(text.contains(why), "{text}");
        }
        Err(other) => panic!("expected BuildError::Schema for {kind:?}, got {other:?}"),
        Ok(_) => panic!("listen must fail on the schema of {kind:?}"),
    }
}

#[test]
fn the_schema_errors_name_the_construct() {
    let err = Schema::of::<BadPattern>().unwrap_err().to_string();
    assert_eq!(
        err,
        r#"invalid schema: "(" is not a "regex" (at /properties/code/pattern)"#
    );
    let err = Schema::of::<Dangling>().unwrap_err().to_string();
    assert!(err.contains("/$defs/Nowhere"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checked_registry_with_a_bad_schema_fails_listen() {
    assert!(registry().check().is_err());
    let result = Ori::create()
        .websocket()
        .message_registry(registry())
        .listen("127.0.0.1:0")
        .await;
    // The first type registered with a bad schema is named.
    assert_schema_error(result, "bad.pattern", r#""(" is not a "regex""#);

    let only_dangling = MessageRegistry::<()>::new().on(DANGLING, |_ws: Conn, _| async {});
    let result = Ori::create()
        .websocket()
        .message_registry(only_dangling)
        .listen("127.0.0.1:0")
        .await;
    assert_schema_error(result, "dangling", "/$defs/Nowhere");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unchecked_registry_refuses_every_message_of_that_type() {
    let registry = Arc::new(registry());
    // Good schemas are served; the bad ones are left out.
    let schemas = registry.schemas();
    assert!(schemas.contains_key("heartbeat"));
    assert!(!schemas.contains_key("bad.pattern"));
    let server = testing::spawn(Ori::create().websocket().on_websocket(handlers(registry))).await;
    let mut ws = server.connect().await;
    for frame in [
        json!({ "type": "bad.pattern", "code": "x" }),
        json!({ "type": "bad.pattern" }),
    ] {
        ws.send_json(&frame).await;
        let reply = ws.recv_json().await;
        assert_eq!(reply["type"], "error");
        let message = reply["message"].as_str().unwrap();
        assert!(
            message.starts_with(r#"Cannot validate message type "bad.pattern": invalid schema: "#),
            "{message}"
        );
    }
    ws.send_json(&json!({ "type": "dangling", "n": 1 })).await;
    let reply = ws.recv_json().await;
    assert!(
        reply["message"]
            .as_str()
            .unwrap()
            .starts_with(r#"Cannot validate message type "dangling""#),
        "{reply}"
    );
    // The other types are unaffected.
    ws.send_json(&json!({ "type": "heartbeat" })).await;
    assert_eq!(ws.recv_json().await, json!({ "type": "heartbeat" }));
    common::stop_server(&server, vec![ws]).await;
}

struct TypedRoute;

impl SocketRouter for TypedRoute {
    type State = ();

    fn configure(&self, r: &mut SocketRouteBuilder<Self>) {
        r.on("fine", |_: Arc<Self>, _ctx: SocketContext<()>| async move {
            Ok::<_, String>("fine")
        })
        .on_typed(
            BAD_PATTERN,
            |_: Arc<Self>, _ctx: SocketContext<()>, _data| async move { Ok::<_, String>(()) },
        );
    }
}

struct SchemaRoute;

impl SocketRouter for SchemaRoute {
    type State = ();

    fn configure(&self, r: &mut SocketRouteBuilder<Self>) {
        r.on_with_schema(
            "dangling",
            |_: Arc<Self>, _ctx: SocketContext<()>| async move { Ok::<_, String>(()) },
            Schema::of::<Dangling>(),
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_router_route_with_a_bad_schema_fails_listen() {
    let result = Ori::create()
        .websocket()
        .socket_router(TypedRoute)
        .listen("127.0.0.1:0")
        .await;
    assert_schema_error(result, "bad.pattern", r#""(" is not a "regex""#);
    let result = Ori::create()
        .websocket()
        .socket_router(SchemaRoute)
        .into_router()
        .await;
    assert_schema_error(result, "dangling", "/$defs/Nowhere");
}

/// `POST /api/emit` emits a `bad.pattern` message to `room`.
struct Emit;

impl Controller for Emit {
    fn configure(&self, r: &mut RouteBuilder<Self>) {
        r.post("/emit", Self::emit);
    }
}

impl Emit {
    async fn emit(
        self: Arc<Self>,
        ctx: RequestContext,
    ) -> Result<Json<serde_json::Value>, HttpError> {
        let data = BadPattern { code: "x".into() };
        ctx.socket().emit(&BAD_PATTERN, "room", &data).await?;
        Ok(Json(json!({ "sent": true })))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_typed_emit_with_a_bad_schema_fails_and_publishes_nothing() {
    let server = testing::spawn(
        Ori::create()
            .websocket()
            .on_websocket(command_handlers())
            .controller("/api", Emit),
    )
    .await;
    let mut ws = server.connect().await;
    subscribe(&mut ws, "room").await;
    let err = server
        .app()
        .socket()
        .emit(&BAD_PATTERN, "room", &BadPattern { code: "x".into() })
        .await
        .unwrap_err();
    match &err {
        PublishError::Schema {
            message_type,
            error,
        } => {
            assert_eq!(message_type, "bad.pattern");
            assert!(error.to_string().contains("regex"), "{error}");
        }
        other => panic!("expected PublishError::Schema, got {other:?}"),
    }
    let res = server.post_json("/api/emit", &json!({})).await;
    assert_eq!(res.status, 500, "{}", res.text());
    assert!(res.text().contains("bad.pattern"), "{}", res.text());
    // Nothing reached the subscriber: the next frame is the marker.
    server
        .app()
        .socket()
        .publish("room", "marker")
        .await
        .unwrap();
    assert_eq!(ws.recv().await, Received::Text("marker".into()));
    common::stop_server(&server, vec![ws]).await;
}
