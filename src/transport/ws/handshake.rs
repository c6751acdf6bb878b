//! Admission and the two handshakes. A connection [`super::direct::sniff`] recognised as a
//! valid upgrade of `/ws` is answered on the bare socket ([`WebSockets::accept_direct`]); any
//! other request for `/ws` reaches [`WebSockets::upgrade`] through hyper and axum. Both check
//! the upgrade headers with one function ([`validate_upgrade`]), admit the client by the same
//! rules before the socket is taken over, and refuse with the same HTTP status and JSON body.

use std::net::IpAddr;
use std::sync::Arc;

use axum::body::Body;
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::WebSocketStream;

use crate::hub::{ChannelName, Client, DisconnectReason, HubError, TransportKind};
use crate::protocol::{query, server};

use super::super::admission::SourceSlot;
use super::super::identity::{check_channels, token_of};
use super::lazy_read::LazyRead;
use super::shared::{SharedTcp, SocketSink};
use super::upgrade::{
    accept_key, httparse_headers, switching_protocols, validate_upgrade, MAX_HEADERS,
};
use super::{TransportError, WebSockets};

/// An admitted client and its place in its address's count, which the connection holds to
/// its end.
type Admitted = (Arc<Client>, Option<SourceSlot>);

impl WebSockets {
    /// Checks a new WebSocket client from `peer` against its token, the hub's limits and its
    /// address's, and registers it.
    fn admit(
        &self,
        channels: &[ChannelName],
        query: Option<&str>,
        headers: &HeaderMap,
        peer: Option<IpAddr>,
    ) -> Result<Admitted, TransportError> {
        let hub = &self.hub;
        if hub.is_shutting_down() {
            return Err(TransportError::ShuttingDown);
        }
        self.identity.check_origin(headers)?;
        let principal = self
            .identity
            .authenticate(token_of(query, headers).as_deref())?;
        check_channels(hub.config(), principal.as_ref(), channels)?;
        let max = hub.config().max_subscriptions;
        if channels.len() > max {
            return Err(HubError::TooManySubscriptions(max).into());
        }
        let slot = self.limits.admission.admit(peer).inspect_err(|_| {
            hub.stats().rejected_too_many_connections.inc();
        })?;
        let client = hub.register(TransportKind::WebSocket)?;
        self.identity.attach(hub, &client, principal);
        Ok((client, slot))
    }

