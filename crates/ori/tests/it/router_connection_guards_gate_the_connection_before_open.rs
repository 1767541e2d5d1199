//! Connection guards run once per connection, after the upgrade and before
//! anything else: a refusal closes with 1008 "Connection rejected by guard"
//! and an error (or panic) with 1011, in both cases before the `open`
//! handler and before the connection is counted or joins `__broadcast__`.
//! What the guards store with `ctx.set` / `ctx.update` is the state every
//! later handler of that connection reads, each router with its own type.

use crate::common;

use std::sync::{Arc, Mutex};

use ori::router::{BoxError, GuardContext, SocketContext, SocketRouteBuilder, SocketRouter};
use ori::testing::{self, Received, TestServer, TestSocket};
use ori::{Conn, Handlers, InProcProvider, Message, Ori, ReadyState, Topic, WsOptions};
use serde_json::{json, Value};
use tokio::sync::{mpsc, Semaphore};

type Token = Option<String>;

/// What one connection's guards recorded; read by the handlers.
#[derive(Default, Debug)]
struct Auth {
    user: String,
    steps: Vec<String>,
    topics_in_guard: Vec<String>,
    state_in_guard: String,
}

/// Authenticates `?token=`: none refuses, `error` fails, `panic` panics.
struct AuthRouter {
    log: Arc<Mutex<Vec<String>>>,
}

impl SocketRouter<Token> for AuthRouter {
    type State = Auth;

    fn configure(&self, r: &mut SocketRouteBuilder<Self, Token>) {
        let log = self.log.clone();
        r.connection_guard(move |ctx: GuardContext<Auth, Token>| {
            let log = log.clone();
            async move {
                log.lock().unwrap().push("auth guard".into());
                let token = match ctx.user_data().as_deref() {
                    None => return Ok(false),
                    Some("error") => {
                        return Err::<bool, BoxError>("token store unavailable".into())
                    }
                    Some("panic") => panic!("guard panicked on purpose"),
                    Some(t) => t.to_owned(),
                };
                ctx.set(Auth {
                    user: token,
                    steps: vec!["set".into()],
                    topics_in_guard: ctx.conn().topics().iter().map(|t| t.to_string()).collect(),
                    state_in_guard: format!("{:?}", ctx.conn().ready_state()),
                });
                Ok(true)
            }
        });
        let log = self.log.clone();
        r.connection_guard(move |ctx: GuardContext<Auth, Token>| {
            let log = log.clone();
            async move {
                log.lock().unwrap().push("second guard".into());
                let seen_user = ctx.update(|auth| {
                    auth.steps.push("updated".into());
                    auth.user.clone()
                });
                // The second guard sees what the first stored.
                Ok::<_, BoxError>(
                    !seen_user.is_empty() && ctx.user_data().as_deref() != Some("refuse-late"),
                )
            }
        });
        r.on("me", Self::me);
        r.on("me.again", Self::me);
    }
}

impl AuthRouter {
    async fn me(self: Arc<Self>, ctx: SocketContext<Auth, Token>) -> Result<Value, String> {
        let auth = ctx.state();
        Ok(json!({
            "user": auth.user,
            "steps": auth.steps,
            "topicsInGuard": auth.topics_in_guard,
            "stateInGuard": auth.state_in_guard,
            "token": ctx.user_data(),
        }))
    }
}

fn options() -> WsOptions<Token> {
    WsOptions::new().upgrade(|req| async move { Some(req.query_param("token")) })
}

/// The open handler reports the connection's topics and counts itself in
/// `log`; the raw handler echoes.
fn handlers(log: Arc<Mutex<Vec<String>>>) -> Handlers<Token> {
    Handlers::new()
        .on_open(move |ws: Conn<Token>| {
            let log = log.clone();
            async move {
                log.lock().unwrap().push("open".into());
                let topics: Vec<String> = ws.topics().iter().map(|t| t.to_string()).collect();
                ws.send(json!({ "open": topics, "id": ws.id().to_string() }).to_string());
            }
        })
        .on_message(|ws: Conn<Token>, msg: Message| async move {
            ws.send(msg);
        })
}

struct Fixture {
    server: TestServer,
    log: Arc<Mutex<Vec<String>>>,
}

impl Fixture {
    async fn start() -> Self {
        let log = Arc::new(Mutex::new(Vec::new()));
        let server = testing::spawn(
            Ori::create()
                .websocket_with(InProcProvider::new(), options())
                .on_websocket(handlers(log.clone()))
                .socket_router(AuthRouter { log: log.clone() }),
        )
        .await;
        Self { server, log }
    }

    async fn connect(&self, token: Option<&str>) -> TestSocket {
        let path = match token {
            Some(t) => format!("/ws?token={t}"),
            None => "/ws".to_owned(),
        };
        self.server
            .connect_to(&path, &[])
            .await
            .expect("the upgrade itself is accepted")
    }

    fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }
}

