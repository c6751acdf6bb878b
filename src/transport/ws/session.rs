//! One WebSocket connection after its handshake: the loop that waits on three things — the
//! client's queue, the socket, one timer — and the closing handshake that tells the client
//! why it ends.
//!
//! The loop's state is part of every idle connection's task, so what is rarely pending (a
//! write, a flush, a ping) is boxed when awaited, and the task stays under 1 KiB (a test
//! below guards it).

use std::ops::ControlFlow;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::{sleep_until, timeout, Instant, Sleep};
use tokio_tungstenite::tungstenite::error::ProtocolError;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;

use crate::hub::{Client, DisconnectReason, Frame, Hub, Pop};
use crate::transport::dispatch;
use crate::transport::rate::FrameLimits;

use super::frame_writer::{close_frame, FrameWriter};
use super::{WebSockets, WsConfig};

/// Frames taken from the queue per write. Bounds the write buffer to this many frames while
/// still turning a backlog into few syscalls.
const MAX_FRAMES_PER_WRITE: usize = 64;

/// A write of fewer frames than this waits one scheduler turn for more to arrive.
const YIELD_BELOW_FRAMES: usize = 16;

/// How long a closing connection waits for the peer's close frame before dropping the socket.
const CLOSE_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(2);

/// Why the loop goes on or ends: `Break` carries the reason the connection ends.
type Step = ControlFlow<DisconnectReason>;

impl WebSockets {
    /// The task that serves an accepted connection until it ends, then closes it with the
    /// reason; `held` (a socket's place in a count) is kept until then.
    ///
    /// A task of its own, spawned once the handshake is done: the task is each idle
    /// connection's largest allocation, sized by the largest state of its future, so it
    /// carries only what the session needs (three handles, not the whole transport; not the
    /// sniffing, handshake or HTTP states of the task that accepted the socket).
    ///
    /// `direct`: the hub's flushers may write published frames to this socket while the
    /// session is parked (`hub::direct`); the session parks whenever it waits.
    pub(super) fn session<S, H>(
        &self,
        ws: Box<WebSocketStream<S>>,
        client: Arc<Client>,
        held: H,
        direct: bool,
    ) -> impl std::future::Future<Output = ()> + Send + 'static
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
        H: Send + 'static,
    {
        let now = Instant::now();
        // Built here and moved into the task whole: passed to an async fn instead, each
        // argument would take a slot of its own in the task beside its moved-in copy.
        let mut session = Session {
            next_ping: now + self.config.ping_interval,
            hub: self.hub.clone(),
            limits: self.limits.frames.clone(),
            config: self.config.clone(),
            client,
            ws,
            writer: FrameWriter::default(),
            batch: Vec::new(),
            direct,
            last_seen: now,
        };
        async move {
            let ended = session.drive().await;
            let client = &session.client;
            session.hub.disconnect(client.id, ended);
            // If someone else ended the client first (a publisher evicting it as slow,
            // shutdown), their reason is the one the client hears.
            let reason = client.disconnect_reason().unwrap_or(ended);
            let id = client.id;
            Box::pin(session.close(reason)).await;
            tracing::debug!(client_id = %id, transport = "websocket", %reason, "connection ended");
            drop(held);
        }
    }
}

struct Session<S> {
    hub: Hub,
    limits: FrameLimits,
    config: Arc<WsConfig>,
    client: Arc<Client>,
    /// Boxed: inline, its 320 bytes would be part of the task's every state.
    ws: Box<WebSocketStream<S>>,
    writer: FrameWriter,
    /// Frames taken from the queue for the next write (empty between writes).
    batch: Vec<Frame>,
    /// Parks while it waits: a flusher writes published frames meanwhile.
    direct: bool,
    /// When anything last arrived from the client (for the idle timeout).
    last_seen: Instant,
    next_ping: Instant,
}

