//! The broker seam: where offsets, epochs, history and cross-node fan-out come from.
//!
//! [`Broker::Memory`] is the embedded default and needs no external service: the channel
//! assigns offsets under its lock and fans out at once (`Hub::publish`, unchanged — no await
//! and no allocation added to that path). [`Broker::Cluster`] hands both to a
//! [`ClusterBroker`] shared by several nodes (Redis, in `crate::cluster`): a publish is
//! accepted only once the broker stored it, every node receives it with its position, and
//! each node's channels are *mirrors* of the broker's — subscribers, a local copy of history
//! for catch-ups, offsets taken from the broker and checked for gaps.
//!
//! The hub names no Redis type: the trait below is all it knows, and the broker calls back
//! only through the `Hub` methods at the end of this file (`deliver_from_broker`,
//! `catch_up_from_broker`, `stop_mirroring`).

use std::sync::Arc;
use std::time::Instant;

use futures_util::future::BoxFuture;

use crate::protocol::{ChannelName, Epoch, Payload, Published, Since, Subscribed};

use super::channel::Live;
use super::cluster_presence::ClusterPresence;
use super::control::Gathered;
use super::registry::TooManyChannels;
pub use super::stored::Snapshot;
use super::{Client, ControlCommand, Frame, HistoryPage, Hub, HubError};

/// Where a hub's channels get their positions.
#[derive(Clone, Default)]
pub enum Broker {
    /// In this process only (one node).
    #[default]
    Memory,
    /// Shared by every node through an external broker.
    Cluster(Arc<dyn ClusterBroker>),
}

/// A message the broker stored.
#[derive(Debug, Clone)]
pub struct Stored {
    pub epoch: Epoch,
    pub offset: u64,
}

/// What a cluster broker does for the hub. Every call is bounded by the broker's own
/// timeout and answers `HubError::BrokerUnavailable` when the broker cannot be reached.
pub trait ClusterBroker: ClusterPresence + Send + Sync + 'static {
    /// Assigns the next position, stores the message in the channel's history and fans it out
    /// to every node, in one step; resolves once it is stored. `entry` is the message as
    /// [`super::stored::encode`] wrote it (its `data`, and `from` where stamped).
    fn publish<'a>(
        &'a self,
        channel: &'a ChannelName,
        entry: &'a str,
    ) -> BoxFuture<'a, Result<Stored, HubError>>;

    /// Pins `channel`: while pinned, the node keeps following it even with no local
    /// subscriber (a subscribe under way). Never waits.
    fn pin(&self, channel: &ChannelName);

    /// Releases a pin.
    fn unpin(&self, channel: &ChannelName);

    /// Makes this node follow `channel` (listening first, then loading its history into the
    /// local mirror). The caller holds a pin.
    fn join<'a>(&'a self, channel: &'a ChannelName) -> BoxFuture<'a, Result<(), HubError>>;

    /// The channel has no local subscriber left: stop following it unless pinned. Never
    /// waits.
    fn left(&self, channel: &ChannelName);

    /// The channel as the broker holds it now; `None` if it never held it.
    fn snapshot<'a>(
        &'a self,
        channel: &'a ChannelName,
    ) -> BoxFuture<'a, Result<Option<Snapshot>, HubError>>;

    /// Reserves room for one call; refused (and counted) when too many are in flight, so
    /// outbound work stays bounded whatever clients send.
    fn admit(&self) -> Result<Permit, HubError>;

    /// Carries a backend's control command to every other node (each applies it with
    /// [`Hub::apply_control`]); resolves with how many nodes received it.
    fn broadcast<'a>(
        &'a self,
        command: &'a ControlCommand,
    ) -> BoxFuture<'a, Result<usize, HubError>>;

    /// Asks every other node for `user`'s connections (each answers from
    /// [`Hub::user_connections`]); resolves within the broker's timeout with how many nodes
    /// were asked and the answers that came back by then.
    fn gather_user<'a>(&'a self, user: &'a str) -> BoxFuture<'a, Result<Gathered, HubError>>;

    /// This node's name in the cluster.
    fn node(&self) -> &str;
}

