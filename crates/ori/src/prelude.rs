//! What a file of handlers, controllers and routers needs, in one import:
//! `use ori::prelude::*;`. The traits are included, so that methods such as
//! `publish` on an app's own [`Emitter`] type resolve without a
//! `use ori::Emitter`.
//!
//! Message data derives `JsonSchema` from the re-exported
//! [`ori::schemars`](crate::schemars), so an app needs no `schemars`
//! dependency of its own (nor to keep its major version in step): the
//! derive is named by its path and told where the crate is with
//! `#[schemars(crate = "ori::schemars")]`; without that attribute the
//! derived code names a `schemars` crate of the app's own and does not
//! compile without one. `serde`'s derives stay the app's dependency.
//!
//! ```
//! use std::sync::Arc;
//!
//! use ori::prelude::*;
//! use ori::serde_json::{json, Value};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Serialize, Deserialize, ori::schemars::JsonSchema)]
//! #[schemars(crate = "ori::schemars")]
//! struct Score {
//!     #[schemars(length(min = 1))]
//!     team: String,
//!     points: u32,
//! }
//!
//! static SCORE_CHANGED: ServerMessage<Score> = ServerMessage::define("score.changed");
//!
//! struct ScoreController;
//!
//! impl Controller for ScoreController {
//!     fn configure(&self, r: &mut RouteBuilder<Self>) {
//!         r.post("/score", Self::score);
//!     }
//! }
//!
//! impl ScoreController {
//!     async fn score(self: Arc<Self>, mut ctx: RequestContext) -> Result<Json<Value>, HttpError> {
//!         let score: Score = ctx.json().await?;
//!         ctx.socket().emit(&SCORE_CHANGED, "scores", &score).await?;
//!         ctx.socket().publish("log", format!("{} scored", score.team)).await?;
//!         Ok(Json(json!({ "sent": true, "at": ori::now_ms() })))
//!     }
//! }
//!
//! let err = SCORE_CHANGED.schema().unwrap().validate(&json!({"team": "", "points": 1}));
//! assert!(err.is_err(), "an empty team is refused");
//! let _app = Ori::create()
//!     .websocket()
//!     .on_websocket(Handlers::new().on_open(|ws: Conn| async move { ws.subscribe("scores") }))
//!     .controller("/api", ScoreController);
//! ```

pub use crate::messages::{Definition, DefinitionSchema, MessageRegistry, ServerMessage};
pub use crate::router::{
    BoxError, GuardContext, MessageGuardContext, SocketContext, SocketRouteBuilder, SocketRouter,
};
pub use crate::{
    AppContext, AuthRequest, Authenticated, Conn, Controller, Emitter, Handlers, HttpError,
    InProcProvider, IntoResponse, Json, Message, NoWebSocket, Ori, PublishError, RequestContext,
    RequestEmitter, RouteBuilder, SocketEmitter, StatusCode, Upgrade, UpgradeRequest,
    WithWebSocket, WsOptions,
};
