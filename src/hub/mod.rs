//! The hub core: clients, channels, offsets, history and fan-out. No HTTP, WebSocket or
//! axum types live here; transports call these methods and own their sockets. It speaks the
//! contract's vocabulary from [`crate::protocol`] (names, frames, codes) and nothing above it.
//!
//! This file: register, subscribe (catch-up as a cursor), unsubscribe, disconnect. `flow`:
//! publish (encode once, fan out), take (how transports read a queue, replays expanded from
//! history), history pages. `presence`: members, stats, the join/leave flush. `events`: the
//! membership changes told to an installed sink. `broker`: the seam to a cluster broker.
//!
//! - `registry` — the two dashmaps (clients, channels) and channel lifetime.
//! - [`channel`] — one channel: offset counter, subscribers; its history ring in
//!   `channel::history` (pages, replays, trimming).
//! - [`client`] — the handle kept per connection (queue, subscriptions); `transport_kind`, the
//!   leaf naming which transport it came by.
//! - [`direct`] — flusher tasks that write published frames straight to idle connections'
//!   sockets (one wake-up per publish, not one per subscriber).
//! - [`queue`] — the bounded per-client frame queue (frames and replay cursors), closed with
//!   the reason a client left; its progress clock tells lagging from stuck.
//! - `pressure` — back-pressure: lagging vs stuck clients, overload refusals, evicting the
//!   stuck.
//! - `budget` — what the hub may hold: `--max-channels`, `--history-budget` (oldest first),
//!   `--max-json-depth`; the sweep of aged history and idle channels.
//! - [`broker`] — the seam to where offsets, history and cross-node fan-out come from:
//!   in memory (the default, `flow`'s `publish`) or a cluster broker the channels mirror.
//! - [`stored`], [`cluster_presence`] — what a cluster broker carries: messages (`data`,
//!   `from` where stamped) and members (joins/leaves queued to it; pages, stats read back).
//! - [`config`] — the limits the hub enforces; which channels clients may publish to.
//! - [`error`] — `HubError`, each with its wire code.
//! - [`events`] — the event seam: `HubEvent`s (connect/disconnect, join/leave, channel
//!   occupied/vacated) told to one installed `EventSink`; the user → clients index.
//! - [`control`] — what a backend may do to users and channels: disconnect a user's
//!   connections, take a user or a channel's subscribers off a channel — on every node.
//! - [`stats`] — counters, exported as Prometheus text and JSON.

pub mod broker;
pub mod channel;
pub mod client;
pub mod config;
pub mod control;
pub mod direct;
pub mod error;
pub mod events;
pub mod queue;
mod registry;
pub mod stats;
pub mod stored;
mod transport_kind;

mod budget;
pub mod cluster_presence;
mod flow;
mod presence;
mod pressure;

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use tokio_util::sync::CancellationToken;

pub use crate::protocol::{
    ChannelName, DisconnectReason, Epoch, Frame, InvalidChannelName, Payload, Published, Since,
    Subscribed,
};
pub use broker::Broker;
pub use channel::{HistoryLimits, HistoryPage, Live};
pub use client::{Client, ClientId, TransportKind};
pub use config::{HubConfig, Namespace, PublishPolicy, PublishRule, SubscribeRule};
pub use control::{ControlCommand, ControlOutcome};
pub use error::HubError;
pub use events::{EventSink, HubEvent};
pub use queue::Pop;
pub use stats::Stats;

use client::AddSubscription;
use queue::PushError;
use registry::{Registry, TooManyChannels};

/// A cheap, cloneable handle to the hub.
#[derive(Clone)]
pub struct Hub {
    inner: Arc<HubInner>,
}

struct HubInner {
    config: HubConfig,
    registry: Registry,
    next_client_id: AtomicU64,
    connections: AtomicUsize,
    lagging: queue::LagCounter,
    stats: Stats,
    shutdown: CancellationToken,
    /// Held by the one publisher that sheds history over the budget; others carry on.
    shedding: Mutex<()>,
    /// Channels with joins or leaves to send at the next presence flush.
    presence_dirty: Mutex<Vec<ChannelName>>,
    /// Where membership changes are told (`events`); installed once, or never.
    events: OnceLock<Arc<dyn events::EventSink>>,
    users: events::UserIndex,
    broker: Broker,
    /// The flusher tasks that write published frames to parked connections (`direct`).
    flushers: OnceLock<Vec<Arc<direct::Flusher>>>,
}

impl Hub {
    pub fn new(config: HubConfig, shutdown: CancellationToken) -> Self {
        Self::with_broker(config, shutdown, Broker::Memory, Stats::default())
    }

