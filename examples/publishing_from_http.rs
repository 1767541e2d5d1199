//! Publishing from HTTP handlers: every client joins `notifications` on
//! open; `POST /api/notify/:topic` with `{"message": "..."}` publishes to a
//! topic through the request-bound emitter. The handler takes axum-style
//! extractors; `GET /api/stats` shows the `RequestContext` style beside it.
//!
//! ```sh
//! cargo run --example publishing_from_http
//! curl -X POST -H 'Content-Type: application/json' localhost:3000/api/notify/notifications -d '{"message":"hello"}'
//! ```

use std::sync::Arc;

use ori::extract::Path;
use ori::{
    Conn, Controller, Handlers, HttpError, Json, Ori, RequestContext, RequestEmitter, RouteBuilder,
};
use serde::Deserialize;
use serde_json::{json, Value};

struct NotificationController;

#[derive(Deserialize)]
struct Notify {
    message: String,
}

impl Controller for NotificationController {
    fn configure(&self, r: &mut RouteBuilder<Self>) {
        r.post("/notify/:topic", Self::notify)
            .get("/stats", Self::stats);
    }
}

impl NotificationController {
    async fn notify(
        self: Arc<Self>,
        Path(topic): Path<String>,
        socket: RequestEmitter,
        Json(body): Json<Notify>, // 400 on malformed JSON, 413 when too big
    ) -> Result<Json<Value>, HttpError> {
        // Publish to all subscribers of the topic.
        let payload = json!({
            "type": "notification",
            "message": body.message,
            "timestamp": ori::now_ms(),
            "correlationId": socket.correlation_id(),
        });
        socket.publish(topic, payload.to_string()).await?; // bad topic: 400

        Ok(Json(json!({ "sent": true })))
    }

    /// The whole request in one value, the other way to write a handler.
    async fn stats(self: Arc<Self>, ctx: RequestContext) -> Json<Value> {
        Json(json!({
            "connections": ctx.socket().connection_count(),
            "correlationId": ctx.correlation_id(),
        }))
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
        .on_websocket(
            Handlers::new().on_open(|ws: Conn| async move { ws.subscribe("notifications") }),
        )
        .controller("/api", NotificationController)
        .listen(port)
        .await?;

    println!("listening on http://localhost:{}", app.port());
    tokio::signal::ctrl_c().await?;
    app.stop().await;
    Ok(())
}
