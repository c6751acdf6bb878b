//! Subscribers: one task per simulated client, on either transport. A subscriber keeps one
//! `Tracker` across reconnects, so whatever the hub loses or repeats during a resume shows up
//! in its tally.

pub mod ending;
pub mod lp;
pub mod slow;
pub mod ws;

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::sync::{watch, Notify};
use tokio_util::sync::CancellationToken;

use crate::accounting::Tracker;
use crate::ctx::{Counters, Ctx};
use crate::frame::ServerFrame;
pub use ending::Ending;

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
    /// The connection failed (I/O, protocol).
    Failed(String),
}

/// Opens a session's connection unless the run stops first, and counts the outcome: a
/// failure (with its kind), or a connect and one more active client.
async fn open_session<T, E: std::fmt::Display>(
    ctx: &Ctx,
    controls: &Controls,
    what: &str,
    connect: impl std::future::Future<Output = Result<T, E>>,
) -> Result<T, SessionEnd> {
    let opened = tokio::select! {
        _ = controls.stop.cancelled() => return Err(SessionEnd::Stopped),
        r = connect => r,
    };
    match opened {
        Ok(session) => {
            ctx.counters.opened();
            Ok(session)
        }
        Err(e) => {
            Counters::inc(&ctx.counters.connect_failures);
            Err(SessionEnd::Failed(crate::ctx::error_kind(what, &e)))
        }
    }
}

/// What a subscriber hands back at the end.
pub struct SubOutcome {
    pub channel: String,
    pub transport: Transport,
    pub tracker: Tracker,
    /// Stayed to the end: owed every accepted offset of its channel.
    pub complete: bool,
}

/// The per-frame work shared by both transports. Returns `Some(end)` when the frame ends the
/// session (long-poll `disconnect`).
pub(crate) fn handle_frame(
    ctx: &Ctx,
    spec: &SubSpec,
    tracker: &mut Tracker,
    first_subscription: &mut bool,
    frame: &ServerFrame<'_>,
    now_us: u64,
) -> Option<SessionEnd> {
    match frame.kind.as_ref() {
        "message" => {
            if let Some(offset) = frame.offset {
                tracker.observe(offset);
            }
            if let Some(t) = frame.data.as_ref().and_then(|d| d.t) {
                ctx.latency.record(spec.id, now_us.saturating_sub(t));
            }
            Counters::inc(&ctx.counters.deliveries);
        }
        "subscribed" => {
            if let (Some(epoch), Some(offset)) = (frame.epoch.as_deref(), frame.offset) {
                tracker.subscribed(epoch, offset);
            }
            if *first_subscription {
                *first_subscription = false;
                ctx.counters.subscribed.fetch_add(1, Ordering::Relaxed);
            } else {
                ctx.counters.resubscribed.fetch_add(1, Ordering::Relaxed);
            }
        }
        "missed" => {
            let since = frame
                .since
                .as_ref()
                .and_then(|s| s.offset)
                .unwrap_or(tracker.last);
            let first = frame.first_available.unwrap_or(since + 1);
            tracker.missed(since, first);
        }
        "disconnect" => return Some(SessionEnd::HubClosed(Ending::from_disconnect(frame))),
        "error" => {
            Counters::inc(&ctx.counters.protocol_errors);
            ctx.counters.error("hub error frame");
        }
        _ => {}
    }
    None
}

/// Whether `tracker` has reached its channel's final offset (after publishing stopped).
pub(crate) fn drained(
    drain: &watch::Receiver<Option<Arc<HashMap<String, u64>>>>,
    channel: &str,
    tracker: &Tracker,
) -> bool {
    match &*drain.borrow() {
        None => false,
        Some(finals) => finals.get(channel).is_none_or(|&last| tracker.last >= last),
    }
}

/// Runs one subscriber until stopped, drained or out of attempts.
pub async fn run_subscriber(ctx: Arc<Ctx>, spec: SubSpec, controls: Controls) -> SubOutcome {
    let transport = spec.transport;
    let mut tracker = Tracker::new();
    let mut first_subscription = true;
    let mut failures = 0u32;
    let source = ctx.target.source_for(ctx.spread.next());
    let complete = loop {
        if controls.stop.is_cancelled() {
            break true;
        }
        let end = match transport {
            Transport::Lp => {
                lp::session(
                    &ctx,
                    &spec,
                    &controls,
                    source,
                    &mut tracker,
                    &mut first_subscription,
                )
                .await
            }
            _ => {
                ws::session(
                    &ctx,
                    &spec,
                    &controls,
                    source,
                    &mut tracker,
                    &mut first_subscription,
                )
                .await
            }
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
            SessionEnd::Failed(kind) => {
                failures += 1;
                ctx.counters.error(&kind);
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
    SubOutcome {
        channel: spec.channel,
        transport,
        tracker,
        complete,
    }
}
