//! `Ori::metrics_route` serves the instance's metrics over HTTP in the
//! Prometheus text format: after real traffic (connections, messages,
//! publishes, a slow consumer closed with 1013, a normal close) every
//! counter holds exactly what happened, closes are counted by code, and
//! the three histograms have buckets, a sum and a count.

use crate::common;

use std::collections::HashMap;
use std::time::Duration;

use common::{command_handlers, subscribe, wait_for_connections, whoami, RawWs, WAIT};
use ori::testing::{self, Received, TestServer};
use ori::{InProcProvider, Ori, WsOptions};

const QUEUE_LIMIT: usize = 16 * 1024;

/// One sample line: name, labels as written (`code="1000"`), value.
type Samples = HashMap<(String, String), f64>;

/// Parses the text exposition; checks every sample has a `# TYPE` line
/// for its family before it.
fn parse(text: &str) -> Samples {
    let mut typed: Vec<String> = Vec::new();
    let mut samples = Samples::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("TYPE name kind");
            assert!(["counter", "gauge", "histogram"].contains(&kind), "{line}");
            typed.push(name.to_owned());
            continue;
        }
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect("sample value");
        let (name, labels) = match series.split_once('{') {
            Some((n, l)) => (n, l.strip_suffix('}').expect("closing brace")),
            None => (series, ""),
        };
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s))
            .filter(|f| typed.iter().any(|t| t == f))
            .unwrap_or(name);
        assert!(typed.iter().any(|t| t == family), "no TYPE before {line}");
        let value = value
            .parse()
            .unwrap_or_else(|_| panic!("bad value: {line}"));
        samples.insert((name.to_owned(), labels.to_owned()), value);
    }
    samples
}

