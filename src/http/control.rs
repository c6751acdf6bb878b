//! The backend control API: a user's connections (`GET /api/users/{user}`), ending them
//! (`POST /api/users/{user}/disconnect`), taking a user off a channel
//! (`POST /api/users/{user}/unsubscribe`) and emptying a channel
//! (`POST /api/channels/{channel}/disconnect`). Behind the API key like all of `/api/*`.
//!
//! On a scale-out node the three commands act on every node (`Hub::control`): the reply
//! counts this node's connections and says how many nodes received the command; Redis out of
//! reach is `503 broker_unavailable` and this node does nothing. `GET /api/users/{user}`
//! asks every node and lists what the nodes that answered in time hold.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::hub::{ControlCommand, DisconnectReason};
use crate::protocol::bodies::{
    Unsubscribed, UserBody, UserDisconnectRequest, UserDisconnected, UserUnsubscribeRequest,
};
use crate::protocol::ErrorCode;

use super::api::channel_name;
use super::error::ApiError;
use super::AppState;

/// A JSON body; `None` when it is empty.
fn json_body<T: serde::de::DeserializeOwned>(
    state: &AppState,
    body: Result<Bytes, BytesRejection>,
) -> Result<Option<T>, ApiError> {
    let body =
        body.map_err(|e| ApiError::from_body_rejection(&e, state.config.max_message_size))?;
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    serde_json::from_slice(&body)
        .map(Some)
        .map_err(|e| ApiError::from_json_error(&e))
}

/// `GET /api/users/{user}`
pub async fn user(
    State(state): State<AppState>,
    Path(user): Path<String>,
) -> Result<Response, ApiError> {
    let found = state.hub.user_connections_everywhere(&user).await?;
    Ok(Json(UserBody {
        user: &user,
        connections: found.connections,
        nodes: found.nodes,
        answered: found.answered,
    })
    .into_response())
}

/// `POST /api/users/{user}/disconnect` with an optional `{"reason", "reconnect"}`.
pub async fn disconnect_user(
    State(state): State<AppState>,
    Path(user): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let request: UserDisconnectRequest = json_body(&state, body)?.unwrap_or_default();
    let reason = if request.reconnect {
        DisconnectReason::ReconnectByBackend
    } else {
        DisconnectReason::DisconnectedByBackend
    };
    let outcome = state
        .hub
        .control(&ControlCommand::DisconnectUser {
            user: user.clone(),
            reconnect: request.reconnect,
        })
        .await?;
    tracing::info!(%user, disconnected = outcome.local, nodes = outcome.nodes, %reason,
        note = request.reason.as_deref().unwrap_or(""), "backend disconnected a user");
    Ok(Json(UserDisconnected {
        user: &user,
        disconnected: outcome.local,
        reason,
        nodes: outcome.nodes,
    })
    .into_response())
}

/// `POST /api/users/{user}/unsubscribe` with `{"channel": …}`.
pub async fn unsubscribe_user(
    State(state): State<AppState>,
    Path(user): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let request: UserUnsubscribeRequest = json_body(&state, body)?
        .ok_or_else(|| ApiError::new(ErrorCode::BadRequest, "missing body `{\"channel\": …}`"))?;
    let channel = channel_name(&request.channel)?;
    let outcome = state
        .hub
        .control(&ControlCommand::UnsubscribeUser {
            user: user.clone(),
            channel: channel.clone(),
        })
        .await?;
    Ok(Json(Unsubscribed {
        user: Some(&user),
        channel: &channel,
        unsubscribed: outcome.local,
        nodes: outcome.nodes,
    })
    .into_response())
}

/// `POST /api/channels/{channel}/disconnect`: every subscriber off the channel.
pub async fn disconnect_channel(
    State(state): State<AppState>,
    Path(channel): Path<String>,
) -> Result<Response, ApiError> {
    let channel = channel_name(&channel)?;
    let outcome = state
        .hub
        .control(&ControlCommand::EmptyChannel {
            channel: channel.clone(),
        })
        .await?;
    Ok(Json(Unsubscribed {
        user: None,
        channel: &channel,
        unsubscribed: outcome.local,
        nodes: outcome.nodes,
    })
    .into_response())
}
