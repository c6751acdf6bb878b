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

    /// Client sockets the plan holds at its peak: subscribers (a long-poll client briefly
    /// holds a second one while its previous poll is torn down), slow clients, publishers.
    pub fn sockets_needed(&self) -> u64 {
        let slow_extra = self
            .slow_every
            .map(|(every, batch)| {
                (self.duration.as_secs_f64() / every.as_secs_f64().max(0.001)).ceil() as u64
                    * batch as u64
            })
            .unwrap_or(0);
        let lp_share = match self.transport {
            Transport::Lp => self.clients,
            Transport::Mix => self.clients / 2,
            Transport::Ws => 0,
        } as u64;
        let publishers = self.publish.map(|p| p.publishers as u64).unwrap_or(0);
        self.clients as u64 + lp_share / 10 + self.slow as u64 + slow_extra + publishers + 16
    }
}
