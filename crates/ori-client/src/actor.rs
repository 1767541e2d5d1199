//! The background task: owns the socket, the room set and the send buffer.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::{sleep_until, Instant};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode as WsCloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::auth::{auth_envelope, AuthEnvelope, TokenFuture};
use crate::Cause;
use crate::{
    flat, ClientError, Command, ConnectionState, Event, Message, RequestError, RoomData, Shared,
};
use ori_protocol::messages::{ClientTopic, Definition, LeaveRoom};
use ori_protocol::wire::{RoomJoined, RoomMessage};
use ori_protocol::CloseCode;

mod auth;
mod positions;

use positions::Room;

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A message waiting for a connection.
struct Outgoing {
    text: String,
    correlation: Option<String>,
}

/// How a phase ended.
enum Flow {
    /// Carry on (reconnect).
    Continue,
    /// End the task.
    Stop,
}

struct Actor {
    shared: Arc<Shared>,
    rx: mpsc::UnboundedReceiver<Command>,
    rooms: BTreeMap<String, Room>,
    /// Rooms with positions whose `room.joined` this connection awaits,
    /// and whether each is a rejoin.
    awaiting: BTreeMap<String, bool>,
    recovered: Vec<(String, bool)>,
    reconnected: bool,
    buffer: VecDeque<Outgoing>,
    attempt: u32,
    ever_connected: bool,
    generation: u64,
    /// Whether this connection authenticated already (later
    /// `auth.authenticated` envelopes are refreshes).
    authenticated: bool,
}

pub(crate) async fn run(shared: Arc<Shared>, rx: mpsc::UnboundedReceiver<Command>) {
    let mut actor = Actor {
        shared,
        rx,
        rooms: BTreeMap::new(),
        awaiting: BTreeMap::new(),
        recovered: Vec::new(),
        reconnected: false,
        buffer: VecDeque::new(),
        attempt: 0,
        ever_connected: false,
        generation: 0,
        authenticated: false,
    };
    actor.run().await;
    actor.finish();
}

fn room_message(def: &impl Definition, room: &str) -> String {
    let data = ClientTopic::new(room).map(|room| RoomData { room });
    match data {
        Ok(data) => flat(def.name(), &data).unwrap_or_default(),
        // Validated by `join_room`; a leave of an invalid room is sent as is.
        Err(_) => serde_json::json!({"type": def.name(), "room": room}).to_string(),
    }
}

impl Actor {
    async fn run(&mut self) {
        loop {
            match self.connect().await {
                Err(()) => return,
                Ok(Some(ws)) => {
                    if let Flow::Stop = self.session(ws).await {
                        return;
                    }
                }
                Ok(None) => {}
            }
            if let Flow::Stop = self.backoff().await {
                return;
            }
        }
    }

    fn set_state(&self, state: ConnectionState) {
        self.shared.lock().conn = state;
    }

    fn event(&self, event: Event) {
        self.shared.event(event);
    }

    fn error(&self, error: ClientError) {
        self.event(Event::Error(error));
    }

    fn sync_buffered(&self) {
        self.shared.lock().buffered = self.buffer.len();
    }

    /// A command while not connected. `Err` ends the task.
    fn offline(&mut self, cmd: Option<Command>) -> Result<(), ()> {
        match cmd {
            None | Some(Command::Close) => return Err(()),
            Some(Command::Send { text, correlation }) => {
                self.buffer.push_back(Outgoing { text, correlation });
                let max = self.shared.config.buffer_size;
                while self.buffer.len() > max {
                    if let Some(dropped) = self.buffer.pop_front() {
                        if let Some(id) = dropped.correlation {
                            self.reject(&id);
                        }
                    }
                    self.error(ClientError::BufferFull(max));
                }
                self.sync_buffered();
            }
            Some(Command::Join(room, positions)) => {
                self.rooms.entry(room).or_insert(Room {
                    positions,
                    ..Room::default()
                });
            }
            Some(Command::Leave(room)) => {
                self.rooms.remove(&room);
            }
        }
        Ok(())
    }

    fn reject(&self, id: &str) {
        if let Some(p) = self.shared.lock().pending.remove(id) {
            let _ = p.reply.send(Err(RequestError::Closed { ty: p.ty }));
        }
    }

