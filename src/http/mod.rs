//! HTTP wiring only: the router, the publish/history/stats API, and the thin handlers that
//! hand WebSocket upgrades and long-poll requests to their transports, and the backend's
//! control API over users and channels (`control`). Errors from every
//! layer become status codes in [`error`].

mod api;
mod control;
pub mod deadline;
pub mod error;
mod fallback;
pub mod limits;
pub mod lp;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderValue};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use tower_http::services::ServeDir;
use tower_http::set_header::SetResponseHeaderLayer;

use crate::auth::BackendGuard;
use crate::config::Config;
use crate::hub::Hub;
use crate::protocol::query;
use crate::transport::identity::Identity;
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
    /// Who may use `/api/*` and `/metrics`.
    pub backend: Arc<BackendGuard>,
    /// Publishes per second per backend (`--api-publish-rate`).
    pub backend_publishes: Arc<limits::BackendPublishes>,
    /// Token mode (or open mode) of both transports.
    pub identity: Identity,
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
    // The backend API: API keys, or loopback peers only (see `crate::auth::api_key`).
    let api = Router::new()
        .route("/api/publish", post(api::publish_json))
        .route("/api/publish/{channel}", post(api::publish_body))
        .route("/api/channels/{channel}/history", get(api::history))
        .route("/api/channels/{channel}/presence", get(api::presence))
        .route(
            "/api/channels/{channel}/presence/stats",
            get(api::presence_stats),
        )
        .route(
            "/api/channels/{channel}/disconnect",
            post(control::disconnect_channel),
        )
        .route("/api/users/{user}", get(control::user))
        .route(
            "/api/users/{user}/disconnect",
            post(control::disconnect_user),
        )
        .route(
            "/api/users/{user}/unsubscribe",
            post(control::unsubscribe_user),
        )
        .route("/api/stats", get(api::stats))
        .route("/metrics", get(api::metrics))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            require_backend,
        ))
        .layer(no_store());
    let long_poll = Router::new()
        .route("/lp/connect", post(lp::connect))
        .route("/lp/poll", get(lp::poll))
        .route("/lp/send", post(lp::send))
        .route("/lp/close", post(lp::close))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            require_origin,
        ))
        .layer(no_buffering)
        .layer(no_store());
    let body_limit = axum::extract::DefaultBodyLimit::max(state.config.max_message_size);
    Router::new()
        .route("/healthz", get(api::healthz))
        .route("/ws", get(websocket))
        .merge(api)
        .merge(long_poll)
        .method_not_allowed_fallback(fallback::method_not_allowed)
        .fallback_service(
            // `ServeDir` refuses `..` (also percent-encoded, and `%2f` is decoded before it
            // looks) and answers only GET and HEAD; its refusals go to the fallback.
            ServeDir::new(&state.config.static_dir)
                .call_fallback_on_method_not_allowed(true)
                .fallback(axum::handler::HandlerWithoutStateExt::into_service(
                    fallback::static_fallback,
                )),
        )
        .layer(axum::middleware::map_response(fallback::json_errors))
        .layer(body_limit)
        .with_state(state)
}

/// Refuses backend requests without the right API key (or, with none configured, from a
/// peer not on loopback). A request with no recorded peer counts as remote.
async fn require_backend(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let authorization = request
        .headers()
        .get(header::AUTHORIZATION)
        .map(HeaderValue::as_bytes);
    match state.backend.check(authorization, peer) {
        Ok(backend) => {
            let mut request = request;
            request.extensions_mut().insert(backend);
            next.run(request).await
        }
        Err(e) => ApiError::from(e).into_response(),
    }
}

/// Refuses long-poll requests from browser pages of other origins (`origin_forbidden`).
async fn require_origin(State(state): State<AppState>, request: Request, next: Next) -> Response {
    match state.identity.check_origin(request.headers()) {
        Ok(()) => next.run(request).await,
        Err(e) => ApiError::from(e).into_response(),
    }
}

/// The address a request came from, as the server recorded it (`ConnectInfo`).
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
