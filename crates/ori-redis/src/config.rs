//! How to reach Redis and how to behave when it is not there.

use std::time::Duration;

/// What [`Provider::start`](ori_core::Provider::start) does when Redis cannot
/// be reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum StartupPolicy {
    /// Fail at once (after one attempt bounded by the connect timeout) with
    /// an [`ErrorKind::Unavailable`](ori_core::ErrorKind::Unavailable)
    /// [`ProviderError`](ori_core::ProviderError) naming the address and the
    /// cause. The app does not start. The
    /// default: a misconfigured URL shows up at deploy time, not later.
    #[default]
    FailFast,
    /// Keep trying with back-off for up to this long, then fail as
    /// [`FailFast`](StartupPolicy::FailFast) does. For orchestrators that
    /// start Redis and the app together.
    Retry(Duration),
    /// Start at once and connect in the background, with the same back-off
    /// as after a lost connection. Until connected, cross-instance
    /// publishes fail with an error; local delivery works from the start.
    Background,
}

/// Settings of a [`RedisProvider`](crate::RedisProvider).
///
/// ```
/// use std::time::Duration;
/// use ori_redis::{RedisConfig, StartupPolicy};
///
/// let from_url = RedisConfig::url("redis://127.0.0.1:6379/0");
/// let from_parts = RedisConfig::host_port("127.0.0.1", 6379)
///     .db(2)
///     .prefix("chat")
///     .connect_timeout(Duration::from_secs(1))
///     .publish_timeout(Duration::from_millis(500))
///     .startup(StartupPolicy::Retry(Duration::from_secs(30)));
/// assert_eq!(from_parts.connection_url(), "redis://127.0.0.1:6379/2");
/// assert_eq!(from_url.channel_prefix(), "ws");
/// ```
#[derive(Debug, Clone)]
pub struct RedisConfig {
    pub(crate) url: String,
    pub(crate) prefix: String,
    pub(crate) connect_timeout: Duration,
    pub(crate) publish_timeout: Duration,
    pub(crate) startup: StartupPolicy,
    pub(crate) health_check_interval: Duration,
    pub(crate) reconnect_min: Duration,
    pub(crate) reconnect_max: Duration,
    /// Cluster seed nodes; empty: one server at `url`.
    pub(crate) cluster: Vec<String>,
    pub(crate) cross_instance_backpressure: bool,
}

