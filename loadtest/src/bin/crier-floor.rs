//! crier-floor: the simplest fan-out server that `crier-loadtest fanout` can drive, to measure
//! the floor — what one delivery costs on this machine when the hub does nothing but write the
//! same frames to the same sockets. See `loadtest/FLOOR.md`.
//!
//! It speaks just enough of crier's protocol (docs/PROTOCOL.md):
//! - `GET /ws?channel=NAME` — a hand-written WebSocket handshake, a `subscribed` frame, then only
//!   `message` frames. Incoming frames are read and ignored, except a close (answered, then the
//!   connection ends). No pings, no timers, no `subscribe` frames, no resume.
//! - `POST /api/publish/NAME` — HTTP/1.1 keep-alive; the body (checked to be JSON) becomes
//!   `data`; the frame (WebSocket header + JSON) is encoded once into one shared buffer and
//!   queued to every subscriber of the channel; reply `{"channel","epoch","offset","enqueued"}`.
//! - `GET /api/stats`, `GET /healthz` — minimal JSON.
//!
//! One task per subscriber, one bounded tokio mpsc queue of shared frames each, no history.
//! A subscriber whose queue is full is dropped from its channel (its task then closes it with
//! 4000 `slow`). Writer modes (`--mode`):
//! - `one-per-write`: every frame is written with its own `write` syscall;
//! - `batched`: everything queued (up to `--max-batch` frames) goes out in one `writev`;
//! - `inline`: the publisher writes to idle subscribers' sockets itself (no task wake-up).

use std::collections::HashMap;
use std::io::IoSlice;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use clap::{Parser, ValueEnum};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

/// One encoded WebSocket text frame (header + JSON), shared by every subscriber it goes to.
type Frame = Arc<[u8]>;

const EPOCH: &str = "floor";
/// Largest HTTP request head accepted.
const MAX_HEAD: usize = 16 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Mode {
    /// One write syscall per frame.
    OnePerWrite,
    /// Everything queued for a subscriber in one vectored write.
    Batched,
    /// The publisher writes each frame to an idle subscriber's socket itself (`try_write`,
    /// under the channel lock, so order holds); only a socket that would block gets its frames
    /// queued and its task woken to drain them. No wake-up per delivery.
    Inline,
}

/// The floor: a minimal fan-out server for `crier-loadtest fanout`.
#[derive(Debug, Parser)]
#[command(name = "crier-floor", version)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8090")]
    bind: SocketAddr,
    /// How each subscriber's writer feeds its socket.
    #[arg(long, value_enum, default_value_t = Mode::Batched)]
    mode: Mode,
    /// Frames queued per subscriber before it is dropped (crier's default --queue-capacity).
    #[arg(long, default_value_t = 1024)]
    queue_capacity: usize,
    /// `batched`: at most this many frames per vectored write (IOV_MAX is 1024).
    #[arg(long, default_value_t = 256)]
    max_batch: usize,
    /// Largest publish body accepted, bytes.
    #[arg(long, default_value_t = 65_536)]
    max_message_size: usize,
    /// Worker threads (default: one per core, like `#[tokio::main]`).
    #[arg(long)]
    threads: Option<usize>,
}

#[derive(Default)]
struct Channel {
    offset: u64,
    subscribers: Vec<mpsc::Sender<Frame>>,
    /// `--mode inline`: subscribers the publisher writes to itself.
    inline: Vec<Arc<InlineSub>>,
}

/// `--mode inline`: a subscriber's socket, shared by its task (reads, draining a backlog) and
/// the publishers (writes while nothing is pending).
struct InlineSub {
    stream: Arc<TcpStream>,
    pending: Mutex<Pending>,
    wake: tokio::sync::Notify,
}

#[derive(Default)]
struct Pending {
    frames: std::collections::VecDeque<Frame>,
    /// Bytes of the first pending frame already written.
    first_written: usize,
    /// Full or failed: dropped from its channel; the task closes it.
    gone: bool,
}

