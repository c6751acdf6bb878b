//! Per-connection rate limits on what a client sends, whichever transport carries it: every
//! frame; `subscribe` frames that ask for a catch-up (`since`), each of which can make the hub
//! send a whole channel's history for a few bytes; and `publish` frames, each of which the hub
//! fans out to every subscriber. A frame past a limit is refused (`rate_limited`) and not
//! handled; a client that goes on past its limits is closed (`DisconnectReason::RateLimited`).
//!
//! The limiters are governor's GCRA, keyed by `ClientId` and shared by all connections, rather
//! than a limiter per connection: a client that sent nothing lately costs nothing (not even a
//! pointer in its task), and one that did costs one 16-byte map entry (`ClientId` and an
//! `AtomicU64`) per limit it touched. An entry whose allowance has refilled completely is
//! exactly a fresh one, so sweeping it out loses nothing; the sweep runs every
//! `SWEEP_EVERY` checks, which bounds the maps by the clients active since the last sweep.
//! `ClientId`s are never reused, so a departed client's entry can wrong nobody meanwhile.

use std::fmt;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use governor::middleware::NoOpMiddleware;
use governor::nanos::Nanos;
use governor::state::keyed::DashMapStateStore;
use governor::{Quota, RateLimiter};

use crate::hub::ClientId;

use super::clock::TokioClock;

/// Refusals a client may earn at once before it is closed as `rate_limited`...
const REFUSALS_ALLOWED: NonZeroU32 = nonzero(100);

/// ...and how many of them are forgiven per second. A client that overshoots briefly (a burst
/// of 300 frames against the default 200) or steadily by a little (110 frames/s against 100)
/// is only refused; one that goes on at twice its limit is closed within about a second.
const REFUSALS_FORGIVEN_PER_SECOND: NonZeroU32 = nonzero(10);

const fn nonzero(n: u32) -> NonZeroU32 {
    match NonZeroU32::new(n) {
        Some(n) => n,
        None => panic!("zero"),
    }
}

/// Checks between two sweeps of entries whose allowance has refilled (see the module docs).
const SWEEP_EVERY: u32 = 4096;

/// A sustained rate per second and the burst allowed on top of it; `per_second: 0` turns the
/// limit off.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rate {
    pub per_second: u32,
    pub burst: u32,
}

impl Rate {
    pub const OFF: Rate = Rate {
        per_second: 0,
        burst: 0,
    };

    pub(super) fn quota(self) -> Option<Quota> {
        let per_second = NonZeroU32::new(self.per_second)?;
        let burst = NonZeroU32::new(self.burst).unwrap_or(per_second);
        Some(Quota::per_second(per_second).allow_burst(burst))
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} per second (bursts of {})",
            self.per_second, self.burst
        )
    }
}

/// The per-connection limits, validated by `crate::config::Config`.
#[derive(Clone, Copy, Debug)]
pub struct RateConfig {
    /// Every client frame (a long-poll `/lp/send` array counts each of its frames).
    pub frames: Rate,
    /// `subscribe` frames with `since`.
    pub resubscribes: Rate,
    /// `publish` frames.
    pub publishes: Rate,
}

impl RateConfig {
    pub const OFF: RateConfig = RateConfig {
        frames: Rate::OFF,
        resubscribes: Rate::OFF,
        publishes: Rate::OFF,
    };
}

/// What a frame counts against besides the limit on all frames.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameKind {
    /// A `subscribe` with `since`: it may replay a channel's whole history.
    Resubscribe,
    Publish,
    Other,
}

/// The limit that refused a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Limit {
    Frames,
    Resubscribes,
    Publishes,
}

/// A refused frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Refusal {
    pub limit: Limit,
    pub rate: Rate,
    /// The client went on past its limits for too long: close it.
    pub persistent: bool,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.limit {
            Limit::Frames => "frames",
            Limit::Resubscribes => "subscribes with `since`",
            Limit::Publishes => "publishes",
        };
        write!(
            f,
            "more than {} {what}: this frame was not handled; slow down",
            self.rate
        )
    }
}

type Limiter =
    RateLimiter<ClientId, DashMapStateStore<ClientId>, TokioClock, NoOpMiddleware<Nanos>>;

/// The per-connection limiters of a server; cheap to clone.
#[derive(Clone)]
pub struct FrameLimits {
    inner: Arc<Inner>,
}

struct Inner {
    config: RateConfig,
    frames: Option<Limiter>,
    resubscribes: Option<Limiter>,
    publishes: Option<Limiter>,
    refusals: Limiter,
    checks: AtomicU32,
}

impl FrameLimits {
    /// Builds the limiters; call it in the runtime whose clock they should follow.
    pub fn new(config: RateConfig) -> Self {
        let limiter = |rate: Rate| {
            rate.quota()
                .map(|quota| Limiter::dashmap_with_clock(quota, TokioClock::new()))
        };
        let refusals =
            Quota::per_second(REFUSALS_FORGIVEN_PER_SECOND).allow_burst(REFUSALS_ALLOWED);
        Self {
            inner: Arc::new(Inner {
                config,
                frames: limiter(config.frames),
                resubscribes: limiter(config.resubscribes),
                publishes: limiter(config.publishes),
                refusals: Limiter::dashmap_with_clock(refusals, TokioClock::new()),
                checks: AtomicU32::new(0),
            }),
        }
    }

