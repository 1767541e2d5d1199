//! A connection's state in one atomic byte: its lifecycle phase (the
//! public [`ReadyState`]), the write events its task waits for, and
//! whether its connection guards passed, so they are read and changed
//! together instead of kept in step.

use std::sync::atomic::{AtomicU8, Ordering};

use super::conn::ReadyState;

/// The bits of the phase: a [`ReadyState`].
const PHASE: u8 = 0b11;
/// Our close frame is written (stays set).
pub(super) const CLOSE_SENT: u8 = 1 << 2;
/// Writing failed (stays set).
pub(super) const FAILED: u8 = 1 << 3;
/// The socket drained after pushing back (reported once).
pub(super) const DRAINED: u8 = 1 << 4;
/// Our close frame is queued but the socket pushes back (reported once):
/// the task starts its closing handshake, whose timeout then applies.
pub(super) const CLOSE_STALLED: u8 = 1 << 5;
/// One timer period passed (reported once): the idle and ping checks.
pub(super) const TICK: u8 = 1 << 6;
/// The connection guards passed (stays set).
const ADMITTED: u8 = 1 << 7;

/// The phase, the write events and the admission of one connection.
pub(crate) struct ConnState(AtomicU8);

impl ConnState {
    /// A connection accepted, not yet open.
    pub(crate) fn new() -> Self {
        Self(AtomicU8::new(ReadyState::Connecting as u8))
    }

    /// The phase. A connection whose close frame is written counts as
    /// closing even before its task notices.
    pub(crate) fn ready_state(&self) -> ReadyState {
        let s = self.0.load(Ordering::Acquire);
        match s & PHASE {
            0 => ReadyState::Connecting,
            1 if s & CLOSE_SENT == 0 => ReadyState::Open,
            1 | 2 => ReadyState::Closing,
            _ => ReadyState::Closed,
        }
    }

    /// Moves to `phase`; the write events stay.
    pub(crate) fn set(&self, phase: ReadyState) {
        let _ = self
            .0
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |s| {
                Some((s & !PHASE) | phase as u8)
            });
    }

    /// Records write `events` (`CLOSE_SENT`, `FAILED`, `DRAINED`).
    pub(super) fn signal(&self, events: u8) {
        self.0.fetch_or(events, Ordering::AcqRel);
    }

    /// Records that the connection guards passed.
    pub(super) fn admit(&self) {
        self.0.fetch_or(ADMITTED, Ordering::AcqRel);
    }

    /// Whether the connection guards passed.
    pub(super) fn admitted(&self) -> bool {
        self.0.load(Ordering::Acquire) & ADMITTED != 0
    }

    /// Whether writing failed.
    pub(super) fn failed(&self) -> bool {
        self.0.load(Ordering::Acquire) & FAILED != 0
    }

    /// The next event: `CLOSE_SENT` or `FAILED` (which stay set), else
    /// `DRAINED`, else `CLOSE_STALLED`, else `TICK` (each cleared as it is
    /// taken), else none.
    pub(super) fn take_event(&self) -> Option<u8> {
        let s = self.0.load(Ordering::Acquire);
        if s & (CLOSE_SENT | FAILED) != 0 {
            Some(s & (CLOSE_SENT | FAILED))
        } else if let Some(once) = [DRAINED, CLOSE_STALLED, TICK]
            .into_iter()
            .find(|e| s & e != 0)
        {
            self.0.fetch_and(!once, Ordering::AcqRel);
            Some(once)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phase_and_events_share_one_byte() {
        let st = ConnState::new();
        assert_eq!(st.ready_state(), ReadyState::Connecting);
        st.set(ReadyState::Open);
        st.signal(DRAINED);
        assert_eq!(st.ready_state(), ReadyState::Open);
        assert_eq!(st.take_event(), Some(DRAINED));
        assert_eq!(st.take_event(), None, "drained is reported once");
        st.signal(CLOSE_SENT);
        assert_eq!(st.ready_state(), ReadyState::Closing, "close frame written");
        st.set(ReadyState::Closed);
        assert_eq!(st.ready_state(), ReadyState::Closed);
        assert_eq!(st.take_event(), Some(CLOSE_SENT), "events stay set");
        assert!(!st.failed());
    }

    #[test]
    fn admission_is_kept_apart_from_the_phase_and_the_events() {
        let st = ConnState::new();
        assert!(!st.admitted());
        st.admit();
        assert!(st.admitted());
        assert_eq!(st.ready_state(), ReadyState::Connecting);
        assert_eq!(st.take_event(), None, "admission is no event");
        st.set(ReadyState::Open);
        st.signal(TICK);
        assert_eq!(st.take_event(), Some(TICK));
        st.set(ReadyState::Closed);
        assert!(st.admitted(), "survives phase changes");
        assert_eq!(st.ready_state(), ReadyState::Closed);
    }
}
