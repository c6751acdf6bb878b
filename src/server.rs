//! `Server::run(listener, shutdown)`: builds the hub and transports, serves HTTP/1.1 with
//! upgrades on every accepted connection (WebSocket upgrades of `/ws` and connections that
//! open with an `/lp/*` request on the bare socket: [`crate::transport::ws::direct`],
//! [`lp`]), runs the housekeeping tasks, and drains everything on shutdown.
//!
//! Every accepted socket counts toward one ceiling ([`sockets`]); a connection hyper serves
//! runs over [`io::EdgeIo`] (write timeout) and its request bodies must arrive within
//! `--body-timeout` ([`crate::http::deadline`]).
//!
//! Shutdown order: stop accepting → cancel the root token (HTTP connections finish their
//! request in flight — one still waiting for its body is answered `503 shutting_down` at
//! once — and housekeeping stops) → disconnect every client with `shutdown` (which
//! closes its queue: WebSocket tasks send 1001, pending polls are answered) → stop the
//! webhooks (their drain delivers what those disconnects queued, within its own shorter
//! grace) → wait for every tracked task up to the grace period.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::Tokens;
use crate::cluster::RedisBroker;
use crate::config::Config;
use crate::http::{self, AppState};
use crate::hub::{Broker, DisconnectReason, Hub, HubError, Stats};
use crate::transport::identity::Identity;
use crate::transport::long_poll::LongPoll;
use crate::transport::ws::direct::{self, Opening};
use crate::transport::ws::WebSockets;
use crate::transport::Limits;

mod connection;
mod io;
mod lp;
pub mod sockets;

use connection::{refuse_over_capacity, serve_connection, Edge};

use crate::webhook::Webhooks;
use sockets::{SocketSlot, Sockets};

/// How often history is trimmed by age and idle long-poll sessions are reaped.
const HOUSEKEEPING_INTERVAL: Duration = Duration::from_millis(500);

/// Pause after `accept` fails for lack of file descriptors, so the loop does not spin while
/// connections are at the ceiling.
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(50);

/// Pending connections the kernel may hold for us (capped by `net.core.somaxconn`). Tokio's
/// default of 1024 drops SYNs when thousands of clients reconnect at once, and a dropped SYN
/// costs the client a one-second retransmit.
const LISTEN_BACKLOG: u32 = 16_384;

