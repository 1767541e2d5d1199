//! The demo's WebSocket side: a socket router with the request/response
//! routes `echo`, `whoami` and `publish`, and a raw message handler that
//! answers the `2` ping and runs the message registry (`room.join`,
//! `room.leave`, `heartbeat`) with the error replies of PROTOCOL.md
//! section 3.

use std::convert::Infallible;
use std::sync::Arc;

use ori::messages::{
    ClientTopic, Definition, DefinitionSchema as _, Heartbeat, JoinRoom, LeaveRoom,
    MessageRegistry, ServerMessage,
};
use ori::router::{SocketContext, SocketRouteBuilder, SocketRouter};
use ori::{Conn, PublishError};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::api::Notification;

/// The data of the `publish` route.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct PublishData {
    /// The room to publish to.
    pub topic: ClientTopic,
    /// The notification text.
    pub message: String,
}

/// The `publish` route: publishes a notification to a room.
pub static PUBLISH: ServerMessage<PublishData> = ServerMessage::define("publish");

/// The demo's socket router.
pub(crate) struct DemoRouter;

impl SocketRouter for DemoRouter {
    type State = ();

    fn configure(&self, r: &mut SocketRouteBuilder<Self>) {
        r.on("echo", Self::echo)
            .on("whoami", Self::whoami)
            .on_typed(PUBLISH, Self::publish);
    }
}

impl DemoRouter {
    async fn echo(self: Arc<Self>, ctx: SocketContext<()>) -> Result<Value, Infallible> {
        Ok(ctx.data().clone())
    }

    async fn whoami(self: Arc<Self>, ctx: SocketContext<()>) -> Result<Value, Infallible> {
        Ok(json!({ "socketId": ctx.socket_id().to_string() }))
    }

    async fn publish(
        self: Arc<Self>,
        ctx: SocketContext<()>,
        data: PublishData,
    ) -> Result<Value, PublishError> {
        let payload = Notification::new(&data.message, ctx.correlation_id()).to_json();
        ctx.socket().publish(data.topic.topic(), payload).await?;
        Ok(json!({ "published": true }))
    }
}

/// The schemas of the typed routes of [`DemoRouter`] (its untyped routes,
/// `echo` and `whoami`, accept any data), by name. Keep in step with
/// `configure`.
pub(crate) fn route_schemas() -> impl Iterator<Item = (String, Value)> {
    [(
        PUBLISH.name().to_owned(),
        PUBLISH
            .schema()
            .expect("the publish schema compiles")
            .json()
            .clone(),
    )]
    .into_iter()
}

/// The message registry (PROTOCOL.md section 2), after the router; the
/// server answers the `2` ping itself, and binary frames have no meaning
/// in the demo's protocol (no raw handler: they are ignored).
pub(crate) fn registry() -> MessageRegistry {
    MessageRegistry::new()
        .on(JoinRoom, |ws: Conn, data| async move {
            match data.recovery() {
                // Positions or a resume: the reply and any replay are
                // queued by the join itself (PROTOCOL.md section 8).
                Some(recovery) => ws.join(data.room.topic(), &recovery).await.map(|_| ()),
                None => ws.subscribe(data.room.topic()).map(|_| ()),
            }
        })
        .on(LeaveRoom, |ws: Conn, data| async move {
            ws.unsubscribe(data.room.topic())
        })
        .on(Heartbeat, |ws: Conn, _| async move {
            ws.send(json!({ "type": "heartbeat", "timestamp": ori::now_ms() }).to_string());
        })
}
