//! Rooms joined with positions (PROTOCOL.md section 8): the join or
//! resume message, the `room.joined` reply, and `room.message` envelopes.

use base64::Engine as _;
use ori_protocol::messages::{ClientTopic, Definition, JoinData, JoinRoom, Since};
use ori_protocol::wire::{RoomJoined, RoomMessage};

use super::{room_message, Actor};
use crate::{flat, Event, Message};

/// A room joined, and for one joined with positions the latest position.
#[derive(Default)]
pub(super) struct Room {
    pub(super) positions: bool,
    /// A connection already joined it: a later join is a resume.
    pub(super) joined: bool,
    pub(super) epoch: Option<String>,
    pub(super) offset: Option<u64>,
}

impl Actor {
    /// The join of `room` on a new connection: with `since` when its
    /// position is known, `recover` when joined with positions.
    pub(super) fn join_message(&mut self, room: &str) -> String {
        let Some(r) = self.rooms.get(room).filter(|r| r.positions) else {
            return room_message(&JoinRoom, room);
        };
        let Ok(topic) = ClientTopic::new(room) else {
            return room_message(&JoinRoom, room);
        };
        self.awaiting.insert(room.to_owned(), r.joined);
        let mut data = JoinData::new(topic);
        match (&r.epoch, r.offset) {
            (Some(epoch), Some(offset)) => {
                data.since = Some(Since {
                    epoch: epoch.clone(),
                    offset,
                });
            }
            _ => data.recover = Some(true),
        }
        flat(JoinRoom.name(), &data).unwrap_or_default()
    }

    /// The server's `room.joined`.
    pub(super) fn joined(&mut self, reply: RoomJoined) {
        let RoomJoined {
            room,
            epoch,
            offset,
            recovered,
            missed,
        } = reply;
        let room = room.as_str();
        if let Some(r) = self.rooms.get_mut(room) {
            r.joined = true;
            match (&epoch, offset) {
                (Some(e), Some(o)) => {
                    // A recovered resume replays from our offset (the replay
                    // advances it); otherwise live starts after `o`.
                    if recovered != Some(true) {
                        r.offset = Some(o);
                    }
                    r.epoch = Some(e.clone());
                }
                _ => {
                    r.epoch = None;
                    r.offset = None;
                }
            }
            self.sync_position(room);
        }
        self.event(Event::Joined {
            room: room.to_owned(),
            epoch,
            offset,
            recovered,
            missed,
        });
        if let Some(rejoin) = self.awaiting.remove(room) {
            // A first join has nothing to lose; a rejoin reports what it
            // got (a room without history cannot be recovered).
            let ok = !rejoin || recovered == Some(true);
            self.recovered.push((room.to_owned(), ok));
            if self.awaiting.is_empty() {
                let rooms = std::mem::take(&mut self.recovered);
                self.event(Event::Recovered {
                    reconnected: self.reconnected,
                    rooms,
                });
            }
        }
    }

    fn sync_position(&self, room: &str) {
        let pos = self
            .rooms
            .get(room)
            .and_then(|r| Some((r.epoch.clone()?, r.offset?)));
        let mut st = self.shared.lock();
        match pos {
            Some(p) => st.positions.insert(room.to_owned(), p),
            None => st.positions.remove(room),
        };
    }

    /// A `room.message`: its payload is handled as if it came on its own,
    /// byte for byte as published.
    pub(super) fn room_message(&mut self, env: &RoomMessage<'_>) {
        let (room, offset) = (env.room.as_ref(), env.offset);
        if let Some(r) = self.rooms.get_mut(room) {
            if r.offset.is_some_and(|seen| offset <= seen) {
                return; // already delivered
            }
            r.offset = Some(offset);
            self.sync_position(room);
        }
        self.event(Event::RoomMessage {
            room: room.to_owned(),
            offset,
        });
        if let Some(b64) = env.binary.as_deref() {
            if let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(b64) {
                self.event(Event::Message(Message::Binary(bytes.into())));
            }
            return;
        }
        let Some(data) = env.data else {
            return;
        };
        match serde_json::from_str::<String>(data.get()) {
            // Text that was not JSON travels as a JSON string.
            Ok(text) => self.text(&text),
            Err(_) => self.text(data.get()),
        }
    }
}
