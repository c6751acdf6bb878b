//! Configuration: every flag has a `CRIER_*` environment variable and a default that works
//! for the demo. `Config` is parsed by clap and turned into the typed limits each layer uses.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::builder::TypedValueParser as _;
use clap::Parser;

/// File descriptors kept back from the socket ceiling: the listener, logs, static files being
/// sent, and the refusals answered past the ceiling (`server::sockets::REFUSALS_IN_FLIGHT`).
const RESERVED_FDS: u64 = 100;

/// At shutdown, queued webhooks get at most this long (and at most half of
/// `--shutdown-grace`) to be delivered; the rest are dropped and counted.
const WEBHOOK_SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

mod command;
mod file;
mod layers;
mod values;

pub use command::{Command, TokenArgs};

pub use file::NamespaceConfig;
use values::{api_key_file, fraction, positive_duration, public_key_file};
pub use values::{ApiKeyFile, PublicKeyPem, Secret};

#[derive(Debug, Clone, Parser)]
#[command(
    name = "crier",
    version,
    about = "A real-time connection hub: WebSocket and long-poll clients, named channels with history and resume, an HTTP publish API.",
    after_help = "Durations take units: 500ms, 25s, 5m. Every flag can also be set by the environment variable shown.\nThe wire protocol is documented in docs/PROTOCOL.md."
)]
pub struct Config {
    /// Without a command, crier serves.
    #[command(subcommand)]
    pub command: Option<Command>,

    /// A TOML file with any of these settings (by long flag name) and `[[namespace]]` rules;
    /// flags and environment variables win over it. See `src/config/file.rs`.
    #[arg(long, env = "CRIER_CONFIG")]
    pub config: Option<PathBuf>,

    /// Namespaces from the config file (not a flag).
    #[arg(skip)]
    pub namespaces: Vec<NamespaceConfig>,

    /// Address to listen on.
    #[arg(long, env = "CRIER_BIND", default_value = "127.0.0.1:8080")]
    pub bind: SocketAddr,

    /// Directory served at `/` (the demo page and the browser client).
    #[arg(long, env = "CRIER_STATIC_DIR", default_value = "static")]
    pub static_dir: PathBuf,

    /// Most clients (WebSocket + long-poll) at once; 0 = the socket ceiling (--max-sockets).
    #[arg(long, env = "CRIER_MAX_CONNECTIONS", default_value_t = 0)]
    pub max_connections: usize,

    /// Most open sockets: WebSocket, long-poll and plain HTTP connections together, counted
    /// from accept to close; past it a new connection gets 503 `over_capacity`. 0 = the
    /// open-files limit less 100 reserved descriptors, which is also the most it can be.
    #[arg(long, env = "CRIER_MAX_SOCKETS", default_value_t = 0)]
    pub max_sockets: usize,

    /// Frames queued per client before it is evicted as slow (close code 4000).
    #[arg(long, env = "CRIER_QUEUE_CAPACITY", default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..=1_000_000).map(|v| v as usize))]
    pub queue_capacity: usize,

    /// Bytes of frames queued per client before it is evicted as slow (a client always has
    /// room for one frame). Bounds what a stuck client keeps alive when messages are large;
    /// catch-ups from history are read at the client's pace and do not count against it.
    #[arg(long, env = "CRIER_QUEUE_MAX_BYTES", default_value_t = 256 << 10)]
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

    /// Time allowed for the HTTP request head and the WebSocket upgrade; also how long a
    /// kept-alive HTTP connection may wait for its next request.
    #[arg(long, env = "CRIER_HANDSHAKE_TIMEOUT", default_value = "10s", value_parser = positive_duration)]
    pub handshake_timeout: Duration,

    /// Time allowed for a request body to arrive, from the end of its head: past it the
    /// request gets 408 `request_timeout` and the connection closes.
    #[arg(long, env = "CRIER_BODY_TIMEOUT", default_value = "10s", value_parser = positive_duration)]
    pub body_timeout: Duration,

    /// A socket write stalled this long closes the connection: a WebSocket (no close frame
    /// fits through a stalled socket; counted as `write_timeout`) or an HTTP response the
    /// client does not read.
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

    /// Channels that keep presence (members, `presence` / `presence_stats`, join/leave
    /// frames for members who ask): names or prefixes ending in `*`, as --client-publish;
    /// namespaces in --config override it. The default lets the demo's chat rooms show who
    /// is online.
    #[arg(long, env = "CRIER_PRESENCE", default_value = "chat:*")]
    pub presence: String,

    /// How often joins and leaves are sent, coalesced per channel (`presence_diff`).
    #[arg(long, env = "CRIER_PRESENCE_BATCH", default_value = "250ms", value_parser = positive_duration)]
    pub presence_batch: Duration,

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