    /// A hub whose channels take their positions from `broker` (see [`broker`]), counting in
    /// `stats` (which a cluster broker shares, to count its own figures).
    pub fn with_broker(
        config: HubConfig,
        shutdown: CancellationToken,
        broker: Broker,
        stats: Stats,
    ) -> Self {
        Self {
            inner: Arc::new(HubInner {
                config,
                registry: Registry::default(),
                next_client_id: AtomicU64::new(1),
                connections: AtomicUsize::new(0),
                lagging: queue::LagCounter::default(),
                stats,
                shutdown,
                shedding: Mutex::new(()),
                presence_dirty: Mutex::new(Vec::new()),
                events: OnceLock::new(),
                users: events::UserIndex::default(),
                broker,
                flushers: OnceLock::new(),
            }),
        }
    }

    pub fn config(&self) -> &HubConfig {
        &self.inner.config
    }

    pub fn stats(&self) -> &Stats {
        &self.inner.stats
    }

    pub fn is_shutting_down(&self) -> bool {
        self.inner.shutdown.is_cancelled()
    }

    pub fn client_count(&self) -> usize {
        self.inner.connections.load(Ordering::Relaxed)
    }

    pub fn channel_count(&self) -> usize {
        self.inner.registry.channel_count()
    }

    /// Adds a client. The caller (a transport) keeps the returned handle and reads its queue.
    pub fn register(&self, transport: TransportKind) -> Result<Arc<Client>, HubError> {
        let inner = &self.inner;
        let max = inner.config.max_connections;
        if inner.connections.fetch_add(1, Ordering::AcqRel) >= max {
            inner.connections.fetch_sub(1, Ordering::AcqRel);
            inner.stats.rejected_over_capacity.inc();
            return Err(HubError::OverCapacity(max));
        }
        let id = ClientId(inner.next_client_id.fetch_add(1, Ordering::Relaxed));
        let client = Arc::new(Client::new(
            id,
            transport,
            inner.config.queue_capacity,
            inner.config.queue_max_bytes,
            inner.lagging.clone(),
        ));
        inner.registry.clients.insert(id, client.clone());
        inner.stats.connected(transport);
        Ok(client)
    }

    /// The client with this id, while it is connected.
    pub fn client(&self, id: ClientId) -> Option<Arc<Client>> {
        self.inner
            .registry
            .clients
            .get(&id)
            .map(|c| c.value().clone())
    }

    /// The one way a client leaves. Idempotent: the first reason wins and later calls return
    /// `false`. Wakes the transport (its queue is closed), which then closes the connection
    /// with the reason's code.
    pub fn disconnect(&self, id: ClientId, reason: DisconnectReason) -> bool {
        let inner = &self.inner;
        let Some((_, client)) = inner.registry.clients.remove(&id) else {
            return false;
        };
        let (channels, announced) = client.close_subscriptions();
        client.queue.close(reason);
        for name in channels {
            self.leave_channel(&name, &client);
        }
        if announced {
            self.departed(&client, reason);
        }
        inner.connections.fetch_sub(1, Ordering::AcqRel);
        inner.stats.disconnected(client.transport, reason);
        tracing::debug!(client_id = %id, transport = client.transport.as_str(), %reason, "client left");
        true
    }

    /// The one place a full queue ends a client: it did not read fast enough, and it alone
    /// pays (reconnect and resume from its last offset).
    fn evict_slow(&self, client: &Client) {
        if self.disconnect(client.id, DisconnectReason::Slow) {
            tracing::info!(client_id = %client.id, transport = client.transport.as_str(), "evicted slow client");
        }
    }

    /// Queues a frame for one client (a reply, an error): a client too far behind to take
    /// its own reply is slow.
    pub fn send(&self, client: &Client, frame: Frame) {
        if client.queue.try_push(frame) == Err(PushError::Full) {
            self.evict_slow(client);
        }
    }

