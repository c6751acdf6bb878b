//! Admission and the two handshakes. A connection [`super::direct::sniff`] recognised as an
//! upgrade of `/ws` is handshaken by tungstenite on the bare socket ([`WebSockets::accept_direct`]);
//! any other upgrade request reaches [`WebSockets::upgrade`] through hyper and axum. Both admit
//! the client by the same rules before the socket is taken over, and refuse with the same HTTP
//! status and JSON body.

use std::sync::Arc;

use axum::body::Body;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::handshake::server::{
    ErrorResponse, Request as HandshakeRequest, Response as HandshakeResponse,
};
use tokio_tungstenite::tungstenite::http::StatusCode as HandshakeStatus;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::WebSocketStream;

use crate::hub::{ChannelName, Client, DisconnectReason, HubError, TransportKind};
use crate::protocol::{query, server};

use super::super::identity::{check_channels, token_of};
use super::{TransportError, WebSockets};

impl WebSockets {
    /// Checks a new WebSocket client against its token and the hub's limits, and registers
    /// it.
    fn admit(
        &self,
        channels: &[ChannelName],
        query: Option<&str>,
        headers: &HeaderMap,
    ) -> Result<Arc<Client>, TransportError> {
        let hub = &self.hub;
        if hub.is_shutting_down() {
            return Err(TransportError::ShuttingDown);
        }
        self.identity.check_origin(headers)?;
        let principal = self
            .identity
            .authenticate(token_of(query, headers).as_deref())?;
        check_channels(principal.as_ref(), channels)?;
        let max = hub.config().max_subscriptions;
        if channels.len() > max {
            return Err(HubError::TooManySubscriptions(max).into());
        }
        let client = hub.register(TransportKind::WebSocket)?;
        self.identity.attach(&client, principal);
        Ok(client)
    }

    /// Serves a connection whose opening [`super::direct::sniff`] found to be an upgrade of
    /// `/ws`: tungstenite does the handshake on the bare socket; refusals get the same HTTP
    /// status and JSON body as on the hyper path.
    pub async fn accept_direct(&self, stream: tokio::net::TcpStream) {
        let mut admitted: Option<(Arc<Client>, Vec<ChannelName>)> = None;
        // The callback's signature (and its large error type) is tungstenite's.
        #[allow(clippy::result_large_err)]
        let callback = |request: &HandshakeRequest, response: HandshakeResponse| {
            let query = request.uri().query();
            let result = query::channels_from_query(query.unwrap_or(""))
                .map_err(TransportError::from)
                .and_then(|channels| {
                    self.admit(&channels, query, request.headers())
                        .map(|client| (client, channels))
                });
            match result {
                Ok(accepted) => {
                    admitted = Some(accepted);
                    Ok(response)
                }
                Err(error) => Err(self.rejection(error)),
            }
        };
        // Boxed: the handshake's state is large and only needed for a moment.
        let handshake = Box::pin(tokio_tungstenite::accept_hdr_async_with_config(
            stream,
            callback,
            Some(self.ws_config()),
        ));
        let outcome = timeout(self.config.handshake_timeout, handshake).await;
        // Unpacked before the long await below, so the handshake's result type (large error
        // variants included) is not kept in the connection's state.
        let (ws, client) = match (outcome, admitted) {
            (Ok(Ok(ws)), Some((client, channels))) => {
                self.subscribe_at_connect(&client, &channels);
                (Box::new(ws), client)
            }
            (outcome, admitted) => {
                if let Some((client, _)) = admitted {
                    self.hub
                        .disconnect(client.id, DisconnectReason::ClientClosed);
                }
                if let Ok(Err(error)) = outcome {
                    tracing::debug!(%error, "websocket handshake failed");
                }
                return;
            }
        };
        self.run(ws, client).await;
    }

    /// Answers an upgrade request that came through hyper with `101 Switching Protocols` and
    /// spawns the connection task, or refuses it before any socket is taken over.
    pub fn upgrade(
        &self,
        mut request: Request<Body>,
        channels: Vec<ChannelName>,
    ) -> Result<Response<Body>, TransportError> {
        let accept_key = websocket_accept_key(request.headers())?;
        let client = self.admit(&channels, request.uri().query(), request.headers())?;
        let on_upgrade = hyper::upgrade::on(&mut request);
        let this = self.clone();
        self.tracker.spawn(async move {
            let upgraded = match timeout(this.config.handshake_timeout, on_upgrade).await {
                Ok(Ok(upgraded)) => upgraded,
                Ok(Err(error)) => {
                    tracing::debug!(client_id = %client.id, %error, "websocket upgrade failed");
                    this.hub
                        .disconnect(client.id, DisconnectReason::ClientClosed);
                    return;
                }
                Err(_) => {
                    tracing::debug!(client_id = %client.id, "websocket upgrade timed out");
                    this.hub
                        .disconnect(client.id, DisconnectReason::IdleTimeout);
                    return;
                }
            };
            let ws = WebSocketStream::from_raw_socket(
                TokioIo::new(upgraded),
                Role::Server,
                Some(this.ws_config()),
            )
            .await;
            this.subscribe_at_connect(&client, &channels);
            this.run(Box::new(ws), client).await;
        });
        Response::builder()
            .status(StatusCode::SWITCHING_PROTOCOLS)
            .header(header::CONNECTION, "upgrade")
            .header(header::UPGRADE, "websocket")
            .header(header::SEC_WEBSOCKET_ACCEPT, accept_key)
            .body(Body::empty())
            .map_err(|e| TransportError::BadRequest(e.to_string()))
    }

    /// The `?channel=` subscriptions of the upgrade request, made once the socket is ours.
    fn subscribe_at_connect(&self, client: &Arc<Client>, channels: &[ChannelName]) {
        for channel in channels {
            // Limits were checked before the upgrade; a failure here means the client was
            // already evicted, which the connection loop reports.
            let _ = self
                .hub
                .subscribe(client, channel, None, &|s| server::subscribed(s, None));
        }
    }

    /// A refusal on the direct path, rendered like the HTTP layer renders it on hyper's.
    fn rejection(&self, error: TransportError) -> ErrorResponse {
        let (status, body) = (self.render_rejection)(error);
        let mut response = ErrorResponse::new(Some(body));
        *response.status_mut() =
            HandshakeStatus::from_u16(status).unwrap_or(HandshakeStatus::BAD_REQUEST);
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        response
    }
}

/// Validates the upgrade headers (RFC 6455 §4.2.1) and returns `Sec-WebSocket-Accept`.
fn websocket_accept_key(headers: &HeaderMap) -> Result<HeaderValue, TransportError> {
    let has_token = |name: header::HeaderName, token: &str| {
        headers.get_all(name).iter().any(|v| {
            v.to_str()
                .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
        })
    };
    if !has_token(header::UPGRADE, "websocket") {
        return Err(TransportError::NotWebSocket("missing `Upgrade: websocket`"));
    }
    if !has_token(header::CONNECTION, "upgrade") {
        return Err(TransportError::NotWebSocket(
            "missing `Connection: upgrade`",
        ));
    }
    if headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .map(HeaderValue::as_bytes)
        != Some(b"13")
    {
        return Err(TransportError::NotWebSocket(
            "`Sec-WebSocket-Version` must be 13",
        ));
    }
    let key = headers
        .get(header::SEC_WEBSOCKET_KEY)
        .ok_or(TransportError::NotWebSocket("missing `Sec-WebSocket-Key`"))?;
    HeaderValue::from_str(&derive_accept_key(key.as_bytes()))
        .map_err(|_| TransportError::NotWebSocket("bad `Sec-WebSocket-Key`"))
}