    /// One connection attempt. `Err` ends the task; `Ok(None)` failed.
    async fn connect(&mut self) -> Result<Option<Ws>, ()> {
        self.set_state(if self.ever_connected || self.attempt > 0 {
            ConnectionState::Reconnecting
        } else {
            ConnectionState::Connecting
        });
        let config = &self.shared.config;
        let request = match config.request() {
            Ok(r) => r,
            Err(e) => {
                self.error(e);
                return Err(());
            }
        };
        let timeout = config.connect_timeout;
        let attempt = tokio::time::timeout(timeout, tokio_tungstenite::connect_async(request));
        tokio::pin!(attempt);
        loop {
            tokio::select! {
                result = &mut attempt => {
                    return Ok(match result {
                        Ok(Ok((ws, _))) => Some(ws),
                        Ok(Err(e)) => {
                            self.error(ClientError::Connect(Cause::new(e)));
                            None
                        }
                        Err(_) => {
                            self.error(ClientError::ConnectTimeout(timeout));
                            None
                        }
                    });
                }
                cmd = self.rx.recv() => self.offline(cmd)?,
            }
        }
    }

    /// Waits for the next attempt's back-off delay.
    async fn backoff(&mut self) -> Flow {
        let Some(backoff) = self.shared.config.reconnect else {
            self.set_state(ConnectionState::Disconnected);
            return Flow::Stop;
        };
        if backoff.max_attempts.is_some_and(|max| self.attempt >= max) {
            self.set_state(ConnectionState::Disconnected);
            self.error(ClientError::GaveUp(self.attempt));
            return Flow::Stop;
        }
        let delay = backoff.delay(self.attempt, random());
        self.attempt += 1;
        self.set_state(ConnectionState::Reconnecting);
        self.event(Event::ReconnectAttempt {
            attempt: self.attempt,
            delay,
        });
        let deadline = Instant::now() + delay;
        loop {
            tokio::select! {
                () = sleep_until(deadline) => return Flow::Continue,
                cmd = self.rx.recv() => {
                    if self.offline(cmd).is_err() {
                        return Flow::Stop;
                    }
                }
            }
        }
    }

    /// Sends `text`; records the connection a request went out on.
    async fn write(&self, ws: &mut Ws, text: String, correlation: Option<&str>) -> bool {
        if ws.send(WsMessage::text(text)).await.is_err() {
            return false;
        }
        if let Some(id) = correlation {
            if let Some(p) = self.shared.lock().pending.get_mut(id) {
                p.sent_on = Some(self.generation);
            }
        }
        true
    }

    /// An open connection, until it closes.
    async fn session(&mut self, mut ws: Ws) -> Flow {
        self.generation += 1;
        let reconnected = self.ever_connected;

        let (code, reason) = match self.serve(&mut ws, reconnected).await {
            Ok(flow) => {
                // Closed by the client.
                let close = ws.close(Some(CloseFrame {
                    code: WsCloseCode::Normal,
                    reason: "Client disconnect".into(),
                }));
                let _ = tokio::time::timeout(Duration::from_secs(1), close).await;
                self.closed(1000, "Client disconnect".into());
                return flow;
            }
            Err(close) => close,
        };
        self.closed(code, reason.clone());
        // A credential that lapsed, or an authentication that came too
        // late, is retried with a fresh token; other refusals are final.
        // Without a token source, no 1008 is cured by reconnecting.
        let code = CloseCode::from(code);
        let final_close = code.is_final(&reason)
            || (code == CloseCode::POLICY_VIOLATION && self.shared.config.auth.is_none());
        if final_close {
            self.set_state(ConnectionState::Disconnected);
            self.error(ClientError::Refused { code, reason });
            return Flow::Stop;
        }
        Flow::Continue
    }

    /// After a close: fails the requests sent on this connection.
    fn closed(&self, code: u16, reason: String) {
        {
            let mut st = self.shared.lock();
            let generation = self.generation;
            let ids: Vec<String> = st
                .pending
                .iter()
                .filter(|(_, p)| p.sent_on == Some(generation))
                .map(|(id, _)| id.clone())
                .collect();
            for id in ids {
                if let Some(p) = st.pending.remove(&id) {
                    let _ = p.reply.send(Err(RequestError::Closed { ty: p.ty }));
                }
            }
        }
        self.event(Event::Disconnected {
            code: code.into(),
            reason,
        });
    }

