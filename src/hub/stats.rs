//! `Stats`: the hub's counters, kept in a per-hub Prometheus registry (so several hubs in one
//! test process never share figures) and read back for the JSON stats endpoint.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::transport_kind::TransportKind;
use crate::protocol::DisconnectReason;

type Labels = [(&'static str, &'static str); 1];

pub struct Stats {
    registry: Registry,
    // Handles into the labelled families, resolved once: a connect or disconnect then costs
    // an atomic add, not a family lookup under its lock.
    connections: [Gauge; 2],
    connects: [Counter; 2],
    disconnects: [Counter; DisconnectReason::ALL.len()],
    pub(crate) channels: Gauge,
    pub(crate) published: Counter,
    pub(crate) deliveries: Counter,
    pub(crate) replayed: Counter,
    pub(crate) rejected_over_capacity: Counter,
    pub(crate) rejected_overloaded: Counter,
    pub(crate) rejected_too_many_channels: Counter,
    pub(crate) rejected_rate_limited: Counter,
    pub(crate) rejected_too_many_connections: Counter,
    pub(crate) history_shed: Counter,
    pub(crate) lagging: Gauge,
    /// Webhooks (`crate::webhook`) count their deliveries here, so one registry exports all.
    pub webhooks: WebhookCounters,
    /// Cluster broker figures (zero with the in-memory broker).
    pub broker: BrokerStats,
    /// What the flushers (`hub::direct`) wrote.
    pub direct: DirectStats,
}

/// The flushers' work (`hub::direct`): frames per write is `frames / writes`.
#[derive(Debug, Default, Clone)]
pub struct DirectStats {
    /// Non-blocking writes a flusher made to a parked connection's socket.
    pub writes: Counter,
    /// Frames those writes completed.
    pub frames: Counter,
    /// Connections handed back to their own task: the socket would not take everything.
    pub handed_back: Counter,
}

/// What a cluster broker counts; the broker implementation keeps them up to date.
#[derive(Debug, Default, Clone)]
pub struct BrokerStats {
    /// Publishes and subscribes refused because the broker could not be reached in time.
    pub unavailable: Counter,
    /// Channel copies caught up from the broker's history after a gap.
    pub recoveries: Counter,
    /// Times the node lost its subscription connection and reconnected.
    pub reconnects: Counter,
    /// Outbound work dropped because its queue or its concurrency limit was full.
    pub dropped: Counter,
}

/// Webhook deliveries (one per event and URL): each ends in exactly one of these.
#[derive(Clone, Debug, Default)]
pub struct WebhookCounters {
    /// Answered with 2xx.
    pub sent: Counter,
    /// Given up: every attempt failed, or the receiver refused with a 4xx.
    pub failed: Counter,
    /// Never attempted (the queue was full) or abandoned at shutdown.
    pub dropped: Counter,
}

impl std::fmt::Debug for Stats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stats").finish_non_exhaustive()
    }
}

