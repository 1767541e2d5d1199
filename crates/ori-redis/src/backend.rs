//! The two ways of talking to Redis: one server with classic pub/sub
//! (`PUBLISH` / `SUBSCRIBE`), or a Redis Cluster with sharded pub/sub
//! (`SPUBLISH` / `SSUBSCRIBE`, feature `cluster`). The task and the publish
//! path see only [`Publisher`] and [`Subscriber`].

use std::future::Future;
use std::time::Duration;

use ori_core::Inbound;
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, IntoConnectionInfo, Msg, RedisResult};

use crate::paced::{Deliver, Paced, Waiting};
use crate::Fault;

/// What a subscriber connection produced.
pub(crate) enum Event {
    /// A message on a subscribed channel (a cluster's; one server's are
    /// delivered by its paced reader).
    #[cfg_attr(not(feature = "cluster"), allow(dead_code))]
    Message(Msg),
    /// The connection is gone, and why.
    Closed(Fault),
    /// One node connection of a cluster dropped (the cluster client
    /// reconnects it by itself): check that the cluster answers, then make
    /// sure every channel is still subscribed.
    #[cfg_attr(not(feature = "cluster"), allow(dead_code))]
    NodeDisconnected,
}

/// Where Redis is, ready to open connections.
#[derive(Clone)]
pub(crate) enum Backend {
    /// One server (or a proxy in front of several).
    Single(redis::Client),
    /// A Redis Cluster: sharded pub/sub, each channel on the shard that
    /// owns its slot.
    #[cfg(feature = "cluster")]
    Cluster(Vec<String>),
}

/// The publishing connection. Cheap to clone (multiplexed).
#[derive(Clone)]
pub(crate) enum Publisher {
    Single(MultiplexedConnection),
    #[cfg(feature = "cluster")]
    Cluster(redis::cluster_async::ClusterConnection),
}

/// The subscribing connection and its incoming messages.
pub(crate) enum Subscriber {
    /// Paced by the hub's outbound budget (see [`crate::paced`]).
    Single(Paced),
    #[cfg(feature = "cluster")]
    Cluster {
        conn: redis::cluster_async::ClusterConnection,
        pushes: tokio::sync::mpsc::UnboundedReceiver<redis::PushInfo>,
    },
}

impl Backend {
    /// Opens a publisher and a subscriber, each within `connect_timeout`;
    /// commands on them time out after `response_timeout`. One server's
    /// subscriber hands its messages to `deliver`, reading no faster than
    /// the instance's outbound budget has room, and tells `waiting` when it waits.
    pub(crate) async fn connect(
        &self,
        connect_timeout: Duration,
        response_timeout: Duration,
        inbound: &Inbound,
        deliver: Deliver,
        waiting: Waiting,
    ) -> Result<(Publisher, Subscriber), Fault> {
        match self {
            Backend::Single(client) => {
                let publisher = self
                    .connect_publisher(connect_timeout, response_timeout)
                    .await?;
                let info = client
                    .get_connection_info()
                    .clone()
                    .into_connection_info()
                    .map_err(Fault::redis("reading the Redis address"))?;
                let paced =
                    Paced::connect(&info, connect_timeout, inbound.clone(), deliver, waiting)
                        .await?;
                Ok((publisher, Subscriber::Single(paced)))
            }
            #[cfg(feature = "cluster")]
            Backend::Cluster(nodes) => {
                let publisher = self
                    .connect_publisher(connect_timeout, response_timeout)
                    .await?;
                let (tx, pushes) = tokio::sync::mpsc::unbounded_channel();
                let client =
                    redis::cluster::ClusterClientBuilder::new(nodes.iter().map(String::as_str))
                        .use_protocol(redis::ProtocolVersion::RESP3)
                        .push_sender(tx)
                        .connection_timeout(connect_timeout)
                        .response_timeout(response_timeout)
                        .build()
                        .map_err(Fault::redis("configuring the cluster client"))?;
                let conn = tokio::time::timeout(connect_timeout, client.get_async_connection())
                    .await
                    .map_err(|_| Fault::timeout("connecting", connect_timeout))?
                    .map_err(Fault::redis("connecting"))?;
                Ok((publisher, Subscriber::Cluster { conn, pushes }))
            }
        }
    }

    /// Opens a publisher alone (to replace one that stopped answering).
    pub(crate) async fn connect_publisher(
        &self,
        connect_timeout: Duration,
        response_timeout: Duration,
    ) -> Result<Publisher, Fault> {
        match self {
            Backend::Single(client) => {
                let config = AsyncConnectionConfig::new()
                    .set_connection_timeout(Some(connect_timeout))
                    .set_response_timeout(Some(response_timeout));
                let conn = tokio::time::timeout(
                    connect_timeout,
                    client.get_multiplexed_async_connection_with_config(&config),
                )
                .await
                .map_err(|_| Fault::timeout("connecting", connect_timeout))?
                .map_err(Fault::redis("connecting"))?;
                Ok(Publisher::Single(conn))
            }
            #[cfg(feature = "cluster")]
            Backend::Cluster(nodes) => {
                let client =
                    redis::cluster::ClusterClientBuilder::new(nodes.iter().map(String::as_str))
                        .connection_timeout(connect_timeout)
                        .response_timeout(response_timeout)
                        .build()
                        .map_err(Fault::redis("configuring the cluster client"))?;
                let conn = tokio::time::timeout(connect_timeout, client.get_async_connection())
                    .await
                    .map_err(|_| Fault::timeout("connecting", connect_timeout))?
                    .map_err(Fault::redis("connecting"))?;
                Ok(Publisher::Cluster(conn))
            }
        }
    }
}