    /// Runs the open connection. `Ok(flow)`: the client closes it;
    /// `Err((code, reason))`: it closed (or was dropped).
    async fn serve(&mut self, ws: &mut Ws, reconnected: bool) -> Result<Flow, (u16, String)> {
        let dropped = |e: &dyn std::fmt::Display| (1006u16, e.to_string());
        self.awaiting.clear();
        self.recovered.clear();
        self.authenticated = false;
        self.reconnected = reconnected;
        if self.shared.config.auth.is_some() {
            self.authenticate(ws).await?;
        }
        // Connected once authenticated: a connection refused in band counts
        // as a failed attempt for the back-off and `max_attempts`.
        self.attempt = 0;
        self.ever_connected = true;
        self.set_state(ConnectionState::Connected);
        let rooms: Vec<String> = self.rooms.keys().cloned().collect();
        for room in rooms {
            let join = self.join_message(&room);
            if !self.write(ws, join, None).await {
                return Err(dropped(&"send failed"));
            }
        }
        while let Some(item) = self.buffer.pop_front() {
            if let Some(id) = &item.correlation {
                // Timed out while buffered: not sent at all.
                if !self.shared.lock().pending.contains_key(id) {
                    continue;
                }
            }
            if !self.write(ws, item.text, item.correlation.as_deref()).await {
                return Err(dropped(&"send failed"));
            }
        }
        self.sync_buffered();
        self.event(Event::Connected { reconnected });

        let heartbeat = self.shared.config.heartbeat;
        let interval = heartbeat.map_or(Duration::from_secs(3600), |(i, _)| i);
        let mut next_ping = Instant::now() + interval;
        let mut pong_deadline: Option<Instant> = None;
        // A refresh's token, fetched while the connection goes on.
        let mut token: TokenFuture = Box::pin(std::future::pending());
        let mut refreshing = false;
        loop {
            let pong_wait = pong_deadline.unwrap_or_else(|| Instant::now() + interval);
            tokio::select! {
                cmd = self.rx.recv() => match cmd {
                    None | Some(Command::Close) => return Ok(Flow::Stop),
                    Some(Command::Send { text, correlation }) => {
                        if !self.write(ws, text, correlation.as_deref()).await {
                            return Err(dropped(&"send failed"));
                        }
                    }
                    Some(Command::Join(room, positions)) => {
                        if !self.rooms.contains_key(&room) {
                            self.rooms.insert(room.clone(), Room { positions, ..Room::default() });
                            let join = self.join_message(&room);
                            if !self.write(ws, join, None).await {
                                return Err(dropped(&"send failed"));
                            }
                        }
                    }
                    Some(Command::Leave(room)) => {
                        if self.rooms.remove(&room).is_some()
                            && !self.write(ws, room_message(&LeaveRoom, &room), None).await
                        {
                            return Err(dropped(&"send failed"));
                        }
                    }
                },
                msg = ws.next() => {
                    // Any frame proves the connection alive.
                    pong_deadline = None;
                    match msg {
                        Some(Ok(WsMessage::Text(text))) => {
                            if let (Some(source), false) = (&self.shared.config.auth, refreshing) {
                                if auth_envelope(text.as_str()) == Some(AuthEnvelope::Expiring) {
                                    token = source.fetch(self.shared.config.connect_timeout);
                                    refreshing = true;
                                }
                            }
                            self.text(text.as_str());
                        }
                        Some(Ok(WsMessage::Binary(data))) => {
                            self.event(Event::Message(Message::Binary(data)));
                        }
                        Some(Ok(WsMessage::Close(frame))) => {
                            return Err(frame.map_or((1005, String::new()), |f| {
                                (u16::from(f.code), f.reason.as_str().to_owned())
                            }));
                        }
                        Some(Ok(_)) => {}
                        Some(Err(e)) => return Err(dropped(&e)),
                        None => return Err(dropped(&"connection dropped")),
                    }
                }
                fetched = &mut token, if refreshing => {
                    refreshing = false;
                    self.refreshed(ws, fetched).await?;
                }
                () = sleep_until(next_ping), if heartbeat.is_some() => {
                    next_ping = Instant::now() + interval;
                    if ws.send(WsMessage::text("2")).await.is_err() {
                        return Err(dropped(&"send failed"));
                    }
                    if pong_deadline.is_none() {
                        pong_deadline = heartbeat.map(|(_, timeout)| Instant::now() + timeout);
                    }
                }
                () = sleep_until(pong_wait), if pong_deadline.is_some() => {
                    let timeout = heartbeat.map_or(Duration::ZERO, |(_, t)| t);
                    self.error(ClientError::HeartbeatTimeout(timeout));
                    return Err(close_locally(ws, 4000, "Heartbeat timeout").await);
                }
            }
        }
    }

