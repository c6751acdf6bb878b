//! Configuration: every flag has a `CRIER_*` environment variable and a default that works
//! for the demo. `Config` is parsed by clap and turned into the typed limits each layer uses.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::builder::TypedValueParser as _;
use clap::Parser;

use crate::cluster::ClusterConfig;
use crate::hub::{HistoryLimits, HubConfig, PublishPolicy};
use crate::transport::long_poll::LongPollConfig;
use crate::transport::ws::WsConfig;

/// File descriptors kept back from the connection ceiling for listeners, logs and static files.
const RESERVED_FDS: u64 = 100;

#[derive(Debug, Clone, Parser)]
#[command(
    name = "crier",
    version,
    about = "A real-time connection hub: WebSocket and long-poll clients, named channels with history and resume, an HTTP publish API.",
    after_help = "Durations take units: 500ms, 25s, 5m. Every flag can also be set by the environment variable shown.\nThe wire protocol is documented in docs/PROTOCOL.md."
)]
pub struct Config {
    /// Address to listen on.
    #[arg(long, env = "CRIER_BIND", default_value = "127.0.0.1:8080")]
    pub bind: SocketAddr,

    /// Directory served at `/` (the demo page and the browser client).
    #[arg(long, env = "CRIER_STATIC_DIR", default_value = "static")]
    pub static_dir: PathBuf,

    /// Most clients (WebSocket + long-poll) at once; 0 = as many as the open-files limit allows.
    #[arg(long, env = "CRIER_MAX_CONNECTIONS", default_value_t = 0)]
    pub max_connections: usize,

    /// Frames queued per client before it is evicted as slow (close code 4000).
    #[arg(long, env = "CRIER_QUEUE_CAPACITY", default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..=1_000_000).map(|v| v as usize))]
    pub queue_capacity: usize,

    /// Bytes of frames queued per client before it is evicted as slow (a client always has
    /// room for one frame). Bounds what a stuck client keeps alive when messages are large.
    /// Keep it above --history-max-bytes so a full catch-up from history fits.
    #[arg(long, env = "CRIER_QUEUE_MAX_BYTES", default_value_t = 2 << 20)]
    pub queue_max_bytes: usize,

    /// Messages each channel remembers for resume; 0 disables history.
    #[arg(long, env = "CRIER_HISTORY_SIZE", default_value_t = 500)]
    pub history_size: usize,

    /// Bytes of messages each channel remembers (the oldest are forgotten first).
    #[arg(long, env = "CRIER_HISTORY_MAX_BYTES", default_value_t = 1 << 20)]
    pub history_max_bytes: usize,

    /// Bytes of history across all channels: past it the oldest messages hub-wide are
    /// forgotten first (counted as `history_shed`). With --max-channels it bounds what
    /// publishers can make the hub keep, however many channels they spread over.
    #[arg(long, env = "CRIER_HISTORY_BUDGET", default_value_t = 256 << 20, value_parser = clap::value_parser!(u64).range(1..).map(|v| v as usize))]
    pub history_budget: usize,

    /// How long a channel remembers a message.
    #[arg(long, env = "CRIER_HISTORY_TTL", default_value = "5m", value_parser = humantime::parse_duration)]
    pub history_ttl: Duration,

    /// How often the server pings each WebSocket.
    #[arg(long, env = "CRIER_PING_INTERVAL", default_value = "25s", value_parser = positive_duration)]
    pub ping_interval: Duration,

    /// A WebSocket from which nothing (not even a pong) arrives for this long is closed (4001).
    #[arg(long, env = "CRIER_IDLE_TIMEOUT", default_value = "60s", value_parser = positive_duration)]
    pub idle_timeout: Duration,

    /// Time allowed for the HTTP request head and the WebSocket upgrade.
    #[arg(long, env = "CRIER_HANDSHAKE_TIMEOUT", default_value = "10s", value_parser = positive_duration)]
    pub handshake_timeout: Duration,

    /// A socket write stalled this long closes the connection (no close frame fits through a
    /// stalled socket; counted as `write_timeout`).
    #[arg(long, env = "CRIER_WRITE_TIMEOUT", default_value = "10s", value_parser = positive_duration)]
    pub write_timeout: Duration,

    /// How long a long-poll request waits for messages (below common proxy timeouts).
    #[arg(long, env = "CRIER_LP_HOLD", default_value = "25s", value_parser = positive_duration)]
    pub lp_hold: Duration,

    /// A long-poll session not polled for this long ends.
    #[arg(long, env = "CRIER_LP_SESSION_TIMEOUT", default_value = "60s", value_parser = positive_duration)]
    pub lp_session_timeout: Duration,

