//! `Server::run(listener, shutdown)`: builds the hub and transports, serves HTTP/1.1 with
//! upgrades on every accepted connection, runs the housekeeping tasks, and drains
//! everything on shutdown.
//!
//! Shutdown order: stop accepting → cancel the root token (HTTP connections finish their
//! request in flight, housekeeping stops) → disconnect every client with `shutdown` (which
//! closes its queue: WebSocket tasks send 1001, pending polls are answered) → wait for every
//! tracked task up to the grace period.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt as _;

use crate::cluster::RedisBroker;
use crate::config::Config;
use crate::http::{self, AppState};
use crate::hub::{Broker, DisconnectReason, Hub, HubError, Stats};
use crate::transport::long_poll::LongPoll;
use crate::transport::ws::direct::{self, Opening};
use crate::transport::ws::WebSockets;

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

pub struct Server {
    state: AppState,
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
        let websockets = WebSockets::new(
            hub.clone(),
            tracker.clone(),
            config.ws_config(),
            Arc::new(http::error::render_rejection),
        );
        let long_poll = LongPoll::new(hub.clone(), config.long_poll_config());
        Self {
            state: AppState {
                hub,
                websockets,
                long_poll,
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

    /// Serves until `signal` resolves, then shuts down gracefully.
    pub async fn run(
        self,
        listener: TcpListener,
        signal: impl Future<Output = ()>,
    ) -> std::io::Result<()> {
        let Self {
            state,
            shutdown,
            tracker,
        } = self;
        let router = http::router(state.clone());
        let handshake_timeout = state.config.handshake_timeout;
        let send_buffer = state.config.socket_send_buffer;

        tracker.spawn(housekeeping(state.clone(), shutdown.clone()));

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
            if send_buffer > 0 {
                if let Err(error) =
                    socket2::SockRef::from(&stream).set_send_buffer_size(send_buffer)
                {
                    tracing::debug!(%peer, %error, "could not cap the socket send buffer");
                }
            }
            let router = router.clone();
            let shutdown = shutdown.clone();
            let websockets = state.websockets.clone();
            tracker.spawn(async move {
                match direct::sniff(&stream, handshake_timeout).await {
                    Opening::WebSocket { head_len } => {
                        websockets.accept_direct(stream, head_len).await
                    }
                    Opening::Http => {
                        // Boxed: an HTTP connection's state should not enlarge the task of
                        // every WebSocket connection spawned from this same code.
                        let serve = Box::pin(serve_connection(
                            stream,
                            router,
                            handshake_timeout,
                            shutdown,
                        ));
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

async fn serve_connection(
    stream: TcpStream,
    router: axum::Router,
    handshake_timeout: Duration,
    shutdown: CancellationToken,
) -> Result<(), hyper::Error> {
    // Messages are small and latency matters more than packet count.
    let _ = stream.set_nodelay(true);
    let service = TowerToHyperService::new(
        router.map_request(|r: hyper::Request<Incoming>| r.map(axum::body::Body::new)),
    );
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(handshake_timeout);
    let connection = builder
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    tokio::pin!(connection);
    tokio::select! {
        result = connection.as_mut() => result,
        () = shutdown.cancelled() => {
            // Finish the request in flight (a pending poll is being answered), then close.
            connection.as_mut().graceful_shutdown();
            connection.await
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
                if reaped + forgotten + stuck > 0 {
                    tracing::debug!(reaped, forgotten, stuck, "housekeeping");
                }
            }
        }
    }
}
