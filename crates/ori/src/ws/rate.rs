//! The inbound rate limit of a connection.

use tokio::time::Instant;

/// The reply to a message dropped by the inbound rate limit.
pub(super) const RATE_LIMITED_REPLY: &str = r#"{"type":"error","message":"Rate limit exceeded"}"#;

/// A connection's inbound token bucket (see `WsOptions::inbound_rate_limit`).
pub(super) struct Bucket {
    per_second: f32,
    burst: u32,
    tokens: f32,
    /// Messages refused in a row.
    refused: u32,
    at: Instant,
}

/// The bucket's verdict on one message.
pub(super) enum Admit {
    Yes,
    Drop,
    Close,
}

impl Bucket {
    pub(super) fn new(rate: super::options::InboundRate) -> Self {
        Self {
            per_second: rate.per_second as f32,
            burst: rate.burst,
            tokens: rate.burst as f32,
            refused: 0,
            at: Instant::now(),
        }
    }

    pub(super) fn take(&mut self) -> Admit {
        let now = Instant::now();
        let elapsed = now.saturating_duration_since(self.at).as_secs_f32();
        self.tokens = (self.tokens + elapsed * self.per_second).min(self.burst as f32);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
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
