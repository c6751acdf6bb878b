//! What a subscriber does whatever its transport: open a connection and count it, wait for
//! the next read unless the run ends the session first, and take in the frames (or, in generic
//! mode, the bodies) it reads. The transports (`ws`, `lp`) only connect, read and close.

use std::collections::HashMap;
use std::fmt::Display;
use std::future::Future;
use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::sync::watch;

use super::{Controls, Ending, SessionEnd, SubSpec};
use crate::accounting::Tracker;
use crate::ctx::{error_kind, Counters, Ctx, ErrorClass};
use crate::frame::{Member, ServerFrame};
use crate::presence::{looks_like_diff, member_key, PresenceCounts};

/// One subscriber across its connections. Its `Tracker` outlives every connection, so
/// whatever the hub loses or repeats during a resume shows up in its tally.
pub struct Subscriber<'a> {
    pub ctx: &'a Ctx,
    pub spec: &'a SubSpec,
    stop: &'a tokio_util::sync::CancellationToken,
    drain: watch::Receiver<Option<Arc<HashMap<String, u64>>>>,
    /// Every connection of this subscriber binds to this source address.
    pub source: IpAddr,
    pub tracker: Tracker,
    /// `presence_diff` frames and what they carried, per phase, across reconnects.
    presence: PresenceCounts,
    first_subscription: bool,
    /// A long-poll session this subscriber dropped without closing (storm, churn, a failed
    /// session): its close goes ahead of the next connect.
    pub lp_abandoned: Option<String>,
}

/// What a session waited for, unless the run ended the session first.
pub enum Wake<T> {
    Ready(T),
    End(SessionEnd),
    /// The drain's final offsets arrived: check whether this subscriber is done.
    DrainChanged,
}

impl<'a> Subscriber<'a> {
    pub fn new(ctx: &'a Ctx, spec: &'a SubSpec, controls: &'a Controls) -> Self {
        Self {
            ctx,
            spec,
            stop: &controls.stop,
            drain: controls.drain.clone(),
            source: ctx.target.source_for(ctx.spread.next()),
            tracker: Tracker::new(),
            presence: PresenceCounts::default(),
            first_subscription: true,
            lp_abandoned: None,
        }
    }

    /// What it received over all its connections: messages, and presence frames.
    pub fn into_received(self) -> (Tracker, PresenceCounts) {
        (self.tracker, self.presence)
    }

    /// A connection ended (either transport): one connection fewer, the client is out of
    /// the room, and a subscription still owed its own join is no longer owed it.
    pub fn disconnected(&mut self) {
        self.ctx.counters.closed();
        if self.presence.disconnected() {
            self.ctx.presence.room_changed(-1);
        }
    }

    /// Opens a connection unless the run stops first, and counts the outcome: a failure (with
    /// its kind), or a connect and one more open connection.
    pub async fn open<T, E: Display>(
        &self,
        what: &str,
        connect: impl Future<Output = Result<T, E>>,
    ) -> Result<T, SessionEnd> {
        let opened = tokio::select! {
            _ = self.stop.cancelled() => return Err(SessionEnd::Stopped),
            r = connect => r,
        };
        match opened {
            Ok(connection) => {
                self.ctx.counters.opened();
                Ok(connection)
            }
            Err(e) => {
                Counters::inc(&self.ctx.counters.connect_failures);
                Err(SessionEnd::Failed(
                    ErrorClass::Connect,
                    error_kind(what, &e),
                ))
            }
        }
    }

    /// Waits for `read` unless the run stops, a reconnect is asked for, or the subscriber has
    /// drained (it holds its channel's final offset).
    pub async fn next<T>(&mut self, read: impl Future<Output = T>) -> Wake<T> {
        if self.drained() {
            return Wake::End(SessionEnd::Drained);
        }
        tokio::select! {
            biased;
            _ = self.stop.cancelled() => Wake::End(SessionEnd::Stopped),
            _ = self.spec.reconnect.notified() => Wake::End(SessionEnd::Reconnect),
            r = self.drain.changed() => match r {
                Ok(()) => Wake::DrainChanged,
                Err(_) => Wake::End(SessionEnd::Stopped),
            },
            v = read => Wake::Ready(v),
        }
    }

