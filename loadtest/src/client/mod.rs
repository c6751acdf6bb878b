//! Subscribers: one task per simulated client, on either transport. A subscriber keeps one
//! `Tracker` across reconnects, so whatever the hub loses or repeats during a resume shows up
//! in its tally.
//!
//! - `subscriber` — what every subscriber does (wait, take in frames, count); `ws` and `lp` —
//!   the transports' connect, read and close; `http1` — a long-poll client's own connection.
//! - `ending` — how a connection ended (close code, reason, EOF …).
//! - `slow` — clients that subscribe and never read.
//! - `probe` — reads a channel's presence (`presence_stats`, every page of `presence`).

pub mod ending;
mod http1;
pub mod lp;
pub mod probe;
pub mod slow;
mod subscriber;
pub mod ws;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::sync::{watch, Notify};
use tokio_util::sync::CancellationToken;

use crate::accounting::Tracker;
use crate::ctx::{Counters, Ctx, ErrorClass};
use crate::presence::PresenceCounts;
pub use ending::Ending;
use subscriber::Subscriber;

/// Reconnect attempts after a failure before a subscriber gives up.
const MAX_CONNECT_ATTEMPTS: u32 = 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    Ws,
    Lp,
    /// Alternate WebSocket and long-poll clients.
    Mix,
}

impl Transport {
    /// The concrete transport of the `n`th client.
    pub fn pick(self, n: usize) -> Transport {
        match self {
            Transport::Mix if n % 2 == 0 => Transport::Ws,
            Transport::Mix => Transport::Lp,
            t => t,
        }
    }
}

/// What a subscriber does when the hub ends its connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnHubClose {
    /// Resume from the last offset, as a real client would.
    Reconnect,
    /// Stay down (the idle scenario counts who was dropped).
    GiveUp,
}

/// Signals shared by every subscriber of a run.
#[derive(Clone)]
pub struct Controls {
    /// Stop now (end of run or Ctrl-C).
    pub stop: CancellationToken,
    /// Final accepted offset per channel once publishing ended: a subscriber that has
    /// reached its channel's offset is done.
    pub drain: watch::Receiver<Option<Arc<HashMap<String, u64>>>>,
}

pub struct SubSpec {
    pub id: usize,
    pub channel: String,
    pub transport: Transport,
    pub on_hub_close: OnHubClose,
    /// Subscribe with `join_leave` (a presence channel) and count the `presence_diff` frames.
    pub join_leave: bool,
    /// Notified to drop the connection and reconnect with resume (storm, churn).
    pub reconnect: Arc<Notify>,
}

/// Why one connection of a subscriber ended.
#[derive(Debug)]
pub enum SessionEnd {
    Stopped,
    Drained,
    /// Asked to drop and reconnect.
    Reconnect,
    /// The hub (or the network) ended it.
    HubClosed(Ending),
    /// The connection failed (I/O, protocol; connecting, or later), with the error's kind.
    Failed(ErrorClass, String),
}

/// What a subscriber hands back at the end.
pub struct SubOutcome {
    pub channel: String,
    pub transport: Transport,
    pub tracker: Tracker,
    /// `presence_diff` frames received, per phase (all zero without `join_leave`).
    pub presence: PresenceCounts,
    /// Stayed to the end: owed every accepted offset of its channel.
    pub complete: bool,
}

/// Runs one subscriber until stopped, drained or out of attempts.
pub async fn run_subscriber(ctx: Arc<Ctx>, spec: SubSpec, controls: Controls) -> SubOutcome {
    let mut sub = Subscriber::new(&ctx, &spec, &controls);
    let mut failures = 0u32;
    let complete = loop {
        if controls.stop.is_cancelled() {
            break true;
        }
        let end = match spec.transport {
            Transport::Lp => lp::session(&mut sub).await,
            _ => ws::session(&mut sub).await,
        };
        match end {
            SessionEnd::Stopped | SessionEnd::Drained => break true,
            SessionEnd::Reconnect => {
                Counters::inc(&ctx.counters.reconnects);
            }
            SessionEnd::HubClosed(ending) => {
                ctx.counters.hub_closed(&ending);
                if spec.on_hub_close == OnHubClose::GiveUp {
                    break false;
                }
                Counters::inc(&ctx.counters.reconnects);
            }
            SessionEnd::Failed(class, kind) => {
                failures += 1;
                ctx.counters.error_of(class, &kind);
                if failures >= MAX_CONNECT_ATTEMPTS || spec.on_hub_close == OnHubClose::GiveUp {
                    break false;
                }
                // Back off a little (bounded) so a refusing hub is not hammered.
                let backoff = Duration::from_millis(50 * u64::from(failures.min(20)));
                tokio::select! {
                    _ = controls.stop.cancelled() => break true,
                    _ = tokio::time::sleep(backoff) => {}
                }
                Counters::inc(&ctx.counters.reconnects);
            }
        }
    };
    let (tracker, mut presence) = sub.into_received();
    if complete {
        presence.finish();
    }
    SubOutcome {
        channel: spec.channel,
        transport: spec.transport,
        tracker,
        presence,
        complete,
    }
}
