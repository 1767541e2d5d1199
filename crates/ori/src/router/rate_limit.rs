//! A ready per-connection rate limit: a token bucket as a message guard.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use ori_core::SocketId;

use super::context::MessageGuardContext;
use super::guard::{BoxError, MessageGuard};

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
    rate: f64,
    burst: f64,
    buckets: Mutex<HashMap<SocketId, Bucket>>,
}

#[derive(Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl RateLimit {
    /// `rate` messages per second, bursts of `rate` (at least 1).
    pub fn per_second(rate: f64) -> Self {
        let rate = if rate.is_finite() && rate > 0.0 {
            rate
        } else {
            1.0
        };
        Self {
            rate,
            burst: rate.max(1.0),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Allows bursts of up to `burst` messages.
    pub fn burst(mut self, burst: u32) -> Self {
        self.burst = f64::from(burst.max(1));
        self
    }

    /// Takes one token for `socket`; `false` when the bucket is empty.
    pub fn try_acquire(&self, socket: SocketId) -> bool {
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        let refill = Duration::from_secs_f64(self.burst / self.rate);
        if buckets.len() > 1024 && buckets.len().is_power_of_two() {
            buckets.retain(|_, b| now.duration_since(b.at) < refill);
        }
        let bucket = buckets.entry(socket).or_insert(Bucket {
            tokens: self.burst,
            at: now,
        });
        let elapsed = now.duration_since(bucket.at).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * self.rate).min(self.burst);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Exceeding the limit.
#[derive(Debug, thiserror::Error)]
#[error("Rate limit exceeded")]
pub struct RateLimited;

impl<S: Send + Sync + 'static, D: Send + Sync + 'static> MessageGuard<S, D> for RateLimit {
    async fn can_activate(&self, ctx: MessageGuardContext<S, D>) -> Result<bool, BoxError> {
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
