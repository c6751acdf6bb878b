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
//! - `lazy_read` — the socket under tungstenite: a read buffer only while read bytes wait.

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
mod lazy_read;
mod session;
mod shared;
pub mod upgrade;

/// tungstenite's read buffer: none up front. It would be held for the connection's whole life
/// (tungstenite's default is 128 KiB; 512 bytes here were still an idle connection's largest
/// allocation). tungstenite then allocates only what the frame being read needs, and reads
/// through `lazy_read::LazyRead`, which takes what has arrived off the socket in one syscall.
const READ_BUFFER_SIZE: usize = 0;

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
