//! Socket routers: a connection guard authenticates once per connection and
//! stores typed state; a rate-limit guard runs before every message; the
//! handlers reply through the request/response format with the client's
//! correlation id; the router gets its service at construction; the close
//! handler cleans up with the guard's state and the app's service.
//!
//! ```sh
//! cargo run --example socket_router
//! # connect with ?token=alice, then send:
//! #   {"type":"heartbeat","data":{"teamIds":["bob"]},"correlationId":"1"}
//! ```

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use ori::messages::Schema;
use ori::router::{
    BoxError, ConnectionGuard, GuardContext, RateLimit, SocketContext, SocketRouteBuilder,
    SocketRouter,
};
use ori::{Conn, Emitter, Handlers, Ori, WsOptions};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{json, Value};

/// Who is online, and when they were last seen (unix ms).
#[derive(Default)]
struct PresenceService {
    seen: Mutex<HashMap<String, u64>>,
}

impl PresenceService {
    fn update_presence(&self, user: &str) {
        self.seen
            .lock()
            .unwrap()
            .insert(user.to_owned(), ori::now_ms());
    }

    fn remove(&self, user: &str) {
        self.seen.lock().unwrap().remove(user);
    }

    fn batch_presence(&self, users: &[String]) -> Value {
        let seen = self.seen.lock().unwrap();
        users
            .iter()
            .map(|u| (u.clone(), json!(seen.get(u))))
            .collect::<serde_json::Map<_, _>>()
            .into()
    }
}

/// State written by the connection guard, read by every handler.
#[derive(Default)]
struct AuthState {
    user: String,
}

/// Authenticates the token the upgrade handler kept as user data.
struct WebSocketAuthGuard;

// Generic over the app's emitter, so any app can use it.
impl<E: Emitter> ConnectionGuard<AuthState, Option<String>, E> for WebSocketAuthGuard {
    async fn can_activate(
        &self,
        ctx: GuardContext<AuthState, Option<String>, E>,
    ) -> Result<bool, BoxError> {
        let Some(token) = ctx.user_data().clone() else {
            return Ok(false); // closes with 1008
        };
        // Stands in for verifying a real token.
        ctx.set(AuthState { user: token });
        Ok(true)
    }
}

#[derive(Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
struct HeartbeatData {
    team_ids: Option<Vec<String>>,
}

struct PresenceRouter {
    presence: Arc<PresenceService>,
}

impl SocketRouter<Option<String>> for PresenceRouter {
    type State = AuthState;

    fn configure(&self, r: &mut SocketRouteBuilder<Self, Option<String>>) {
        r.connection_guard(WebSocketAuthGuard);
        r.guard(RateLimit::per_second(10.0).burst(20));
        r.on_with_schema("heartbeat", Self::heartbeat, Schema::of::<HeartbeatData>());
        r.on("status.update", Self::status_update);
    }
}

impl PresenceRouter {
    async fn heartbeat(
        self: Arc<Self>,
        ctx: SocketContext<AuthState, Option<String>>,
    ) -> Result<Value, BoxError> {
        let user = &ctx.state().user; // set by the connection guard
        self.presence.update_presence(user);
        let data: HeartbeatData = ctx.json()?;
        match data.team_ids {
            Some(team) if !team.is_empty() => {
                Ok(json!({ "success": true, "team": self.presence.batch_presence(&team) }))
            }
            _ => Ok(json!({ "success": true })),
        }
    }

    async fn status_update(
        self: Arc<Self>,
        _ctx: SocketContext<AuthState, Option<String>>,
    ) -> Result<Value, BoxError> {
        Ok(json!({ "updated": true }))
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

    // Keep the token as user data; the connection guard decides.
    let options = WsOptions::new().upgrade(|req| async move { Some(req.query_param("token")) });
    let app = Ori::create()
        .service(PresenceService::default())
        .websocket_options(options)
        .socket_router_with(|ctx| {
            Ok(PresenceRouter {
                presence: ctx.require::<PresenceService>()?,
            })
        })
        // Clean up on disconnect: forget the user and tell the others (a
        // user on two connections is gone when either closes; count the
        // connections per user to do better).
        .on_websocket(Handlers::new().on_close(
            |ws: Conn<Option<String>>, _code, _reason| async move {
                // Set by the guard before the connection opened (the close
                // handler runs only for connections that did).
                let Some(auth) = ws.state::<AuthState>() else {
                    return Ok(());
                };
                if let Some(presence) = ws.app().service::<PresenceService>() {
                    presence.remove(&auth.user);
                }
                let offline = json!({ "type": "user.offline", "userId": auth.user });
                ws.emitter().publish("presence", offline.to_string()).await
            },
        ))
        .listen(port)
        .await?;
    println!("listening on http://localhost:{}", app.port());
    tokio::signal::ctrl_c().await?;
    app.stop().await;
    Ok(())
}
