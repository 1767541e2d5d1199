//! The values the [`WsOptions`](super::WsOptions) builder sets: limits,
//! timeouts and the instance's outbound budget, read by the upgrade, the
//! connection tasks and the writers.

use std::time::Duration;

/// Limits and timeouts of WebSocket connections.
#[derive(Debug, Clone)]
pub(crate) struct Limits {
    pub upgrade_timeout: Duration,
    pub max_frame_size: usize,
    pub max_message_size: usize,
    pub max_fragments: usize,
    pub outbound_queue_limit: usize,
    pub max_connections: usize,
    pub max_topics_per_connection: usize,
    pub ping_interval: Option<Duration>,
    pub idle_timeout: Duration,
    pub close_timeout: Duration,
    pub auth_timeout: Duration,
    pub auth_message_limit: usize,
    pub compression: Option<super::Compression>,
    pub allowed_origins: Option<Vec<String>>,
    pub inbound_rate: Option<InboundRate>,
    pub budget: BudgetLimits,
    /// Whether the text message `2` is answered `3` before any handler.
    pub answer_text_ping: bool,
    /// Writer tasks (`None`: one per two worker threads, rounded up).
    pub writers: Option<usize>,
}

impl Limits {
    /// The frame decoder's limits of an open connection.
    pub(crate) fn codec(&self) -> ori_core::codec::Limits {
        ori_core::codec::Limits {
            max_frame_size: self.max_frame_size,
            max_message_size: self.max_message_size,
            max_fragments: self.max_fragments,
        }
    }

    /// The limits of a socket pending in-band authentication: no message
    /// larger than `auth_message_limit`, few fragments.
    pub(crate) fn pending_codec(&self) -> ori_core::codec::Limits {
        let bytes = self.auth_message_limit.min(self.max_message_size);
        ori_core::codec::Limits {
            max_frame_size: bytes.min(self.max_frame_size),
            max_message_size: bytes,
            max_fragments: self.max_fragments.min(16),
        }
    }
}

/// The instance's outbound budget (see `WsOptions::outbound_budget`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct BudgetLimits {
    pub bytes: usize,
    pub publish_timeout: Duration,
    pub shed_after: Duration,
}

impl Default for BudgetLimits {
    fn default() -> Self {
        Self {
            bytes: ori_core::DEFAULT_BUDGET,
            publish_timeout: ori_core::DEFAULT_WAIT_TIMEOUT,
            shed_after: ori_core::DEFAULT_SHED_AFTER,
        }
    }
}

impl BudgetLimits {
    pub(crate) fn apply(&self, budget: &ori_core::Budget) {
        budget.set_limit(self.bytes);
        budget.set_wait_timeout(self.publish_timeout);
        budget.set_shed_after(self.shed_after);
    }
}

/// The inbound rate limit: a token bucket per connection.
#[derive(Debug, Clone, Copy)]
pub(crate) struct InboundRate {
    /// Tokens added per second.
    pub per_second: f64,
    /// Bucket size; also how many refused messages in a row close the
    /// connection.
    pub burst: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            upgrade_timeout: Duration::from_secs(5),
            max_frame_size: 16 << 20,
            max_message_size: 16 << 20,
            max_fragments: 1 << 17,
            outbound_queue_limit: 4 << 20,
            max_connections: 1 << 20,
            max_topics_per_connection: 1024,
            ping_interval: Some(Duration::from_secs(30)),
            idle_timeout: Duration::from_secs(75),
            close_timeout: Duration::from_secs(3),
            auth_timeout: Duration::from_secs(5),
            auth_message_limit: 64 << 10,
            compression: None,
            allowed_origins: None,
            inbound_rate: None,
            budget: BudgetLimits::default(),
            answer_text_ping: true,
            writers: None,
        }
    }
}
