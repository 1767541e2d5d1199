//! A benchmark peer: the demo contract's hot subset written the way a first
//! Rust implementation usually is, with axum's WebSocket support
//! (tokio-tungstenite), one unbounded channel and one writer task per
//! connection, and a `RwLock<HashMap<topic, Vec<sender>>>`. Each publish
//! serializes once and sends a `Message` clone to every subscriber.
//!
//! `ori-bench-baseline [port]` prints `listening on http://127.0.0.1:<port>`.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::sync::mpsc::{unbounded_channel, UnboundedSender};

type Topics = Arc<RwLock<HashMap<String, Vec<(u64, UnboundedSender<Message>)>>>>;

#[derive(Clone, Default)]
struct AppState {
    topics: Topics,
    next_id: Arc<std::sync::atomic::AtomicU64>,
}

fn valid_topic(t: &str) -> bool {
    (1..=256).contains(&t.len())
        && !t.starts_with("__")
        && t.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b':' | b'.' | b'-'))
}

async fn ws(upgrade: WebSocketUpgrade, State(state): State<AppState>) -> axum::response::Response {
    upgrade.on_upgrade(move |socket| connection(socket, state))
}

async fn connection(socket: WebSocket, state: AppState) {
    let id = state
        .next_id
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let (mut sink, mut stream) = socket.split();
    let (tx, mut rx) = unbounded_channel::<Message>();
    let writer = tokio::spawn(async move {
        while let Some(m) = rx.recv().await {
            if sink.send(m).await.is_err() {
                break;
            }
        }
    });
    let mut joined = Vec::new();
    while let Some(Ok(msg)) = stream.next().await {
        let Message::Text(text) = msg else { continue };
        if text.as_str() == "2" {
            let _ = tx.send(Message::text("3"));
            continue;
        }
        let Ok(v) = serde_json::from_str::<Value>(&text) else {
            continue;
        };
        let room = v["room"].as_str().unwrap_or_default().to_owned();
        match v["type"].as_str() {
            Some("room.join") if valid_topic(&room) => {
                if let Ok(mut topics) = state.topics.write() {
                    topics
                        .entry(room.clone())
                        .or_default()
                        .push((id, tx.clone()));
                }
                joined.push(room);
            }
            Some("room.leave") => {
                if let Ok(mut topics) = state.topics.write() {
                    if let Some(subs) = topics.get_mut(&room) {
                        subs.retain(|(sid, _)| *sid != id);
                    }
                }
            }
            _ => {}
        }
    }
    if let Ok(mut topics) = state.topics.write() {
        for room in joined {
            if let Some(subs) = topics.get_mut(&room) {
                subs.retain(|(sid, _)| *sid != id);
            }
        }
    }
    writer.abort();
}

async fn notify(
    State(state): State<AppState>,
    Path(topic): Path<String>,
    Json(body): Json<Value>,
) -> Json<Value> {
    let text = json!({
        "type": "notification",
        "message": body["message"],
        "timestamp": std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64),
    })
    .to_string();
    let message = Message::text(text);
    if let Ok(topics) = state.topics.read() {
        if let Some(subs) = topics.get(&topic) {
            for (_, tx) in subs {
                let _ = tx.send(message.clone());
            }
        }
    }
    Json(json!({ "sent": true }))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let port: u16 = std::env::args()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    let app = Router::new()
        .route("/ws", get(ws))
        .route("/api/notify/{topic}", post(notify))
        .with_state(AppState::default());
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    println!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app).await?;
    Ok(())
}
