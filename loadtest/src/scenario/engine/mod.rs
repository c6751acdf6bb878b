//! One engine under every scenario, run in phases: connect (ramp up the subscribers), warm up
//! (let the hub settle, read its memory, add slow clients; a presence run lists the members),
//! measure (publish or hold, with a storm, churn or slow clients joining), drain (subscribers
//! catch up) and report (account for every message). Every wait is bounded and also ends on
//! Ctrl-C.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{watch, Notify};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

mod measure;
mod presence;

use measure::{MeasureStart, Measured};
use presence::PresenceRun;

use super::clients::{SlowClients, Subscribers};
use super::figures::{delta, MachineFigures, MemoryFigures, MemoryReading, Outcome, RampFigures};
use super::plan::Plan;
use crate::client::{Controls, SubSpec};
use crate::ctx::{Counters, Ctx};
use crate::latency::Percentiles;
use crate::monitor::{Monitor, ProgressMode};
use crate::presence::Phase;
use crate::procfs;

/// Runs `plan` on `ctx` and measures it.
pub async fn run(
    ctx: Arc<Ctx>,
    plan: &Plan,
    progress: ProgressMode,
    interval: Duration,
) -> Outcome {
    let monitor = Monitor::start(ctx.clone(), interval, progress);
    let mut run = Run::start(ctx, plan).await;
    let ramp = run.connect().await;
    let after_ramp = run.warm_up(ramp.subscribed).await;
    run.presence_settle(Phase::Join, ramp.seconds).await;
    let measured = run.measure().await;
    let drained = run.drain(&measured.start).await;
    run.report(
        Phases {
            ramp,
            after_ramp,
            measured,
            drained,
        },
        monitor,
    )
    .await
}

/// A run under way: its clients, the signals they share, and whether Ctrl-C cut it short.
struct Run<'a> {
    ctx: Arc<Ctx>,
    plan: &'a Plan,
    channels: Arc<Vec<String>>,
    controls: Controls,
    /// Tells subscribers the final offsets once publishing ended (the drain).
    drain: watch::Sender<Option<Arc<HashMap<String, u64>>>>,
    subscribers: Subscribers,
    slow: SlowClients,
    interrupted: bool,
    hub_stats_before: Option<serde_json::Value>,
    memory_before: MemoryReading,
    /// A presence run's phases as they settle.
    presence: Option<PresenceRun>,
}

/// What the phases before the report measured.
struct Phases {
    ramp: RampFigures,
    after_ramp: MemoryReading,
    measured: Measured,
    drained: Drained,
}

struct Drained {
    hub_cpu_after: Option<procfs::CpuTimes>,
    machine: MachineFigures,
    deliveries: u64,
    latency: Percentiles,
}

/// A unique channel prefix per run, so history left by earlier runs never mixes in.
/// `prefix` puts the channels under a pattern (`chat:` keeps presence by default).
fn channel_names(prefix: &str, count: usize) -> Vec<String> {
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    let pid = std::process::id();
    (0..count.max(1))
        .map(|i| format!("{prefix}lt-{stamp}-{pid}-{i}"))
        .collect()
}

/// Sleeps, or returns early (true) on Ctrl-C.
async fn sleep_or_interrupt(ctx: &Ctx, d: Duration) -> bool {
    tokio::select! {
        _ = ctx.interrupted.cancelled() => true,
        _ = tokio::time::sleep(d) => false,
    }
}

impl<'a> Run<'a> {
    /// Reads the hub before anything connects.
    async fn start(ctx: Arc<Ctx>, plan: &'a Plan) -> Self {
        let hub_stats_before = ctx.hub_stats().await;
        let memory_before = MemoryReading::now(ctx.hub_procs.as_ref());
        let (drain, drain_rx) = watch::channel(None);
        let presence = plan.presence.map(|p| {
            let cpu = ctx
                .hub_procs
                .as_ref()
                .and_then(procfs::HubProcs::cpu_seconds);
            PresenceRun::start(p.batch, cpu)
        });
        let prefix = if presence.is_some() { "chat:" } else { "" };
        Self {
            channels: Arc::new(channel_names(prefix, plan.channels)),
            controls: Controls {
                stop: CancellationToken::new(),
                drain: drain_rx,
            },
            drain,
            subscribers: Subscribers::with_capacity(plan.clients),
            slow: SlowClients::default(),
            interrupted: false,
            hub_stats_before,
            memory_before,
            presence,
            ctx,
            plan,
        }
    }

