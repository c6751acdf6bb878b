//! Presence runs: each phase (the joins, the storm) starts with the hub's CPU read; once the
//! last member is subscribed, the engine waits until the hub has gone quiet (no
//! `presence_diff` for two flush windows, and every client in the room: one the hub closed
//! meanwhile is back; bounded), reads the CPU again and has a probe list the room's members,
//! checked against the live clients.

use std::collections::HashSet;
use std::time::Duration;

use tokio::time::Instant;

use super::Run;
use crate::client::probe;
use crate::ctx::Counters;
use crate::presence::{ListingCheck, Phase, PresenceTally};
use crate::procfs;
use crate::scenario::figures::{PresenceFigures, PresencePhase};

/// The longest wait for the hub to go quiet after a phase.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(60);

/// A presence run as it goes.
pub(super) struct PresenceRun {
    batch: Duration,
    phase_start: Instant,
    cpu_at_phase_start: Option<f64>,
    hub_closes_at_phase_start: u64,
    /// The members listed after the joins: after the storm none of them may be left.
    members_after_joins: Option<HashSet<u64>>,
    join: Option<Settled>,
    storm: Option<Settled>,
}

/// One phase, over.
struct Settled {
    seconds: f64,
    settled_seconds: f64,
    hub_cpu_seconds: Option<f64>,
    hub_closes: u64,
    announced_joins: usize,
    announced_leaves: usize,
    largest_frame_bytes: u64,
    listing: ListingCheck,
}

impl PresenceRun {
    /// The join phase starts now (before the ramp).
    pub(super) fn start(batch: Duration, hub_cpu: Option<f64>) -> Self {
        Self {
            batch,
            phase_start: Instant::now(),
            cpu_at_phase_start: hub_cpu,
            hub_closes_at_phase_start: 0,
            members_after_joins: None,
            join: None,
            storm: None,
        }
    }

    /// The run's figures: each phase with what the members received in it.
    pub(super) fn figures(self, channel: &str, tally: &PresenceTally) -> PresenceFigures {
        let batch_ms = self.batch.as_secs_f64() * 1000.0;
        let phase = |s: Settled, p: Phase| PresencePhase {
            seconds: s.seconds,
            windows: PresencePhase::windows_for(s.seconds, batch_ms),
            settled_seconds: s.settled_seconds,
            hub_cpu_seconds: s.hub_cpu_seconds,
            hub_closes: s.hub_closes,
            announced_joins: s.announced_joins,
            announced_leaves: s.announced_leaves,
            largest_frame_bytes: s.largest_frame_bytes,
            received: *tally.phase(p),
            listing: s.listing,
        };
        let join = self.join.map(|s| phase(s, Phase::Join));
        PresenceFigures {
            channel: channel.to_owned(),
            batch_ms,
            members: tally.members,
            join: join.unwrap_or_else(|| PresencePhase {
                seconds: 0.0,
                windows: 0,
                settled_seconds: 0.0,
                hub_cpu_seconds: None,
                hub_closes: 0,
                announced_joins: 0,
                announced_leaves: 0,
                largest_frame_bytes: 0,
                received: *tally.phase(Phase::Join),
                listing: ListingCheck::failed(0, "the run ended before the joins settled".into()),
            }),
            storm: self.storm.map(|s| phase(s, Phase::Storm)),
            quiet: *tally.phase(Phase::Quiet),
            own_join_missing: tally.own_join_missing,
        }
    }
}

impl Run<'_> {
    /// The storm begins: `presence_diff` frames count as the storm's from now on.
    pub(super) fn presence_storm_begins(&mut self) {
        let cpu = self.hub_cpu();
        if let Some(p) = &mut self.presence {
            self.ctx.presence.set_phase(Phase::Storm);
            p.phase_start = Instant::now();
            p.cpu_at_phase_start = cpu;
            p.hub_closes_at_phase_start = Counters::get(&self.ctx.counters.hub_closes);
        }
    }

    /// The phase's members are all subscribed (after `seconds`): wait for the hub to go
    /// quiet, then list the room and check the listing. Nothing without presence.
    pub(super) async fn presence_settle(&mut self, phase: Phase, seconds: f64) {
        let Some(batch) = self.presence.as_ref().map(|p| p.batch) else {
            return;
        };
        let ctx = self.ctx.clone();
        ctx.set_phase(match phase {
            Phase::Join => "join-settle",
            _ => "storm-settle",
        });
        let quiet_for = batch * 2 + Duration::from_millis(100);
        let deadline = Instant::now() + SETTLE_TIMEOUT;
        let mut seen = ctx.presence.frames();
        let mut last_frame_at = Instant::now();
        let mut expected = self.subscribers.running().len();
        // Bounded: one step per 20 ms tick, for at most SETTLE_TIMEOUT.
        while (last_frame_at.elapsed() < quiet_for || ctx.presence.in_room() != expected)
            && Instant::now() < deadline
        {
            if self.tick(Duration::from_millis(20)).await {
                break;
            }
            let frames = ctx.presence.frames();
            if frames != seen {
                seen = frames;
                last_frame_at = Instant::now();
            }
            expected = self.subscribers.running().len();
        }
        let cpu = self.hub_cpu();
        let hub_closes = Counters::get(&ctx.counters.hub_closes);
        ctx.presence.set_phase(Phase::Quiet);
        let announced = ctx.presence.announced(phase);
        ctx.set_phase("presence-list");
        let listed = probe::read_presence(&ctx, &self.channels[0], expected).await;
        let Some(p) = &mut self.presence else { return };
        let before = match phase {
            Phase::Join => None,
            _ => p.members_after_joins.as_ref(),
        };
        let listing = match &listed {
            Ok(l) => ListingCheck::of(expected, l, &announced.joins, before),
            Err(e) => ListingCheck::failed(expected, format!("{e:#}")),
        };
        if phase == Phase::Join {
            p.members_after_joins = listed.ok().map(|l| l.members.into_iter().collect());
        }
        let settled = Settled {
            seconds,
            settled_seconds: ctx.presence.last_frame_at().map_or(0.0, |t| {
                t.saturating_duration_since(p.phase_start.into_std())
                    .as_secs_f64()
            }),
            hub_cpu_seconds: cpu.zip(p.cpu_at_phase_start).map(|(a, b)| a - b),
            hub_closes: hub_closes - p.hub_closes_at_phase_start,
            announced_joins: announced.joins.len(),
            announced_leaves: announced.leaves.len(),
            largest_frame_bytes: announced.largest_frame_bytes as u64,
            listing,
        };
        match phase {
            Phase::Join => p.join = Some(settled),
            _ => p.storm = Some(settled),
        }
    }

    fn hub_cpu(&self) -> Option<f64> {
        self.ctx
            .hub_procs
            .as_ref()
            .and_then(procfs::HubProcs::cpu_seconds)
    }
}