async fn scrape(server: &TestServer) -> (String, Samples) {
    let resp = server.get("/metrics").await;
    assert_eq!(resp.status, 200);
    assert_eq!(
        resp.headers["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let text = resp.text();
    let samples = parse(&text);
    (text, samples)
}

/// Scrapes until `ready` holds or [`WAIT`] has passed (the assertions
/// after it then say what is missing).
async fn scrape_until(server: &TestServer, ready: impl Fn(&Samples) -> bool) -> (String, Samples) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (text, s) = scrape(server).await;
        if ready(&s) || tokio::time::Instant::now() > deadline {
            return (text, s);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn get(samples: &Samples, name: &str, labels: &str) -> f64 {
    *samples
        .get(&(name.to_owned(), labels.to_owned()))
        .unwrap_or_else(|| panic!("no sample {name}{{{labels}}}"))
}

/// The histogram `name` is well formed: cumulative buckets ending in
/// `+Inf`, which equals `_count`. Returns the count.
fn histogram(samples: &Samples, name: &str) -> f64 {
    let bucket = format!("{name}_bucket");
    let mut buckets: Vec<(f64, f64)> = samples
        .iter()
        .filter(|((n, _), _)| *n == bucket)
        .map(|((_, l), v)| {
            let le = l.strip_prefix("le=\"").and_then(|l| l.strip_suffix('"'));
            let le = match le.expect("le label") {
                "+Inf" => f64::INFINITY,
                x => x.parse().expect("numeric le"),
            };
            (le, *v)
        })
        .collect();
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    assert!(buckets.len() >= 5, "{name}: {buckets:?}");
    assert!(
        buckets.windows(2).all(|w| w[0].1 <= w[1].1),
        "{name}: {buckets:?}"
    );
    let (le, inf) = *buckets.last().unwrap();
    assert_eq!(le, f64::INFINITY);
    let count = get(samples, &format!("{name}_count"), "");
    assert_eq!(inf, count, "{name}: +Inf bucket is the count");
    assert!(get(samples, &format!("{name}_sum"), "") >= 0.0);
    count
}

fn payload(n: u64) -> String {
    format!("{n:010}:{}", "x".repeat(1013))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_closes_and_histograms_follow_what_happened() {
    let server = testing::spawn(
        Ori::create()
            .websocket_with(
                InProcProvider::new(),
                WsOptions::new()
                    .outbound_queue_limit(QUEUE_LIMIT)
                    .close_timeout(Duration::from_secs(2)),
            )
            .on_websocket(command_handlers())
            .metrics_route("/metrics"),
    )
    .await;
    let (text, s) = scrape(&server).await;
    for name in [
        "ori_connections_total",
        "ori_messages_in_total",
        "ori_messages_out_total",
        "ori_publishes_total",
        "ori_deliveries_total",
        "ori_slow_consumer_closes_total",
    ] {
        assert!(text.contains(&format!("# TYPE {name} counter")), "{text}");
        assert_eq!(get(&s, name, ""), 0.0, "{name} starts at 0");
    }
    assert!(text.contains("# TYPE ori_connections gauge"));
    assert_eq!(get(&s, "ori_connections", ""), 0.0);
    for name in [
        "ori_delivery_lag_seconds",
        "ori_connection_queue_bytes",
        "ori_upgrade_duration_seconds",
    ] {
        assert!(text.contains(&format!("# TYPE {name} histogram")), "{text}");
        assert_eq!(histogram(&s, name), 0.0, "{name} starts empty");
    }

    let emitter = server.app().socket();
    let mut a = server.connect().await;
    let mut b = server.connect().await;
    subscribe(&mut a, "t").await; // 1 in, 1 out
    subscribe(&mut b, "t").await; // 1 in, 1 out
    let a_id = whoami(&mut a).await; // 1 in, 1 out
    emitter.publish("t", "to both").await.unwrap(); // 1 publish, 2 deliveries
    emitter.publish("nobody-here", "x").await.unwrap(); // 1 publish, 0 deliveries
    emitter.send(a_id, "to a").await.unwrap(); // 1 publish, 1 delivery
    emitter.broadcast("all").await.unwrap(); // 1 publish, 2 deliveries
    for ws in [&mut a, &mut b] {
        assert_eq!(ws.recv().await, Received::Text("to both".into()));
    }
    assert_eq!(a.recv().await, Received::Text("to a".into()));
    for ws in [&mut a, &mut b] {
        assert_eq!(ws.recv().await, Received::Text("all".into()));
    }
    // A writer counts its writes after each chunk of them, so a client can
    // read a frame a moment before it is counted.
    let (_, s) = scrape_until(&server, |s| get(s, "ori_messages_out_total", "") >= 10.0).await;
    assert_eq!(get(&s, "ori_connections", ""), 2.0);
    assert_eq!(get(&s, "ori_messages_in_total", ""), 3.0);
    // 3 replies + 2 + 1 + 2 deliveries, all received above, so written,
    // and the pongs to the two test clients' opening pings.
    assert_eq!(get(&s, "ori_messages_out_total", ""), 10.0);
    assert_eq!(get(&s, "ori_publishes_total", ""), 4.0);
    assert_eq!(get(&s, "ori_deliveries_total", ""), 5.0);

    // A subscriber that stops reading: flooded until its queue overflows.
    let mut slow = RawWs::connect(server.addr(), "/ws", Some(4096)).await;
    slow.send_text("sub:flood").await; // 1 in, 1 out
    assert_eq!(slow.read_text().await, "subscribed:flood");
    let hub = emitter.hub_metrics().expect("websocket configured");
    let mut flooded = 0u64;
    while hub.slow_consumer_closes() == 0 {
        assert!(flooded < 20_000, "never overflowed");
        emitter.publish("flood", payload(flooded)).await.unwrap();
        flooded += 1;
    }
    // It reads now: what was written, then our 1013; it answers the close.
    let close = loop {
        let frame = slow.read_frame(WAIT).await.expect("slow consumer stream");
        if frame.opcode == 8 {
            break frame.close().expect("close code");
        }
    };
    assert_eq!(close.0, 1013, "{close:?}");
    slow.send_close(1013).await;

    // A normal close.
    b.close(1000, "bye").await;
    wait_for_connections(server.app(), 1).await;

    // A close is counted just after the socket leaves the hub.
    let (text, s) = scrape_until(&server, |s| {
        get(s, "ori_closes_total", "code=\"1000\"") >= 1.0
            && get(s, "ori_closes_total", "code=\"1013\"") >= 1.0
    })
    .await;
    assert_eq!(get(&s, "ori_connections", ""), 1.0);
    assert_eq!(get(&s, "ori_connections_total", ""), 3.0);
    assert_eq!(get(&s, "ori_messages_in_total", ""), 4.0);
    assert!(get(&s, "ori_messages_out_total", "") >= 9.0);
    assert_eq!(get(&s, "ori_publishes_total", ""), 4.0 + flooded as f64);
    // The publish that overflowed the queue delivered nothing.
    assert_eq!(
        get(&s, "ori_deliveries_total", ""),
        5.0 + (flooded - 1) as f64
    );
    assert_eq!(get(&s, "ori_slow_consumer_closes_total", ""), 1.0);
    assert_eq!(get(&s, "ori_closes_total", "code=\"1013\""), 1.0, "{text}");
    assert_eq!(get(&s, "ori_closes_total", "code=\"1000\""), 1.0, "{text}");
    assert_eq!(histogram(&s, "ori_upgrade_duration_seconds"), 3.0);
    assert!(histogram(&s, "ori_delivery_lag_seconds") > 0.0);
    assert!(histogram(&s, "ori_connection_queue_bytes") > 0.0);
    assert!(get(&s, "ori_delivery_lag_seconds_sum", "") > 0.0);
    assert!(get(&s, "ori_connection_queue_bytes_sum", "") > 0.0);
    common::stop_server(&server, vec![a]).await;
}

#[tokio::test]
async fn a_metrics_path_another_route_has_fails_at_start() {
    let err = Ori::create()
        .websocket()
        .metrics_route("/ws")
        .listen(("127.0.0.1".parse::<std::net::IpAddr>().unwrap(), 0))
        .await
        .err()
        .expect("duplicate route refused");
    assert!(
        err.to_string().contains("duplicate route: GET /ws"),
        "{err}"
    );
}

#[test]
fn app_without_websocket_renders_zeros() {
    let emitter = ori::SocketEmitter::default();
    assert_eq!(common::metric(&emitter, "ori_connections"), 0);
    assert_eq!(common::metric(&emitter, "ori_deliveries_total"), 0);
    assert_eq!(
        common::metric(&emitter, "ori_delivery_lag_seconds_count"),
        0
    );
}

/// A socket refused before it opened (in-band authentication that fails)
/// was never counted in `ori_connections_total`, so its close is not
/// counted either: the closes never outnumber the connections.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socket_refused_before_it_opened_counts_no_close() {
    let server = testing::spawn(
        Ori::create()
            .websocket_with(
                InProcProvider::new(),
                WsOptions::new().authenticate(|req: ori::AuthRequest<()>| async move {
                    (req.token() == Some("good")).then(|| ori::Authenticated::new(()))
                }),
            )
            .metrics_route("/metrics"),
    )
    .await;
    let mut refused = server.connect().await;
    refused
        .send_json(&serde_json::json!({"type": "auth.authenticate", "token": "bad"}))
        .await;
    assert_eq!(
        refused.expect_close().await,
        Some((1008, "Authentication failed".into()))
    );
    let mut accepted = server.connect().await;
    accepted
        .send_json(&serde_json::json!({"type": "auth.authenticate", "token": "good"}))
        .await;
    assert_eq!(accepted.recv_json().await["name"], "auth.authenticated");
    accepted.close(1000, "bye").await;
    assert!(accepted.expect_close().await.is_some());
    let mut closes = 0.0;
    for _ in 0..200 {
        let (_, s) = scrape(&server).await;
        closes = s
            .get(&("ori_closes_total".to_owned(), "code=\"1000\"".to_owned()))
            .copied()
            .unwrap_or(0.0);
        if closes == 1.0 {
            assert_eq!(get(&s, "ori_connections_total", ""), 1.0);
            assert!(!s.contains_key(&("ori_closes_total".to_owned(), "code=\"1008\"".to_owned())));
            break;
        }
        tokio::time::sleep(WAIT / 200).await;
    }
    assert_eq!(closes, 1.0, "the accepted socket's close is counted");
}
