//! Building routers into one table: connection phases (guards -> state) per
//! router and the handler of each message type, type-erased so the
//! connection task needs no knowledge of router or state types.

use std::any::Any;
use std::collections::HashMap;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex, PoisonError};

use crate::BoxFuture;
use futures_util::FutureExt;
use serde::Serialize;
use serde_json::Value;
use tracing::Instrument;

use super::context::{GuardContext, MessageGuardContext, SocketContext};
use super::guard::{BoxError, ConnectionGuard, MessageGuard, RouteResult};
use super::SocketRouter;
use crate::context::AppContext;
use crate::emitter::Emitter;
use crate::error::BuildError;
use crate::messages::{Definition, DefinitionSchema as _, Schema, SchemaError};
use crate::ws::{Conn, HandlerError};

pub(crate) type State = Arc<dyn Any + Send + Sync>;
type ConnPhase<D> =
    Arc<dyn Fn(Conn<D>) -> BoxFuture<'static, Result<Option<State>, BoxError>> + Send + Sync>;
type RouteFn<D> = Arc<
    dyn Fn(RouteCall<D>, State) -> BoxFuture<'static, Result<Value, HandlerError>> + Send + Sync,
>;

/// One routed message, before guards and validation.
pub(crate) struct RouteCall<D> {
    pub(crate) conn: Conn<D>,
    pub(crate) data: Arc<Value>,
    pub(crate) correlation_id: Arc<str>,
    pub(crate) message_type: Arc<str>,
    pub(crate) span: tracing::Span,
}

struct Route<D> {
    router: usize,
    call: RouteFn<D>,
}

/// Every router of an app.
pub(crate) struct RouterTable<D> {
    phases: Vec<ConnPhase<D>>,
    routes: HashMap<String, Route<D>>,
    /// Every router's state, when each has no data and no drop glue (`()`,
    /// a marker type) and so is the same for every connection (made once,
    /// when the router is added): a connection then keeps none of its own.
    all_shared: Option<Box<[State]>>,
}

impl<D> Default for RouterTable<D> {
    fn default() -> Self {
        Self {
            phases: Vec::new(),
            routes: HashMap::new(),
            all_shared: Some(Box::default()),
        }
    }
}

impl<D> RouterTable<D> {
    /// Every router's state, when no router keeps one per connection
    /// (see [`Admission::Accepted`]).
    pub(crate) fn shared_states(&self) -> &[State] {
        self.all_shared.as_deref().unwrap_or_default()
    }
}

/// The per-connection states of every router, after its guards passed
/// (none when all are shared).
pub(crate) type ConnectionGuards = Vec<State>;

/// How the connection phase ended.
pub(crate) enum Admission {
    /// Every router's state, one per router; none when every router's
    /// state is shared ([`RouterTable::shared_states`]).
    Accepted(ConnectionGuards),
    Refused,
    Failed(BoxError),
}

#[derive(Serialize)]
struct Reply<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    data: &'a Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
    #[serde(rename = "correlationId")]
    correlation_id: &'a str,
}

/// The correlation id of a router request: the client's when it is a
/// string of 1 to 128 characters, else a fresh UUID v4.
pub fn correlation_id(given: Option<&Value>) -> Arc<str> {
    match given {
        Some(Value::String(s)) if (1..=128).contains(&s.chars().count()) => Arc::from(s.as_str()),
        _ => Arc::from(uuid::Uuid::new_v4().to_string()),
    }
}

