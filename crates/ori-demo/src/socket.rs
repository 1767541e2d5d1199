//! The demo's WebSocket message handler: answers pings, serves the three
//! router routes with the request/response format, and runs the control
//! messages of the registry.

use ori::{Conn, Message, SocketEmitter};
use serde::Serialize;
use serde_json::{json, Value};

use crate::api::Notification;
use crate::protocol::{classify, client_topic, ControlMessage, Inbound, RouteRequest};

#[derive(Serialize)]
struct Reply<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    data: Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    #[serde(rename = "correlationId")]
    correlation_id: &'a str,
}

fn error_frame(message: &str) -> String {
    json!({ "type": "error", "message": message }).to_string()
}

/// Handles one inbound message.
pub(crate) async fn on_message(ws: Conn, msg: Message) {
    // Binary frames have no meaning in the demo's protocol.
    let Some(text) = msg.as_text() else {
        return;
    };
    match classify(text) {
        Inbound::Ping => {
            ws.send("3");
        }
        Inbound::Error(message) => {
            ws.send(error_frame(&message));
        }
        Inbound::Control(ControlMessage::Join(topic)) => {
            if let Err(e) = ws.subscribe(&topic) {
                ws.send(error_frame(&format!("Validation failed: /room: {e}")));
            }
        }
        Inbound::Control(ControlMessage::Leave(topic)) => {
            if let Err(e) = ws.unsubscribe(&topic) {
                ws.send(error_frame(&format!("Validation failed: /room: {e}")));
            }
        }
        Inbound::Control(ControlMessage::Heartbeat) => {
            ws.send(json!({ "type": "heartbeat", "timestamp": crate::now_ms() }).to_string());
        }
        Inbound::Route(req) => {
            let result = route(&ws, &req).await;
            let (data, error) = match result {
                Ok(data) => (data, None),
                Err(e) => (Value::Null, Some(e)),
            };
            let reply = Reply {
                kind: &req.route,
                data,
                error,
                correlation_id: &req.correlation_id,
            };
            if let Ok(text) = serde_json::to_string(&reply) {
                ws.send(text);
            }
        }
    }
}

async fn route(ws: &Conn, req: &RouteRequest) -> Result<Value, String> {
    match req.route.as_str() {
        "echo" => Ok(req.data.clone()),
        "whoami" => Ok(json!({ "socketId": ws.id().to_string() })),
        "publish" => publish(ws.emitter(), &req.data, &req.correlation_id).await,
        other => Err(format!("Unknown route: {other}")),
    }
}

async fn publish(
    emitter: &SocketEmitter,
    data: &Value,
    correlation_id: &str,
) -> Result<Value, String> {
    let Value::Object(fields) = data else {
        return Err("Validation failed: expected an object".into());
    };
    let topic = client_topic(fields, "topic");
    let message = match fields.get("message") {
        Some(Value::String(s)) => Ok(s.as_str()),
        Some(_) => Err("/message: must be a string".to_owned()),
        None => Err("/message: is required".to_owned()),
    };
    let (topic, message) = match (topic, message) {
        (Ok(t), Ok(m)) => (t, m),
        (Err(t), Ok(_)) => return Err(t),
        (Ok(_), Err(m)) => return Err(format!("Validation failed: {m}")),
        (Err(t), Err(m)) => return Err(format!("{t}, {m}")),
    };
    let payload = Notification::new(message, correlation_id).to_json();
    emitter
        .publish(&topic, payload)
        .await
        .map_err(|e| e.to_string())?;
    Ok(json!({ "published": true }))
}
