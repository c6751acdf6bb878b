//! What a run is to do: how many clients on which channels and transport, how long, whether
//! and how fast to publish, and what to add (slow clients, a storm, churn). Scenarios fill a
//! `Plan` from their flags; the engine carries it out.

use std::time::Duration;

use crate::cli::{ClientArgs, PublishArgs};
use crate::client::{OnHubClose, Transport};

#[derive(Debug, Clone)]
pub struct Plan {
    pub clients: usize,
    pub channels: usize,
    pub transport: Transport,
    /// New connections per second during the ramp.
    pub ramp_rate: f64,
    pub on_hub_close: OnHubClose,
    /// How long the measured phase lasts (publishing, or holding when `publish` is `None`).
    pub duration: Duration,
    pub publish: Option<PublishSettings>,
    /// Clients that subscribe and never read.
    pub slow: usize,
    pub slow_recv_buffer: u32,
    /// Soak: this many more slow clients every period.
    pub slow_every: Option<(Duration, usize)>,
    /// Drop every subscriber at once this long into the measured phase.
    pub storm_at: Option<Duration>,
    /// Random reconnects (with resume) per second during the measured phase.
    pub churn_per_s: f64,
    /// How long to wait after publishing for subscribers to catch up.
    pub drain_timeout: Duration,
    /// Presence: one room (`chat:…`), every client subscribes with `join_leave`, and the
    /// members are listed after the joins and after the storm.
    pub presence: Option<PresencePlan>,
}

#[derive(Debug, Clone, Copy)]
pub struct PresencePlan {
    /// The hub's `--presence-batch`: the flush window `presence_diff` frames are bounded by.
    pub batch: Duration,
}

#[derive(Debug, Clone, Copy)]
pub struct PublishSettings {
    pub rate: f64,
    pub publishers: usize,
    pub size: usize,
}

impl Plan {
    /// Subscribers that reconnect if the hub closes them, and nothing else: no publishing,
    /// no slow clients, no storm or churn. Scenarios add what they need.
    pub fn subscribers(clients: &ClientArgs, ramp_rate: f64, duration: Duration) -> Self {
        Self {
            clients: clients.clients,
            channels: clients.channels,
            transport: clients.transport,
            ramp_rate,
            on_hub_close: OnHubClose::Reconnect,
            duration,
            publish: None,
            slow: 0,
            slow_recv_buffer: 0,
            slow_every: None,
            storm_at: None,
            churn_per_s: 0.0,
            drain_timeout: Duration::from_secs(15),
            presence: None,
        }
    }

    /// Subscribers and publishing as the shared publishing flags say.
    pub fn publishing(clients: &ClientArgs, publish: &PublishArgs) -> Self {
        Self {
            publish: Some(PublishSettings {
                rate: publish.rate,
                publishers: publish.publishers,
                size: publish.size,
            }),
            drain_timeout: publish.drain_timeout,
            ..Self::subscribers(clients, publish.ramp_rate, publish.duration)
        }
    }

    /// Client sockets the plan holds at its peak, by kind (see `SocketBudget`).
    pub fn sockets(&self) -> SocketBudget {
        let slow_joining = self
            .slow_every
            .map(|(every, batch)| {
                (self.duration.as_secs_f64() / every.as_secs_f64().max(0.001)).ceil() as u64
                    * batch as u64
            })
            .unwrap_or(0);
        let long_poll = (0..self.clients)
            .filter(|&n| self.transport.pick(n) == Transport::Lp)
            .count() as u64;
        SocketBudget {
            websocket: self.clients as u64 - long_poll,
            long_poll,
            slow: self.slow as u64 + slow_joining,
            publishers: self
                .publish
                .map(|p| p.publishers.max(1) as u64)
                .unwrap_or(0),
            probes: u64::from(self.presence.is_some()),
        }
    }
}