impl Publisher {
    /// The command that publishes on this connection's kind of server.
    pub(crate) fn publish_command(&self) -> &'static str {
        match self {
            Publisher::Single(_) => "PUBLISH",
            #[cfg(feature = "cluster")]
            Publisher::Cluster(_) => "SPUBLISH",
        }
    }

    /// Runs a script (by its digest, loading it when the server lacks it).
    pub(crate) async fn invoke<T: redis::FromRedisValue>(
        &mut self,
        call: &redis::ScriptInvocation<'_>,
    ) -> RedisResult<T> {
        match self {
            Publisher::Single(c) => call.invoke_async(c).await,
            #[cfg(feature = "cluster")]
            Publisher::Cluster(c) => call.invoke_async(c).await,
        }
    }

    /// `PUBLISH` (or `SPUBLISH`); the number of receiving connections.
    pub(crate) async fn publish(&mut self, channel: &str, payload: &[u8]) -> RedisResult<usize> {
        match self {
            Publisher::Single(c) => {
                redis::cmd("PUBLISH")
                    .arg(channel)
                    .arg(payload)
                    .query_async(c)
                    .await
            }
            #[cfg(feature = "cluster")]
            Publisher::Cluster(c) => {
                redis::cmd("SPUBLISH")
                    .arg(channel)
                    .arg(payload)
                    .query_async(c)
                    .await
            }
        }
    }

    pub(crate) async fn ping(&mut self) -> RedisResult<()> {
        let ping = redis::cmd("PING");
        match self {
            Publisher::Single(c) => ping.query_async::<redis::Value>(c).await.map(|_| ()),
            #[cfg(feature = "cluster")]
            Publisher::Cluster(c) => ping.query_async::<redis::Value>(c).await.map(|_| ()),
        }
    }
}

impl Subscriber {
    /// The next message or connection event.
    pub(crate) async fn next(&mut self) -> Event {
        match self {
            Subscriber::Single(paced) => Event::Closed(paced.closed().await),
            #[cfg(feature = "cluster")]
            Subscriber::Cluster { pushes, .. } => loop {
                let Some(push) = pushes.recv().await else {
                    return Event::Closed(Fault::Closed("subscriber connection"));
                };
                match push.kind {
                    redis::PushKind::Disconnection => return Event::NodeDisconnected,
                    redis::PushKind::SMessage | redis::PushKind::Message => {
                        if let Some(msg) = Msg::from_push_info(push) {
                            return Event::Message(msg);
                        }
                    }
                    _ => {}
                }
            },
        }
    }

    pub(crate) async fn ping(&mut self) -> Result<(), Fault> {
        match self {
            Subscriber::Single(paced) => paced.request(&["PING"]).await,
            #[cfg(feature = "cluster")]
            Subscriber::Cluster { conn, .. } => redis::cmd("PING")
                .query_async::<redis::Value>(conn)
                .await
                .map(|_| ())
                .map_err(Fault::redis("PING on the subscriber")),
        }
    }

    /// One `(S)SUBSCRIBE` or `(S)UNSUBSCRIBE` of one channel, as a future
    /// that can run concurrently with others (they are pipelined).
    pub(crate) fn change(
        &self,
        subscribe: bool,
        channel: String,
    ) -> impl Future<Output = Result<(), Fault>> + Send + 'static {
        enum Conn {
            Single(std::pin::Pin<Box<dyn Future<Output = Result<(), Fault>> + Send>>),
            #[cfg(feature = "cluster")]
            Cluster(redis::cluster_async::ClusterConnection),
        }
        let conn = match self {
            Subscriber::Single(paced) => {
                let verb = if subscribe {
                    "SUBSCRIBE"
                } else {
                    "UNSUBSCRIBE"
                };
                Conn::Single(Box::pin(paced.request(&[verb, &channel])))
            }
            #[cfg(feature = "cluster")]
            Subscriber::Cluster { conn, .. } => Conn::Cluster(conn.clone()),
        };
        async move {
            match conn {
                Conn::Single(request) => request.await,
                #[cfg(feature = "cluster")]
                Conn::Cluster(mut c) if subscribe => c
                    .ssubscribe(channel)
                    .await
                    .map_err(Fault::redis("SSUBSCRIBE")),
                #[cfg(feature = "cluster")]
                Conn::Cluster(mut c) => c
                    .sunsubscribe(channel)
                    .await
                    .map_err(Fault::redis("SUNSUBSCRIBE")),
            }
        }
    }
}
