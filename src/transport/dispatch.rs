//! What a client frame does, whichever transport carried it: parse, call the hub, queue the
//! reply. Replies travel through the client's own queue so they stay ordered with its
//! messages (a `subscribed` always precedes that channel's first message).

use std::sync::Arc;

use crate::hub::{Client, DisconnectReason, Frame, Hub, HubError};

use super::protocol::{self, ClientFrame, FrameError};

/// Handles one client text frame.
pub fn handle_text(hub: &Hub, client: &Arc<Client>, text: &str) {
    let reply = match protocol::parse(text) {
        Err(error) => Some(error.to_frame()),
        Ok(frame) => handle_frame(hub, client, frame),
    };
    if let Some(reply) = reply {
        send(hub, client, reply);
    }
}

fn handle_frame(hub: &Hub, client: &Arc<Client>, frame: ClientFrame<'_>) -> Option<Frame> {
    match frame {
        ClientFrame::Subscribe { channel, since, id } => {
            // On success the hub queues `subscribed` itself, atomically with the catch-up.
            hub.subscribe(client, &channel, since.as_ref(), id.as_ref())
                .err()
                .map(|e| hub_error(&e, id))
        }
        ClientFrame::Unsubscribe { channel, id } => Some(match hub.unsubscribe(client, &channel) {
            Ok(()) => protocol::unsubscribed(&channel, id.as_ref()),
            Err(e) => hub_error(&e, id),
        }),
        ClientFrame::Publish { channel, data, id } => {
            Some(match hub.client_publish(&channel, data.get()) {
                Ok(published) => protocol::published(&published, id.as_ref()),
                Err(e) => hub_error(&e, id),
            })
        }
        ClientFrame::Ping { id } => Some(protocol::pong(id.as_ref())),
    }
}

fn hub_error(error: &HubError, id: Option<serde_json::Value>) -> Frame {
    FrameError::new(error.code(), error.to_string(), id).to_frame()
}

/// Queues a frame for the client; a client too far behind to take its own reply is slow.
pub fn send(hub: &Hub, client: &Arc<Client>, frame: Frame) {
    if client.queue.try_push(frame).is_err() {
        hub.disconnect(client.id, DisconnectReason::Slow);
    }
}
