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
    if hub.cluster().is_some() {
        if let Some(frame) = through_broker(hub, client, frame) {
            return handle_local(hub, client, frame);
        }
        return None;
    }
    handle_local(hub, client, frame)
}

fn handle_local(hub: &Hub, client: &Arc<Client>, frame: ClientFrame<'_>) -> Option<Frame> {
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

/// With a cluster broker, `subscribe` and `publish` wait for it: they run on a task of their
/// own and their reply joins the client's queue when they end (so it may follow the replies
/// to frames sent after them). Every other frame is handed back to be handled at once.
fn through_broker<'a>(
    hub: &Hub,
    client: &Arc<Client>,
    frame: ClientFrame<'a>,
) -> Option<ClientFrame<'a>> {
    let (hub, client) = (hub.clone(), client.clone());
    match frame {
        ClientFrame::Subscribe { channel, since, id } => {
            let id = id.map(ToOwned::to_owned);
            tokio::spawn(async move {
                let id = id.as_deref();
                let reply = |s: &crate::protocol::Subscribed<'_>| server::subscribed(s, id);
                let subscribed = hub
                    .subscribe_joined(&client, &channel, since.as_ref(), &reply)
                    .await;
                if let Err(e) = subscribed {
                    hub.send(&client, hub_error(&e, id));
                }
            });
            None
        }
        ClientFrame::Publish { channel, data, id } => {
            let id = id.map(ToOwned::to_owned);
            let data = data.get().to_owned();
            tokio::spawn(async move {
                let id = id.as_deref();
                let reply = match hub.client_publish_stored(&channel, &data).await {
                    Ok(published) => server::published(&published, id),
                    Err(e) => hub_error(&e, id),
                };
                hub.send(&client, reply);
            });
            None
        }
        other => Some(other),
    }
}
