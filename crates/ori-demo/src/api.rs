//! The demo's HTTP API (PROTOCOL.md section 7).

use std::sync::Arc;

use ori::{Controller, HttpError, Json, RequestContext, RouteBuilder, SocketId, Topic};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// The answer of the publishing routes: `{"sent":true}` (or false).
#[derive(Serialize)]
struct Sent {
    sent: bool,
}

/// The body of the publishing routes.
#[derive(Deserialize)]
struct MessageBody {
    message: String,
}

/// The body of `POST /api/emit/:topic` (the name checked by hand, for its
/// 400's message).
#[derive(Deserialize)]
struct EmitBody {
    name: Option<Value>,
    data: Option<Value>,
}

/// `{"type":"notification",...}` as published to a topic.
#[derive(Serialize)]
pub(crate) struct Notification<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    message: &'a str,
    timestamp: u64,
    #[serde(rename = "correlationId", skip_serializing_if = "Option::is_none")]
    correlation_id: Option<&'a str>,
}

impl<'a> Notification<'a> {
    pub(crate) fn new(message: &'a str, correlation_id: &'a str) -> Self {
        Self::of_kind("notification", message, Some(correlation_id))
    }

    fn of_kind(kind: &'static str, message: &'a str, correlation_id: Option<&'a str>) -> Self {
        Self {
            kind,
            message,
            timestamp: ori::now_ms(),
            correlation_id,
        }
    }

    pub(crate) fn to_json(&self) -> String {
        // Sized once: the text plus the fixed fields (type, timestamp,
        // a UUID correlation id) and some room for escapes.
        let mut out = Vec::with_capacity(self.message.len() + 128);
        if serde_json::to_writer(&mut out, self).is_err() {
            return String::new();
        }
        String::from_utf8(out).unwrap_or_default()
    }
}

fn topic_param(ctx: &RequestContext, name: &str) -> Result<Topic, HttpError> {
    let raw = ctx.param(name).unwrap_or_default();
    Topic::new(raw).map_err(|e| HttpError::bad_request(format!("Invalid topic: {e}")))
}

/// `/api/*`. With a token, the publishing routes require it as
/// `Authorization: Bearer <token>` (PROTOCOL.md section 7).
pub(crate) struct Api {
    pub(crate) token: Option<Arc<str>>,
}

impl Controller for Api {
    fn configure(&self, r: &mut RouteBuilder<Self>) {
        r.post("/notify/:topic", Self::notify)
            .post("/broadcast", Self::broadcast)
            .post("/send/:socketId", Self::send)
            .post("/emit/:topic", Self::emit)
            .get("/topics/:topic", Self::topic)
            .get("/stats", Self::stats)
            .get("/schemas", Self::schemas);
    }
}

impl Api {
    /// The first check of a publishing route (401 before 415, 413, 400).
    fn authorize(&self, ctx: &RequestContext) -> Result<(), HttpError> {
        let Some(expected) = &self.token else {
            return Ok(());
        };
        let given = ctx
            .header("authorization")
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim());
        match given {
            Some(token) if crate::token_matches(token, expected) => Ok(()),
            _ => Err(HttpError::unauthorized("Unauthorized")),
        }
    }

    async fn notify(self: Arc<Self>, mut ctx: RequestContext) -> Result<Json<Sent>, HttpError> {
        self.authorize(&ctx)?;
        let body: MessageBody = ctx.json().await?;
        let topic = topic_param(&ctx, "topic")?;
        if topic.is_reserved() {
            return Err(HttpError::bad_request("Invalid topic: reserved topic"));
        }
        let socket = ctx.socket();
        let payload = Notification::new(&body.message, socket.correlation_id()).to_json();
        socket.publish(topic, payload).await?;
        Ok(Json(Sent { sent: true }))
    }

    async fn broadcast(self: Arc<Self>, mut ctx: RequestContext) -> Result<Json<Value>, HttpError> {
        self.authorize(&ctx)?;
        let body: MessageBody = ctx.json().await?;
        let payload = Notification::of_kind("broadcast", &body.message, None).to_json();
        ctx.socket().broadcast(payload).await?;
        Ok(Json(json!({ "sent": true })))
    }

    async fn send(self: Arc<Self>, mut ctx: RequestContext) -> Result<Json<Value>, HttpError> {
        self.authorize(&ctx)?;
        let body: MessageBody = ctx.json().await?;
        let id: SocketId = ctx
            .param("socketId")
            .unwrap_or_default()
            .parse()
            .map_err(|e| HttpError::bad_request(format!("{e}")))?;
        let payload = Notification::of_kind("direct", &body.message, None).to_json();
        let sent = ctx.socket().send(id, payload).await?;
        Ok(Json(json!({ "sent": sent })))
    }

    /// The typed-emit envelope `{"name","data","timestamp"}` to a topic:
    /// what the original OriJS client's `on(name)` receives.
    async fn emit(self: Arc<Self>, mut ctx: RequestContext) -> Result<Json<Sent>, HttpError> {
        self.authorize(&ctx)?;
        let body: EmitBody = ctx.json().await?;
        let topic = topic_param(&ctx, "topic")?;
        if topic.is_reserved() {
            return Err(HttpError::bad_request("Invalid topic: reserved topic"));
        }
        let name = match body.name {
            Some(Value::String(name)) if (1..=128).contains(&name.chars().count()) => name,
            _ => {
                return Err(HttpError::bad_request(
                    "Invalid name: expected a string of 1 to 128 characters",
                ))
            }
        };
        let envelope = json!({
            "name": name,
            "data": body.data.unwrap_or(Value::Null),
            "timestamp": ori::now_ms(),
        });
        ctx.socket().publish(topic, envelope.to_string()).await?;
        Ok(Json(Sent { sent: true }))
    }

    async fn topic(self: Arc<Self>, ctx: RequestContext) -> Result<Json<Value>, HttpError> {
        let topic = topic_param(&ctx, "topic")?;
        let subscribers = ctx.socket().subscriber_count(&topic);
        Ok(Json(
            json!({ "topic": topic.as_str(), "subscribers": subscribers }),
        ))
    }

    /// The JSON Schema of every client-to-server message's data, by name
    /// ([`crate::message_schemas`]).
    async fn schemas(self: Arc<Self>, _ctx: RequestContext) -> Json<Value> {
        Json(Value::Object(crate::message_schemas()))
    }

    async fn stats(self: Arc<Self>, ctx: RequestContext) -> Json<Value> {
        let socket = ctx.socket();
        let mut stats = json!({ "connections": socket.connection_count() });
        if let Some(m) = socket.hub_metrics() {
            let own = socket.metrics();
            stats["connectionsTotal"] = m.connections_total().into();
            stats["messagesIn"] = own.messages_in().into();
            stats["messagesOut"] = own.messages_out().into();
            stats["publishes"] = m.publishes().into();
            stats["deliveries"] = m.deliveries().into();
            stats["slowConsumerCloses"] = m.slow_consumer_closes().into();
        }
        Json(stats)
    }
}
