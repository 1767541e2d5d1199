//! Opinionated message handling: only registered message types are
//! accepted, and their data is validated against the type's schema before
//! a handler sees it. Unknown types, invalid JSON and invalid data get the
//! error replies of PROTOCOL.md section 3.
//!
//! ```sh
//! cargo run --example message_registry
//! # send: {"type":"room.join","room":"lobby"}
//! #       {"type":"status.update","status":"online","lastSeen":1700000000}
//! #       {"type":"status.update","status":"away"}   -> Validation failed: /status: ...
//! ```

use ori::messages::{Heartbeat, JoinRoom, LeaveRoom, MessageRegistry, ServerMessage};
use ori::{Conn, Ori};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

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

static UPDATE_STATUS: ServerMessage<StatusUpdate> = ServerMessage::define("status.update");

fn registry() -> MessageRegistry {
    MessageRegistry::new()
        .on(JoinRoom, |ws: Conn, data| async move {
            ws.subscribe(data.room.topic())
        })
        .on(LeaveRoom, |ws: Conn, data| async move {
            ws.unsubscribe(data.room.topic())
        })
        .on(Heartbeat, |ws: Conn, _| async move {
            ws.send(r#"{"type":"heartbeat"}"#);
        })
        .on(UPDATE_STATUS, |ws: Conn, data: StatusUpdate| async move {
            // data is typed and validated
            let note = serde_json::json!({ "socket": ws.id().to_string(), "status": data.status });
            ws.emitter().publish("presence", note.to_string()).await
        })
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
    // The schema is JSON Schema: publish it for clients and other languages.
    println!("status.update schema: {}", status_schema());

    let app = Ori::create()
        .websocket()
        // Typed, validated messages; a failure is answered
        // {"type":"error","message":"..."}, and the `2` ping `3` by the
        // server. A message type whose schema does not compile, or that a
        // socket router routes too, fails `listen`.
        .message_registry(registry())
        .listen(port)
        .await?;
    println!("listening on http://localhost:{}", app.port());
    tokio::signal::ctrl_c().await?;
    app.stop().await;
    Ok(())
}

fn status_schema() -> String {
    use ori::messages::DefinitionSchema;
    match UPDATE_STATUS.schema() {
        Ok(schema) => schema.json().to_string(),
        Err(e) => e.to_string(),
    }
}
