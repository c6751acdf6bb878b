//! The state one run shares between its tasks: the target, HTTP clients, the clock, latency
//! histograms, the publish ledger and live counters. A cheap handle (`Arc`) to it goes to every
//! subscriber and publisher task.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Result;
use tokio_util::sync::CancellationToken;

use crate::accounting::Ledger;
use crate::client::ending::Ending;
use crate::latency::{Clock, LatencyRecorder};
use crate::presence::PresenceLedger;
use crate::procfs::HubProcs;
use crate::target::{Spread, Target};

/// Per-request timeout for publishes, stats and long-poll control calls.
pub const HTTP_TIMEOUT: Duration = Duration::from_secs(10);
/// TCP connect + WebSocket handshake timeout.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

pub struct Ctx {
    pub target: Target,
    /// Publishing and stats (long-poll clients have their own connections, `client::http1`).
    pub http: reqwest::Client,
    pub clock: Clock,
    pub latency: LatencyRecorder,
    /// Publish request round trips (request sent → reply read).
    pub publish_rtt: LatencyRecorder,
    pub ledger: Ledger,
    /// Presence runs: the phase, and the joins and leaves announced to anyone.
    pub presence: PresenceLedger,
    pub counters: Counters,
    /// Cancelled on Ctrl-C: every wait in a scenario also selects on it.
    pub interrupted: CancellationToken,
    /// The hub's processes, when given: memory and CPU are summed over them.
    pub hub_procs: Option<HubProcs>,
    pub spread: Spread,
    phase: Mutex<String>,
}

impl Ctx {
    pub fn new(
        target: Target,
        hub_procs: Option<HubProcs>,
        interrupted: CancellationToken,
    ) -> Result<Arc<Self>> {
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(HTTP_TIMEOUT)
            .pool_max_idle_per_host(256)
            .tcp_nodelay(true)
            .build()?;
        Ok(Arc::new(Self {
            target,
            http,
            clock: Clock::new(),
            latency: LatencyRecorder::new(),
            publish_rtt: LatencyRecorder::new(),
            ledger: Ledger::new(),
            presence: PresenceLedger::default(),
            counters: Counters::default(),
            interrupted,
            hub_procs,
            spread: Spread::default(),
            phase: Mutex::new(String::from("start")),
        }))
    }

    pub fn set_phase(&self, phase: &str) {
        *self.phase.lock().unwrap_or_else(|p| p.into_inner()) = phase.to_owned();
    }

    pub fn phase(&self) -> String {
        self.phase.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// `GET /api/stats`, if the hub answers it (crier only; nothing in generic mode).
    pub async fn hub_stats(&self) -> Option<serde_json::Value> {
        if self.target.is_generic() {
            return None;
        }
        let resp = self
            .http
            .get(self.target.http_url("/api/stats"))
            .send()
            .await
            .ok()?;
        if !resp.status().is_success() {
            return None;
        }
        serde_json::from_slice(&resp.bytes().await.ok()?).ok()
    }
}

/// Live counters, all relaxed atomics (read by the sampler, summed at the end).
#[derive(Default)]
pub struct Counters {
    /// Connections currently open (both transports; slow clients included).
    pub active: AtomicI64,
    pub connects: AtomicU64,
    pub connect_failures: AtomicU64,
    /// First `subscribed` frames received (clients ready).
    pub subscribed: AtomicUsize,
    /// `subscribed` frames received on a reconnect.
    pub resubscribed: AtomicUsize,
    pub reconnects: AtomicU64,
    pub deliveries: AtomicU64,
    pub publishes: AtomicU64,
    pub publish_errors: AtomicU64,
    /// Non-2xx publish replies other than back-pressure.
    pub publish_rejected: AtomicU64,
    /// `503 overloaded`: the hub's documented back-pressure (nothing was published).
    pub publish_pushback: AtomicU64,
    /// Frames that did not parse or `error` frames from the hub.
    pub protocol_errors: AtomicU64,
    /// Connections the hub ended (close frame, EOF or reset) that the tool did not end.
    pub hub_closes: AtomicU64,
    /// Long-poll responses read (`200`s with a batch), and the frames they carried.
    pub lp_polls: AtomicU64,
    pub lp_frames: AtomicU64,
    close_reasons: Mutex<BTreeMap<String, u64>>,
    errors: Mutex<BTreeMap<String, (ErrorClass, u64)>>,
}

impl Counters {
    pub fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    /// A client's connection opened: one more connect, one more open connection.
    pub fn opened(&self) {
        Self::inc(&self.connects);
        self.active.fetch_add(1, Ordering::Relaxed);
    }