/// The sockets one run holds at its peak, by kind; measured with `ls /proc/PID/fd` during
/// ramps, storms and ends of runs on both transports.
///
/// - A WebSocket subscriber or slow client: one socket; a reconnect drops the old socket
///   before it opens the new one.
/// - A long-poll subscriber: one socket as well. It owns its connection (`client::http1`): a
///   poll it abandons (storm, churn, end of run) closes its socket before the next opens, and
///   the abandoned session's `/lp/close` is pipelined on the new connection. (With reqwest's
///   pools it was up to three: the abandoned poll's socket stayed open until the hub answered
///   it, while the close and the resuming connect each opened another.)
/// - Publishers share one pool: one socket per request in flight, at most `publishers`.
/// - A presence run's probe, which reads the listing: one WebSocket, one at a time.
/// - The `/api/stats` reads (start and end of a run) share that pool: one more, and
///   `SLACK` more for a connection the pool opens while another one frees up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SocketBudget {
    pub websocket: u64,
    pub long_poll: u64,
    pub slow: u64,
    pub publishers: u64,
    pub probes: u64,
}

impl SocketBudget {
    /// The stats read, plus connections the shared HTTP pool may open while racing for an
    /// idle one (hyper starts a connect and takes whichever is ready first).
    pub const SLACK: u64 = 1 + 8;

    pub fn total(&self) -> u64 {
        self.websocket + self.long_poll + self.slow + self.publishers + self.probes + Self::SLACK
    }
}

impl std::fmt::Display for SocketBudget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} WebSocket + {} long-poll subscribers (one socket each), {} slow clients, \
             {} publishers, {} presence probe, {} for stats and the HTTP pool",
            self.websocket,
            self.long_poll,
            self.slow,
            self.publishers,
            self.probes,
            Self::SLACK
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::ClientArgs;

    fn plan(clients: usize, transport: Transport, publishers: Option<usize>) -> Plan {
        let args = ClientArgs {
            clients,
            channels: 10,
            transport,
        };
        let mut p = Plan::subscribers(&args, 1000.0, Duration::from_secs(10));
        p.publish = publishers.map(|publishers| PublishSettings {
            rate: 200.0,
            publishers,
            size: 256,
        });
        p
    }

    #[test]
    fn every_subscriber_holds_one_socket_on_either_transport() {
        let mix = plan(18_501, Transport::Mix, Some(8)).sockets();
        assert_eq!((mix.websocket, mix.long_poll), (9_251, 9_250));
        assert_eq!(mix.total(), 18_501 + 8 + SocketBudget::SLACK);
        for t in [Transport::Ws, Transport::Lp] {
            let b = plan(1_000, t, None).sockets();
            assert_eq!(b.websocket + b.long_poll, 1_000);
            assert_eq!(b.total(), 1_000 + SocketBudget::SLACK);
        }
    }

    #[test]
    fn slow_clients_and_their_batches_count() {
        let mut p = plan(100, Transport::Ws, Some(4));
        p.slow = 50;
        p.slow_every = Some((Duration::from_secs(3), 5));
        // 10 s / 3 s → 4 batches of 5, on top of the 50 from the start.
        assert_eq!(p.sockets().slow, 70);
        assert_eq!(p.sockets().total(), 100 + 70 + 4 + SocketBudget::SLACK);
    }

    #[test]
    fn a_presence_run_holds_one_probe_more() {
        let mut p = plan(19_000, Transport::Ws, None);
        p.presence = Some(PresencePlan {
            batch: Duration::from_millis(250),
        });
        assert_eq!(p.sockets().probes, 1);
        assert_eq!(p.sockets().total(), 19_000 + 1 + SocketBudget::SLACK);
        let cap = 20_000 - crate::target::FD_RESERVE;
        assert!(p.sockets().total() <= cap);
        assert!(plan(19_000, Transport::Ws, None).sockets().probes == 0);
    }

    #[test]
    fn the_largest_mixed_storm_one_process_admits() {
        // Open-file limit 20,000 minus the reserve: 19,800 sockets, 8 publishers.
        let cap = 20_000 - crate::target::FD_RESERVE;
        let most = (cap - 8 - SocketBudget::SLACK) as usize;
        assert_eq!(plan(most, Transport::Mix, Some(8)).sockets().total(), cap);
        assert!(plan(most + 1, Transport::Mix, Some(8)).sockets().total() > cap);
    }
}
