//! In-band authentication (PROTOCOL.md section 9), driven over real
//! sockets: a pending socket is in no topic, gets no broadcast, is not
//! counted and has everything but `auth.authenticate` and the `2` ping
//! answered "Not authenticated"; the authenticator's verdict opens it
//! (guards, then `open`) or closes it with 1008; a credential that expires
//! is warned about, refreshed, or ends the connection.

use crate::common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::command_handlers;
use ori::router::{GuardContext, SocketContext, SocketRouteBuilder, SocketRouter};
use ori::testing::{self, TestServer, TestSocket};
use ori::{
    Authenticated, BuildError, Conn, Error, InProcProvider, Ori, StatusCode, Upgrade, WsOptions,
};
use serde_json::{json, Value};

#[derive(Debug, Clone, PartialEq, Eq)]
struct User(String);

/// What the handlers saw, in order.
type Log = Arc<Mutex<Vec<String>>>;

/// Tokens: `t-<name>` authenticates `<name>`; `t-<name>-short` for 1.5 s;
/// `slow` takes 10 s; anything else is refused.
async fn check(req: ori::AuthRequest<User>, log: Log) -> Option<Authenticated<User>> {
    let token = req.token()?.to_owned();
    log.lock().unwrap().push(format!(
        "authenticate {token} refresh={} upgrade={}",
        req.is_refresh(),
        req.upgrade().is_some()
    ));
    if token == "slow" {
        tokio::time::sleep(Duration::from_secs(10)).await;
    }
    // The upgrade request is there, headers and query included.
    if token == "t-upgrade" {
        let up = req.upgrade()?;
        if up.header("x-client") != Some("tests") || up.query_param("app").as_deref() != Some("1") {
            return None;
        }
    }
    let name = token.strip_prefix("t-")?;
    let (name, ttl) = match name.strip_suffix("-short") {
        Some(name) => (name, Some(Duration::from_millis(1500))),
        None => (name, None),
    };
    // A refresh must be for the same user.
    if let Some(conn) = req.conn() {
        if conn.data().0 != name {
            return None;
        }
    }
    let auth = Authenticated::new(User(name.to_owned()));
    Some(match ttl {
        Some(ttl) => auth.expires_in(ttl),
        None => auth,
    })
}

/// Records the guard's view: the data and whether the socket was counted.
struct Audit(Log);

impl SocketRouter<User> for Audit {
    type State = ();
    fn configure(&self, r: &mut SocketRouteBuilder<Self, User>) {
        let log = self.0.clone();
        r.connection_guard(move |ctx: GuardContext<(), User>| {
            let log = log.clone();
            async move {
                log.lock()
                    .unwrap()
                    .push(format!("guard {}", ctx.user_data().0));
                Ok::<_, ori::router::BoxError>(ctx.user_data().0 != "mallory")
            }
        });
        r.on("me", Self::me);
    }
}

impl Audit {
    async fn me(self: Arc<Self>, ctx: SocketContext<(), User>) -> Result<Value, String> {
        Ok(json!(ctx.user_data().0))
    }
}

async fn server(options: WsOptions<User>, log: Log) -> TestServer {
    let (open_log, close_log) = (log.clone(), log.clone());
    testing::spawn(
        Ori::create()
            .websocket_with(InProcProvider::new(), options)
            .socket_router(Audit(log.clone()))
            .on_websocket(
                command_handlers::<User, _>()
                    .on_open(move |ws: Conn<User>| {
                        let log = open_log.clone();
                        async move { log.lock().unwrap().push(format!("open {}", ws.data().0)) }
                    })
                    .on_close(move |ws: Conn<User>, code, _| {
                        let log = close_log.clone();
                        async move {
                            log.lock()
                                .unwrap()
                                .push(format!("close {} {code}", ws.data().0))
                        }
                    }),
            ),
    )
    .await
}

async fn in_band(log: &Log) -> TestServer {
    let l = log.clone();
    let options = WsOptions::new()
        .auth_timeout(Duration::from_millis(800))
        .close_timeout(Duration::from_millis(300))
        .authenticate(move |req| check(req, l.clone()));
    server(options, log.clone()).await
}

