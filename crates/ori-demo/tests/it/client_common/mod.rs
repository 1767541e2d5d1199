//! What the client tests share: waiting for events and messages, the
//! demo's notification, a quick back-off.
#![allow(dead_code)]

use std::time::Duration;

use ori_client::{Backoff, Event, ServerMessage};
use serde::{Deserialize, Serialize};

pub const WAIT: Duration = Duration::from_secs(5);

#[derive(Debug, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Notification {
    pub message: String,
    pub correlation_id: String,
}

pub static NOTIFICATION: ServerMessage<Notification> = ServerMessage::define("notification");

pub fn fast() -> Backoff {
    Backoff {
        initial: Duration::from_millis(20),
        max: Duration::from_millis(200),
        max_attempts: None,
    }
}

pub async fn next_event(events: &mut ori_client::EventStream, what: &str) -> Event {
    tokio::time::timeout(WAIT, events.recv())
        .await
        .unwrap_or_else(|_| panic!("no event while waiting for {what}"))
        .unwrap_or_else(|| panic!("events ended while waiting for {what}"))
}

/// Skips events until one matches.
pub async fn wait_for(
    events: &mut ori_client::EventStream,
    what: &str,
    f: impl Fn(&Event) -> bool,
) -> Event {
    loop {
        let e = next_event(events, what).await;
        if f(&e) {
            return e;
        }
    }
}

pub async fn next<T>(sub: &mut ori_client::Subscription<T>) -> T
where
    T: serde::de::DeserializeOwned,
{
    tokio::time::timeout(WAIT, sub.recv())
        .await
        .expect("no message in time")
        .expect("subscription ended")
}
