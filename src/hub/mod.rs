//! The hub core: clients, channels, offsets, history and fan-out. No HTTP, WebSocket or
//! axum types live here; transports call these methods and own their sockets.
//!
//! - `registry` — the two dashmaps (clients, channels) and channel lifetime.
//! - [`channel`] — one channel: offset counter, history ring, subscribers.
//! - [`client`] — the handle kept per connection (queue, cancel token, reason).
//! - [`queue`] — the bounded per-client frame queue.
//! - [`message`] — frames encoded once into shared bytes.
//! - [`disconnect`] — why a client left.
//! - [`stats`] — counters, exported as Prometheus text and JSON.

pub mod channel;
pub mod client;
pub mod disconnect;
pub mod message;
pub mod queue;
mod registry;
pub mod stats;

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio_util::sync::CancellationToken;

pub use channel::{ChannelName, Epoch, HistoryLimits, HistoryPage, InvalidChannelName, Published};
pub use client::{Client, ClientId, TransportKind};
pub use disconnect::DisconnectReason;
pub use message::{Frame, Since};
pub use stats::Stats;

use client::AddSubscription;
use registry::Registry;

/// The limits the hub enforces, already validated by `Config`.
#[derive(Clone, Debug)]
pub struct HubConfig {
    pub queue_capacity: usize,
    pub queue_max_bytes: usize,
    pub history: HistoryLimits,
    pub max_connections: usize,
    pub max_subscriptions: usize,
    pub client_publish: PublishPolicy,
    /// The hub counts as overloaded — and refuses publishes — while more than this fraction
    /// of its clients (and at least `overload_min_lagging`) have a queue at least half full.
    pub overload_fraction: f64,
    pub overload_min_lagging: usize,
}

impl Default for HubConfig {
    fn default() -> Self {
        Self {
            queue_capacity: 1024,
            queue_max_bytes: 2 << 20,
            history: HistoryLimits {
                size: 500,
                max_bytes: 1 << 20,
                ttl: Duration::from_secs(300),
            },
            max_connections: 10_000,
            max_subscriptions: 64,
            client_publish: PublishPolicy::parse("chat:*"),
            overload_fraction: 0.5,
            overload_min_lagging: 16,
        }
    }
}

/// Which channels clients (not backends) may publish to: exact names, or prefixes ending in
/// `*`; `*` alone allows every channel and an empty list none.
#[derive(Clone, Debug, Default)]
pub struct PublishPolicy {
    patterns: Vec<String>,
}

impl PublishPolicy {
    pub fn parse(spec: &str) -> Self {
        Self {
            patterns: spec
                .split(',')
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .map(str::to_owned)
                .collect(),
        }
    }

    pub fn allows(&self, channel: &ChannelName) -> bool {
        let name = channel.as_str();
        self.patterns.iter().any(|p| match p.strip_suffix('*') {
            Some(prefix) => name.starts_with(prefix),
            None => name == p,
        })
    }
}

/// Errors a client request can meet in the hub; each has a stable wire code.
#[derive(Debug, thiserror::Error)]
pub enum HubError {
    #[error(transparent)]
    InvalidChannel(#[from] InvalidChannelName),
    #[error("already subscribed to {0}")]
    AlreadySubscribed(ChannelName),
    #[error("not subscribed to {0}")]
    NotSubscribed(ChannelName),
    #[error("at most {0} subscriptions per client")]
    TooManySubscriptions(usize),
    #[error("clients may not publish to {0}")]
    PublishForbidden(ChannelName),
    #[error("the hub is at its connection limit ({0})")]
    OverCapacity(usize),
    #[error("the hub is overloaded ({lagging} of {clients} clients are lagging); retry shortly")]
    Overloaded { lagging: usize, clients: usize },
    #[error("the client has disconnected")]
    ClientGone,
}

impl HubError {
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidChannel(_) => "invalid_channel",
            Self::AlreadySubscribed(_) => "already_subscribed",
            Self::NotSubscribed(_) => "not_subscribed",
            Self::TooManySubscriptions(_) => "too_many_subscriptions",
            Self::PublishForbidden(_) => "publish_forbidden",
            Self::OverCapacity(_) => "over_capacity",
            Self::Overloaded { .. } => "overloaded",
            Self::ClientGone => "client_gone",
        }
    }
}

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
}