async fn request(ws: &mut TestSocket, frame: Value) -> Value {
    ws.send_json(&frame).await;
    ws.recv_json().await
}

/// Receives the open handler's report and returns its topics.
async fn opened(ws: &mut TestSocket) -> (Vec<String>, String) {
    let report = ws.recv_json().await;
    let topics = report["open"]
        .as_array()
        .unwrap_or_else(|| panic!("expected the open report first, got {report}"))
        .iter()
        .map(|t| t.as_str().unwrap().to_owned())
        .collect();
    (topics, report["id"].as_str().unwrap().to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusal_closes_with_1008_and_open_never_runs() {
    let f = Fixture::start().await;
    for token in [None, Some("refuse-late")] {
        let mut ws = f.connect(token).await;
        assert_eq!(
            ws.recv().await,
            Received::Close(Some((1008, "Connection rejected by guard".into()))),
            "token {token:?}"
        );
        common::finish_close(&mut ws).await;
    }
    assert_eq!(f.server.app().connection_count(), 0);
    assert!(
        !f.log().contains(&"open".to_owned()),
        "open never ran: {:?}",
        f.log()
    );
    // A refusal by the second guard ran the first one before it.
    assert_eq!(
        f.log(),
        ["auth guard", "auth guard", "second guard"],
        "guards run in order and stop at a refusal"
    );
    common::stop_server(&f.server, vec![]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guard_error_or_panic_closes_with_1011_and_open_never_runs() {
    let f = Fixture::start().await;
    for token in ["error", "panic"] {
        let mut ws = f.connect(Some(token)).await;
        match ws.recv().await {
            Received::Close(Some((code, reason))) => {
                assert_eq!(code, 1011, "token {token}: {reason}");
                assert!(
                    !reason.contains("unavailable") && !reason.contains("on purpose"),
                    "the error itself is not sent to the client: {reason}"
                );
            }
            other => panic!("token {token}: expected a 1011 close, got {other:?}"),
        }
        common::finish_close(&mut ws).await;
    }
    assert_eq!(f.server.app().connection_count(), 0);
    assert!(!f.log().contains(&"open".to_owned()), "{:?}", f.log());
    // The server is fine: an authenticated client gets in.
    let mut ok = f.connect(Some("ann")).await;
    opened(&mut ok).await;
    common::stop_server(&f.server, vec![ok]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_held_in_its_guards_is_not_counted_and_gets_no_broadcast() {
    let (entered_tx, mut entered) = mpsc::unbounded_channel::<()>();
    let release = Arc::new(Semaphore::new(0));
    let opened_count = Arc::new(Mutex::new(0));

    struct Held {
        entered: mpsc::UnboundedSender<()>,
        release: Arc<Semaphore>,
    }
    impl SocketRouter for Held {
        type State = ();
        fn configure(&self, r: &mut SocketRouteBuilder<Self>) {
            let entered = self.entered.clone();
            let release = self.release.clone();
            r.connection_guard(move |ctx: GuardContext<()>| {
                let entered = entered.clone();
                let release = release.clone();
                async move {
                    assert_eq!(ctx.conn().ready_state(), ReadyState::Connecting);
                    assert!(ctx.conn().topics().is_empty());
                    entered.send(()).unwrap();
                    release.acquire().await.unwrap().forget();
                    Ok::<_, BoxError>(false)
                }
            });
        }
    }

    let counter = opened_count.clone();
    let server = testing::spawn(
        Ori::create()
            .websocket()
            .on_websocket(Handlers::new().on_open(move |_ws: Conn| {
                let counter = counter.clone();
                async move {
                    *counter.lock().unwrap() += 1;
                }
            }))
            .socket_router(Held {
                entered: entered_tx,
                release: release.clone(),
            }),
    )
    .await;
    // Not `connect`, which would wait for the guard to finish.
    let mut ws = server.handshake("/ws", &[]).await.unwrap();
    tokio::time::timeout(common::WAIT, entered.recv())
        .await
        .expect("the guard runs")
        .unwrap();

    // While the guard decides, the connection is nowhere.
    let emitter = server.app().socket();
    emitter.broadcast("broadcast while guarded").await.unwrap();
    assert_eq!(server.app().connection_count(), 0);
    assert_eq!(
        emitter.subscriber_count(&Topic::new("__broadcast__").unwrap()),
        0
    );
    release.add_permits(1);

    // The first thing it receives is the refusal, not the broadcast.
    assert_eq!(
        ws.recv().await,
        Received::Close(Some((1008, "Connection rejected by guard".into())))
    );
    emitter.broadcast("broadcast after refusal").await.unwrap();
    common::finish_close(&mut ws).await;
    assert_eq!(server.app().connection_count(), 0);
    assert_eq!(*opened_count.lock().unwrap(), 0);
    common::stop_server(&server, vec![]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guards_run_before_open_which_then_sees_broadcast_topics() {
    let f = Fixture::start().await;
    let mut ws = f.connect(Some("ann")).await;
    let (topics, id) = opened(&mut ws).await;
    assert!(topics.contains(&"__broadcast__".to_owned()), "{topics:?}");
    assert!(topics.contains(&format!("__socket__:{id}")), "{topics:?}");
    assert_eq!(f.log(), ["auth guard", "second guard", "open"]);
    let me = request(&mut ws, json!({ "type": "me", "correlationId": "1" })).await;
    assert_eq!(me["data"]["topicsInGuard"], json!([]), "{me}");
    assert_eq!(me["data"]["stateInGuard"], json!("Connecting"), "{me}");
    assert_eq!(f.server.app().connection_count(), 1);
    f.server.app().socket().broadcast("hello").await.unwrap();
    assert_eq!(ws.recv().await, Received::Text("hello".into()));
    common::stop_server(&f.server, vec![ws]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guard_state_is_seen_by_every_later_handler_of_that_connection() {
    let f = Fixture::start().await;
    let mut ann = f.connect(Some("ann")).await;
    let mut bob = f.connect(Some("bob")).await;
    opened(&mut ann).await;
    opened(&mut bob).await;
    for round in 0..3 {
        for (ws, user) in [(&mut ann, "ann"), (&mut bob, "bob")] {
            for kind in ["me", "me.again"] {
                let reply = request(ws, json!({ "type": kind, "correlationId": "x" })).await;
                assert_eq!(reply["type"], json!(kind));
                assert_eq!(reply["data"]["user"], json!(user), "round {round}: {reply}");
                assert_eq!(reply["data"]["steps"], json!(["set", "updated"]));
                assert_eq!(reply["data"]["token"], json!(user));
            }
        }
    }
    // Unrouted frames still reach the raw handler.
    ann.send_text("raw").await;
    assert_eq!(ann.recv().await, Received::Text("raw".into()));
    common::stop_server(&f.server, vec![ann, bob]).await;
}

#[derive(Default)]
struct Counter {
    n: u32,
}

#[derive(Default)]
struct Name {
    name: String,
}

struct CounterRouter {
    log: Arc<Mutex<Vec<String>>>,
}

struct NameRouter {
    log: Arc<Mutex<Vec<String>>>,
}

impl SocketRouter for CounterRouter {
    type State = Counter;

    fn configure(&self, r: &mut SocketRouteBuilder<Self>) {
        let log = self.log.clone();
        r.connection_guard(move |ctx: GuardContext<Counter>| {
            let log = log.clone();
            async move {
                log.lock().unwrap().push("counter".into());
                ctx.set(Counter { n: 41 });
                ctx.update(|c| c.n += 1);
                Ok::<_, BoxError>(true)
            }
        });
        r.on(
            "counter.get",
            |_: Arc<Self>, ctx: SocketContext<Counter>| async move {
                Ok::<_, String>(ctx.state().n)
            },
        );
    }
}

impl SocketRouter for NameRouter {
    type State = Name;

    fn configure(&self, r: &mut SocketRouteBuilder<Self>) {
        let log = self.log.clone();
        r.connection_guard(move |ctx: GuardContext<Name>| {
            let log = log.clone();
            async move {
                log.lock().unwrap().push("name".into());
                ctx.set(Name {
                    name: format!("socket {}", ctx.socket_id()),
                });
                Ok::<_, BoxError>(true)
            }
        });
        r.on(
            "name.get",
            |_: Arc<Self>, ctx: SocketContext<Name>| async move {
                Ok::<_, String>(ctx.state().name.clone())
            },
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_routers_each_keep_their_own_state_type() {
    let log = Arc::new(Mutex::new(Vec::new()));
    let open_log = log.clone();
    let server = testing::spawn(
        Ori::create()
            .websocket()
            .on_websocket(Handlers::new().on_open(move |ws: Conn| {
                let log = open_log.clone();
                async move {
                    log.lock().unwrap().push("open".into());
                    ws.send(ws.id().to_string());
                }
            }))
            .socket_router(CounterRouter { log: log.clone() })
            .socket_router(NameRouter { log: log.clone() }),
    )
    .await;
    let mut a = server.connect().await;
    let a_id = a.recv_text().await;
    assert_eq!(*log.lock().unwrap(), ["counter", "name", "open"]);
    let mut b = server.connect().await;
    let b_id = b.recv_text().await;
    for (ws, id) in [(&mut a, &a_id), (&mut b, &b_id)] {
        let reply = request(ws, json!({ "type": "counter.get", "correlationId": "c" })).await;
        assert_eq!(
            reply,
            json!({ "type": "counter.get", "data": 42, "correlationId": "c" })
        );
        let reply = request(ws, json!({ "type": "name.get", "correlationId": "n" })).await;
        assert_eq!(
            reply,
            json!({ "type": "name.get", "data": format!("socket {id}"), "correlationId": "n" })
        );
    }
    common::stop_server(&server, vec![a, b]).await;
}