    /// Whether the tracker has reached its channel's final offset (after publishing stopped).
    fn drained(&self) -> bool {
        match &*self.drain.borrow() {
            None => false,
            Some(finals) => finals
                .get(&self.spec.channel)
                .is_none_or(|&last| self.tracker.last >= last),
        }
    }

    /// The subscription is in place: at `position` (epoch, offset) when the hub said so. The
    /// first one fixes where the tracker's debt starts; later ones are resumes.
    pub fn subscribed(&mut self, position: Option<(&str, u64)>) {
        if let Some((epoch, offset)) = position {
            self.tracker.subscribed(epoch, offset);
        }
        if self.spec.join_leave && self.presence.subscribed() {
            self.ctx.presence.room_changed(1);
        }
        let counter = if std::mem::take(&mut self.first_subscription) {
            &self.ctx.counters.subscribed
        } else {
            &self.ctx.counters.resubscribed
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// One message received: its position (offset, or generic sequence number) and the time
    /// it was meant to be sent (µs on the shared clock).
    pub fn delivered(&mut self, position: Option<u64>, sent_us: Option<u64>, now_us: u64) {
        if let Some(position) = position {
            self.tracker.observe(position);
        }
        if let Some(t) = sent_us {
            self.ctx
                .latency
                .record(self.spec.id, now_us.saturating_sub(t));
        }
        Counters::inc(&self.ctx.counters.deliveries);
    }

    /// A crier frame as text (WebSocket). A `presence_diff` another member already parsed is
    /// counted by its text alone; anything else is parsed and taken by `frame`.
    pub fn text(&mut self, text: &str, now_us: u64) -> Option<SessionEnd> {
        if self.spec.join_leave && looks_like_diff(text) {
            if let Some((joins, leaves)) = self.ctx.presence.known(text) {
                self.presence.diff(self.ctx.presence.phase(), joins, leaves);
                return None;
            }
        }
        match serde_json::from_str::<ServerFrame>(text) {
            Ok(frame) if frame.kind == "presence_diff" => {
                self.presence_diff(&frame, Some(text));
                None
            }
            Ok(frame) => self.frame(&frame, now_us),
            Err(e) => {
                self.ctx
                    .counters
                    .protocol_error(&error_kind("bad frame", &e));
                None
            }
        }
    }

    /// A crier frame, on either transport. Returns `Some(end)` when the frame ends the session
    /// (long-poll `disconnect`).
    pub fn frame(&mut self, frame: &ServerFrame<'_>, now_us: u64) -> Option<SessionEnd> {
        match frame.kind.as_ref() {
            "message" => {
                let sent = frame.data.as_ref().and_then(|d| d.t);
                self.delivered(frame.offset, sent, now_us);
            }
            "subscribed" => {
                let position = frame.epoch.as_deref().zip(frame.offset);
                self.subscribed(position);
            }
            "missed" => {
                let since = frame
                    .since
                    .as_ref()
                    .and_then(|s| s.offset)
                    .unwrap_or(self.tracker.last);
                let first = frame.first_available.unwrap_or(since + 1);
                self.tracker.missed(since, first);
            }
            "presence_diff" => self.presence_diff(frame, None),
            "disconnect" => return Some(SessionEnd::HubClosed(Ending::from_disconnect(frame))),
            "error" => self.ctx.counters.protocol_error("hub error frame"),
            _ => {}
        }
        None
    }

    /// Counts a `presence_diff` in the run's current phase and hands its members (and its
    /// text, when the transport has it) to the run's ledger.
    fn presence_diff(&mut self, frame: &ServerFrame<'_>, text: Option<&str>) {
        let keys = |m: &Option<Vec<Member<'_>>>| -> Vec<u64> {
            m.iter().flatten().map(|m| member_key(&m.client)).collect()
        };
        let (joins, leaves) = (keys(&frame.joins), keys(&frame.leaves));
        let ledger = &self.ctx.presence;
        let phase = ledger.phase();
        self.presence.diff(phase, joins.len(), leaves.len());
        ledger.record(phase, &joins, &leaves, text);
    }
}
