//! `TransportKind`: which transport a client came by, a leaf every part of the hub may name.

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TransportKind {
    WebSocket,
    LongPoll,
}

impl TransportKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::WebSocket => "websocket",
            Self::LongPoll => "long_poll",
        }
    }
}
