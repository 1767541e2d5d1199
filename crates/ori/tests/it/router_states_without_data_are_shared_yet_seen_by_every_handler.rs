//! A socket router whose state has no data (`type State = ()`, a marker)
//! keeps one state for all connections instead of one per connection; what
//! handlers see is unchanged: `ws.state::<()>()` from `open` on (never
//! before the guards passed, never for a refused connection), the route
//! handlers run with it, and a router with data next to it keeps each
//! connection's own.

use crate::common;

use std::sync::{Arc, Mutex};

use ori::router::{BoxError, GuardContext, SocketContext, SocketRouteBuilder, SocketRouter};
use ori::testing::{self, TestServer, TestSocket};
use ori::{Conn, Handlers, InProcProvider, Ori, WsOptions};
use serde_json::{json, Value};

type Name = Option<String>;
type Kept = Arc<Mutex<Vec<Conn<Name>>>>;

/// Refuses `?name=refused`; keeps the handle of every connection it sees.
struct Presence {
    seen: Kept,
}

impl SocketRouter<Name> for Presence {
    type State = ();

    fn configure(&self, r: &mut SocketRouteBuilder<Self, Name>) {
        let seen = self.seen.clone();
        r.connection_guard(move |ctx: GuardContext<(), Name>| {
            let seen = seen.clone();
            async move {
                assert!(
                    ctx.conn().state::<()>().is_none(),
                    "no state before the guards passed"
                );
                seen.lock().unwrap().push(ctx.conn().clone());
                Ok::<_, BoxError>(ctx.user_data().as_deref() != Some("refused"))
            }
        });
        r.on(
            "here",
            |_: Arc<Self>, ctx: SocketContext<(), Name>| async move {
                let () = *ctx.state();
                Ok::<_, String>(json!({ "here": ctx.user_data() }))
            },
        );
    }
}

/// A router with data: each connection's name.
#[derive(Default)]
struct Member(String);

struct Members;

impl SocketRouter<Name> for Members {
    type State = Member;

    fn configure(&self, r: &mut SocketRouteBuilder<Self, Name>) {
        r.connection_guard(|ctx: GuardContext<Member, Name>| async move {
            ctx.set(Member(ctx.user_data().clone().unwrap_or_default()));
            Ok::<_, BoxError>(true)
        });
        r.on(
            "me",
            |_: Arc<Self>, ctx: SocketContext<Member, Name>| async move {
                Ok::<_, String>(json!({ "me": ctx.state().0 }))
            },
        );
    }
}

/// Reports, at `open`, which states the connection has.
fn handlers() -> Handlers<Name> {
    Handlers::new().on_open(|ws: Conn<Name>| async move {
        let member = ws.state::<Member>().map(|m| m.0.clone());
        ws.send(json!({ "unit": ws.state::<()>().is_some(), "member": member }).to_string());
    })
}

async fn start(with_members: bool) -> (TestServer, Kept) {
    let seen = Kept::default();
    let options = WsOptions::new().upgrade(|req| async move { Some(req.query_param("name")) });
    let app = Ori::create()
        .websocket_with(InProcProvider::new(), options)
        .on_websocket(handlers())
        .socket_router(Presence { seen: seen.clone() });
    let server = if with_members {
        testing::spawn(app.socket_router(Members)).await
    } else {
        testing::spawn(app).await
    };
    (server, seen)
}

async fn connect(server: &TestServer, name: &str) -> TestSocket {
    server
        .connect_to(&format!("/ws?name={name}"), &[])
        .await
        .expect("the upgrade itself is accepted")
}

async fn request(ws: &mut TestSocket, kind: &str) -> Value {
    ws.send_json(&json!({ "type": kind, "data": {} })).await;
    ws.recv_json().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_connection_sees_the_shared_state_once_its_guards_passed() {
    let (server, seen) = start(false).await;
    let mut sockets = Vec::new();
    for name in ["ada", "bob"] {
        let mut ws = connect(&server, name).await;
        assert_eq!(
            ws.recv_json().await,
            json!({ "unit": true, "member": null })
        );
        let reply = request(&mut ws, "here").await;
        assert_eq!(reply["data"], json!({ "here": name }), "{reply}");
        sockets.push(ws);
    }

    // A refused connection never has the state, not even after its close.
    let mut refused = connect(&server, "refused").await;
    let (code, reason) = refused.expect_close().await.expect("a close frame");
    assert_eq!(
        (code, reason.as_str()),
        (1008, "Connection rejected by guard")
    );
    let handles = seen.lock().unwrap().clone();
    assert_eq!(handles.len(), 3);
    assert!(handles[0].state::<()>().is_some());
    assert!(handles[1].state::<()>().is_some());
    assert!(
        handles[2].state::<()>().is_none(),
        "refused, yet has a state"
    );
    common::stop_server(&server, sockets).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_router_with_data_next_to_it_keeps_each_connections_own() {
    let (server, _seen) = start(true).await;
    let mut ada = connect(&server, "ada").await;
    let mut bob = connect(&server, "bob").await;
    assert_eq!(
        ada.recv_json().await,
        json!({ "unit": true, "member": "ada" })
    );
    assert_eq!(
        bob.recv_json().await,
        json!({ "unit": true, "member": "bob" })
    );
    for (ws, name) in [(&mut ada, "ada"), (&mut bob, "bob")] {
        assert_eq!(request(ws, "me").await["data"], json!({ "me": name }));
        assert_eq!(request(ws, "here").await["data"], json!({ "here": name }));
    }
    common::stop_server(&server, vec![ada, bob]).await;
}
