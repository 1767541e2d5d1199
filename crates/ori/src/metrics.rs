//! The instance's metrics in the Prometheus text exposition format
//! (version 0.0.4, [`CONTENT_TYPE`]), built with `prometheus-client`.
//!
//! Serve them with [`Ori::metrics_route`](crate::Ori::metrics_route), or
//! render them yourself with [`render`]. What is exposed:
//!
//! - connections: `ori_connections` (open now), `ori_connections_total`
//!   (accepted), `ori_closes_total{code}` (those that ended, by close
//!   code);
//! - traffic: `ori_messages_in_total`, `ori_messages_out_total`,
//!   `ori_publishes_total`, `ori_deliveries_total`,
//!   `ori_slow_consumer_closes_total`;
//! - histograms: `ori_delivery_lag_seconds` (per batch of frames a writer
//!   takes from a connection: from its oldest frame being queued to the
//!   batch's last byte written),
//!   `ori_connection_queue_bytes` (what one connection has queued when its
//!   writer takes it), `ori_upgrade_duration_seconds` (from the upgrade
//!   request to its `101` answer);
//! - the outbound budget, the HTTP server's refusals, the in-process
//!   history, and whatever the provider reports (the Redis provider's
//!   reconnects and dropped subscriptions, for one).
//!
//! The hub counts once per publication; a writer observes once per batch
//! it finishes (one clock reading each) and adds a chunk's observations to
//! the shared atomics at once.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::time::Duration;

use ori_core::{Budget, MetricKind};
use prometheus_client::encoding::prometheus_text;
use prometheus_client::encoding::{EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::{Registry, Unit};

use crate::emitter::SocketEmitter;

mod histogram;

use histogram::{Histogram, Tally, BYTES, MICROS};

/// The `Content-Type` of [`render`]'s output: the Prometheus text format,
/// version 0.0.4.
pub const CONTENT_TYPE: &str = prometheus_text::CONTENT_TYPE;

/// The close-code label of `ori_closes_total`: the code itself below 3000
/// (the codes of RFC 6455, a bounded set), and the class `3xxx` or `4xxx`
/// for the registered and application codes, so that clients choosing
/// codes cannot make the series grow without bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct CloseLabel(u16);

impl CloseLabel {
    fn of(code: u16) -> Self {
        Self(if code >= 3000 { code / 1000 } else { code })
    }
}

impl EncodeLabelValue for CloseLabel {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), std::fmt::Error> {
        match self.0 {
            class @ 3..=9 => write!(encoder, "{class}xxx"),
            code => write!(encoder, "{code}"),
        }
    }
}

type CloseLabels = [(&'static str, CloseLabel); 1];

/// The server's own figures of one app: messages in and out, closes by
/// code and the three histograms. Shared by every connection of the app
/// (cheap to clone: handles on atomics). The hub's counters are the hub's
/// ([`SocketEmitter::hub_metrics`]).
#[derive(Debug, Clone)]
pub struct Metrics {
    messages_in: Counter,
    messages_out: Counter,
    closes: Family<CloseLabels, Counter>,
    delivery_lag: Histogram<{ MICROS.len() }>,
    queue_bytes: Histogram<{ BYTES.len() }>,
    upgrade_time: Histogram<{ MICROS.len() }>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            messages_in: Counter::default(),
            messages_out: Counter::default(),
            closes: Family::default(),
            delivery_lag: Histogram::new(MICROS, 1e6),
            queue_bytes: Histogram::new(BYTES, 1.0),
            upgrade_time: Histogram::new(MICROS, 1e6),
        }
    }
}

impl Metrics {
    /// Data messages received from clients.
    pub fn messages_in(&self) -> u64 {
        self.messages_in.get()
    }

    /// Frames (messages, control frames and close frames) written to
    /// clients.
    pub fn messages_out(&self) -> u64 {
        self.messages_out.get()
    }

    /// Connections that ended with close `code` (codes from 3000 on are
    /// counted by class: 3000 to 3999 together, 4000 to 4999 together).
    pub fn closes(&self, code: u16) -> u64 {
        let labels = [("code", CloseLabel::of(code))];
        self.closes.get(&labels).map_or(0, |c| c.get())
    }

    pub(crate) fn count_message_in(&self) {
        self.messages_in.inc();
    }

    /// A connection ended with `code` (once per connection).
    pub(crate) fn count_close(&self, code: u16) {
        self.closes
            .get_or_create(&[("code", CloseLabel::of(code))])
            .inc();
    }

    /// An upgrade was answered `101`, `took` after its request arrived.
    pub(crate) fn observe_upgrade(&self, took: Duration) {
        self.upgrade_time
            .observe(u64::try_from(took.as_micros()).unwrap_or(u64::MAX));
    }