    /// Serves a connection whose opening [`super::direct::sniff`] found to be a valid upgrade
    /// of `/ws`: `read` holds the bytes the sniffer took off the socket, the first `head_len`
    /// of them the head. Answers it on the bare socket, then spawns the connection's task,
    /// which keeps `held` (the socket's place in the server's count) until the connection
    /// ends. Refusals get the same HTTP status and JSON body as on the hyper path.
    pub async fn accept_direct<H: Send + 'static>(
        &self,
        stream: TcpStream,
        read: Vec<u8>,
        head_len: usize,
        held: H,
    ) {
        // Boxed: the handshake's state is only needed for a moment.
        let Some((ws, (client, slot), direct)) =
            Box::pin(self.handshake_direct(stream, read, head_len)).await
        else {
            return;
        };
        self.tracker
            .spawn(self.session(ws, client, (slot, held), direct));
    }

    /// The direct handshake. We answer it ourselves rather than through tungstenite's
    /// handshake, because tungstenite applies rules of its own (only the first `Connection`
    /// and `Upgrade` header, `Upgrade` exactly `websocket`, nothing after the head) and closes
    /// the socket without a word on any head they refuse. With the sniffer choosing this path
    /// by [`validate_upgrade`], the one function the hyper path applies too, a head is
    /// admitted or refused by the same rules whichever path it takes.
    async fn handshake_direct(
        &self,
        mut stream: TcpStream,
        mut head: Vec<u8>,
        head_len: usize,
    ) -> Option<(Box<WebSocketStream<LazyRead<SharedTcp>>>, Admitted, bool)> {
        let limit = self.config.handshake_timeout;
        let peer = stream.peer_addr().ok().map(|addr| addr.ip());
        // As on hyper's path (`server::serve_connection`): without it, a write that follows
        // one the client has not yet acknowledged waits for its delayed ACK, ~40 ms on Linux
        // (a `subscribed` and its catch-up, a reply after a message).
        let _ = stream.set_nodelay(true);
        // What followed the head is the client's first WebSocket bytes (it should have
        // waited for our 101; it is read as the start of the stream all the same).
        let early = head.split_off(head_len);
        let admitted = self.admit_head(&head, peer);
        drop(head);
        let ((client, slot), channels, accept_key) = match admitted {
            Ok(admitted) => admitted,
            Err(error) => {
                let refusal = self.refusal(error);
                let _ = timeout(limit, async {
                    stream.write_all(&refusal).await?;
                    stream.shutdown().await
                })
                .await;
                return None;
            }
        };
        let response = switching_protocols(&accept_key);
        match timeout(limit, stream.write_all(&response)).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => {
                tracing::debug!(client_id = %client.id, %error, "websocket upgrade failed");
                self.hub
                    .disconnect(client.id, DisconnectReason::ClientClosed);
                return None;
            }
            Err(_) => {
                tracing::debug!(client_id = %client.id, "websocket upgrade timed out");
                self.hub
                    .disconnect(client.id, DisconnectReason::IdleTimeout);
                return None;
            }
        }
        // Shared with a flusher, which writes published frames while the session is parked.
        let sink = Arc::new(SocketSink(stream));
        let ws = WebSocketStream::from_raw_socket(
            LazyRead::new(SharedTcp(sink.clone()), early),
            Role::Server,
            Some(self.ws_config()),
        )
        .await;
        self.subscribe_at_connect(&client, &channels).await;
        let direct = self.hub.attach_sink(&client, sink);
        Some((Box::new(ws), (client, slot), direct))
    }

    /// Parses a request head the sniffer chose for the direct path and admits its client,
    /// checking what the hyper path checks, in the same order: the query, the upgrade
    /// headers, the limits.
    fn admit_head(
        &self,
        head: &[u8],
        peer: Option<IpAddr>,
    ) -> Result<(Admitted, Vec<ChannelName>, HeaderValue), TransportError> {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut request = httparse::Request::new(&mut headers);
        // The sniffer parsed this very head before choosing this path.
        if !matches!(request.parse(head), Ok(httparse::Status::Complete(_))) {
            return Err(TransportError::NotWebSocket("unreadable request head"));
        }
        let query = request
            .path
            .and_then(|path| path.split_once('?'))
            .map_or("", |(_, query)| query);
        let channels = query::channels_from_query(query)?;
        let key = validate_upgrade(request.version == Some(1), || {
            httparse_headers(request.headers)
        })?;
        let accept_key = accept_key(key)?;
        // Token and origin checks read a header map, as on the hyper path.
        let mut header_map = HeaderMap::with_capacity(request.headers.len());
        for h in request.headers.iter() {
            if let (Ok(name), Ok(value)) = (
                HeaderName::from_bytes(h.name.as_bytes()),
                HeaderValue::from_bytes(h.value),
            ) {
                header_map.append(name, value);
            }
        }
        let query = (!query.is_empty()).then_some(query);
        let admitted = self.admit(&channels, query, &header_map, peer)?;
        Ok((admitted, channels, accept_key))
    }

    /// Answers an upgrade request that came through hyper with `101 Switching Protocols` and
    /// spawns the connection task, or refuses it before any socket is taken over. `peer`: the
    /// address the connection came from.
    pub fn upgrade(
        &self,
        mut request: Request<Body>,
        channels: Vec<ChannelName>,
        peer: Option<IpAddr>,
    ) -> Result<Response<Body>, TransportError> {
        let http11 = request.version() == hyper::Version::HTTP_11;
        let headers = request.headers();
        let accept_key = accept_key(validate_upgrade(http11, || {
            headers
                .iter()
                .map(|(name, value)| (name.as_str().as_bytes(), value.as_bytes()))
        })?)?;
        let (client, slot) =
            self.admit(&channels, request.uri().query(), request.headers(), peer)?;
        let on_upgrade = hyper::upgrade::on(&mut request);
        let this = self.clone();
        self.tracker.spawn(async move {
            let _slot = slot;
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
                LazyRead::new(TokioIo::new(upgraded), Vec::new()),
                Role::Server,
                Some(this.ws_config()),
            )
            .await;
            this.subscribe_at_connect(&client, &channels).await;
            // hyper's upgraded stream cannot be shared with a flusher: this session writes
            // everything itself.
            this.session(Box::new(ws), client, (), false).await;
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
    async fn subscribe_at_connect(&self, client: &Arc<Client>, channels: &[ChannelName]) {
        if self.hub.cluster().is_some() {
            // Boxed: only cluster nodes wait here, and a future held inline would enlarge
            // every connection's task.
            Box::pin(self.subscribe_at_connect_joined(client, channels)).await;
            return;
        }
        for channel in channels {
            // Limits were checked before the upgrade; a failure here means the client was
            // already evicted, which the connection loop reports.
            let _ = self
                .hub
                .subscribe(client, channel, None, &|s| server::subscribed(s, None));
        }
    }

    /// With a cluster broker: each subscribe waits for the node to follow the channel; one
    /// the broker cannot serve now is answered with an `error` frame (the client retries).
    async fn subscribe_at_connect_joined(&self, client: &Arc<Client>, channels: &[ChannelName]) {
        for channel in channels {
            let reply = |s: &crate::protocol::Subscribed<'_>| server::subscribed(s, None);
            if let Err(error) = self
                .hub
                .subscribe_joined(client, channel, None, false, &reply)
                .await
            {
                self.hub.send(
                    client,
                    server::error(error.code(), &error.to_string(), None),
                );
            }
        }
    }

    /// A refusal on the direct path: the status and JSON body the HTTP layer renders on
    /// hyper's, as a complete response after which the connection closes.
    fn refusal(&self, error: TransportError) -> Vec<u8> {
        let retry_after = error
            .code()
            .retry_after_secs()
            .map(|secs| format!("retry-after: {secs}\r\n"))
            .unwrap_or_default();
        let (status, body) = (self.render_rejection)(error);
        let reason = StatusCode::from_u16(status)
            .ok()
            .and_then(|status| status.canonical_reason())
            .unwrap_or("");
        format!(
            "HTTP/1.1 {status} {reason}\r\n\
             content-type: application/json\r\n\
             cache-control: no-store\r\n\
             {retry_after}\
             content-length: {}\r\n\
             connection: close\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    }
}
