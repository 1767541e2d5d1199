//! The provider's figures: its counters, and how they show on the
//! instance's `/metrics`.

use ori_core::ProviderMetric;

/// Counters and state of a [`RedisProvider`](crate::RedisProvider), for metrics and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RedisStats {
    /// Whether both connections are currently up.
    pub connected: bool,
    /// Connections lost since start (each followed by a reconnect attempt).
    pub disconnects: u64,
    /// Connections restored after a loss (channels resubscribed).
    pub reconnects: u64,
    /// Topic and socket channel subscriptions that lost connections held
    /// (each resubscribed once the connection is back, if still needed).
    pub dropped_subscriptions: u64,
    /// Envelopes from Redis that could not be decoded and were dropped.
    pub malformed: u64,
    /// Envelopes received from other instances and delivered locally.
    pub received: u64,
    /// Envelopes published to Redis.
    pub published: u64,
    /// Channels the subscriber connection holds (broadcast and pressure
    /// included).
    pub channels: u64,
    /// Other instances that announced they are behind (the publishes here
    /// that reach them wait for them; see the crate docs, "Backpressure").
    pub instances_behind: u64,
    /// Publishes that waited for another instance to catch up (or for its
    /// grant).
    pub pressure_waits: u64,
    /// Publishes other instances granted this one while they were behind
    /// (one per envelope of this instance's they took from Redis).
    pub pressure_grants: u64,
}

/// [`RedisStats`] as metrics (counters without their `_total` suffix).
pub(crate) fn of(s: &RedisStats) -> Vec<ProviderMetric> {
    vec![
        ProviderMetric::gauge(
            "ori_redis_connected",
            "1 while both connections to Redis are up",
            u64::from(s.connected),
        ),
        ProviderMetric::counter(
            "ori_redis_disconnects",
            "Connections to Redis lost (each followed by reconnect attempts)",
            s.disconnects,
        ),
        ProviderMetric::counter(
            "ori_redis_reconnects",
            "Connections to Redis restored after a loss, channels resubscribed",
            s.reconnects,
        ),
        ProviderMetric::counter(
            "ori_redis_dropped_subscriptions",
            "Topic and socket channel subscriptions that lost connections held (resubscribed once back)",
            s.dropped_subscriptions,
        ),
        ProviderMetric::gauge(
            "ori_redis_channels",
            "Channels the subscriber connection holds",
            s.channels,
        ),
        ProviderMetric::counter(
            "ori_redis_received",
            "Envelopes received from other instances and delivered here",
            s.received,
        ),
        ProviderMetric::counter(
            "ori_redis_published",
            "Envelopes published to Redis",
            s.published,
        ),
        ProviderMetric::counter(
            "ori_redis_malformed",
            "Envelopes from Redis that could not be decoded and were dropped",
            s.malformed,
        ),
        ProviderMetric::gauge(
            "ori_redis_instances_behind",
            "Other instances that announced they are behind",
            s.instances_behind,
        ),
        ProviderMetric::counter(
            "ori_redis_pressure_waits",
            "Publishes that waited for another instance to catch up",
            s.pressure_waits,
        ),
        ProviderMetric::counter(
            "ori_redis_pressure_grants",
            "Publishes other instances granted this one while behind",
            s.pressure_grants,
        ),
    ]
}
