//! Admission by source address: how many clients (WebSocket connections and long-poll
//! sessions) one address holds open, and how fast it opens new ones. Both WebSocket handshake
//! paths and `/lp/connect` ask here before the hub registers a client; a refusal is
//! `503 too_many_connections` with `Retry-After`, never a hub client.
//!
//! - An address is an IPv4 address or an IPv6 /64: one IPv6 host usually holds a whole /64, so
//!   counting single IPv6 addresses would limit nobody.
//! - Loopback peers are exempt unless `limit_loopback` is set: the loadtest, the benchmarks and
//!   the tests drive a default hub from 127.x with up to 19,000 clients, and behind a reverse
//!   proxy on the same host every client *is* loopback (limit per address at the proxy then).
//! - Opening rates are governor's GCRA keyed by address (the map forgets addresses whose
//!   allowance has refilled, every `SWEEP_EVERY` admissions). Open clients are a count per
//!   address, given back by the [`SourceSlot`] the client holds, wherever it ends.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use dashmap::DashMap;
use governor::middleware::NoOpMiddleware;
use governor::nanos::Nanos;
use governor::state::keyed::DashMapStateStore;
use governor::RateLimiter;

use super::clock::TokioClock;
use super::rate::Rate;

/// Admissions between two sweeps of addresses whose allowance has refilled.
const SWEEP_EVERY: u32 = 1024;

#[derive(Clone, Copy, Debug)]
pub struct AdmissionConfig {
    /// Clients one address may hold at once; 0 = no limit.
    pub max_per_source: usize,
    /// New clients per second from one address, with a burst; `per_second: 0` = no limit.
    pub accepts: Rate,
    /// Apply the limits to loopback peers too.
    pub limit_loopback: bool,
}

impl AdmissionConfig {
    pub const OFF: AdmissionConfig = AdmissionConfig {
        max_per_source: 0,
        accepts: Rate::OFF,
        limit_loopback: false,
    };
}

/// What the limits count as one source.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Source {
    V4(Ipv4Addr),
    /// The /64 prefix.
    V6(u64),
}

impl Source {
    fn of(ip: IpAddr, limit_loopback: bool) -> Option<Self> {
        // An IPv4 peer on a dual-stack socket arrives as ::ffff:a.b.c.d.
        let ip = ip.to_canonical();
        if ip.is_loopback() && !limit_loopback {
            return None;
        }
        Some(match ip {
            IpAddr::V4(v4) => Self::V4(v4),
            IpAddr::V6(v6) => Self::V6((v6.to_bits() >> 64) as u64),
        })
    }
}

/// Why an address may not open another client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    /// It holds `max` clients already.
    Open { max: usize },
    /// It opens them faster than `rate`.
    Accepts { rate: Rate },
}

impl std::error::Error for Refused {}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Open { max } => write!(
                f,
                "your address holds {max} connections already (--max-connections-per-ip); retry later"
            ),
            Self::Accepts { rate } => write!(
                f,
                "your address opens connections faster than {rate} (--accepts-per-ip-per-second); retry after a second"
            ),
        }
    }
}

type Limiter = RateLimiter<Source, DashMapStateStore<Source>, TokioClock, NoOpMiddleware<Nanos>>;

/// The per-address limits of a server; cheap to clone.
#[derive(Clone)]
pub struct Admission {
    inner: Arc<Inner>,
}

struct Inner {
    config: AdmissionConfig,
    open: DashMap<Source, u32>,
    accepts: Option<Limiter>,
    checks: AtomicU32,
}

/// A client's place in its address's count, given back when it is dropped: with the WebSocket
/// connection's task, or with the long-poll session.
pub struct SourceSlot {
    inner: Arc<Inner>,
    source: Source,
}

impl Drop for SourceSlot {
    fn drop(&mut self) {
        self.inner.open.remove_if_mut(&self.source, |_, open| {
            *open -= 1;
            *open == 0
        });
    }
}