async fn authenticate(ws: &mut TestSocket, token: &str) -> Value {
    ws.send_json(&json!({"type": "auth.authenticate", "token": token}))
        .await;
    ws.recv_json().await
}

fn logged(log: &Log) -> Vec<String> {
    log.lock().unwrap().clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pending_socket_is_answered_not_authenticated_until_it_authenticates() {
    let log = Log::default();
    let server = in_band(&log).await;
    let mut ws = server.connect().await;
    ws.send_text("2").await;
    assert_eq!(ws.recv_text().await, "3", "the ping works while pending");
    for frame in [
        json!({"type": "me"}).to_string(),
        "sub:news".into(),
        "not json".into(),
    ] {
        ws.send_text(frame).await;
        assert_eq!(
            ws.recv_json().await,
            json!({"type": "error", "message": "Not authenticated"})
        );
    }
    assert_eq!(server.app().connection_count(), 0, "pending is not counted");
    assert!(logged(&log).is_empty(), "no guard, no handler: {log:?}");

    let reply = authenticate(&mut ws, "t-alice").await;
    assert_eq!(reply["name"], "auth.authenticated");
    assert!(reply["data"]["expiresIn"].is_null());
    assert!(reply["timestamp"].is_u64());
    ws.send_text("whoami").await;
    assert_eq!(
        Value::from(ws.recv_text().await),
        reply["data"]["socketId"],
        "the reply names the socket"
    );
    ws.send_json(&json!({"type": "me"})).await;
    assert_eq!(ws.recv_json().await["data"], "alice");
    assert_eq!(server.app().connection_count(), 1);
    assert_eq!(
        logged(&log),
        [
            "authenticate t-alice refresh=false upgrade=true",
            "guard alice",
            "open alice"
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_authenticator_sees_the_upgrade_request() {
    let log = Log::default();
    let server = in_band(&log).await;
    let mut ws = server
        .connect_to("/ws?app=1", &[("x-client", "tests")])
        .await
        .unwrap();
    assert_eq!(
        authenticate(&mut ws, "t-upgrade").await["name"],
        "auth.authenticated"
    );
    let mut ws = server
        .connect_to("/ws?app=2", &[("x-client", "tests")])
        .await
        .unwrap();
    ws.send_json(&json!({"type": "auth.authenticate", "token": "t-upgrade"}))
        .await;
    assert_eq!(
        ws.expect_close().await,
        Some((1008, "Authentication failed".into()))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pending_socket_gets_no_broadcast_and_is_in_no_topic() {
    let log = Log::default();
    let server = in_band(&log).await;
    let mut member = server.connect().await;
    authenticate(&mut member, "t-bob").await;
    let mut pending = server.connect().await;
    // The pending socket is up (it answers) before the broadcast.
    pending.send_text("2").await;
    assert_eq!(pending.recv_text().await, "3");
    server
        .app()
        .socket()
        .broadcast("to everyone")
        .await
        .unwrap();
    assert_eq!(member.recv_text().await, "to everyone");
    pending.expect_silence(Duration::from_millis(200)).await;
    // Once authenticated, it is in the broadcast like anyone.
    authenticate(&mut pending, "t-carol").await;
    server.app().socket().broadcast("again").await.unwrap();
    assert_eq!(pending.recv_text().await, "again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_credential_closes_with_1008_and_opens_nothing() {
    let log = Log::default();
    let server = in_band(&log).await;
    let mut ws = server.connect().await;
    ws.send_json(&json!({"type": "auth.authenticate", "token": "wrong"}))
        .await;
    assert_eq!(
        ws.expect_close().await,
        Some((1008, "Authentication failed".into()))
    );
    // No token field at all is a refusal too.
    let mut ws = server.connect().await;
    ws.send_json(&json!({"type": "auth.authenticate", "apiKey": 1}))
        .await;
    assert_eq!(
        ws.expect_close().await,
        Some((1008, "Authentication failed".into()))
    );
    // A guard that refuses after authentication closes like any guard.
    let mut ws = server.connect().await;
    ws.send_json(&json!({"type": "auth.authenticate", "token": "t-mallory"}))
        .await;
    assert_eq!(ws.recv_json().await["name"], "auth.authenticated");
    assert_eq!(
        ws.expect_close().await,
        Some((1008, "Connection rejected by guard".into()))
    );
    let seen = logged(&log);
    assert!(
        !seen
            .iter()
            .any(|l| l.starts_with("open") || l.starts_with("close")),
        "neither open nor close ran: {seen:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_credential_in_time_closes_with_1008_authentication_timeout() {
    let log = Log::default();
    let server = in_band(&log).await;
    let mut silent = server.connect().await;
    // An authenticator that does not answer in time counts as none.
    let mut slow = server.connect().await;
    slow.send_json(&json!({"type": "auth.authenticate", "token": "slow"}))
        .await;
    for ws in [&mut silent, &mut slow] {
        assert_eq!(
            ws.expect_close().await,
            Some((1008, "Authentication timeout".into()))
        );
    }
    assert_eq!(server.app().connection_count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expiring_credential_is_warned_about_then_closes_without_a_refresh() {
    let log = Log::default();
    let server = in_band(&log).await;
    let mut ws = server.connect().await;
    let reply = authenticate(&mut ws, "t-dave-short").await;
    assert_eq!(reply["data"]["expiresIn"], 2, "1.5 s rounds up");
    let warning = ws.recv_json().await;
    assert_eq!(warning["name"], "auth.expiring");
    assert_eq!(warning["data"]["expiresIn"], 1);
    assert_eq!(
        ws.expect_close().await,
        Some((1008, "Token expired".into()))
    );
    common::wait_until("the close handler ran", || {
        logged(&log).contains(&"close dave 1008".to_owned())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refresh_extends_the_credential_and_a_refused_refresh_closes() {
    let log = Log::default();
    let server = in_band(&log).await;
    let mut ws = server.connect().await;
    authenticate(&mut ws, "t-erin-short").await;
    // Refresh at each warning, three times: the connection outlives the
    // first credential by far.
    for _ in 0..3 {
        assert_eq!(ws.recv_json().await["name"], "auth.expiring");
        let reply = authenticate(&mut ws, "t-erin-short").await;
        assert_eq!(reply["name"], "auth.authenticated");
        assert_eq!(reply["data"]["expiresIn"], 2);
    }
    ws.send_json(&json!({"type": "me"})).await;
    assert_eq!(ws.recv_json().await["data"], "erin", "still open");
    // A refresh for another user is refused.
    ws.send_json(&json!({"type": "auth.authenticate", "token": "t-frank"}))
        .await;
    assert_eq!(
        ws.expect_close().await,
        Some((1008, "Authentication failed".into()))
    );
    let refreshes = logged(&log)
        .iter()
        .filter(|l| l.contains("refresh=true upgrade=false"))
        .count();
    assert_eq!(refreshes, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refresh_without_expiry_ends_the_clock_and_never_reaches_the_handlers() {
    let log = Log::default();
    let server = in_band(&log).await;
    let mut ws = server.connect().await;
    authenticate(&mut ws, "t-gina-short").await;
    let reply = authenticate(&mut ws, "t-gina").await;
    assert!(reply["data"]["expiresIn"].is_null());
    // Past the first credential's expiry: no warning, no close.
    ws.expect_silence(Duration::from_millis(1800)).await;
    ws.send_text("whoami").await;
    assert!(!ws.recv_text().await.contains("error"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrade_time_and_in_band_authentication_work_side_by_side() {
    let log = Log::default();
    let l = log.clone();
    let options = WsOptions::new()
        .upgrade(|req| async move {
            match req.bearer_token() {
                None => Upgrade::Pending,
                Some("t-hal") => Upgrade::Accept(
                    Authenticated::new(User("hal".into())).expires_in(Duration::from_millis(1500)),
                ),
                Some(_) => Upgrade::Reject,
            }
        })
        .authenticate(move |req| check(req, l.clone()));
    let server = server(options, log.clone()).await;
    // A token on the upgrade: open at once, and its expiry applies.
    let mut ws = server
        .connect_to("/ws", &[("authorization", "Bearer t-hal")])
        .await
        .unwrap();
    ws.send_json(&json!({"type": "me"})).await;
    assert_eq!(ws.recv_json().await["data"], "hal");
    assert_eq!(ws.recv_json().await["name"], "auth.expiring");
    authenticate(&mut ws, "t-hal").await;
    // A wrong one: 401 before any upgrade.
    match server
        .connect_to("/ws", &[("authorization", "Bearer nope")])
        .await
    {
        Err(testing::ConnectError::Status(s)) => assert_eq!(s, StatusCode::UNAUTHORIZED),
        other => panic!("expected 401, got {:?}", other.map(|_| ())),
    }
    // None: pending, then in band.
    let mut ws = server.connect().await;
    ws.send_json(&json!({"type": "me"})).await;
    assert_eq!(ws.recv_json().await["message"], "Not authenticated");
    authenticate(&mut ws, "t-ivy").await;
    ws.send_json(&json!({"type": "me"})).await;
    assert_eq!(ws.recv_json().await["data"], "ivy");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_closes_pending_sockets_with_1001() {
    let log = Log::default();
    let server = in_band(&log).await;
    let mut ws = server.connect().await;
    ws.send_text("2").await;
    assert_eq!(ws.recv_text().await, "3");
    let (_, close) = tokio::join!(server.stop(), ws.expect_close());
    assert_eq!(close, Some((1001, "Server shutting down".into())));
}

#[tokio::test]
async fn an_authenticator_of_another_user_data_type_fails_listen() {
    let options = WsOptions::new()
        .upgrade(|_| async { Some(7u32) })
        .authenticate(|_| async { Some(Authenticated::new("x".to_owned())) });
    let err = Ori::create()
        .websocket_with(InProcProvider::new(), options)
        .listen("127.0.0.1:0")
        .await
        .err()
        .expect("listen must fail");
    assert!(
        matches!(&err, Error::Build(BuildError::Order(m)) if m.contains("same user data type")),
        "{err}"
    );
}

/// Counts how often the authenticator ran, for the flood case.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_before_authentication_never_reach_the_authenticator_or_handlers() {
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let options = WsOptions::new().authenticate(move |req| {
        c.fetch_add(1, Ordering::SeqCst);
        async move { (req.token() == Some("ok")).then(|| Authenticated::new(User("ok".into()))) }
    });
    let log = Log::default();
    let server = server(options, log.clone()).await;
    let mut ws = server.connect().await;
    for i in 0..50 {
        ws.send_json(&json!({"type": "room.join", "room": format!("r{i}")}))
            .await;
    }
    for _ in 0..50 {
        assert_eq!(ws.recv_json().await["message"], "Not authenticated");
    }
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    assert!(logged(&log).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_sockets_count_against_the_connection_limit_until_they_end() {
    let log = Log::default();
    let l = log.clone();
    let options = WsOptions::new()
        .max_connections(2)
        .auth_timeout(Duration::from_millis(400))
        .close_timeout(Duration::from_millis(200))
        .authenticate(move |req| check(req, l.clone()));
    let server = server(options, log.clone()).await;
    let mut first = server.connect().await;
    let mut second = server.connect().await;
    // A flood of sockets that never authenticate is bounded by the limit.
    match server.connect_to("/ws", &[]).await {
        Err(testing::ConnectError::Status(s)) => assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE),
        other => panic!("expected 503, got {:?}", other.map(|_| ())),
    }
    // One authenticates (and stays counted, now as a connection); the
    // other times out and frees its place.
    authenticate(&mut first, "t-judy").await;
    assert_eq!(
        second.expect_close().await,
        Some((1008, "Authentication timeout".into()))
    );
    let mut third = None;
    for _ in 0..100 {
        if let Ok(ws) = server.connect_to("/ws", &[]).await {
            third = Some(ws);
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut third = third.expect("the timed-out socket's place is free again");
    authenticate(&mut third, "t-ken").await;
    assert_eq!(server.app().connection_count(), 2);
    match server.connect_to("/ws", &[]).await {
        Err(testing::ConnectError::Status(s)) => assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE),
        other => panic!("expected 503, got {:?}", other.map(|_| ())),
    }
}

/// An app whose authenticator takes `slow-<ms>` milliseconds for such a
/// token, grants 2 s, subscribes every socket to `room` and records drains.
async fn timed(auth_timeout: Duration, drains: Log) -> TestServer {
    let options = WsOptions::new()
        .auth_timeout(auth_timeout)
        .close_timeout(Duration::from_millis(300))
        .outbound_queue_limit(256 << 20)
        .outbound_budget(256 << 20)
        .max_message_size(1 << 20)
        .auth_message_limit(16 << 10)
        .authenticate(|req| async move {
            if let Some(ms) = req.token()?.strip_prefix("slow-") {
                tokio::time::sleep(Duration::from_millis(ms.parse().ok()?)).await;
            }
            Some(Authenticated::new(User("u".into())).expires_in(Duration::from_secs(2)))
        });
    testing::spawn(
        Ori::create()
            .websocket_with(InProcProvider::new(), options)
            .on_websocket(
                command_handlers::<User, _>()
                    .on_open(|ws: Conn<User>| async move { ws.subscribe("room").map(|_| ()) })
                    .on_drain(move |ws: Conn<User>| {
                        let drains = drains.clone();
                        async move { drains.lock().unwrap().push(ws.data().0.clone()) }
                    }),
            ),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refresh_slower_than_the_expiry_ends_with_token_expired() {
    let server = timed(Duration::from_secs(10), Log::default()).await;
    let mut ws = server.connect().await;
    authenticate(&mut ws, "t").await;
    assert_eq!(ws.recv_json().await["name"], "auth.expiring");
    // The authenticator answers after the credential lapsed (at 2 s): the
    // socket must not live on meanwhile.
    ws.send_json(&json!({"type": "auth.authenticate", "token": "slow-4000"}))
        .await;
    assert_eq!(
        ws.expect_close().await,
        Some((1008, "Token expired".into()))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refresh_that_times_out_keeps_the_credential_until_its_expiry() {
    let server = timed(Duration::from_millis(200), Log::default()).await;
    let mut ws = server.connect().await;
    authenticate(&mut ws, "t").await;
    assert_eq!(ws.recv_json().await["name"], "auth.expiring");
    // A slow backend is not a wrong token: no close, no reply.
    ws.send_json(&json!({"type": "auth.authenticate", "token": "slow-600"}))
        .await;
    ws.send_text("whoami").await;
    assert!(
        ws.recv_text().await.len() == 36,
        "still open after the timeout"
    );
    // A refresh that does answer renews it.
    let reply = authenticate(&mut ws, "t").await;
    assert_eq!(reply["name"], "auth.authenticated");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pending_socket_may_not_send_large_messages_an_open_one_may() {
    let server = timed(Duration::from_secs(5), Log::default()).await;
    let big = format!(
        r#"{{"type":"auth.authenticate","token":"t","pad":"{}"}}"#,
        "x".repeat(20 << 10)
    );
    let mut ws = server.connect().await;
    ws.send_text(big.clone()).await;
    assert_eq!(ws.expect_close().await.map(|(code, _)| code), Some(1009));
    // Once authenticated the usual limit applies.
    let mut ws = server.connect().await;
    authenticate(&mut ws, "t").await;
    let echo = "y".repeat(100 << 10);
    ws.send_text(echo.clone()).await;
    assert_eq!(ws.recv_text().await, echo);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pending_socket_that_pushes_back_never_reaches_the_drain_handler() {
    let drains = Log::default();
    let server = timed(Duration::from_secs(30), drains.clone()).await;
    // A small receive buffer and a flood of messages, each answered "Not
    // authenticated": the socket pushes back, then drains as we read.
    let mut raw = common::RawWs::connect(server.addr(), "/ws", Some(4096)).await;
    let mut burst = Vec::new();
    for _ in 0..20_000 {
        burst.extend_from_slice(&common::client_frame(true, 0x1, b"x"));
    }
    for _ in 0..5 {
        raw.send_bytes(&burst).await;
    }
    let mut replies = 0;
    while replies < 100_000 {
        let frame = raw.read_frame(Duration::from_secs(5)).await.unwrap();
        assert!(frame.payload.starts_with(br#"{"type":"error""#));
        replies += 1;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(logged(&drains).is_empty(), "{:?}", logged(&drains));
}