    /// Sleeps for one tick of a polling loop; true (and the run marked interrupted) on Ctrl-C.
    async fn tick(&mut self, d: Duration) -> bool {
        let interrupted = sleep_or_interrupt(&self.ctx, d).await;
        self.interrupted |= interrupted;
        interrupted
    }

    /// Connect: paced spawns, then wait (bounded) for every `subscribed`.
    async fn connect(&mut self) -> RampFigures {
        let ctx = self.ctx.clone();
        ctx.set_phase("ramp");
        let overflows_before = procfs::listen_overflows();
        let start = Instant::now();
        let ramp_rate = self.plan.ramp_rate.max(1.0);
        for i in 0..self.plan.clients {
            let at = start + Duration::from_secs_f64(i as f64 / ramp_rate);
            if at > Instant::now() {
                tokio::select! {
                    _ = ctx.interrupted.cancelled() => { self.interrupted = true; break; }
                    _ = tokio::time::sleep_until(at) => {}
                }
            }
            let spec = SubSpec {
                id: i,
                channel: self.channels[i % self.channels.len()].clone(),
                transport: self.plan.transport.pick(i),
                on_hub_close: self.plan.on_hub_close,
                join_leave: self.plan.presence.is_some(),
                reconnect: Arc::new(Notify::new()),
            };
            self.subscribers.spawn(&ctx, spec, &self.controls);
        }
        let deadline = start
            + Duration::from_secs_f64(self.plan.clients as f64 / ramp_rate)
            + Duration::from_secs(30);
        let mut last_subscribed_at = Instant::now();
        let mut seen = 0;
        loop {
            let subscribed = ctx.counters.subscribed.load(Ordering::Relaxed);
            if subscribed != seen {
                seen = subscribed;
                last_subscribed_at = Instant::now();
            }
            if subscribed + self.subscribers.finished() >= self.subscribers.len()
                || Instant::now() >= deadline
                || self.interrupted
            {
                break;
            }
            self.tick(Duration::from_millis(20)).await;
        }
        let seconds = last_subscribed_at
            .duration_since(start)
            .as_secs_f64()
            .max(1e-3);
        let subscribed = ctx.counters.subscribed.load(Ordering::Relaxed);
        RampFigures {
            wanted: self.plan.clients,
            subscribed,
            connect_failures: Counters::get(&ctx.counters.connect_failures),
            seconds,
            connects_per_s: subscribed as f64 / seconds,
            listen_overflows: match (overflows_before, procfs::listen_overflows()) {
                (Some(b), Some(a)) => Some(a.saturating_sub(b)),
                _ => None,
            },
        }
    }

    /// Warm-up: the hub settles, its memory is read, then the slow clients join (after the
    /// healthy ones are in, so the memory per connection is theirs alone).
    async fn warm_up(&mut self, subscribed: usize) -> MemoryReading {
        let ctx = self.ctx.clone();
        // Let the hub settle its allocations before reading memory.
        sleep_or_interrupt(&ctx, Duration::from_millis(500)).await;
        let after_ramp = MemoryReading::now(ctx.hub_procs.as_ref());
        if self.plan.slow > 0 && !self.interrupted {
            ctx.set_phase("slow-join");
            let (buffer, n) = (self.plan.slow_recv_buffer, self.plan.slow);
            self.slow.spawn(&ctx, &self.channels, buffer, n);
            let deadline = Instant::now() + Duration::from_secs(30);
            while self.slow.any_running()
                && (ctx.counters.active.load(Ordering::Relaxed) as usize) < subscribed + n
                && Instant::now() < deadline
            {
                if self.tick(Duration::from_millis(20)).await {
                    break;
                }
            }
        }
        after_ramp
    }

