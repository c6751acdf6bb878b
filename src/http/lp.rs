//! Long-poll endpoints: parse the request, call the transport, shape the response.

use std::pin::Pin;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use tokio::time::Sleep;

use crate::protocol::bodies::{
    Accepted, Closed, ConnectChannel, ConnectRequest, SessionOpened, SessionQuery,
};
use crate::protocol::query;
use crate::transport::identity::token_of;
use crate::transport::long_poll::SessionId;
use crate::transport::TransportError;

use super::error::ApiError;
use super::AppState;

/// The session id, the ack, and the request's token (`Authorization: Bearer`, else `?token=`).
fn session_id(
    query: Result<Query<SessionQuery>, QueryRejection>,
    headers: &HeaderMap,
) -> Result<(SessionId, u64, Option<String>), ApiError> {
    let Query(query) = query.map_err(|e| ApiError::from_query_rejection(&e))?;
    // A malformed id is as unknown as an expired one: the client's remedy is the same.
    let id = SessionId::parse(&query.session)
        .ok_or_else(|| ApiError::from(TransportError::UnknownSession))?;
    let token = token_of(None, headers).or(query.token);
    Ok((id, query.ack, token))
}

/// `POST /lp/connect?channel=a` or with `{"channels": [...]}`.
pub async fn connect(
    State(state): State<AppState>,
    request: Request,
) -> Result<Response, ApiError> {
    let mut channels: Vec<ConnectChannel> =
        query::channels_from_query(request.uri().query().unwrap_or(""))?
            .into_iter()
            .map(|c| ConnectChannel::Name(c.as_str().to_owned()))
            .collect();
    let mut token = token_of(request.uri().query(), request.headers());
    let peer = super::peer_ip(&request);
    let limit = state.config.max_message_size;
    let body = axum::body::to_bytes(request.into_body(), limit)
        .await
        .map_err(|e| ApiError::from_body_error(&e, limit))?;
    if !body.iter().all(u8::is_ascii_whitespace) {
        let parsed: ConnectRequest =
            serde_json::from_slice(&body).map_err(|e| ApiError::from_json_error(&e))?;
        channels.extend(parsed.channels);
        token = parsed.token.or(token);
    }
    let id = state
        .long_poll
        .connect(channels, token.as_deref(), peer)
        .await?;
    let config = state.long_poll.config();
    Ok(Json(SessionOpened {
        session: id.to_string(),
        hold_ms: config.hold.as_millis() as u64,
        session_timeout_ms: config.session_timeout.as_millis() as u64,
    })
    .into_response())
}

/// `GET /lp/poll?session=ID&ack=N`
pub async fn poll(
    State(state): State<AppState>,
    headers: HeaderMap,
    query: Result<Query<SessionQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let (id, ack, token) = session_id(query, &headers)?;
    let batch = state.long_poll.poll(id, ack, token.as_deref()).await?;
    Ok(([(header::CONTENT_TYPE, "application/json")], batch.0).into_response())
}

/// `GET /lp/poll` as the router would answer it (handler, origin check and layers), for a
/// request served on the bare socket (`crate::server::lp`): the batch's JSON body, or the
/// whole refusal. The request's head is dropped before the poll parks; `hold` times the
/// poll's hold (the connection's one timer for all its polls).
pub async fn poll_direct(
    state: &AppState,
    uri: Uri,
    headers: HeaderMap,
    hold: Pin<&mut Sleep>,
) -> Result<Bytes, Response> {
    state
        .identity
        .check_origin(&headers)
        .map_err(|e| refusal(e.into()))?;
    let query = match uri.query().and_then(SessionQuery::from_plain) {
        Some(plain) => Ok(Query(plain)),
        None => Query::try_from_uri(&uri),
    };
    let (id, ack, token) = session_id(query, &headers).map_err(refusal)?;
    drop((uri, headers));
    let batch = state
        .long_poll
        .poll_holding(id, ack, token.as_deref(), hold)
        .await
        .map_err(|e| refusal(e.into()))?;
    Ok(batch.0)
}

/// An error answer to an `/lp/*` request, with the headers the router's long-poll layers add.
pub fn refusal(error: ApiError) -> Response {
    let mut response = error.into_response();
    response.headers_mut().insert(
        header::HeaderName::from_static("x-accel-buffering"),
        HeaderValue::from_static("no"),
    );
    response
}

/// `POST /lp/send?session=ID` with one frame or an array of frames.
pub async fn send(
    State(state): State<AppState>,
    headers: HeaderMap,
    query: Result<Query<SessionQuery>, QueryRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let (id, _, token) = session_id(query, &headers)?;
    let body =
        body.map_err(|e| ApiError::from_body_rejection(&e, state.config.max_message_size))?;
    let text = std::str::from_utf8(&body).map_err(ApiError::from_utf8_error)?;
    let accepted = state.long_poll.send(id, text, token.as_deref())?;
    Ok((StatusCode::ACCEPTED, Json(Accepted { accepted })).into_response())
}

/// `POST /lp/close?session=ID`
pub async fn close(
    State(state): State<AppState>,
    headers: HeaderMap,
    query: Result<Query<SessionQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let (id, _, token) = session_id(query, &headers)?;
    state.long_poll.close(id, token.as_deref())?;
    Ok(Json(Closed { closed: true }).into_response())
}