    /// Largest WebSocket frame or HTTP body, in bytes (WebSocket close 1009, HTTP 413).
    #[arg(long, env = "CRIER_MAX_MESSAGE_SIZE", default_value_t = 65_536, value_parser = clap::value_parser!(u32).range(64..=(64 << 20)).map(|v| v as usize))]
    pub max_message_size: usize,

    /// Channels one client may subscribe to.
    #[arg(long, env = "CRIER_MAX_SUBSCRIPTIONS", default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=100_000).map(|v| v as usize))]
    pub max_subscriptions: usize,

    /// Channels the hub holds at most (each with its subscribers and history); a publish or
    /// subscribe that would create one more is refused (`too_many_channels`, HTTP 503).
    #[arg(long, env = "CRIER_MAX_CHANNELS", default_value_t = 100_000, value_parser = clap::value_parser!(u32).range(1..).map(|v| v as usize))]
    pub max_channels: usize,

    /// Deepest nesting of arrays and objects in a published `data` (`too_deep`, HTTP 400).
    /// Readers whose JSON parsers recurse per level (most do) are safe below it.
    #[arg(long, env = "CRIER_MAX_JSON_DEPTH", default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..=1024).map(|v| v as usize))]
    pub max_json_depth: usize,

    /// Channels clients may publish to: comma-separated names or prefixes ending in `*`;
    /// `*` for all, empty for none. The default lets the demo chat rooms (`chat:…`) work.
    #[arg(long, env = "CRIER_CLIENT_PUBLISH", default_value = "chat:*")]
    pub client_publish: String,

    /// Publishes are refused (HTTP 503 `overloaded`, Retry-After: 1) while more than this
    /// fraction of clients lag (queue at least half full): the hub itself cannot keep up.
    #[arg(long, env = "CRIER_OVERLOAD_FRACTION", default_value_t = 0.5, value_parser = fraction)]
    pub overload_fraction: f64,

    /// ...and at least this many clients lag (so a few slow clients in a small hub are simply
    /// evicted, never mistaken for overload).
    #[arg(long, env = "CRIER_OVERLOAD_MIN_LAGGING", default_value_t = 16)]
    pub overload_min_lagging: usize,

    /// A client whose queue is at least half full and nobody takes from it for this long is
    /// evicted as slow (4000), whatever keeps its connection open. From one second without
    /// progress such a client no longer counts toward overload.
    #[arg(long, env = "CRIER_STUCK_TIMEOUT", default_value = "10s", value_parser = positive_duration)]
    pub stuck_timeout: Duration,

    /// Kernel send buffer per client socket, in bytes (0 = the kernel's autotuning). Capped so
    /// a stuck client cannot park megabytes in the kernel; its queue overflows instead.
    #[arg(long, env = "CRIER_SOCKET_SEND_BUFFER", default_value_t = 131_072)]
    pub socket_send_buffer: usize,

    /// Redis to share channels with other nodes (`redis://host:6379/0`): offsets, history and
    /// fan-out then come from Redis (docs/SCALING.md). Unset: a single node, no external service.
    #[arg(long, env = "CRIER_REDIS_URL")]
    pub redis_url: Option<String>,

    /// Bound on every Redis call; a publish or subscribe that Redis does not answer in time is
    /// refused (`broker_unavailable`, HTTP 503).
    #[arg(long, env = "CRIER_REDIS_TIMEOUT", default_value = "2s", value_parser = positive_duration)]
    pub redis_timeout: Duration,

    /// How long start-up keeps trying to reach Redis before exiting with an error (0s: one
    /// attempt).
    #[arg(long, env = "CRIER_REDIS_WAIT", default_value = "0s", value_parser = humantime::parse_duration)]
    pub redis_wait: Duration,

    /// How long shutdown waits for connections to close before exiting anyway.
    #[arg(long, env = "CRIER_SHUTDOWN_GRACE", default_value = "10s", value_parser = humantime::parse_duration)]
    pub shutdown_grace: Duration,
}

fn fraction(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(f) if (0.0..=1.0).contains(&f) => Ok(f),
        _ => Err("must be a number from 0 to 1".into()),
    }
}

fn positive_duration(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s).map_err(|e| e.to_string())?;
    if d.is_zero() {
        Err("must be greater than zero".into())
    } else {
        Ok(d)
    }
}

impl Default for Config {
    fn default() -> Self {
        Self::parse_from(["crier"])
    }
}

