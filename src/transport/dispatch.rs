//! What a client frame does, whichever transport carried it: parse, call the hub, queue the
//! reply. Replies travel through the client's own queue so they stay ordered with its
//! messages (a `subscribed` always precedes that channel's first message).

use std::sync::Arc;

use crate::hub::{Client, Hub, HubError};
use crate::protocol::client::Id;
use crate::protocol::{client, server, ClientFrame, Frame};

/// Handles one client text frame.
pub fn handle_text(hub: &Hub, client: &Arc<Client>, text: &str) {
    let reply = match client::parse(text) {
        Err(error) => Some(error.to_frame()),
        Ok(frame) => handle_frame(hub, client, frame),
    };
    if let Some(reply) = reply {
        hub.send(client, reply);
    }
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
