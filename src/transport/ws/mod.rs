//! WebSocket transport: upgrade → register → one task per connection that drains the
//! client's queue to the socket (many frames fed, one flush) and turns incoming frames into
//! hub calls, with server pings, an idle timeout and a write timeout. The task has one exit:
//! `hub.disconnect(id, reason)`, whose reason becomes the close code.
//!
//! The upgrade is done by hand on hyper's `OnUpgrade` (not axum's `ws` extractor) so the
//! connection is a plain `tokio_tungstenite::WebSocketStream` whose buffers we size, and so
//! the connection task is spawned on the server's `TaskTracker` for graceful shutdown.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use futures_util::{SinkExt, StreamExt};
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::AsyncReadExt;
use tokio::time::{sleep_until, timeout, Instant};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;
use tokio_util::task::TaskTracker;

use crate::hub::{ChannelName, Client, DisconnectReason, Frame, Hub, HubError, TransportKind};

pub mod direct;
mod frame_writer;

use frame_writer::FrameWriter;

use super::dispatch;
use super::protocol::FrameError;
use super::TransportError;

/// Frames taken from the queue per write. Bounds the write buffer to this many frames while
/// still turning a backlog into few syscalls.
const MAX_FRAMES_PER_WRITE: usize = 64;

/// A write of fewer frames than this waits one scheduler turn for more to arrive.
const YIELD_BELOW_FRAMES: usize = 16;

/// How long a closing connection waits for the peer's close frame before dropping the socket.
const CLOSE_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(2);

/// Read buffer per connection. Client frames are small control frames, and the buffer is held
/// for the connection's whole life: tungstenite's default (128 KiB), or even 4 KiB, would
/// dominate an idle connection's memory. Larger frames still arrive whole (the buffer grows
/// to the frame's length, up to the maximum message size).
const READ_BUFFER_SIZE: usize = 512;

#[derive(Clone, Debug)]
pub struct WsConfig {
    pub ping_interval: Duration,
    pub idle_timeout: Duration,
    pub write_timeout: Duration,
    pub handshake_timeout: Duration,
    pub max_message_size: usize,
}

/// Turns a refusal into an HTTP status and JSON body; supplied by the HTTP layer, which owns
/// the mapping of errors to statuses, for handshakes that never reach hyper.
pub type RejectionRenderer = Arc<dyn Fn(TransportError) -> (u16, String) + Send + Sync>;

#[derive(Clone)]
pub struct WebSockets {
    hub: Hub,
    tracker: TaskTracker,
    config: Arc<WsConfig>,
    render_rejection: RejectionRenderer,
}

impl WebSockets {
    pub fn new(
        hub: Hub,
        tracker: TaskTracker,
        config: WsConfig,
        render_rejection: RejectionRenderer,
    ) -> Self {
        Self {
            hub,
            tracker,
            config: Arc::new(config),
            render_rejection,
        }
    }

    fn ws_config(&self) -> WebSocketConfig {
        WebSocketConfig::default()
            .read_buffer_size(READ_BUFFER_SIZE)
            .max_message_size(Some(self.config.max_message_size))
            .max_frame_size(Some(self.config.max_message_size))
    }

    /// Checks a new WebSocket client against the hub's limits and registers it.
    fn admit(&self, channels: &[ChannelName]) -> Result<Arc<Client>, TransportError> {
        let hub = &self.hub;
        if hub.is_shutting_down() {
            return Err(TransportError::ShuttingDown);
        }
        if channels.len() > hub.config().max_subscriptions {
            return Err(HubError::TooManySubscriptions(hub.config().max_subscriptions).into());
        }
        Ok(hub.register(TransportKind::WebSocket)?)
    }

