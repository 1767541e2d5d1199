//! Keywords the first validator ignored are enforced, over a real socket
//! through the registry (PROTOCOL.md section 3 replies): `uniqueItems`
//! (schemars writes it for sets), `format` (`email`, `date-time`, `uuid`),
//! `multipleOf`, `not`, `minProperties`, `maxProperties`,
//! `patternProperties` and `if`/`then`/`else` (added with
//! `#[schemars(extend(...))]`), and integral floats for integer fields.
//! Valid data still reaches the handler, parsed.

use crate::common;

use std::collections::{BTreeMap, HashSet};

use ori::messages::{MessageRegistry, ServerMessage};
use ori::testing::{self, TestSocket};
use ori::{Conn, Ori};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
struct Signup {
    #[schemars(email)]
    email: String,
    #[schemars(extend("format" = "date-time"))]
    at: String,
    #[schemars(extend("format" = "uuid"))]
    id: String,
    tags: HashSet<String>,
    #[schemars(extend("multipleOf" = 5))]
    seats: u32,
    #[schemars(extend("not" = { "const": "admin" }))]
    name: String,
    #[schemars(extend("minProperties" = 1, "maxProperties" = 2, "patternProperties" = { "^x-": { "type": "integer" } }))]
    labels: BTreeMap<String, Value>,
}

/// `kind: "team"` needs a `size`; any other kind has at most 3.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[schemars(extend(
    "if" = { "properties": { "kind": { "const": "team" } } },
    "then" = { "required": ["size"] },
    "else" = { "properties": { "size": { "maximum": 3 } } }
))]
struct Plan {
    kind: String,
    size: Option<u32>,
}

static SIGNUP: ServerMessage<Signup> = ServerMessage::define("signup");
static PLAN: ServerMessage<Plan> = ServerMessage::define("plan");

async fn server() -> testing::TestServer {
    let registry = MessageRegistry::new()
        .on(SIGNUP, |ws: Conn, data: Signup| async move {
            ws.send(json!({ "type": "ok", "seats": data.seats }).to_string());
        })
        .on(PLAN, |ws: Conn, data: Plan| async move {
            ws.send(json!({ "type": "ok", "size": data.size }).to_string());
        });
    testing::spawn(Ori::create().websocket().message_registry(registry)).await
}

fn signup() -> Value {
    json!({
        "type": "signup",
        "email": "ann@example.com",
        "at": "2024-06-19T15:22:45Z",
        "id": "67e55044-10b1-426f-9247-bb680e5fe0c8",
        "tags": ["a", "b"],
        "seats": 10,
        "name": "ann",
        "labels": { "x-team": 7 }
    })
}

async fn reply(ws: &mut TestSocket, frame: &Value) -> Value {
    ws.send_json(frame).await;
    ws.recv_json().await
}

async fn expect_refused(ws: &mut TestSocket, frame: &Value, why: &str) {
    assert_eq!(
        reply(ws, frame).await,
        json!({ "type": "error", "message": format!("Validation failed: {why}") }),
        "{frame}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_newly_enforced_keyword_refuses_with_its_reason() {
    let server = server().await;
    let mut ws = server.connect().await;
    assert_eq!(
        reply(&mut ws, &signup()).await,
        json!({ "type": "ok", "seats": 10 })
    );
    for (field, value, why) in [
        ("email", json!("ann"), "/email: must be a valid email"),
        ("at", json!("yesterday"), "/at: must be a valid date-time"),
        ("id", json!("42"), "/id: must be a valid uuid"),
        (
            "tags",
            json!(["a", "a"]),
            "/tags: must not contain duplicate items",
        ),
        ("seats", json!(12), "/seats: must be a multiple of 5"),
        ("seats", json!(10.0), "/seats: must be an integer"),
        (
            "name",
            json!("admin"),
            "/name: must not match the disallowed shape",
        ),
        (
            "labels",
            json!({}),
            "/labels: must have at least 1 property",
        ),
        (
            "labels",
            json!({ "a": 1, "b": 2, "c": 3 }),
            "/labels: must have at most 2 properties",
        ),
        (
            "labels",
            json!({ "x-team": "seven" }),
            "/labels/x-team: must be an integer",
        ),
    ] {
        let mut frame = signup();
        frame[field] = value;
        expect_refused(&mut ws, &frame, why).await;
    }
    // Several at once: each named, joined with commas.
    let mut frame = signup();
    frame["seats"] = json!(3);
    frame["email"] = json!("@");
    expect_refused(
        &mut ws,
        &frame,
        "/email: must be a valid email, /seats: must be a multiple of 5",
    )
    .await;
    common::stop_server(&server, vec![ws]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn if_then_else_applies_the_branch_the_data_selects() {
    let server = server().await;
    let mut ws = server.connect().await;
    let plan = |v: Value| {
        let mut frame = json!({ "type": "plan" });
        frame
            .as_object_mut()
            .unwrap()
            .extend(v.as_object().unwrap().clone());
        frame
    };
    assert_eq!(
        reply(&mut ws, &plan(json!({ "kind": "team", "size": 9 }))).await,
        json!({ "type": "ok", "size": 9 })
    );
    assert_eq!(
        reply(&mut ws, &plan(json!({ "kind": "solo", "size": 1 }))).await,
        json!({ "type": "ok", "size": 1 })
    );
    expect_refused(
        &mut ws,
        &plan(json!({ "kind": "team" })),
        "/size: is required",
    )
    .await;
    expect_refused(
        &mut ws,
        &plan(json!({ "kind": "solo", "size": 4 })),
        "/size: must be at most 3",
    )
    .await;
    common::stop_server(&server, vec![ws]).await;
}