    /// A text frame: replies, typed dispatch, events.
    fn text(&mut self, text: &str) {
        if text == "3" {
            return;
        }
        if let Some(AuthEnvelope::Authenticated {
            socket_id,
            expires_in,
        }) = auth_envelope(text)
        {
            let refreshed = std::mem::replace(&mut self.authenticated, true);
            self.event(Event::Authenticated {
                socket_id,
                expires_in,
                refreshed,
            });
        }
        self.event(Event::Message(Message::Text(text.to_owned())));
        if text.starts_with(r#"{"type":"room.message","#) {
            if let Ok(env) = serde_json::from_str::<RoomMessage<'_>>(text) {
                self.room_message(&env);
                return;
            }
        }
        if text.starts_with(r#"{"type":"room.joined","#) {
            if let Ok(reply) = serde_json::from_str::<RoomJoined>(text) {
                self.joined(reply);
                return;
            }
        }
        let Ok(Value::Object(m)) = serde_json::from_str::<Value>(text) else {
            return;
        };
        let ty = m.get("type").and_then(Value::as_str);
        if let (Some(ty), Some(id)) = (ty, m.get("correlationId").and_then(Value::as_str)) {
            if m.contains_key("data") || m.contains_key("error") {
                let mut st = self.shared.lock();
                if st.pending.get(id).is_some_and(|p| p.ty == ty) {
                    if let Some(p) = st.pending.remove(id) {
                        drop(st);
                        let result = match m.get("error").and_then(Value::as_str) {
                            Some(error) => Err(RequestError::Server {
                                ty: p.ty,
                                message: error.to_owned(),
                            }),
                            None => Ok(m.get("data").cloned().unwrap_or(Value::Null)),
                        };
                        let _ = p.reply.send(result);
                        return;
                    }
                }
            }
        }
        if let (Some(name), Some(data)) = (m.get("name").and_then(Value::as_str), m.get("data")) {
            self.dispatch(name, data.clone());
        } else if let Some(ty) = ty {
            if ty == "error" {
                if let Some(message) = m.get("message").and_then(Value::as_str) {
                    self.error(ClientError::Server(message.to_owned()));
                }
            }
            let ty = ty.to_owned();
            self.dispatch(&ty, Value::Object(m));
        }
    }

    fn dispatch(&self, name: &str, data: Value) {
        let mut st = self.shared.lock();
        if let Some(handlers) = st.handlers.get_mut(name) {
            handlers.retain(|tx| tx.send(data.clone()).is_ok());
            if handlers.is_empty() {
                st.handlers.remove(name);
            }
        }
    }

    /// The task ends: pending requests fail, streams end.
    fn finish(&mut self) {
        self.set_state(ConnectionState::Disconnected);
        self.rx.close();
        let mut st = self.shared.lock();
        for (_, p) in st.pending.drain() {
            let _ = p.reply.send(Err(RequestError::Closed { ty: p.ty }));
        }
        st.handlers.clear();
        st.events.clear();
        // A first `events()` call still gets what happened, then the end.
        st.prelude = None;
        st.buffered = 0;
    }
}

/// Closes the socket from our side (waiting at most 100 ms for the close
/// frame to go out) and returns the local close code and reason.
async fn close_locally(ws: &mut Ws, code: u16, reason: &str) -> (u16, String) {
    let _ = tokio::time::timeout(
        Duration::from_millis(100),
        ws.close(Some(CloseFrame {
            code: WsCloseCode::from(code),
            reason: reason.to_owned().into(),
        })),
    )
    .await;
    (code, reason.to_owned())
}

/// A uniform random number in `[0, 1]` (from the OS RNG through UUID v4).
fn random() -> f64 {
    let bytes = uuid::Uuid::new_v4().into_bytes();
    let mut n = [0u8; 8];
    // XOR of the halves: the version and variant bits fall on random bits.
    for (i, b) in n.iter_mut().enumerate() {
        *b = bytes[i] ^ bytes[i + 8];
    }
    (u64::from_le_bytes(n) >> 11) as f64 / (1u64 << 53) as f64
}