impl InlineSub {
    /// Delivers one frame: written at once when nothing is pending and the socket takes it
    /// whole, else queued for the task.
    fn offer(&self, frame: &Frame, capacity: usize) -> Offer {
        let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        if p.gone {
            return Offer::Gone;
        }
        if p.frames.is_empty() {
            match self.stream.try_write(frame) {
                Ok(n) if n == frame.len() => return Offer::Kept,
                Ok(n) => p.first_written = n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => p.first_written = 0,
                Err(_) => {
                    p.gone = true;
                    drop(p);
                    self.wake.notify_one();
                    return Offer::Gone;
                }
            }
            p.frames.push_back(frame.clone());
            drop(p);
            self.wake.notify_one();
            return Offer::Kept;
        }
        if p.frames.len() >= capacity {
            p.gone = true;
            drop(p);
            self.wake.notify_one();
            return Offer::Full;
        }
        p.frames.push_back(frame.clone());
        Offer::Kept
    }
}

/// What became of a frame offered to an inline subscriber.
enum Offer {
    Kept,
    /// Its backlog is full: dropped as slow.
    Full,
    /// Its connection ended.
    Gone,
}

struct Hub {
    args: Args,
    channels: Mutex<HashMap<String, Arc<Mutex<Channel>>>>,
    connections: AtomicI64,
    websocket: AtomicI64,
    published: AtomicU64,
    deliveries: AtomicU64,
    evicted_slow: AtomicU64,
    /// Socket writes of `message` frames, and the frames they carried (flushed from each
    /// subscriber's local counts every 64 writes and when it ends).
    writes: AtomicU64,
    frames_written: AtomicU64,
}

impl Hub {
    fn channel(&self, name: &str) -> Arc<Mutex<Channel>> {
        let mut map = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(name.to_owned()).or_default().clone()
    }

    /// Assigns the next offset, encodes the frame once and queues it to every subscriber.
    /// Returns (offset, enqueued).
    fn publish(&self, name: &str, data: &[u8]) -> (u64, usize) {
        let channel = self.channel(name);
        let mut ch = channel.lock().unwrap_or_else(|p| p.into_inner());
        ch.offset += 1;
        let offset = ch.offset;
        let frame: Frame = ws_text_frame(&message_json(name, offset, data)).into();
        let mut enqueued = 0;
        let capacity = self.args.queue_capacity.max(1);
        ch.inline.retain(|sub| match sub.offer(&frame, capacity) {
            Offer::Kept => {
                enqueued += 1;
                true
            }
            Offer::Full => {
                self.evicted_slow.fetch_add(1, Ordering::Relaxed);
                false
            }
            Offer::Gone => false,
        });
        ch.subscribers
            .retain(|tx| match tx.try_send(frame.clone()) {
                Ok(()) => {
                    enqueued += 1;
                    true
                }
                Err(mpsc::error::TrySendError::Full(_)) => {
                    self.evicted_slow.fetch_add(1, Ordering::Relaxed);
                    false
                }
                Err(mpsc::error::TrySendError::Closed(_)) => false,
            });
        drop(ch);
        self.published.fetch_add(1, Ordering::Relaxed);
        self.deliveries
            .fetch_add(enqueued as u64, Ordering::Relaxed);
        (offset, enqueued)
    }

    /// Adds a subscriber; returns the channel's offset at that moment. Frames published after
    /// this go into `tx`, so writing `subscribed` before reading the queue keeps the order.
    fn subscribe(&self, name: &str, tx: &mpsc::Sender<Frame>) -> u64 {
        let channel = self.channel(name);
        let mut ch = channel.lock().unwrap_or_else(|p| p.into_inner());
        ch.subscribers.push(tx.clone());
        ch.offset
    }
}

fn main() -> Result<()> {
    let args = Args::parse();
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => eprintln!("crier-floor: open-files limit {n}"),
        Err(e) => eprintln!("crier-floor: could not raise the open-files limit: {e}"),
    }
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    rt.enable_all();
    if let Some(n) = args.threads {
        rt.worker_threads(n.max(1));
    }
    rt.build()?.block_on(serve(args))
}

