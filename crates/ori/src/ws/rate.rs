//! The inbound rate limit of a connection.

use tokio::time::Instant;

use crate::rate::{Rate, TokenBucket};

/// The reply to a message dropped by the inbound rate limit.
pub(super) const RATE_LIMITED_REPLY: &str = r#"{"type":"error","message":"Rate limit exceeded"}"#;

/// A connection's inbound token bucket (see `WsOptions::inbound_rate_limit`).
pub(super) struct Bucket {
    rate: Rate,
    bucket: TokenBucket,
    /// Messages refused in a row.
    refused: u32,
    burst: u32,
}

/// The bucket's verdict on one message.
pub(super) enum Admit {
    Yes,
    Drop,
    Close,
}

impl Bucket {
    pub(super) fn new(limit: super::limits::InboundRate) -> Self {
        let rate = Rate::new(limit.per_second, limit.burst);
        Self {
            rate,
            bucket: TokenBucket::full(&rate, Instant::now()),
            refused: 0,
            burst: limit.burst.max(1),
        }
    }

    pub(super) fn take(&mut self) -> Admit {
        if self.bucket.take(&self.rate, Instant::now()) {
            self.refused = 0;
            Admit::Yes
        } else {
            self.refused += 1;
            if self.refused >= self.burst {
                Admit::Close
            } else {
                Admit::Drop
            }
        }
    }
}
