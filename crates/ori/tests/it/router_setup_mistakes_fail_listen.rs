//! Socket-router set-up mistakes fail `listen`, before anything is served:
//! two handlers for one message type (`BuildError::DuplicateMessageType`),
//! a router needing an unregistered service (`BuildError::MissingService`),
//! and `socket_router` before `websocket()` (`BuildError::Order`).

use crate::common;

use std::sync::Arc;

use ori::messages::ServerMessage;
use ori::router::{SocketContext, SocketRouteBuilder, SocketRouter};
use ori::{BuildError, Error, Ori};
use serde_json::json;

/// A router answering each of its types with its own name.
struct Named {
    name: &'static str,
    types: Vec<&'static str>,
}

impl SocketRouter for Named {
    type State = ();

    fn configure(&self, r: &mut SocketRouteBuilder<Self>) {
        for kind in &self.types {
            r.on(kind, |me: Arc<Self>, _ctx: SocketContext<()>| async move {
                Ok::<_, String>(me.name)
            });
        }
    }
}

fn named(name: &'static str, types: &[&'static str]) -> Named {
    Named {
        name,
        types: types.to_vec(),
    }
}

async fn listen<W: ori::WebSocketState>(
    ori: Ori<ori::SocketEmitter, W>,
) -> Result<ori::App, Error> {
    ori.listen("127.0.0.1:0").await
}

fn assert_duplicate(result: Result<ori::App, Error>, kind: &str) {
    match result {
        Err(Error::Build(BuildError::DuplicateMessageType(t))) => {
            assert_eq!(t, kind);
            let text = BuildError::DuplicateMessageType(t).to_string();
            assert!(text.contains(kind), "{text}");
        }
        Err(other) => panic!("expected DuplicateMessageType({kind:?}), got {other:?}"),
        Ok(_) => panic!("listen must fail on a duplicate message type {kind:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_routers_routing_one_type_fail_listen() {
    let result = listen(
        Ori::create()
            .websocket()
            .socket_router(named("a", &["a.only", "shared"]))
            .socket_router(named("b", &["shared", "b.only"])),
    )
    .await;
    assert_duplicate(result, "shared");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_typed_route_and_a_plain_route_of_one_type_fail_listen() {
    struct Typed;
    impl SocketRouter for Typed {
        type State = ();
        fn configure(&self, r: &mut SocketRouteBuilder<Self>) {
            static SHARED: ServerMessage<serde_json::Value> = ServerMessage::define("shared");
            r.on_typed(
                SHARED,
                |_: Arc<Self>, _ctx: SocketContext<()>, _data| async move { Ok::<_, String>(()) },
            );
        }
    }
    let result = listen(
        Ori::create()
            .websocket()
            .socket_router(named("a", &["shared"]))
            .socket_router(Typed),
    )
    .await;
    assert_duplicate(result, "shared");
}

/// PROTOCOL.md section 4: "A message type can have exactly one router
/// handler; registering two is an error at start-up". Within one router
/// too: otherwise the second silently replaces the first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_router_routing_one_type_twice_fails_listen() {
    let result = listen(
        Ori::create()
            .websocket()
            .socket_router(named("a", &["twice", "other", "twice"])),
    )
    .await;
    assert_duplicate(result, "twice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn distinct_types_across_routers_start_and_route() {
    let server = ori::testing::spawn(
        Ori::create()
            .websocket()
            .socket_router(named("a", &["a.1", "a.2"]))
            .socket_router(named("b", &["b.1"])),
    )
    .await;
    let mut ws = server.connect().await;
    for (kind, owner) in [("a.1", "a"), ("a.2", "a"), ("b.1", "b")] {
        ws.send_json(&json!({ "type": kind, "correlationId": "1" }))
            .await;
        assert_eq!(
            ws.recv_json().await,
            json!({ "type": kind, "data": owner, "correlationId": "1" })
        );
    }
    common::stop_server(&server, vec![ws]).await;
}

struct Presence;

struct NeedsPresence {
    _presence: Arc<Presence>,
}

impl SocketRouter for NeedsPresence {
    type State = ();

    fn configure(&self, r: &mut SocketRouteBuilder<Self>) {
        r.on(
            "presence",
            |_: Arc<Self>, _ctx: SocketContext<()>| async move { Ok::<_, String>("here") },
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socket_router_with_needing_a_missing_service_fails_listen() {
    let result = listen(Ori::create().websocket().socket_router_with(|ctx| {
        Ok(NeedsPresence {
            _presence: ctx.require::<Presence>()?,
        })
    }))
    .await;
    match result {
        Err(Error::Build(BuildError::MissingService(name))) => {
            assert!(name.ends_with("Presence"), "names the missing type: {name}");
        }
        Err(other) => panic!("expected MissingService, got {other:?}"),
        Ok(_) => panic!("listen must fail on a missing service"),
    }

    // Registered first, the same router starts and routes.
    let server = ori::testing::spawn(
        Ori::create()
            .service(Presence)
            .websocket()
            .socket_router_with(|ctx| {
                Ok(NeedsPresence {
                    _presence: ctx.require::<Presence>()?,
                })
            }),
    )
    .await;
    let mut ws = server.connect().await;
    ws.send_json(&json!({ "type": "presence", "correlationId": "p" }))
        .await;
    assert_eq!(
        ws.recv_json().await,
        json!({ "type": "presence", "data": "here", "correlationId": "p" })
    );
    common::stop_server(&server, vec![ws]).await;
}

// `socket_router` before `websocket()` does not compile: the method exists
// only once WebSocket support is configured (a `compile_fail` example on
// `Ori`). Handing the handlers over twice is a start-up error, not a silent
// replacement.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handlers_or_registries_given_twice_fail_listen() {
    let twice = listen(
        Ori::create()
            .websocket()
            .on_websocket(ori::Handlers::new())
            .on_websocket(ori::Handlers::new()),
    )
    .await;
    match twice {
        Err(Error::Build(BuildError::Order(why))) => {
            assert!(why.contains("on_websocket() was called twice"), "{why}")
        }
        Err(other) => panic!("expected an Order error, got {other:?}"),
        Ok(_) => panic!("listen must fail"),
    }
    let twice = listen(
        Ori::create()
            .websocket()
            .message_registry(ori::messages::MessageRegistry::new())
            .message_registry(ori::messages::MessageRegistry::new()),
    )
    .await;
    assert!(
        matches!(&twice, Err(Error::Build(BuildError::Order(why))) if why.contains("message_registry() was called twice")),
        "{:?}",
        twice.err()
    );
}
