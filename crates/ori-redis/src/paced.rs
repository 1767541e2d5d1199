//! A subscriber connection that reads only as fast as this instance
//! delivers: the Redis hop's backpressure.
//!
//! The client library's pub/sub connection reads the socket as fast as
//! Redis writes and queues what it read in memory without a bound, so an
//! instance that delivers slower than another publishes grows without
//! limit. This connection reads one frame at a time and, before it hands
//! a message on, waits while the hub's outbound budget is spent
//! ([`Inbound::room`]). While it waits, nothing is read: the kernel's buffers
//! fill and Redis keeps the backlog in its own output buffer for this
//! client, where its `client-output-buffer-limit pubsub` applies. A client
//! past that limit is disconnected by Redis, and the provider reconnects
//! (counted and logged, like any outage).
//!
//! Only the part of RESP2 a subscribed connection sees is spoken:
//! `SUBSCRIBE`, `UNSUBSCRIBE` and `PING` go out; their confirmations, errors
//! and `message` pushes come back, in order.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use ori_core::Inbound;
use redis::{ConnectionAddr, ConnectionInfo};
use tokio::io::{
    AsyncBufRead, AsyncBufReadExt, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader,
};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::Fault;

/// The most bytes of bulk strings in one frame from Redis (a message's
/// channel and payload): a bound on what one frame can make this instance
/// hold.
pub(crate) const MAX_BULK: usize = 64 << 20;
/// The longest header line (`*3`, `$1024`, `:1`, an error message).
const MAX_LINE: usize = 4096;
/// The most items of an array (a subscribed connection's have three).
const MAX_ITEMS: usize = 4;

type Writer = Box<dyn AsyncWrite + Send + Unpin>;
type Ack = oneshot::Sender<Result<(), Fault>>;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What a message is handed to: its channel and payload.
pub(crate) type Deliver = Box<dyn FnMut(&str, &[u8]) + Send>;
/// Told when the reader starts (true) and stops (false) waiting for room.
pub(crate) type Waiting = Box<dyn Fn(bool) + Send + Sync>;

/// One paced subscriber connection. Dropping it ends the reader and closes
/// the connection.
pub(crate) struct Paced {
    inner: Arc<Inner>,
    reader: JoinHandle<Fault>,
}

struct Inner {
    /// The write half; commands and their places in `pending` are taken
    /// under this lock, so confirmations match commands in order.
    writer: tokio::sync::Mutex<Writer>,
    pending: Mutex<VecDeque<Ack>>,
}

impl Paced {
    /// Connects (and authenticates) within `timeout`; the reader then hands
    /// every message to `deliver`, pausing while the outbound budget has no room.
    pub(crate) async fn connect(
        info: &ConnectionInfo,
        timeout: Duration,
        inbound: Inbound,
        deliver: Deliver,
        waiting: Waiting,
    ) -> Result<Self, Fault> {
        let connecting = async {
            let (read, mut write): (Box<dyn tokio::io::AsyncRead + Send + Unpin>, Writer) =
                match info.addr() {
                    ConnectionAddr::Tcp(host, port) => {
                        let s = tokio::net::TcpStream::connect((host.as_str(), *port))
                            .await
                            .map_err(Fault::io("connecting the subscriber"))?;
                        let _ = s.set_nodelay(true);
                        let (r, w) = s.into_split();
                        (Box::new(r), Box::new(w))
                    }
                    #[cfg(unix)]
                    ConnectionAddr::Unix(path) => {
                        let s = tokio::net::UnixStream::connect(path)
                            .await
                            .map_err(Fault::io("connecting the subscriber"))?;
                        let (r, w) = s.into_split();
                        (Box::new(r), Box::new(w))
                    }
                    other => return Err(Fault::Unsupported(other.to_string())),
                };
            let mut read = BufReader::with_capacity(16 << 10, read);
            let settings = info.redis_settings();
            if let Some(password) = settings.password() {
                let mut auth = vec!["AUTH"];
                auth.extend(settings.username());
                auth.push(password);
                write
                    .write_all(&command(&auth))
                    .await
                    .map_err(Fault::io("authenticating the subscriber"))?;
                match read_frame(&mut read).await? {
                    Frame::Simple(_) => {}
                    Frame::Error(message) => {
                        return Err(Fault::Refused {
                            what: "AUTH",
                            message,
                        })
                    }
                    _ => return Err(Fault::Protocol("unexpected reply to AUTH".into())),
                }
            }
            Ok::<_, Fault>((read, write))
        };
        let (read, write) = tokio::time::timeout(timeout, connecting)
            .await
            .map_err(|_| Fault::timeout("connecting", timeout))??;
        let inner = Arc::new(Inner {
            writer: tokio::sync::Mutex::new(write),
            pending: Mutex::new(VecDeque::new()),
        });
        let reader = tokio::spawn(read_loop(read, inner.clone(), inbound, deliver, waiting));
        Ok(Self { inner, reader })
    }

