//! A ready per-connection rate limit: a token bucket as a message guard.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use ori_core::SocketId;
use tokio::time::Instant;

use super::context::MessageGuardContext;
use super::guard::{BoxError, MessageGuard};
use crate::rate::{Rate, TokenBucket};

/// Limits each connection to `rate` messages per second with bursts of up
/// to `burst`; a message over the limit answers `Rate limit exceeded`.
///
/// ```
/// use ori::router::RateLimit;
/// let limit = RateLimit::per_second(20.0).burst(40);
/// ```
///
/// Buckets of closed connections are dropped lazily, once idle for longer
/// than a full refill.
pub struct RateLimit {
    per_second: f64,
    rate: Rate,
    buckets: Mutex<HashMap<SocketId, TokenBucket>>,
}

impl RateLimit {
    /// `rate` messages per second, bursts of `rate` (at least 1).
    pub fn per_second(rate: f64) -> Self {
        let burst = if rate.is_finite() {
            rate.clamp(1.0, u32::MAX as f64)
        } else {
            1.0
        };
        Self {
            per_second: rate,
            rate: Rate::new(rate, burst as u32),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Allows bursts of up to `burst` messages.
    pub fn burst(mut self, burst: u32) -> Self {
        self.rate = Rate::new(self.per_second, burst);
        self
    }

    /// Takes one token for `socket`; `false` when the bucket is empty.
    pub fn try_acquire(&self, socket: SocketId) -> bool {
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        if buckets.len() > 1024 && buckets.len().is_power_of_two() {
            let refill = self.rate.refill();
            buckets.retain(|_, b| now.saturating_duration_since(b.last_used()) < refill);
        }
        buckets
            .entry(socket)
            .or_insert_with(|| TokenBucket::full(&self.rate, now))
            .take(&self.rate, now)
    }
}

/// Exceeding the limit.
#[derive(Debug, thiserror::Error)]
#[error("Rate limit exceeded")]
pub struct RateLimited;

impl<S, D, E> MessageGuard<S, D, E> for RateLimit
where
    S: Send + Sync + 'static,
    D: Send + Sync + 'static,
    E: crate::Emitter,
{
    async fn can_activate(&self, ctx: MessageGuardContext<S, D, E>) -> Result<bool, BoxError> {
        if self.try_acquire(ctx.conn().id()) {
            Ok(true)
        } else {
            Err(Box::new(RateLimited))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bursts_then_refuses() {
        let limit = RateLimit::per_second(1.0).burst(3);
        let id = SocketId::new();
        assert!((0..3).all(|_| limit.try_acquire(id)));
        assert!(!limit.try_acquire(id));
        assert!(
            limit.try_acquire(SocketId::new()),
            "buckets are per connection"
        );
    }
}
