//! Typed emit (PROTOCOL.md section 5): `emit(&DEF, topic, &data)` validates
//! the data against the definition's schema, then publishes
//! `{"name","data","timestamp"}` to the topic's subscribers. Invalid data is
//! `PublishError::Validation` (`Validation failed: /field: ...`) and nothing
//! is published. The same through a custom emitter and an HTTP controller.

use crate::common;

use std::sync::Arc;

use common::{command_handlers, metric, subscribe};
use ori::messages::ServerMessage;
use ori::testing::{self, Received, TestServer, TestSocket};
use ori::{
    Controller, Emitter, HttpError, Json, Ori, PublishError, RequestContext, RouteBuilder,
    SocketEmitter, StatusCode,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
struct Score {
    #[schemars(length(min = 1, max = 32))]
    team: String,
    #[schemars(range(min = 0, max = 100))]
    points: u32,
}

static SCORE_CHANGED: ServerMessage<Score> = ServerMessage::define("score.changed");

fn score(team: &str, points: u32) -> Score {
    Score {
        team: team.into(),
        points,
    }
}

/// Receives an envelope and checks it against `data`, with a timestamp
/// taken between `before` and now.
async fn expect_envelope(ws: &mut TestSocket, name: &str, data: Value, before: u64) {
    let text = ws.recv_text().await;
    let envelope: Value = serde_json::from_str(&text).unwrap();
    let object = envelope.as_object().expect("an object");
    let mut keys: Vec<&str> = object.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["data", "name", "timestamp"], "{text}");
    assert_eq!(envelope["name"], json!(name));
    assert_eq!(envelope["data"], data);
    let ts = envelope["timestamp"].as_u64().expect("integer unix ms");
    assert!(
        (before..=ori::now_ms()).contains(&ts),
        "timestamp {ts} not in [{before}, now]"
    );
}

/// Publishes a plain marker and asserts it is the next frame: whatever was
/// emitted before it and did not arrive was never published.
async fn expect_nothing_before_marker<E: Emitter>(
    server: &TestServer<E>,
    ws: &mut TestSocket,
    topic: &str,
) {
    server
        .app()
        .socket()
        .publish(topic, "marker")
        .await
        .unwrap();
    assert_eq!(ws.recv().await, Received::Text("marker".into()));
}

