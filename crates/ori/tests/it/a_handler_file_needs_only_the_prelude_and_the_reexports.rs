//! A handler file written against `ori::prelude::*` and Ori's re-exports
//! alone, driven over loopback sockets: a custom emitter's domain method
//! calls `publish` (the `Emitter` trait comes with the prelude), message
//! data derives `ori::schemars::JsonSchema` (no `schemars` import) and is
//! validated by a typed emit, `Value` and `json!` come from
//! `ori::serde_json`, and the app stamps its own messages with
//! `ori::now_ms()`, the clock of the server's envelopes.

use std::sync::Arc;

use ori::prelude::*;
use ori::serde_json::{json, Value};
use ori::testing::{self, TestServer};
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize, ori::schemars::JsonSchema)]
#[schemars(crate = "ori::schemars")]
struct Goal {
    #[schemars(length(min = 1, max = 16))]
    team: String,
    minute: u8,
}

static GOAL: ServerMessage<Goal> = ServerMessage::define("match.goal");

#[derive(Clone)]
struct MatchEmitter(SocketEmitter);

impl Emitter for MatchEmitter {
    fn from_socket_emitter(base: SocketEmitter) -> Self {
        Self(base)
    }
    fn socket_emitter(&self) -> &SocketEmitter {
        &self.0
    }
}

impl MatchEmitter {
    /// `{"type": "match.note", "note", "timestamp"}` to `match`.
    async fn note(&self, note: &str) -> Result<(), PublishError> {
        let body = json!({ "type": "match.note", "note": note, "timestamp": ori::now_ms() });
        self.publish("match", body.to_string()).await
    }
}

/// `POST /api/goal`: the typed emit, then a note through the app's emitter.
struct MatchController;

impl Controller<MatchEmitter> for MatchController {
    fn configure(&self, r: &mut RouteBuilder<Self, MatchEmitter>) {
        r.post("/goal", Self::goal);
    }
}

impl MatchController {
    async fn goal(
        self: Arc<Self>,
        mut ctx: RequestContext<MatchEmitter>,
    ) -> Result<Json<Value>, HttpError> {
        let goal: Goal = ctx.json().await?;
        ctx.socket().emit(&GOAL, "match", &goal).await?;
        let note = format!("{} scored at {}'", goal.team, goal.minute);
        ctx.app().socket().note(&note).await?;
        Ok(Json(json!({ "sent": true })))
    }
}

async fn server() -> TestServer<MatchEmitter> {
    testing::spawn(
        Ori::with_emitter::<MatchEmitter>()
            .websocket()
            .on_websocket(
                Handlers::new()
                    .on_open(|ws: Conn<(), MatchEmitter>| async move { ws.subscribe("match") }),
            )
            .controller("/api", MatchController),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_prelude_the_schemars_derive_and_now_ms_serve_a_subscriber() {
    let server = server().await;
    let mut ws = server.connect().await;
    let before = ori::now_ms();
    let resp = server
        .post_json("/api/goal", &json!({ "team": "red", "minute": 17 }))
        .await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.text());

    let envelope = ws.recv_json().await;
    assert_eq!(envelope["name"], "match.goal");
    assert_eq!(envelope["data"], json!({ "team": "red", "minute": 17 }));
    let note = ws.recv_json().await;
    assert_eq!(note["note"], "red scored at 17'");
    // Both clocks are one: the server's envelope is stamped no later than
    // the note stamped after it, and neither before the request.
    let (sent, noted) = (
        envelope["timestamp"].as_u64().unwrap(),
        note["timestamp"].as_u64().unwrap(),
    );
    assert!(before <= sent && sent <= noted && noted <= ori::now_ms());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_derived_schema_refuses_an_empty_team_and_nothing_is_published() {
    let server = server().await;
    let mut ws = server.connect().await;
    let resp = server
        .post_json("/api/goal", &json!({ "team": "", "minute": 90 }))
        .await;
    assert_eq!(resp.status, StatusCode::BAD_REQUEST, "{}", resp.text());
    let error = resp.json()["error"].as_str().unwrap_or_default().to_owned();
    assert!(error.starts_with("Validation failed: /team"), "{error}");
    // The first thing the subscriber gets is the next, valid goal.
    let resp = server
        .post_json("/api/goal", &json!({ "team": "blue", "minute": 91 }))
        .await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.text());
    assert_eq!(ws.recv_json().await["data"]["team"], "blue");
    server.stop().await;
}