impl Admission {
    /// Builds the limits; call it in the runtime whose clock they should follow.
    pub fn new(config: AdmissionConfig) -> Self {
        Self {
            inner: Arc::new(Inner {
                config,
                open: DashMap::new(),
                accepts: config
                    .accepts
                    .quota()
                    .map(|quota| Limiter::dashmap_with_clock(quota, TokioClock::new())),
                checks: AtomicU32::new(0),
            }),
        }
    }

    /// Admits one more client from `peer` (`None`: unknown, admitted). The slot, if any, must
    /// live as long as the client.
    pub fn admit(&self, peer: Option<IpAddr>) -> Result<Option<SourceSlot>, Refused> {
        let inner = &self.inner;
        let config = &inner.config;
        let Some(source) = peer.and_then(|ip| Source::of(ip, config.limit_loopback)) else {
            return Ok(None);
        };
        // The count first: an address at its ceiling, retrying, spends none of its opening
        // allowance (a refused slot is given back on return).
        let slot = if config.max_per_source > 0 {
            let mut open = inner.open.entry(source).or_insert(0);
            if *open as usize >= config.max_per_source {
                return Err(Refused::Open {
                    max: config.max_per_source,
                });
            }
            *open += 1;
            drop(open);
            Some(SourceSlot {
                inner: inner.clone(),
                source,
            })
        } else {
            None
        };
        if let Some(accepts) = &inner.accepts {
            if inner.checks.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
                accepts.retain_recent();
                accepts.shrink_to_fit();
            }
            if accepts.check_key(&source).is_err() {
                return Err(Refused::Accepts {
                    rate: config.accepts,
                });
            }
        }
        Ok(slot)
    }

    /// Clients counted against addresses right now (for tests).
    pub fn open(&self) -> usize {
        self.inner.open.iter().map(|e| *e.value() as usize).sum()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn limits(limit_loopback: bool) -> Admission {
        Admission::new(AdmissionConfig {
            max_per_source: 3,
            accepts: Rate {
                per_second: 1,
                burst: 5,
            },
            limit_loopback,
        })
    }

    #[tokio::test(start_paused = true)]
    async fn open_clients_and_opening_rate_per_address() {
        let admission = limits(false);
        let a = Some("192.0.2.1".parse().unwrap());
        let b = Some("192.0.2.2".parse().unwrap());
        let mut held: Vec<_> = (0..3).map(|_| admission.admit(a).unwrap()).collect();
        assert_eq!(
            admission.admit(a).err(),
            Some(Refused::Open { max: 3 }),
            "a fourth at once"
        );
        assert!(admission.admit(b).is_ok(), "another address is on its own");
        held.pop();
        assert!(
            admission.admit(a).is_ok(),
            "a slot given back is free again"
        );
        held.pop();
        assert!(matches!(admission.admit(a), Ok(Some(_))));
        held.pop();
        assert!(
            matches!(admission.admit(a), Err(Refused::Accepts { .. })),
            "five opened at once are its burst"
        );
        assert_eq!(admission.open(), 0, "every slot given back");
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(admission.admit(a).is_ok(), "one more a second later");
    }

    #[test]
    fn loopback_is_exempt_unless_limited_and_ipv6_counts_by_64() {
        let admission = limits(false);
        for _ in 0..10 {
            assert!(matches!(
                admission.admit(Some("127.0.0.2".parse().unwrap())),
                Ok(None)
            ));
            assert!(matches!(
                admission.admit(Some("::1".parse().unwrap())),
                Ok(None)
            ));
            assert!(matches!(admission.admit(None), Ok(None)));
        }
        let limited = limits(true);
        let _held: Vec<_> = (0..3)
            .map(|_| {
                limited
                    .admit(Some("::ffff:127.0.0.1".parse().unwrap()))
                    .unwrap()
            })
            .collect();
        assert!(limited.admit(Some("127.0.0.1".parse().unwrap())).is_err());
        let _v6: Vec<_> = (1..=3)
            .map(|i| {
                limited
                    .admit(Some(format!("2001:db8::{i}").parse().unwrap()))
                    .unwrap()
            })
            .collect();
        assert!(limited
            .admit(Some("2001:db8::ffff".parse().unwrap()))
            .is_err());
        assert!(limited
            .admit(Some("2001:db8:0:1::1".parse().unwrap()))
            .is_ok());
    }
}
