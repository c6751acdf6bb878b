//! One engine under every scenario: ramp up subscribers, optionally add slow clients, publish
//! (or just hold) for a while, optionally drop everyone at once (storm) or a few at a time
//! (churn), drain, and account for every message.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use rand::Rng;
use serde::Serialize;
use tokio::sync::{oneshot, watch, Notify};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::accounting::{RangeSet, Tally};
use crate::client::slow::{run_slow, SlowOutcome};
use crate::client::{run_subscriber, Controls, Ending, OnHubClose, SubOutcome, SubSpec, Transport};
use crate::ctx::{Counters, Ctx};
use crate::latency::Percentiles;
use crate::monitor::{Monitor, ProgressMode, Sample};
use crate::procfs::{self, HubProcs};
use crate::publisher::{self, PublishPlan};

/// How a run is shaped; scenarios fill it in.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub clients: usize,
    pub channels: usize,
    pub transport: Transport,
    /// New connections per second during the ramp.
    pub ramp_rate: f64,
    #[serde(skip)]
    pub on_hub_close: OnHubClose,
    /// How long the measured phase lasts (publishing, or holding when `publish` is `None`).
    pub duration: Duration,
    pub publish: Option<PublishSettings>,
    /// Clients that subscribe and never read.
    pub slow: usize,
    pub slow_recv_buffer: u32,
    /// Soak: this many more slow clients every period.
    pub slow_every: Option<(Duration, usize)>,
    /// Drop every subscriber at once this long into the measured phase.
    pub storm_at: Option<Duration>,
    /// Random reconnects (with resume) per second during the measured phase.
    pub churn_per_s: f64,
    /// How long to wait after publishing for subscribers to catch up.
    pub drain_timeout: Duration,
}

