//! The provider's figures on the instance's `/metrics`.

use ori_core::ProviderMetric;

use crate::RedisStats;

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