impl Default for Stats {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("crier");
        let connections = Family::<Labels, Gauge>::default();
        let connects = Family::<Labels, Counter>::default();
        let disconnects = Family::<Labels, Counter>::default();
        let channels = Gauge::default();
        let published = Counter::default();
        let deliveries = Counter::default();
        let replayed = Counter::default();
        let rejected_over_capacity = Counter::default();
        let rejected_overloaded = Counter::default();
        let rejected_too_many_channels = Counter::default();
        let rejected_rate_limited = Counter::default();
        let rejected_too_many_connections = Counter::default();
        let history_shed = Counter::default();
        let lagging = Gauge::default();
        let webhooks = WebhookCounters::default();
        registry.register(
            "webhook_sent",
            "Webhook deliveries answered with 2xx (one per event and URL)",
            webhooks.sent.clone(),
        );
        registry.register(
            "webhook_failed",
            "Webhook deliveries given up after every attempt failed or a 4xx refusal",
            webhooks.failed.clone(),
        );
        registry.register(
            "webhook_dropped",
            "Webhook deliveries dropped: the webhook queue was full, or the hub shut down",
            webhooks.dropped.clone(),
        );
        registry.register(
            "connections",
            "Clients connected now, by transport",
            connections.clone(),
        );
        registry.register(
            "connects",
            "Clients registered, by transport",
            connects.clone(),
        );
        registry.register(
            "disconnects",
            "Clients that left, by reason (slow = evicted for queue overflow)",
            disconnects.clone(),
        );
        registry.register("channels", "Channels the hub holds now", channels.clone());
        registry.register("published", "Messages published", published.clone());
        registry.register(
            "deliveries",
            "Message frames enqueued to subscribers (live fan-out)",
            deliveries.clone(),
        );
        registry.register(
            "replayed",
            "Message frames replayed from history on resume",
            replayed.clone(),
        );
        registry.register(
            "rejected_over_capacity",
            "Connections refused because max-connections was reached",
            rejected_over_capacity.clone(),
        );
        registry.register(
            "rejected_overloaded",
            "Publishes refused because the hub was overloaded (many clients lagging)",
            rejected_overloaded.clone(),
        );
        registry.register(
            "rejected_rate_limited",
            "Client frames refused as past a rate limit (`rate_limited`)",
            rejected_rate_limited.clone(),
        );
        registry.register(
            "rejected_too_many_connections",
            "Connections refused by the per-address limits (`too_many_connections`)",
            rejected_too_many_connections.clone(),
        );
        registry.register(
            "rejected_too_many_channels",
            "Publishes and subscribes refused because max-channels was reached",
            rejected_too_many_channels.clone(),
        );
        registry.register(
            "history_shed",
            "History messages forgotten early to keep all history within --history-budget",
            history_shed.clone(),
        );
        registry.register(
            "lagging_clients",
            "Clients whose queue is at least half full",
            lagging.clone(),
        );
        let broker = BrokerStats::default();
        registry.register(
            "broker_unavailable",
            "Publishes and subscribes refused because the cluster broker was unreachable",
            broker.unavailable.clone(),
        );
        registry.register(
            "broker_recoveries",
            "Channel copies caught up from the broker's history after a gap",
            broker.recoveries.clone(),
        );
        registry.register(
            "broker_reconnects",
            "Reconnections of the broker subscription connection",
            broker.reconnects.clone(),
        );
        registry.register(
            "broker_dropped",
            "Outbound broker work dropped because its queue or concurrency limit was full",
            broker.dropped.clone(),
        );
        let direct = DirectStats::default();
        registry.register(
            "direct_writes",
            "Writes a flusher made straight to an idle WebSocket's socket",
            direct.writes.clone(),
        );
        registry.register(
            "direct_frames",
            "Message frames written by flushers (frames per write = direct_frames / direct_writes)",
            direct.frames.clone(),
        );
        registry.register(
            "direct_handed_back",
            "Connections a flusher handed back to their own task (the socket would not take everything)",
            direct.handed_back.clone(),
        );
        let transports = [TransportKind::WebSocket, TransportKind::LongPoll];
        let by_transport = |t: &TransportKind| [("transport", t.as_str())];
        Self {
            registry,
            connections: transports.map(|t| connections.get_or_create(&by_transport(&t)).clone()),
            connects: transports.map(|t| connects.get_or_create(&by_transport(&t)).clone()),
            disconnects: DisconnectReason::ALL
                .map(|r| disconnects.get_or_create(&[("reason", r.as_str())]).clone()),
            channels,
            published,
            deliveries,
            replayed,
            rejected_over_capacity,
            rejected_overloaded,
            rejected_too_many_channels,
            rejected_rate_limited,
            rejected_too_many_connections,
            history_shed,
            lagging,
            webhooks,
            broker,
            direct,
        }
    }
}

impl Stats {
    pub(crate) fn connected(&self, transport: TransportKind) {
        self.connections[transport as usize].inc();
        self.connects[transport as usize].inc();
    }

    pub(crate) fn disconnected(&self, transport: TransportKind, reason: DisconnectReason) {
        self.connections[transport as usize].dec();
        self.disconnects[reason as usize].inc();
    }

    pub fn connections(&self, transport: TransportKind) -> i64 {
        self.connections[transport as usize].get()
    }

    pub fn disconnects(&self, reason: DisconnectReason) -> u64 {
        self.disconnects[reason as usize].get()
    }

    pub fn published(&self) -> u64 {
        self.published.get()
    }

    pub fn deliveries(&self) -> u64 {
        self.deliveries.get()
    }

    pub fn replayed(&self) -> u64 {
        self.replayed.get()
    }

    pub fn rejected_over_capacity(&self) -> u64 {
        self.rejected_over_capacity.get()
    }

    pub fn rejected_overloaded(&self) -> u64 {
        self.rejected_overloaded.get()
    }

    pub fn history_shed(&self) -> u64 {
        self.history_shed.get()
    }

    pub fn rejected_rate_limited(&self) -> u64 {
        self.rejected_rate_limited.get()
    }

    pub fn rejected_too_many_connections(&self) -> u64 {
        self.rejected_too_many_connections.get()
    }

    pub fn rejected_too_many_channels(&self) -> u64 {
        self.rejected_too_many_channels.get()
    }

    /// The Prometheus text exposition of every figure.
    pub fn encode_prometheus(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
