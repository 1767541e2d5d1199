//! A connection's authentication clock: the deadline of a pending socket,
//! then the warning and the end of an expiring credential. Boxed in the
//! connection task only when there is something to time, so a connection
//! without it pays one pointer.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::{Instant, Sleep};
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

use crate::ws::upgrade::UpgradingSlot;
use crate::ws::UpgradeRequest;

/// What the clock is waiting for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// The socket has not authenticated yet.
    Pending,
    /// The credential lapses at `expires_at`; warn first.
    Warn,
    /// Warned; the credential lapses when the timer fires.
    Expire,
}

/// Why the clock fired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fired {
    /// A pending socket did not authenticate in time.
    PendingTimeout,
    /// The server shuts down while the socket is pending (a pending socket
    /// is in no list the shutdown walks).
    Shutdown,
    /// Time to warn: this much is left.
    Warn(Duration),
    /// The credential lapsed.
    Expired,
}

pub(crate) struct AuthClock {
    sleep: Pin<Box<Sleep>>,
    phase: Phase,
    expires_at: Instant,
    /// The upgrade request, kept while pending for the authenticator.
    upgrade: Option<Arc<UpgradeRequest>>,
    /// The server's shutdown, watched while pending.
    shutdown: Option<Pin<Box<WaitForCancellationFutureOwned>>>,
    /// The socket's place in the upgrading count, while pending.
    slot: Option<UpgradingSlot>,
}

/// How long before expiry the client is warned: a tenth of the TTL, at
/// least 1 s, at most the TTL.
fn warning_lead(ttl: Duration) -> Duration {
    (ttl / 10).max(Duration::from_secs(1)).min(ttl)
}

impl AuthClock {
    /// A pending socket that must authenticate within `timeout`, unless
    /// `shutdown` comes first.
    pub(crate) fn pending(
        timeout: Duration,
        upgrade: UpgradeRequest,
        shutdown: CancellationToken,
        slot: UpgradingSlot,
    ) -> Self {
        let at = Instant::now() + timeout;
        Self {
            sleep: Box::pin(tokio::time::sleep_until(at)),
            phase: Phase::Pending,
            expires_at: at,
            upgrade: Some(Arc::new(upgrade)),
            shutdown: Some(Box::pin(shutdown.cancelled_owned())),
            slot: Some(slot),
        }
    }

    /// A credential valid for `ttl` from now.
    pub(crate) fn expiring(ttl: Duration) -> Self {
        let mut clock = Self {
            sleep: Box::pin(tokio::time::sleep(Duration::ZERO)),
            phase: Phase::Warn,
            expires_at: Instant::now(),
            upgrade: None,
            shutdown: None,
            slot: None,
        };
        clock.renew(ttl);
        clock
    }

    /// A fresh credential valid for `ttl` from now (first authentication
    /// of a pending socket, or a refresh).
    pub(crate) fn renew(&mut self, ttl: Duration) {
        let now = Instant::now();
        self.expires_at = now + ttl;
        self.phase = Phase::Warn;
        self.upgrade = None;
        self.shutdown = None;
        self.sleep
            .as_mut()
            .reset(self.expires_at - warning_lead(ttl));
    }

    /// Gives the place back to whoever registers the socket.
    pub(crate) fn take_slot(&mut self) -> Option<UpgradingSlot> {
        self.slot.take()
    }

    /// Whether the socket is still pending.
    pub(crate) fn is_pending(&self) -> bool {
        self.phase == Phase::Pending
    }

    /// When the credential lapses (`None` while pending).
    pub(crate) fn expires_at(&self) -> Option<Instant> {
        (self.phase != Phase::Pending).then_some(self.expires_at)
    }

    /// The pending socket's deadline.
    pub(crate) fn deadline(&self) -> Instant {
        self.sleep.deadline()
    }

    /// The upgrade request of a pending socket.
    pub(crate) fn upgrade(&self) -> Option<Arc<UpgradeRequest>> {
        self.upgrade.clone()
    }

    /// Waits for the next event; after a warning it waits for the expiry.
    pub(crate) fn poll_fire(&mut self, cx: &mut Context<'_>) -> Poll<Fired> {
        if let Some(shutdown) = &mut self.shutdown {
            if shutdown.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Fired::Shutdown);
            }
        }
        if self.sleep.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        Poll::Ready(match self.phase {
            Phase::Pending => Fired::PendingTimeout,
            Phase::Warn => {
                self.phase = Phase::Expire;
                let at = self.expires_at;
                self.sleep.as_mut().reset(at);
                Fired::Warn(at.saturating_duration_since(Instant::now()))
            }
            Phase::Expire => Fired::Expired,
        })
    }
}

/// Waits on an optional clock (never ready without one). A plain future
/// of one pointer: it sits in the state of every waiting connection.
pub(crate) struct Fire<'a>(pub(crate) &'a mut Option<Box<AuthClock>>);

impl Future for Fire<'_> {
    type Output = Fired;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Fired> {
        match self.get_mut().0.as_deref_mut() {
            Some(c) => c.poll_fire(cx),
            None => Poll::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_warning_comes_a_tenth_before_at_least_a_second() {
        assert_eq!(
            warning_lead(Duration::from_secs(100)),
            Duration::from_secs(10)
        );
        assert_eq!(warning_lead(Duration::from_secs(5)), Duration::from_secs(1));
        assert_eq!(
            warning_lead(Duration::from_millis(300)),
            Duration::from_millis(300)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_expiring_credential_warns_then_lapses() {
        let mut clock = Some(Box::new(AuthClock::expiring(Duration::from_secs(20))));
        let start = Instant::now();
        assert_eq!(Fire(&mut clock).await, Fired::Warn(Duration::from_secs(2)));
        assert_eq!(start.elapsed(), Duration::from_secs(18));
        assert_eq!(Fire(&mut clock).await, Fired::Expired);
        assert_eq!(start.elapsed(), Duration::from_secs(20));
    }

    #[tokio::test(start_paused = true)]
    async fn a_renewal_moves_the_warning() {
        let mut clock = Box::new(AuthClock::expiring(Duration::from_secs(10)));
        tokio::time::advance(Duration::from_secs(5)).await;
        clock.renew(Duration::from_secs(10));
        let start = Instant::now();
        let mut clock = Some(clock);
        assert!(matches!(Fire(&mut clock).await, Fired::Warn(_)));
        assert_eq!(start.elapsed(), Duration::from_secs(9));
    }
}
