//! Presence across nodes: this node's members of channels with presence, written to Redis
//! by one background task (`scripts::PRESENCE_BATCH`), so that `presence` and
//! `presence_stats` on any node read every node's members.
//!
//! Never on a client's path: the hub only queues a change ([`PresenceQueue::push`], bounded);
//! the writer sends them in batches of up to [`BATCH`], one script call each, under the Redis
//! timeout. A change that cannot be queued or written is counted (`broker_dropped` /
//! `broker_unavailable`) and marks the node's stored members as *lost*: at the next heartbeat
//! the writer removes them all and states this node's members again from the hub (a resync),
//! so a drop is repaired, never left as a ghost member.
//!
//! Liveness: every heartbeat (`--redis-timeout`, at least 500 ms) the node renews its key
//! `crier:node:{node}` (TTL three heartbeats) and, for every node listed in `crier:nodes`
//! whose key has expired (a node killed with -9, or cut off from Redis that long), removes
//! that node's members, at most [`REMOVE_STEP`] × [`REMOVE_ROUNDS`] per heartbeat. A node
//! that finds its own key expired resyncs.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::hub::cluster_presence::MemberChange;
use crate::hub::stats::BrokerStats;
use crate::hub::{ChannelName, ClientId, Hub, HubError};

use super::Shared;

/// Changes waiting for the writer; past it they are dropped, counted, and repaired by a
/// resync. 64 Ki changes of ~100 bytes: a few MiB at most.
pub const PRESENCE_QUEUE: usize = 65_536;

/// Changes per script call.
const BATCH: usize = 256;

/// Members one removal call takes off (Redis runs a script alone: keep each short).
const REMOVE_STEP: usize = 500;

/// Removal calls per node and heartbeat.
const REMOVE_ROUNDS: usize = 100;

/// The registry of nodes that wrote presence.
const NODES: &str = "crier:nodes";

fn heartbeat_key(node: &str) -> String {
    format!("crier:node:{node}")
}

pub struct Change {
    channel: ChannelName,
    client: ClientId,
    change: MemberChange,
}

/// The hub's side: the bounded queue, and whether Redis's copy of this node's members may be
/// wrong.
pub struct PresenceQueue {
    tx: mpsc::Sender<Change>,
    lost: AtomicBool,
}

impl PresenceQueue {
    pub fn new() -> (Self, mpsc::Receiver<Change>) {
        let (tx, rx) = mpsc::channel(PRESENCE_QUEUE);
        let queue = Self {
            tx,
            lost: AtomicBool::new(false),
        };
        (queue, rx)
    }

    pub fn push(
        &self,
        stats: &BrokerStats,
        channel: &ChannelName,
        client: ClientId,
        change: MemberChange,
    ) {
        let change = Change {
            channel: channel.clone(),
            client,
            change,
        };
        if self.tx.try_send(change).is_err() {
            stats.dropped.inc();
            if !self.lost.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    "presence queue full: dropped changes; resyncing at the next heartbeat"
                );
            }
        }
    }
}

/// The background task: writes queued changes, beats, cleans up after dead nodes.
pub struct PresenceWriter {
    shared: Arc<Shared>,
    changes: mpsc::Receiver<Change>,
    batch: redis::Script,
    remove: redis::Script,
}

impl PresenceWriter {
    pub fn new(shared: Arc<Shared>, changes: mpsc::Receiver<Change>) -> Self {
        Self {
            shared,
            changes,
            batch: redis::Script::new(super::scripts::PRESENCE_BATCH),
            remove: redis::Script::new(super::scripts::PRESENCE_REMOVE_NODE),
        }
    }

    fn beat_every(&self) -> Duration {
        self.shared.config.timeout.max(Duration::from_millis(500))
    }