impl<S> Session<S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    /// The connection loop; returns why it ended.
    async fn drive(&mut self) -> DisconnectReason {
        // One timer per connection serves both pings and the idle check: it is re-armed only
        // when it fires, not on every frame received.
        let timer = sleep_until(self.next_timer());
        tokio::pin!(timer);
        loop {
            if self.direct {
                // Nothing of ours is half-written here: every step finishes its writes.
                self.client.park();
            }
            // No cancellation branch here: `Hub::disconnect` (and so shutdown) closes the
            // queue, which wakes `ready()`. Polling a token on every wake-up costs a lock.
            let woke = tokio::select! {
                biased;
                () = self.client.queue.ready() => Woke::Queue,
                incoming = self.ws.next() => Woke::Socket(incoming),
                () = &mut timer => Woke::Timer,
            };
            let step = match self.take_back().await {
                ControlFlow::Break(reason) => ControlFlow::Break(reason),
                ControlFlow::Continue(()) => match woke {
                    Woke::Queue => self.deliver().await,
                    Woke::Socket(incoming) => self.receive(incoming).await,
                    Woke::Timer => self.tick(timer.as_mut()).await,
                },
            };
            if let ControlFlow::Break(reason) = step {
                return reason;
            }
        }
    }

    /// Takes the socket back from the flushers before writing anything: finishes a frame a
    /// flusher wrote only part of.
    async fn take_back(&mut self) -> Step {
        if self.reclaim_socket() {
            return self.write_loaded().await;
        }
        ControlFlow::Continue(())
    }

    /// Unparks the queue; a frame a flusher cut short is loaded into the writer (unless it
    /// holds a batch already, which cannot be: the session parks only with nothing pending).
    /// `true` when there is such a frame to finish.
    fn reclaim_socket(&mut self) -> bool {
        if !self.direct {
            return false;
        }
        let Some((frame, written)) = self.client.unpark() else {
            return false;
        };
        if !self.writer.has_pending() {
            self.writer.load_from(vec![frame], written);
        }
        true
    }

    fn next_timer(&self) -> Instant {
        self.next_ping
            .min(self.last_seen + self.config.idle_timeout)
    }

    /// Takes what is queued and writes it to the socket.
    async fn deliver(&mut self) -> Step {
        self.take_queued(MAX_FRAMES_PER_WRITE)?;
        if self.batch.len() < YIELD_BELOW_FRAMES {
            // Let the tasks already queued run first: when the hub is busy, they are
            // publishes whose frames then share this write (one syscall for several frames);
            // when it is idle, this returns at once.
            Box::pin(tokio::task::yield_now()).await;
            self.take_queued(MAX_FRAMES_PER_WRITE - self.batch.len())?;
        }
        self.writer.load(std::mem::take(&mut self.batch));
        self.write_loaded().await
    }

    /// Writes what the writer holds.
    async fn write_loaded(&mut self) -> Step {
        // Boxed, like every rarely-pending step: a future held inline is part of every
        // connection's task, idle or not.
        let written = Box::pin(write_batch(
            &mut self.writer,
            self.ws.get_mut(),
            &self.client,
            self.config.write_timeout,
        ))
        .await;
        match written {
            Some(reason) => ControlFlow::Break(reason),
            None => ControlFlow::Continue(()),
        }
    }

    fn take_queued(&mut self, max: usize) -> Step {
        match self.hub.take(&self.client, &mut self.batch, max) {
            Pop::Closed(reason) => ControlFlow::Break(reason),
            Pop::Frames | Pop::Empty => ControlFlow::Continue(()),
        }
    }

    /// Handles what the socket delivered.
    async fn receive(&mut self, incoming: Option<Result<Message, WsError>>) -> Step {
        let message = match incoming {
            None => return ControlFlow::Break(DisconnectReason::ClientClosed),
            Some(Err(error)) => return ControlFlow::Break(reason_for(&error)),
            Some(Ok(message)) => message,
        };
        self.last_seen = Instant::now();
        match message {
            Message::Text(text) => {
                dispatch::handle_text(&self.hub, &self.limits, &self.client, text.as_str())
            }
            Message::Binary(_) => dispatch::handle_binary(&self.hub, &self.limits, &self.client),
            Message::Close(frame) => return ControlFlow::Break(close_reason(frame.as_ref())),
            // tungstenite queued the pong; send it now, so our own frame writes never have to
            // check for it.
            Message::Ping(_) => return self.within_write_timeout(Control::Flush).await,
            // Pongs only prove liveness.
            Message::Pong(_) | Message::Frame(_) => {}
        }
        ControlFlow::Continue(())
    }

    /// The timer fired: close an idle client, or ping, then re-arm.
    async fn tick(&mut self, timer: Pin<&mut Sleep>) -> Step {
        let now = Instant::now();
        if now >= self.last_seen + self.config.idle_timeout {
            return ControlFlow::Break(DisconnectReason::IdleTimeout);
        }
        if now >= self.next_ping {
            self.within_write_timeout(Control::Ping).await?;
            self.next_ping = now + self.config.ping_interval;
        }
        timer.reset(self.next_timer());
        ControlFlow::Continue(())
    }

    /// Sends a control frame (or flushes tungstenite's queued pong) within the write timeout.
    async fn within_write_timeout(&mut self, control: Control) -> Step {
        let ws = &mut self.ws;
        let send = async move {
            match control {
                Control::Flush => ws.flush().await,
                Control::Ping => ws.send(Message::Ping(Default::default())).await,
            }
        };
        match Box::pin(timeout(self.config.write_timeout, send)).await {
            Ok(Ok(())) => ControlFlow::Continue(()),
            Ok(Err(error)) => ControlFlow::Break(reason_for(&error)),
            Err(_) => ControlFlow::Break(DisconnectReason::WriteTimeout),
        }
    }

    /// Tells the client why it is being closed, as far as its socket allows.
    async fn close(&mut self, reason: DisconnectReason) {
        let limit = self.config.write_timeout;
        if reason == DisconnectReason::ClientClosed {
            // tungstenite queued the reply to the client's close frame; send it.
            let _ = timeout(limit, self.ws.flush()).await;
            return;
        }
        if reason == DisconnectReason::WriteTimeout {
            // A stalled socket cannot carry a close frame.
            return;
        }
        let close_frame = close_frame(reason.close_code(), reason.as_str());
        // A frame a flusher cut short is finished before the close frame.
        self.reclaim_socket();
        let writer = &mut self.writer;
        let io = self.ws.get_mut();
        // Written raw, past tungstenite: once a client's close frame has arrived (one with a
        // forbidden code included), tungstenite sends only the reply it queued itself, never
        // a close frame of ours. Nothing of tungstenite's is half-written at this point: every
        // control frame it sends is flushed before the loop goes on, or the connection ends
        // as `write_timeout`, which sends no close frame.
        let close = async {
            // Finish a batch cut short by an eviction, so the close frame lands on a frame
            // boundary; a client that still does not read gets the write timeout.
            writer.write(&mut *io).await?;
            io.write_all(&close_frame).await?;
            io.flush().await
        };
        if let Ok(Ok(())) = timeout(limit, close).await {
            // Lingering close: read and discard (raw bytes: after a read error the frame
            // parser may be mid-frame) until the peer closes too. Closing with unread input
            // would make the kernel send a reset, which can overtake our close frame, and the
            // client would see 1006 instead of the reason.
            let io = self.ws.get_mut();
            let _ = timeout(CLOSE_HANDSHAKE_TIMEOUT, async {
                let mut sink = [0u8; 1024];
                while let Ok(1..) = io.read(&mut sink).await {}
            })
            .await;
        }
    }
}