    /// Counts one frame of `kind` from `client`; `Err` when a limit refuses it.
    pub fn check(&self, client: ClientId, kind: FrameKind) -> Result<(), Refusal> {
        let inner = &*self.inner;
        inner.sweep_now_and_then();
        let refused = if !allows(inner.frames.as_ref(), client) {
            Some(Limit::Frames)
        } else {
            match kind {
                FrameKind::Resubscribe if !allows(inner.resubscribes.as_ref(), client) => {
                    Some(Limit::Resubscribes)
                }
                FrameKind::Publish if !allows(inner.publishes.as_ref(), client) => {
                    Some(Limit::Publishes)
                }
                _ => None,
            }
        };
        let Some(limit) = refused else {
            return Ok(());
        };
        let rate = match limit {
            Limit::Frames => inner.config.frames,
            Limit::Resubscribes => inner.config.resubscribes,
            Limit::Publishes => inner.config.publishes,
        };
        Err(Refusal {
            limit,
            rate,
            persistent: inner.refusals.check_key(&client).is_err(),
        })
    }

    /// Clients with an entry in any limiter (for tests and figures).
    pub fn tracked(&self) -> usize {
        self.inner.limiters().map(Limiter::len).sum()
    }
}

fn allows(limiter: Option<&Limiter>, client: ClientId) -> bool {
    limiter.is_none_or(|l| l.check_key(&client).is_ok())
}

impl Inner {
    fn limiters(&self) -> impl Iterator<Item = &Limiter> {
        [&self.frames, &self.resubscribes, &self.publishes]
            .into_iter()
            .flatten()
            .chain(std::iter::once(&self.refusals))
    }

    fn sweep_now_and_then(&self) {
        if self.checks.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            for limiter in self.limiters() {
                limiter.retain_recent();
                limiter.shrink_to_fit();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn limits() -> FrameLimits {
        FrameLimits::new(RateConfig {
            frames: Rate {
                per_second: 100,
                burst: 200,
            },
            resubscribes: Rate {
                per_second: 10,
                burst: 64,
            },
            publishes: Rate {
                per_second: 20,
                burst: 40,
            },
        })
    }

    fn count_allowed(limits: &FrameLimits, client: ClientId, kind: FrameKind, n: u32) -> u32 {
        (0..n)
            .filter(|_| limits.check(client, kind).is_ok())
            .count() as u32
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_then_the_rate_and_each_client_on_its_own() {
        let limits = limits();
        let (a, b) = (ClientId(1), ClientId(2));
        assert_eq!(count_allowed(&limits, a, FrameKind::Other, 250), 200);
        assert_eq!(count_allowed(&limits, b, FrameKind::Other, 10), 10);
        tokio::time::advance(Duration::from_millis(500)).await;
        assert_eq!(count_allowed(&limits, a, FrameKind::Other, 100), 50);
        assert_eq!(
            count_allowed(&limits, a, FrameKind::Publish, 1),
            0,
            "all frames count"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn resubscribes_and_publishes_have_their_own_stricter_limits() {
        let limits = limits();
        let client = ClientId(1);
        assert_eq!(
            count_allowed(&limits, client, FrameKind::Resubscribe, 100),
            64
        );
        let refusal = limits.check(client, FrameKind::Resubscribe).unwrap_err();
        assert_eq!(refusal.limit, Limit::Resubscribes);
        assert_eq!(count_allowed(&limits, client, FrameKind::Publish, 50), 40);
        assert_eq!(count_allowed(&limits, client, FrameKind::Other, 10), 10);
    }

    #[tokio::test(start_paused = true)]
    async fn going_on_past_the_limit_is_persistent() {
        let limits = limits();
        let client = ClientId(1);
        assert_eq!(count_allowed(&limits, client, FrameKind::Other, 200), 200);
        for _ in 0..REFUSALS_ALLOWED.get() {
            assert!(
                !limits
                    .check(client, FrameKind::Other)
                    .unwrap_err()
                    .persistent
            );
        }
        assert!(
            limits
                .check(client, FrameKind::Other)
                .unwrap_err()
                .persistent
        );
    }

    #[tokio::test(start_paused = true)]
    async fn clients_at_rest_are_forgotten() {
        let limits = limits();
        for id in 0..100 {
            limits.check(ClientId(id), FrameKind::Publish).unwrap();
        }
        assert_eq!(limits.tracked(), 200, "frames and publishes of 100 clients");
        tokio::time::advance(Duration::from_secs(3)).await;
        for _ in 0..SWEEP_EVERY {
            limits.check(ClientId(1000), FrameKind::Other).ok();
        }
        assert!(limits.tracked() <= 2, "{} entries left", limits.tracked());
    }
}