fn assert_validation(err: PublishError, whys: &[&str]) {
    let text = err.to_string();
    assert!(text.starts_with("Validation failed: /"), "{text}");
    assert_eq!(text, format!("Validation failed: {}", whys.join(", ")));
    assert!(matches!(err, PublishError::Validation(_)), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribers_receive_name_data_and_timestamp() {
    let server = testing::spawn(Ori::create().websocket().on_websocket(command_handlers())).await;
    let mut fan = server.connect().await;
    let mut other = server.connect().await;
    subscribe(&mut fan, "scores").await;
    subscribe(&mut other, "elsewhere").await;
    let before = ori::now_ms();
    server
        .app()
        .socket()
        .emit(&SCORE_CHANGED, "scores", &score("red", 3))
        .await
        .unwrap();
    expect_envelope(
        &mut fan,
        "score.changed",
        json!({ "team": "red", "points": 3 }),
        before,
    )
    .await;
    // The bounds are inclusive.
    for s in [
        score("b", 0),
        score(&"t".repeat(32), 100),
        score("日本🙂", 7),
    ] {
        let before = ori::now_ms();
        server
            .app()
            .socket()
            .emit(&SCORE_CHANGED, "scores", &s)
            .await
            .unwrap();
        expect_envelope(
            &mut fan,
            "score.changed",
            serde_json::to_value(&s).unwrap(),
            before,
        )
        .await;
    }
    // Only subscribers of the topic get it.
    expect_nothing_before_marker(&server, &mut other, "elsewhere").await;
    common::stop_server(&server, vec![fan, other]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_data_is_a_validation_error_and_nothing_is_published() {
    let server = testing::spawn(Ori::create().websocket().on_websocket(command_handlers())).await;
    let mut fan = server.connect().await;
    subscribe(&mut fan, "scores").await;
    let emitter = server.app().socket();
    let publishes = metric(emitter, "ori_publishes_total");
    let cases: Vec<(Score, Vec<&str>)> = vec![
        (score("", 3), vec!["/team: must be at least 1 character"]),
        (
            score(&"x".repeat(33), 3),
            vec!["/team: must be at most 32 characters"],
        ),
        (score("red", 101), vec!["/points: must be at most 100"]),
        (
            score("", 1000),
            vec![
                "/points: must be at most 100",
                "/team: must be at least 1 character",
            ],
        ),
    ];
    for (data, whys) in cases {
        let err = emitter
            .emit(&SCORE_CHANGED, "scores", &data)
            .await
            .expect_err("invalid data is refused");
        assert_validation(err, &whys);
    }
    assert_eq!(metric(emitter, "ori_publishes_total"), publishes);
    expect_nothing_before_marker(&server, &mut fan, "scores").await;

    // A bad topic is refused too, after valid data.
    let err = emitter
        .emit(&SCORE_CHANGED, "bad topic", &score("red", 1))
        .await
        .expect_err("bad topic");
    assert!(matches!(err, PublishError::InvalidTopic { .. }), "{err:?}");
    expect_nothing_before_marker(&server, &mut fan, "scores").await;
    common::stop_server(&server, vec![fan]).await;
}

/// A custom emitter whose domain method emits the typed message.
#[derive(Clone)]
struct ScoreBoard(SocketEmitter);

impl Emitter for ScoreBoard {
    fn from_socket_emitter(base: SocketEmitter) -> Self {
        Self(base)
    }
    fn socket_emitter(&self) -> &SocketEmitter {
        &self.0
    }
}

impl ScoreBoard {
    async fn score_changed(&self, game: &str, score: &Score) -> Result<(), PublishError> {
        self.socket_emitter()
            .emit(&SCORE_CHANGED, format!("game:{game}"), score)
            .await
    }
}

/// `POST /api/games/:game/score` with a `Score` body.
struct ScoreController;

impl Controller<ScoreBoard> for ScoreController {
    fn configure(&self, r: &mut RouteBuilder<Self, ScoreBoard>) {
        r.post("/games/:game/score", Self::post);
    }
}

impl ScoreController {
    async fn post(
        self: Arc<Self>,
        mut ctx: RequestContext<ScoreBoard>,
    ) -> Result<Json<Value>, HttpError> {
        let game = ctx.param("game").unwrap_or_default().to_owned();
        let score: Score = ctx.json().await?;
        ctx.app().socket().score_changed(&game, &score).await?;
        Ok(Json(json!({ "sent": true })))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_custom_emitter_validates_the_same_way() {
    let server = testing::spawn(
        Ori::with_emitter::<ScoreBoard>()
            .websocket()
            .on_websocket(command_handlers())
            .controller("/api", ScoreController),
    )
    .await;
    let mut fan = server.connect().await;
    subscribe(&mut fan, "game:7").await;
    let board = server.app().socket();

    let before = ori::now_ms();
    board.score_changed("7", &score("blue", 9)).await.unwrap();
    expect_envelope(
        &mut fan,
        "score.changed",
        json!({ "team": "blue", "points": 9 }),
        before,
    )
    .await;

    let err = board
        .score_changed("7", &score("", 9))
        .await
        .expect_err("empty team");
    assert_validation(err, &["/team: must be at least 1 character"]);
    expect_nothing_before_marker(&server, &mut fan, "game:7").await;

    // Through HTTP: invalid data is a 400 naming the field; nothing published.
    let resp = server
        .post_json(
            "/api/games/7/score",
            &json!({ "team": "green", "points": 101 }),
        )
        .await;
    assert_eq!(resp.status, StatusCode::BAD_REQUEST, "{}", resp.text());
    let error = resp.json()["error"].as_str().unwrap_or_default().to_owned();
    assert_eq!(error, "Validation failed: /points: must be at most 100");
    expect_nothing_before_marker(&server, &mut fan, "game:7").await;

    let before = ori::now_ms();
    let resp = server
        .post_json(
            "/api/games/7/score",
            &json!({ "team": "green", "points": 100 }),
        )
        .await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.text());
    assert_eq!(resp.json(), json!({ "sent": true }));
    expect_envelope(
        &mut fan,
        "score.changed",
        json!({ "team": "green", "points": 100 }),
        before,
    )
    .await;
    common::stop_server(&server, vec![fan]).await;
}