impl Config {
    /// Parses flags as if given on the command line (for tests and embedding), ignoring the
    /// environment's `CRIER_*` variables only where a flag is given.
    pub fn from_args<I, T>(args: I) -> Result<Self, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        Self::try_parse_from(
            std::iter::once("crier".into()).chain(args.into_iter().map(Into::into)),
        )
    }

    /// The connection ceiling: the configured maximum, or what the open-files limit allows.
    pub fn connection_ceiling(&self) -> usize {
        let fd_room = rlimit::getrlimit(rlimit::Resource::NOFILE)
            .map(|(soft, _)| soft.saturating_sub(RESERVED_FDS) as usize)
            .unwrap_or(1024);
        match self.max_connections {
            0 => fd_room.max(1),
            n => n,
        }
    }

    /// Settings that work but probably not as intended, for a warning at start-up.
    pub fn warnings(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        if self.history_size >= self.queue_capacity {
            warnings.push(format!(
                "--history-size {} is not below --queue-capacity {}: a client resuming from deep in history will be evicted as slow",
                self.history_size, self.queue_capacity
            ));
        }
        if self.history_max_bytes >= self.queue_max_bytes {
            warnings.push(format!(
                "--history-max-bytes {} is not below --queue-max-bytes {}: a client resuming from deep in history will be evicted as slow",
                self.history_max_bytes, self.queue_max_bytes
            ));
        }
        if self.idle_timeout <= self.ping_interval {
            warnings.push(format!(
                "--idle-timeout {:?} is not above --ping-interval {:?}: healthy but quiet WebSocket clients will be closed as idle",
                self.idle_timeout, self.ping_interval
            ));
        }
        if self.lp_session_timeout <= self.lp_hold {
            warnings.push(format!(
                "--lp-session-timeout {:?} is not above --lp-hold {:?}: long-poll sessions may end between polls",
                self.lp_session_timeout, self.lp_hold
            ));
        }
        warnings
    }

    pub fn hub_config(&self) -> HubConfig {
        HubConfig {
            queue_capacity: self.queue_capacity,
            queue_max_bytes: self.queue_max_bytes,
            history: HistoryLimits {
                size: self.history_size,
                max_bytes: self.history_max_bytes,
                ttl: self.history_ttl,
            },
            history_budget: self.history_budget,
            max_connections: self.connection_ceiling(),
            max_subscriptions: self.max_subscriptions,
            max_channels: self.max_channels,
            max_json_depth: self.max_json_depth,
            client_publish: PublishPolicy::parse(&self.client_publish),
            overload_fraction: self.overload_fraction,
            overload_min_lagging: self.overload_min_lagging,
            stuck_timeout: self.stuck_timeout,
        }
    }

    /// How to reach Redis, when `--redis-url` is set.
    pub fn cluster_config(&self) -> Option<ClusterConfig> {
        Some(ClusterConfig {
            url: self.redis_url.clone()?,
            timeout: self.redis_timeout,
            wait: self.redis_wait,
            history: self.hub_config().history,
        })
    }

    pub fn ws_config(&self) -> WsConfig {
        WsConfig {
            ping_interval: self.ping_interval,
            idle_timeout: self.idle_timeout,
            write_timeout: self.write_timeout,
            handshake_timeout: self.handshake_timeout,
            max_message_size: self.max_message_size,
        }
    }

    pub fn long_poll_config(&self) -> LongPollConfig {
        LongPollConfig {
            hold: self.lp_hold,
            session_timeout: self.lp_session_timeout,
        }
    }
}

/// Raises the open-files soft limit to the hard limit; returns the new soft limit. Each
/// connection is one file descriptor, so this is the hub's real connection ceiling.
pub fn raise_open_files_limit() -> std::io::Result<u64> {
    let (_, hard) = rlimit::getrlimit(rlimit::Resource::NOFILE)?;
    rlimit::increase_nofile_limit(hard)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_parse_and_durations_are_humane() {
        let c = Config::from_args(["--lp-hold", "3s", "--history-ttl", "1m"]).unwrap();
        assert_eq!(c.lp_hold, Duration::from_secs(3));
        assert_eq!(c.history_ttl, Duration::from_secs(60));
        assert_eq!(c.bind.to_string(), "127.0.0.1:8080");
        assert!(Config::from_args(["--idle-timeout", "0s"]).is_err());
        assert!(Config::from_args(["--queue-capacity", "0"]).is_err());
        assert!(
            Config::default().warnings().is_empty(),
            "defaults are consistent"
        );
        assert_eq!(
            Config::from_args(["--history-size", "5000"])
                .unwrap()
                .warnings()
                .len(),
            1
        );
    }
}
