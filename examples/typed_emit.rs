//! Typed emit: an HTTP handler publishes a defined message; the data is
//! validated against the definition's schema first, and subscribers receive
//! `{"name": "...", "data": {...}, "timestamp": ...}`. Invalid data is an
//! error to the caller and nothing is published.
//!
//! ```sh
//! cargo run --example typed_emit
//! # connect to /ws (joins "scores"), then:
//! curl -X POST -H 'Content-Type: application/json' localhost:3000/api/score -d '{"team":"red","points":3}'
//! curl -X POST -H 'Content-Type: application/json' localhost:3000/api/score -d '{"team":"","points":3}'   # 400, nothing published
//! ```

use std::sync::Arc;

use ori::messages::ServerMessage;
use ori::{Conn, Controller, Handlers, HttpError, Json, Ori, RequestContext, RouteBuilder};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

// The schema derive of the `schemars` that Ori re-exports: no `schemars`
// dependency of one's own, no major version to keep in step.
#[derive(Debug, Serialize, Deserialize, ori::schemars::JsonSchema)]
#[schemars(crate = "ori::schemars")]
struct Score {
    #[schemars(length(min = 1, max = 32))]
    team: String,
    #[schemars(range(min = 0, max = 100))]
    points: u32,
}

static SCORE_CHANGED: ServerMessage<Score> = ServerMessage::define("score.changed");

struct ScoreController;

impl Controller for ScoreController {
    fn configure(&self, r: &mut RouteBuilder<Self>) {
        r.post("/score", Self::score);
    }
}

impl ScoreController {
    async fn score(self: Arc<Self>, mut ctx: RequestContext) -> Result<Json<Value>, HttpError> {
        let score: Score = ctx.json().await?;
        // Validation failures become HTTP 400 `Validation failed: /team: ...`.
        ctx.socket().emit(&SCORE_CHANGED, "scores", &score).await?;
        Ok(Json(json!({ "sent": true })))
    }
}

#[tokio::main]
async fn main() -> Result<(), ori::Error> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .init();
    let port = std::env::var("PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(3000);
    let app = Ori::create()
        .websocket()
        .on_websocket(Handlers::new().on_open(|ws: Conn| async move { ws.subscribe("scores") }))
        .controller("/api", ScoreController)
        .listen(port)
        .await?;
    println!("listening on http://localhost:{}", app.port());
    tokio::signal::ctrl_c().await?;
    app.stop().await;
    Ok(())
}
