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
use tokio::time::{sleep_until, timeout, Instant};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;
use tokio_util::task::TaskTracker;

use crate::hub::{ChannelName, Client, DisconnectReason, Frame, Hub, HubError, TransportKind};

mod frame_writer;

use frame_writer::FrameWriter;

use super::dispatch;
use super::protocol::FrameError;
use super::TransportError;

/// Frames taken from the queue per write. Bounds the write buffer to this many frames while
/// still turning a backlog into few syscalls.
const MAX_FRAMES_PER_WRITE: usize = 64;

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

#[derive(Clone)]
pub struct WebSockets {
    hub: Hub,
    tracker: TaskTracker,
    config: Arc<WsConfig>,
}

impl WebSockets {
    pub fn new(hub: Hub, tracker: TaskTracker, config: WsConfig) -> Self {
        Self {
            hub,
            tracker,
            config: Arc::new(config),
        }
    }

    /// Answers an upgrade request with `101 Switching Protocols` and spawns the connection
    /// task, or refuses it with an error before any socket is taken over.
    pub fn upgrade(
        &self,
        mut request: Request<Body>,
        channels: Vec<ChannelName>,
    ) -> Result<Response<Body>, TransportError> {
        let hub = &self.hub;
        if hub.is_shutting_down() {
            return Err(TransportError::ShuttingDown);
        }
        let accept_key = websocket_accept_key(request.headers())?;
        if channels.len() > hub.config().max_subscriptions {
            return Err(HubError::TooManySubscriptions(hub.config().max_subscriptions).into());
        }
        let on_upgrade = hyper::upgrade::on(&mut request);
        let client = hub.register(TransportKind::WebSocket)?;
        let this = self.clone();
        self.tracker.spawn(async move {
            let upgraded = match timeout(this.config.handshake_timeout, on_upgrade).await {
                Ok(Ok(upgraded)) => upgraded,
                Ok(Err(error)) => {
                    tracing::debug!(client_id = %client.id, %error, "websocket upgrade failed");
                    hub_disconnect(&this.hub, &client, DisconnectReason::ClientClosed);
                    return;
                }
                Err(_) => {
                    tracing::debug!(client_id = %client.id, "websocket upgrade timed out");
                    hub_disconnect(&this.hub, &client, DisconnectReason::IdleTimeout);
                    return;
                }
            };
            let ws_config = WebSocketConfig::default()
                .read_buffer_size(READ_BUFFER_SIZE)
                .max_message_size(Some(this.config.max_message_size))
                .max_frame_size(Some(this.config.max_message_size));
            let ws = WebSocketStream::from_raw_socket(
                TokioIo::new(upgraded),
                Role::Server,
                Some(ws_config),
            )
            .await;
            for channel in &channels {
                // Limits were checked before the upgrade; a failure here means the client was
                // already evicted, which the connection loop reports.
                let _ = this.hub.subscribe(&client, channel, None, None);
            }
            this.run(ws, client).await;
        });
        Response::builder()
            .status(StatusCode::SWITCHING_PROTOCOLS)
            .header(header::CONNECTION, "upgrade")
            .header(header::UPGRADE, "websocket")
            .header(header::SEC_WEBSOCKET_ACCEPT, accept_key)
            .body(Body::empty())
            .map_err(|e| TransportError::BadRequest(e.to_string()))
    }

    async fn run<S>(&self, mut ws: WebSocketStream<S>, client: Arc<Client>)
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    {
        let mut writer = FrameWriter::default();
        let ended = self.drive(&mut ws, &mut writer, &client).await;
        hub_disconnect(&self.hub, &client, ended);
        // If someone else ended the client first (a publisher evicting it as slow, shutdown),
        // their reason is the one the client hears.
        let reason = client.disconnect_reason().unwrap_or(ended);
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
                // Read until the peer answers the close (or goes), so the socket is not reset
                // while our close frame is still unread on the other side.
                let _ = timeout(CLOSE_HANDSHAKE_TIMEOUT, async {
                    while let Some(Ok(_)) = ws.next().await {}
                })
                .await;
            }
        }
        tracing::debug!(client_id = %client.id, transport = "websocket", %reason, "connection ended");
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
                    writer.load(std::mem::take(&mut batch));
                    // tungstenite's own frames (pongs) never sit half-written between ours:
                    // they are flushed as soon as they are queued, in the read branch below.
                    let write = writer.write(ws.get_mut());
                    // A client evicted while its socket is full must not keep this task (and
                    // its frames) alive until the write timeout: stop writing at once. The
                    // writer remembers how far it got, so the close frame can follow the
                    // frames on a frame boundary.
                    tokio::select! {
                        written = timeout(config.write_timeout, write) => match written {
                            Ok(Ok(())) => {}
                            Ok(Err(error)) => return reason_for(&WsError::Io(error)),
                            Err(_) => return DisconnectReason::WriteTimeout,
                        },
                        () = client.queue.closed() => {
                            return client.disconnect_reason().unwrap_or(DisconnectReason::Shutdown);
                        }
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
                        Message::Ping(_) => match timeout(config.write_timeout, ws.flush()).await {
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
                        match timeout(config.write_timeout, ws.send(Message::Ping(Default::default()))).await {
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

fn hub_disconnect(hub: &Hub, client: &Client, reason: DisconnectReason) {
    hub.disconnect(client.id, reason);
}

/// Maps a tungstenite error to the documented close reason.
fn reason_for(error: &WsError) -> DisconnectReason {
    use tokio_tungstenite::tungstenite::error::{CapacityError, ProtocolError};
    match error {
        WsError::ConnectionClosed | WsError::AlreadyClosed | WsError::Io(_) => {
            DisconnectReason::ClientClosed
        }
        WsError::Capacity(CapacityError::MessageTooLong { .. }) => {
            DisconnectReason::MessageTooLarge
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
