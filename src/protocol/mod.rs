//! The wire contract of `docs/PROTOCOL.md` as types: every name, code, frame and HTTP body a
//! client or backend outside this repository sees. The bottom layer: it imports nothing else
//! from the crate, and the hub, the transports and the HTTP layer all speak through it.
//!
//! - [`names`] — `ChannelName`, `Epoch`, `Since`: channels and positions.
//! - [`codes`] — `ErrorCode`: each error code's wire string, HTTP status and surface.
//! - [`disconnect`] — `DisconnectReason`: why a client left, as close codes.
//! - [`frame`] — `Frame`: one server frame encoded once into shared bytes.
//! - [`server`] — every server → client frame (`message` … `disconnect`).
//! - [`presence`] — the presence frames (`presence`, `presence_stats`, `presence_diff`).
//! - [`client`] — client → server frames, parsed, with their errors.
//! - [`query`] — the `channel` query parameter both transports accept.
//! - [`json`] — raw JSON carried through untouched: presence and nesting depth.
//! - [`bodies`] — every HTTP request and response body.

pub mod bodies;
pub mod client;
pub mod codes;
pub mod disconnect;
pub mod frame;
pub mod json;
pub mod names;
pub mod presence;
pub mod query;
pub mod server;

pub use client::{ClientFrame, FrameError};
pub use codes::ErrorCode;
pub use disconnect::DisconnectReason;
pub use frame::Frame;
pub use names::{ChannelName, Epoch, InvalidChannelName, Since, MAX_CHANNEL_NAME_LEN};
pub use presence::{Member, PresencePage, PresenceStats};
pub use server::{Missed, MissedReason, Payload, Published, Subscribed};
