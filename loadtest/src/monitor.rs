//! The sampler: once per interval it records connections, throughput, latency of the
//! interval and the hub's memory and CPU, and shows progress (a live line on a terminal,
//! plain periodic lines otherwise).

use std::io::IsTerminal;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::ctx::{Counters, Ctx};
use crate::latency::Percentiles;
use crate::procfs::{self, HubProcs};

#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    /// Seconds since the run started.
    pub t: f64,
    pub phase: String,
    pub connections: i64,
    pub deliveries_per_s: f64,
    pub publishes_per_s: f64,
    pub latency: Percentiles,
    pub hub_rss_bytes: Option<u64>,
    pub hub_cpu_percent: Option<f64>,
    /// This load generator's CPU, in % of one core.
    pub loadtest_cpu_percent: Option<f64>,
    /// The whole machine's busy share, in % of all cores (the hub and the tool share it, and
    /// so may anything else running).
    pub machine_busy_percent: Option<f64>,
    pub tcp_mem_bytes: Option<u64>,
    pub hub_closes: u64,
    pub errors: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ProgressMode {
    /// A live line on a terminal, plain lines otherwise.
    Auto,
    Bar,
    Plain,
    None,
}

pub struct Monitor {
    stop: CancellationToken,
    handle: tokio::task::JoinHandle<Vec<Sample>>,
}

impl Monitor {
    pub fn start(ctx: Arc<Ctx>, interval: Duration, mode: ProgressMode) -> Self {
        let stop = CancellationToken::new();
        let started = Instant::now();
        let handle = tokio::spawn(sample_loop(ctx, interval, mode, stop.clone(), started));
        Self { stop, handle }
    }

    /// Stops sampling and returns the series.
    pub async fn finish(self) -> Vec<Sample> {
        self.stop.cancel();
        self.handle.await.unwrap_or_default()
    }
}

async fn sample_loop(
    ctx: Arc<Ctx>,
    interval: Duration,
    mode: ProgressMode,
    stop: CancellationToken,
    started: Instant,
) -> Vec<Sample> {
    let tty = std::io::stderr().is_terminal();
    let bar = match mode {
        ProgressMode::Bar => true,
        ProgressMode::Auto => tty,
        _ => false,
    };
    let plain = matches!(mode, ProgressMode::Plain) || (mode == ProgressMode::Auto && !tty);
    let pb = bar.then(|| {
        let pb = ProgressBar::new_spinner();
        pb.set_style(
            ProgressStyle::with_template("{spinner} [{elapsed_precise}] {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        pb.enable_steady_tick(Duration::from_millis(200));
        pb
    });
    // Plain lines every 5 s at most, so logs stay readable.
    let plain_every = (Duration::from_secs(5).as_secs_f64() / interval.as_secs_f64())
        .ceil()
        .max(1.0) as u64;
    let mut samples = Vec::new();
    let mut last_t = Instant::now();
    let mut last_deliveries = Counters::get(&ctx.counters.deliveries);
    let mut last_publishes = Counters::get(&ctx.counters.publishes);
    let mut last_cpu = ctx.hub_procs.as_ref().and_then(HubProcs::cpu_seconds);
    let me = std::process::id();
    let mut last_own = procfs::cpu_seconds(me);
    let mut last_machine = procfs::machine_cpu_ticks();
    // The first tick is immediate: a sample at t≈0 shows the starting point.
    let mut ticker = tokio::time::interval(interval);
    // Bounded: one sample per interval, for at most a day.
    let max_samples = (86_400.0 / interval.as_secs_f64()).ceil() as u64;
    for n in 0..max_samples {
        let stopping = tokio::select! {
            _ = stop.cancelled() => true,
            _ = ticker.tick() => false,
        };
        let now = Instant::now();
        let dt = now.duration_since(last_t).as_secs_f64().max(1e-6);
        last_t = now;
        let deliveries = Counters::get(&ctx.counters.deliveries);
        let publishes = Counters::get(&ctx.counters.publishes);
        let cpu = ctx.hub_procs.as_ref().and_then(HubProcs::cpu_seconds);
        let hub_cpu_percent = match (cpu, last_cpu) {
            (Some(c), Some(l)) => Some((c - l) / dt * 100.0),
            _ => None,
        };
        last_cpu = cpu;
        let own = procfs::cpu_seconds(me);
        let loadtest_cpu_percent = match (own, last_own) {
            (Some(c), Some(l)) => Some((c - l) / dt * 100.0),
            _ => None,
        };
        last_own = own;
        let machine = procfs::machine_cpu_ticks();
        let machine_busy_percent = procfs::busy_percent(last_machine, machine);
        last_machine = machine;
        let s = Sample {
            t: now.duration_since(started).as_secs_f64(),
            phase: ctx.phase(),
            connections: ctx.counters.active.load(Ordering::Relaxed),
            deliveries_per_s: deliveries.saturating_sub(last_deliveries) as f64 / dt,
            publishes_per_s: publishes.saturating_sub(last_publishes) as f64 / dt,
            latency: Percentiles::of(&ctx.latency.take_interval()),
            hub_rss_bytes: ctx.hub_procs.as_ref().and_then(HubProcs::rss_bytes),
            hub_cpu_percent,
            loadtest_cpu_percent,
            machine_busy_percent,
            tcp_mem_bytes: procfs::tcp_socket_mem_bytes(),
            hub_closes: Counters::get(&ctx.counters.hub_closes),
            errors: ctx.counters.errors().values().sum(),
        };
        last_deliveries = deliveries;
        last_publishes = publishes;
        let line = progress_line(&s);
        if let Some(pb) = &pb {
            pb.set_message(line);
        } else if plain && (n % plain_every == 0 || stopping) {
            eprintln!("[{:>7.1}s] {line}", s.t);
        }
        samples.push(s);
        if stopping {
            break;
        }
    }
    if let Some(pb) = pb {
        pb.finish_and_clear();
    }
    samples
}

fn progress_line(s: &Sample) -> String {
    let mut line = format!(
        "{:<10} conns {:>6}  deliv/s {:>9.0}  pub/s {:>7.0}  p99 {:>8.2} ms",
        s.phase, s.connections, s.deliveries_per_s, s.publishes_per_s, s.latency.p99_ms
    );
    if let Some(rss) = s.hub_rss_bytes {
        line.push_str(&format!("  hub rss {:>7.1} MiB", rss as f64 / 1048576.0));
    }
    if let Some(cpu) = s.hub_cpu_percent {
        line.push_str(&format!("  hub cpu {cpu:>4.0}%"));
    }
    if let Some(cpu) = s.loadtest_cpu_percent {
        line.push_str(&format!("  tool cpu {cpu:>4.0}%"));
    }
    if let Some(busy) = s.machine_busy_percent {
        line.push_str(&format!("  machine {busy:>3.0}%"));
    }
    if s.hub_closes > 0 || s.errors > 0 {
        line.push_str(&format!("  closes {} errors {}", s.hub_closes, s.errors));
    }
    line
}
