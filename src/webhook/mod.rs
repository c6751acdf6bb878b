//! Webhooks: the hub tells the backend, over HTTP POST, when users come online and go
//! offline, when channels get their first subscriber or lose their last, and who joins and
//! leaves each channel. The contract is `docs/WEBHOOKS.md`.
//!
//! The shape follows the "Outbound calls" rules of the architecture: the hub's event sink
//! ([`Sink`]) only does a non-blocking push into a bounded queue (`--webhook-queue`), so no
//! client, publisher or lock ever waits for a backend. One dispatcher task
//! ([`deliver::dispatch`]) reads the queue, keeps the users' online state (with the offline
//! grace, `--webhook-offline-grace`, so a page reload is not an offline), and starts one
//! delivery task per event and URL under a semaphore (`--webhook-concurrency`). Each
//! delivery has a timeout per request and retries with exponential backoff and full jitter.
//! While every permit is taken the dispatcher waits, the queue fills, and the sink drops —
//! counted (`webhook_dropped`) and logged, never silent.
//!
//! - [`payload`] — the event kinds, their JSON bodies, and the HMAC-SHA256 signature.
//! - [`deliver`] — the dispatcher (users' online state, the semaphore), the shutdown drain;
//!   on a cluster node `deliver::cluster` asks Redis before announcing a user, so exactly one
//!   node does.
//! - `send` — one delivery: attempts with timeouts, retries with backoff and jitter, outcome.
//!
//! Plain `http://` only: reqwest is built without TLS, because with a rustls feature on,
//! feature unification would make every reqwest client of the workspace (tests, loadtest)
//! panic unless a crypto provider were installed first. A backend on another host sits
//! behind a local TLS-terminating proxy for now.

mod deliver;
pub mod payload;
mod send;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::hub::stats::WebhookCounters;
use crate::hub::{EventSink, Hub, HubEvent};

pub use payload::{EventKind, EventKinds};

/// Everything the webhooks need, from the flags (`Config::webhook_config`).
#[derive(Clone, Debug)]
pub struct WebhookConfig {
    pub urls: Vec<reqwest::Url>,
    pub kinds: EventKinds,
    /// Signs each body (HMAC-SHA256): `--webhook-secret`, else the first API key.
    pub secret: Vec<u8>,
    pub queue: usize,
    pub concurrency: usize,
    pub timeout: Duration,
    pub attempts: u32,
    pub backoff: Duration,
    pub backoff_max: Duration,
    pub offline_grace: Duration,
    /// How long shutdown lets queued and in-flight deliveries finish.
    pub shutdown_grace: Duration,
}

/// The running webhooks: stop them after the hub has disconnected every client.
pub struct Webhooks {
    stop: CancellationToken,
}

impl Webhooks {
    /// Installs the event sink on `hub` and starts the dispatcher on `tracker`. `None` if the
    /// hub already has a sink.
    pub fn start(config: WebhookConfig, hub: &Hub, tracker: &TaskTracker) -> Option<Self> {
        let counters = hub.stats().webhooks.clone();
        let (tx, rx) = mpsc::channel(config.queue);
        let sink = Arc::new(Sink {
            tx,
            kinds: config.kinds,
            urls: config.urls.len() as u64,
            dropped: counters.dropped.clone(),
            warn: RateLimitedWarn::default(),
        });
        if !hub.set_event_sink(sink) {
            tracing::warn!("webhooks not started: the hub already has an event sink");
            return None;
        }
        let stop = CancellationToken::new();
        tracker.spawn(deliver::dispatch(
            hub.cluster().cloned(),
            rx,
            Arc::new(config),
            counters,
            tracker.clone(),
            stop.clone(),
        ));
        Some(Self { stop })
    }

    /// Starts the shutdown drain: what is queued (and every user still waiting out its
    /// offline grace) is delivered within the shutdown grace; the rest is dropped and
    /// counted.
    pub fn stop(&self) {
        self.stop.cancel();
    }
}

/// The hub's side: keep only what some enabled webhook needs, push without waiting.
struct Sink {
    tx: mpsc::Sender<HubEvent>,
    kinds: EventKinds,
    urls: u64,
    dropped: Counter,
    warn: RateLimitedWarn,
}

impl Sink {
    fn wants(&self, event: &HubEvent) -> bool {
        let kinds = self.kinds;
        let presence = kinds.has(EventKind::UserOnline) || kinds.has(EventKind::UserOffline);
        match event {
            // Both moments feed the online state, whichever of the two kinds is wanted.
            HubEvent::Connected {
                user: Some(_),
                first_of_user: true,
                ..
            }
            | HubEvent::Disconnected {
                user: Some(_),
                last_of_user: true,
                ..
            } => presence,
            HubEvent::Connected { .. } | HubEvent::Disconnected { .. } => false,
            HubEvent::ClusterUser { .. } => presence,
            HubEvent::ChannelOccupied { .. } => kinds.has(EventKind::ChannelOccupied),
            HubEvent::ChannelVacated { .. } => kinds.has(EventKind::ChannelVacated),
            HubEvent::MemberAdded { .. } => kinds.has(EventKind::MemberAdded),
            HubEvent::MemberRemoved { .. } => kinds.has(EventKind::MemberRemoved),
        }
    }
}

impl EventSink for Sink {
    fn emit(&self, event: HubEvent) {
        if !self.wants(&event) {
            return;
        }
        if let Err(error) = self.tx.try_send(event) {
            // Full, or closed at shutdown: every URL misses this event.
            self.dropped.inc_by(self.urls);
            let why = match error {
                mpsc::error::TrySendError::Full(_) => "the webhook queue is full",
                mpsc::error::TrySendError::Closed(_) => "webhooks have shut down",
            };
            self.warn.warn(|suppressed| {
                tracing::warn!(
                    suppressed,
                    "webhook event dropped: {why} (see webhook_dropped)"
                )
            });
        }
    }
}

/// At most one warning per [`RateLimitedWarn::EVERY_MS`], with how many were left out: a
/// backend that is down must not flood the log.
#[derive(Default)]
pub(crate) struct RateLimitedWarn {
    last_ms: AtomicU64,
    suppressed: AtomicU64,
}

impl RateLimitedWarn {
    const EVERY_MS: u64 = 10_000;

    pub(crate) fn warn(&self, log: impl FnOnce(u64)) {
        let now = crate::auth::token::unix_now_ms();
        let last = self.last_ms.load(Ordering::Relaxed);
        if now.saturating_sub(last) >= Self::EVERY_MS
            && self
                .last_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            log(self.suppressed.swap(0, Ordering::Relaxed));
        } else {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The counters a delivery ends in (one each).
pub(crate) type Counters = WebhookCounters;
