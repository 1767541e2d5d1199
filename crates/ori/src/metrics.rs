//! Prometheus text exposition of the hub's counters.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

use ori_core::Budget;

use crate::emitter::SocketEmitter;

/// Renders the instance's WebSocket metrics in the Prometheus text format
/// (version 0.0.4): open connections, connections accepted, messages in and
/// out, publishes, deliveries and slow-consumer closes, and the outbound
/// budget: bytes queued, its limit, publishes that waited for room (and for
/// how long), publishes refused, connections shed; and the HTTP server's
/// refusals: connections over `max_http_connections`, failed accepts,
/// request bodies that timed out.
///
/// ```
/// let text = ori::metrics::render(&ori::SocketEmitter::default());
/// assert!(text.contains("ori_connections 0"));
/// ```
pub fn render(emitter: &SocketEmitter) -> String {
    let mut out = String::with_capacity(1024);
    let mut gauge = |name: &str, help: &str, kind: &str, value: u64| {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
        );
    };
    gauge(
        "ori_connections",
        "Open WebSocket connections on this instance.",
        "gauge",
        emitter.connection_count() as u64,
    );
    let m = emitter.hub_metrics();
    let read = |f: fn(&ori_core::HubMetrics) -> &std::sync::atomic::AtomicU64| {
        m.map_or(0, |m| f(m).load(Ordering::Relaxed))
    };
    let counters: [(&str, &str, u64); 6] = [
        (
            "ori_connections_total",
            "WebSocket connections accepted.",
            read(|m| &m.connections_total),
        ),
        (
            "ori_messages_in_total",
            "Data messages received from clients.",
            read(|m| &m.frames_in),
        ),
        (
            "ori_messages_out_total",
            "Frames written to clients.",
            read(|m| &m.frames_out),
        ),
        (
            "ori_publishes_total",
            "Publishes, sends and broadcasts delivered to this instance.",
            read(|m| &m.publishes),
        ),
        (
            "ori_deliveries_total",
            "Frames queued to subscribers by the fan-out.",
            read(|m| &m.deliveries),
        ),
        (
            "ori_slow_consumer_closes_total",
            "Connections closed with 1013 because they read too slowly.",
            read(|m| &m.slow_consumer_closes),
        ),
    ];
    for (name, help, value) in counters {
        gauge(name, help, "counter", value);
    }
    if let Some(broker) = emitter.broker() {
        if let (Some(bytes), Some(topics)) = (broker.history_bytes(), broker.history_topics()) {
            gauge(
                "ori_history_bytes",
                "Bytes held by topic histories in this process (payloads and overhead, capped).",
                "gauge",
                bytes as u64,
            );
            gauge(
                "ori_history_topics",
                "Topics that keep a history in this process.",
                "gauge",
                topics as u64,
            );
        }
    }
    let budget = emitter.broker().map(|b| b.hub().budget());
    let b = |f: fn(&ori_core::Budget) -> u64| budget.map_or(0, |b| f(b));
    let budget_figures: [(&str, &str, &str, u64); 7] = [
        (
            "ori_outbound_queued_bytes",
            "Bytes queued to all connections, not yet written (counted per subscriber).",
            "gauge",
            b(|b| b.used() as u64),
        ),
        (
            "ori_outbound_budget_bytes",
            "The outbound budget: queued bytes past which publishes wait.",
            "gauge",
            b(|b| b.limit() as u64),
        ),
        (
            "ori_publish_waits_total",
            "Publishes (and Redis reads) that waited for room in the outbound budget.",
            "counter",
            b(Budget::waits),
        ),
        (
            "ori_publish_waiting",
            "Publishers (and Redis readers) waiting for room in the outbound budget now.",
            "gauge",
            b(Budget::waiting),
        ),
        (
            "ori_publish_wait_microseconds_total",
            "Time publishes spent waiting for room in the outbound budget.",
            "counter",
            b(|b| b.waited().as_micros() as u64),
        ),
        (
            "ori_publish_overloaded_total",
            "Publishes refused after waiting the publish timeout for room.",
            "counter",
            b(Budget::timeouts),
        ),
        (
            "ori_budget_shed_total",
            "Connections closed with 1013 because the budget was spent and their backlog older than shed_slowest_after.",
            "counter",
            b(Budget::shed_count),
        ),
    ];
    for (name, help, kind, value) in budget_figures {
        gauge(name, help, kind, value);
    }
    let http = emitter.http_counters();
    gauge(
        "ori_http_connections",
        "Open HTTP connections that are not WebSockets.",
        "gauge",
        http.open.load(Ordering::Relaxed),
    );
    let http_figures: [(&str, &str, &AtomicU64); 3] = [
        (
            "ori_http_connections_refused_total",
            "HTTP connections closed at once because max_http_connections were open.",
            &http.refused,
        ),
        (
            "ori_accept_errors_total",
            "Failed accepts (for example out of file descriptors); each backs off.",
            &http.accept_errors,
        ),
        (
            "ori_http_request_timeouts_total",
            "Requests answered 408 because their body did not arrive within the request timeout.",
            &http.request_timeouts,
        ),
    ];
    for (name, help, value) in http_figures {
        gauge(name, help, "counter", value.load(Ordering::Relaxed));
    }
    out
}
