//! How a client's connection ended, as the client saw it: the close code and reason the hub
//! sent, or that the stream just stopped. Reports count endings by their label (`4000 slow`,
//! `eof`); decisions look at the variant and the code, never at the label's text.

use std::fmt;

use tokio_tungstenite::tungstenite::protocol::CloseFrame;

use crate::frame::{code_of, ServerFrame};

/// The close code of a client the hub evicted because its queue overflowed (crier's
/// `DisconnectReason::Slow`, docs/PROTOCOL.md).
pub const SLOW_CLOSE_CODE: u16 = 4000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ending {
    /// A WebSocket close frame, or a long-poll `disconnect` frame: its code (when it had one)
    /// and reason.
    Closed { code: Option<u16>, reason: String },
    /// A WebSocket close frame with no payload.
    ClosedWithoutCode,
    /// The stream ended without a close frame.
    Eof,
    /// Reading failed (reset, protocol error); the error grouped by its kind.
    Broken(String),
    /// Long-poll: the hub no longer knows the session (`404`).
    UnknownSession,
    /// Slow clients: the connection was still open when the client finally read.
    StillOpen,
    /// Slow clients: the connection never opened.
    ConnectFailed,
}

impl Ending {
    /// A WebSocket close frame (`None`: a close without payload).
    pub fn from_close_frame(frame: Option<&CloseFrame>) -> Self {
        match frame {
            Some(f) => Ending::Closed {
                code: Some(u16::from(f.code)),
                reason: f.reason.to_string(),
            },
            None => Ending::ClosedWithoutCode,
        }
    }

    /// A long-poll `disconnect` frame; its code may come as a number or a string, or not at all.
    pub fn from_disconnect(frame: &ServerFrame<'_>) -> Self {
        Ending::Closed {
            code: frame.code.as_ref().and_then(code_of),
            reason: frame.reason.as_deref().unwrap_or("").to_owned(),
        }
    }

    /// The hub evicted the client as slow (close code 4000).
    pub fn is_slow_eviction(&self) -> bool {
        matches!(
            self,
            Ending::Closed {
                code: Some(SLOW_CLOSE_CODE),
                ..
            }
        )
    }
}

/// The label reports count endings by: `4000 slow`, `eof`, `close (no code)`, …
impl fmt::Display for Ending {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ending::Closed { code, reason } => {
                let code = code.map(|c| c.to_string()).unwrap_or_default();
                f.write_str(format!("{code} {reason}").trim())
            }
            Ending::ClosedWithoutCode => f.write_str("close (no code)"),
            Ending::Eof => f.write_str("eof"),
            Ending::Broken(kind) => f.write_str(kind),
            Ending::UnknownSession => f.write_str("404 unknown_session"),
            Ending::StillOpen => f.write_str("still open"),
            Ending::ConnectFailed => f.write_str("connect failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

    fn disconnect(json: &str) -> Ending {
        Ending::from_disconnect(&serde_json::from_str::<ServerFrame>(json).unwrap())
    }

    #[test]
    fn websocket_close_frames() {
        let slow = CloseFrame {
            code: CloseCode::from(4000),
            reason: "slow".into(),
        };
        let ending = Ending::from_close_frame(Some(&slow));
        assert!(ending.is_slow_eviction());
        assert_eq!(ending.to_string(), "4000 slow");
        let away = CloseFrame {
            code: CloseCode::Away,
            reason: "".into(),
        };
        let ending = Ending::from_close_frame(Some(&away));
        assert!(!ending.is_slow_eviction());
        assert_eq!(ending.to_string(), "1001");
        let ending = Ending::from_close_frame(None);
        assert!(!ending.is_slow_eviction());
        assert_eq!(ending.to_string(), "close (no code)");
    }

    #[test]
    fn long_poll_disconnect_frames() {
        let ending = disconnect(r#"{"type":"disconnect","code":4000,"reason":"slow"}"#);
        assert_eq!(
            ending,
            Ending::Closed {
                code: Some(4000),
                reason: "slow".into()
            }
        );
        assert!(ending.is_slow_eviction());
        // A code sent as a string counts the same.
        assert!(disconnect(r#"{"type":"disconnect","code":"4000"}"#).is_slow_eviction());
        let ending = disconnect(r#"{"type":"disconnect","code":4001,"reason":"idle"}"#);
        assert!(!ending.is_slow_eviction());
        assert_eq!(ending.to_string(), "4001 idle");
        let ending = disconnect(r#"{"type":"disconnect","reason":"shutdown"}"#);
        assert!(!ending.is_slow_eviction());
        assert_eq!(ending.to_string(), "shutdown");
    }

    #[test]
    fn labels_of_the_other_endings() {
        // A label that merely starts with the code is not an eviction.
        assert!(!Ending::Broken("4000 bytes short".into()).is_slow_eviction());
        for (ending, label) in [
            (Ending::Eof, "eof"),
            (Ending::Broken("ws error: reset".into()), "ws error: reset"),
            (Ending::UnknownSession, "404 unknown_session"),
            (Ending::StillOpen, "still open"),
            (Ending::ConnectFailed, "connect failed"),
        ] {
            assert_eq!(ending.to_string(), label);
        }
    }
}
