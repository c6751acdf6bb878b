//! Command-line interface: global options and one subcommand per scenario.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use serde::Serialize;

use crate::client::Transport;
use crate::monitor::ProgressMode;

fn duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| e.to_string())
}

#[derive(Debug, Parser)]
#[command(
    name = "crier-loadtest",
    version,
    about = "Drives a running crier hub over loopback with real WebSocket and long-poll clients",
    after_help = "Example: cargo run --release -p crier-loadtest -- fanout --server-pid $(pgrep -n crier)"
)]
pub struct Cli {
    /// The hub's base URL; only loopback addresses are accepted.
    #[arg(long, global = true, default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// The hub's process id: enables memory (VmRSS/VmHWM) and CPU (utime+stime) figures.
    /// Several (comma-separated or repeated) are summed: a hub made of several processes.
    #[arg(long, global = true, value_delimiter = ',', value_name = "PID[,PID…]")]
    pub server_pid: Vec<u32>,
    /// Like --server-pid for every process whose name (/proc/PID/comm) is exactly NAME, found
    /// once at start and summed (e.g. `nginx`: the master and its workers).
    #[arg(
        long,
        global = true,
        value_name = "NAME",
        conflicts_with = "server_pid"
    )]
    pub server_match: Option<String>,
    /// Generic mode (a hub that is not crier): subscribers open this WebSocket URL, `{channel}`
    /// replaced, and take every frame as one published body. Needs --publish-template. Only
    /// idle, fanout and slow run in generic mode; loss, duplicates and order are checked by a
    /// per-channel sequence number the publisher writes into each body.
    #[arg(long, global = true, value_name = "URL", requires = "publish_template")]
    pub ws_template: Option<String>,
    /// Generic mode, long-poll (`--transport lp`): subscribers `GET` this URL, `{channel}`
    /// replaced, again and again on one kept-alive connection; a `200` body is one published
    /// message, `304`/`408` mean none arrived; each request carries the last answer's
    /// `Last-Modified` and `Etag` as `If-Modified-Since` and `If-None-Match` (nchan's
    /// long-poll). Needs --publish-template; may be given with --ws-template (same address).
    #[arg(long, global = true, value_name = "URL", requires = "publish_template")]
    pub lp_template: Option<String>,
    /// Generic mode: publishers POST each body to this URL, `{channel}` replaced; any 2xx reply
    /// counts as accepted. Publishes to one channel go one at a time, so its sequence numbers
    /// reach the hub in order. Needs --ws-template or --lp-template (checked at start).
    #[arg(long, global = true, value_name = "URL")]
    pub publish_template: Option<String>,
    /// Print the machine-readable result (JSON) instead of the summary.
    #[arg(long, global = true)]
    pub json: bool,
    /// Write a self-contained HTML report into this directory.
    #[arg(long, global = true, value_name = "DIR")]
    pub report: Option<PathBuf>,
    /// Also write the machine-readable result (JSON) to this file.
    #[arg(long, global = true, value_name = "FILE")]
    pub save_json: Option<PathBuf>,
    /// Spread client sockets over this many source addresses (127.0.0.1 ..= 127.0.0.N).
    #[arg(long, global = true, default_value_t = 8)]
    pub source_addrs: usize,
    /// Scale-out: publish through this other node (`http://HOST:PORT`) of the same Redis-backed
    /// cluster, while subscribers connect to `--url`: every message crosses Redis.
    #[arg(long, global = true, value_name = "URL")]
    pub publish_node: Option<String>,
    /// Worker threads of the load generator's runtime.
    #[arg(long, global = true, default_value_t = 2)]
    pub threads: usize,
    /// Progress display: a live line on a terminal, plain lines in logs.
    #[arg(long, global = true, value_enum, default_value = "auto")]
    pub progress: ProgressMode,
    /// How often to sample throughput, latency and hub memory.
    #[arg(long, global = true, default_value = "1s", value_parser = duration)]
    pub sample_interval: Duration,
    /// Exit with status 1 when the run found loss, duplicates, reordering or errors
    /// (always on for `smoke`).
    #[arg(long, global = true)]
    pub strict: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Ramp to N idle connections, hold, report connect rate, memory per connection and drops.
    Idle(IdleArgs),
    /// N subscribers over C channels, publish at a fixed rate (or saturate), measure latency,
    /// throughput, CPU per delivery and exact loss/duplicate/reorder counts.
    Fanout(FanoutArgs),
    /// Fanout with K clients that never read, next to a baseline run without them.
    Slow(SlowArgs),
    /// Everyone drops and reconnects at once, resuming with `since`, while publishing goes on.
    Storm(StormArgs),
    /// A long mixed run (churn, slow clients, both transports) sampling memory and latency.
    Soak(SoakArgs),
    /// A short CI check: a few hundred clients, a reconnect storm; exit 1 on any loss,
    /// duplicate, reorder or error.
    Smoke(SmokeArgs),
    /// N members join one presence room at once, then all drop and resume at once: the
    /// `presence_diff` frames per member in each phase, the members listed, hub CPU and RSS;
    /// exit 1 on a wrong count.
    Presence(PresenceArgs),
}

