//! The recording emitter: services unit-tested without a server.

use std::sync::{Arc, Mutex, PoisonError};

use ori_core::{
    Broker, Inbound, Message, Outgoing, Provider, ProviderError, Sent, SocketId, Target, Topic,
};

use crate::{AppContext, Emitter, SocketEmitter};

/// One operation a [`Recorder`] saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recorded {
    /// `publish(topic, message)`.
    Publish(Topic, Message),
    /// `send(socket, message)`.
    Send(SocketId, Message),
    /// `broadcast(message)`.
    Broadcast(Message),
}

/// What a recording emitter was asked to do, in order.
#[derive(Debug, Clone, Default)]
pub struct Recorder {
    calls: Arc<Mutex<Vec<Recorded>>>,
}

impl Recorder {
    /// Every call so far.
    pub fn calls(&self) -> Vec<Recorded> {
        self.calls
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The publishes so far, as (topic, text or lossy text of binary).
    pub fn published(&self) -> Vec<(String, String)> {
        self.calls()
            .into_iter()
            .filter_map(|c| match c {
                Recorded::Publish(t, m) => Some((
                    t.to_string(),
                    String::from_utf8_lossy(m.as_bytes()).into_owned(),
                )),
                _ => None,
            })
            .collect()
    }

    fn push(&self, call: Recorded) {
        self.calls
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(call);
    }
}

/// A provider that carries nothing and records every publication handed
/// to it (each counted as reaching one receiver).
#[derive(Debug, Default)]
pub struct RecordingProvider {
    recorder: Recorder,
}

impl RecordingProvider {
    /// A new recording provider.
    pub fn new() -> Self {
        Self::default()
    }

    /// Its recorder.
    pub fn recorder(&self) -> Recorder {
        self.recorder.clone()
    }
}

impl Provider for RecordingProvider {
    async fn start(&self, _inbound: Inbound) -> Result<(), ProviderError> {
        Ok(())
    }
    async fn stop(&self) {}
    async fn publish(&self, out: Outgoing<'_>) -> Result<Sent, ProviderError> {
        let message = out.message.clone();
        self.recorder.push(match out.target {
            Target::Topic(topic) => Recorded::Publish(topic.clone(), message),
            Target::Socket(id) => Recorded::Send(*id, message),
            Target::All => Recorded::Broadcast(message),
        });
        Ok(Sent::counted(1))
    }
    fn watch(&self, _target: &Target) {}
    fn unwatch(&self, _target: &Target) {}
}

/// An emitter of type `E` that records instead of delivering, for unit tests
/// of services (the app's custom emitter type works too).
///
/// ```
/// use ori::testing;
/// # futures_util::future::FutureExt::now_or_never(async {
/// let (emitter, recorder) = testing::recording_emitter::<ori::SocketEmitter>();
/// emitter.publish("alerts", "critical").await.unwrap();
/// assert_eq!(recorder.published(), vec![("alerts".into(), "critical".into())]);
/// # }).unwrap();
/// ```
pub fn recording_emitter<E: Emitter>() -> (E, Recorder) {
    let provider = RecordingProvider::new();
    let recorder = provider.recorder();
    let broker = Broker::new(provider);
    // The recording provider starts at once.
    let started = futures_util::FutureExt::now_or_never(broker.start());
    debug_assert!(matches!(started, Some(Ok(()))));
    (E::from_socket_emitter(SocketEmitter::new(broker)), recorder)
}

/// An [`AppContext`] around a recording emitter.
pub fn recording_context<E: Emitter>() -> (AppContext<E>, Recorder) {
    let (emitter, recorder) = recording_emitter::<E>();
    (AppContext::new(emitter), recorder)
}
