//! A run's client tasks as the engine sees them: the subscribers (with the signal that makes
//! each drop and resume) and the slow clients (with the signal that makes each read at last),
//! and what they hand back at the end.

use std::collections::BTreeMap;
use std::sync::Arc;

use tokio::sync::{oneshot, Notify};
use tokio::task::JoinHandle;

use super::figures::SlowFigures;
use crate::accounting::{Ledger, RangeSet, Tally};
use crate::client::slow::{run_slow, SlowOutcome};
use crate::client::{run_subscriber, Controls, SubOutcome, SubSpec, Transport};
use crate::ctx::Ctx;
use crate::presence::PresenceTally;

/// What the subscribers received, summed.
#[derive(Default)]
pub struct Tallies {
    pub messages: Tally,
    pub by_transport: BTreeMap<String, Tally>,
    pub presence: PresenceTally,
}

#[derive(Default)]
pub struct Subscribers {
    handles: Vec<JoinHandle<SubOutcome>>,
    /// Notified to drop the connection and resume (storm, churn); one per subscriber.
    reconnect: Vec<Arc<Notify>>,
}

impl Subscribers {
    pub fn with_capacity(n: usize) -> Self {
        Self {
            handles: Vec::with_capacity(n),
            reconnect: Vec::with_capacity(n),
        }
    }

    pub fn spawn(&mut self, ctx: &Arc<Ctx>, spec: SubSpec, controls: &Controls) {
        self.reconnect.push(spec.reconnect.clone());
        self.handles.push(tokio::spawn(run_subscriber(
            ctx.clone(),
            spec,
            controls.clone(),
        )));
    }

    pub fn len(&self) -> usize {
        self.handles.len()
    }

    pub fn is_empty(&self) -> bool {
        self.handles.is_empty()
    }

    pub fn finished(&self) -> usize {
        self.handles.iter().filter(|h| h.is_finished()).count()
    }

    pub fn any_running(&self) -> bool {
        self.handles.iter().any(|h| !h.is_finished())
    }

    /// Indices of the subscribers still running.
    pub fn running(&self) -> Vec<usize> {
        (0..self.handles.len())
            .filter(|&i| !self.handles[i].is_finished())
            .collect()
    }

    /// Makes subscriber `i` drop its connection and resume.
    pub fn reconnect(&self, i: usize) {
        self.reconnect[i].notify_one();
    }

    /// Waits for every subscriber and tallies what each received: messages against the
    /// ledger (in all, and by transport), and presence frames.
    pub async fn tally(self, ledger: &Ledger) -> Tallies {
        let ledger = ledger.snapshot();
        let mut tallies = Tallies::default();
        let empty = RangeSet::new();
        for h in self.handles {
            let Ok(outcome) = h.await else { continue };
            let accepted = ledger
                .get(&outcome.channel)
                .map(|c| &c.accepted)
                .unwrap_or(&empty);
            let t = outcome.tracker.tally(accepted, outcome.complete);
            tallies.messages.add(&t);
            let key = match outcome.transport {
                Transport::Lp => "lp",
                _ => "ws",
            };
            tallies
                .by_transport
                .entry(key.to_owned())
                .or_default()
                .add(&t);
            tallies.presence.add(&outcome.presence);
        }
        tallies
    }
}

/// Slow clients: each holds its connection unread until its `done` sender fires.
#[derive(Default)]
pub struct SlowClients {
    done: Vec<oneshot::Sender<()>>,
    handles: Vec<JoinHandle<SlowOutcome>>,
}

impl SlowClients {
    /// Connects `n` more slow clients, spread over the channels like the subscribers.
    pub fn spawn(&mut self, ctx: &Arc<Ctx>, channels: &[String], recv_buffer: u32, n: usize) {
        for _ in 0..n {
            let k = self.handles.len();
            let (tx, rx) = oneshot::channel();
            self.done.push(tx);
            let source = ctx.target.source_for(ctx.spread.next());
            self.handles.push(tokio::spawn(run_slow(
                ctx.clone(),
                channels[k % channels.len()].clone(),
                source,
                recv_buffer,
                rx,
            )));
        }
    }

    pub fn any_running(&self) -> bool {
        self.handles.iter().any(|h| !h.is_finished())
    }

    /// Lets every slow client read what waits for it, to learn how it ended, and counts.
    pub async fn finish(self) -> SlowFigures {
        for tx in self.done {
            let _ = tx.send(());
        }
        let mut slow = SlowFigures {
            wanted: self.handles.len(),
            ..SlowFigures::default()
        };
        for h in self.handles {
            let Ok(o) = h.await else { continue };
            slow.add(&o);
        }
        slow
    }
}