    /// Sends one command and waits for its confirmation.
    pub(crate) fn request(
        &self,
        args: &[&str],
    ) -> impl std::future::Future<Output = Result<(), Fault>> + Send + 'static {
        let bytes = command(args);
        let inner = self.inner.clone();
        async move {
            let rx = {
                let mut w = inner.writer.lock().await;
                let (tx, rx) = oneshot::channel();
                lock(&inner.pending).push_back(tx);
                w.write_all(&bytes)
                    .await
                    .map_err(Fault::io("writing to the subscriber"))?;
                rx
            };
            rx.await
                .unwrap_or(Err(Fault::Closed("subscriber connection")))
        }
    }

    /// Resolves when the connection is gone, with the reason.
    pub(crate) async fn closed(&mut self) -> Fault {
        (&mut self.reader)
            .await
            .unwrap_or(Fault::Closed("subscriber reader"))
    }
}

impl Drop for Paced {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

/// One RESP2 command: an array of bulk strings.
fn command(args: &[&str]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// A frame of what a subscribed connection receives.
#[derive(Debug, PartialEq)]
enum Frame {
    Simple(String),
    Error(String),
    Int(i64),
    Bulk(Vec<u8>),
    Array(Vec<Frame>),
}

/// Reads frames until the connection fails; returns why it ended.
async fn read_loop(
    mut read: BufReader<Box<dyn tokio::io::AsyncRead + Send + Unpin>>,
    inner: Arc<Inner>,
    inbound: Inbound,
    mut deliver: Deliver,
    waiting: Waiting,
) -> Fault {
    let why = loop {
        let frame = match read_frame(&mut read).await {
            Ok(f) => f,
            Err(e) => break e,
        };
        match frame {
            Frame::Array(items) => match items.as_slice() {
                [Frame::Bulk(kind), Frame::Bulk(channel), Frame::Bulk(payload)]
                    if kind == b"message" =>
                {
                    // Nothing more is read while the budget is spent: this
                    // is where Redis (and, told by `waiting`, the other
                    // instances) feel this instance's pace.
                    if !inbound.budget().may_pass() {
                        // Told "no longer waiting" however the wait ends,
                        // also when the reader is aborted inside it.
                        let _waiting = WaitingNow::begin(&*waiting);
                        inbound.room().await;
                    }
                    match std::str::from_utf8(channel) {
                        Ok(channel) => deliver(channel, payload),
                        Err(_) => deliver("", payload),
                    }
                }
                [Frame::Bulk(kind), ..]
                    if kind == b"subscribe" || kind == b"unsubscribe" || kind == b"pong" =>
                {
                    answer(&inner, Ok(()));
                }
                _ => answer(
                    &inner,
                    Err(Fault::Protocol("unexpected reply to a command".into())),
                ),
            },
            Frame::Error(message) => answer(
                &inner,
                Err(Fault::Refused {
                    what: "a subscriber command",
                    message,
                }),
            ),
            Frame::Simple(_) | Frame::Int(_) | Frame::Bulk(_) => answer(&inner, Ok(())),
        }
    };
    // Whoever still waits learns that the connection is gone.
    lock(&inner.pending).clear();
    why
}

/// While it lives, the reader is waiting for room.
struct WaitingNow<'a>(&'a (dyn Fn(bool) + Send + Sync));

impl<'a> WaitingNow<'a> {
    fn begin(tell: &'a (dyn Fn(bool) + Send + Sync)) -> Self {
        tell(true);
        Self(tell)
    }
}

impl Drop for WaitingNow<'_> {
    fn drop(&mut self) {
        (self.0)(false);
    }
}

