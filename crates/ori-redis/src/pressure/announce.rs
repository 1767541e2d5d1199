//! The announcer: this instance's state on the pressure channel.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use super::wire::{encode, encode_grants, encode_holds};
use super::{REFRESH, SETTLE};
use crate::Shared;

/// Announces this instance's state while the provider runs: behind at
/// once and repeated every [`REFRESH`] (also while grants go out, for
/// instances that do not read them), each time followed by the filter of
/// the channels it holds, a grant whenever envelopes were taken
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
    loop {
        let behind = *local.borrow_and_update();
        let now = Instant::now();
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
                publish(&shared, &channel, &encode_holds(&me, &pressure.holds())).await;
                announced = Some(Instant::now());
                Some(REFRESH)
            }
            (false, Some(_)) if settled >= SETTLE => {
                pressure.caught_up();
                publish(&shared, &channel, &encode(&me, false)).await;
                announced = None;
                continue;
            }
            (false, Some(_)) => Some(SETTLE - settled),
            (false, None) => None,
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