impl Command {
    /// The scenario's name, as typed.
    pub fn name(&self) -> &'static str {
        match self {
            Command::Idle(_) => "idle",
            Command::Fanout(_) => "fanout",
            Command::Slow(_) => "slow",
            Command::Storm(_) => "storm",
            Command::Soak(_) => "soak",
            Command::Smoke(_) => "smoke",
            Command::Presence(_) => "presence",
        }
    }

    pub fn clients(&self) -> &ClientArgs {
        match self {
            Command::Idle(a) => &a.clients,
            Command::Fanout(a) => &a.clients,
            Command::Slow(a) => &a.fanout.clients,
            Command::Storm(a) => &a.clients,
            Command::Soak(a) => &a.clients,
            Command::Smoke(a) => &a.clients,
            Command::Presence(a) => &a.clients,
        }
    }

    /// The scenario's flags as the `settings` of the machine-readable result.
    pub fn settings(&self) -> serde_json::Result<serde_json::Value> {
        match self {
            Command::Idle(a) => serde_json::to_value(a),
            Command::Fanout(a) => serde_json::to_value(a),
            Command::Slow(a) => serde_json::to_value(a),
            Command::Storm(a) => serde_json::to_value(a),
            Command::Soak(a) => serde_json::to_value(a),
            Command::Smoke(a) => serde_json::to_value(a),
            Command::Presence(a) => serde_json::to_value(a),
        }
    }
}

/// Who connects; every scenario has these. The defaults are fanout's: a scenario with other
/// defaults changes them with `mut_arg` where it flattens this group.
#[derive(Debug, Clone, Args, Serialize)]
pub struct ClientArgs {
    /// Clients to connect (subscribers; fanout's old `--subscribers` still works).
    #[arg(long, short = 'n', alias = "subscribers", default_value_t = 1000)]
    pub clients: usize,
    /// Channels: client i subscribes to channel i mod C; publishes go round-robin over them.
    #[arg(long, short = 'c', default_value_t = 10)]
    pub channels: usize,
    /// `mix` alternates WebSocket and long-poll clients.
    #[arg(long, value_enum, default_value = "ws")]
    pub transport: Transport,
}

/// How a publishing run goes: the ramp, the publishing, the drain. Defaults are fanout's.
#[derive(Debug, Clone, Args, Serialize)]
pub struct PublishArgs {
    /// Publishes per second over all channels; 0 = as fast as the hub accepts.
    #[arg(long, default_value_t = 1000.0)]
    pub rate: f64,
    /// Concurrent publishers (HTTP requests in flight).
    #[arg(long, default_value_t = 8)]
    pub publishers: usize,
    /// Message body size in bytes.
    #[arg(long, default_value_t = 256)]
    pub size: usize,
    /// How long to publish.
    #[arg(long, default_value = "10s", value_parser = duration)]
    #[serde(with = "humantime_serde_compat")]
    pub duration: Duration,
    /// New connections per second during the ramp.
    #[arg(long, default_value_t = 2000.0)]
    pub ramp_rate: f64,
    /// How long subscribers may take to catch up after publishing stops.
    #[arg(long, default_value = "15s", value_parser = duration)]
    #[serde(with = "humantime_serde_compat")]
    pub drain_timeout: Duration,
}

#[derive(Debug, Clone, Args, Serialize)]
pub struct IdleArgs {
    #[command(flatten)]
    #[serde(flatten)]
    pub clients: ClientArgs,
    /// New connections per second.
    #[arg(long, default_value_t = 1000.0)]
    pub ramp_rate: f64,
    /// How long to hold the connections.
    #[arg(long, default_value = "10s", value_parser = duration)]
    #[serde(with = "humantime_serde_compat")]
    pub hold: Duration,
}

#[derive(Debug, Clone, Args, Serialize)]
pub struct FanoutArgs {
    #[command(flatten)]
    #[serde(flatten, serialize_with = "subscribers_key")]
    pub clients: ClientArgs,
    #[command(flatten)]
    #[serde(flatten)]
    pub publish: PublishArgs,
}

