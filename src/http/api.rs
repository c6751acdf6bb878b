//! The backend-facing API: publish, history, stats, metrics, health. Bodies are the
//! contract's shapes from [`crate::protocol::bodies`].

use axum::body::{Body, Bytes};
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde_json::value::RawValue;

use crate::auth::Backend;
use crate::hub::{ChannelName, DisconnectReason, Published, TransportKind};
use crate::protocol::bodies::{
    history_body, Health, HistoryQuery, PresenceQuery, PublishRequest, PublishResults, StatsBody,
};
use crate::protocol::ErrorCode;
use crate::protocol::PresenceStats;

use super::error::ApiError;
use super::AppState;

pub async fn healthz(State(state): State<AppState>) -> Result<Json<Health>, ApiError> {
    if state.hub.is_shutting_down() {
        return Err(ApiError::new(
            ErrorCode::ShuttingDown,
            "the hub is shutting down",
        ));
    }
    Ok(Json(Health { status: "ok" }))
}

pub(super) fn channel_name(name: &str) -> Result<ChannelName, ApiError> {
    ChannelName::parse(name).map_err(|e| ApiError::new(ErrorCode::InvalidChannel, e.to_string()))
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|mime| {
            let mime = mime.trim().to_ascii_lowercase();
            mime == "application/json" || mime.ends_with("+json")
        })
}