impl Plan {
    /// Subscribers that reconnect if the hub closes them, and nothing else: no publishing,
    /// no slow clients, no storm or churn. Scenarios add what they need.
    pub fn subscribers(
        clients: usize,
        channels: usize,
        transport: Transport,
        ramp_rate: f64,
        duration: Duration,
    ) -> Self {
        Self {
            clients,
            channels,
            transport,
            ramp_rate,
            on_hub_close: OnHubClose::Reconnect,
            duration,
            publish: None,
            slow: 0,
            slow_recv_buffer: 0,
            slow_every: None,
            storm_at: None,
            churn_per_s: 0.0,
            drain_timeout: Duration::from_secs(15),
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct PublishSettings {
    pub rate: f64,
    pub publishers: usize,
    pub size: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct RampFigures {
    pub wanted: usize,
    pub subscribed: usize,
    pub connect_failures: u64,
    pub seconds: f64,
    pub connects_per_s: f64,
    /// Connection attempts dropped by a full accept queue during the ramp (whole machine;
    /// each costs its client a 1 s SYN retransmission).
    pub listen_overflows: Option<u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct MemoryFigures {
    pub hub_rss_before: Option<u64>,
    pub hub_rss_after_ramp: Option<u64>,
    pub hub_rss_end: Option<u64>,
    pub hub_peak_rss: Option<u64>,
    /// (after ramp − before) / subscribed clients.
    pub hub_rss_per_connection: Option<f64>,
    /// PSS (shared pages split between the hub's processes), summed: differs from RSS when
    /// the hub is several processes sharing memory (nginx).
    pub hub_pss_before: Option<u64>,
    pub hub_pss_after_ramp: Option<u64>,
    pub hub_pss_per_connection: Option<f64>,
    pub tcp_mem_before: Option<u64>,
    pub tcp_mem_after_ramp: Option<u64>,
    /// Kernel TCP memory (both ends of every loopback socket) per client.
    pub tcp_mem_per_connection: Option<f64>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct SlowFigures {
    pub wanted: usize,
    pub connected: usize,
    /// Endings seen at the end (`4000 slow`, `eof`, `still open`, …) and how many.
    pub endings: BTreeMap<String, u64>,
    pub evicted_slow: u64,
    /// Slow clients the hub ended in any way (close frame, reset, EOF).
    pub ended_by_hub: u64,
    /// Frames the slow clients found waiting when they finally read.
    pub frames_read_at_end: u64,
}

impl SlowFigures {
    /// Counts one slow client's outcome.
    fn add(&mut self, o: &SlowOutcome) {
        if o.connected() {
            self.connected += 1;
            if o.ending != Ending::StillOpen {
                self.ended_by_hub += 1;
            }
        }
        self.frames_read_at_end += o.frames_buffered as u64;
        if o.ending.is_slow_eviction() {
            self.evicted_slow += 1;
        }
        *self.endings.entry(o.ending.to_string()).or_default() += 1;
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct StormFigures {
    pub dropped: usize,
    pub back: usize,
    /// From the drop until every subscriber had its `subscribed` again.
    pub all_back_ms: Option<f64>,
}

/// How busy the machine was: the hub and the tool share two cores, and a busy neighbour
/// skews every timing.
#[derive(Debug, Clone, Serialize)]
pub struct MachineFigures {
    pub loadavg_before: Option<f64>,
    pub loadavg_after: Option<f64>,
    /// Whole-machine busy share during the measured phase, % of all cores.
    pub busy_percent: Option<f64>,
    /// The load generator's own CPU time during the measured phase (and drain).
    pub loadtest_cpu_seconds: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    pub ramp: RampFigures,
    pub memory: MemoryFigures,
    pub measured_seconds: f64,
    pub publishes_accepted: u64,
    pub publish_errors: u64,
    pub publish_rejected: u64,
    /// `503 overloaded` replies: the hub's documented back-pressure.
    pub publish_pushback: u64,
    pub publishes_per_s: f64,
    /// Deliveries the hub reported queueing (sum of `enqueued`).
    pub hub_enqueued: u64,
    pub deliveries: u64,
    pub deliveries_per_s: f64,
    pub latency: Percentiles,
    /// Publish request round trips, as the publishers saw them.
    pub publish_rtt: Percentiles,
    pub machine: MachineFigures,
    pub hub_cpu_seconds: Option<f64>,
    pub hub_cpu_us_per_delivery: Option<f64>,
    pub tally: Tally,
    pub tally_by_transport: BTreeMap<String, Tally>,
    /// Connections the hub ended during the measured phase (healthy clients).
    pub hub_closes_during_run: u64,
    pub close_reasons: BTreeMap<String, u64>,
    pub reconnects: u64,
    pub errors: BTreeMap<String, u64>,
    pub slow: SlowFigures,
    pub storm: Option<StormFigures>,
    pub hub_stats_before: Option<serde_json::Value>,
    pub hub_stats_after: Option<serde_json::Value>,
    pub interrupted: bool,
    #[serde(skip)]
    pub samples: Vec<Sample>,
}

/// A unique channel prefix per run, so history left by earlier runs never mixes in.
fn channel_names(count: usize) -> Vec<String> {
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    let pid = std::process::id();
    (0..count.max(1))
        .map(|i| format!("lt-{stamp}-{pid}-{i}"))
        .collect()
}

/// Sleeps, or returns early (true) on Ctrl-C.
async fn sleep_or_interrupt(ctx: &Ctx, d: Duration) -> bool {
    tokio::select! {
        _ = ctx.interrupted.cancelled() => true,
        _ = tokio::time::sleep(d) => false,
    }
}

pub async fn run(
    ctx: Arc<Ctx>,
    plan: &Plan,
    progress: ProgressMode,
    interval: Duration,
) -> Result<Outcome> {
    let monitor = Monitor::start(ctx.clone(), interval, progress);
    let pid = ctx.hub_procs.clone();
    let pid = pid.as_ref();
    let hub_stats_before = ctx.hub_stats().await;
    let rss_before = pid.and_then(HubProcs::rss_bytes);
    let pss_before = pid.and_then(HubProcs::pss_bytes);
    let tcp_before = procfs::tcp_socket_mem_bytes();
    let channels = Arc::new(channel_names(plan.channels));
    let stop = CancellationToken::new();
    let (drain_tx, drain_rx) = watch::channel(None);
    let controls = Controls {
        stop: stop.clone(),
        drain: drain_rx,
    };

    // Ramp: paced spawns, then wait (bounded) for every `subscribed`.
    ctx.set_phase("ramp");
    let overflows_before = procfs::listen_overflows();
    let ramp_start = Instant::now();
    let ramp_rate = plan.ramp_rate.max(1.0);
    let mut handles: Vec<JoinHandle<SubOutcome>> = Vec::with_capacity(plan.clients);
    let mut notifies: Vec<Arc<Notify>> = Vec::with_capacity(plan.clients);
    let mut interrupted = false;
    for i in 0..plan.clients {
        let at = ramp_start + Duration::from_secs_f64(i as f64 / ramp_rate);
        if at > Instant::now() {
            tokio::select! {
                _ = ctx.interrupted.cancelled() => { interrupted = true; break; }
                _ = tokio::time::sleep_until(at) => {}
            }
        }
        let notify = Arc::new(Notify::new());
        notifies.push(notify.clone());
        let spec = SubSpec {
            id: i,
            channel: channels[i % channels.len()].clone(),
            transport: plan.transport.pick(i),
            on_hub_close: plan.on_hub_close,
            reconnect: notify,
        };
        handles.push(tokio::spawn(run_subscriber(
            ctx.clone(),
            spec,
            controls.clone(),
        )));
    }
    let ramp_deadline = ramp_start
        + Duration::from_secs_f64(plan.clients as f64 / ramp_rate)
        + Duration::from_secs(30);
    let mut last_subscribed_at = Instant::now();
    let mut seen = 0;
    loop {
        let subscribed = ctx.counters.subscribed.load(Ordering::Relaxed);
        if subscribed != seen {
            seen = subscribed;
            last_subscribed_at = Instant::now();
        }
        let finished = handles.iter().filter(|h| h.is_finished()).count();
        if subscribed + finished >= handles.len() || Instant::now() >= ramp_deadline || interrupted
        {
            break;
        }
        if sleep_or_interrupt(&ctx, Duration::from_millis(20)).await {
            interrupted = true;
        }
    }
    let ramp_secs = last_subscribed_at
        .duration_since(ramp_start)
        .as_secs_f64()
        .max(1e-3);
    let subscribed = ctx.counters.subscribed.load(Ordering::Relaxed);
    let ramp = RampFigures {
        wanted: plan.clients,
        subscribed,
        connect_failures: Counters::get(&ctx.counters.connect_failures),
        seconds: ramp_secs,
        connects_per_s: subscribed as f64 / ramp_secs,
        listen_overflows: match (overflows_before, procfs::listen_overflows()) {
            (Some(b), Some(a)) => Some(a.saturating_sub(b)),
            _ => None,
        },
    };
    // Let the hub settle its allocations before reading memory.
    sleep_or_interrupt(&ctx, Duration::from_millis(500)).await;
    let rss_after_ramp = pid.and_then(HubProcs::rss_bytes);
    let pss_after_ramp = pid.and_then(HubProcs::pss_bytes);
    let tcp_after_ramp = procfs::tcp_socket_mem_bytes();

    // Slow clients join after the healthy ones are in.
    let mut slow_done: Vec<oneshot::Sender<()>> = Vec::new();
    let mut slow_handles: Vec<JoinHandle<SlowOutcome>> = Vec::new();
    let spawn_slow = |n: usize,
                      slow_done: &mut Vec<oneshot::Sender<()>>,
                      slow_handles: &mut Vec<JoinHandle<SlowOutcome>>| {
        for _ in 0..n {
            let k = slow_handles.len();
            let (tx, rx) = oneshot::channel();
            slow_done.push(tx);
            let source = ctx.target.source_for(ctx.spread.next());
            slow_handles.push(tokio::spawn(run_slow(
                ctx.clone(),
                channels[k % channels.len()].clone(),
                source,
                plan.slow_recv_buffer,
                rx,
            )));
        }
    };
    if plan.slow > 0 && !interrupted {
        ctx.set_phase("slow-join");
        spawn_slow(plan.slow, &mut slow_done, &mut slow_handles);
        let deadline = Instant::now() + Duration::from_secs(30);
        while slow_handles.iter().any(|h| !h.is_finished())
            && (ctx.counters.active.load(Ordering::Relaxed) as usize) < subscribed + plan.slow
            && Instant::now() < deadline
        {
            if sleep_or_interrupt(&ctx, Duration::from_millis(20)).await {
                interrupted = true;
                break;
            }
        }
    }

    // Measured phase.
    ctx.set_phase(if plan.publish.is_some() {
        "publish"
    } else {
        "hold"
    });
    ctx.latency.reset();
    let closes_before = Counters::get(&ctx.counters.hub_closes);
    let deliveries_before = Counters::get(&ctx.counters.deliveries);
    let cpu_before = pid.and_then(HubProcs::cpu_seconds);
    let own_cpu_before = procfs::cpu_seconds(std::process::id());
    let machine_before = procfs::machine_cpu_ticks();
    let loadavg_before = procfs::loadavg();
    ctx.publish_rtt.reset();
    let measure_start = Instant::now();
    let publish_stop = CancellationToken::new();
    let publish_task = plan.publish.map(|p| {
        let plan = PublishPlan {
            channels: channels.clone(),
            rate: p.rate,
            publishers: p.publishers,
            size: p.size,
            duration: plan.duration,
        };
        tokio::spawn(publisher::run(ctx.clone(), plan, publish_stop.clone()))
    });
    let mut storm = None;
    let measure_end = measure_start + plan.duration;
    let mut next_churn = measure_start;
    let mut next_slow = plan.slow_every.map(|(every, _)| measure_start + every);
    // Bounded: one step per 10 ms tick at most, for the measured duration.
    while Instant::now() < measure_end && !interrupted {
        let now = Instant::now();
        if let Some(at) = plan.storm_at {
            if storm.is_none() && now >= measure_start + at {
                storm = Some(run_storm(&ctx, &handles, &notifies, &mut interrupted).await);
                ctx.set_phase("publish");
                continue;
            }
        }
        if plan.churn_per_s > 0.0 && now >= next_churn && !notifies.is_empty() {
            let k = rand::rng().random_range(0..notifies.len());
            notifies[k].notify_one();
            next_churn += Duration::from_secs_f64(1.0 / plan.churn_per_s);
        }
        if let (Some(at), Some((every, batch))) = (next_slow, plan.slow_every) {
            if now >= at {
                spawn_slow(batch, &mut slow_done, &mut slow_handles);
                next_slow = Some(at + every);
            }
        }
        if sleep_or_interrupt(&ctx, Duration::from_millis(10)).await {
            interrupted = true;
        }
    }
    if interrupted {
        publish_stop.cancel();
    }
    if let Some(t) = publish_task {
        // Publishers stop on their own at the deadline; a stuck request has its own timeout.
        let _ = t.await;
    }
    let measured_seconds = measure_start.elapsed().as_secs_f64();
    let cpu_after = pid.and_then(HubProcs::cpu_seconds);
    let hub_closes_during_run = Counters::get(&ctx.counters.hub_closes) - closes_before;

    // Drain: every subscriber stops once it has its channel's last accepted offset.
    ctx.set_phase("drain");
    let _ = drain_tx.send(Some(Arc::new(ctx.ledger.final_offsets())));
    let drain_deadline = Instant::now() + plan.drain_timeout;
    while handles.iter().any(|h| !h.is_finished())
        && Instant::now() < drain_deadline
        && !interrupted
    {
        if sleep_or_interrupt(&ctx, Duration::from_millis(20)).await {
            interrupted = true;
        }
    }
    let cpu_after_drain = pid.and_then(HubProcs::cpu_seconds);
    let machine = MachineFigures {
        loadavg_before,
        loadavg_after: procfs::loadavg(),
        busy_percent: procfs::busy_percent(machine_before, procfs::machine_cpu_ticks()),
        loadtest_cpu_seconds: match (own_cpu_before, procfs::cpu_seconds(std::process::id())) {
            (Some(b), Some(a)) => Some(a - b),
            _ => None,
        },
    };
    let deliveries = Counters::get(&ctx.counters.deliveries) - deliveries_before;
    stop.cancel();
    let latency = Percentiles::of(&ctx.latency.total());

    let ledger = ctx.ledger.snapshot();
    let mut tally = Tally::default();
    let mut tally_by_transport: BTreeMap<String, Tally> = BTreeMap::new();
    let empty = RangeSet::new();
    for h in handles {
        let Ok(outcome) = h.await else { continue };
        let accepted = ledger
            .get(&outcome.channel)
            .map(|c| &c.accepted)
            .unwrap_or(&empty);
        let t = outcome.tracker.tally(accepted, outcome.complete);
        tally.add(&t);
        let key = match outcome.transport {
            Transport::Lp => "lp",
            _ => "ws",
        };
        tally_by_transport
            .entry(key.to_owned())
            .or_default()
            .add(&t);
    }

    // Slow clients read what waits for them to learn how they ended.
    ctx.set_phase("finish");
    for tx in slow_done {
        let _ = tx.send(());
    }
    let mut slow = SlowFigures {
        wanted: slow_handles.len(),
        ..SlowFigures::default()
    };
    for h in slow_handles {
        let Ok(o) = h.await else { continue };
        slow.add(&o);
    }

    let hub_peak_rss = pid.and_then(HubProcs::peak_rss_bytes);
    let rss_end = pid.and_then(HubProcs::rss_bytes);
    let hub_stats_after = ctx.hub_stats().await;
    let samples = monitor.finish().await;
    let per_conn = |after: Option<u64>, before: Option<u64>| match (after, before) {
        (Some(a), Some(b)) if subscribed > 0 => Some((a as f64 - b as f64) / subscribed as f64),
        _ => None,
    };
    let hub_cpu_seconds = match (cpu_before, cpu_after_drain.or(cpu_after)) {
        (Some(b), Some(a)) => Some(a - b),
        _ => None,
    };
    let publishes_accepted = ctx.ledger.accepted_total();
    Ok(Outcome {
        ramp,
        memory: MemoryFigures {
            hub_rss_before: rss_before,
            hub_rss_after_ramp: rss_after_ramp,
            hub_rss_end: rss_end,
            hub_peak_rss,
            hub_rss_per_connection: per_conn(rss_after_ramp, rss_before),
            hub_pss_before: pss_before,
            hub_pss_after_ramp: pss_after_ramp,
            hub_pss_per_connection: per_conn(pss_after_ramp, pss_before),
            tcp_mem_before: tcp_before,
            tcp_mem_after_ramp: tcp_after_ramp,
            tcp_mem_per_connection: per_conn(tcp_after_ramp, tcp_before),
        },
        measured_seconds,
        publishes_accepted,
        publish_errors: Counters::get(&ctx.counters.publish_errors),
        publish_rejected: Counters::get(&ctx.counters.publish_rejected),
        publish_pushback: Counters::get(&ctx.counters.publish_pushback),
        publishes_per_s: publishes_accepted as f64 / measured_seconds.max(1e-3),
        hub_enqueued: ctx.ledger.enqueued(),
        deliveries,
        deliveries_per_s: deliveries as f64 / measured_seconds.max(1e-3),
        latency,
        publish_rtt: Percentiles::of(&ctx.publish_rtt.total()),
        machine,
        hub_cpu_seconds,
        hub_cpu_us_per_delivery: hub_cpu_seconds
            .filter(|_| deliveries > 0)
            .map(|s| s * 1e6 / deliveries as f64),
        tally,
        tally_by_transport,
        hub_closes_during_run,
        close_reasons: ctx.counters.close_reasons(),
        reconnects: Counters::get(&ctx.counters.reconnects),
        errors: ctx.counters.errors(),
        slow,
        storm,
        hub_stats_before,
        hub_stats_after,
        interrupted,
        samples,
    })
}

/// Drops every subscriber at once and waits (bounded) until all have subscribed again.
async fn run_storm(
    ctx: &Ctx,
    handles: &[JoinHandle<SubOutcome>],
    notifies: &[Arc<Notify>],
    interrupted: &mut bool,
) -> StormFigures {
    ctx.set_phase("storm");
    let live: Vec<usize> = (0..handles.len())
        .filter(|&i| !handles[i].is_finished())
        .collect();
    ctx.counters.resubscribed.store(0, Ordering::Relaxed);
    let start = Instant::now();
    for &i in &live {
        notifies[i].notify_one();
    }
    let deadline = start + Duration::from_secs(60);
    let mut all_back_ms = None;
    loop {
        let back = ctx.counters.resubscribed.load(Ordering::Relaxed);
        if back >= live.len() {
            all_back_ms = Some(start.elapsed().as_secs_f64() * 1000.0);
            break;
        }
        if Instant::now() >= deadline {
            break;
        }
        if sleep_or_interrupt(ctx, Duration::from_millis(2)).await {
            *interrupted = true;
            break;
        }
    }
    StormFigures {
        dropped: live.len(),
        back: ctx
            .counters
            .resubscribed
            .load(Ordering::Relaxed)
            .min(live.len()),
        all_back_ms,
    }
}
