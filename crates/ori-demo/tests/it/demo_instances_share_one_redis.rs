//! Two `ori-demo` processes started with `--redis` on one Redis form one
//! pub/sub space: a notify on B reaches a room member on A, a direct send
//! on B reaches a socket on A, and a broadcast on either reaches both. An
//! unreachable Redis stops the demo at start-up with a clear message.

use crate::common;

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use common::DemoProcess;
use ori::testing::{self, Method, TestResponse, TestSocket};
use ori_redis::testing::RedisServer;
use serde_json::{json, Value};
use tokio::io::AsyncReadExt;
use tokio::process::Command;

const WAIT: Duration = Duration::from_secs(10);

/// One demo process and its address.
struct Demo {
    process: DemoProcess,
    addr: SocketAddr,
}

impl Demo {
    async fn start(redis_url: &str) -> Self {
        let process = DemoProcess::start(&["--redis", redis_url]).await;
        let addr = process.socket_addr();
        Self { process, addr }
    }

    async fn connect(&self) -> TestSocket {
        TestSocket::connect(&format!("ws://{}/ws", self.addr), &[])
            .await
            .expect("connect")
    }

    async fn post(&self, path: &str, body: Value) -> TestResponse {
        testing::http_request(
            self.addr,
            Method::POST,
            path,
            &[("content-type", "application/json")],
            body.to_string().into(),
        )
        .await
    }

    /// SIGTERM, then the exit status must be success.
    async fn stop(mut self) {
        self.process.sigterm();
        let status = tokio::time::timeout(WAIT, self.process.child.wait())
            .await
            .expect("exits in time")
            .expect("wait");
        assert!(status.success(), "{status:?}");
    }
}

async fn whoami(ws: &mut TestSocket) -> String {
    ws.send_json(&json!({"type": "whoami"})).await;
    ws.recv_json().await["data"]["socketId"]
        .as_str()
        .expect("socketId")
        .to_owned()
}

async fn numsub(conn: &mut redis::aio::MultiplexedConnection, channel: &str) -> usize {
    let answer: Vec<(String, usize)> = redis::cmd("PUBSUB")
        .arg("NUMSUB")
        .arg(channel)
        .query_async(conn)
        .await
        .expect("PUBSUB NUMSUB");
    answer[0].1
}

/// Waits until `channel` has `n` subscribers in Redis: the demo joined
/// the room (or registered the socket) upstream, not only locally.
async fn wait_numsub(conn: &mut redis::aio::MultiplexedConnection, channel: &str, n: usize) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while numsub(conn, channel).await != n {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{channel} never reached {n} subscribers"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn kind_and_message(v: &Value) -> (Option<&str>, Option<&str>) {
    (v["type"].as_str(), v["message"].as_str())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_demo_processes_on_one_redis_form_one_pub_sub_space() {
    let redis = RedisServer::start();
    let mut r = redis::Client::open(redis.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .expect("connect to the test Redis");
    let a = Demo::start(&redis.url()).await;
    let b = Demo::start(&redis.url()).await;
    wait_numsub(&mut r, "ws:b", 2).await;

    // A client on A joins a room; a notify on B reaches it.
    let mut on_a = a.connect().await;
    on_a.send_json(&json!({"type": "room.join", "room": "lobby"}))
        .await;
    let a_id = whoami(&mut on_a).await;
    wait_numsub(&mut r, "ws:t:lobby", 1).await;
    let resp = b
        .post("/api/notify/lobby", json!({"message": "from B"}))
        .await;
    assert_eq!(resp.json(), json!({"sent": true}));
    let got = on_a.recv_json().await;
    assert_eq!(
        kind_and_message(&got),
        (Some("notification"), Some("from B"))
    );
    assert!(got["correlationId"].is_string());

    // A direct send on B reaches the socket on A; unknown ids are nowhere.
    wait_numsub(&mut r, &format!("ws:s:{a_id}"), 1).await;
    let resp = b
        .post(&format!("/api/send/{a_id}"), json!({"message": "psst"}))
        .await;
    assert_eq!(resp.json(), json!({"sent": true}));
    let got = on_a.recv_json().await;
    assert_eq!(kind_and_message(&got), (Some("direct"), Some("psst")));
    let unknown = uuid::Uuid::new_v4();
    let resp = b
        .post(&format!("/api/send/{unknown}"), json!({"message": "x"}))
        .await;
    assert_eq!(resp.json(), json!({"sent": false}));

    // A broadcast on either instance reaches the sockets of both.
    let mut on_b = b.connect().await;
    let b_id = whoami(&mut on_b).await;
    wait_numsub(&mut r, &format!("ws:s:{b_id}"), 1).await;
    for (from, text) in [(&a, "from A"), (&b, "from B")] {
        let resp = from.post("/api/broadcast", json!({"message": text})).await;
        assert_eq!(resp.json(), json!({"sent": true}));
        for ws in [&mut on_a, &mut on_b] {
            let got = ws.recv_json().await;
            assert_eq!(kind_and_message(&got), (Some("broadcast"), Some(text)));
        }
    }
    on_a.expect_silence(Duration::from_millis(200)).await;
    on_b.expect_silence(Duration::ZERO).await;

    drop((on_a, on_b));
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_redis_stops_the_demo_at_start_up_with_a_clear_message() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let url = format!("redis://127.0.0.1:{port}");
    let mut child = Command::new(env!("CARGO_BIN_EXE_ori-demo"))
        .args(["--port", "0", "--redis", &url])
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn ori-demo");
    let status = tokio::time::timeout(WAIT, child.wait())
        .await
        .expect("exits in time")
        .expect("wait");
    assert!(!status.success());
    let mut stdout = String::new();
    let mut stderr = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .await
        .unwrap();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .await
        .unwrap();
    assert_eq!(stdout, "", "no listening line");
    assert!(
        stderr.contains(&format!("cannot connect to Redis at {url}")),
        "{stderr}"
    );
}
