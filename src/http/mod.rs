//! HTTP wiring only: the router, the publish/history/stats API, and the thin handlers that
//! hand WebSocket upgrades and long-poll requests to their transports. Errors from every
//! layer become status codes in [`error`].

mod api;
pub mod error;
mod lp;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use tower_http::services::ServeDir;
use tower_http::set_header::SetResponseHeaderLayer;

use crate::config::Config;
use crate::hub::Hub;
use crate::protocol::query;
use crate::transport::long_poll::LongPoll;
use crate::transport::ws::WebSockets;

use error::ApiError;

/// What every handler can reach; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub hub: Hub,
    pub websockets: WebSockets,
    pub long_poll: LongPoll,
    pub config: Arc<Config>,
    pub started: Instant,
}

pub fn router(state: AppState) -> Router {
    let no_store = || {
        SetResponseHeaderLayer::overriding(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        )
    };
    // A long-poll hold must reach the client as soon as it is answered: tell proxies such as
    // nginx not to buffer it.
    let no_buffering = SetResponseHeaderLayer::overriding(
        header::HeaderName::from_static("x-accel-buffering"),
        HeaderValue::from_static("no"),
    );
    let api = Router::new()
        .route("/api/publish", post(api::publish_json))
        .route("/api/publish/{channel}", post(api::publish_body))
        .route("/api/channels/{channel}/history", get(api::history))
        .route("/api/stats", get(api::stats))
        .layer(no_store());
    let long_poll = Router::new()
        .route("/lp/connect", post(lp::connect))
        .route("/lp/poll", get(lp::poll))
        .route("/lp/send", post(lp::send))
        .route("/lp/close", post(lp::close))
        .layer(no_buffering)
        .layer(no_store());
    let body_limit = axum::extract::DefaultBodyLimit::max(state.config.max_message_size);
    Router::new()
        .route("/healthz", get(api::healthz))
        .route("/metrics", get(api::metrics))
        .route("/ws", get(websocket))
        .merge(api)
        .merge(long_poll)
        .fallback_service(ServeDir::new(&state.config.static_dir))
        .layer(body_limit)
        .with_state(state)
}

/// A request as the router takes it, tagged with the address of the connection it came on
/// (for the per-address limits), which hyper does not record.
pub fn request_from(
    peer: Option<SocketAddr>,
    request: hyper::Request<hyper::body::Incoming>,
) -> Request<Body> {
    let mut request = request.map(Body::new);
    if let Some(peer) = peer {
        request.extensions_mut().insert(ConnectInfo(peer));
    }
    request
}

/// The address a request came from, as [`request_from`] recorded it.
fn peer_ip(request: &Request<Body>) -> Option<IpAddr> {
    request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip())
}

/// `GET /ws?channel=a&channel=b`
async fn websocket(State(state): State<AppState>, request: Request<Body>) -> Response {
    let channels = match query::channels_from_query(request.uri().query().unwrap_or("")) {
        Ok(channels) => channels,
        Err(e) => return ApiError::from(e).into_response(),
    };
    let peer = peer_ip(&request);
    match state.websockets.upgrade(request, channels, peer) {
        Ok(response) => response,
        Err(e) => ApiError::from(e).into_response(),
    }
}