    /// Delivery-lag observations and their sum in microseconds.
    #[cfg(test)]
    pub(crate) fn lag(&self) -> (u64, u64) {
        (self.delivery_lag.count(), self.delivery_lag.sum())
    }

    /// Queue-depth observations.
    #[cfg(test)]
    pub(crate) fn queue_depths(&self) -> u64 {
        self.queue_bytes.count()
    }

    fn register(&self, r: &mut Registry) {
        r.register(
            "ori_messages_in",
            "Data messages received from clients",
            self.messages_in.clone(),
        );
        r.register(
            "ori_messages_out",
            "Frames written to clients",
            self.messages_out.clone(),
        );
        r.register(
            "ori_closes",
            "WebSocket connections ended, by close code (1006: no close frame; 3xxx and 4xxx: registered and application codes, by class)",
            self.closes.clone(),
        );
        r.register_with_unit(
            "ori_delivery_lag",
            "Age of the oldest frame of a write when its last byte is written: from a publication being queued to an idle connection to the write that carries it, one observation per write",
            Unit::Seconds,
            self.delivery_lag.clone(),
        );
        r.register_with_unit(
            "ori_connection_queue",
            "Bytes queued to one connection, not yet written, when its writer takes them, one observation per write",
            Unit::Bytes,
            self.queue_bytes.clone(),
        );
        r.register_with_unit(
            "ori_upgrade_duration",
            "Time from a WebSocket upgrade request to its 101 answer (handshake checks and the upgrade handler)",
            Unit::Seconds,
            self.upgrade_time.clone(),
        );
    }
}

/// What one writer pass (or one flush of a connection's own task) saw,
/// gathered without atomics and added to [`Metrics`] at once.
#[derive(Debug, Default)]
pub(crate) struct WriteTally {
    frames: u64,
    lag: Tally<{ MICROS.len() }>,
    queue: Tally<{ BYTES.len() }>,
}

impl WriteTally {
    /// `n` frames were written completely.
    pub(crate) fn frames(&mut self, n: u64) {
        self.frames += n;
    }

    /// A write's oldest frame was queued `micros` before its last byte
    /// was written.
    pub(crate) fn lag(&mut self, micros: u32) {
        self.lag.observe(&MICROS, u64::from(micros));
    }

    /// The writer took a connection's queue with `bytes` not yet written.
    pub(crate) fn queued(&mut self, bytes: usize) {
        self.queue.observe(&BYTES, bytes as u64);
    }

    /// Adds what was gathered to `metrics` and starts afresh.
    pub(crate) fn commit(&mut self, metrics: &Metrics) {
        if self.frames > 0 {
            metrics
                .messages_out
                .inc_by(std::mem::take(&mut self.frames));
        }
        metrics.delivery_lag.add(&mut self.lag);
        metrics.queue_bytes.add(&mut self.queue);
    }
}

fn counter(r: &mut Registry, name: &str, help: &str, value: u64) {
    r.register(name, help, ConstCounter::new(value));
}

fn gauge(r: &mut Registry, name: &str, help: &str, value: u64) {
    r.register(name, help, ConstGauge::new(value));
}

