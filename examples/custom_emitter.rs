//! A custom emitter: an application type wrapping the base emitter with
//! domain methods, reached with full type checking from services
//! (`AppContext<AppSocketEmitter>`) and controllers
//! (`RequestEmitter<AppSocketEmitter>`, which adds the request's
//! correlation id).
//!
//! ```sh
//! cargo run --example custom_emitter
//! # connect with ?account=acme, then:
//! curl -X POST -H 'Content-Type: application/json' localhost:3000/api/incidents -d '{"accountUuid":"acme","title":"DB down"}'
//! curl -X POST -H 'X-Correlation-Id: c-1' localhost:3000/api/accounts/acme/ping
//! ```

use std::sync::Arc;

use ori::extract::Path;
// The prelude brings the `Emitter` trait, whose `publish` the domain
// methods below call.
use ori::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// The application's emitter.
#[derive(Clone)]
pub struct AppSocketEmitter(SocketEmitter);

impl Emitter for AppSocketEmitter {
    fn from_socket_emitter(base: SocketEmitter) -> Self {
        Self(base)
    }

    fn socket_emitter(&self) -> &SocketEmitter {
        &self.0
    }
}

impl AppSocketEmitter {
    /// Publishes `{event, payload, timestamp}` to `account:<uuid>`.
    pub async fn emit_to_account(
        &self,
        account: &str,
        event: &str,
        payload: impl Serialize,
    ) -> Result<(), PublishError> {
        let body = json!({ "event": event, "payload": payload, "timestamp": ori::now_ms() });
        self.publish(format!("account:{account}"), body.to_string())
            .await
    }

    /// Publishes `{event, payload, timestamp}` to `user:<uuid>`.
    pub async fn emit_to_user(
        &self,
        user: &str,
        event: &str,
        payload: impl Serialize,
    ) -> Result<(), PublishError> {
        let body = json!({ "event": event, "payload": payload, "timestamp": ori::now_ms() });
        self.publish(format!("user:{user}"), body.to_string()).await
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CreateIncident {
    account_uuid: String,
    title: String,
}

/// The app's types, named once: connections carry the account they
/// connected for, and reach the custom emitter.
type Ws = Conn<String, AppSocketEmitter>;

/// A service that publishes through the custom emitter.
struct IncidentService {
    ctx: AppContext<AppSocketEmitter>,
}

impl IncidentService {
    async fn create(&self, input: CreateIncident) -> Result<String, PublishError> {
        let incident_uuid = uuid::Uuid::new_v4().to_string();
        // Type-checked: the compiler knows about emit_to_account.
        self.ctx
            .socket()
            .emit_to_account(
                &input.account_uuid,
                "incident.created",
                json!({ "incidentUuid": incident_uuid, "title": input.title }),
            )
            .await?;
        Ok(incident_uuid)
    }
}

struct IncidentController {
    incidents: Arc<IncidentService>,
}

impl Controller<AppSocketEmitter> for IncidentController {
    fn configure(&self, r: &mut RouteBuilder<Self, AppSocketEmitter>) {
        r.post("/incidents", Self::create)
            .post("/accounts/:account/ping", Self::ping);
    }
}

impl IncidentController {
    async fn create(
        self: Arc<Self>,
        Json(input): Json<CreateIncident>,
    ) -> Result<Json<Value>, HttpError> {
        let uuid = self.incidents.create(input).await?;
        Ok(Json(json!({ "created": true, "incidentUuid": uuid })))
    }

    /// The request's emitter: the domain methods and the correlation id.
    async fn ping(
        self: Arc<Self>,
        Path(account): Path<String>,
        socket: RequestEmitter<AppSocketEmitter>,
    ) -> Result<Json<Value>, HttpError> {
        let payload = json!({ "correlationId": socket.correlation_id() });
        socket.emit_to_account(&account, "ping", payload).await?;
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

    let options = WsOptions::new().upgrade(|req| async move { req.query_param("account") });
    let app = Ori::with_emitter::<AppSocketEmitter>()
        .websocket_options(options)
        .on_websocket(Handlers::new().on_open(|ws: Ws| async move {
            ws.subscribe(format!("account:{}", ws.data()))?;
            // The custom emitter, with its domain methods, from a handler.
            let online = json!({ "socket": ws.id().to_string() });
            ws.emitter()
                .emit_to_account(ws.data(), "member.online", online)
                .await?;
            Ok::<_, ori::router::BoxError>(())
        }))
        .service_with(|ctx| Ok(IncidentService { ctx: ctx.clone() }))
        .controller_with("/api", |ctx| {
            Ok(IncidentController {
                incidents: ctx.require::<IncidentService>()?,
            })
        })
        .listen(port)
        .await?;

    println!("listening on http://localhost:{}", app.port());
    tokio::signal::ctrl_c().await?;
    app.stop().await;
    Ok(())
}