impl Hub {
    pub fn new(config: HubConfig, shutdown: CancellationToken) -> Self {
        Self {
            inner: Arc::new(HubInner {
                config,
                registry: Registry::default(),
                next_client_id: AtomicU64::new(1),
                connections: AtomicUsize::new(0),
                lagging: queue::LagCounter::default(),
                stats: Stats::default(),
                shutdown,
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

    /// The one way a client leaves. Idempotent: the first reason wins and later calls return
    /// `false`. Wakes the transport (its queue is closed), which then closes the connection
    /// with the reason's code.
    pub fn disconnect(&self, id: ClientId, reason: DisconnectReason) -> bool {
        let inner = &self.inner;
        let Some((_, client)) = inner.registry.clients.remove(&id) else {
            return false;
        };
        client.set_reason(reason);
        let channels = client.close_subscriptions();
        client.queue.close();
        for name in channels {
            self.leave_channel(&name, id);
        }
        inner.connections.fetch_sub(1, Ordering::AcqRel);
        inner.stats.disconnected(client.transport, reason);
        if reason == DisconnectReason::Slow {
            tracing::info!(client_id = %id, transport = client.transport.as_str(), "evicted slow client");
        } else {
            tracing::debug!(client_id = %id, transport = client.transport.as_str(), %reason, "client left");
        }
        true
    }

    pub fn subscribe(
        &self,
        client: &Arc<Client>,
        channel: &ChannelName,
        since: Option<&Since>,
        reply_id: Option<&Value>,
    ) -> Result<(), HubError> {
        let config = &self.inner.config;
        match client.add_subscription(channel, config.max_subscriptions) {
            AddSubscription::Added => {}
            AddSubscription::Already => return Err(HubError::AlreadySubscribed(channel.clone())),
            AddSubscription::TooMany => {
                return Err(HubError::TooManySubscriptions(config.max_subscriptions))
            }
            AddSubscription::Closed => return Err(HubError::ClientGone),
        }
        let outcome = loop {
            let ch = self.inner.registry.channel_or_create(channel);
            let mut state = ch.lock();
            if state.removed {
                continue;
            }
            // Checked under the channel lock: `disconnect` marks the client closed before it
            // walks its channels, so either we see it closed here or it finds us subscribed.
            if client.is_closed() {
                return Err(HubError::ClientGone);
            }
            let limits = config.history;
            break ch.subscribe(&mut state, client, since, reply_id, limits, Instant::now());
        };
        match outcome {
            Ok(subscribed) => {
                self.inner.stats.replayed.inc_by(subscribed.replayed as u64);
                tracing::debug!(client_id = %client.id, %channel, offset = subscribed.offset,
                    recovered = subscribed.recovered, replayed = subscribed.replayed, "subscribed");
            }
            Err(_) => {
                self.disconnect(client.id, DisconnectReason::Slow);
            }
        }
        Ok(())
    }

    pub fn unsubscribe(&self, client: &Arc<Client>, channel: &ChannelName) -> Result<(), HubError> {
        if !client.remove_subscription(channel) {
            return Err(HubError::NotSubscribed(channel.clone()));
        }
        self.leave_channel(channel, client.id);
        Ok(())
    }

    /// Clients whose queue is at least half full right now.
    pub fn lagging_clients(&self) -> usize {
        self.inner.lagging.load(Ordering::Relaxed)
    }

    /// Refuses new publishes while the hub as a whole cannot keep up: many clients lagging at
    /// once means the writers (or the CPU) are the bottleneck, and publishing on would only
    /// evict healthy clients en masse. One slow client never trips this; it is evicted.
    pub fn check_load(&self) -> Result<(), HubError> {
        let config = &self.inner.config;
        let lagging = self.lagging_clients();
        if lagging < config.overload_min_lagging {
            return Ok(());
        }
        let clients = self.client_count();
        if lagging as f64 > config.overload_fraction * clients as f64 {
            self.inner.stats.rejected_overloaded.inc();
            return Err(HubError::Overloaded { lagging, clients });
        }
        Ok(())
    }

    /// Publishes `data` (valid JSON text) on `channel`. Never waits for a client: subscribers
    /// whose queue is full are evicted as slow after the channel lock is released. Callers
    /// that can push back on their publisher call [`Hub::check_load`] first.
    pub fn publish(&self, channel: &ChannelName, data: &str) -> Published {
        let mut overflowed = Vec::new();
        let published = loop {
            let ch = self.inner.registry.channel_or_create(channel);
            let mut state = ch.lock();
            if state.removed {
                continue;
            }
            let limits = self.inner.config.history;
            break ch.publish(&mut state, data, limits, Instant::now(), &mut overflowed);
        };
        let stats = &self.inner.stats;
        stats.published.inc();
        stats.deliveries.inc_by(published.enqueued as u64);
        for client in overflowed {
            self.disconnect(client.id, DisconnectReason::Slow);
        }
        published
    }

    /// Publishes a client's `publish` frame, if the policy allows it on that channel.
    pub fn client_publish(&self, channel: &ChannelName, data: &str) -> Result<Published, HubError> {
        if !self.inner.config.client_publish.allows(channel) {
            return Err(HubError::PublishForbidden(channel.clone()));
        }
        self.check_load()?;
        Ok(self.publish(channel, data))
    }

    /// What `channel` still remembers after `since`, oldest first; `None` for a channel the
    /// hub does not hold.
    pub fn history(&self, channel: &ChannelName, since: u64, limit: usize) -> Option<HistoryPage> {
        let ch = self.inner.registry.channel(channel)?;
        let mut state = ch.lock();
        if state.removed {
            return None;
        }
        Some(ch.history(
            &mut state,
            since,
            limit,
            self.inner.config.history,
            Instant::now(),
        ))
    }

    /// Trims aged history everywhere and forgets channels left with nothing to keep. Run
    /// periodically by the server; cheap when nothing changed.
    pub fn sweep(&self) -> usize {
        let registry = &self.inner.registry;
        let now = Instant::now();
        let limits = self.inner.config.history;
        // Collect first: removing while iterating a dashmap would deadlock on its shard.
        let mut removed = 0;
        for name in registry.channel_names() {
            let Some(ch) = registry.channel(&name) else {
                continue;
            };
            let idle = {
                let mut state = ch.lock();
                state.trim_history(limits, now);
                state.is_idle()
            };
            if idle && registry.remove_channel_if_idle(&name) {
                removed += 1;
            }
        }
        self.inner
            .stats
            .channels
            .set(registry.channel_count() as i64);
        removed
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

    fn leave_channel(&self, name: &ChannelName, id: ClientId) {
        let Some(ch) = self.inner.registry.channel(name) else {
            return;
        };
        let idle = {
            let mut state = ch.lock();
            state.remove_subscriber(id);
            state.is_idle()
        };
        if idle {
            self.inner.registry.remove_channel_if_idle(name);
        }
    }
}

#[cfg(test)]
mod tests;
