//! Message guards run before every message of their router: `Ok(false)`
//! answers `Forbidden`, an error answers its message, and in both cases the
//! handler does not run. A guard reads the connection's router state. The
//! built-in `RateLimit::per_second(r).burst(b)` lets `b` messages through,
//! then answers `Rate limit exceeded`, per connection and per router.

use crate::common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use ori::router::{
    BoxError, GuardContext, MessageGuardContext, RateLimit, SocketContext, SocketRouteBuilder,
    SocketRouter,
};
use ori::testing::{self, TestSocket};
use ori::{InProcProvider, Ori, WsOptions};
use serde_json::{json, Value};

type Token = Option<String>;

#[derive(Default)]
struct Role {
    role: String,
}

/// `admin.*` needs the admin role (from `?token=admin`); data
/// `{"explode": true}` makes the second guard fail.
struct AdminRouter {
    calls: Arc<AtomicUsize>,
}

impl SocketRouter<Token> for AdminRouter {
    type State = Role;

    fn configure(&self, r: &mut SocketRouteBuilder<Self, Token>) {
        r.connection_guard(|ctx: GuardContext<Role, Token>| async move {
            let role = ctx.user_data().clone().unwrap_or_else(|| "guest".into());
            ctx.set(Role { role });
            Ok::<_, BoxError>(true)
        });
        r.guard(|ctx: MessageGuardContext<Role, Token>| async move {
            Ok::<_, BoxError>(
                !ctx.message_type().starts_with("admin.") || ctx.state().role == "admin",
            )
        });
        r.guard(|ctx: MessageGuardContext<Role, Token>| async move {
            if ctx.data().get("explode") == Some(&json!(true)) {
                return Err::<bool, BoxError>(
                    format!("guard refused {}", ctx.message_type()).into(),
                );
            }
            Ok(true)
        });
        r.on("admin.reset", Self::handle);
        r.on("public.read", Self::handle);
    }
}

impl AdminRouter {
    async fn handle(self: Arc<Self>, ctx: SocketContext<Role, Token>) -> Result<Value, String> {
        let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        Ok(json!({ "calls": n, "role": ctx.state().role }))
    }
}

