//! Scale-out over Redis: the [`ClusterBroker`] that lets several crier nodes share channels.
//!
//! What Redis holds per channel (see `docs/SCALING.md`): a hash `crier:meta:{name}` (epoch,
//! last offset) and a list `crier:hist:{name}` (the last `--history-size` messages, each its
//! `data` or, stamped, its `from` and `data`: `crate::hub::stored`); messages travel on the pub/sub channel `crier:msg:{name}`. One Lua script
//! (`scripts::PUBLISH`) assigns the offset, appends to history and publishes, in one round
//! trip, so every node sees the same positions in the same order.
//!
//! Two connections per node: a [`ConnectionManager`] for commands (publish, snapshots;
//! reconnects by itself) and one pub/sub connection owned by the [`Listener`] task, which
//! listens to a channel only while this node has subscribers to it (plain `SUBSCRIBE` per
//! channel: a pattern would bring every channel's traffic to every node). The listener is the
//! only writer of this node's channel copies, so a join (subscribe, then load history), a
//! gap's recovery and live messages never interleave.
//!
//! Backend control commands (`/api/users/…`, `/api/channels/…/disconnect`) travel on one more
//! pub/sub channel, `crier:control`, which every listener follows (`control`); a user lookup's
//! answers come back on the asking node's `crier:reply:{node}` (`gather`).
//!
//! Every Redis call has a timeout (`--redis-timeout`); calls in flight are bounded by a
//! semaphore and listener commands by a bounded queue; what does not fit is refused
//! (`broker_unavailable`) or dropped, and counted.

mod control;
mod gather;
mod listener;
mod presence;
mod presence_read;
mod scripts;
mod users;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::BoxFuture;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::{mpsc, oneshot, Semaphore};

use crate::hub::broker::{ClusterBroker, Permit, Snapshot, Stored};
use crate::hub::control::Gathered;
use crate::hub::stats::BrokerStats;
use crate::hub::{ChannelName, ControlCommand, Epoch, HistoryLimits, HubError};

pub use listener::Listener;

/// Broker calls in flight at once per node; past it, publishes and subscribes are refused
/// (`broker_unavailable`) rather than queued without bound behind a slow Redis.
const MAX_CALLS_IN_FLIGHT: usize = 1024;

/// Join and leave requests waiting for the listener.
const LISTENER_QUEUE: usize = 4096;

/// How long Redis keeps a channel's epoch and offset after its last publish or join. Much
/// longer than history: forgetting them starts a new generation, which every subscriber
/// sees as `missed` (`epoch_changed`).
const META_TTL: Duration = Duration::from_secs(24 * 3600);

/// How the node reaches Redis.
#[derive(Clone, Debug)]
pub struct ClusterConfig {
    pub url: String,
    /// Bound on every Redis call (and on each connection attempt).
    pub timeout: Duration,
    /// How long start-up keeps trying to reach Redis before giving up (0: one attempt).
    pub wait: Duration,
    pub history: HistoryLimits,
}

/// The Redis-backed [`ClusterBroker`]; cheap to clone.
#[derive(Clone)]
pub struct RedisBroker {
    shared: Arc<Shared>,
}

struct Shared {
    /// This node's name in the cluster (random per start): how it knows its own control
    /// commands when they come back from Redis.
    node: String,
    /// `GET /api/users/{user}` questions waiting for the other nodes' answers.
    pending: gather::Pending,
    /// Presence changes waiting for the writer.
    presence: presence::PresenceQueue,
    commands: ConnectionManager,
    publish: redis::Script,
    snapshot: redis::Script,
    listener: mpsc::Sender<Command>,
    /// Joins under way per channel: the listener keeps following a pinned channel even while
    /// it has no local subscriber yet.
    pins: Mutex<HashMap<ChannelName, usize>>,
    calls: Arc<Semaphore>,
    config: ClusterConfig,
    stats: BrokerStats,
}

enum Command {
    Join(ChannelName, oneshot::Sender<Result<(), HubError>>),
    Leave(ChannelName),
}

fn unavailable(what: &str, error: impl std::fmt::Display) -> HubError {
    HubError::BrokerUnavailable(format!("{what}: {error}"))
}

