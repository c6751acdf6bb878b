//! Transports: adapters that turn a connection into hub calls. Both speak the frames of
//! [`crate::protocol`] through [`dispatch`]; each owns its sockets and its client's queue
//! reader.
//!
//! - [`ws`] — WebSocket: handshake (admission, refusals), then one task per connection
//!   (queue → socket, socket → hub).
//! - [`long_poll`] — HTTP long-poll sessions: connect, poll (hold), send, close, reaper.
//! - [`identity`] — tokens at admission, long-poll requests bound to their user, and the
//!   housekeeping step of token lifetimes (notices, expiry).

pub mod dispatch;
pub mod identity;
pub mod long_poll;
pub mod ws;

use crate::auth::AuthError;
use crate::hub::{HubError, InvalidChannelName};
use crate::protocol::query::QueryError;
use crate::protocol::ErrorCode;

/// Errors a transport reports to its HTTP caller; each has one documented code (and so one
/// status).
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error(transparent)]
    Hub(#[from] HubError),
    #[error(transparent)]
    Query(#[from] QueryError),
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error("unknown or expired long-poll session; connect again and resume")]
    UnknownSession,
    #[error("another poll is already waiting on this session")]
    PollInProgress,
    #[error(
        "ack {ack} is neither the last batch sent ({last}) nor the one before it still unacknowledged; connect again and resume"
    )]
    BadAck { ack: u64, last: u64 },
    #[error("not a WebSocket upgrade request: {0}")]
    NotWebSocket(&'static str),
    #[error("the hub is shutting down")]
    ShuttingDown,
    #[error("{0}")]
    BadRequest(String),
}

impl TransportError {
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::Hub(e) => e.code(),
            Self::Query(e) => e.code(),
            Self::Auth(e) => e.code(),
            Self::UnknownSession => ErrorCode::UnknownSession,
            Self::PollInProgress => ErrorCode::PollInProgress,
            Self::BadAck { .. } => ErrorCode::BadAck,
            Self::NotWebSocket(_) => ErrorCode::NotWebSocket,
            Self::ShuttingDown => ErrorCode::ShuttingDown,
            Self::BadRequest(_) => ErrorCode::BadRequest,
        }
    }
}

impl From<InvalidChannelName> for TransportError {
    fn from(e: InvalidChannelName) -> Self {
        Self::Hub(HubError::InvalidChannel(e))
    }
}