impl<D: Send + Sync + 'static> RouterTable<D> {
    /// Whether a router routes messages of `kind`.
    pub(crate) fn routes(&self, kind: &str) -> bool {
        self.routes.contains_key(kind)
    }

    pub(crate) fn add<R, E>(&mut self, router: R, app: &AppContext<E>) -> Result<(), BuildError>
    where
        R: SocketRouter<D, E>,
        E: Emitter,
    {
        let mut b = SocketRouteBuilder::<R, D, E> {
            router: Arc::new(router),
            app: app.clone(),
            conn_guards: Vec::new(),
            msg_guards: Vec::new(),
            routes: Vec::new(),
            schema_error: None,
        };
        b.router.clone().configure(&mut b);
        if let Some(e) = b.schema_error.take() {
            return Err(e);
        }
        let index = self.phases.len();
        let mut own = std::collections::HashSet::new();
        for (kind, _) in &b.routes {
            if self.routes.contains_key(kind) || !own.insert(kind.as_str()) {
                return Err(BuildError::DuplicateMessageType(kind.clone()));
            }
        }
        let guards = Arc::new(b.conn_guards);
        // A state without data (`()`, a marker) is the same for every
        // connection: one shared allocation instead of one per connection.
        let shared = (std::mem::size_of::<R::State>() == 0 && !std::mem::needs_drop::<R::State>())
            .then(|| Arc::new(R::State::default()) as State);
        self.all_shared = match (self.all_shared.take(), &shared) {
            (Some(states), Some(state)) => Some(states.iter().chain([state]).cloned().collect()),
            _ => None,
        };
        self.phases.push(Arc::new(move |conn| {
            let guards = guards.clone();
            let shared = shared.clone();
            Box::pin(async move {
                let slot = Arc::new(Mutex::new(R::State::default()));
                for guard in guards.iter() {
                    let ctx = GuardContext {
                        conn: conn.clone().retype(),
                        state: slot.clone(),
                    };
                    if !guard(ctx).await? {
                        return Ok(None);
                    }
                }
                if let Some(shared) = shared {
                    return Ok(Some(shared));
                }
                let state =
                    std::mem::take(&mut *slot.lock().unwrap_or_else(PoisonError::into_inner));
                Ok(Some(Arc::new(state) as State))
            })
        }));
        let msg_guards = Arc::new(b.msg_guards);
        for (kind, handler) in b.routes {
            let msg_guards = msg_guards.clone();
            let call: RouteFn<D> = Arc::new(move |call: RouteCall<D>, state: State| {
                let msg_guards = msg_guards.clone();
                let handler = handler.clone();
                Box::pin(async move {
                    let state: Arc<R::State> = state
                        .downcast()
                        .map_err(|_| HandlerError::new("internal error: router state"))?;
                    for guard in msg_guards.iter() {
                        let ctx = MessageGuardContext {
                            conn: call.conn.clone().retype(),
                            state: state.clone(),
                            message_type: call.message_type.clone(),
                            data: call.data.clone(),
                        };
                        match guard(ctx).await {
                            Ok(true) => {}
                            Ok(false) => return Err(HandlerError::new("Forbidden")),
                            Err(e) => return Err(HandlerError::new(e)),
                        }
                    }
                    handler(state, call).await
                })
            });
            self.routes.insert(
                kind,
                Route {
                    router: index,
                    call,
                },
            );
        }
        Ok(())
    }

    /// Runs every router's connection guards, in registration order.
    pub(crate) async fn admit(&self, conn: &Conn<D>) -> Admission {
        // Shared states are not kept per connection.
        let keep = self.all_shared.is_none();
        let mut states = Vec::with_capacity(if keep { self.phases.len() } else { 0 });
        for phase in &self.phases {
            match AssertUnwindSafe(phase(conn.clone())).catch_unwind().await {
                Ok(Ok(Some(state))) => {
                    if keep {
                        states.push(state);
                    }
                }
                Ok(Ok(None)) => return Admission::Refused,
                Ok(Err(e)) => return Admission::Failed(e),
                Err(_) => return Admission::Failed("connection guard panicked".into()),
            }
        }
        Admission::Accepted(states)
    }

    /// If `text` is a router request, handles it and returns the reply
    /// frame; `None` means the frame is for the raw handler.
    pub(crate) async fn dispatch(
        &self,
        conn: &Conn<D>,
        states: &[State],
        text: &str,
    ) -> Option<String> {
        // Cheap pre-checks: no routes, or not a JSON object.
        if self.routes.is_empty() || !text.trim_start().starts_with('{') {
            return None;
        }
        let Ok(Value::Object(mut fields)) = serde_json::from_str::<Value>(text) else {
            return None;
        };
        let Some(Value::String(kind)) = fields.get("type") else {
            return None;
        };
        let route = self.routes.get(kind.as_str())?;
        let kind: Arc<str> = Arc::from(kind.as_str());
        let correlation_id = correlation_id(fields.get("correlationId"));
        let data = fields.remove("data").unwrap_or(Value::Null);
        let state = states.get(route.router)?.clone();
        let span = tracing::info_span!("socket_message", socket = %conn.id(), message_type = %kind, correlation_id = %correlation_id);
        let call = RouteCall {
            conn: conn.clone(),
            data: Arc::new(data),
            correlation_id: correlation_id.clone(),
            message_type: kind.clone(),
            span: span.clone(),
        };
        let handled = crate::correlation::scoped(correlation_id.clone(), (route.call)(call, state));
        let outcome = AssertUnwindSafe(handled.instrument(span))
            .catch_unwind()
            .await
            .unwrap_or_else(|_| {
                tracing::error!(socket = %conn.id(), message_type = %kind, "router handler panicked");
                Err(HandlerError::new("Internal server error"))
            });
        let (data, error) = match &outcome {
            Ok(v) => (v, None),
            Err(e) => (&Value::Null, Some(e.message())),
        };
        serde_json::to_string(&Reply {
            kind: &kind,
            data,
            error,
            correlation_id: &correlation_id,
        })
        .ok()
    }
}

