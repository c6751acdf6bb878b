//! `ErrorCode`: every error code of the contract, with its wire string, its HTTP status and
//! where a client can meet it. Handlers name a variant; none spells a code as a string.
//!
//! The tables in `docs/PROTOCOL.md` ("Error codes" for `error` frames, "HTTP errors") are
//! checked against this enum by a test, so the two cannot drift apart.

use std::fmt;

/// Where a client can meet a code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Surface {
    /// In an `error` frame only (the connection stays up).
    Frame,
    /// In an HTTP error response only.
    Http,
    /// Both.
    Both,
}

macro_rules! error_codes {
    ($($variant:ident => $wire:literal, $status:literal, $surface:ident;)+) => {
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum ErrorCode {
            $($variant,)+
        }

        impl ErrorCode {
            pub const ALL: &'static [ErrorCode] = &[$(Self::$variant,)+];

            /// The stable wire name (`"code"` in error frames and HTTP error bodies).
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $wire,)+
                }
            }

            /// The status of an HTTP response carrying this code.
            pub fn http_status(self) -> u16 {
                match self {
                    $(Self::$variant => $status,)+
                }
            }

            pub fn surface(self) -> Surface {
                match self {
                    $(Self::$variant => Surface::$surface,)+
                }
            }
        }
    };
}

error_codes! {
    BadJson => "bad_json", 400, Both;
    BadFrame => "bad_frame", 400, Frame;
    MissingField => "missing_field", 400, Frame;
    UnknownType => "unknown_type", 400, Frame;
    InvalidChannel => "invalid_channel", 400, Both;
    AlreadySubscribed => "already_subscribed", 400, Frame;
    NotSubscribed => "not_subscribed", 400, Frame;
    TooManySubscriptions => "too_many_subscriptions", 400, Both;
    PublishForbidden => "publish_forbidden", 403, Frame;
    Overloaded => "overloaded", 503, Both;
    BinaryUnsupported => "binary_unsupported", 400, Frame;
    TooDeep => "too_deep", 400, Both;
    TooManyChannels => "too_many_channels", 503, Both;
    PresenceDisabled => "presence_disabled", 404, Both;
    Forbidden => "forbidden", 403, Both;
    RateLimited => "rate_limited", 429, Both;
    Unauthorized => "unauthorized", 401, Both;
    OriginForbidden => "origin_forbidden", 403, Http;
    BadRequest => "bad_request", 400, Http;
    InvalidUtf8 => "invalid_utf8", 400, Http;
    BadAck => "bad_ack", 400, Http;
    NotWebSocket => "not_websocket", 400, Http;
    UnknownSession => "unknown_session", 404, Http;
    PollInProgress => "poll_in_progress", 409, Http;
    ClientGone => "client_gone", 410, Http;
    MessageTooLarge => "message_too_large", 413, Http;
    OverCapacity => "over_capacity", 503, Http;
    ShuttingDown => "shutting_down", 503, Http;
    RequestTimeout => "request_timeout", 408, Http;
    NotFound => "not_found", 404, Http;
    MethodNotAllowed => "method_not_allowed", 405, Http;
    TooManyConnections => "too_many_connections", 503, Http;
    BrokerUnavailable => "broker_unavailable", 503, Both;
}

impl ErrorCode {
    /// Seconds an HTTP client should wait before retrying (`Retry-After`), where the contract
    /// promises one: publishers pushed back by an overloaded hub wait about a second, which is
    /// far longer than queues take to drain. An address refused for opening connections too
    /// fast earns a new one well within a second at any sane `--accepts-per-ip-per-second`.
    pub fn retry_after_secs(self) -> Option<u32> {
        match self {
            Self::Overloaded
            | Self::TooManyChannels
            | Self::TooManyConnections
            | Self::RateLimited
            | Self::BrokerUnavailable => Some(1),
            _ => None,
        }
    }

    pub fn in_error_frames(self) -> bool {
        matches!(self.surface(), Surface::Frame | Surface::Both)
    }

    pub fn in_http(self) -> bool {
        matches!(self.surface(), Surface::Http | Surface::Both)
    }
}

impl serde::Serialize for ErrorCode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use super::*;
    use crate::protocol::disconnect::DisconnectReason;

    const PROTOCOL_MD: &str = include_str!("../../docs/PROTOCOL.md");

    /// The rows of the markdown table that follows `heading`, split into trimmed cells with
    /// backticks removed.
    fn table_after(heading: &str) -> Vec<Vec<String>> {
        let start = PROTOCOL_MD
            .find(heading)
            .unwrap_or_else(|| panic!("PROTOCOL.md has no heading {heading:?}"));
        PROTOCOL_MD[start..]
            .lines()
            .skip_while(|l| !l.starts_with('|'))
            .take_while(|l| l.starts_with('|'))
            .skip(2) // header and separator
            .map(|l| {
                l.trim_matches('|')
                    .split('|')
                    .map(|c| c.trim().replace('`', ""))
                    .collect()
            })
            .collect()
    }

    #[test]
    fn error_frame_table_lists_exactly_the_frame_codes() {
        let documented: BTreeSet<String> = table_after("### Error codes")
            .into_iter()
            .map(|row| row[0].clone())
            .collect();
        let ours: BTreeSet<String> = ErrorCode::ALL
            .iter()
            .filter(|c| c.in_error_frames())
            .map(|c| c.as_str().to_owned())
            .collect();
        assert_eq!(documented, ours);
    }

    #[test]
    fn http_error_table_lists_exactly_the_http_codes_with_their_status() {
        let documented: BTreeMap<String, u16> = table_after("### HTTP errors")
            .into_iter()
            .map(|row| (row[1].clone(), row[0].parse().expect("a status number")))
            .collect();
        let ours: BTreeMap<String, u16> = ErrorCode::ALL
            .iter()
            .filter(|c| c.in_http())
            .map(|c| (c.as_str().to_owned(), c.http_status()))
            .collect();
        assert_eq!(documented, ours);
    }

    #[test]
    fn close_code_table_matches_every_disconnect_reason() {
        let documented: BTreeMap<u16, (String, bool)> = table_after("### Close codes")
            .into_iter()
            .map(|row| {
                let code = row[0].parse().expect("a close code");
                (code, (row[1].clone(), row[3].starts_with("yes")))
            })
            .collect();
        let ours: BTreeMap<u16, (String, bool)> = DisconnectReason::ALL
            .iter()
            .map(|r| {
                (
                    r.close_code(),
                    (r.as_str().to_owned(), r.should_reconnect()),
                )
            })
            .collect();
        assert_eq!(documented, ours);
    }

    #[test]
    fn wire_names_are_distinct() {
        let names: BTreeSet<&str> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(names.len(), ErrorCode::ALL.len());
    }
}