    pub async fn run(mut self, hub: Hub, shutdown: CancellationToken) {
        let mut heartbeat = tokio::time::interval(self.beat_every());
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut batch = Vec::with_capacity(BATCH);
        loop {
            tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                _ = heartbeat.tick() => self.beat(&hub).await,
                n = self.changes.recv_many(&mut batch, BATCH) => {
                    if n == 0 {
                        break;
                    }
                    if !self.shared.presence.lost.load(Ordering::Relaxed) {
                        if let Err(error) = self.write(&batch).await {
                            self.shared.presence.lost.store(true, Ordering::Relaxed);
                            tracing::warn!(%error, "could not write presence; resyncing at the next heartbeat");
                        }
                    }
                    batch.clear();
                }
            }
        }
        // Bounded: a slow Redis must not hold the shutdown (the node's key then expires
        // and another node removes what is left).
        let _ = tokio::time::timeout(self.beat_every() * 2, self.leave()).await;
    }

    async fn write(&self, changes: &[Change]) -> Result<(), HubError> {
        let mut invocation = self.batch.prepare_invoke();
        invocation.arg(&self.shared.node);
        for change in changes {
            let (op, user, member) = match &change.change {
                MemberChange::Joined { user, member } => ("+", user, member.as_str()),
                MemberChange::Left { user } => ("-", user, ""),
            };
            invocation
                .arg(op)
                .arg(change.channel.as_str())
                .arg(change.client.to_string())
                .arg(user.as_deref().unwrap_or(""))
                .arg(member);
        }
        let mut conn = self.shared.commands.clone();
        let _: i64 = self
            .shared
            .bounded(
                "writing presence to Redis",
                invocation.invoke_async(&mut conn),
            )
            .await?;
        Ok(())
    }

    /// Renews this node's key, resyncs if asked to, and removes dead nodes' members.
    async fn beat(&mut self, hub: &Hub) {
        let shared = self.shared.clone();
        let ttl = self.beat_every() * 3;
        let mut conn = shared.commands.clone();
        let mut renew = redis::cmd("SET");
        renew
            .arg(heartbeat_key(&shared.node))
            .arg(1)
            .arg("PX")
            .arg(ttl.as_millis() as u64)
            .arg("GET");
        let before: Option<String> = match shared
            .bounded("renewing this node in Redis", renew.query_async(&mut conn))
            .await
        {
            Ok(before) => before,
            Err(_) => {
                // Down long enough, other nodes will have removed this node's members.
                shared.presence.lost.store(true, Ordering::Relaxed);
                return;
            }
        };
        if before.is_none() || shared.presence.lost.load(Ordering::Relaxed) {
            if let Err(error) = self.resync(hub).await {
                shared.presence.lost.store(true, Ordering::Relaxed);
                tracing::warn!(%error, "could not resync presence");
                return;
            }
        }
        if let Err(error) = self.bury_dead_nodes(hub).await {
            tracing::debug!(%error, "could not check the other nodes");
        }
    }

    /// Removes every member Redis holds for this node, then states the hub's members again.
    /// Changes queued before it are discarded: the hub's members at this moment include
    /// them, and later changes follow it.
    async fn resync(&mut self, hub: &Hub) -> Result<(), HubError> {
        self.shared.presence.lost.store(false, Ordering::Relaxed);
        while self.changes.try_recv().is_ok() {}
        let node = self.shared.node.clone();
        if self.remove_members(&node, false).await? > 0 {
            return Err(HubError::BrokerUnavailable(
                "too many members to remove".into(),
            ));
        }
        let members = hub.local_members();
        let count = members.len();
        let changes: Vec<Change> = members
            .into_iter()
            .map(|(channel, client, user, member)| Change {
                channel,
                client,
                change: MemberChange::Joined { user, member },
            })
            .collect();
        for batch in changes.chunks(BATCH) {
            self.write(batch).await?;
        }
        self.shared.restate_users(hub).await?;
        tracing::info!(members = count, "stated this node's presence in Redis");
        Ok(())
    }

    /// Removes `node`'s members, bounded; returns how many are left. With `only_if_dead`,
    /// stops as soon as the node's key exists again (it came back and restates its own).
    async fn remove_members(&self, node: &str, only_if_dead: bool) -> Result<i64, HubError> {
        let mut left = 0;
        for _ in 0..REMOVE_ROUNDS {
            let mut invocation = self.remove.prepare_invoke();
            invocation.arg(node).arg(REMOVE_STEP).arg(if only_if_dead {
                heartbeat_key(node)
            } else {
                String::new()
            });
            let mut conn = self.shared.commands.clone();
            left = self
                .shared
                .bounded(
                    "removing presence from Redis",
                    invocation.invoke_async(&mut conn),
                )
                .await?;
            if left <= 0 {
                break;
            }
        }
        Ok(left)
    }

    async fn bury_dead_nodes(&self, hub: &Hub) -> Result<(), HubError> {
        let shared = &self.shared;
        let mut conn = shared.commands.clone();
        let mut register = redis::cmd("SADD");
        register.arg(NODES).arg(&shared.node);
        let _: i64 = shared
            .bounded("registering this node", register.query_async(&mut conn))
            .await?;
        let mut list = redis::cmd("SRANDMEMBER");
        list.arg(NODES).arg(64);
        let nodes: Vec<String> = shared
            .bounded("listing nodes", list.query_async(&mut conn))
            .await?;
        for node in nodes.iter().filter(|n| **n != shared.node) {
            if shared.is_alive(node).await? {
                continue;
            }
            let left = self.remove_members(node, true).await?;
            // Rechecked: the node may have come back while its members were removed.
            if left < 0 || shared.is_alive(node).await? {
                continue;
            }
            let users_left = shared.bury_users(hub, node).await?;
            if left == 0 && users_left == 0 {
                let mut forget = redis::cmd("SREM");
                forget.arg(NODES).arg(node);
                let _: i64 = shared
                    .bounded("forgetting a node", forget.query_async(&mut conn))
                    .await?;
                tracing::info!(%node, "removed the presence of a node that stopped beating");
            }
        }
        Ok(())
    }

    /// At shutdown: this node's members go, and so does its key.
    async fn leave(&self) {
        let node = self.shared.node.clone();
        if self.remove_members(&node, false).await.is_err() {
            return;
        }
        let mut conn = self.shared.commands.clone();
        let mut pipe = redis::pipe();
        pipe.cmd("DEL")
            .arg(heartbeat_key(&node))
            .cmd("SREM")
            .arg(NODES)
            .arg(&node);
        let _: Result<(i64, i64), _> = self
            .shared
            .bounded("leaving the cluster", pipe.query_async(&mut conn))
            .await;
    }
}

impl Shared {
    async fn is_alive(&self, node: &str) -> Result<bool, HubError> {
        let mut conn = self.commands.clone();
        let mut exists = redis::cmd("EXISTS");
        exists.arg(heartbeat_key(node));
        let alive: i64 = self
            .bounded("checking a node", exists.query_async(&mut conn))
            .await?;
        Ok(alive == 1)
    }
}
