//! The measure phase: publishing (or holding) for the plan's duration, with the storm, churn
//! and slow batches on schedule, and the counters read at its start and end.

use std::sync::atomic::Ordering;
use std::time::Duration;

use rand::Rng;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::Run;
use crate::ctx::Counters;
use crate::presence::Phase;
use crate::procfs;
use crate::publisher::{self, PublishPlan};
use crate::scenario::figures::StormFigures;

/// Counters and clocks read as the measured phase starts, to subtract at its end.
pub(super) struct MeasureStart {
    pub(super) at: Instant,
    pub(super) hub_closes: u64,
    pub(super) deliveries: u64,
    pub(super) hub_cpu: Option<procfs::CpuTimes>,
    pub(super) own_cpu: Option<f64>,
    /// `/proc/stat` ticks, for the machine's busy share.
    pub(super) machine_ticks: Option<(u64, u64)>,
    pub(super) loadavg: Option<f64>,
}

pub(super) struct Measured {
    pub(super) start: MeasureStart,
    pub(super) seconds: f64,
    pub(super) hub_cpu_after: Option<procfs::CpuTimes>,
    pub(super) hub_closes: u64,
    pub(super) storm: Option<StormFigures>,
}

impl Run<'_> {
    /// Measure: publish (or hold) for the plan's duration while the storm, churn and slow
    /// batches happen on schedule.
    pub(super) async fn measure(&mut self) -> Measured {
        let ctx = self.ctx.clone();
        ctx.set_phase(if self.plan.publish.is_some() {
            "publish"
        } else {
            "hold"
        });
        ctx.latency.reset();
        ctx.publish_rtt.reset();
        let hub = ctx.hub_procs.as_ref();
        let start = MeasureStart {
            hub_closes: Counters::get(&ctx.counters.hub_closes),
            deliveries: Counters::get(&ctx.counters.deliveries),
            hub_cpu: hub.and_then(procfs::HubProcs::cpu_times),
            own_cpu: procfs::cpu_seconds(std::process::id()),
            machine_ticks: procfs::machine_cpu_ticks(),
            loadavg: procfs::loadavg(),
            at: Instant::now(),
        };
        let publish_stop = CancellationToken::new();
        let publishing = self.plan.publish.map(|p| {
            let plan = PublishPlan {
                channels: self.channels.clone(),
                rate: p.rate,
                publishers: p.publishers,
                size: p.size,
                duration: self.plan.duration,
            };
            tokio::spawn(publisher::run(ctx.clone(), plan, publish_stop.clone()))
        });
        let storm = self.events(start.at).await;
        if self.interrupted {
            publish_stop.cancel();
        }
        if let Some(t) = publishing {
            // Publishers stop on their own at the deadline; a stuck request has its own timeout.
            let _ = t.await;
        }
        Measured {
            seconds: start.at.elapsed().as_secs_f64(),
            hub_cpu_after: hub.and_then(procfs::HubProcs::cpu_times),
            hub_closes: Counters::get(&ctx.counters.hub_closes) - start.hub_closes,
            storm,
            start,
        }
    }

    /// The measured phase's schedule: the storm, churn, slow batches. Returns the storm's
    /// figures when there was one.
    async fn events(&mut self, start: Instant) -> Option<StormFigures> {
        let plan = self.plan;
        let mut storm = None;
        let end = start + plan.duration;
        let mut next_churn = start;
        let mut next_slow = plan.slow_every.map(|(every, _)| start + every);
        // Bounded: one step per 10 ms tick at most, for the measured duration.
        while Instant::now() < end && !self.interrupted {
            let now = Instant::now();
            if let Some(at) = plan.storm_at {
                if storm.is_none() && now >= start + at {
                    let st = self.storm().await;
                    let seconds = st.all_back_ms.map_or(60.0, |ms| ms / 1000.0);
                    self.presence_settle(Phase::Storm, seconds).await;
                    storm = Some(st);
                    self.ctx.set_phase(if plan.publish.is_some() {
                        "publish"
                    } else {
                        "hold"
                    });
                    continue;
                }
            }
            if plan.churn_per_s > 0.0 && now >= next_churn && !self.subscribers.is_empty() {
                let k = rand::rng().random_range(0..self.subscribers.len());
                self.subscribers.reconnect(k);
                next_churn += Duration::from_secs_f64(1.0 / plan.churn_per_s);
            }
            if let (Some(at), Some((every, batch))) = (next_slow, plan.slow_every) {
                if now >= at {
                    let ctx = self.ctx.clone();
                    self.slow
                        .spawn(&ctx, &self.channels, plan.slow_recv_buffer, batch);
                    next_slow = Some(at + every);
                }
            }
            self.tick(Duration::from_millis(10)).await;
        }
        storm
    }

    /// Drops every subscriber at once and waits (bounded) until all have subscribed again.
    async fn storm(&mut self) -> StormFigures {
        let ctx = self.ctx.clone();
        ctx.set_phase("storm");
        let live = self.subscribers.running();
        ctx.counters.resubscribed.store(0, Ordering::Relaxed);
        self.presence_storm_begins();
        let start = Instant::now();
        for &i in &live {
            self.subscribers.reconnect(i);
        }
        let deadline = start + Duration::from_secs(60);
        let mut all_back_ms = None;
        loop {
            let back = ctx.counters.resubscribed.load(Ordering::Relaxed);
            if back >= live.len() {
                all_back_ms = Some(start.elapsed().as_secs_f64() * 1000.0);
                break;
            }
            if Instant::now() >= deadline || self.tick(Duration::from_millis(2)).await {
                break;
            }
        }
        let back = ctx.counters.resubscribed.load(Ordering::Relaxed);
        StormFigures {
            dropped: live.len(),
            back: back.min(live.len()),
            all_back_ms,
        }
    }
}