type ConnGuardFn<S, D, E> =
    Arc<dyn Fn(GuardContext<S, D, E>) -> BoxFuture<'static, Result<bool, BoxError>> + Send + Sync>;
type MsgGuardFn<S, D, E> = Arc<
    dyn Fn(MessageGuardContext<S, D, E>) -> BoxFuture<'static, Result<bool, BoxError>>
        + Send
        + Sync,
>;
type HandlerFn<S, D> = Arc<
    dyn Fn(Arc<S>, RouteCall<D>) -> BoxFuture<'static, Result<Value, HandlerError>> + Send + Sync,
>;

/// Collects one router's guards and handlers.
pub struct SocketRouteBuilder<R: SocketRouter<D, E>, D = (), E: Emitter = crate::SocketEmitter> {
    router: Arc<R>,
    app: AppContext<E>,
    conn_guards: Vec<ConnGuardFn<R::State, D, E>>,
    msg_guards: Vec<MsgGuardFn<R::State, D, E>>,
    routes: Vec<(String, HandlerFn<R::State, D>)>,
    /// The first route whose schema does not compile: adding the router
    /// fails with it.
    schema_error: Option<BuildError>,
}

impl<R, D, E> SocketRouteBuilder<R, D, E>
where
    R: SocketRouter<D, E>,
    D: Send + Sync + 'static,
    E: Emitter,
{
    /// The app context (services and the emitter), for a router that
    /// takes what it needs while it declares its routes.
    pub fn app(&self) -> &AppContext<E> {
        &self.app
    }

    /// Adds a connection guard (runs once per connection, in order).
    pub fn connection_guard<G: ConnectionGuard<R::State, D, E>>(&mut self, guard: G) -> &mut Self {
        let guard = Arc::new(guard);
        self.conn_guards.push(Arc::new(move |ctx| {
            let guard = guard.clone();
            Box::pin(async move { guard.can_activate(ctx).await })
        }));
        self
    }

    /// Adds a message guard (runs before every message of this router).
    pub fn guard<G: MessageGuard<R::State, D, E>>(&mut self, guard: G) -> &mut Self {
        let guard = Arc::new(guard);
        self.msg_guards.push(Arc::new(move |ctx| {
            let guard = guard.clone();
            Box::pin(async move { guard.can_activate(ctx).await })
        }));
        self
    }

    /// Routes messages of `kind` to `handler`; its result is the reply.
    pub fn on<H, Fut>(&mut self, kind: &str, handler: H) -> &mut Self
    where
        H: Fn(Arc<R>, SocketContext<R::State, D, E>) -> Fut + Send + Sync + 'static,
        Fut: Future + Send + 'static,
        Fut::Output: RouteResult,
    {
        self.route(kind, None, handler)
    }

    /// Like [`on`](Self::on), validating the data against `schema` first
    /// (a failure answers `Validation failed: ...`). A schema that does not
    /// compile (`Err`, as [`Schema::of`] returns it) fails `listen` with
    /// [`BuildError::Schema`].
    pub fn on_with_schema<H, Fut>(
        &mut self,
        kind: &str,
        handler: H,
        schema: Result<Arc<Schema>, SchemaError>,
    ) -> &mut Self
    where
        H: Fn(Arc<R>, SocketContext<R::State, D, E>) -> Fut + Send + Sync + 'static,
        Fut: Future + Send + 'static,
        Fut::Output: RouteResult,
    {
        match schema {
            Ok(schema) => self.route(kind, Some(schema), handler),
            Err(error) => self.schema_failed(kind, error),
        }
    }

    fn schema_failed(&mut self, kind: &str, error: SchemaError) -> &mut Self {
        self.schema_error.get_or_insert(BuildError::Schema {
            message_type: kind.to_owned(),
            error,
        });
        self
    }

    /// Routes messages of `definition`'s type; the handler receives the
    /// validated, typed data. A data type whose schema does not compile
    /// fails `listen` with [`BuildError::Schema`].
    pub fn on_typed<Def, H, Fut>(&mut self, definition: Def, handler: H) -> &mut Self
    where
        Def: Definition,
        H: Fn(Arc<R>, SocketContext<R::State, D, E>, Def::Data) -> Fut + Send + Sync + 'static,
        Fut: Future + Send + 'static,
        Fut::Output: RouteResult,
    {
        let handler = Arc::new(handler);
        let kind = definition.name().to_owned();
        let schema = match definition.schema() {
            Ok(schema) => schema,
            Err(error) => return self.schema_failed(&kind, error),
        };
        self.route(
            &kind,
            None,
            move |router, ctx: SocketContext<R::State, D, E>| {
                let parsed = schema.parse_ref::<Def::Data>(&ctx.data);
                let handler = handler.clone();
                async move {
                    match parsed {
                        Ok(data) => handler(router, ctx, data).await.into_reply(),
                        Err(e) => Err(HandlerError::new(format_args!("Validation failed: {e}"))),
                    }
                }
            },
        )
    }

    fn route<H, Fut>(&mut self, kind: &str, schema: Option<Arc<Schema>>, handler: H) -> &mut Self
    where
        H: Fn(Arc<R>, SocketContext<R::State, D, E>) -> Fut + Send + Sync + 'static,
        Fut: Future + Send + 'static,
        Fut::Output: RouteResult,
    {
        let router = self.router.clone();
        let handler = Arc::new(handler);
        self.routes.push((
            kind.to_owned(),
            Arc::new(move |state, call: RouteCall<D>| {
                if let Some(schema) = &schema {
                    if let Err(e) = schema.validate(&call.data) {
                        return Box::pin(std::future::ready(Err(HandlerError::new(format_args!(
                            "Validation failed: {e}"
                        )))));
                    }
                }
                let ctx = SocketContext {
                    state,
                    data: call.data,
                    conn: call.conn.retype(),
                    correlation_id: call.correlation_id,
                    span: call.span,
                    message_type: call.message_type,
                };
                let fut = handler(router.clone(), ctx);
                Box::pin(async move { fut.await.into_reply() })
            }),
        ));
        self
    }
}
