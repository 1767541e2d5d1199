//! The integration tests of `ori-redis`, one binary (linked once instead of once
//! per file).

mod a_busy_instance_holds_back_only_publishes_that_reach_it;
mod a_busy_instance_stops_reading_redis_until_its_backlog_drains;
mod cluster_sharded_pubsub;
mod common;
mod cross_instance_publish_send_and_broadcast;
mod fuzz_corpus_replays_without_panic;
mod malformed_envelopes_are_dropped;
mod publishers_go_at_a_busy_instances_pace_by_its_grants;
mod redis_channels_follow_local_subscriptions;
mod redis_outage_is_counted_in_metrics;
mod redis_restart_mid_stream_is_survived;
mod startup_policy;
mod subscribe_unsubscribe_race_converges;
