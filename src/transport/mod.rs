//! Transports: adapters that turn a connection into hub calls. Both speak the frames of
//! [`crate::protocol`] through [`dispatch`]; each owns its sockets and its client's queue
//! reader.
//!
//! - [`ws`] — WebSocket: handshake (admission, refusals), then one task per connection
//!   (queue → socket, socket → hub).
//! - [`long_poll`] — HTTP long-poll sessions: connect, poll (hold), send, close, reaper.
//! - [`identity`] — tokens at admission, long-poll requests bound to their user, and the
//!   housekeeping step of token lifetimes (notices, expiry).
//! - [`admission`] — per source address: clients held open and opened per second.
//! - [`rate`] — per connection: frames, resubscribes with history and publishes per second.

pub mod admission;
pub mod clock;
pub mod dispatch;
pub mod identity;
pub mod long_poll;
pub mod rate;
pub mod ws;

use crate::auth::AuthError;
use admission::{Admission, AdmissionConfig};
use rate::{FrameLimits, RateConfig};

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
    #[error(transparent)]
    TooManyConnections(#[from] admission::Refused),
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
            Self::TooManyConnections(_) => ErrorCode::TooManyConnections,
        }
    }
}

impl From<InvalidChannelName> for TransportError {
    fn from(e: InvalidChannelName) -> Self {
        Self::Hub(HubError::InvalidChannel(e))
    }
}

/// The abuse limits both transports enforce: one set per server, so that an address's clients
/// are counted across both transports. Cheap to clone.
#[derive(Clone)]
pub struct Limits {
    pub admission: Admission,
    pub frames: FrameLimits,
}

impl Limits {
    /// Builds the limiters; call it in the runtime whose clock they should follow.
    pub fn new(admission: AdmissionConfig, frames: RateConfig) -> Self {
        Self {
            admission: Admission::new(admission),
            frames: FrameLimits::new(frames),
        }
    }

    /// No limits (for unit tests of other things).
    pub fn off() -> Self {
        Self::new(AdmissionConfig::OFF, RateConfig::OFF)
    }
}