    /// Serves a connection whose opening [`direct::sniff`] found to be an upgrade of `/ws`:
    /// tungstenite does the handshake on the bare socket; refusals get the same HTTP status
    /// and JSON body as on the hyper path.
    pub async fn accept_direct(&self, stream: tokio::net::TcpStream) {
        let mut admitted: Option<(Arc<Client>, Vec<ChannelName>)> = None;
        // The callback's signature (and its large error type) is tungstenite's.
        #[allow(clippy::result_large_err)]
        let callback =
            |request: &tokio_tungstenite::tungstenite::handshake::server::Request,
             response: tokio_tungstenite::tungstenite::handshake::server::Response| {
                let result = channels_from_query(request.uri().query().unwrap_or(""))
                    .and_then(|channels| self.admit(&channels).map(|client| (client, channels)));
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

    /// The `?channel=` subscriptions of the upgrade request, made once the socket is ours.
    fn subscribe_at_connect(&self, client: &Arc<Client>, channels: &[ChannelName]) {
        for channel in channels {
            // Limits were checked before the upgrade; a failure here means the client was
            // already evicted, which the connection loop reports.
            let _ = self.hub.subscribe(client, channel, None, None);
        }
    }

    fn rejection(
        &self,
        error: TransportError,
    ) -> tokio_tungstenite::tungstenite::handshake::server::ErrorResponse {
        let (status, body) = (self.render_rejection)(error);
        let mut response =
            tokio_tungstenite::tungstenite::handshake::server::ErrorResponse::new(Some(body));
        *response.status_mut() = tokio_tungstenite::tungstenite::http::StatusCode::from_u16(status)
            .unwrap_or(tokio_tungstenite::tungstenite::http::StatusCode::BAD_REQUEST);
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        response
    }

    /// Answers an upgrade request with `101 Switching Protocols` and spawns the connection
    /// task, or refuses it with an error before any socket is taken over.
    pub fn upgrade(
        &self,
        mut request: Request<Body>,
        channels: Vec<ChannelName>,
    ) -> Result<Response<Body>, TransportError> {
        let accept_key = websocket_accept_key(request.headers())?;
        let client = self.admit(&channels)?;
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

    /// The stream comes boxed: held by value, an async fn's argument takes two slots in its
    /// state (the argument and the moved-in local), 300 bytes each, in every connection.
    async fn run<S>(&self, mut ws: Box<WebSocketStream<S>>, client: Arc<Client>)
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    {
        let mut writer = FrameWriter::default();
        let ended = self.drive(&mut ws, &mut writer, &client).await;
        self.hub.disconnect(client.id, ended);
        // If someone else ended the client first (a publisher evicting it as slow, shutdown),
        // their reason is the one the client hears.
        let reason = client.disconnect_reason().unwrap_or(ended);
        Box::pin(self.close(&mut ws, &mut writer, reason)).await;
        tracing::debug!(client_id = %client.id, transport = "websocket", %reason, "connection ended");
    }

    /// Tells the client why it is being closed, as far as its socket allows.
    async fn close<S>(
        &self,
        ws: &mut WebSocketStream<S>,
        writer: &mut FrameWriter,
        reason: DisconnectReason,
    ) where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    {
        if reason == DisconnectReason::ClientClosed {
            // tungstenite queued the reply to the client's close frame; send it.
            let _ = timeout(self.config.write_timeout, ws.flush()).await;
        } else if reason != DisconnectReason::WriteTimeout {
            let frame = CloseFrame {
                code: CloseCode::from(reason.close_code()),
                reason: reason.as_str().into(),
            };
            let close = async {
                // Finish a batch cut short by an eviction, so the close frame lands on a frame
                // boundary; a client that still does not read gets the write timeout.
                writer.write(ws.get_mut()).await.map_err(WsError::Io)?;
                ws.close(Some(frame)).await
            };
            if let Ok(Ok(())) = timeout(self.config.write_timeout, close).await {
                // Lingering close: read and discard (raw bytes: after a read error the
                // frame parser may be mid-frame) until the peer closes too. Closing with
                // unread input would make the kernel send a reset, which can overtake our
                // close frame, and the client would see 1006 instead of the reason.
                let io = ws.get_mut();
                let _ = timeout(CLOSE_HANDSHAKE_TIMEOUT, async {
                    let mut sink = [0u8; 1024];
                    while let Ok(1..) = io.read(&mut sink).await {}
                })
                .await;
            }
        }
    }

    /// The connection loop; returns why it ended.
    async fn drive<S>(
        &self,
        ws: &mut WebSocketStream<S>,
        writer: &mut FrameWriter,
        client: &Arc<Client>,
    ) -> DisconnectReason
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    {
        let config = &self.config;
        let mut batch: Vec<Frame> = Vec::new();
        let mut last_seen = Instant::now();
        let mut next_ping = last_seen + config.ping_interval;
        // One timer per connection serves both pings and the idle check: it is re-armed only
        // when it fires, not on every frame received.
        let timer = sleep_until(next_ping.min(last_seen + config.idle_timeout));
        tokio::pin!(timer);
        loop {
            // No cancellation branch here: `Hub::disconnect` (and so shutdown) closes the
            // queue, which wakes `ready()`. Polling a token on every wake-up costs a lock.
            tokio::select! {
                biased;
                () = client.queue.ready() => {
                    if client.queue.try_pop_batch(&mut batch, MAX_FRAMES_PER_WRITE) == Some(false) {
                        return client.disconnect_reason().unwrap_or(DisconnectReason::Internal);
                    }
                    if batch.len() < YIELD_BELOW_FRAMES {
                        // Let the tasks already queued run first: when the hub is busy, they
                        // are publishes whose frames then share this write (one syscall for
                        // several frames); when it is idle, this returns at once.
                        Box::pin(tokio::task::yield_now()).await;
                        let room = MAX_FRAMES_PER_WRITE - batch.len();
                        if client.queue.try_pop_batch(&mut batch, room) == Some(false) {
                            return client.disconnect_reason().unwrap_or(DisconnectReason::Internal);
                        }
                    }
                    writer.load(std::mem::take(&mut batch));
                    // Boxed, like every rarely-pending step below: a future held inline is
                    // part of every connection's task, idle or not.
                    if let Some(ended) = Box::pin(write_batch(writer, ws.get_mut(), client, config.write_timeout)).await {
                        return ended;
                    }
                }
                incoming = ws.next() => {
                    let message = match incoming {
                        None => return DisconnectReason::ClientClosed,
                        Some(Err(error)) => return reason_for(&error),
                        Some(Ok(message)) => message,
                    };
                    last_seen = Instant::now();
                    match message {
                        Message::Text(text) => dispatch::handle_text(&self.hub, client, text.as_str()),
                        Message::Binary(_) => dispatch::send(&self.hub, client, FrameError::new(
                            "binary_unsupported",
                            "crier speaks JSON text frames only; binary frames are ignored",
                            None,
                        ).to_frame()),
                        Message::Close(_) => return DisconnectReason::ClientClosed,
                        // tungstenite queued the pong; send it now, so our own frame writes
                        // never have to check for it.
                        Message::Ping(_) => match Box::pin(timeout(config.write_timeout, ws.flush())).await {
                            Ok(Ok(())) => {}
                            Ok(Err(error)) => return reason_for(&error),
                            Err(_) => return DisconnectReason::WriteTimeout,
                        },
                        // Pongs only prove liveness.
                        Message::Pong(_) | Message::Frame(_) => {}
                    }
                }
                () = &mut timer => {
                    let now = Instant::now();
                    if now >= last_seen + config.idle_timeout {
                        return DisconnectReason::IdleTimeout;
                    }
                    if now >= next_ping {
                        match Box::pin(timeout(config.write_timeout, ws.send(Message::Ping(Default::default())))).await {
                            Ok(Ok(())) => {}
                            Ok(Err(error)) => return reason_for(&error),
                            Err(_) => return DisconnectReason::WriteTimeout,
                        }
                        next_ping = now + config.ping_interval;
                    }
                    timer.as_mut().reset(next_ping.min(last_seen + config.idle_timeout));
                }
            }
        }
    }
}

/// Writes the loaded batch within `limit`; stops early if the client is disconnected while
/// its socket is full. `None` when all was written.
async fn write_batch<S: tokio::io::AsyncWrite + Unpin>(
    writer: &mut FrameWriter,
    io: &mut S,
    client: &Client,
    limit: Duration,
) -> Option<DisconnectReason> {
    // A client evicted while its socket is full must not keep this task (and its frames)
    // alive until the write timeout: stop writing at once. The writer remembers how far it
    // got, so the close frame can follow on a frame boundary.
    tokio::select! {
        written = timeout(limit, writer.write(io)) => match written {
            Ok(Ok(())) => None,
            Ok(Err(error)) => Some(reason_for(&WsError::Io(error))),
            Err(_) => Some(DisconnectReason::WriteTimeout),
        },
        () = client.queue.closed() => Some(client.disconnect_reason().unwrap_or(DisconnectReason::Shutdown)),
    }
}

/// The repeated `channel` query parameter of `/ws`, validated.
pub fn channels_from_query(query: &str) -> Result<Vec<ChannelName>, TransportError> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query)
        .map_err(|e| TransportError::BadRequest(format!("bad query string: {e}")))?;
    pairs
        .iter()
        .filter(|(key, _)| key == "channel")
        .map(|(_, value)| ChannelName::parse(value).map_err(TransportError::from))
        .collect()
}

/// Maps a tungstenite error to the documented close reason.
fn reason_for(error: &WsError) -> DisconnectReason {
    use tokio_tungstenite::tungstenite::error::ProtocolError;
    match error {
        WsError::ConnectionClosed | WsError::AlreadyClosed | WsError::Io(_) => {
            DisconnectReason::ClientClosed
        }
        WsError::Capacity(_) => DisconnectReason::MessageTooLarge,
        WsError::Utf8(_) => DisconnectReason::InvalidUtf8,
        WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake) => {
            DisconnectReason::ClientClosed
        }
        WsError::Protocol(_) => DisconnectReason::ProtocolError,
        _ => DisconnectReason::Internal,
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

#[cfg(test)]
mod task_size {
    use super::*;

    /// Every idle WebSocket connection is one task whose size is the largest state of this
    /// future. Held-across-await buffers, large error types or unboxed one-off steps inflate
    /// it for every connection (this guard caught 1.6 KiB of such waste). Structural, not a
    /// timing: sizes depend only on the code.
    #[tokio::test]
    async fn a_connection_task_stays_small() {
        let hub = Hub::new(
            crate::hub::HubConfig::default(),
            tokio_util::sync::CancellationToken::new(),
        );
        let second = Duration::from_secs(1);
        let websockets = WebSockets::new(
            hub,
            TaskTracker::new(),
            WsConfig {
                ping_interval: second,
                idle_timeout: second,
                write_timeout: second,
                handshake_timeout: second,
                max_message_size: 1000,
            },
            Arc::new(|_| (400, String::new())),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let _client = tokio::net::TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (stream, _) = listener.accept().await.unwrap();
        let sniff = std::mem::size_of_val(&direct::sniff(&stream, second));
        let connection = std::mem::size_of_val(&websockets.accept_direct(stream));
        eprintln!("sniff: {sniff} bytes, connection: {connection} bytes");
        assert!(sniff <= 256, "sniff future is {sniff} bytes");
        assert!(
            connection <= 1024,
            "connection future is {connection} bytes"
        );
    }
}
