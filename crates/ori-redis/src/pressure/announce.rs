//! The announcer: this instance's state on the pressure channel.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use super::wire::{encode, encode_grants, encode_holds};
use super::{HOLDS_GAP, REFRESH, SETTLE};
use crate::Shared;

/// Announces this instance's state while the provider runs: behind at
/// once and repeated every [`REFRESH`] (also while grants go out, for
/// instances that do not read them), each time followed by the filter of
/// the channels it holds (and a newer filter, at most every
/// [`HOLDS_GAP`], when a channel is newly held meanwhile), a grant
/// whenever envelopes were taken
/// since the last one was sent, caught up once the subscriber has not
/// waited for [`SETTLE`]. Announcements that cannot be published (Redis
/// down) are skipped.
pub(crate) async fn announce(shared: Arc<Shared>, mut shutdown: watch::Receiver<bool>) {
    let pressure = &shared.pressure;
    let mut local = pressure.local.subscribe();
    let channel = shared.channels.pressure().to_owned();
    let me = shared.instance();
    // When "behind" was last published; `None`: "caught up" is what the
    // others were told last.
    let mut announced: Option<Instant> = None;
    // Since when the subscriber has not waited (as far as this task saw;
    // any change of the state starts it again): SETTLE counts from there.
    let mut clear_since: Option<Instant> = None;
    // When the filter was last sent, and when a newer one is due (a
    // channel newly held while behind; at most one per HOLDS_GAP).
    let mut holds_sent: Option<Instant> = None;
    let mut holds_due: Option<Instant> = None;
    loop {
        let behind = *local.borrow_and_update();
        let now = Instant::now();
        if announced.is_some()
            && holds_due.is_none()
            && pressure.holds_dirty.swap(false, Ordering::AcqRel)
        {
            holds_due = Some(holds_sent.map_or(now, |at| at + HOLDS_GAP).max(now));
        }
        if holds_due.is_some_and(|due| due <= now) {
            holds_due = None;
            if announced.is_some() {
                pressure.holds_dirty.store(false, Ordering::Release);
                publish(&shared, &channel, &encode_holds(&me, &pressure.holds())).await;
                holds_sent = Some(Instant::now());
            }
            continue;
        }
        if behind {
            clear_since = None;
        } else if clear_since.is_none() {
            clear_since = Some(now);
        }
        let settled = clear_since.map_or(Duration::ZERO, |at| now - at);
        let wait = match (behind, announced) {
            // At once the first time, then at most every REFRESH however
            // often the state flips (a budget at its limit flips it per
            // message).
            (true, Some(at)) if now - at < REFRESH => Some(REFRESH - (now - at)),
            (true, _) => {
                // The plain form first, for instances that do not read
                // filters; then what this instance holds, so that the
                // others hold back only the publishes that reach it.
                publish(&shared, &channel, &encode(&me, true)).await;
                pressure.holds_dirty.store(false, Ordering::Release);
                publish(&shared, &channel, &encode_holds(&me, &pressure.holds())).await;
                announced = Some(Instant::now());
                holds_sent = announced;
                holds_due = None;
                Some(REFRESH)
            }
            (false, Some(_)) if settled >= SETTLE => {
                pressure.caught_up();
                publish(&shared, &channel, &encode(&me, false)).await;
                announced = None;
                holds_due = None;
                continue;
            }
            (false, Some(_)) => Some(SETTLE - settled),
            (false, None) => None,
        };
        let wait = match (wait, holds_due) {
            (Some(w), Some(due)) => Some(w.min(due - now)),
            (w, due) => w.or(due.map(|due| due - now)),
        };
        tokio::select! {
            biased;
            () = stopped(&mut shutdown) => return,
            changed = local.changed() => {
                if changed.is_err() {
                    return;
                }
                clear_since = None;
            }
            () = sleep_or_never(wait) => {}
            // One batch per pass, so that the state is looked at between
            // batches; what is taken meanwhile goes with the next.
            () = pressure.to_grant.notified(), if announced.is_some() => {
                let grants = pressure.grants_due();
                if !grants.is_empty() {
                    publish(&shared, &channel, &encode_grants(&me, &grants)).await;
                }
            }
            // Only a wake-up: the flag is read at the top of every pass,
            // whichever arm ends it, so grants cannot starve it.
            () = pressure.holds_changed.notified(), if announced.is_some() => {}
        }
    }
}

async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|s| *s).await;
}

async fn sleep_or_never(wait: Option<Duration>) {
    match wait {
        Some(d) => tokio::time::sleep(d).await,
        None => std::future::pending().await,
    }
}

async fn publish(shared: &Shared, channel: &str, payload: &[u8]) {
    let Some(mut conn) = shared.publisher() else {
        return;
    };
    let within = shared.config.publish_timeout;
    let _ = tokio::time::timeout(within, conn.publish(channel, payload)).await;
}
