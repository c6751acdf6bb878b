//! What one engine run measured (`Outcome`, the JSON `result` of most scenarios) and the
//! pieces it is made of. Field names are the JSON schema the HTML report and scripts read.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::accounting::Tally;
use crate::client::slow::SlowOutcome;
use crate::client::Ending;
use crate::latency::Percentiles;
use crate::monitor::Sample;
use crate::presence::{ListingCheck, PhaseTally};
use crate::procfs::{self, HubProcs};

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

/// The hub's memory and the kernel's socket memory at one moment.
#[derive(Debug, Clone, Copy)]
pub struct MemoryReading {
    pub rss: Option<u64>,
    pub pss: Option<u64>,
    pub tcp: Option<u64>,
}

impl MemoryReading {
    pub fn now(hub: Option<&HubProcs>) -> Self {
        Self {
            rss: hub.and_then(HubProcs::rss_bytes),
            pss: hub.and_then(HubProcs::pss_bytes),
            tcp: procfs::tcp_socket_mem_bytes(),
        }
    }
}

impl MemoryFigures {
    /// Before and after the ramp (what each subscribed client cost), and the hub at the end.
    pub fn new(
        before: MemoryReading,
        after_ramp: MemoryReading,
        subscribed: usize,
        hub: Option<&HubProcs>,
    ) -> Self {
        let per_connection = |after: Option<u64>, before: Option<u64>| match (after, before) {
            (Some(a), Some(b)) if subscribed > 0 => Some((a as f64 - b as f64) / subscribed as f64),
            _ => None,
        };
        Self {
            hub_rss_before: before.rss,
            hub_rss_after_ramp: after_ramp.rss,
            hub_peak_rss: hub.and_then(HubProcs::peak_rss_bytes),
            hub_rss_end: hub.and_then(HubProcs::rss_bytes),
            hub_rss_per_connection: per_connection(after_ramp.rss, before.rss),
            hub_pss_before: before.pss,
            hub_pss_after_ramp: after_ramp.pss,
            hub_pss_per_connection: per_connection(after_ramp.pss, before.pss),
            tcp_mem_before: before.tcp,
            tcp_mem_after_ramp: after_ramp.tcp,
            tcp_mem_per_connection: per_connection(after_ramp.tcp, before.tcp),
        }
    }
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
    pub fn add(&mut self, o: &SlowOutcome) {
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

/// One phase of a presence run (the joins, or the storm): how long it took, the hub's CPU,
/// what the members received and what the hub listed once it was over.
#[derive(Debug, Clone, Serialize)]
pub struct PresencePhase {
    /// From the phase's first connect (or drop) until the last member was subscribed again.
    pub seconds: f64,
    /// Flush windows that span covers, plus the one flushing its end: the most
    /// `presence_diff` frames a member may get in the phase.
    pub windows: u64,
    /// From the phase's start until the last `presence_diff` of the phase was read (the hub
    /// was quiet for two windows after it).
    pub settled_seconds: f64,
    /// The hub's utime + stime from the phase's start until it settled.
    pub hub_cpu_seconds: Option<f64>,
    /// Connections the hub ended during the phase (each a leave and, on its resume, a join
    /// more than the phase's own).
    pub hub_closes: u64,
    /// Distinct members announced as joining / leaving (to anyone) in the phase.
    pub announced_joins: usize,
    pub announced_leaves: usize,
    /// The largest `presence_diff` a WebSocket member read in the phase (bytes; 0 when only
    /// long-poll members read them).
    pub largest_frame_bytes: u64,
    pub received: PhaseTally,
    pub listing: ListingCheck,
}

impl PresencePhase {
    /// Windows spanned by `seconds` of joins and leaves, plus the flush of the last.
    pub fn windows_for(seconds: f64, batch_ms: f64) -> u64 {
        (seconds * 1000.0 / batch_ms.max(1e-3)).ceil() as u64 + 1
    }
}

/// A presence run: the room, the window, both phases, and frames that came when nobody came
/// or went.
#[derive(Debug, Clone, Serialize)]
pub struct PresenceFigures {
    pub channel: String,
    pub batch_ms: f64,
    pub members: u64,
    pub join: PresencePhase,
    /// `None` when the storm did not happen.
    pub storm: Option<PresencePhase>,
    /// `presence_diff` frames per member while nobody joined or left (expected: none).
    pub quiet: PhaseTally,
    /// Subscriptions whose own join never reached them (or not first).
    pub own_join_missing: u64,
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
    /// The kernel's share (`stime`) of `hub_cpu_seconds`, 0–1: on loopback it includes the
    /// receivers' TCP work that the hub's sends run (see `procfs::CpuTimes`). Read from
    /// clock ticks (10 ms each): about ±1 % over a 20 s run at 25 % of a core.
    pub hub_cpu_kernel_share: Option<f64>,
    pub tally: Tally,
    pub tally_by_transport: BTreeMap<String, Tally>,
    /// Connections the hub ended during the measured phase (healthy clients).
    pub hub_closes_during_run: u64,
    pub close_reasons: BTreeMap<String, u64>,
    pub reconnects: u64,
    /// Long-poll responses with a batch over the whole run, and the frames they carried.
    pub lp_responses: u64,
    pub lp_frames: u64,
    pub errors: BTreeMap<String, u64>,
    /// Of `errors`, those no other figure shows (not connect or publish failures).
    #[serde(skip)]
    pub client_errors: u64,
    pub slow: SlowFigures,
    pub storm: Option<StormFigures>,
    pub presence: Option<PresenceFigures>,
    pub hub_stats_before: Option<serde_json::Value>,
    pub hub_stats_after: Option<serde_json::Value>,
    pub interrupted: bool,
    #[serde(skip)]
    pub samples: Vec<Sample>,
}

/// `after − before` when both were read.
pub fn delta(before: Option<f64>, after: Option<f64>) -> Option<f64> {
    match (before, after) {
        (Some(b), Some(a)) => Some(a - b),
        _ => None,
    }
}
