//! The delay between reconnect attempts.

use std::time::Duration;

/// Full-jitter exponential back-off between reconnect attempts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The ceiling of the first delay.
    pub initial: Duration,
    /// The largest ceiling.
    pub max: Duration,
    /// Attempts after a disconnect before giving up (`None`: never give up).
    pub max_attempts: Option<u32>,
}

impl Default for Backoff {
    /// 1 s initial, 30 s max, unlimited attempts (as the TypeScript client).
    fn default() -> Self {
        Self {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(30),
            max_attempts: None,
        }
    }
}

impl Backoff {
    /// The ceiling of attempt `attempt` (counting from 0):
    /// `min(max, initial * 2^attempt)`.
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let factor = 2u32.checked_pow(attempt.min(31)).unwrap_or(u32::MAX);
        self.initial
            .checked_mul(factor)
            .map_or(self.max, |d| d.min(self.max))
    }

    /// The delay of attempt `attempt`: `random` (in `[0, 1]`) times its
    /// [ceiling](Self::ceiling), so uniformly in `[0, ceiling]` for a uniform
    /// `random`.
    pub fn delay(&self, attempt: u32, random: f64) -> Duration {
        self.ceiling(attempt).mul_f64(random.clamp(0.0, 1.0))
    }
}
