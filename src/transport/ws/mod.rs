//! WebSocket transport: a handshake that admits or refuses the client ([`handshake`]), then
//! one task per connection (`session`) that drains the client's queue to the socket (many
//! frames, one vectored write) and turns incoming frames into hub calls, with server pings,
//! an idle timeout and a write timeout. The task has one exit: `hub.disconnect(id, reason)`,
//! whose reason becomes the close code.
//!
//! - [`direct`] — sniffs a new connection's first bytes: valid upgrades of `/ws` skip hyper.
//! - [`handshake`] — admission (limits), the direct and the hyper handshakes, refusals as
//!   HTTP status + JSON body, RFC 6455 header checks.
//! - [`upgrade`] — RFC 6455 header checks shared by both paths, the accept key, the `101`.
//! - `session` — the connection loop and the closing handshake.
//! - `frame_writer` — pre-encoded frames straight to the socket.
//! - `shared` — a direct connection's socket shared with the hub's flushers
//!   (`hub::direct`), which write published frames while the session is parked.

use std::sync::Arc;
use std::time::Duration;

use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_util::task::TaskTracker;

use crate::hub::Hub;

use super::identity::Identity;
use super::{Limits, TransportError};

pub mod direct;
mod frame_writer;
pub mod handshake;
mod session;
mod shared;
pub mod upgrade;

/// Read buffer per connection. Client frames are small control frames, and the buffer is held
/// for the connection's whole life: tungstenite's default (128 KiB), or even 4 KiB, would
/// dominate an idle connection's memory. Larger frames still arrive whole (the buffer grows
/// to the frame's length, up to the maximum message size).
const READ_BUFFER_SIZE: usize = 512;

#[derive(Clone, Debug)]
pub struct WsConfig {
    pub ping_interval: Duration,
    pub idle_timeout: Duration,
    pub write_timeout: Duration,
    pub handshake_timeout: Duration,
    pub max_message_size: usize,
}

/// Turns a refusal into an HTTP status and JSON body; supplied by the HTTP layer, which owns
/// the rendering of errors, for handshakes that never reach hyper.
pub type RejectionRenderer = Arc<dyn Fn(TransportError) -> (u16, String) + Send + Sync>;

/// The WebSocket transport: cheap to clone, one per server.
#[derive(Clone)]
pub struct WebSockets {
    hub: Hub,
    tracker: TaskTracker,
    config: Arc<WsConfig>,
    render_rejection: RejectionRenderer,
    identity: Identity,
    limits: Limits,
}

impl WebSockets {
    pub fn new(
        hub: Hub,
        tracker: TaskTracker,
        config: WsConfig,
        render_rejection: RejectionRenderer,
        limits: Limits,
    ) -> Self {
        Self {
            hub,
            tracker,
            config: Arc::new(config),
            render_rejection,
            identity: Identity::default(),
            limits,
        }
    }

    /// Admits clients by their tokens (the default is open mode).
    pub fn with_identity(mut self, identity: Identity) -> Self {
        self.identity = identity;
        self
    }

    fn ws_config(&self) -> WebSocketConfig {
        WebSocketConfig::default()
            .read_buffer_size(READ_BUFFER_SIZE)
            .max_message_size(Some(self.config.max_message_size))
            .max_frame_size(Some(self.config.max_message_size))
    }
}