async fn request(ws: &mut TestSocket, frame: Value) -> Value {
    ws.send_json(&frame).await;
    ws.recv_json().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusing_guard_answers_forbidden_and_the_handler_does_not_run() {
    let calls = Arc::new(AtomicUsize::new(0));
    let options = WsOptions::new().upgrade(|req| async move { Some(req.query_param("token")) });
    let server = testing::spawn(
        Ori::create()
            .websocket_with(InProcProvider::new(), options)
            .socket_router(AdminRouter {
                calls: calls.clone(),
            }),
    )
    .await;
    let mut guest = server.connect().await;
    let mut admin = server.connect_to("/ws?token=admin", &[]).await.unwrap();

    for _ in 0..3 {
        let reply = request(
            &mut guest,
            json!({ "type": "admin.reset", "data": { "all": true }, "correlationId": "g" }),
        )
        .await;
        assert_eq!(
            reply,
            json!({ "type": "admin.reset", "data": null, "error": "Forbidden", "correlationId": "g" })
        );
    }
    // A generated correlation id on a refusal too.
    let reply = request(&mut guest, json!({ "type": "admin.reset" })).await;
    assert_eq!(reply["error"], json!("Forbidden"));
    assert!(reply["correlationId"]
        .as_str()
        .is_some_and(|s| s.len() == 36));
    assert_eq!(calls.load(Ordering::SeqCst), 0, "the handler never ran");

    let reply = request(
        &mut guest,
        json!({ "type": "public.read", "correlationId": "p" }),
    )
    .await;
    assert_eq!(
        reply,
        json!({ "type": "public.read", "data": { "calls": 1, "role": "guest" }, "correlationId": "p" })
    );
    let reply = request(
        &mut admin,
        json!({ "type": "admin.reset", "correlationId": "a" }),
    )
    .await;
    assert_eq!(
        reply,
        json!({ "type": "admin.reset", "data": { "calls": 2, "role": "admin" }, "correlationId": "a" })
    );
    common::stop_server(&server, vec![guest, admin]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_guard_answers_its_error_and_the_handler_does_not_run() {
    let calls = Arc::new(AtomicUsize::new(0));
    let options = WsOptions::new().upgrade(|req| async move { Some(req.query_param("token")) });
    let server = testing::spawn(
        Ori::create()
            .websocket_with(InProcProvider::new(), options)
            .socket_router(AdminRouter {
                calls: calls.clone(),
            }),
    )
    .await;
    let mut ws = server.connect_to("/ws?token=admin", &[]).await.unwrap();
    let reply = request(
        &mut ws,
        json!({ "type": "public.read", "data": { "explode": true }, "correlationId": "e" }),
    )
    .await;
    assert_eq!(
        reply,
        json!({ "type": "public.read", "data": null, "error": "guard refused public.read", "correlationId": "e" })
    );
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    // Guards run in order: the first refusal wins.
    let mut guest = server.connect().await;
    let reply = request(
        &mut guest,
        json!({ "type": "admin.reset", "data": { "explode": true }, "correlationId": "f" }),
    )
    .await;
    assert_eq!(reply["error"], json!("Forbidden"));
    // The connection carries on.
    let reply = request(
        &mut ws,
        json!({ "type": "public.read", "data": { "explode": false }, "correlationId": "ok" }),
    )
    .await;
    assert_eq!(reply["data"]["calls"], json!(1), "{reply}");
    common::stop_server(&server, vec![ws, guest]).await;
}

/// Rate-limited pings, and an unlimited route in another router.
struct Limited {
    calls: Arc<AtomicUsize>,
}

struct Free;

impl SocketRouter for Limited {
    type State = ();

    fn configure(&self, r: &mut SocketRouteBuilder<Self>) {
        // One token per 100 s: no refill during the test.
        r.guard(RateLimit::per_second(0.01).burst(3));
        r.on(
            "ping",
            |me: Arc<Self>, _ctx: SocketContext<()>| async move {
                Ok::<_, String>(me.calls.fetch_add(1, Ordering::SeqCst) + 1)
            },
        );
        r.on(
            "ping.other",
            |me: Arc<Self>, _ctx: SocketContext<()>| async move {
                Ok::<_, String>(me.calls.fetch_add(1, Ordering::SeqCst) + 1)
            },
        );
    }
}

impl SocketRouter for Free {
    type State = ();

    fn configure(&self, r: &mut SocketRouteBuilder<Self>) {
        r.on("free", |_: Arc<Self>, _ctx: SocketContext<()>| async move {
            Ok::<_, String>("free")
        });
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_lets_the_burst_through_then_refuses_per_connection() {
    let calls = Arc::new(AtomicUsize::new(0));
    let server = testing::spawn(
        Ori::create()
            .websocket()
            .socket_router(Limited {
                calls: calls.clone(),
            })
            .socket_router(Free),
    )
    .await;
    let mut first = server.connect().await;
    let mut second = server.connect().await;

    // The bucket is per connection, shared by the router's routes.
    for (i, kind) in ["ping", "ping.other", "ping"].into_iter().enumerate() {
        let reply = request(
            &mut first,
            json!({ "type": kind, "correlationId": format!("f{i}") }),
        )
        .await;
        assert_eq!(
            reply,
            json!({ "type": kind, "data": i + 1, "correlationId": format!("f{i}") })
        );
    }
    for (i, kind) in ["ping", "ping.other", "ping"].into_iter().enumerate() {
        let reply = request(
            &mut first,
            json!({ "type": kind, "correlationId": format!("x{i}") }),
        )
        .await;
        assert_eq!(
            reply,
            json!({ "type": kind, "data": null, "error": "Rate limit exceeded", "correlationId": format!("x{i}") })
        );
    }
    assert_eq!(
        calls.load(Ordering::SeqCst),
        3,
        "refused messages ran nothing"
    );

    // Another router's routes are not limited.
    for _ in 0..5 {
        let reply = request(&mut first, json!({ "type": "free", "correlationId": "z" })).await;
        assert_eq!(
            reply,
            json!({ "type": "free", "data": "free", "correlationId": "z" })
        );
    }

    // The second connection has its own full bucket.
    for i in 0..3 {
        let reply = request(&mut second, json!({ "type": "ping", "correlationId": "s" })).await;
        assert_eq!(reply["data"], json!(4 + i), "{reply}");
        assert!(reply.get("error").is_none(), "{reply}");
    }
    let reply = request(&mut second, json!({ "type": "ping", "correlationId": "s" })).await;
    assert_eq!(reply["error"], json!("Rate limit exceeded"));

    // A new connection of the same client starts afresh as well.
    drop(first);
    let mut third = server.connect().await;
    let reply = request(&mut third, json!({ "type": "ping", "correlationId": "t" })).await;
    assert_eq!(reply["data"], json!(7), "{reply}");
    assert_eq!(calls.load(Ordering::SeqCst), 7);
    common::stop_server(&server, vec![second, third]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_burst_of_one_allows_exactly_one() {
    struct One;
    impl SocketRouter for One {
        type State = ();
        fn configure(&self, r: &mut SocketRouteBuilder<Self>) {
            r.guard(RateLimit::per_second(0.001).burst(1));
            r.on("one", |_: Arc<Self>, _ctx: SocketContext<()>| async move {
                Ok::<_, String>(1)
            });
        }
    }
    let server = testing::spawn(Ori::create().websocket().socket_router(One)).await;
    let mut ws = server.connect().await;
    let reply = request(&mut ws, json!({ "type": "one", "correlationId": "1" })).await;
    assert_eq!(reply["data"], json!(1));
    for _ in 0..3 {
        let reply = request(&mut ws, json!({ "type": "one", "correlationId": "2" })).await;
        assert_eq!(reply["error"], json!("Rate limit exceeded"), "{reply}");
    }
    common::stop_server(&server, vec![ws]).await;
}
