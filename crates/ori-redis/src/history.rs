//! Topic history in Redis: one sequence per topic for every instance on
//! the Redis, so a client can resume on any of them.
//!
//! Per topic, two keys share the hash slot of the topic's channel (their
//! hash tag is the channel name, so sharded pub/sub keeps working in a
//! cluster): `{<channel>}:h`, a hash with the epoch (`e`) and the latest
//! offset (`s`), and `{<channel>}:x`, a stream of the entries (offset `o`,
//! payload `p`, kind `k`), trimmed to the size and, by its time-based ids,
//! to the TTL. The publishing script assigns the offset, appends the entry
//! and publishes the positioned envelope in one atomic step. When the hash
//! is gone (flushed, expired, Redis restarted without persistence) the next
//! script makes a new epoch: every older position is then unrecoverable.

use std::sync::Arc;

use ori_core::{HistoryLimits, HistoryRead, Message, Position, Topic, Utf8Bytes};
use redis::Value;

use std::sync::atomic::Ordering;

use ori_core::{Outgoing, ProviderError, Sent, Target};

use crate::backend::Publisher;
use crate::envelope::{self, InstanceId};
use crate::{lock, Error, RedisProvider};

const PUBLISH: &str = r#"
local epoch = redis.call('HGET', KEYS[1], 'e')
if not epoch then
  epoch = ARGV[1]
  redis.call('DEL', KEYS[2])
  redis.call('HSET', KEYS[1], 'e', epoch, 's', 0)
end
local offset = redis.call('HINCRBY', KEYS[1], 's', 1)
local now = redis.call('TIME')
local ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
redis.call('XADD', KEYS[2], 'MAXLEN', ARGV[2], '*', 'o', offset, 'k', ARGV[8], 'p', ARGV[6])
redis.call('XTRIM', KEYS[2], 'MINID', ms - tonumber(ARGV[3]))
local keep = math.max(tonumber(ARGV[3]) * 2, 60000)
redis.call('PEXPIRE', KEYS[1], keep)
redis.call('PEXPIRE', KEYS[2], keep)
local be = {}
local n = offset
for i = 8, 1, -1 do
  be[i] = string.char(n % 256)
  n = math.floor(n / 256)
end
local env = ARGV[5] .. string.char(#epoch) .. epoch .. table.concat(be) .. ARGV[6]
local receivers = redis.call(ARGV[7], ARGV[4], env)
return {offset, epoch, receivers}
"#;

const READ: &str = r#"
local epoch = redis.call('HGET', KEYS[1], 'e')
if not epoch then
  epoch = ARGV[1]
  redis.call('DEL', KEYS[2])
  redis.call('HSET', KEYS[1], 'e', epoch, 's', 0)
  redis.call('PEXPIRE', KEYS[1], math.max(tonumber(ARGV[4]) * 2, 60000))
end
local last = tonumber(redis.call('HGET', KEYS[1], 's'))
local since = tonumber(ARGV[2])
if since < 0 or since >= last then
  return {epoch, last, 0}
end
local want = last - since
if want > tonumber(ARGV[3]) then
  return {epoch, last, 0}
end
local now = redis.call('TIME')
local ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
redis.call('XTRIM', KEYS[2], 'MINID', ms - tonumber(ARGV[4]))
return {epoch, last, redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', want)}
"#;

/// The two scripts, loaded once per provider.
pub(crate) struct Scripts {
    publish: redis::Script,
    read: redis::Script,
}

impl Default for Scripts {
    fn default() -> Self {
        Self {
            publish: redis::Script::new(PUBLISH),
            read: redis::Script::new(READ),
        }
    }
}

/// The keys of `channel`'s history: the hash, then the stream.
fn keys(channel: &str) -> [String; 2] {
    [format!("{{{channel}}}:h"), format!("{{{channel}}}:x")]
}

/// A new epoch: random, 16 characters.
fn fresh_epoch() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..16].to_owned()
}

fn ttl_ms(limits: &HistoryLimits) -> u64 {
    u64::try_from(limits.ttl.as_millis()).unwrap_or(u64::MAX / 4)
}

fn protocol(what: &str) -> Error {
    Error::Redis(redis::RedisError::from((
        redis::ErrorKind::Parse,
        "unexpected reply from a history script",
        what.to_owned(),
    )))
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    }
}

fn int(v: &Value) -> Option<u64> {
    match v {
        Value::Int(n) => u64::try_from(*n).ok(),
        other => text(other)?.parse().ok(),
    }
}

/// Publishes `message` to `topic` on `channel` with the next offset of its
/// history; the receivers Redis counted and the position.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn publish(
    scripts: &Scripts,
    conn: &mut Publisher,
    channel: &str,
    origin: &InstanceId,
    topic: &Topic,
    message: &Message,
    limits: HistoryLimits,
) -> Result<(u64, Position), Error> {
    let [meta, stream] = keys(channel);
    let head = envelope::head(origin, topic.as_str(), message, true);
    let mut call = scripts.publish.key(meta);
    call.key(stream)
        .arg(fresh_epoch())
        .arg(limits.max_entries)
        .arg(ttl_ms(&limits))
        .arg(channel)
        .arg(head)
        .arg(message.as_bytes())
        .arg(conn.publish_command())
        .arg(if message.is_text() { "t" } else { "b" });
    let reply: Vec<Value> = conn.invoke(&call).await?;
    match reply.as_slice() {
        [offset, epoch, receivers] => {
            let offset = int(offset).ok_or_else(|| protocol("offset"))?;
            let epoch = text(epoch).ok_or_else(|| protocol("epoch"))?;
            let receivers = int(receivers).ok_or_else(|| protocol("receivers"))?;
            Ok((
                receivers,
                Position {
                    epoch: epoch.into(),
                    offset,
                },
            ))
        }
        _ => Err(protocol("publish reply")),
    }
}

