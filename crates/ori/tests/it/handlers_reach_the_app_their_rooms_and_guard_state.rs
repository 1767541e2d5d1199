//! What lifecycle and registry handlers reach, written as an application
//! would: the rooms a closing socket was in (to tell them), the app's
//! services and custom emitter, and what the connection guards stored; the
//! `2` ping answered by the server; the registry as a builder step after
//! the routers.

use std::sync::{Arc, Mutex};

use crate::common;
use ori::messages::{JoinRoom, MessageRegistry, ServerMessage};
use ori::router::{BoxError, GuardContext, SocketContext, SocketRouteBuilder, SocketRouter};
use ori::testing::{self, Received};
use ori::{
    BuildError, Conn, Emitter, Error, Handlers, Message, Ori, PublishError, SocketEmitter,
    WsOptions,
};
use serde_json::{json, Value};

/// The app's emitter, with a domain method.
#[derive(Clone)]
struct Chat(SocketEmitter);

impl Emitter for Chat {
    fn from_socket_emitter(base: SocketEmitter) -> Self {
        Self(base)
    }
    fn socket_emitter(&self) -> &SocketEmitter {
        &self.0
    }
}

impl Chat {
    async fn announce(&self, room: &str, text: &str) -> Result<(), PublishError> {
        let body = json!({ "type": "announce", "room": room, "text": text });
        self.publish(room, body.to_string()).await
    }
}

/// A service the handlers look up.
struct Greeter {
    greeting: &'static str,
}

/// The app's types, named once.
type Ws = Conn<String, Chat>;
type Ctx<S> = SocketContext<S, String, Chat>;
type Routes<R> = SocketRouteBuilder<R, String, Chat>;

#[derive(Default)]
struct Member {
    name: String,
}

struct Members;

impl SocketRouter<String, Chat> for Members {
    type State = Member;

    fn configure(&self, r: &mut Routes<Self>) {
        r.connection_guard(|ctx: GuardContext<Member, String, Chat>| async move {
            let name = ctx.user_data().clone();
            if name.is_empty() {
                return Ok::<_, BoxError>(false);
            }
            ctx.set(Member { name });
            Ok(true)
        });
        r.on("whoami", Self::whoami);
    }
}

impl Members {
    async fn whoami(self: Arc<Self>, ctx: Ctx<Member>) -> Result<Value, String> {
        Ok(json!({ "name": ctx.state().name }))
    }
}

static SAY: ServerMessage<Say> = ServerMessage::define("say");

#[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
struct Say {
    room: String,
    text: String,
}

fn registry() -> MessageRegistry<String, Chat> {
    MessageRegistry::new()
        .on(JoinRoom, |ws: Ws, data| async move {
            ws.subscribe(data.room.topic())
        })
        .on(SAY, |ws: Ws, say: Say| async move {
            // The guard's state and the custom emitter, in a registry handler.
            let who = ws.state::<Member>().map(|m| m.name.clone());
            let text = format!("{}: {}", who.unwrap_or_default(), say.text);
            ws.emitter().announce(&say.room, &text).await
        })
}

/// What the close handler saw: the rooms and the subscriber counts.
type Seen = Arc<Mutex<Vec<(Vec<String>, usize)>>>;

async fn server(seen: Seen) -> testing::TestServer<Chat> {
    let options = WsOptions::new().upgrade(|req| async move { req.query_param("name") });
    testing::spawn(
        Ori::with_emitter::<Chat>()
            .service(Greeter {
                greeting: "welcome",
            })
            .websocket_options(options)
            .socket_router(Members)
            .message_registry(registry())
            .on_websocket(
                Handlers::new()
                    .on_open(|ws: Ws| async move {
                        let greeter = ws.app().service::<Greeter>().expect("registered");
                        let member = ws.state::<Member>().expect("the guard ran first");
                        ws.send(format!("{} {}", greeter.greeting, member.name));
                    })
                    .on_close(move |ws: Ws, code, _reason| {
                        let seen = seen.clone();
                        async move {
                            let rooms = ws.rooms();
                            let counts = rooms
                                .iter()
                                .map(|room| ws.emitter().socket_emitter().subscriber_count(room))
                                .sum();
                            seen.lock()
                                .unwrap()
                                .push((rooms.iter().map(|r| r.to_string()).collect(), counts));
                            for room in &rooms {
                                let text = format!("{} left ({code})", ws.data());
                                ws.emitter().announce(room.as_str(), &text).await?;
                            }
                            Ok::<_, PublishError>(())
                        }
                    }),
            ),
    )
    .await
}

