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
    /// Generic mode: publishers POST each body to this URL, `{channel}` replaced; any 2xx reply
    /// counts as accepted. Publishes to one channel go one at a time, so its sequence numbers
    /// reach the hub in order.
    #[arg(long, global = true, value_name = "URL", requires = "ws_template")]
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
}

#[derive(Debug, Clone, Args, Serialize)]
pub struct IdleArgs {
    /// Connections to open.
    #[arg(long, short = 'n', default_value_t = 1000)]
    pub clients: usize,
    /// Channels the clients subscribe to (client i → channel i mod C).
    #[arg(long, default_value_t = 10)]
    pub channels: usize,
    #[arg(long, value_enum, default_value = "ws")]
    pub transport: Transport,
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
    /// Subscribers.
    #[arg(long, short = 'n', default_value_t = 1000)]
    pub subscribers: usize,
    /// Channels (subscriber i → channel i mod C; publishes go round-robin over them).
    #[arg(long, short = 'c', default_value_t = 10)]
    pub channels: usize,
    #[arg(long, value_enum, default_value = "ws")]
    pub transport: Transport,
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
pub struct StormArgs {
    /// Connected clients that all drop at once.
    #[arg(long, short = 'n', default_value_t = 1000)]
    pub clients: usize,
    #[arg(long, short = 'c', default_value_t = 10)]
    pub channels: usize,
    #[arg(long, value_enum, default_value = "ws")]
    pub transport: Transport,
    /// Publishes per second, going on through the storm.
    #[arg(long, default_value_t = 200.0)]
    pub rate: f64,
    #[arg(long, default_value_t = 4)]
    pub publishers: usize,
    #[arg(long, default_value_t = 256)]
    pub size: usize,
    /// Total publishing time.
    #[arg(long, default_value = "15s", value_parser = duration)]
    #[serde(with = "humantime_serde_compat")]
    pub duration: Duration,
    /// When the storm hits, counted from the start of publishing.
    #[arg(long, default_value = "5s", value_parser = duration)]
    #[serde(with = "humantime_serde_compat")]
    pub storm_at: Duration,
    #[arg(long, default_value_t = 2000.0)]
    pub ramp_rate: f64,
    #[arg(long, default_value = "15s", value_parser = duration)]
    #[serde(with = "humantime_serde_compat")]
    pub drain_timeout: Duration,
}

#[derive(Debug, Clone, Args, Serialize)]
pub struct SoakArgs {
    #[arg(long, default_value = "5m", value_parser = duration)]
    #[serde(with = "humantime_serde_compat")]
    pub duration: Duration,
    /// Subscribers (half WebSocket, half long-poll with the default `mix`).
    #[arg(long, short = 'n', default_value_t = 500)]
    pub clients: usize,
    #[arg(long, short = 'c', default_value_t = 20)]
    pub channels: usize,
    #[arg(long, value_enum, default_value = "mix")]
    pub transport: Transport,
    #[arg(long, default_value_t = 200.0)]
    pub rate: f64,
    #[arg(long, default_value_t = 4)]
    pub publishers: usize,
    #[arg(long, default_value_t = 256)]
    pub size: usize,
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
    #[arg(long, default_value_t = 4096)]
    pub slow_recv_buffer: u32,
    #[arg(long, default_value_t = 1000.0)]
    pub ramp_rate: f64,
    #[arg(long, default_value = "20s", value_parser = duration)]
    #[serde(with = "humantime_serde_compat")]
    pub drain_timeout: Duration,
}

#[derive(Debug, Clone, Args, Serialize)]
pub struct SmokeArgs {
    #[arg(long, short = 'n', default_value_t = 300)]
    pub clients: usize,
    #[arg(long, short = 'c', default_value_t = 6)]
    pub channels: usize,
    #[arg(long, value_enum, default_value = "mix")]
    pub transport: Transport,
    #[arg(long, default_value_t = 200.0)]
    pub rate: f64,
    #[arg(long, default_value = "6s", value_parser = duration)]
    #[serde(with = "humantime_serde_compat")]
    pub duration: Duration,
}

/// Durations serialise as humantime strings ("10s") in the JSON settings.
mod humantime_serde_compat {
    use std::time::Duration;

    pub fn serialize<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*d).to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn defaults_are_sensible() {
        let cli = Cli::try_parse_from(["crier-loadtest", "fanout"]).unwrap();
        assert_eq!(cli.url, "http://127.0.0.1:8080");
        let Command::Fanout(f) = cli.command else {
            panic!("not fanout")
        };
        assert_eq!(f.subscribers, 1000);
        assert_eq!(f.transport, Transport::Ws);
        assert_eq!(f.duration, Duration::from_secs(10));
    }

    #[test]
    fn global_flags_after_subcommand() {
        let cli = Cli::try_parse_from([
            "crier-loadtest",
            "slow",
            "--slow",
            "7",
            "--rate",
            "0",
            "--publishers",
            "4",
            "--server-pid",
            "42",
            "--json",
            "--duration",
            "1m",
        ])
        .unwrap();
        assert!(cli.json);
        assert_eq!(cli.server_pid, vec![42]);
        let Command::Slow(s) = cli.command else {
            panic!("not slow")
        };
        assert_eq!(s.slow, 7);
        assert_eq!(s.fanout.rate, 0.0);
        assert_eq!(s.fanout.duration, Duration::from_secs(60));
    }

    #[test]
    fn generic_mode_and_several_pids() {
        let cli = Cli::try_parse_from([
            "crier-loadtest",
            "idle",
            "--ws-template",
            "ws://127.0.0.1:8081/sub/{channel}",
            "--publish-template",
            "http://127.0.0.1:8081/pub/{channel}",
            "--server-pid",
            "1,2",
            "--server-pid",
            "3",
        ])
        .unwrap();
        assert_eq!(cli.server_pid, vec![1, 2, 3]);
        assert!(cli.ws_template.is_some() && cli.publish_template.is_some());
        // One template without the other is refused, as is a pid list next to a name.
        assert!(Cli::try_parse_from([
            "crier-loadtest",
            "idle",
            "--ws-template",
            "ws://x/{channel}"
        ])
        .is_err());
        assert!(Cli::try_parse_from([
            "crier-loadtest",
            "idle",
            "--server-pid",
            "1",
            "--server-match",
            "nginx"
        ])
        .is_err());
    }

    #[test]
    fn rejects_bad_values() {
        assert!(Cli::try_parse_from(["crier-loadtest", "idle", "--transport", "tcp"]).is_err());
        assert!(Cli::try_parse_from(["crier-loadtest", "idle", "--hold", "soon"]).is_err());
    }
}