fn answer(inner: &Inner, result: Result<(), Fault>) {
    if let Some(tx) = lock(&inner.pending).pop_front() {
        let _ = tx.send(result);
    }
}

async fn read_line<R: AsyncBufRead + Unpin>(r: &mut R) -> Result<String, Fault> {
    let mut line = Vec::new();
    let n = r
        .take(MAX_LINE as u64)
        .read_until(b'\n', &mut line)
        .await
        .map_err(Fault::io("reading the subscriber"))?;
    if n == 0 {
        return Err(Fault::Closed("subscriber connection (by Redis)"));
    }
    if !line.ends_with(b"\r\n") {
        return Err(Fault::Protocol("line too long or cut short".into()));
    }
    line.truncate(line.len() - 2);
    String::from_utf8(line).map_err(|_| Fault::Protocol("not UTF-8".into()))
}

fn parse_len(s: &str, max: usize) -> Result<Option<usize>, Fault> {
    let n: i64 = s
        .parse()
        .map_err(|_| Fault::Protocol(format!("length {s:?}").into()))?;
    if n < 0 {
        return Ok(None);
    }
    let n = n as usize;
    if n > max {
        return Err(Fault::Protocol(
            format!("{n} bytes in one frame (limit {max})").into(),
        ));
    }
    Ok(Some(n))
}

/// Reads one frame; arrays hold bulk strings, integers and simple strings
/// (nested arrays are refused: a subscribed connection gets none).
async fn read_frame<R: AsyncBufRead + Unpin>(r: &mut R) -> Result<Frame, Fault> {
    let line = read_line(r).await?;
    let (kind, rest) = split_kind(&line)?;
    match kind {
        "*" => {
            let n = parse_len(rest, MAX_ITEMS)?.unwrap_or(0);
            let mut items = Vec::with_capacity(n);
            let mut budget = MAX_BULK;
            for _ in 0..n {
                let line = read_line(r).await?;
                let (kind, rest) = split_kind(&line)?;
                items.push(match kind {
                    "$" => {
                        let bulk = read_bulk(r, rest, budget).await?;
                        if let Frame::Bulk(b) = &bulk {
                            budget -= b.len();
                        }
                        bulk
                    }
                    ":" => int(rest)?,
                    "+" => Frame::Simple(rest.to_owned()),
                    _ => {
                        return Err(Fault::Protocol(
                            format!("unexpected {kind:?} in an array").into(),
                        ))
                    }
                });
            }
            Ok(Frame::Array(items))
        }
        "$" => read_bulk(r, rest, MAX_BULK).await,
        ":" => int(rest),
        "+" => Ok(Frame::Simple(rest.to_owned())),
        "-" => Ok(Frame::Error(rest.to_owned())),
        _ => Err(Fault::Protocol(format!("unexpected reply {line:?}").into())),
    }
}

/// The type byte of a reply line and the rest (`None` for a line that does
/// not start with an ASCII type byte).
fn split_kind(line: &str) -> Result<(&str, &str), Fault> {
    match line.as_bytes().first() {
        Some(b) if b.is_ascii() => Ok(line.split_at(1)),
        _ => Err(Fault::Protocol(format!("unexpected reply {line:?}").into())),
    }
}