#[derive(Debug, Clone, Args, Serialize)]
pub struct SlowArgs {
    #[command(flatten)]
    pub fanout: FanoutArgs,
    /// Clients that subscribe and never read.
    #[arg(long, default_value_t = 50)]
    pub slow: usize,
    /// Receive buffer of a slow client's socket (small: its hub queue fills sooner).
    #[arg(long, default_value_t = 4096)]
    pub slow_recv_buffer: u32,
    /// Skip the baseline run without slow clients.
    #[arg(long)]
    pub no_baseline: bool,
}

#[derive(Debug, Clone, Args, Serialize)]
#[command(
    mut_arg("rate", |a| a.default_value("200")),
    mut_arg("publishers", |a| a.default_value("4")),
    mut_arg("duration", |a| a.default_value("15s")),
)]
pub struct StormArgs {
    #[command(flatten)]
    #[serde(flatten)]
    pub clients: ClientArgs,
    #[command(flatten)]
    #[serde(flatten)]
    pub publish: PublishArgs,
    /// When the storm hits, counted from the start of publishing.
    #[arg(long, default_value = "5s", value_parser = duration)]
    #[serde(with = "humantime_serde_compat")]
    pub storm_at: Duration,
}

#[derive(Debug, Clone, Args, Serialize)]
#[command(
    mut_arg("clients", |a| a.default_value("500")),
    mut_arg("channels", |a| a.default_value("20")),
    mut_arg("transport", |a| a.default_value("mix")),
    mut_arg("rate", |a| a.default_value("200")),
    mut_arg("publishers", |a| a.default_value("4")),
    mut_arg("duration", |a| a.default_value("5m")),
    mut_arg("ramp_rate", |a| a.default_value("1000")),
    mut_arg("drain_timeout", |a| a.default_value("20s")),
)]
pub struct SoakArgs {
    #[command(flatten)]
    #[serde(flatten)]
    pub clients: ClientArgs,
    #[command(flatten)]
    #[serde(flatten)]
    pub publish: PublishArgs,
    /// Random drop-and-resume reconnects per second.
    #[arg(long, default_value_t = 5.0)]
    pub churn: f64,
    /// Add this many slow clients …
    #[arg(long, default_value_t = 5)]
    pub slow_batch: usize,
    /// … this often.
    #[arg(long, default_value = "30s", value_parser = duration)]
    #[serde(with = "humantime_serde_compat")]
    pub slow_every: Duration,
    /// Receive buffer of a slow client's socket (small: its hub queue fills sooner).
    #[arg(long, default_value_t = 4096)]
    pub slow_recv_buffer: u32,
}

/// Smoke's load is fixed but for the rate and the duration: CI wants one known shape.
#[derive(Debug, Clone, Args, Serialize)]
#[command(
    mut_arg("clients", |a| a.default_value("300")),
    mut_arg("channels", |a| a.default_value("6")),
    mut_arg("transport", |a| a.default_value("mix")),
)]
pub struct SmokeArgs {
    #[command(flatten)]
    #[serde(flatten)]
    pub clients: ClientArgs,
    /// Publishes per second over all channels.
    #[arg(long, default_value_t = 200.0)]
    pub rate: f64,
    /// How long to publish; the storm hits halfway.
    #[arg(long, default_value = "6s", value_parser = duration)]
    #[serde(with = "humantime_serde_compat")]
    pub duration: Duration,
}

/// One room (`chat:<run id>`, a presence channel under the hub's default `--presence`), so
/// `--channels` is fixed at 1 and hidden.
#[derive(Debug, Clone, Args, Serialize)]
#[command(mut_arg("channels", |a| a.default_value("1").hide(true)))]
pub struct PresenceArgs {
    #[command(flatten)]
    #[serde(flatten)]
    pub clients: ClientArgs,
    /// New connections per second while everyone joins (the default: as fast as the hub
    /// accepts).
    #[arg(long, default_value_t = 20_000.0)]
    pub ramp_rate: f64,
    /// The hub's `--presence-batch`: the flush window that bounds how many `presence_diff`
    /// frames a member may get in a phase.
    #[arg(long, default_value = "250ms", value_parser = duration)]
    #[serde(with = "humantime_serde_compat")]
    pub presence_batch: Duration,
}

/// Fanout's settings have always called the client count `subscribers`; saved results and
/// scripts keep seeing that key.
fn subscribers_key<S: serde::Serializer>(c: &ClientArgs, s: S) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeStruct;
    let mut st = s.serialize_struct("ClientArgs", 3)?;
    st.serialize_field("subscribers", &c.clients)?;
    st.serialize_field("channels", &c.channels)?;
    st.serialize_field("transport", &c.transport)?;
    st.end()
}

/// Durations serialise as humantime strings ("10s") in the JSON settings.
mod humantime_serde_compat {
    use std::time::Duration;

    pub fn serialize<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*d).to_string())
    }
}

#[cfg(test)]
mod tests;
