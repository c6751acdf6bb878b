//! Transports: adapters that turn a connection into hub calls. Both speak the frames in
//! [`protocol`] through [`dispatch`]; each owns its sockets and its client's queue reader.
//!
//! - [`ws`] — WebSocket: upgrade, one task per connection (queue → socket, socket → hub).
//! - [`long_poll`] — HTTP long-poll sessions: connect, poll (hold), send, close, reaper.

pub mod dispatch;
pub mod long_poll;
pub mod protocol;
pub mod ws;

use crate::hub::{HubError, InvalidChannelName};

/// Errors a transport reports to its HTTP caller, which maps each to a status code.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error(transparent)]
    Hub(#[from] HubError),
    #[error("unknown or expired long-poll session; connect again and resume")]
    UnknownSession,
    #[error("another poll is already waiting on this session")]
    PollInProgress,
    #[error("ack {ack} is newer than the last batch sent ({last})")]
    BadAck { ack: u64, last: u64 },
    #[error("not a WebSocket upgrade request: {0}")]
    NotWebSocket(&'static str),
    #[error("the hub is shutting down")]
    ShuttingDown,
    #[error("{0}")]
    BadRequest(String),
}

impl From<InvalidChannelName> for TransportError {
    fn from(e: InvalidChannelName) -> Self {
        Self::Hub(HubError::InvalidChannel(e))
    }
}