    /// A client's connection is gone, however it ended.
    pub fn closed(&self) {
        self.active.fetch_sub(1, Ordering::Relaxed);
    }

    /// A frame or body that did not parse, or an `error` frame from the hub.
    pub fn protocol_error(&self, kind: &str) {
        Self::inc(&self.protocol_errors);
        self.error(kind);
    }

    /// A connection the hub ended, counted by its ending's label (`4000 slow`, `eof`).
    pub fn hub_closed(&self, ending: &Ending) {
        Self::inc(&self.hub_closes);
        *self
            .close_reasons
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(ending.to_string())
            .or_default() += 1;
    }

    /// A client-side error worth showing (a session that failed, a frame that did not
    /// parse), grouped by a short kind.
    pub fn error(&self, kind: &str) {
        self.error_of(ErrorClass::Client, kind);
    }

    /// An error worth showing, grouped by a short kind.
    pub fn error_of(&self, class: ErrorClass, kind: &str) {
        let mut map = self.errors.lock().unwrap_or_else(|p| p.into_inner());
        // Bounded: distinct kinds beyond 50 are folded together, as client-side errors.
        let (key, class) = if map.len() >= 50 && !map.contains_key(kind) {
            ("other", ErrorClass::Client)
        } else {
            (kind, class)
        };
        map.entry(key.to_owned()).or_insert((class, 0)).1 += 1;
    }

    pub fn close_reasons(&self) -> BTreeMap<String, u64> {
        self.close_reasons
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Every error kind and how often it happened.
    pub fn errors(&self) -> BTreeMap<String, u64> {
        let map = self.errors.lock().unwrap_or_else(|p| p.into_inner());
        map.iter().map(|(k, &(_, n))| (k.clone(), n)).collect()
    }

    /// Client-side errors: those no other counter (connect failures, failed publishes) shows.
    pub fn client_errors(&self) -> u64 {
        let map = self.errors.lock().unwrap_or_else(|p| p.into_inner());
        map.values()
            .filter(|(class, _)| *class == ErrorClass::Client)
            .map(|&(_, n)| n)
            .sum()
    }
}

/// Whose failure an error is. Connect and publish failures have counters (and problems) of
/// their own; every other error counts as a client-side error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    Connect,
    Publish,
    Client,
}

/// Shortens an error into a stable kind for grouping.
pub fn error_kind(prefix: &str, err: &dyn std::fmt::Display) -> String {
    let text = err.to_string();
    let short: String = text.chars().take(80).collect();
    format!("{prefix}: {short}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_classed_where_they_are_counted() {
        let c = Counters::default();
        c.error_of(ErrorClass::Connect, "ws connect: refused");
        c.error_of(ErrorClass::Publish, "publish: HTTP 500");
        c.error("bad frame: eof");
        c.error("bad frame: eof");
        assert_eq!(c.client_errors(), 2);
        assert_eq!(c.errors().values().sum::<u64>(), 4);
        assert_eq!(c.errors().get("bad frame: eof"), Some(&2));
        // Beyond 50 kinds, new ones fold into `other`, a client-side error.
        for i in 0..60 {
            c.error_of(ErrorClass::Connect, &format!("lp connect: {i}"));
        }
        assert_eq!(c.errors().len(), 51);
        assert_eq!(c.errors().get("other"), Some(&13));
        assert_eq!(c.client_errors(), 2 + 13);
    }
}