async fn join(ws: &mut testing::TestSocket, room: &str) {
    ws.send_json(&json!({ "type": "room.join", "room": room }))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_close_handler_tells_the_rooms_the_socket_was_in() {
    let seen = Seen::default();
    let server = server(seen.clone()).await;
    let mut ann = server.connect_to("/ws?name=ann", &[]).await.unwrap();
    let mut bob = server.connect_to("/ws?name=bob", &[]).await.unwrap();
    assert_eq!(ann.recv_text().await, "welcome ann");
    assert_eq!(bob.recv_text().await, "welcome bob");
    join(&mut ann, "lobby").await;
    join(&mut ann, "games").await;
    join(&mut bob, "lobby").await;
    common::wait_for_subscribers(server.app(), "lobby", 2).await;
    common::wait_for_subscribers(server.app(), "games", 1).await;

    ann.close(1000, "bye").await;
    assert_eq!(
        bob.recv_json().await,
        json!({ "type": "announce", "room": "lobby", "text": "ann left (1000)" })
    );
    common::wait_until("the close handler ran", || !seen.lock().unwrap().is_empty()).await;
    let (mut rooms, counts) = seen.lock().unwrap()[0].clone();
    rooms.sort();
    assert_eq!(rooms, ["games", "lobby"]);
    // The hub no longer counts the closed socket: bob alone, in the lobby.
    assert_eq!(counts, 1);
    common::stop_server(&server, vec![bob]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_handlers_reach_the_guard_state_and_the_custom_emitter() {
    let server = server(Seen::default()).await;
    let mut ann = server.connect_to("/ws?name=ann", &[]).await.unwrap();
    assert_eq!(ann.recv_text().await, "welcome ann");
    join(&mut ann, "lobby").await;
    common::wait_for_subscribers(server.app(), "lobby", 1).await;
    ann.send_json(&json!({ "type": "say", "room": "lobby", "text": "hi" }))
        .await;
    assert_eq!(
        ann.recv_json().await,
        json!({ "type": "announce", "room": "lobby", "text": "ann: hi" })
    );
    // The router comes first, and sees the same state.
    ann.send_json(&json!({ "type": "whoami", "correlationId": "c" }))
        .await;
    assert_eq!(
        ann.recv_json().await,
        json!({ "type": "whoami", "data": { "name": "ann" }, "correlationId": "c" })
    );
    // The registry answers what it does not know (there is no raw handler).
    ann.send_text("nonsense").await;
    assert_eq!(
        ann.recv_json().await,
        json!({ "type": "error", "message": "Invalid JSON" })
    );
    // And the `2` ping is the server's.
    ann.send_text("2").await;
    assert_eq!(ann.recv_text().await, "3");
    // A guard's refusal still closes before anything opens.
    let mut nobody = server.connect_to("/ws?name=", &[]).await.unwrap();
    assert_eq!(
        nobody.expect_close().await,
        Some((1008, "Connection rejected by guard".into()))
    );
    common::stop_server(&server, vec![ann, nobody]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_text_ping_is_answered_unless_turned_off() {
    let raw = |answer: bool| {
        Ori::create()
            .websocket_options(WsOptions::new().answer_text_ping(answer))
            .on_websocket(
                Handlers::new().on_message(|ws: Conn, msg: Message| async move {
                    ws.send(format!("raw:{}", msg.as_text().unwrap_or("")));
                }),
            )
    };
    let server = testing::spawn(raw(true)).await;
    let mut ws = server.connect().await;
    ws.send_text("2").await;
    assert_eq!(ws.recv_text().await, "3");
    ws.send_text("22").await;
    assert_eq!(ws.recv_text().await, "raw:22");
    common::stop_server(&server, vec![ws]).await;

    let server = testing::spawn(raw(false)).await;
    let mut ws = server.connect().await;
    ws.send_text("2").await;
    assert_eq!(ws.recv_text().await, "raw:2");
    common::stop_server(&server, vec![ws]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_the_registry_does_not_know_goes_to_the_raw_handler() {
    let server = testing::spawn(
        Ori::create()
            .websocket()
            .message_registry(
                MessageRegistry::new().on(JoinRoom, |ws: Conn, data| async move {
                    ws.subscribe(data.room.topic())?;
                    ws.send("joined");
                    Ok::<_, ori::SubscribeError>(())
                }),
            )
            .on_websocket(
                Handlers::new().on_message(|ws: Conn, msg: Message| async move {
                    match msg {
                        Message::Text(t) => ws.send(format!("raw:{t}")),
                        Message::Binary(b) => ws.send(format!("raw {} bytes", b.len())),
                    };
                }),
            ),
    )
    .await;
    let mut ws = server.connect().await;
    join(&mut ws, "lobby").await;
    assert_eq!(ws.recv_text().await, "joined");
    ws.send_text("hello").await;
    assert_eq!(ws.recv_text().await, "raw:hello");
    ws.send_json(&json!({ "type": "other" })).await;
    assert_eq!(ws.recv_text().await, r#"raw:{"type":"other"}"#);
    ws.send_binary(vec![1, 2, 3]).await;
    assert_eq!(ws.recv_text().await, "raw 3 bytes");
    // A registered type with bad data is the registry's to answer.
    ws.send_json(&json!({ "type": "room.join", "room": "__broadcast__" }))
        .await;
    match ws.recv().await {
        Received::Text(t) => assert!(t.contains("Validation failed"), "{t}"),
        other => panic!("expected the registry's error, got {other:?}"),
    }
    common::stop_server(&server, vec![ws]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_type_in_both_a_router_and_the_registry_fails_listen() {
    struct Joins;
    impl SocketRouter for Joins {
        type State = ();
        fn configure(&self, r: &mut SocketRouteBuilder<Self>) {
            r.on("room.join", |_: Arc<Self>, _ctx: SocketContext<()>| async {
                Ok::<_, String>(Value::Null)
            });
        }
    }
    let registry = MessageRegistry::new().on(JoinRoom, |ws: Conn, data| async move {
        ws.subscribe(data.room.topic())
    });
    // In either order.
    let router_first = Ori::create()
        .websocket()
        .socket_router(Joins)
        .message_registry(registry.clone())
        .listen("127.0.0.1:0")
        .await;
    let registry_first = Ori::create()
        .websocket()
        .message_registry(registry)
        .socket_router(Joins)
        .listen("127.0.0.1:0")
        .await;
    for result in [router_first, registry_first] {
        match result {
            Err(Error::Build(BuildError::DuplicateMessageType(t))) => assert_eq!(t, "room.join"),
            Err(other) => panic!("expected a duplicate message type, got {other:?}"),
            Ok(_) => panic!("listen must fail"),
        }
    }
}

/// Rooms a client may join, a service the join authorization consults.
struct OpenRooms(Vec<&'static str>);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_handle_and_the_join_authorization_reach_the_app_too() {
    let kept: Arc<Mutex<Option<Ws>>> = Arc::default();
    let slot = kept.clone();
    let options = WsOptions::new()
        .upgrade(|req| async move { req.query_param("name") })
        // Typed with the base emitter, yet it reaches the app's services.
        .authorize_join(|ws: Conn<String>, topic| async move {
            let open = ws.app().service::<OpenRooms>().expect("registered");
            open.0.contains(&topic.as_str())
        })
        // Without the ping answered, a registry takes `2` as a message.
        .answer_text_ping(false);
    let server = testing::spawn(
        Ori::with_emitter::<Chat>()
            .service(OpenRooms(vec!["lobby"]))
            .websocket_options(options)
            .message_registry(registry())
            .on_websocket(Handlers::new().on_open(move |ws: Ws| {
                let slot = slot.clone();
                async move {
                    *slot.lock().unwrap() = Some(ws);
                }
            })),
    )
    .await;
    let mut ann = server.connect_to("/ws?name=ann", &[]).await.unwrap();
    join(&mut ann, "vault").await;
    assert_eq!(
        ann.recv_json().await,
        json!({ "type": "error", "message": "Forbidden: vault" })
    );
    join(&mut ann, "lobby").await;
    common::wait_for_subscribers(server.app(), "lobby", 1).await;
    ann.send_text("2").await;
    assert_eq!(
        ann.recv_json().await,
        json!({ "type": "error", "message": "Invalid message: expected an object with a string \"type\"" })
    );

    ann.close(1000, "").await;
    common::wait_for_connections(server.app(), 0).await;
    // A handle kept past the close (there is no close handler) still
    // names the rooms the socket was in.
    let ws = kept.lock().unwrap().take().expect("on_open ran");
    let rooms: Vec<String> = ws.rooms().iter().map(|t| t.to_string()).collect();
    assert_eq!(rooms, ["lobby"]);
    assert_eq!(ws.ready_state(), ori::ReadyState::Closed);
    common::stop_server(&server, vec![ann]).await;
}