    /// Drain: every subscriber stops once it has its channel's last accepted offset.
    async fn drain(&mut self, start: &MeasureStart) -> Drained {
        let ctx = self.ctx.clone();
        ctx.set_phase("drain");
        let _ = self.drain.send(Some(Arc::new(ctx.ledger.final_offsets())));
        let deadline = Instant::now() + self.plan.drain_timeout;
        while self.subscribers.any_running() && Instant::now() < deadline && !self.interrupted {
            self.tick(Duration::from_millis(20)).await;
        }
        let hub_cpu_after = ctx.hub_procs.as_ref().and_then(procfs::HubProcs::cpu_times);
        let machine = MachineFigures {
            loadavg_before: start.loadavg,
            loadavg_after: procfs::loadavg(),
            busy_percent: procfs::busy_percent(start.machine_ticks, procfs::machine_cpu_ticks()),
            loadtest_cpu_seconds: delta(start.own_cpu, procfs::cpu_seconds(std::process::id())),
        };
        let deliveries = Counters::get(&ctx.counters.deliveries) - start.deliveries;
        self.controls.stop.cancel();
        Drained {
            hub_cpu_after,
            machine,
            deliveries,
            latency: Percentiles::of(&ctx.latency.total()),
        }
    }

    /// Report: tally every subscriber against the ledger, let the slow clients learn how they
    /// ended, read the hub once more.
    async fn report(self, phases: Phases, monitor: Monitor) -> Outcome {
        let ctx = self.ctx;
        let tallies = self.subscribers.tally(&ctx.ledger).await;
        let presence = self
            .presence
            .map(|p| p.figures(&self.channels[0], &tallies.presence));
        ctx.set_phase("finish");
        let slow = self.slow.finish().await;
        let Phases {
            ramp,
            after_ramp,
            measured,
            drained,
        } = phases;
        let memory = MemoryFigures::new(
            self.memory_before,
            after_ramp,
            ramp.subscribed,
            ctx.hub_procs.as_ref(),
        );
        let hub_stats_after = ctx.hub_stats().await;
        let samples = monitor.finish().await;
        let hub_cpu = match (
            measured.start.hub_cpu,
            drained.hub_cpu_after.or(measured.hub_cpu_after),
        ) {
            (Some(before), Some(after)) => Some(after.since(before)),
            _ => None,
        };
        let hub_cpu_seconds = hub_cpu.map(procfs::CpuTimes::total);
        let seconds = measured.seconds;
        let deliveries = drained.deliveries;
        let publishes_accepted = ctx.ledger.accepted_total();
        Outcome {
            ramp,
            memory,
            measured_seconds: seconds,
            publishes_accepted,
            publish_errors: Counters::get(&ctx.counters.publish_errors),
            publish_rejected: Counters::get(&ctx.counters.publish_rejected),
            publish_pushback: Counters::get(&ctx.counters.publish_pushback),
            publishes_per_s: publishes_accepted as f64 / seconds.max(1e-3),
            hub_enqueued: ctx.ledger.enqueued(),
            deliveries,
            deliveries_per_s: deliveries as f64 / seconds.max(1e-3),
            latency: drained.latency,
            publish_rtt: Percentiles::of(&ctx.publish_rtt.total()),
            machine: drained.machine,
            hub_cpu_seconds,
            hub_cpu_us_per_delivery: hub_cpu_seconds
                .filter(|_| deliveries > 0)
                .map(|s| s * 1e6 / deliveries as f64),
            hub_cpu_kernel_share: hub_cpu
                .filter(|cpu| cpu.total() > 0.0)
                .map(|cpu| cpu.kernel / cpu.total()),
            tally: tallies.messages,
            tally_by_transport: tallies.by_transport,
            hub_closes_during_run: measured.hub_closes,
            close_reasons: ctx.counters.close_reasons(),
            reconnects: Counters::get(&ctx.counters.reconnects),
            lp_responses: Counters::get(&ctx.counters.lp_polls),
            lp_frames: Counters::get(&ctx.counters.lp_frames),
            errors: ctx.counters.errors(),
            client_errors: ctx.counters.client_errors(),
            slow,
            storm: measured.storm,
            presence,
            hub_stats_before: self.hub_stats_before,
            hub_stats_after,
            interrupted: self.interrupted,
            samples,
        }
    }
}
