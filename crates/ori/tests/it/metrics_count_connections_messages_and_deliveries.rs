//! `ori::metrics::render` reports, in the Prometheus text format, open
//! connections, connections accepted, messages in and out, publishes and
//! deliveries, each counting exactly what happened.

use crate::common;

use common::{command_server, metric, subscribe, wait_for_connections, whoami};
use ori::testing::Received;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_follow_what_happened() {
    let server = command_server().await;
    let emitter = server.app().socket();
    let text = ori::metrics::render(emitter);
    for name in [
        "ori_connections",
        "ori_connections_total",
        "ori_messages_in_total",
        "ori_messages_out_total",
        "ori_publishes_total",
        "ori_deliveries_total",
        "ori_slow_consumer_closes_total",
    ] {
        assert!(
            text.contains(&format!("# TYPE {name} ")),
            "{name} missing:\n{text}"
        );
        assert_eq!(metric(emitter, name), 0, "{name} starts at 0");
    }

    let mut a = server.connect().await;
    let mut b = server.connect().await;
    subscribe(&mut a, "t").await; // 1 in, 1 out
    subscribe(&mut b, "t").await; // 1 in, 1 out
    let a_id = whoami(&mut a).await; // 1 in, 1 out
    assert_eq!(metric(emitter, "ori_connections"), 2);
    assert_eq!(metric(emitter, "ori_connections_total"), 2);

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

    assert_eq!(metric(emitter, "ori_messages_in_total"), 3);
    // 3 replies + 2 + 1 + 2 deliveries, all received above, so written.
    assert_eq!(metric(emitter, "ori_messages_out_total"), 8);
    assert_eq!(metric(emitter, "ori_publishes_total"), 4);
    assert_eq!(metric(emitter, "ori_deliveries_total"), 5);
    assert_eq!(metric(emitter, "ori_slow_consumer_closes_total"), 0);

    drop(b);
    wait_for_connections(server.app(), 1).await;
    assert_eq!(metric(emitter, "ori_connections"), 1);
    assert_eq!(metric(emitter, "ori_connections_total"), 2);
    common::stop_server(&server, vec![a]).await;
}

#[test]
fn app_without_websocket_renders_zeros() {
    let emitter = ori::SocketEmitter::default();
    assert_eq!(metric(&emitter, "ori_connections"), 0);
    assert_eq!(metric(&emitter, "ori_deliveries_total"), 0);
}