/// What woke the connection loop.
enum Woke {
    Queue,
    Socket(Option<Result<Message, WsError>>),
    Timer,
}

/// A control frame the loop sends on its own.
#[derive(Clone, Copy)]
enum Control {
    /// Flushes the pong tungstenite queued in answer to a client's ping.
    Flush,
    /// A server ping (keep-alive; its pong proves the client alive).
    Ping,
}

/// Writes the loaded batch within `limit`; stops early if the client is disconnected while
/// its socket is full. `None` when all was written.
async fn write_batch<S: AsyncWrite + Unpin>(
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
        reason = client.queue.closed() => Some(reason),
    }
}

/// Why a client's close frame ends the connection. tungstenite hands over a close code that
/// RFC 6455 forbids on the wire (below 1000, 1004–1006, 1015, 1016–2999, 5000 and up) as
/// 1002 with the reason "Protocol violation", its own substitute: that is the client breaking
/// the protocol. (A client that sends exactly that frame itself cannot be told apart, and is
/// answered the same.) Any other close frame, or none, is the client closing.
fn close_reason(frame: Option<&CloseFrame>) -> DisconnectReason {
    match frame {
        Some(frame)
            if frame.code == CloseCode::Protocol
                && frame.reason.as_str() == "Protocol violation" =>
        {
            DisconnectReason::ProtocolError
        }
        _ => DisconnectReason::ClientClosed,
    }
}

/// Maps a tungstenite error to the documented close reason.
fn reason_for(error: &WsError) -> DisconnectReason {
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

#[cfg(test)]
mod task_size {
    use super::super::direct;
    use super::super::lazy_read::LazyRead;
    use super::super::shared::{SharedTcp, SocketSink};
    use super::*;
    use crate::hub::TransportKind;
    use crate::transport::admission::SourceSlot;
    use tokio_tungstenite::tungstenite::protocol::Role;
    use tokio_util::task::TaskTracker;

    /// Every idle WebSocket connection is one task whose size is the largest state of this
    /// future. Held-across-await buffers, large error types or unboxed one-off steps inflate
    /// it for every connection (this guard caught 1.6 KiB of such waste). Structural, not a
    /// timing: sizes depend only on the code. 640 bytes keeps tokio's task cell (the future
    /// plus ~100 bytes, in multiples of 128) in jemalloc's 768-byte class; one more step of
    /// 128 costs every idle connection 128 bytes.
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
            crate::transport::Limits::off(),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let _client = tokio::net::TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (stream, _) = listener.accept().await.unwrap();
        let sniff = std::mem::size_of_val(&direct::sniff(
            &stream,
            second,
            &tokio_util::sync::CancellationToken::new(),
        ));
        let client = websockets.hub.register(TransportKind::WebSocket).unwrap();
        let ws = Box::new(
            WebSocketStream::from_raw_socket(
                LazyRead::new(SharedTcp(Arc::new(SocketSink(stream))), Vec::new()),
                Role::Server,
                Some(websockets.ws_config()),
            )
            .await,
        );
        let stream_box = std::mem::size_of_val(&*ws);
        // What the direct path's task holds besides: the client's place in its address's count
        // and the socket's in the server's (an `Arc` like this one).
        let held = (None::<SourceSlot>, Arc::new(()));
        let session = std::mem::size_of_val(&websockets.session(ws, client, held, true));
        eprintln!(
            "sniff: {sniff} bytes, session: {session} bytes, boxed stream: {stream_box} bytes"
        );
        assert!(sniff <= 256, "sniff future is {sniff} bytes");
        assert!(session <= 640, "session future is {session} bytes");
    }
}
