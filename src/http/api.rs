//! The backend-facing API: publish, history, stats, metrics, health.

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;
use serde_json::value::RawValue;

use crate::hub::{ChannelName, DisconnectReason, HubError, Published, TransportKind};

use super::error::ApiError;
use super::AppState;

pub async fn healthz(State(state): State<AppState>) -> Response {
    if state.hub.is_shutting_down() {
        return ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "shutting_down",
            "the hub is shutting down",
        )
        .into_response();
    }
    Json(json!({"status": "ok"})).into_response()
}

fn channel_name(name: &str) -> Result<ChannelName, ApiError> {
    ChannelName::parse(name).map_err(|e| HubError::from(e).into())
}

fn published_json(p: &Published) -> serde_json::Value {
    json!({"channel": p.channel.as_str(), "epoch": p.epoch.as_str(), "offset": p.offset, "enqueued": p.enqueued})
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
    Path(channel): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let channel = channel_name(&channel)?;
    let body =
        body.map_err(|e| ApiError::from_body_rejection(&e, state.config.max_message_size))?;
    let text = std::str::from_utf8(&body)
        .map_err(|e| ApiError::bad_request("invalid_utf8", format!("body is not UTF-8: {e}")))?;
    let data = if is_json(&headers) {
        let raw: &RawValue = serde_json::from_str(text).map_err(|e| {
            ApiError::bad_request("bad_json", format!("body is not valid JSON: {e}"))
        })?;
        raw.get().to_owned()
    } else {
        serde_json::to_string(text).unwrap_or_default()
    };
    state.hub.check_load()?;
    let published = state.hub.publish(&channel, &data);
    Ok(Json(published_json(&published)))
}

#[derive(Deserialize)]
struct PublishRequest<'a> {
    #[serde(default)]
    channel: Option<String>,
    #[serde(default)]
    channels: Option<Vec<String>>,
    // `Some` even for JSON `null`, which is a legitimate payload.
    #[serde(
        default,
        borrow,
        deserialize_with = "crate::transport::protocol::present"
    )]
    data: Option<&'a RawValue>,
}

/// `POST /api/publish` with `{"channel": …, "data": …}` or `{"channels": […], "data": …}`.
pub async fn publish_json(
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body =
        body.map_err(|e| ApiError::from_body_rejection(&e, state.config.max_message_size))?;
    let request: PublishRequest =
        serde_json::from_slice(&body).map_err(|e| ApiError::from_json_error(&e))?;
    let data = request
        .data
        .ok_or_else(|| ApiError::bad_request("bad_request", "missing field `data`"))?;
    state.hub.check_load()?;
    match (request.channel, request.channels) {
        (Some(channel), None) => {
            let channel = channel_name(&channel)?;
            let published = state.hub.publish(&channel, data.get());
            Ok(Json(published_json(&published)).into_response())
        }
        (None, Some(channels)) if !channels.is_empty() => {
            // Validate all names first so a bad one publishes nothing.
            let names = channels
                .iter()
                .map(|c| channel_name(c))
                .collect::<Result<Vec<_>, _>>()?;
            let results: Vec<_> = names
                .iter()
                .map(|name| published_json(&state.hub.publish(name, data.get())))
                .collect();
            Ok(Json(json!({ "results": results })).into_response())
        }
        _ => Err(ApiError::bad_request(
            "bad_request",
            "give exactly one of `channel` or a non-empty `channels`",
        )),
    }
}

#[derive(Deserialize)]
pub struct HistoryQuery {
    #[serde(default)]
    since: u64,
    #[serde(default)]
    limit: Option<usize>,
}

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
    let page = state.hub.history(&channel, query.since, limit);
    let epoch = page.as_ref().map_or_else(
        || "null".to_owned(),
        |p| format!("\"{}\"", p.epoch.as_str()),
    );
    let last_offset = page.as_ref().map_or(0, |p| p.last_offset);
    // Channel names and epochs never need escaping; the frames are JSON already.
    let mut body =
        format!(r#"{{"channel":"{channel}","epoch":{epoch},"offset":{last_offset},"messages":"#)
            .into_bytes();
    let frames = page.map(|p| p.frames).unwrap_or_default();
    crate::hub::message::write_json_array(&mut body, &frames);
    body.push(b'}');
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

/// `GET /api/stats`: live figures as flat JSON numbers (plus disconnects by reason).
pub async fn stats(State(state): State<AppState>) -> Json<serde_json::Value> {
    let hub = &state.hub;
    let stats = hub.stats();
    let disconnects: serde_json::Map<String, serde_json::Value> = DisconnectReason::ALL
        .iter()
        .map(|r| (r.as_str().to_owned(), stats.disconnects(*r).into()))
        .collect();
    Json(json!({
        "connections": hub.client_count(),
        "websocket": stats.connections(TransportKind::WebSocket),
        "long_poll": stats.connections(TransportKind::LongPoll),
        "long_poll_sessions": state.long_poll.session_count(),
        "channels": hub.channel_count(),
        "published": stats.published(),
        "deliveries": stats.deliveries(),
        "replayed": stats.replayed(),
        "evicted_slow": stats.disconnects(DisconnectReason::Slow),
        "rejected_over_capacity": stats.rejected_over_capacity(),
        "rejected_overloaded": stats.rejected_overloaded(),
        "lagging_clients": hub.lagging_clients(),
        "max_connections": hub.config().max_connections,
        "uptime_seconds": state.started.elapsed().as_secs(),
        "disconnects": disconnects,
    }))
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