fn int(s: &str) -> Result<Frame, Fault> {
    s.parse()
        .map(Frame::Int)
        .map_err(|_| Fault::Protocol(format!("integer {s:?}").into()))
}

/// One bulk string of at most `max` bytes, read as it arrives (nothing is
/// reserved for a length Redis only announces).
async fn read_bulk<R: AsyncBufRead + Unpin>(
    r: &mut R,
    len: &str,
    max: usize,
) -> Result<Frame, Fault> {
    let Some(n) = parse_len(len, max)? else {
        return Ok(Frame::Bulk(Vec::new()));
    };
    let mut buf = Vec::with_capacity((n + 2).min(64 << 10));
    let got = r
        .take(n as u64 + 2)
        .read_to_end(&mut buf)
        .await
        .map_err(Fault::io("reading the subscriber"))?;
    if got != n + 2 || !buf.ends_with(b"\r\n") {
        return Err(Fault::Protocol("bulk string cut short".into()));
    }
    buf.truncate(n);
    Ok(Frame::Bulk(buf))
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn parse(bytes: &[u8]) -> Result<Frame, String> {
        read_frame(&mut BufReader::new(bytes))
            .await
            .map_err(|e| e.to_string())
    }

    #[tokio::test]
    async fn reads_the_frames_of_a_subscribed_connection() {
        let msg = parse(b"*3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$5\r\nhe\r\no\r\n").await;
        assert_eq!(
            msg,
            Ok(Frame::Array(vec![
                Frame::Bulk(b"message".to_vec()),
                Frame::Bulk(b"ch".to_vec()),
                Frame::Bulk(b"he\r\no".to_vec()),
            ]))
        );
        let ack = parse(b"*3\r\n$9\r\nsubscribe\r\n$1\r\nc\r\n:1\r\n").await;
        assert!(matches!(ack, Ok(Frame::Array(ref a)) if a[2] == Frame::Int(1)));
        assert_eq!(
            parse(b"-ERR no\r\n").await,
            Ok(Frame::Error("ERR no".into()))
        );
        assert_eq!(parse(b"+OK\r\n").await, Ok(Frame::Simple("OK".into())));
    }

    #[tokio::test]
    async fn refuses_oversized_truncated_and_malformed_frames() {
        let huge = format!("${}\r\n", MAX_BULK + 1);
        assert!(parse(huge.as_bytes()).await.unwrap_err().contains("limit"));
        assert!(parse(b"$5\r\nab").await.is_err());
        assert!(parse(b"*1\r\n*1\r\n").await.is_err());
        assert!(parse(b"?what\r\n").await.is_err());
        assert!(parse(b"*x\r\n").await.is_err());
        let long = vec![b'+'; MAX_LINE + 10];
        assert!(parse(&long).await.is_err());
        assert!(parse(b"").await.is_err());
        assert!(
            parse("é\r\n".as_bytes()).await.is_err(),
            "no panic on a non-ASCII type"
        );
        assert!(parse(b"*5\r\n").await.is_err(), "arrays of at most 4 items");
        let two_halves = format!(
            "*2\r\n${n}\r\n{}\r\n${n}\r\n",
            "x".repeat(MAX_BULK / 2 + 1),
            n = MAX_BULK / 2 + 1
        );
        assert!(
            parse(two_halves.as_bytes())
                .await
                .unwrap_err()
                .contains("limit"),
            "the limit is for the whole frame"
        );
    }

    #[test]
    fn commands_are_arrays_of_bulk_strings() {
        assert_eq!(
            command(&["SUBSCRIBE", "ws:t:room"]),
            b"*2\r\n$9\r\nSUBSCRIBE\r\n$9\r\nws:t:room\r\n".to_vec()
        );
    }
}