fn meta_key(channel: &ChannelName) -> String {
    format!("crier:meta:{channel}")
}

fn history_key(channel: &ChannelName) -> String {
    format!("crier:hist:{channel}")
}

const MESSAGE_PREFIX: &str = "crier:msg:";

fn message_key(channel: &ChannelName) -> String {
    format!("{MESSAGE_PREFIX}{channel}")
}

impl RedisBroker {
    /// Connects to Redis (retrying for `config.wait`); the returned [`Listener`] must be run
    /// (`Listener::run`) with the hub built on this broker.
    pub async fn connect(
        config: ClusterConfig,
        stats: BrokerStats,
    ) -> Result<(Self, Listener), HubError> {
        let client = redis::Client::open(config.url.as_str())
            .map_err(|e| unavailable("bad Redis URL", e))?;
        let manager = ConnectionManagerConfig::new()
            .set_connection_timeout(config.timeout)
            .set_response_timeout(config.timeout)
            .set_number_of_retries(1);
        let deadline = tokio::time::Instant::now() + config.wait;
        let commands = loop {
            let attempt = tokio::time::timeout(
                config.timeout,
                client.get_connection_manager_with_config(manager.clone()),
            )
            .await;
            match attempt {
                Ok(Ok(conn)) => break conn,
                Ok(Err(e)) if tokio::time::Instant::now() >= deadline => {
                    return Err(unavailable("cannot reach Redis", e))
                }
                Err(_) if tokio::time::Instant::now() >= deadline => {
                    return Err(unavailable("cannot reach Redis", "timed out"))
                }
                _ => tokio::time::sleep(Duration::from_millis(250)).await,
            }
        };
        let (listener_tx, listener_rx) = mpsc::channel(LISTENER_QUEUE);
        let (presence, changes) = presence::PresenceQueue::new();
        let shared = Arc::new(Shared {
            node: Epoch::random().as_str().to_owned(),
            pending: gather::Pending::default(),
            presence,
            commands,
            publish: redis::Script::new(scripts::PUBLISH),
            snapshot: redis::Script::new(scripts::SNAPSHOT),
            listener: listener_tx,
            pins: Mutex::new(HashMap::new()),
            calls: Arc::new(Semaphore::new(MAX_CALLS_IN_FLIGHT)),
            config,
            stats,
        });
        let writer = presence::PresenceWriter::new(shared.clone(), changes);
        let listener = Listener::new(client, shared.clone(), listener_rx, writer);
        Ok((Self { shared }, listener))
    }
}

impl Shared {
    fn pins(&self) -> std::sync::MutexGuard<'_, HashMap<ChannelName, usize>> {
        self.pins.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn is_pinned(&self, channel: &ChannelName) -> bool {
        self.pins().contains_key(channel)
    }

    /// Runs `call` within the Redis timeout; failures count as `broker_unavailable`.
    async fn bounded<T>(
        &self,
        what: &str,
        call: impl std::future::Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, HubError> {
        let result = match tokio::time::timeout(self.config.timeout, call).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(unavailable(what, e)),
            Err(_) => Err(unavailable(what, "timed out")),
        };
        if result.is_err() {
            self.stats.unavailable.inc();
        }
        result
    }

    async fn snapshot(
        &self,
        channel: &ChannelName,
        create: bool,
    ) -> Result<Option<Snapshot>, HubError> {
        let mut conn = self.commands.clone();
        let mut invocation = self.snapshot.key(meta_key(channel));
        invocation
            .key(history_key(channel))
            .arg(Epoch::random().as_str())
            .arg(META_TTL.as_millis() as u64)
            .arg(if create { "1" } else { "0" });
        let read: Option<(String, u64, Vec<String>)> = self
            .bounded(
                "reading a channel from Redis",
                invocation.invoke_async(&mut conn),
            )
            .await?;
        Ok(read.map(|(epoch, last_offset, mut data)| {
            // A list longer than the offsets (never written so, but cheap to rule out).
            if data.len() as u64 > last_offset {
                data.drain(..data.len() - last_offset as usize);
            }
            Snapshot {
                epoch: Epoch::from_string(epoch),
                last_offset,
                data,
            }
        }))
    }
}