/// Renders the instance's metrics in the Prometheus text format (version
/// 0.0.4, served as [`CONTENT_TYPE`]): connections, messages in and out,
/// publishes, deliveries, closes by code, slow-consumer closes, the three
/// histograms, the outbound budget, the HTTP server's refusals, the
/// in-process history and the provider's own figures. See the module
/// documentation for what each measures.
///
/// ```
/// let text = ori::metrics::render(&ori::SocketEmitter::default());
/// assert!(text.contains("\nori_connections 0\n"));
/// assert!(text.contains("ori_delivery_lag_seconds_count 0"));
/// ```
pub fn render(emitter: &SocketEmitter) -> String {
    let mut r = Registry::default();
    gauge(
        &mut r,
        "ori_connections",
        "Open WebSocket connections on this instance",
        emitter.connection_count() as u64,
    );
    let hub = emitter.hub_metrics();
    let h = |f: fn(&ori_core::HubMetrics) -> u64| hub.map_or(0, f);
    counter(
        &mut r,
        "ori_connections",
        "WebSocket connections accepted",
        h(ori_core::HubMetrics::connections_total),
    );
    let own = emitter.metrics();
    own.register(&mut r);
    counter(
        &mut r,
        "ori_publishes",
        "Publishes, sends and broadcasts delivered to this instance",
        h(ori_core::HubMetrics::publishes),
    );
    counter(
        &mut r,
        "ori_deliveries",
        "Frames queued to subscribers by the fan-out",
        h(ori_core::HubMetrics::deliveries),
    );
    counter(
        &mut r,
        "ori_slow_consumer_closes",
        "Connections closed with 1013 because they read too slowly",
        h(ori_core::HubMetrics::slow_consumer_closes),
    );
    if let Some(broker) = emitter.broker() {
        if let (Some(bytes), Some(topics)) = (broker.history_bytes(), broker.history_topics()) {
            gauge(
                &mut r,
                "ori_history_bytes",
                "Bytes held by topic histories in this process (payloads and overhead, capped)",
                bytes as u64,
            );
            gauge(
                &mut r,
                "ori_history_topics",
                "Topics that keep a history in this process",
                topics as u64,
            );
        }
    }
    register_budget(&mut r, emitter.broker().map(|b| &**b.hub().budget()));
    let http = emitter.http_counters();
    gauge(
        &mut r,
        "ori_http_connections",
        "Open HTTP connections that are not WebSockets",
        http.open.load(Ordering::Relaxed),
    );
    for (name, help, value) in [
        (
            "ori_http_connections_refused",
            "HTTP connections closed at once because max_http_connections were open",
            &http.refused,
        ),
        (
            "ori_accept_errors",
            "Failed accepts (for example out of file descriptors); each backs off",
            &http.accept_errors,
        ),
        (
            "ori_http_request_timeouts",
            "Requests answered 408 because their body did not arrive within the request timeout",
            &http.request_timeouts,
        ),
    ] {
        counter(&mut r, name, help, value.load(Ordering::Relaxed));
    }
    for m in emitter
        .broker()
        .map(|b| b.provider_metrics())
        .unwrap_or_default()
    {
        match m.kind {
            MetricKind::Counter => counter(&mut r, m.name, m.help, m.value),
            MetricKind::Gauge => gauge(&mut r, m.name, m.help, m.value),
        }
    }
    let mut out = String::with_capacity(8 * 1024);
    // Writing to a `String` cannot fail.
    let _ = prometheus_text::encode(&mut out, &r);
    out
}

fn register_budget(r: &mut Registry, budget: Option<&Budget>) {
    let b = |f: fn(&Budget) -> u64| budget.map_or(0, f);
    gauge(
        r,
        "ori_outbound_queued_bytes",
        "Bytes queued to all connections, not yet written (counted per subscriber)",
        b(|b| b.used() as u64),
    );
    gauge(
        r,
        "ori_outbound_budget_bytes",
        "The outbound budget: queued bytes past which publishes wait",
        b(|b| b.limit() as u64),
    );
    counter(
        r,
        "ori_publish_waits",
        "Publishes (and Redis reads) that waited for room in the outbound budget",
        b(Budget::waits),
    );
    gauge(
        r,
        "ori_publish_waiting",
        "Publishers (and Redis readers) waiting for room in the outbound budget now",
        b(Budget::waiting),
    );
    counter(
        r,
        "ori_publish_wait_microseconds",
        "Time publishes spent waiting for room in the outbound budget",
        b(|b| b.waited().as_micros() as u64),
    );
    counter(
        r,
        "ori_publish_overloaded",
        "Publishes refused after waiting the publish timeout for room",
        b(Budget::timeouts),
    );
    counter(
        r,
        "ori_budget_shed",
        "Connections closed with 1013 because the budget was spent and their backlog older than shed_slowest_after",
        b(Budget::shed_count),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_codes_are_labelled_exactly_below_3000_and_by_class_above() {
        let m = Metrics::default();
        for code in [1000, 1000, 1013, 1006, 4001, 4999, 3000] {
            m.count_close(code);
        }
        assert_eq!((m.closes(1000), m.closes(1013), m.closes(1006)), (2, 1, 1));
        assert_eq!((m.closes(4000), m.closes(3999)), (2, 1));
        let text = render(&SocketEmitter::default());
        assert!(!text.contains("ori_closes_total{"), "a fresh app has none");
        let mut r = Registry::default();
        m.register(&mut r);
        let mut text = String::new();
        prometheus_text::encode(&mut text, &r).unwrap();
        for line in [
            "ori_closes_total{code=\"1000\"} 2",
            "ori_closes_total{code=\"4xxx\"} 2",
            "ori_closes_total{code=\"3xxx\"} 1",
        ] {
            assert!(text.contains(line), "{line} missing in\n{text}");
        }
    }

    #[test]
    fn a_tally_reaches_the_counters_and_histograms_when_committed() {
        let m = Metrics::default();
        let mut t = WriteTally::default();
        t.frames(3);
        t.lag(1_500);
        t.queued(300);
        assert_eq!(m.messages_out(), 0);
        t.commit(&m);
        assert_eq!((m.messages_out(), m.delivery_lag.count()), (3, 1));
        assert_eq!(m.queue_bytes.count(), 1);
        assert_eq!(m.delivery_lag.sum(), 1_500);
        t.commit(&m);
        assert_eq!(m.messages_out(), 3, "committed once");
    }
}