    /// Flusher tasks that write published frames straight to idle WebSocket connections'
    /// sockets: one wake-up per publish instead of one per subscriber. The first writes; the
    /// others help it while writes carry one frame each (far below saturation), so a publish
    /// goes out on several cores. 0 = every connection's own task writes everything (as
    /// before 0.3).
    #[arg(long, env = "CRIER_WS_FLUSHERS", default_value_t = 2, value_parser = clap::value_parser!(u16).range(0..=64))]
    pub ws_flushers: u16,

    /// Frames one client may send per second (either transport; each frame of a long-poll
    /// `/lp/send` array counts); 0 = no limit. A frame past it is refused (`rate_limited`
    /// error frame, not handled); a client that goes on is closed (4004 `rate_limited`). A
    /// chatty client — typing indicators, presence, a 60 Hz game loop — stays well below 100.
    #[arg(long, env = "CRIER_MAX_FRAMES_PER_SECOND", default_value_t = 100)]
    pub max_frames_per_second: u32,

    /// ...and the burst above it: room for a reconnect that resubscribes 64 channels and
    /// publishes what waited offline, twice over.
    #[arg(long, env = "CRIER_FRAME_BURST", default_value_t = 200, value_parser = clap::value_parser!(u32).range(1..))]
    pub frame_burst: u32,

    /// `subscribe` frames with `since` one client may send per second; 0 = no limit. Each can
    /// make the hub replay a channel's whole history for a few bytes sent.
    #[arg(long, env = "CRIER_RESUBSCRIBE_RATE", default_value_t = 10)]
    pub resubscribe_rate: u32,

    /// ...and the burst above it: a reconnect that resumes every channel of
    /// --max-subscriptions (64) at once.
    #[arg(long, env = "CRIER_RESUBSCRIBE_BURST", default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..))]
    pub resubscribe_burst: u32,

    /// `publish` frames one client may send per second; 0 = no limit. Each is fanned out to
    /// every subscriber, so this is stricter than the frame limit; the publish API is not
    /// limited by it.
    #[arg(long, env = "CRIER_CLIENT_PUBLISH_RATE", default_value_t = 20)]
    pub client_publish_rate: u32,

    /// ...and the burst above it.
    #[arg(long, env = "CRIER_CLIENT_PUBLISH_BURST", default_value_t = 40, value_parser = clap::value_parser!(u32).range(1..))]
    pub client_publish_burst: u32,

    /// Publishes per second each backend (each API key; or the loopback peers of a hub with
    /// no key) may make through `/api/publish…`; 0 = no limit (the default: a backend is
    /// trusted). Past it: HTTP 429 `rate_limited`, `Retry-After: 1`.
    #[arg(long, env = "CRIER_API_PUBLISH_RATE", default_value_t = 0)]
    pub api_publish_rate: u32,

    /// ...and the burst above it (0: the rate).
    #[arg(long, env = "CRIER_API_PUBLISH_BURST", default_value_t = 0)]
    pub api_publish_burst: u32,

    /// Clients (WebSocket connections and long-poll sessions) one address (IPv4, or IPv6 /64)
    /// may hold at once; 0 = no limit. Past it: HTTP 503 `too_many_connections`. 2,000 lets a
    /// large office behind one NAT in (a thousand people with two tabs each) while one address
    /// holds at most a tenth of a 20,000-connection hub.
    #[arg(long, env = "CRIER_MAX_CONNECTIONS_PER_IP", default_value_t = 2000)]
    pub max_connections_per_ip: usize,

    /// New clients one address may open per second; 0 = no limit. Past it: HTTP 503
    /// `too_many_connections`, `Retry-After: 1`.
    #[arg(long, env = "CRIER_ACCEPTS_PER_IP_PER_SECOND", default_value_t = 50)]
    pub accepts_per_ip_per_second: u32,

    /// ...and the burst above it: as many as --max-connections-per-ip, so that a whole office
    /// gets back in at once after a restart.
    #[arg(long, env = "CRIER_ACCEPT_BURST_PER_IP", default_value_t = 2000, value_parser = clap::value_parser!(u32).range(1..))]
    pub accept_burst_per_ip: u32,

    /// Apply the per-address limits to loopback peers (127.0.0.0/8, ::1) too. Off by default:
    /// the loadtest, benchmarks and tests connect from loopback, and behind a reverse proxy on
    /// the same host every client is loopback (limit per address at the proxy then).
    #[arg(long, env = "CRIER_LIMIT_LOOPBACK")]
    pub limit_loopback: bool,

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

    /// API key backends present on `/api/*` and `/metrics` (`Authorization: Bearer KEY`).
    /// Repeat (or comma-separate) for several, e.g. while rotating. With no key at all those
    /// routes answer loopback peers only. See docs/SECURITY.md.
    #[arg(
        long = "api-key",
        env = "CRIER_API_KEY",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub api_keys: Vec<Secret>,

    /// File of API keys, one per line (blank lines and lines starting with `#` ignored).
    #[arg(long, env = "CRIER_API_KEY_FILE", value_parser = api_key_file)]
    pub api_key_file: Option<ApiKeyFile>,