/// Binds the listening socket with a backlog sized for reconnect storms.
pub fn bind(addr: std::net::SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Largest request head (request line and header fields) hyper reads, and so what one
/// connection's read buffer can grow to before its request is dispatched. hyper's default is
/// 408 KiB; a head past this one gets hyper's own `431` (empty body) and the connection closes.
/// Browsers' heads stay far below it (nginx's default limit is 4 × 8 KiB).
pub const MAX_HEAD_BYTES: usize = 32 * 1024;

pub struct Server {
    state: AppState,
    sockets: Sockets,
    shutdown: CancellationToken,
    tracker: TaskTracker,
}

impl Server {
    /// A single node: the in-memory broker, no external service. (`--redis-url` is ignored
    /// here; [`Server::connect`] honours it.)
    pub fn new(config: Config) -> Self {
        let shutdown = CancellationToken::new();
        let hub = Hub::new(config.hub_config(), shutdown.clone());
        Self::around(config, hub, shutdown, TaskTracker::new())
    }

    /// The node `config` asks for: with `--redis-url`, a cluster node that reaches Redis
    /// before it serves anyone (an error if Redis cannot be reached within `--redis-wait`);
    /// otherwise [`Server::new`].
    pub async fn connect(config: Config) -> Result<Self, HubError> {
        let Some(cluster) = config.cluster_config() else {
            return Ok(Self::new(config));
        };
        let shutdown = CancellationToken::new();
        let tracker = TaskTracker::new();
        let stats = Stats::default();
        let (broker, listener) = RedisBroker::connect(cluster, stats.broker.clone()).await?;
        let hub = Hub::with_broker(
            config.hub_config(),
            shutdown.clone(),
            Broker::Cluster(Arc::new(broker)),
            stats,
        );
        tracker.spawn(listener.run(hub.clone(), shutdown.clone()));
        Ok(Self::around(config, hub, shutdown, tracker))
    }

    fn around(config: Config, hub: Hub, shutdown: CancellationToken, tracker: TaskTracker) -> Self {
        let identity = Identity::new(
            config.token_verifier().map(Tokens::new),
            config.origin_policy(),
        );
        let limits = Limits::new(config.admission_config(), config.rate_config());
        let websockets = WebSockets::new(
            hub.clone(),
            tracker.clone(),
            config.ws_config(),
            Arc::new(http::error::render_rejection),
            limits.clone(),
        )
        .with_identity(identity.clone());
        let long_poll = LongPoll::with_identity(
            hub.clone(),
            config.long_poll_config(),
            identity.clone(),
            limits,
        );
        let sockets = Sockets::new(config.socket_ceiling());
        Self {
            sockets,
            state: AppState {
                hub,
                websockets,
                long_poll,
                backend: Arc::new(config.backend_guard()),
                backend_publishes: Arc::new(http::limits::BackendPublishes::new(
                    config.api_publish_rate,
                    config.api_publish_burst,
                )),
                identity,
                config: Arc::new(config),
                started: Instant::now(),
            },
            shutdown,
            tracker,
        }
    }

    pub fn hub(&self) -> Hub {
        self.state.hub.clone()
    }

    pub fn long_poll(&self) -> LongPoll {
        self.state.long_poll.clone()
    }

    /// The count of open sockets.
    pub fn sockets(&self) -> Sockets {
        self.sockets.clone()
    }

    /// Serves until `signal` resolves, then shuts down gracefully.
    pub async fn run(
        self,
        listener: TcpListener,
        signal: impl Future<Output = ()>,
    ) -> std::io::Result<()> {
        let Self {
            state,
            sockets,
            shutdown,
            tracker,
        } = self;
        let router = http::router(state.clone());
        let edge = Edge {
            handshake_timeout: state.config.handshake_timeout,
            body_timeout: state.config.body_timeout,
            write_timeout: state.config.write_timeout,
            shutdown: shutdown.clone(),
        };
        let send_buffer = state.config.socket_send_buffer;
        let direct_long_poll = Arc::new(lp::DirectLongPoll {
            state: state.clone(),
            router: router.clone(),
            edge: edge.clone(),
        });

        tracker.spawn(housekeeping(state.clone(), shutdown.clone()));
        tracker.spawn(presence_flusher(state.clone(), shutdown.clone()));
        state
            .hub
            .start_flushers(usize::from(state.config.ws_flushers), &tracker);
        // Checked when the flags were parsed.
        let webhooks = match state.config.webhook_config() {
            Ok(Some(config)) => Webhooks::start(config, &state.hub, &tracker),
            Ok(None) => None,
            Err(error) => {
                tracing::error!(%error, "webhooks disabled");
                None
            }
        };

        tokio::pin!(signal);
        loop {
            let (stream, peer) = tokio::select! {
                () = &mut signal => break,
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        // EMFILE/ENFILE at the open-files ceiling, or a connection reset
                        // before accept: neither is fatal to the listener.
                        tracing::warn!(%error, "accept failed");
                        tokio::time::sleep(ACCEPT_ERROR_BACKOFF).await;
                        continue;
                    }
                },
            };
            let Some(slot) = sockets.admit() else {
                state.hub.stats().rejected_over_capacity.inc();
                // Past the ceiling: answered if there is room to answer, else closed at once.
                if let Some(permit) = sockets.refusal() {
                    let edge = edge.clone();
                    tracker.spawn(async move {
                        refuse_over_capacity(stream, edge).await;
                        drop(permit);
                    });
                }
                continue;
            };
            if send_buffer > 0 {
                if let Err(error) =
                    socket2::SockRef::from(&stream).set_send_buffer_size(send_buffer)
                {
                    tracing::debug!(%peer, %error, "could not cap the socket send buffer");
                }
            }
            let router = router.clone();
            let edge = edge.clone();
            let websockets = state.websockets.clone();
            let direct_long_poll = direct_long_poll.clone();
            tracker.spawn(async move {
                let slot: SocketSlot = slot;
                match direct::sniff(&stream, edge.handshake_timeout, &edge.shutdown).await {
                    // The WebSocket goes on in a task of its own, which keeps the slot.
                    Opening::WebSocket { read, head_len } => {
                        websockets.accept_direct(stream, read, head_len, slot).await
                    }
                    Opening::Http { read } => {
                        let read = if lp::may_be_long_poll(&read) {
                            // Boxed, as below.
                            let direct = Box::pin(direct_long_poll.serve(&stream, peer, read));
                            match direct.await {
                                lp::Served::Closed => return,
                                lp::Served::Hyper(read) => read,
                            }
                        } else {
                            read
                        };
                        // Boxed: an HTTP connection's state should not enlarge the task of
                        // every WebSocket connection spawned from this same code.
                        let serve = Box::pin(serve_connection(stream, peer, read, router, edge));
                        if let Err(error) = serve.await {
                            tracing::debug!(%peer, %error, "http connection ended with an error");
                        }
                    }
                    Opening::Silent => {
                        tracing::debug!(%peer, "no request within the handshake timeout")
                    }
                }
            });
        }

        tracing::info!("shutting down: closing connections");
        drop(listener);
        shutdown.cancel();
        state.hub.disconnect_all(DisconnectReason::Shutdown);
        // After the disconnects: their events are queued, and the drain delivers them.
        if let Some(webhooks) = &webhooks {
            webhooks.stop();
        }
        state.long_poll.clear();
        tracker.close();
        let grace = state.config.shutdown_grace;
        if tokio::time::timeout(grace, tracker.wait()).await.is_err() {
            tracing::warn!(
                remaining = tracker.len(),
                ?grace,
                "grace period over; exiting with tasks still running"
            );
        }
        tracing::info!("shutdown complete");
        Ok(())
    }
}

/// Sends the joins and leaves gathered since the last tick (`presence_diff`), every
/// `--presence-batch`: the window within which they are coalesced.
async fn presence_flusher(state: AppState, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(state.config.presence_batch);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = tick.tick() => {
                state.hub.flush_presence();
            }
        }
    }
}

async fn housekeeping(state: AppState, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(HOUSEKEEPING_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = tick.tick() => {
                let reaped = state.long_poll.reap();
                let forgotten = state.hub.sweep();
                let stuck = state.hub.check_stuck();
                let expired = state.identity.tick(&state.hub);
                if reaped + forgotten + stuck + expired > 0 {
                    tracing::debug!(reaped, forgotten, stuck, expired, "housekeeping");
                }
            }
        }
    }
}
