//! `HubConfig`: the limits the hub enforces, already validated by `crate::config::Config`;
//! and `PublishPolicy`, which channels clients (not backends) may publish to.

use std::time::Duration;

use crate::protocol::ChannelName;

use super::channel::HistoryLimits;

#[derive(Clone, Debug)]
pub struct HubConfig {
    pub queue_capacity: usize,
    pub queue_max_bytes: usize,
    pub history: HistoryLimits,
    /// Bytes of history across all channels; past it the oldest messages hub-wide go first.
    pub history_budget: usize,
    pub max_connections: usize,
    pub max_subscriptions: usize,
    /// Channels the hub holds at most; creating one more is refused (`too_many_channels`).
    pub max_channels: usize,
    /// Deepest nesting of arrays and objects a published `data` may have.
    pub max_json_depth: usize,
    pub client_publish: PublishPolicy,
    /// The hub counts as overloaded — and refuses publishes — while more than this fraction
    /// of its clients (and at least `overload_min_lagging`) have a queue at least half full.
    pub overload_fraction: f64,
    pub overload_min_lagging: usize,
    /// Rules by channel-name prefix; a channel outside every namespace follows the defaults.
    pub namespaces: Vec<Namespace>,
    /// Channels with presence where no namespace says otherwise (`--presence`).
    pub presence: PublishPolicy,
    /// A client whose queue is at least half full with frames nobody took for this long is
    /// evicted as slow, however its transport keeps it open (a socket that does not read, a
    /// long-poll session that re-fetches an old batch).
    pub stuck_timeout: Duration,
}

impl Default for HubConfig {
    fn default() -> Self {
        Self {
            queue_capacity: 1024,
            queue_max_bytes: 256 << 10,
            history: HistoryLimits {
                size: 500,
                max_bytes: 1 << 20,
                ttl: Duration::from_secs(300),
            },
            history_budget: 256 << 20,
            max_connections: 10_000,
            max_subscriptions: 64,
            max_channels: 100_000,
            max_json_depth: 32,
            client_publish: PublishPolicy::parse("chat:*"),
            overload_fraction: 0.5,
            overload_min_lagging: 16,
            stuck_timeout: Duration::from_secs(10),
            namespaces: Vec::new(),
            presence: PublishPolicy::parse("chat:*"),
        }
    }
}

impl HubConfig {
    /// The namespace `channel` belongs to: the one with the longest matching prefix.
    pub fn namespace(&self, channel: &ChannelName) -> Option<&Namespace> {
        self.namespaces
            .iter()
            .filter(|ns| channel.as_str().starts_with(ns.prefix.as_str()))
            .max_by_key(|ns| ns.prefix.len())
    }

    /// The history limits of `channel`: its namespace's, else the hub's.
    pub fn history_for(&self, channel: &ChannelName) -> HistoryLimits {
        match self.namespaces.is_empty() {
            true => self.history,
            false => self
                .namespace(channel)
                .map_or(self.history, |ns| ns.history),
        }
    }

    /// Whether `channel` keeps presence (members, users; `presence` frames and API).
    pub fn presence(&self, channel: &ChannelName) -> bool {
        match self.namespace(channel).and_then(|ns| ns.presence) {
            Some(on) => on,
            None => self.presence.allows(channel),
        }
    }

    /// Whether members who ask get `presence_diff` frames on `channel` (with presence only).
    pub fn join_leave(&self, channel: &ChannelName) -> bool {
        self.presence(channel)
            && self
                .namespace(channel)
                .and_then(|ns| ns.join_leave)
                .unwrap_or(true)
    }

    /// Whether client publishes on `channel` carry the publisher (`from`), stamped by the hub.
    pub fn stamps(&self, channel: &ChannelName) -> bool {
        self.namespace(channel).is_none_or(|ns| ns.stamp)
    }
}

/// Rules for the channels whose names start with `prefix`.
#[derive(Clone, Debug)]
pub struct Namespace {
    pub prefix: String,
    pub subscribe: SubscribeRule,
    pub publish: PublishRule,
    pub history: HistoryLimits,
    /// Client publishes carry `"from": {"user", "client", "info"}`, set by the hub.
    pub stamp: bool,
    /// Presence on or off (`None`: as `--presence` says).
    pub presence: Option<bool>,
    /// `presence_diff` frames for members who ask (`None`: with presence).
    pub join_leave: Option<bool>,
}

/// Who may subscribe to a namespace's channels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SubscribeRule {
    /// Any client, token or not (a public feed).
    Anyone,
    /// With tokens on, a token whose `subscribe` rights match (the default).
    Rights,
}

/// Who may publish to a namespace's channels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PublishRule {
    /// Backends only, through the HTTP API: client `publish` frames are `forbidden`.
    Backend,
    /// Clients allowed by `--client-publish` and, with tokens on, their `publish` rights (the
    /// default).
    Rights,
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