/// Room for one call to the broker, held until the call ends.
pub type Permit = tokio::sync::OwnedSemaphorePermit;

/// How often a subscribe retries when the local mirror was dropped between its `join` and
/// its subscribe (the node stopped following the channel in that instant).
const JOIN_ATTEMPTS: usize = 3;

impl Hub {
    /// The cluster broker, if this hub has one.
    pub fn cluster(&self) -> Option<&Arc<dyn ClusterBroker>> {
        match &self.inner.broker {
            Broker::Memory => None,
            Broker::Cluster(broker) => Some(broker),
        }
    }

    /// Publishes through the broker: at once in memory ([`Hub::publish`]); with a cluster
    /// broker, accepted once stored (the reply's `enqueued` is 0: every node, this one
    /// included, delivers when the broker fans the message out).
    pub async fn publish_stored(
        &self,
        channel: &ChannelName,
        data: &str,
    ) -> Result<Published, HubError> {
        self.publish_payload_stored(channel, &Payload::data(data))
            .await
    }

    async fn publish_payload_stored(
        &self,
        channel: &ChannelName,
        payload: &Payload<'_>,
    ) -> Result<Published, HubError> {
        let Some(broker) = self.cluster() else {
            return self.publish_payload(channel, payload);
        };
        self.check_data(payload.data)?;
        let _permit = broker.admit()?;
        let stored = broker
            .publish(channel, &super::stored::encode(payload))
            .await?;
        self.inner.stats.published.inc();
        Ok(Published {
            channel: channel.clone(),
            epoch: stored.epoch,
            offset: stored.offset,
            enqueued: 0,
        })
    }

    /// A client's `publish` through the broker ([`Hub::client_publish`] in memory): `from`,
    /// where the channel's namespace stamps, travels with `data` into the broker's history
    /// and to every node.
    pub async fn client_publish_stored(
        &self,
        channel: &ChannelName,
        data: &str,
        from: Option<&str>,
    ) -> Result<Published, HubError> {
        self.client_may_publish(channel)?;
        self.check_load()?;
        let from = from.filter(|_| self.inner.config.stamps(channel));
        self.publish_payload_stored(channel, &Payload { data, from })
            .await
    }

