//! `DisconnectReason`: the one vocabulary for why a client left, shared by both transports.
//!
//! Expected endings (the client closed, it was idle, it was too slow, the hub is shutting
//! down) are reasons, not errors. Each maps to one WebSocket close code and one long-poll
//! `disconnect` frame, both documented in `docs/PROTOCOL.md`.

use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DisconnectReason {
    /// The client closed the connection or the long-poll session.
    ClientClosed,
    /// The hub is shutting down ("going away"); reconnect and resume.
    Shutdown,
    /// The client broke the WebSocket protocol.
    ProtocolError,
    /// A text frame that is not UTF-8.
    InvalidUtf8,
    /// A frame above the configured maximum message size.
    MessageTooLarge,
    /// A bug in crier; reconnecting is safe.
    Internal,
    /// The client's bounded queue overflowed: it did not read fast enough.
    Slow,
    /// Nothing arrived from the client (WebSocket) or no poll came (long-poll) in time.
    IdleTimeout,
    /// A write to the client's socket stalled past the write timeout.
    WriteTimeout,
    /// The client's token expired and no `refresh` replaced it in time.
    TokenExpired,
    /// The client kept sending past its rate limits after being refused (`rate_limited`
    /// error frames); reconnect no sooner than [`RATE_LIMITED_RECONNECT_DELAY`].
    RateLimited,
    /// The backend ended the connection (`POST /api/users/{user}/disconnect`); do not
    /// reconnect on your own.
    DisconnectedByBackend,
    /// The backend asked the client to reconnect (`"reconnect": true`), e.g. to pick up a new
    /// token with other rights.
    ReconnectByBackend,
}

/// How long a client closed as [`DisconnectReason::RateLimited`] waits before reconnecting: long
/// enough for every per-connection limit to refill completely (the slowest, resubscribes at
/// their default 10/s with bursts of 64, takes 6.4 s).
pub const RATE_LIMITED_RECONNECT_DELAY: std::time::Duration = std::time::Duration::from_secs(10);

impl DisconnectReason {
    pub const ALL: [DisconnectReason; 13] = [
        Self::ClientClosed,
        Self::Shutdown,
        Self::ProtocolError,
        Self::InvalidUtf8,
        Self::MessageTooLarge,
        Self::Internal,
        Self::Slow,
        Self::IdleTimeout,
        Self::WriteTimeout,
        Self::TokenExpired,
        Self::RateLimited,
        Self::DisconnectedByBackend,
        Self::ReconnectByBackend,
    ];

    /// The WebSocket close code; long-poll reports the same number in its `disconnect` frame.
    pub fn close_code(self) -> u16 {
        match self {
            Self::ClientClosed => 1000,
            Self::Shutdown => 1001,
            Self::ProtocolError => 1002,
            Self::InvalidUtf8 => 1007,
            Self::MessageTooLarge => 1009,
            Self::Internal => 1011,
            Self::Slow => 4000,
            Self::IdleTimeout => 4001,
            Self::WriteTimeout => 4002,
            Self::TokenExpired => 4003,
            Self::RateLimited => 4004,
            Self::DisconnectedByBackend => 4005,
            Self::ReconnectByBackend => 4006,
        }
    }

    /// The stable name, used as the close reason text, in `disconnect` frames and in metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ClientClosed => "client_closed",
            Self::Shutdown => "shutdown",
            Self::ProtocolError => "protocol_error",
            Self::InvalidUtf8 => "invalid_utf8",
            Self::MessageTooLarge => "message_too_large",
            Self::Internal => "internal_error",
            Self::Slow => "slow",
            Self::IdleTimeout => "idle_timeout",
            Self::WriteTimeout => "write_timeout",
            Self::TokenExpired => "token_expired",
            Self::RateLimited => "rate_limited",
            Self::DisconnectedByBackend => "disconnected_by_backend",
            Self::ReconnectByBackend => "reconnect_by_backend",
        }
    }

    /// Whether a client should reconnect (and resume from its last offsets).
    pub fn should_reconnect(self) -> bool {
        matches!(
            self,
            Self::Shutdown
                | Self::Internal
                | Self::Slow
                | Self::IdleTimeout
                | Self::WriteTimeout
                | Self::TokenExpired
                | Self::RateLimited
                | Self::ReconnectByBackend
        )
    }

    pub fn description(self) -> &'static str {
        match self {
            Self::ClientClosed => "closed by the client",
            Self::Shutdown => "the hub is shutting down; reconnect and resume",
            Self::ProtocolError => "WebSocket protocol violation",
            Self::InvalidUtf8 => "text frame is not valid UTF-8",
            Self::MessageTooLarge => "frame exceeds the maximum message size",
            Self::Internal => "internal error; reconnect and resume",
            Self::Slow => "client queue overflowed; reconnect and resume",
            Self::IdleTimeout => "nothing received within the idle timeout; reconnect and resume",
            Self::WriteTimeout => "socket write stalled; reconnect and resume",
            Self::TokenExpired => {
                "the connection token expired without a refresh; reconnect with a new token and resume"
            }
            Self::RateLimited => {
                "kept sending past the rate limits; reconnect after at least 10 s and resume"
            }
            Self::DisconnectedByBackend => "disconnected by the backend; do not reconnect",
            Self::ReconnectByBackend => {
                "the backend asked for a reconnect; reconnect (with a fresh token) and resume"
            }
        }
    }
}

impl serde::Serialize for DisconnectReason {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl fmt::Display for DisconnectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Stats index per-reason counters by discriminant, in `ALL`'s order. (The close-code table
    /// of `docs/PROTOCOL.md` is checked against these reasons in `codes`.)
    #[test]
    fn all_lists_every_reason_in_declaration_order() {
        for (i, reason) in DisconnectReason::ALL.iter().enumerate() {
            assert_eq!(*reason as usize, i, "{reason}");
        }
        let codes: std::collections::HashSet<u16> = DisconnectReason::ALL
            .iter()
            .map(|r| r.close_code())
            .collect();
        assert_eq!(
            codes.len(),
            DisconnectReason::ALL.len(),
            "close codes are distinct"
        );
    }
}
