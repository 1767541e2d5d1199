//! The token bucket behind both rate limits: the connection's inbound limit
//! (`WsOptions::inbound_rate_limit`) and the router's `RateLimit` guard.

use tokio::time::Instant;

/// A refill rate and a bucket size.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Rate {
    per_second: f32,
    burst: f32,
}

impl Rate {
    /// `per_second` tokens per second (positive and finite, else 1), at most
    /// `burst` (at least 1) held.
    pub(crate) fn new(per_second: f64, burst: u32) -> Self {
        let per_second = if per_second.is_finite() && per_second > 0.0 {
            per_second as f32
        } else {
            1.0
        };
        Self {
            per_second,
            burst: burst.max(1) as f32,
        }
    }

    /// The time an empty bucket takes to fill up.
    pub(crate) fn refill(&self) -> std::time::Duration {
        std::time::Duration::from_secs_f32(self.burst / self.per_second)
    }
}

/// One bucket, full when made.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TokenBucket {
    tokens: f32,
    at: Instant,
}

impl TokenBucket {
    pub(crate) fn full(rate: &Rate, now: Instant) -> Self {
        Self {
            tokens: rate.burst,
            at: now,
        }
    }

    /// Refills for the time since the last call, then takes one token if
    /// there is one.
    pub(crate) fn take(&mut self, rate: &Rate, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f32();
        self.tokens = (self.tokens + elapsed * rate.per_second).min(rate.burst);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// When the bucket was last used.
    pub(crate) fn last_used(&self) -> Instant {
        self.at
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_full_bucket_gives_its_burst_then_refills_at_the_rate() {
        let rate = Rate::new(10.0, 3);
        let t0 = Instant::now();
        let mut b = TokenBucket::full(&rate, t0);
        assert!((0..3).all(|_| b.take(&rate, t0)));
        assert!(!b.take(&rate, t0));
        assert!(
            b.take(&rate, t0 + Duration::from_millis(100)),
            "one token per 100 ms"
        );
        assert!(!b.take(&rate, t0 + Duration::from_millis(150)));
        assert!(
            (0..3).all(|_| b.take(&rate, t0 + Duration::from_secs(10))),
            "never more than the burst"
        );
        assert!(!b.take(&rate, t0 + Duration::from_secs(10)));
        assert_eq!(rate.refill().as_millis(), 300);
        assert_eq!(Rate::new(f64::NAN, 0).refill().as_millis(), 1000);
    }
}