    /// Subscribes through the broker: [`Hub::subscribe`] in memory; with a cluster broker,
    /// after the node follows the channel, so the catch-up reads the broker's history.
    pub async fn subscribe_joined(
        &self,
        client: &Arc<Client>,
        channel: &ChannelName,
        since: Option<&Since>,
        join_leave: bool,
        reply: &(dyn Fn(&Subscribed<'_>) -> Frame + Sync),
    ) -> Result<(), HubError> {
        let Some(broker) = self.cluster() else {
            return self.subscribe_with(client, channel, since, join_leave, reply);
        };
        // Pinned first, so the node cannot stop following the channel between the check
        // that its copy is mirrored (under the channel lock, in `subscribe`) and the client
        // joining it. A channel the node follows already costs no broker call.
        broker.pin(channel);
        let mut subscribed = self.subscribe_with(client, channel, since, join_leave, reply);
        if matches!(subscribed, Err(HubError::NotMirrored)) {
            subscribed = self
                .join_then_subscribe(broker, client, channel, since, join_leave, reply)
                .await;
        }
        broker.unpin(channel);
        if subscribed.is_err() && self.subscriber_count(channel) == 0 {
            broker.left(channel);
        }
        subscribed
    }

    async fn join_then_subscribe(
        &self,
        broker: &Arc<dyn ClusterBroker>,
        client: &Arc<Client>,
        channel: &ChannelName,
        since: Option<&Since>,
        join_leave: bool,
        reply: &(dyn Fn(&Subscribed<'_>) -> Frame + Sync),
    ) -> Result<(), HubError> {
        let _permit = broker.admit()?;
        for _ in 0..JOIN_ATTEMPTS {
            broker.join(channel).await?;
            match self.subscribe_with(client, channel, since, join_leave, reply) {
                Err(HubError::NotMirrored) => continue,
                other => return other,
            }
        }
        Err(HubError::BrokerUnavailable(
            "the channel's copy kept being dropped; retry".into(),
        ))
    }

    /// History as the broker holds it (the local copy in memory).
    pub async fn history_stored(
        &self,
        channel: &ChannelName,
        since: u64,
        limit: usize,
        max_bytes: usize,
    ) -> Result<Option<HistoryPage>, HubError> {
        let Some(broker) = self.cluster() else {
            return Ok(self.history(channel, since, limit, max_bytes));
        };
        let _permit = broker.admit()?;
        let Some(snapshot) = broker.snapshot(channel).await? else {
            return Ok(None);
        };
        Ok(Some(super::stored::page_of(
            channel, &snapshot, since, limit, max_bytes,
        )))
    }

    /// A message the broker fanned out, at `offset` of generation `epoch`. A `Gap` asks the
    /// broker to catch this node's copy up ([`Hub::catch_up_from_broker`]) before the next.
    pub fn deliver_from_broker(
        &self,
        channel: &ChannelName,
        epoch: &str,
        offset: u64,
        data: &str,
    ) -> Live {
        let Some(ch) = self.inner.registry.channel(channel) else {
            return Live::NotMirrored;
        };
        let mut overflowed = Vec::new();
        let live = {
            let mut state = ch.lock();
            if state.removed {
                return Live::NotMirrored;
            }
            let limits = self.inner.config.history;
            ch.apply_live(
                &mut state,
                epoch,
                offset,
                data,
                limits,
                Instant::now(),
                &mut overflowed,
            )
        };
        if let Live::Applied(enqueued) = live {
            self.inner.stats.deliveries.inc_by(enqueued as u64);
        }
        self.after_fan_out(overflowed);
        live
    }

    /// Brings this node's copy of `channel` up to the broker's `snapshot` (creating it if
    /// need be) and marks it mirrored; returns how many messages were recovered.
    pub fn catch_up_from_broker(
        &self,
        channel: &ChannelName,
        snapshot: &Snapshot,
    ) -> Result<u64, HubError> {
        let config = &self.inner.config;
        let mut overflowed = Vec::new();
        let recovered = self
            .inner
            .registry
            .with_live_channel(channel, config.max_channels, |ch, state| {
                ch.catch_up(
                    state,
                    snapshot,
                    config.history,
                    Instant::now(),
                    &mut overflowed,
                )
            })
            .map_err(|TooManyChannels| {
                self.inner.stats.rejected_too_many_channels.inc();
                HubError::TooManyChannels(config.max_channels)
            })?;
        self.after_fan_out(overflowed);
        Ok(recovered)
    }

    /// Marks the local copy of `channel` as no longer followed, if it has no subscriber and
    /// `unpinned()` holds — checked under the channel lock, atomically with subscribes — and
    /// returns whether it did (then the broker may stop listening: a later subscriber waits
    /// for a fresh copy instead of reading a stale one).
    pub fn stop_mirroring(&self, channel: &ChannelName, unpinned: impl FnOnce() -> bool) -> bool {
        let Some(ch) = self.inner.registry.channel(channel) else {
            return unpinned();
        };
        let mut state = ch.lock();
        if state.subscriber_count() > 0 || !unpinned() {
            return false;
        }
        state.mirrored = false;
        true
    }

    /// Whether this node holds a copy of `channel` that follows the broker.
    pub fn is_mirrored(&self, channel: &ChannelName) -> bool {
        self.inner.registry.channel(channel).is_some_and(|ch| {
            let state = ch.lock();
            state.mirrored && !state.removed
        })
    }

    fn after_fan_out(&self, overflowed: Vec<Arc<Client>>) {
        for client in overflowed {
            self.evict_slow(&client);
        }
        if self.inner.registry.history_bytes() > self.inner.config.history_budget {
            self.shed_history();
        }
    }
}
