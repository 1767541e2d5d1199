//! Browser-grade authentication and per-topic authorization: a browser
//! cannot set headers on a WebSocket upgrade, so sockets authenticate in
//! band (`{"type":"auth.authenticate","token":"..."}`) with a credential
//! that lasts 15 minutes and is refreshed on the live socket; every join a
//! client asks for is authorized: `user:<id>` only by that user,
//! `admin-alerts` only by admins, other rooms by anyone.
//!
//! ```sh
//! cargo run --example join_authorization
//! # connect to ws://localhost:3000/ws, then send:
//! #   {"type":"auth.authenticate","token":"bob-token"}
//! #   {"type":"room.join","room":"user:bob"}       -> joined
//! #   {"type":"room.join","room":"user:alice"}     -> Forbidden: user:alice
//! #   {"type":"follow","data":{"topic":"admin-alerts"}} -> error "Forbidden: admin-alerts"
//! # tokens: "alice-token" (admin), "bob-token" (user)
//! ```

use std::sync::Arc;
use std::time::Duration;

use ori::messages::{JoinRoom, LeaveRoom, MessageRegistry};
use ori::router::{SocketContext, SocketRouteBuilder, SocketRouter};
use ori::{AuthRequest, Authenticated, Conn, Handlers, Message, Ori, WsOptions};
use serde_json::{json, Value};

#[derive(Debug, Clone, PartialEq)]
enum Role {
    Admin,
    User,
}

#[derive(Debug, Clone)]
struct User {
    id: String,
    role: Role,
}

/// Stands in for a JWT check or a session lookup.
async fn authenticate(req: AuthRequest<User>) -> Option<Authenticated<User>> {
    let (id, role) = match req.token()? {
        "alice-token" => ("alice", Role::Admin),
        "bob-token" => ("bob", Role::User),
        _ => return None,
    };
    // A refresh must name the user the socket authenticated as.
    if req.conn().is_some_and(|ws| ws.data().id != id) {
        return None;
    }
    let user = User {
        id: id.into(),
        role,
    };
    Some(Authenticated::new(user).expires_in(Duration::from_secs(15 * 60)))
}

/// Who may join what a client asks for.
async fn may_join(ws: Conn<User>, topic: ori::Topic) -> bool {
    let user = ws.data();
    match topic.as_str() {
        "admin-alerts" => user.role == Role::Admin,
        t => t.strip_prefix("user:").is_none_or(|owner| owner == user.id),
    }
}

/// `follow {"topic": "<t>"}`: a request/response join through a router.
struct Follow;

impl SocketRouter<User> for Follow {
    type State = ();
    fn configure(&self, r: &mut SocketRouteBuilder<Self, User>) {
        r.on("follow", Self::follow);
    }
}

impl Follow {
    async fn follow(self: Arc<Self>, ctx: SocketContext<(), User>) -> Result<Value, String> {
        let topic = ctx.data()["topic"].as_str().unwrap_or_default().to_owned();
        // Consults may_join: a refusal is the reply's error "Forbidden: <topic>".
        ctx.subscribe(topic.as_str())
            .await
            .map_err(|e| e.to_string())?;
        Ok(json!({ "following": topic }))
    }
}

fn app() -> Ori<ori::SocketEmitter, ori::WithWebSocket<User>> {
    let options = WsOptions::new()
        .authenticate(authenticate)
        .auth_timeout(Duration::from_secs(5))
        .authorize_join(may_join);
    let registry = Arc::new(
        MessageRegistry::new()
            .on(JoinRoom, |ws: Conn<User>, data| async move {
                ws.subscribe(data.room.topic())
            })
            .on(LeaveRoom, |ws: Conn<User>, data| async move {
                ws.unsubscribe(data.room.topic())
            }),
    );
    Ori::create()
        .websocket_options(options)
        .socket_router(Follow)
        .on_websocket(
            Handlers::new().on_message(move |ws: Conn<User>, msg: Message| {
                let registry = registry.clone();
                async move {
                    let Some(text) = msg.as_text() else { return };
                    if let Err(e) = registry.handle_text(&ws, text).await {
                        ws.send(e.to_reply());
                    }
                }
            }),
        )
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
    let app = app().listen(port).await?;
    println!("listening on http://localhost:{}", app.port());
    tokio::signal::ctrl_c().await?;
    app.stop().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ori::testing::{self, TestSocket};

    async fn login(server: &testing::TestServer, token: &str) -> TestSocket {
        let mut ws = server.connect().await;
        ws.send_json(&json!({"type": "auth.authenticate", "token": token}))
            .await;
        assert_eq!(ws.recv_json().await["name"], "auth.authenticated");
        ws
    }

    #[tokio::test]
    async fn users_join_their_own_rooms_and_admins_the_alerts() {
        let server = testing::spawn(app()).await;
        let mut bob = login(&server, "bob-token").await;
        let mut alice = login(&server, "alice-token").await;
        bob.send_json(&json!({"type": "room.join", "room": "user:alice"}))
            .await;
        assert_eq!(
            bob.recv_json().await,
            json!({"type": "error", "message": "Forbidden: user:alice"})
        );
        bob.send_json(&json!({"type": "follow", "data": {"topic": "admin-alerts"}}))
            .await;
        assert_eq!(bob.recv_json().await["error"], "Forbidden: admin-alerts");
        bob.send_json(&json!({"type": "room.join", "room": "user:bob"}))
            .await;
        alice
            .send_json(&json!({"type": "follow", "data": {"topic": "admin-alerts"}}))
            .await;
        assert_eq!(
            alice.recv_json().await["data"],
            json!({"following": "admin-alerts"})
        );
        let emitter = server.app().socket();
        // Bob's join is in place once his room has a subscriber.
        for _ in 0..500 {
            if emitter.subscriber_count(&"user:bob".parse().unwrap()) == 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        emitter.publish("user:alice", "for alice").await.unwrap();
        emitter.publish("admin-alerts", "alert").await.unwrap();
        emitter.publish("user:bob", "for bob").await.unwrap();
        assert_eq!(alice.recv_text().await, "alert");
        assert_eq!(bob.recv_text().await, "for bob", "nothing of alice's first");
    }
}