/// Reads `topic`'s history on `channel` for a join (see
/// [`ori_core::Provider::read_history`]).
pub(crate) async fn read(
    scripts: &Scripts,
    conn: &mut Publisher,
    channel: &str,
    limits: HistoryLimits,
    since: Option<(&str, u64)>,
) -> Result<HistoryRead, Error> {
    let [meta, stream] = keys(channel);
    let from = since.map_or(-1, |(_, n)| i64::try_from(n).unwrap_or(i64::MAX));
    let mut call = scripts.read.key(meta);
    call.key(stream)
        .arg(fresh_epoch())
        .arg(from)
        .arg(limits.max_entries)
        .arg(ttl_ms(&limits));
    let reply: Vec<Value> = conn.invoke(&call).await?;
    let [epoch, last, entries] = reply.as_slice() else {
        return Err(protocol("read reply"));
    };
    let epoch: Arc<str> = text(epoch).ok_or_else(|| protocol("epoch"))?.into();
    let last = int(last).ok_or_else(|| protocol("last"))?;
    let replay = since.and_then(|(seen, n)| {
        if *seen != *epoch || n > last {
            return None;
        }
        if n == last {
            return Some(Vec::new());
        }
        let Value::Array(entries) = entries else {
            return None;
        };
        // Newest first; every offset from `last` down to `n + 1`, or none.
        let mut out = Vec::with_capacity(entries.len());
        for (i, entry) in entries.iter().enumerate() {
            let (offset, message) = decode_entry(entry)?;
            if offset != last - i as u64 {
                return None;
            }
            out.push((offset, message));
        }
        if out.len() as u64 != last - n {
            return None;
        }
        out.reverse();
        Some(out)
    });
    Ok(HistoryRead {
        epoch,
        last,
        replay,
    })
}

/// One stream entry: `[id, [field, value, ...]]` with `o`, `k`, `p`.
fn decode_entry(entry: &Value) -> Option<(u64, Message)> {
    let Value::Array(parts) = entry else {
        return None;
    };
    let Some(Value::Array(fields)) = parts.get(1) else {
        return None;
    };
    let (mut offset, mut kind, mut payload) = (None, None, None);
    for pair in fields.chunks(2) {
        let [name, value] = pair else {
            return None;
        };
        match text(name)?.as_str() {
            "o" => offset = int(value),
            "k" => kind = text(value),
            "p" => {
                if let Value::BulkString(b) = value {
                    payload = Some(bytes::Bytes::copy_from_slice(b));
                }
            }
            _ => {}
        }
    }
    let payload = payload?;
    let message = match kind?.as_str() {
        "t" => Message::Text(Utf8Bytes::try_from_bytes(payload).ok()?),
        _ => Message::Binary(payload),
    };
    Some((offset?, message))
}

impl RedisProvider {
    fn publisher_or_err(&self) -> Result<Publisher, Error> {
        self.shared.publisher().ok_or_else(|| Error::Unavailable {
            reason: lock(&self.shared.last_error).clone(),
        })
    }

    /// Runs a history script on the publisher within the publish timeout.
    async fn within<T>(
        &self,
        script: impl std::future::Future<Output = Result<T, Error>>,
    ) -> Result<T, Error> {
        let timeout = self.shared.config.publish_timeout;
        match tokio::time::timeout(timeout, script).await {
            Ok(Err(Error::Redis(e))) => {
                if e.is_io_error() || e.is_connection_dropped() || e.is_unrecoverable_error() {
                    self.shared.publisher_suspect.notify_one();
                }
                Err(Error::Redis(e))
            }
            Ok(other) => other,
            Err(_) => {
                self.shared.publisher_suspect.notify_one();
                Err(Error::Timeout(timeout))
            }
        }
    }

    pub(crate) async fn publish_with_history(
        &self,
        out: &Outgoing<'_>,
        topic: &Topic,
        channel: &str,
        limits: HistoryLimits,
    ) -> Result<Sent, ProviderError> {
        let shared = &self.shared;
        let mut conn = self.publisher_or_err()?;
        let origin = *out.origin.as_bytes();
        let (receivers, position) = self
            .within(publish(
                &shared.scripts,
                &mut conn,
                channel,
                &origin,
                topic,
                out.message,
                limits,
            ))
            .await?;
        shared.counters.published.fetch_add(1, Ordering::Relaxed);
        Ok(Sent::counted(receivers).at(position))
    }

    pub(crate) async fn read_history_inner(
        &self,
        topic: &Topic,
        limits: HistoryLimits,
        since: Option<(&str, u64)>,
    ) -> Result<HistoryRead, ProviderError> {
        let mut conn = self.publisher_or_err()?;
        let channel = self.shared.channels.topic(topic);
        Ok(self
            .within(read(
                &self.shared.scripts,
                &mut conn,
                &channel,
                limits,
                since,
            ))
            .await?)
    }

    /// Waits until the subscriber connection holds `topic`'s channel.
    pub(crate) async fn watched_inner(&self, target: &Target) -> Result<(), ProviderError> {
        let Target::Topic(topic) = target else {
            return Ok(());
        };
        let shared = &self.shared;
        let timeout = shared.config.publish_timeout;
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let changed = shared.confirmed_changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if lock(&shared.confirmed).contains(topic) {
                return Ok(());
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                return Err(ProviderError::from(Error::Timeout(timeout)));
            }
        }
    }
}
