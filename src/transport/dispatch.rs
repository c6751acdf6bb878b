//! What a client frame does, whichever transport carried it: count it against the client's
//! rate limits, parse, call the hub, queue the reply. Replies travel through the client's own
//! queue so they stay ordered with its messages (a `subscribed` always precedes that channel's
//! first message).

use std::sync::Arc;

use crate::hub::{Client, DisconnectReason, Hub, HubError};
use crate::protocol::client::Id;
use crate::protocol::{client, server, ClientFrame, ErrorCode, Frame};

use super::rate::{FrameKind, FrameLimits};

/// Handles one client text frame.
pub fn handle_text(hub: &Hub, limits: &FrameLimits, client: &Arc<Client>, text: &str) {
    // Parsed before it is counted, so a refusal can echo the frame's `id` (a client waiting
    // for the reply learns why it will not come); parsing is bounded by the message size.
    let parsed = client::parse(text);
    let kind = match &parsed {
        Ok(ClientFrame::Subscribe { since: Some(_), .. }) => FrameKind::Resubscribe,
        Ok(ClientFrame::Publish { .. }) => FrameKind::Publish,
        _ => FrameKind::Other,
    };
    let id = match &parsed {
        Ok(frame) => frame.id(),
        Err(error) => error.id,
    };
    if !admitted(hub, limits, client, kind, id) {
        return;
    }
    let reply = match parsed {
        Err(error) => Some(error.to_frame()),
        Ok(frame) => handle_frame(hub, client, frame),
    };
    if let Some(reply) = reply {
        hub.send(client, reply);
    }
}

/// Handles one binary frame (WebSocket): counted like any frame, then refused.
pub fn handle_binary(hub: &Hub, limits: &FrameLimits, client: &Arc<Client>) {
    if admitted(hub, limits, client, FrameKind::Other, None) {
        hub.send(
            client,
            server::error(
                ErrorCode::BinaryUnsupported,
                "crier speaks JSON text frames only; binary frames are ignored",
                None,
            ),
        );
    }
}

/// Counts a frame against the client's limits; a refused frame is answered `rate_limited`,
/// and a client that keeps going past its limits is closed.
fn admitted(
    hub: &Hub,
    limits: &FrameLimits,
    client: &Arc<Client>,
    kind: FrameKind,
    id: Option<Id<'_>>,
) -> bool {
    let Err(refusal) = limits.check(client.id, kind) else {
        return true;
    };
    if refusal.persistent {
        tracing::info!(client_id = %client.id, transport = client.transport.as_str(),
            limit = ?refusal.limit, "closing a client that keeps going past its rate limits");
        hub.disconnect(client.id, DisconnectReason::RateLimited);
    } else {
        hub.send(
            client,
            server::error(ErrorCode::RateLimited, &refusal.to_string(), id),
        );
    }
    false
}

fn handle_frame(hub: &Hub, client: &Arc<Client>, frame: ClientFrame<'_>) -> Option<Frame> {
    match frame {
        ClientFrame::Subscribe { channel, since, id } => {
            // On success the hub queues `subscribed` itself, atomically with the catch-up.
            hub.subscribe(client, &channel, since.as_ref(), &|s| {
                server::subscribed(s, id)
            })
            .err()
            .map(|e| hub_error(&e, id))
        }
        ClientFrame::Unsubscribe { channel, id } => Some(match hub.unsubscribe(client, &channel) {
            Ok(()) => server::unsubscribed(&channel, id),
            Err(e) => hub_error(&e, id),
        }),
        ClientFrame::Publish { channel, data, id } => {
            Some(match hub.client_publish(&channel, data.get()) {
                Ok(published) => server::published(&published, id),
                Err(e) => hub_error(&e, id),
            })
        }
        ClientFrame::Ping { id } => Some(server::pong(id)),
    }
}

fn hub_error(error: &HubError, id: Option<Id<'_>>) -> Frame {
    server::error(error.code(), &error.to_string(), id)
}