impl ClusterBroker for RedisBroker {
    fn publish<'a>(
        &'a self,
        channel: &'a ChannelName,
        entry: &'a str,
    ) -> BoxFuture<'a, Result<Stored, HubError>> {
        Box::pin(async move {
            let shared = &self.shared;
            let history = shared.config.history;
            let mut conn = shared.commands.clone();
            let mut invocation = shared.publish.key(meta_key(channel));
            invocation
                .key(history_key(channel))
                .arg(Epoch::random().as_str())
                .arg(entry)
                .arg(history.size)
                .arg(history.ttl.as_millis().max(1) as u64)
                .arg(META_TTL.as_millis() as u64)
                .arg(message_key(channel));
            let (epoch, offset): (String, u64) = shared
                .bounded("publishing to Redis", invocation.invoke_async(&mut conn))
                .await?;
            Ok(Stored {
                epoch: Epoch::from_string(epoch),
                offset,
            })
        })
    }

    fn pin(&self, channel: &ChannelName) {
        *self.shared.pins().entry(channel.clone()).or_default() += 1;
    }

    fn unpin(&self, channel: &ChannelName) {
        let mut pins = self.shared.pins();
        if let Some(n) = pins.get_mut(channel) {
            *n -= 1;
            if *n == 0 {
                pins.remove(channel);
            }
        }
    }

    fn join<'a>(&'a self, channel: &'a ChannelName) -> BoxFuture<'a, Result<(), HubError>> {
        Box::pin(async move {
            let shared = &self.shared;
            let (done, joined) = oneshot::channel();
            if shared
                .listener
                .try_send(Command::Join(channel.clone(), done))
                .is_err()
            {
                shared.stats.dropped.inc();
                return Err(HubError::BrokerUnavailable(
                    "too many subscribes waiting for the broker".into(),
                ));
            }
            match tokio::time::timeout(shared.config.timeout * 2, joined).await {
                Ok(Ok(result)) => result,
                Ok(Err(_)) | Err(_) => {
                    shared.stats.unavailable.inc();
                    Err(HubError::BrokerUnavailable(
                        "the broker did not confirm the subscription in time".into(),
                    ))
                }
            }
        })
    }

    fn left(&self, channel: &ChannelName) {
        if self
            .shared
            .listener
            .try_send(Command::Leave(channel.clone()))
            .is_err()
        {
            // Harmless but counted: the node keeps listening to a channel nobody reads here.
            self.shared.stats.dropped.inc();
            tracing::warn!(%channel, "broker queue full: dropped an unsubscribe");
        }
    }

    fn snapshot<'a>(
        &'a self,
        channel: &'a ChannelName,
    ) -> BoxFuture<'a, Result<Option<Snapshot>, HubError>> {
        Box::pin(self.shared.snapshot(channel, false))
    }

    fn broadcast<'a>(
        &'a self,
        command: &'a ControlCommand,
    ) -> BoxFuture<'a, Result<usize, HubError>> {
        Box::pin(async move {
            let shared = &self.shared;
            let mut conn = shared.commands.clone();
            let mut publish = redis::cmd("PUBLISH");
            publish
                .arg(control::CONTROL_CHANNEL)
                .arg(control::encode(&shared.node, command));
            shared
                .bounded(
                    "sending a control command through Redis",
                    publish.query_async(&mut conn),
                )
                .await
        })
    }

    fn gather_user<'a>(&'a self, user: &'a str) -> BoxFuture<'a, Result<Gathered, HubError>> {
        Box::pin(self.shared.gather_user(user))
    }

    fn node(&self) -> &str {
        &self.shared.node
    }

    fn admit(&self) -> Result<Permit, HubError> {
        self.shared.calls.clone().try_acquire_owned().map_err(|_| {
            self.shared.stats.dropped.inc();
            tracing::warn!("too many broker calls in flight: refused one");
            HubError::BrokerUnavailable("too many calls to the broker in flight".into())
        })
    }
}