    /// Shared secret that verifies clients' connection tokens (JWT, HS256). Without it (or
    /// --token-public-key) the hub runs in open mode: any client may subscribe anywhere.
    #[arg(
        long,
        env = "CRIER_TOKEN_SECRET",
        hide_env_values = true,
        global = true
    )]
    pub token_secret: Option<Secret>,

    /// PEM public key that verifies connection tokens instead: RSA (RS256), EC P-256 (ES256)
    /// or Ed25519 (EdDSA).
    #[arg(long, env = "CRIER_TOKEN_PUBLIC_KEY", value_parser = public_key_file, conflicts_with = "token_secret")]
    pub token_public_key: Option<PublicKeyPem>,

    /// Clock skew tolerated between the backend that signs tokens and the hub (`exp`, `nbf`).
    #[arg(long, env = "CRIER_TOKEN_LEEWAY", default_value = "5s", value_parser = humantime::parse_duration)]
    pub token_leeway: Duration,

    /// Web pages that may connect (browser requests carry `Origin`): exact origins
    /// (`https://app.example.com`) or host patterns (`*.example.com`), comma-separated. The
    /// hub's own origin is always allowed; without a list, so are localhost, 127.0.0.1 and
    /// [::1] on any port. Others get 403 `origin_forbidden`.
    #[arg(long, env = "CRIER_ALLOWED_ORIGINS", value_delimiter = ',')]
    pub allowed_origins: Vec<String>,

    /// URL the hub POSTs webhook events to (repeatable or comma-separated; `http://` only).
    /// See docs/WEBHOOKS.md.
    #[arg(long = "webhook-url", env = "CRIER_WEBHOOK_URL", value_delimiter = ',')]
    pub webhook_urls: Vec<String>,

    /// Webhook events to send, comma-separated: user_online, user_offline, channel_occupied,
    /// channel_vacated, member_added, member_removed. Default: all.
    #[arg(long, env = "CRIER_WEBHOOK_EVENTS", value_delimiter = ',')]
    pub webhook_events: Vec<crate::webhook::EventKind>,

    /// Key that signs webhook bodies (HMAC-SHA256 in `X-Crier-Signature`); default: the first
    /// --api-key.
    #[arg(long, env = "CRIER_WEBHOOK_SECRET", hide_env_values = true)]
    pub webhook_secret: Option<Secret>,

    /// A user's last connection must stay gone this long before `user_offline` (so a page
    /// reload is not an offline); 0 = at once.
    #[arg(long, env = "CRIER_WEBHOOK_OFFLINE_GRACE", default_value = "5s", value_parser = humantime::parse_duration)]
    pub webhook_offline_grace: Duration,

    /// Webhook events waiting for delivery at most; beyond it they are dropped and counted
    /// (`webhook_dropped`).
    #[arg(long, env = "CRIER_WEBHOOK_QUEUE", default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..=10_000_000).map(|v| v as usize))]
    pub webhook_queue: usize,

    /// Webhook deliveries in flight at most (requests and their retry waits).
    #[arg(long, env = "CRIER_WEBHOOK_CONCURRENCY", default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=10_000).map(|v| v as usize))]
    pub webhook_concurrency: usize,

    /// Time allowed for one webhook request (connect to response head).
    #[arg(long, env = "CRIER_WEBHOOK_TIMEOUT", default_value = "5s", value_parser = positive_duration)]
    pub webhook_timeout: Duration,

    /// Attempts per webhook delivery before it counts as failed (`webhook_failed`).
    #[arg(long, env = "CRIER_WEBHOOK_ATTEMPTS", default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub webhook_attempts: u32,

    /// First retry waits up to this (full jitter); each next one up to twice as long...
    #[arg(long, env = "CRIER_WEBHOOK_BACKOFF", default_value = "100ms", value_parser = humantime::parse_duration)]
    pub webhook_backoff: Duration,

    /// ...but never more than this.
    #[arg(long, env = "CRIER_WEBHOOK_BACKOFF_MAX", default_value = "5s", value_parser = humantime::parse_duration)]
    pub webhook_backoff_max: Duration,

    /// Test knob: loopback peer addresses to treat as remote (e.g. 127.0.0.2), so the
    /// loopback-only rule of the backend API can be tested on one machine.
    #[arg(long, hide = true, value_delimiter = ',')]
    pub treat_as_remote: Vec<IpAddr>,
}

impl Default for Config {
    fn default() -> Self {
        Self::parse_from(["crier"])
    }
}

/// Raises the open-files soft limit to the hard limit; returns the new soft limit. Each
/// connection is one file descriptor, so this is the hub's real connection ceiling.
pub fn raise_open_files_limit() -> std::io::Result<u64> {
    let (_, hard) = rlimit::getrlimit(rlimit::Resource::NOFILE)?;
    rlimit::increase_nofile_limit(hard)
}

#[cfg(test)]
mod tests;