/// `POST /api/publish/{channel}`: a JSON body is delivered as that value, any other UTF-8 body
/// as a JSON string.
pub async fn publish_body(
    State(state): State<AppState>,
    backend: Option<Extension<Backend>>,
    Path(channel): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Published>, ApiError> {
    let channel = channel_name(&channel)?;
    let body =
        body.map_err(|e| ApiError::from_body_rejection(&e, state.config.max_message_size))?;
    let text = std::str::from_utf8(&body).map_err(ApiError::from_utf8_error)?;
    let data = if is_json(&headers) {
        let raw: &RawValue = serde_json::from_str(text).map_err(|e| {
            ApiError::new(ErrorCode::BadJson, format!("body is not valid JSON: {e}"))
        })?;
        raw.get().to_owned()
    } else {
        serde_json::to_string(text).unwrap_or_default()
    };
    state.hub.check_load()?;
    state
        .backend_publishes
        .check(backend.map(|Extension(b)| b), 1)?;
    Ok(Json(state.hub.publish_stored(&channel, &data).await?))
}

/// `POST /api/publish` with `{"channel": …, "data": …}` or `{"channels": […], "data": …}`.
pub async fn publish_json(
    State(state): State<AppState>,
    backend: Option<Extension<Backend>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body =
        body.map_err(|e| ApiError::from_body_rejection(&e, state.config.max_message_size))?;
    let request: PublishRequest =
        serde_json::from_slice(&body).map_err(|e| ApiError::from_json_error(&e))?;
    let data = request
        .data
        .ok_or_else(|| ApiError::new(ErrorCode::BadRequest, "missing field `data`"))?;
    state.hub.check_load()?;
    let backend = backend.map(|Extension(b)| b);
    match (request.channel, request.channels) {
        (Some(channel), None) => {
            let channel = channel_name(&channel)?;
            state.backend_publishes.check(backend, 1)?;
            Ok(Json(state.hub.publish_stored(&channel, data.get()).await?).into_response())
        }
        (None, Some(channels)) if !channels.is_empty() => {
            // Validate everything first so a bad name, a too deep `data` or too little room
            // for new channels publishes nothing.
            let names = channels
                .iter()
                .map(|c| channel_name(c))
                .collect::<Result<Vec<_>, _>>()?;
            state.hub.check_data(data.get())?;
            state.hub.check_room(&names)?;
            state.backend_publishes.check(backend, names.len() as u32)?;
            let mut results = Vec::with_capacity(names.len());
            for name in &names {
                results.push(state.hub.publish_stored(name, data.get()).await?);
            }
            Ok(Json(PublishResults { results }).into_response())
        }
        _ => Err(ApiError::new(
            ErrorCode::BadRequest,
            "give exactly one of `channel` or a non-empty `channels`",
        )),
    }
}

/// Most bytes of frames one history response carries (always at least one message): a page
/// is what a reader that never reads can pin, so 1,000 of them hold references to at most
/// this much each — and to frames history holds anyway, never a copy.
const HISTORY_PAGE_BYTES: usize = 256 << 10;

/// `GET /api/channels/{channel}/history?since=OFFSET&limit=N`
pub async fn history(
    State(state): State<AppState>,
    Path(channel): Path<String>,
    query: Result<Query<HistoryQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let channel = channel_name(&channel)?;
    let Query(query) = query.map_err(|e| ApiError::from_query_rejection(&e))?;
    let limit = query
        .limit
        .unwrap_or(100)
        .min(state.config.history_size.max(1));
    let chunks = match state
        .hub
        .history_stored(&channel, query.since, limit, HISTORY_PAGE_BYTES)
        .await?
    {
        Some(page) => history_body(
            &channel,
            Some(&page.epoch),
            page.last_offset,
            page.next,
            &page.frames,
        ),
        None => history_body(&channel, None, 0, None, &[]),
    };
    let body = Body::from_stream(futures_util::stream::iter(
        chunks.into_iter().map(Ok::<_, std::convert::Infallible>),
    ));
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

/// `GET /api/channels/{channel}/presence?cursor=N`: a page of members.
pub async fn presence(
    State(state): State<AppState>,
    Path(channel): Path<String>,
    query: Result<Query<PresenceQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let channel = channel_name(&channel)?;
    let Query(query) = query.map_err(|e| ApiError::from_query_rejection(&e))?;
    let members = state.hub.presence_stored(&channel, query.cursor).await?;
    Ok(Json(members.page()).into_response())
}

/// `GET /api/channels/{channel}/presence/stats`: clients and distinct users.
pub async fn presence_stats(
    State(state): State<AppState>,
    Path(channel): Path<String>,
) -> Result<Json<PresenceStats>, ApiError> {
    let channel = channel_name(&channel)?;
    Ok(Json(state.hub.presence_stats_stored(&channel).await?))
}

/// `GET /api/stats`: live figures as flat JSON numbers (plus disconnects by reason).
pub async fn stats(State(state): State<AppState>) -> Json<StatsBody> {
    let hub = &state.hub;
    let stats = hub.stats();
    Json(StatsBody {
        connections: hub.client_count(),
        websocket: stats.connections(TransportKind::WebSocket),
        long_poll: stats.connections(TransportKind::LongPoll),
        long_poll_sessions: state.long_poll.session_count(),
        channels: hub.channel_count(),
        published: stats.published(),
        deliveries: stats.deliveries(),
        replayed: stats.replayed(),
        evicted_slow: stats.disconnects(DisconnectReason::Slow),
        rejected_over_capacity: stats.rejected_over_capacity(),
        rejected_overloaded: stats.rejected_overloaded(),
        rejected_too_many_channels: stats.rejected_too_many_channels(),
        rejected_rate_limited: stats.rejected_rate_limited(),
        rejected_too_many_connections: stats.rejected_too_many_connections(),
        history_bytes: hub.history_bytes(),
        history_shed: stats.history_shed(),
        lagging_clients: hub.lagging_clients(),
        max_connections: hub.config().max_connections,
        uptime_seconds: state.started.elapsed().as_secs(),
        disconnects: DisconnectReason::ALL
            .iter()
            .map(|r| (r.as_str(), stats.disconnects(*r)))
            .collect(),
        users: hub.user_count(),
        webhook_sent: stats.webhooks.sent.get(),
        webhook_failed: stats.webhooks.failed.get(),
        webhook_dropped: stats.webhooks.dropped.get(),
        direct_writes: stats.direct.writes.get(),
        direct_frames: stats.direct.frames.get(),
        direct_handed_back: stats.direct.handed_back.get(),
    })
}

/// `GET /metrics`: Prometheus text exposition.
pub async fn metrics(State(state): State<AppState>) -> Response {
    state.hub.refresh_gauges();
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.hub.stats().encode_prometheus(),
    )
        .into_response()
}
