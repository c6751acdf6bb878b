//! What a client frame does, whichever transport carried it: count it against the client's
//! rate limits, parse, call the hub, queue the reply. Replies travel through the client's own
//! queue so they stay ordered with its messages (a `subscribed` always precedes that channel's
//! first message).

use std::sync::Arc;

use crate::auth::{AuthError, Right};
use crate::hub::{ChannelName, Client, DisconnectReason, Hub, HubError};
use crate::protocol::client::Id;
use crate::protocol::{client, presence, server, ClientFrame, ErrorCode, Frame};

use super::identity;
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
    hub.stats().rejected_rate_limited.inc();
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
    // The token's rights come first: a channel outside them is `forbidden` whatever else.
    if let Err((e, id)) = authorize(hub, client, &frame) {
        return Some(server::error(e.code(), &e.to_string(), id));
    }
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
        ClientFrame::Subscribe {
            channel,
            since,
            join_leave,
            id,
        } => {
            // On success the hub queues `subscribed` itself, atomically with the catch-up.
            hub.subscribe_with(client, &channel, since.as_ref(), join_leave, &|s| {
                server::subscribed(s, id)
            })
            .err()
            .map(|e| hub_error(&e, id))
        }
        ClientFrame::Presence {
            channel,
            cursor,
            id,
        } => Some(match hub.presence(&channel, cursor.unwrap_or(0)) {
            Ok(members) => presence::presence(&members.page(), id),
            Err(e) => hub_error(&e, id),
        }),
        ClientFrame::PresenceStats { channel, id } => Some(match hub.presence_stats(&channel) {
            Ok(stats) => presence::presence_stats(&channel, stats, id),
            Err(e) => hub_error(&e, id),
        }),
        ClientFrame::Unsubscribe { channel, id } => Some(match hub.unsubscribe(client, &channel) {
            Ok(()) => server::unsubscribed(&channel, id),
            Err(e) => hub_error(&e, id),
        }),
        ClientFrame::Publish { channel, data, id } => {
            let from = publisher(client);
            Some(
                match hub.client_publish(&channel, data.get(), Some(&from)) {
                    Ok(published) => server::published(&published, id),
                    Err(e) => hub_error(&e, id),
                },
            )
        }
        ClientFrame::Ping { id } => Some(server::pong(id)),
        ClientFrame::Refresh { token, id } => Some(match client.identity() {
            Some(identity) => match identity.refresh(token) {
                Ok(exp) => server::refreshed(exp, id),
                Err(e) => server::error(e.code(), &e.to_string(), id),
            },
            None => {
                let e =
                    AuthError::Forbidden("this hub runs without tokens: nothing to refresh".into());
                server::error(e.code(), &e.to_string(), id)
            }
        }),
    }
}

/// The publisher the hub stamps on a client's messages: its user and `info` (with tokens on)
/// and its client id.
fn publisher(client: &Client) -> String {
    let principal = client.identity().map(|i| i.principal());
    server::publisher(
        principal.as_ref().map(|p| &*p.user),
        &client.id.to_string(),
        principal.as_ref().and_then(|p| p.info.as_deref()),
    )
}

/// Checks a subscribe or publish against the channel's rules and the client's token.
fn authorize<'a>(
    hub: &Hub,
    client: &Client,
    frame: &ClientFrame<'a>,
) -> Result<(), (AuthError, Option<Id<'a>>)> {
    let principal = client.identity().map(|i| i.principal());
    let check = |right, channel: &ChannelName, id| {
        identity::authorize(hub.config(), principal.as_deref(), right, channel).map_err(|e| (e, id))
    };
    match frame {
        // Reading who is in a channel takes the right to read the channel.
        ClientFrame::Subscribe { channel, id, .. }
        | ClientFrame::Presence { channel, id, .. }
        | ClientFrame::PresenceStats { channel, id } => check(Right::Subscribe, channel, *id),
        ClientFrame::Publish { channel, id, .. } => check(Right::Publish, channel, *id),
        _ => Ok(()),
    }
}

fn hub_error(error: &HubError, id: Option<Id<'_>>) -> Frame {
    server::error(error.code(), &error.to_string(), id)
}

/// With a cluster broker, `subscribe`, `publish`, `presence` and `presence_stats` wait for it:
/// they run on a task of their own and their reply joins the client's queue when they end (so
/// it may follow the replies to frames sent after them). Every other frame is handed back to
/// be handled at once.
fn through_broker<'a>(
    hub: &Hub,
    client: &Arc<Client>,
    frame: ClientFrame<'a>,
) -> Option<ClientFrame<'a>> {
    let (hub, client) = (hub.clone(), client.clone());
    match frame {
        ClientFrame::Subscribe {
            channel,
            since,
            join_leave,
            id,
        } => {
            let id = id.map(ToOwned::to_owned);
            tokio::spawn(async move {
                let id = id.as_deref();
                let reply = |s: &crate::protocol::Subscribed<'_>| server::subscribed(s, id);
                let subscribed = hub
                    .subscribe_joined(&client, &channel, since.as_ref(), join_leave, &reply)
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
            let from = publisher(&client);
            tokio::spawn(async move {
                let id = id.as_deref();
                let published = hub.client_publish_stored(&channel, &data, Some(&from));
                let reply = match published.await {
                    Ok(published) => server::published(&published, id),
                    Err(e) => hub_error(&e, id),
                };
                hub.send(&client, reply);
            });
            None
        }
        ClientFrame::Presence {
            channel,
            cursor,
            id,
        } => {
            let id = id.map(ToOwned::to_owned);
            tokio::spawn(async move {
                let id = id.as_deref();
                let reply = match hub.presence_stored(&channel, cursor.unwrap_or(0)).await {
                    Ok(members) => presence::presence(&members.page(), id),
                    Err(e) => hub_error(&e, id),
                };
                hub.send(&client, reply);
            });
            None
        }
        ClientFrame::PresenceStats { channel, id } => {
            let id = id.map(ToOwned::to_owned);
            tokio::spawn(async move {
                let id = id.as_deref();
                let reply = match hub.presence_stats_stored(&channel).await {
                    Ok(stats) => presence::presence_stats(&channel, stats, id),
                    Err(e) => hub_error(&e, id),
                };
                hub.send(&client, reply);
            });
            None
        }
        other => Some(other),
    }
}