    /// Subscribes `client` to `channel`, resuming after `since` if given. The `subscribed`
    /// frame, encoded by `reply` (which knows the request's id), comes first in the queue,
    /// then any `missed` notice and catch-up, then live messages — all under the channel
    /// lock, so nothing slips between them. A client whose queue cannot take the catch-up is
    /// evicted as slow.
    pub fn subscribe(
        &self,
        client: &Arc<Client>,
        channel: &ChannelName,
        since: Option<&Since>,
        reply: &dyn Fn(&Subscribed<'_>) -> Frame,
    ) -> Result<(), HubError> {
        self.subscribe_with(client, channel, since, false, reply)
    }

    /// [`Hub::subscribe`], and with `join_leave` the client gets `presence_diff` frames on
    /// a channel whose namespace has them.
    pub fn subscribe_with(
        &self,
        client: &Arc<Client>,
        channel: &ChannelName,
        since: Option<&Since>,
        join_leave: bool,
        reply: &dyn Fn(&Subscribed<'_>) -> Frame,
    ) -> Result<(), HubError> {
        let config = &self.inner.config;
        let presence = config.presence(channel);
        let listens = join_leave && config.join_leave(channel);
        let mut dirty = false;
        // The client's list keeps the channel's own name when the channel exists, sharing its
        // allocation, rather than the copy parsed from this request (32 bytes per
        // subscription that would otherwise stay for the client's life).
        let own_name = self
            .inner
            .registry
            .channel(channel)
            .map(|ch| ch.name.clone());
        match client.add_subscription(
            own_name.as_ref().unwrap_or(channel),
            config.max_subscriptions,
        ) {
            AddSubscription::Added => {}
            AddSubscription::Already => return Err(HubError::AlreadySubscribed(channel.clone())),
            AddSubscription::TooMany => {
                return Err(HubError::TooManySubscriptions(config.max_subscriptions))
            }
            AddSubscription::Closed => return Err(HubError::ClientGone),
        }
        let max_channels = config.max_channels;
        let outcome = self
            .inner
            .registry
            .with_live_channel(channel, max_channels, |ch, state| {
                // Checked under the channel lock: `disconnect` marks the client closed before it
                // walks its channels, so either we see it closed here or it finds us subscribed.
                if client.is_closed() {
                    return Err(HubError::ClientGone);
                }
                // A cluster node serves a channel only from a copy that follows the broker.
                if !state.mirrored && self.cluster().is_some() {
                    return Err(HubError::NotMirrored);
                }
                let limits = config.history_for(channel);
                let first = state.subscriber_count() == 0;
                let joined = ch.subscribe(state, client, since, reply, limits, Instant::now());
                if joined.is_ok() {
                    self.joined(channel, client, first);
                    if presence {
                        dirty = state.presence_join(client, listens);
                    }
                }
                Ok(joined)
            });
        let outcome = match outcome {
            Ok(Err(HubError::NotMirrored)) => {
                client.remove_subscription(channel);
                return Err(HubError::NotMirrored);
            }
            Ok(outcome) => outcome?,
            Err(TooManyChannels) => {
                // Nothing was subscribed: take the name back off the client's list.
                client.remove_subscription(channel);
                self.inner.stats.rejected_too_many_channels.inc();
                return Err(HubError::TooManyChannels(max_channels));
            }
        };
        if dirty {
            self.presence_changed(channel);
        }
        match outcome {
            Ok(joined) => {
                tracing::debug!(client_id = %client.id, %channel, offset = joined.offset,
                    recovered = joined.recovered, catch_up = joined.catch_up, "subscribed");
            }
            Err(_) => self.evict_slow(client),
        }
        Ok(())
    }

    pub fn unsubscribe(&self, client: &Arc<Client>, channel: &ChannelName) -> Result<(), HubError> {
        if !client.remove_subscription(channel) {
            return Err(HubError::NotSubscribed(channel.clone()));
        }
        self.leave_channel(channel, client);
        Ok(())
    }

    /// Brings gauges that are computed rather than counted up to date (before a scrape).
    pub fn refresh_gauges(&self) {
        let stats = &self.inner.stats;
        stats
            .channels
            .set(self.inner.registry.channel_count() as i64);
        stats.lagging.set(self.lagging_clients() as i64);
    }

    /// Disconnects every client with `reason` (used at shutdown).
    pub fn disconnect_all(&self, reason: DisconnectReason) {
        let ids: Vec<ClientId> = self
            .inner
            .registry
            .clients
            .iter()
            .map(|e| *e.key())
            .collect();
        for id in ids {
            self.disconnect(id, reason);
        }
    }

    /// Subscriber count of a channel (0 when the hub does not hold it).
    pub fn subscriber_count(&self, channel: &ChannelName) -> usize {
        self.inner
            .registry
            .channel(channel)
            .map_or(0, |ch| ch.lock().subscriber_count())
    }

    fn leave_channel(&self, name: &ChannelName, client: &Client) {
        let Some(ch) = self.inner.registry.channel(name) else {
            return;
        };
        let (idle, dirty, unwatched) = {
            let mut state = ch.lock();
            let dirty = match state.remove_subscriber(client.id) {
                Some(dirty) => {
                    self.left(name, client, state.subscriber_count() == 0);
                    dirty
                }
                None => false,
            };
            (state.is_idle(), dirty, state.subscriber_count() == 0)
        };
        if dirty {
            self.presence_changed(name);
        }
        // At shutdown the node stops listening anyway: no unsubscribe per channel.
        if unwatched && !self.is_shutting_down() {
            if let Some(broker) = self.cluster() {
                broker.left(name);
            }
        }
        if idle {
            self.inner.registry.remove_channel_if_idle(name);
        }
    }
}

#[cfg(test)]
mod tests;