impl RedisConfig {
    /// Connects to `url`: `redis://[[user]:password@]host[:port][/db]`
    /// (also `redis+unix:///path` / `unix:///path`).
    pub fn url(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            prefix: "ws".to_owned(),
            connect_timeout: Duration::from_secs(2),
            publish_timeout: Duration::from_secs(2),
            startup: StartupPolicy::FailFast,
            health_check_interval: Duration::from_secs(5),
            reconnect_min: Duration::from_millis(100),
            reconnect_max: Duration::from_secs(5),
            cluster: Vec::new(),
            cross_instance_backpressure: true,
        }
    }

    /// Whether publishes wait while another instance announces that it is
    /// behind (default: yes). With it, every instance's publishers slow
    /// down to the pace of the slowest instance, and no instance falls so
    /// far behind that Redis drops its subscription; without it, an
    /// instance that cannot keep up loses what Redis drops (see the crate
    /// docs, "Backpressure"). Instances always announce their own state.
    pub fn cross_instance_backpressure(mut self, on: bool) -> Self {
        self.cross_instance_backpressure = on;
        self
    }

    /// Connects to a Redis Cluster (Redis 7.0 or later) through these seed
    /// nodes (`redis://host:port` each; the rest of the cluster is
    /// discovered) and uses **sharded pub/sub**: `SPUBLISH` and
    /// `SSUBSCRIBE`. Each channel lives on the shard that owns its hash
    /// slot, so a message is seen only by that shard's nodes instead of by
    /// every node, and the pub/sub load spreads over the shards. Channel
    /// names, envelopes and delivery semantics are the same as with one
    /// server. ([`db`](Self::db) does not apply to a cluster.)
    ///
    /// ```
    /// let config = ori_redis::RedisConfig::cluster([
    ///     "redis://10.0.0.1:7000",
    ///     "redis://10.0.0.2:7000",
    /// ]);
    /// assert_eq!(config.cluster_nodes().len(), 2);
    /// ```
    #[cfg(feature = "cluster")]
    pub fn cluster<I, S>(nodes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let cluster: Vec<String> = nodes.into_iter().map(Into::into).collect();
        let mut config = Self::url(cluster.first().cloned().unwrap_or_default());
        config.cluster = cluster;
        config
    }

    /// The cluster seed nodes (empty unless built with `cluster`, feature
    /// `cluster`).
    pub fn cluster_nodes(&self) -> &[String] {
        &self.cluster
    }

    /// Connects to `host:port`, database 0 (see [`db`](Self::db)).
    pub fn host_port(host: &str, port: u16) -> Self {
        let host = if host.contains(':') && !host.starts_with('[') {
            format!("[{host}]") // an IPv6 literal
        } else {
            host.to_owned()
        };
        Self::url(format!("redis://{host}:{port}/0"))
    }

    /// Selects database `db` (a `/db` path replaces the URL's own).
    ///
    /// Pub/sub channels are global to a Redis server whatever the database,
    /// so use [`prefix`](Self::prefix), not the database, to separate apps.
    pub fn db(mut self, db: u32) -> Self {
        let base = match self.url.find("://") {
            Some(i) => match self.url[i + 3..].find('/') {
                Some(j) => self.url[..i + 3 + j].to_owned(),
                None => self.url.clone(),
            },
            None => self.url.clone(),
        };
        self.url = format!("{base}/{db}");
        self
    }

    /// The prefix of every channel name (default `ws`): topics go to
    /// `<prefix>:t:<topic>`, broadcasts to `<prefix>:b`, direct sends to
    /// `<prefix>:s:<socketId>`. Instances with the same prefix on the same
    /// Redis form one pub/sub space.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// How long one connection attempt may take (default 2 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How long a publish, send or broadcast waits for Redis before it
    /// fails (default 2 s). While the connection is known to be down,
    /// they fail at once.
    pub fn publish_timeout(mut self, timeout: Duration) -> Self {
        self.publish_timeout = timeout;
        self
    }

    /// What start-up does when Redis is unreachable (default
    /// [`StartupPolicy::FailFast`]).
    pub fn startup(mut self, policy: StartupPolicy) -> Self {
        self.startup = policy;
        self
    }

    /// How often both connections are checked with a `PING` when nothing
    /// else shows they are alive (default 5 s). A dead connection is
    /// usually noticed at once (the socket closes); this catches the silent
    /// kind.
    pub fn health_check_interval(mut self, interval: Duration) -> Self {
        self.health_check_interval = interval.max(Duration::from_millis(10));
        self
    }

    /// Reconnection back-off: the first retry after `min`, doubling up to
    /// `max` (defaults 100 ms and 5 s), each with up to 25% random jitter.
    pub fn reconnect_backoff(mut self, min: Duration, max: Duration) -> Self {
        self.reconnect_min = min.max(Duration::from_millis(1));
        self.reconnect_max = max.max(self.reconnect_min);
        self
    }

    /// The URL connections are opened with.
    pub fn connection_url(&self) -> &str {
        &self.url
    }

    /// The channel prefix.
    pub fn channel_prefix(&self) -> &str {
        &self.prefix
    }

    /// The URL without a password, for messages and logs (for a cluster,
    /// every seed node).
    pub fn redacted_url(&self) -> String {
        if self.cluster.is_empty() {
            return redact(&self.url);
        }
        let nodes: Vec<String> = self.cluster.iter().map(|n| redact(n)).collect();
        format!("cluster [{}]", nodes.join(", "))
    }
}

pub(crate) fn redact(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_owned();
    };
    let rest = &url[scheme_end + 3..];
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{}://***@{}", &url[..scheme_end], &rest[at + 1..]),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_port_and_db_build_the_url() {
        assert_eq!(
            RedisConfig::host_port("::1", 7000).connection_url(),
            "redis://[::1]:7000/0"
        );
        assert_eq!(
            RedisConfig::url("redis://h:1").db(3).connection_url(),
            "redis://h:1/3"
        );
        assert_eq!(
            RedisConfig::url("redis://h:1/5").db(3).connection_url(),
            "redis://h:1/3"
        );
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            RedisConfig::url("redis://user:secret@h:1/0").redacted_url(),
            "redis://***@h:1/0"
        );
        assert_eq!(
            RedisConfig::url("redis://h:1/0").redacted_url(),
            "redis://h:1/0"
        );
    }
}