async fn serve(args: Args) -> Result<()> {
    let listener = TcpListener::bind(args.bind)
        .await
        .with_context(|| format!("cannot listen on {}", args.bind))?;
    eprintln!(
        "crier-floor: listening on http://{} (mode {:?}, queue {}, pid {})",
        listener.local_addr()?,
        args.mode,
        args.queue_capacity,
        std::process::id()
    );
    let hub = Arc::new(Hub {
        args,
        channels: Mutex::default(),
        connections: AtomicI64::new(0),
        websocket: AtomicI64::new(0),
        published: AtomicU64::new(0),
        deliveries: AtomicU64::new(0),
        evicted_slow: AtomicU64::new(0),
        writes: AtomicU64::new(0),
        frames_written: AtomicU64::new(0),
    });
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(a) => a,
            Err(e) => {
                // EMFILE at the open-files ceiling: back off instead of spinning.
                eprintln!("crier-floor: accept: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let hub = hub.clone();
        tokio::spawn(async move {
            hub.connections.fetch_add(1, Ordering::Relaxed);
            let _ = connection(&hub, stream).await;
            hub.connections.fetch_sub(1, Ordering::Relaxed);
        });
    }
}

/// One parsed request head.
struct Request {
    method: String,
    path: String,
    content_length: usize,
    ws_key: Option<String>,
    head_len: usize,
}

fn parse_head(buf: &[u8]) -> Result<Option<Request>> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut req = httparse::Request::new(&mut headers);
    let head_len = match req.parse(buf)? {
        httparse::Status::Complete(n) => n,
        httparse::Status::Partial => return Ok(None),
    };
    let mut content_length = 0;
    let mut ws_key = None;
    let mut upgrade = false;
    for h in req.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            content_length = std::str::from_utf8(h.value)?.trim().parse()?;
        } else if h.name.eq_ignore_ascii_case("sec-websocket-key") {
            ws_key = Some(String::from_utf8_lossy(h.value).trim().to_owned());
        } else if h.name.eq_ignore_ascii_case("upgrade") {
            upgrade = h.value.eq_ignore_ascii_case(b"websocket");
        }
    }
    Ok(Some(Request {
        method: req.method.unwrap_or("").to_owned(),
        path: req.path.unwrap_or("").to_owned(),
        content_length,
        ws_key: ws_key.filter(|_| upgrade),
        head_len,
    }))
}

/// Serves HTTP/1.1 requests on one connection until it closes or becomes a WebSocket.
async fn connection(hub: &Hub, mut stream: TcpStream) -> Result<()> {
    let mut buf: Vec<u8> = Vec::with_capacity(1024);
    loop {
        let req = loop {
            if let Some(req) = parse_head(&buf)? {
                break req;
            }
            if buf.len() > MAX_HEAD {
                anyhow::bail!("request head too large");
            }
            if !read_more(&mut stream, &mut buf).await? {
                return Ok(());
            }
        };
        if req.content_length > hub.args.max_message_size {
            respond(
                &mut stream,
                413,
                r#"{"error":{"code":"message_too_large"}}"#,
            )
            .await?;
            return Ok(());
        }
        let total = req.head_len + req.content_length;
        while buf.len() < total {
            if !read_more(&mut stream, &mut buf).await? {
                return Ok(());
            }
        }
        let (path, query) = req.path.split_once('?').unwrap_or((&req.path, ""));
        match (req.method.as_str(), path) {
            ("GET", "/ws") => {
                let Some(key) = req.ws_key.as_deref() else {
                    respond(&mut stream, 400, r#"{"error":{"code":"not_websocket"}}"#).await?;
                    continue_after(&mut buf, total);
                    continue;
                };
                let channels: Vec<&str> = query
                    .split('&')
                    .filter_map(|kv| kv.strip_prefix("channel="))
                    .collect();
                if channels.is_empty() || !channels.iter().all(|c| valid_channel(c)) {
                    respond(&mut stream, 400, r#"{"error":{"code":"invalid_channel"}}"#).await?;
                    continue_after(&mut buf, total);
                    continue;
                }
                let accept = derive_accept_key(key.as_bytes());
                let channels: Vec<String> = channels.into_iter().map(str::to_owned).collect();
                drop(buf);
                hub.websocket.fetch_add(1, Ordering::Relaxed);
                let r = subscriber(hub, stream, &accept, &channels).await;
                hub.websocket.fetch_sub(1, Ordering::Relaxed);
                return r;
            }
            ("POST", _) if path.starts_with("/api/publish/") => {
                let name = &path["/api/publish/".len()..];
                let body = &buf[req.head_len..total];
                if !valid_channel(name) {
                    respond(&mut stream, 400, r#"{"error":{"code":"invalid_channel"}}"#).await?;
                } else if serde_json::from_slice::<serde::de::IgnoredAny>(body).is_err() {
                    respond(&mut stream, 400, r#"{"error":{"code":"bad_json"}}"#).await?;
                } else {
                    let (offset, enqueued) = hub.publish(name, body);
                    let reply = format!(
                        r#"{{"channel":"{name}","epoch":"{EPOCH}","offset":{offset},"enqueued":{enqueued}}}"#
                    );
                    respond(&mut stream, 200, &reply).await?;
                }
            }
            ("GET", "/api/stats") => {
                let stats = serde_json::json!({
                    "connections": hub.connections.load(Ordering::Relaxed),
                    "websocket": hub.websocket.load(Ordering::Relaxed),
                    "channels": hub.channels.lock().unwrap_or_else(|p| p.into_inner()).len(),
                    "published": hub.published.load(Ordering::Relaxed),
                    "deliveries": hub.deliveries.load(Ordering::Relaxed),
                    "evicted_slow": hub.evicted_slow.load(Ordering::Relaxed),
                    "writes": hub.writes.load(Ordering::Relaxed),
                    "frames_written": hub.frames_written.load(Ordering::Relaxed),
                });
                respond(&mut stream, 200, &stats.to_string()).await?;
            }
            ("GET", "/healthz") => respond(&mut stream, 200, r#"{"status":"ok"}"#).await?,
            _ => respond(&mut stream, 404, r#"{"error":{"code":"not_found"}}"#).await?,
        }
        continue_after(&mut buf, total);
    }
}

fn continue_after(buf: &mut Vec<u8>, consumed: usize) {
    buf.drain(..consumed);
}

/// Reads more bytes into `buf`; false on EOF.
async fn read_more(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Result<bool> {
    buf.reserve(4096);
    Ok(stream.read_buf(buf).await? > 0)
}

async fn respond(stream: &mut TcpStream, status: u16, body: &str) -> Result<()> {
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        _ => "Payload Too Large",
    };
    let msg = format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(msg.as_bytes()).await?;
    Ok(())
}

/// PROTOCOL.md's channel-name rule: 1–128 bytes of `A–Z a–z 0–9 _ - . : @` (so a name never
/// needs escaping inside JSON).
fn valid_channel(name: &str) -> bool {
    (1..=128).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-.:@".contains(&b))
}

fn message_json(channel: &str, offset: u64, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(80 + channel.len() + data.len());
    out.extend_from_slice(b"{\"type\":\"message\",\"channel\":\"");
    out.extend_from_slice(channel.as_bytes());
    out.extend_from_slice(b"\",\"epoch\":\"");
    out.extend_from_slice(EPOCH.as_bytes());
    out.extend_from_slice(b"\",\"offset\":");
    out.extend_from_slice(offset.to_string().as_bytes());
    out.extend_from_slice(b",\"data\":");
    out.extend_from_slice(data);
    out.push(b'}');
    out
}

/// An unmasked server → client WebSocket frame (FIN, opcode 1 = text) around `payload`.
fn ws_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 10);
    out.push(0x80 | opcode);
    match payload.len() {
        n if n < 126 => out.push(n as u8),
        n if n <= 0xffff => {
            out.push(126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(payload);
    out
}

fn ws_text_frame(payload: &[u8]) -> Vec<u8> {
    ws_frame(0x1, payload)
}

fn ws_close_frame(code: u16, reason: &str) -> Vec<u8> {
    let mut p = code.to_be_bytes().to_vec();
    p.extend_from_slice(reason.as_bytes());
    ws_frame(0x8, &p)
}

/// A WebSocket subscriber: handshake reply and `subscribed` frames in one write, then the
/// queue → socket loop. Reads are only watched for EOF and a close frame.
async fn subscriber(
    hub: &Hub,
    mut stream: TcpStream,
    accept: &str,
    channels: &[String],
) -> Result<()> {
    if hub.args.mode == Mode::Inline {
        return inline_subscriber(hub, stream, accept, channels).await;
    }
    let (tx, mut rx) = mpsc::channel::<Frame>(hub.args.queue_capacity.max(1));
    let mut first = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
    )
    .into_bytes();
    for name in channels {
        let offset = hub.subscribe(name, &tx);
        let json = format!(
            r#"{{"type":"subscribed","channel":"{name}","epoch":"{EPOCH}","offset":{offset},"recovered":true}}"#
        );
        first.extend_from_slice(&ws_text_frame(json.as_bytes()));
    }
    // Only the channels hold senders now: when they all drop this one (queue full), `recv`
    // ends and the client is told `slow`.
    drop(tx);
    stream.write_all(&first).await?;
    drop(first);

    let mode = hub.args.mode;
    let max_batch = hub.args.max_batch.max(1);
    let mut batch: Vec<Frame> = Vec::new();
    let mut incoming = ClientFrames::default();
    let mut read_buf = [0u8; 256];
    let mut counts = WriteCounts {
        hub,
        writes: 0,
        frames: 0,
    };
    loop {
        tokio::select! {
            frame = rx.recv() => {
                let Some(frame) = frame else {
                    let _ = stream.write_all(&ws_close_frame(4000, "slow")).await;
                    return Ok(());
                };
                match mode {
                    Mode::OnePerWrite => {
                        stream.write_all(&frame).await?;
                        counts.add(1, 1);
                    }
                    Mode::Inline => unreachable!("inline subscribers have their own loop"),
                    Mode::Batched => {
                        batch.push(frame);
                        while batch.len() < max_batch {
                            match rx.try_recv() {
                                Ok(f) => batch.push(f),
                                Err(_) => break,
                            }
                        }
                        let writes = write_all_vectored(&mut stream, &batch).await?;
                        counts.add(writes, batch.len() as u64);
                        batch.clear();
                    }
                }
            }
            n = stream.read(&mut read_buf) => {
                let n = n?;
                if n == 0 {
                    return Ok(());
                }
                if let Some(code) = incoming.feed(&read_buf[..n]) {
                    // Client close: answer it (echoing the code) and end.
                    let _ = stream.write_all(&ws_close_frame(code, "")).await;
                    return Ok(());
                }
            }
        }
    }
}

/// `--mode inline`: the handshake reply goes out before the subscriber is visible to
/// publishers; then the task only reads (EOF, close) and drains what publishers could not
/// write at once.
async fn inline_subscriber(
    hub: &Hub,
    mut stream: TcpStream,
    accept: &str,
    channels: &[String],
) -> Result<()> {
    stream
        .write_all(
            format!(
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
            )
            .as_bytes(),
        )
        .await?;
    let sub = Arc::new(InlineSub {
        stream: Arc::new(stream),
        pending: Mutex::default(),
        wake: tokio::sync::Notify::new(),
    });
    for name in channels {
        // The `subscribed` frame is queued (not written) under the channel lock, so no
        // message of that channel can overtake it.
        let channel = hub.channel(name);
        let mut ch = channel.lock().unwrap_or_else(|p| p.into_inner());
        let json = format!(
            r#"{{"type":"subscribed","channel":"{name}","epoch":"{EPOCH}","offset":{},"recovered":true}}"#,
            ch.offset
        );
        let frame: Frame = ws_text_frame(json.as_bytes()).into();
        sub.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .frames
            .push_back(frame);
        ch.inline.push(sub.clone());
    }
    let ended = inline_loop(hub, &sub).await;
    sub.pending.lock().unwrap_or_else(|e| e.into_inner()).gone = true;
    ended
}

/// The inline subscriber's task: drain, then wait for the socket or a publisher's wake.
async fn inline_loop(hub: &Hub, sub: &InlineSub) -> Result<()> {
    let stream = &sub.stream;
    let mut incoming = ClientFrames::default();
    let mut read_buf = [0u8; 256];
    let mut counts = WriteCounts {
        hub,
        writes: 0,
        frames: 0,
    };
    loop {
        // Drain what publishers left pending.
        loop {
            let (frame, from, gone) = {
                let p = sub.pending.lock().unwrap_or_else(|e| e.into_inner());
                (p.frames.front().cloned(), p.first_written, p.gone)
            };
            if gone {
                let _ = stream.try_write(&ws_close_frame(4000, "slow"));
                return Ok(());
            }
            let Some(frame) = frame else { break };
            match stream.try_write(&frame[from..]) {
                Ok(n) => {
                    counts.add(1, 0);
                    let mut p = sub.pending.lock().unwrap_or_else(|e| e.into_inner());
                    p.first_written += n;
                    if p.first_written == frame.len() {
                        p.frames.pop_front();
                        p.first_written = 0;
                        counts.add(0, 1);
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    stream.writable().await?;
                }
                Err(e) => return Err(e.into()),
            }
        }
        tokio::select! {
            () = sub.wake.notified() => {}
            ready = stream.readable() => {
                ready?;
                match stream.try_read(&mut read_buf) {
                    Ok(0) => return Ok(()),
                    Ok(n) => {
                        if let Some(code) = incoming.feed(&read_buf[..n]) {
                            let _ = stream.try_write(&ws_close_frame(code, ""));
                            return Ok(());
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
    }
}

/// Writes every frame of `batch` with vectored writes (one `writev` unless the socket takes
/// only part of it); returns how many writes it took.
async fn write_all_vectored(stream: &mut TcpStream, batch: &[Frame]) -> std::io::Result<u64> {
    let mut slices: Vec<IoSlice<'_>> = batch.iter().map(|f| IoSlice::new(f)).collect();
    let mut rest: &mut [IoSlice<'_>] = &mut slices;
    let mut writes = 0;
    while !rest.is_empty() {
        let n = stream.write_vectored(rest).await?;
        writes += 1;
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        IoSlice::advance_slices(&mut rest, n);
    }
    Ok(writes)
}

/// One subscriber's write counts, added to the hub's every 64 writes and when it ends, so the
/// shared counters are not touched on every write.
struct WriteCounts<'a> {
    hub: &'a Hub,
    writes: u64,
    frames: u64,
}

impl WriteCounts<'_> {
    fn add(&mut self, writes: u64, frames: u64) {
        self.writes += writes;
        self.frames += frames;
        if self.writes >= 64 {
            self.flush();
        }
    }

    fn flush(&mut self) {
        self.hub.writes.fetch_add(self.writes, Ordering::Relaxed);
        self.hub
            .frames_written
            .fetch_add(self.frames, Ordering::Relaxed);
        self.writes = 0;
        self.frames = 0;
    }
}

impl Drop for WriteCounts<'_> {
    fn drop(&mut self) {
        self.flush();
    }
}

/// Skips over client → server frames, remembering only whether one was a close.
#[derive(Default)]
struct ClientFrames {
    /// Bytes of the current frame's header seen so far (at most 14).
    header: Vec<u8>,
    /// Payload bytes still to skip in the current frame.
    skip: u64,
    /// The current frame is a close: its mask, and its first two payload bytes (the code).
    close: Option<(Option<[u8; 4]>, Vec<u8>)>,
}

impl ClientFrames {
    /// Feeds bytes; returns the close code once a close frame is complete.
    fn feed(&mut self, mut data: &[u8]) -> Option<u16> {
        while !data.is_empty() {
            if self.skip > 0 {
                let n = (self.skip as usize).min(data.len());
                if let Some((_, code)) = self.close.as_mut() {
                    let keep = n.min(2 - code.len().min(2));
                    code.extend_from_slice(&data[..keep]);
                }
                self.skip -= n as u64;
                data = &data[n..];
                if self.skip == 0 {
                    if let Some(code) = self.finish() {
                        return Some(code);
                    }
                }
                continue;
            }
            self.header.push(data[0]);
            data = &data[1..];
            let h = &self.header;
            if h.len() < 2 {
                continue;
            }
            let masked = h[1] & 0x80 != 0;
            let (len_bytes, len) = match h[1] & 0x7f {
                126 => (2, None),
                127 => (8, None),
                n => (0, Some(u64::from(n))),
            };
            let need = 2 + len_bytes + if masked { 4 } else { 0 };
            if h.len() < need {
                continue;
            }
            let len = len.unwrap_or_else(|| {
                h[2..2 + len_bytes]
                    .iter()
                    .fold(0u64, |a, &b| (a << 8) | u64::from(b))
            });
            let mask: Option<[u8; 4]> = masked.then(|| {
                let m = &h[2 + len_bytes..need];
                [m[0], m[1], m[2], m[3]]
            });
            if h[0] & 0x0f == 0x8 {
                self.close = Some((mask, Vec::with_capacity(2)));
            }
            self.header.clear();
            self.skip = len;
            if len == 0 {
                if let Some(code) = self.finish() {
                    return Some(code);
                }
            }
        }
        None
    }

    /// End of a frame: a close yields its (unmasked) code, 1000 when it has none.
    fn finish(&mut self) -> Option<u16> {
        let (mask, payload) = self.close.take()?;
        if payload.len() < 2 {
            return Some(1000);
        }
        let unmask = |i: usize| payload[i] ^ mask.map_or(0, |m| m[i]);
        Some(u16::from_be_bytes([unmask(0), unmask(1)]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_have_the_right_header() {
        assert_eq!(ws_text_frame(b"hi"), vec![0x81, 2, b'h', b'i']);
        let f = ws_text_frame(&[b'x'; 300]);
        assert_eq!(&f[..4], &[0x81, 126, 1, 44]);
        assert_eq!(f.len(), 304);
    }

    #[test]
    fn message_json_is_the_protocol_frame() {
        let j = message_json("c1", 7, br#"{"t":1}"#);
        let v: serde_json::Value = serde_json::from_slice(&j).unwrap();
        assert_eq!(v["type"], "message");
        assert_eq!(v["offset"], 7);
        assert_eq!(v["data"]["t"], 1);
    }

    #[test]
    fn client_close_is_recognised_across_reads() {
        // Masked text frame "ab", then a masked close 1000.
        let mask = [1u8, 2, 3, 4];
        let mut bytes = vec![0x81, 0x82];
        bytes.extend_from_slice(&mask);
        bytes.extend_from_slice(&[b'a' ^ 1, b'b' ^ 2]);
        bytes.extend_from_slice(&[0x88, 0x82]);
        bytes.extend_from_slice(&mask);
        let code = 1000u16.to_be_bytes();
        bytes.extend_from_slice(&[code[0] ^ 1, code[1] ^ 2]);
        let mut c = ClientFrames::default();
        let (a, b) = bytes.split_at(5);
        assert_eq!(c.feed(a), None);
        assert_eq!(c.feed(b), Some(1000));
        let mut c = ClientFrames::default();
        assert_eq!(c.feed(&[0x88, 0x80, 0, 0, 0, 0]), Some(1000));
    }
}
