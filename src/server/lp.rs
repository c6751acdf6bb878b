//! Long-poll requests served on the bare socket, the way `/ws` upgrades are
//! ([`crate::transport::ws::direct`]): a connection whose first request is an `/lp/*`
//! request is read here, request by request, and handed to hyper (with every byte read so far)
//! at the first request this module does not take.
//!
//! Why: hyper gives every HTTP/1.1 connection an 8 KiB write buffer from its start and an
//! 8 KiB read buffer from its first read, for the connection's whole life, with no setting to
//! shrink either; a parked poll held both (16 of its ≈ 21 KiB, docs/BENCHMARKS.md "Long-poll
//! memory"). And each poll paid hyper's and the router's per-request machinery — about half
//! of the hub's CPU at 9,000 polling clients (the same page). Here a parked poll holds no
//! buffer: the head is parsed into what the request needs, the read buffer is freed, and the
//! response is written from the batch's bytes behind a head built for it, in one vectored
//! write.
//!
//! What is taken here — only exactly that; everything else goes to hyper and gets the answer
//! it always got, word for word: HTTP/1.1 `GET /lp/poll?…` and `POST /lp/close?…` without a
//! body, `POST /lp/connect` and `POST /lp/send` with no body or a `Content-Length` body of at
//! most `--max-message-size`; no `Transfer-Encoding`, `Expect` or `Upgrade` field, no
//! `Connection` field other than `keep-alive`, at most one `Content-Length`, field names and
//! values the `http` crate accepts, a head within [`MAX_HEAD_BYTES`] and [`MAX_HEADERS`]
//! fields. A poll is answered by [`http::lp::poll_direct`] (the routed handler's checks and
//! answers); the other three by the router itself, given a request built from the parsed head
//! and the body read here, so every answer is the router's.
//!
//! Limits are the ones hyper's path keeps: a head within `--handshake-timeout` (also the wait
//! for the next request on a kept-alive connection; a head that has not ended by then is
//! closed unanswered), parsed only once its blank line has arrived (a head dribbled a byte at
//! a time costs O(bytes)); a body within `--body-timeout` of its head (`408 request_timeout`,
//! closed); nothing waited for at shutdown (an idle connection closes, a body still arriving
//! gets `503 shutting_down`, a parked poll is answered and the connection closed); a response
//! write that makes no progress for `--write-timeout` ends the connection; and a client that
//! closes its end while its request is being answered ends that request, as hyper drops its
//! handler (a parked poll's session is free for the next poll at once). Bytes that arrive
//! while a request is being answered (a pipelined request) are kept, up to [`MAX_HEAD_BYTES`].

use std::cell::Cell;
use std::io::{self, IoSlice, Write as _};
use std::net::SocketAddr;
use std::pin::Pin;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::{Body, Bytes};
use axum::extract::ConnectInfo;
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, Request, Uri, Version};
use axum::response::Response;
use bytes::BufMut as _;
use tokio::io::Interest;
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};
use tower::ServiceExt as _;

use crate::http::deadline::BodyInterrupted;
use crate::http::error::ApiError;
use crate::http::{self, AppState};

use super::connection::Edge;
use super::MAX_HEAD_BYTES;

/// Header fields a head taken here may have: hyper's own limit, so a head with more goes to
/// hyper and gets its `431`.
pub const MAX_HEADERS: usize = 100;

/// The fields a poll reads: `Origin` and `Host` (the origin check) and `Authorization` (the
/// token). See [`http::lp::poll_direct`].
const POLL_FIELDS: [HeaderName; 3] = [header::ORIGIN, header::HOST, header::AUTHORIZATION];

/// Bytes reserved at a time for reading: a poll's head (a few hundred bytes) fits in one.
const READ_CHUNK: usize = 1024;

/// A poll batch up to this size is copied behind its head and sent as one buffer.
const SMALL_BODY: usize = 2048;

/// Largest response body collected from the router (its `/lp/*` answers are small JSON).
const MAX_RESPONSE_BODY: usize = 1 << 20;

/// What one connection's direct serving needs; one per server, shared.
pub(super) struct DirectLongPoll {
    pub(super) state: AppState,
    pub(super) router: axum::Router,
    pub(super) edge: Edge,
}

/// How a connection served here ended.
pub(super) enum Served {
    Closed,
    /// At a request not taken here: hyper serves the rest, starting with these bytes.
    Hyper(Vec<u8>),
}

/// Whether a connection that opened with `read` may start with an `/lp/` request (decided on
/// whatever has arrived; the head itself decides later).
pub(super) fn may_be_long_poll(read: &[u8]) -> bool {
    const OPENINGS: [&[u8]; 2] = [b"GET /lp/", b"POST /lp/"];
    !read.is_empty()
        && OPENINGS.iter().any(|opening| {
            let n = opening.len().min(read.len());
            read[..n] == opening[..n]
        })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    Poll,
    Connect,
    Send,
    Close,
}

/// A request head taken here.
#[derive(Debug)]
struct Head {
    route: Route,
    uri: Uri,
    headers: HeaderMap,
    head_len: usize,
    body_len: usize,
}

/// A head that is not taken here: hyper answers it.
#[derive(Debug, PartialEq, Eq)]
struct NotOurs;

/// `Ok(None)` while the head is incomplete.
fn parse_head(buf: &[u8], max_body: usize) -> Result<Option<Head>, NotOurs> {
    let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut fields);
    let head_len = match request.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        // Malformed, or too many fields: hyper words its refusal.
        Err(_) => return Err(NotOurs),
    };
    if request.version != Some(1) {
        return Err(NotOurs);
    }
    let (Some(method), Some(target)) = (request.method, request.path) else {
        return Err(NotOurs);
    };
    let path = target.split_once('?').map_or(target, |(path, _)| path);
    let route = match (method, path) {
        ("GET", "/lp/poll") => Route::Poll,
        ("POST", "/lp/connect") => Route::Connect,
        ("POST", "/lp/send") => Route::Send,
        ("POST", "/lp/close") => Route::Close,
        _ => return Err(NotOurs),
    };
    let uri: Uri = target.parse().map_err(|_| NotOurs)?;
    // A poll reads three fields (the origin check's two and the token's); the other routes
    // hand the router every field.
    let mut headers = if route == Route::Poll {
        HeaderMap::new()
    } else {
        HeaderMap::with_capacity(request.headers.len())
    };
    let mut body_len = None;
    for field in request.headers.iter() {
        let name = HeaderName::from_bytes(field.name.as_bytes()).map_err(|_| NotOurs)?;
        let value = field.value;
        // What `HeaderValue::from_bytes` accepts, checked without making one.
        if !value.iter().all(|&b| b >= 32 && b != 127 || b == b'\t') {
            return Err(NotOurs);
        }
        if name == header::TRANSFER_ENCODING || name == header::EXPECT || name == header::UPGRADE {
            return Err(NotOurs);
        }
        if name == header::CONNECTION && !value.eq_ignore_ascii_case(b"keep-alive") {
            return Err(NotOurs);
        }
        if name == header::CONTENT_LENGTH {
            if body_len.is_some() {
                return Err(NotOurs);
            }
            body_len = Some(content_length(value).ok_or(NotOurs)?);
        }
        if route != Route::Poll || POLL_FIELDS.contains(&name) {
            let value = HeaderValue::from_bytes(value).map_err(|_| NotOurs)?;
            headers.append(name, value);
        }
    }
    let body_len = body_len.unwrap_or(0);
    let takes_body = matches!(route, Route::Connect | Route::Send);
    if (body_len > 0 && !takes_body) || body_len > max_body {
        return Err(NotOurs);
    }
    Ok(Some(Head {
        route,
        uri,
        headers,
        head_len,
        body_len,
    }))
}

/// Plain decimal digits only (no sign, no spaces, no list), as RFC 9110 has it.
fn content_length(value: &[u8]) -> Option<usize> {
    if value.is_empty() || value.len() > 19 || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(value).ok()?.parse().ok()
}

/// Whether bytes read since `scanned` may have ended a head (a blank line arrived).
fn blank_line_since(buf: &[u8], scanned: usize) -> bool {
    let new = &buf[scanned.saturating_sub(3)..];
    new.windows(2).any(|w| w == b"\n\n") || new.windows(3).any(|w| w == b"\n\r\n")
}

#[expect(
    clippy::large_enum_variant,
    reason = "made once per request and taken apart at once: boxing would only add an allocation"
)]
enum HeadRead {
    Head(Head),
    NotOurs,
    /// Closed, broken, silent past the deadline, or shutdown: close unanswered.
    Gone,
}

enum BodyRead {
    Complete,
    Interrupted(BodyInterrupted),
    Gone,
}

/// What a request is answered with.
enum Answer {
    /// A poll's batch: `200` with the poll's headers.
    Batch(Bytes),
    Response(Response),
}

impl DirectLongPoll {
    /// Serves `stream`'s requests until it closes or sends one not taken here; `read` is
    /// what the sniffer already took off it.
    pub(super) async fn serve(
        &self,
        stream: &TcpStream,
        peer: SocketAddr,
        read: Vec<u8>,
    ) -> Served {
        // Messages are small and latency matters more than packet count.
        let _ = stream.set_nodelay(true);
        let mut buf = read;
        let max_body = self.state.config.max_message_size;
        // One timer for the heads' deadlines and one for the polls' holds, each only ever
        // moved later while the connection lives: re-dating a timer is an atomic store, where
        // a new one is put into the runtime's timer wheel and taken out again each request.
        let head_timer = tokio::time::sleep(self.edge.handshake_timeout);
        let hold_timer = tokio::time::sleep(self.state.long_poll.config().hold);
        tokio::pin!(head_timer, hold_timer);
        loop {
            let head = match self
                .read_head(stream, &mut buf, max_body, head_timer.as_mut())
                .await
            {
                HeadRead::Head(head) => head,
                HeadRead::NotOurs => return Served::Hyper(buf),
                HeadRead::Gone => return Served::Closed,
            };
            let end = head.head_len + head.body_len;
            if head.body_len > 0 {
                match self.read_body(stream, &mut buf, end).await {
                    BodyRead::Complete => {}
                    BodyRead::Interrupted(why) => {
                        // The rest of the body may still be on its way: answered, then closed
                        // (the refusal says `Connection: close`).
                        let answer = Answer::Response(http::lp::refusal(ApiError::from(why)));
                        let _ = self.write(stream, answer).await;
                        return Served::Closed;
                    }
                    BodyRead::Gone => return Served::Closed,
                }
            }
            let body = Bytes::copy_from_slice(&buf[head.head_len..end]);
            buf.drain(..end);
            if buf.is_empty() {
                // A parked poll holds no read buffer.
                buf = Vec::new();
            }
            let answer = tokio::select! {
                answer = self.answer(head, body, peer, hold_timer.as_mut()) => answer,
                () = client_gone(stream, &mut buf) => return Served::Closed,
            };
            match self.write(stream, answer).await {
                Ok(true) if !self.edge.shutdown.is_cancelled() => {}
                _ => return Served::Closed,
            }
        }
    }

    /// Reads until a head is complete, within the handshake timeout and not past shutdown.
    async fn read_head(
        &self,
        stream: &TcpStream,
        buf: &mut Vec<u8>,
        max_body: usize,
        mut deadline: Pin<&mut Sleep>,
    ) -> HeadRead {
        deadline
            .as_mut()
            .reset(Instant::now() + self.edge.handshake_timeout);
        // What was read before (the sniffer's bytes, a pipelined request) is parsed once;
        // after that, only once a blank line may have arrived.
        let mut parse = !buf.is_empty();
        loop {
            if parse {
                match parse_head(buf, max_body) {
                    Ok(Some(head)) => return HeadRead::Head(head),
                    Ok(None) => {}
                    Err(NotOurs) => return HeadRead::NotOurs,
                }
            }
            if buf.len() >= MAX_HEAD_BYTES {
                // hyper refuses it (`431`), as it always did.
                return HeadRead::NotOurs;
            }
            let scanned = buf.len();
            let read = tokio::select! {
                read = read_some(stream, buf, MAX_HEAD_BYTES) => read,
                () = deadline.as_mut() => return HeadRead::Gone,
                () = self.edge.shutdown.cancelled() => return HeadRead::Gone,
            };
            match read {
                Ok(n) if n > 0 => parse = blank_line_since(buf, scanned),
                _ => return HeadRead::Gone,
            }
        }
    }

    /// Reads until `buf` holds `end` bytes, within the body timeout and not past shutdown.
    async fn read_body(&self, stream: &TcpStream, buf: &mut Vec<u8>, end: usize) -> BodyRead {
        let deadline = Instant::now() + self.edge.body_timeout;
        while buf.len() < end {
            let read = tokio::select! {
                read = tokio::time::timeout_at(deadline, read_some(stream, buf, end)) => read,
                () = self.edge.shutdown.cancelled() => {
                    return BodyRead::Interrupted(BodyInterrupted::ShuttingDown)
                }
            };
            match read {
                Ok(Ok(n)) if n > 0 => {}
                Ok(_) => return BodyRead::Gone,
                Err(_) => return BodyRead::Interrupted(BodyInterrupted::TimedOut),
            }
        }
        BodyRead::Complete
    }

    async fn answer(
        &self,
        head: Head,
        body: Bytes,
        peer: SocketAddr,
        hold: Pin<&mut Sleep>,
    ) -> Answer {
        if head.route == Route::Poll {
            return match http::lp::poll_direct(&self.state, head.uri, head.headers, hold).await {
                Ok(batch) => Answer::Batch(batch),
                Err(refusal) => Answer::Response(refusal),
            };
        }
        let mut request = Request::new(Body::from(body));
        *request.method_mut() = Method::POST;
        *request.uri_mut() = head.uri;
        *request.version_mut() = Version::HTTP_11;
        *request.headers_mut() = head.headers;
        // As on hyper's path: the per-address limits read the peer.
        request.extensions_mut().insert(ConnectInfo(peer));
        let response = self.router.clone().oneshot(request).await;
        Answer::Response(response.unwrap_or_else(|never| match never {}))
    }

    /// Writes the answer; `Ok(true)` if the connection may carry another request.
    async fn write(&self, stream: &TcpStream, answer: Answer) -> io::Result<bool> {
        let date = http_date();
        let (head, body, keep_alive) = match answer {
            Answer::Batch(body) => {
                let small = body.len() <= SMALL_BODY;
                let mut head =
                    Vec::with_capacity(BATCH_HEAD.len() + 64 + if small { body.len() } else { 0 });
                head.extend_from_slice(BATCH_HEAD);
                let _ = write!(head, "{}", body.len());
                head.extend_from_slice(b"\r\ndate: ");
                head.extend_from_slice(date.as_bytes());
                head.extend_from_slice(b"\r\n\r\n");
                if small {
                    // One buffer: a plain `send` (see `write_all`).
                    head.extend_from_slice(&body);
                    (head, Bytes::new(), true)
                } else {
                    (head, body, true)
                }
            }
            Answer::Response(response) => {
                let (parts, body) = response.into_parts();
                let body = axum::body::to_bytes(body, MAX_RESPONSE_BODY)
                    .await
                    .map_err(io::Error::other)?;
                let keep_alive = !parts
                    .headers
                    .get(header::CONNECTION)
                    .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"close"));
                (response_head(&parts, body.len(), date), body, keep_alive)
            }
        };
        write_all(stream, &head, &body, self.edge.write_timeout).await?;
        Ok(keep_alive)
    }
}

/// A poll batch's status line and fields, up to its length.
const BATCH_HEAD: &[u8] =
    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nx-accel-buffering: no\r\n\
    cache-control: no-store\r\ncontent-length: ";

/// The `date` field's value for now, formatted once a second per thread (as hyper does)
/// rather than for every response.
fn http_date() -> HttpDate {
    thread_local! {
        static LAST: Cell<(u64, HttpDate)> = const { Cell::new((u64::MAX, HttpDate::EMPTY)) };
    }
    let now = SystemTime::now();
    let second = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    LAST.with(|last| match last.get() {
        (at, date) if at == second => date,
        _ => {
            let date = HttpDate::format(now);
            last.set((second, date));
            date
        }
    })
}

/// An IMF-fixdate (`Wed, 02 Dec 2026 15:00:00 GMT`, 29 bytes), kept without an allocation.
#[derive(Clone, Copy)]
struct HttpDate {
    bytes: [u8; 32],
    len: u8,
}

impl HttpDate {
    const EMPTY: Self = Self {
        bytes: [0; 32],
        len: 0,
    };

    fn format(at: SystemTime) -> Self {
        let text = httpdate::fmt_http_date(at);
        let mut date = Self::EMPTY;
        let len = text.len().min(date.bytes.len());
        date.bytes[..len].copy_from_slice(&text.as_bytes()[..len]);
        date.len = len as u8;
        date
    }

    fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
}

/// The status line and fields hyper would write for `parts` with a body of `len` bytes.
fn response_head(parts: &axum::http::response::Parts, len: usize, date: HttpDate) -> Vec<u8> {
    let mut head = Vec::with_capacity(256);
    let status = parts.status;
    head.extend_from_slice(b"HTTP/1.1 ");
    head.extend_from_slice(status.as_str().as_bytes());
    head.push(b' ');
    head.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    head.extend_from_slice(b"\r\n");
    for (name, value) in &parts.headers {
        if name == header::CONTENT_LENGTH {
            continue;
        }
        head.extend_from_slice(name.as_str().as_bytes());
        head.extend_from_slice(b": ");
        head.extend_from_slice(value.as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    let _ = write!(head, "content-length: {len}\r\n");
    if !parts.headers.contains_key(header::DATE) {
        head.extend_from_slice(b"date: ");
        head.extend_from_slice(date.as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    head.extend_from_slice(b"\r\n");
    head
}

/// Reads what the socket has into `buf` (never past `cap` bytes); `Ok(0)` at end of stream.
///
/// A read that fills less than the room it was given has drained the socket, so the socket's
/// readiness is cleared then and there (as tokio's own `AsyncRead` does): otherwise the next
/// wait would find it still set and spend a `read` on `EAGAIN` to learn what this one knew
/// already — one system call of the three a poll costs.
async fn read_some(stream: &TcpStream, buf: &mut Vec<u8>, cap: usize) -> io::Result<usize> {
    loop {
        // The socket's one reader slot, not `readable()`'s list of waiters (which takes a lock
        // again to leave it): only this task reads.
        std::future::poll_fn(|cx| stream.poll_read_ready(cx)).await?;
        let room = cap.saturating_sub(buf.len());
        if buf.capacity() == buf.len() {
            buf.reserve(READ_CHUNK.min(room));
        }
        let asked = (buf.capacity() - buf.len()).min(room);
        let mut drained = None;
        let read = stream.try_io(Interest::READABLE, || {
            let n = stream.try_read_buf(&mut (&mut *buf).limit(room))?;
            if n > 0 && n < asked {
                drained = Some(n);
                // Tells tokio the socket has nothing more, clearing its readiness.
                return Err(io::ErrorKind::WouldBlock.into());
            }
            Ok(n)
        });
        match (read, drained) {
            (_, Some(n)) => return Ok(n),
            (Err(e), None) if e.kind() == io::ErrorKind::WouldBlock => continue,
            (read, None) => return read,
        }
    }
}

/// Resolves when the client has closed its end (or the socket broke) while its request is
/// being answered; bytes that arrive meanwhile (a pipelined request) are kept in `buf`, up to
/// [`MAX_HEAD_BYTES`] — past that it stops reading (and so stops noticing a close).
async fn client_gone(stream: &TcpStream, buf: &mut Vec<u8>) {
    while buf.len() < MAX_HEAD_BYTES {
        match read_some(stream, buf, MAX_HEAD_BYTES).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
    std::future::pending().await
}

/// Writes `head` then `body` in full; a write that makes no progress for `timeout` fails.
///
/// The first attempt goes straight to the socket (`send`, or `sendmsg` for two parts), past
/// tokio's readiness bookkeeping: a response usually fits the socket's buffer whole, and
/// `send` costs the kernel less than the `writev` a `TcpStream` write is. Once the socket
/// would block, attempts go through tokio (`try_io`), which clears the readiness they found
/// spent, so the wait for room is a real one.
async fn write_all(
    stream: &TcpStream,
    head: &[u8],
    body: &[u8],
    timeout: std::time::Duration,
) -> io::Result<()> {
    let socket = socket2::SockRef::from(stream);
    let total = head.len() + body.len();
    let mut written = 0;
    let mut waited = false;
    while written < total {
        let attempt = || {
            if written >= head.len() {
                socket.send(&body[written - head.len()..])
            } else if body.is_empty() {
                socket.send(&head[written..])
            } else {
                socket.send_vectored(&[IoSlice::new(&head[written..]), IoSlice::new(body)])
            }
        };
        let sent = if waited {
            stream.try_io(Interest::WRITABLE, attempt)
        } else {
            attempt()
        };
        match sent {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => written += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                waited = true;
                tokio::time::timeout(timeout, stream.writable())
                    .await
                    .map_err(|_| {
                        io::Error::new(
                            io::ErrorKind::TimedOut,
                            "the client took nothing of the response within the write timeout",
                        )
                    })??;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX_BODY: usize = 64 * 1024;

    fn parse(head: &str) -> Result<Option<Head>, NotOurs> {
        parse_head(head.as_bytes(), MAX_BODY)
    }

    #[test]
    fn first_bytes_that_may_open_a_long_poll_request() {
        for yes in [
            "G",
            "GET /l",
            "GET /lp/poll?session=x",
            "P",
            "POST /lp/",
            "POST /lp/send",
        ] {
            assert!(may_be_long_poll(yes.as_bytes()), "{yes}");
        }
        for no in [
            "",
            "GET /ws",
            "GET /lx",
            "POST /api/publish/a",
            "PUT /lp/poll",
            "HEAD /lp/",
        ] {
            assert!(!may_be_long_poll(no.as_bytes()), "{no}");
        }
    }

    #[test]
    fn takes_the_four_long_poll_routes() {
        let poll = parse("GET /lp/poll?session=ab&ack=3 HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(poll.route, Route::Poll);
        assert_eq!(poll.uri.query(), Some("session=ab&ack=3"));
        assert_eq!(poll.body_len, 0);
        let send = "POST /lp/send?session=ab HTTP/1.1\r\nHost: x\r\nContent-Length: 12\r\n\r\n";
        let head = parse(send).unwrap().unwrap();
        assert_eq!(
            (head.route, head.head_len, head.body_len),
            (Route::Send, send.len(), 12)
        );
        let connect = parse("POST /lp/connect HTTP/1.1\r\nConnection: Keep-Alive\r\n\r\n");
        assert_eq!(connect.unwrap().unwrap().route, Route::Connect);
        let close = parse("POST /lp/close?session=ab HTTP/1.1\r\nContent-Length: 0\r\n\r\n");
        assert_eq!(close.unwrap().unwrap().route, Route::Close);
        assert!(parse("GET /lp/poll HTTP/1.1\r\nHost: x\r\n")
            .unwrap()
            .is_none());
    }

    #[test]
    fn leaves_everything_else_to_hyper() {
        let not_ours = [
            "GET /lp/poll HTTP/1.0\r\n\r\n",
            "POST /lp/poll HTTP/1.1\r\n\r\n",
            "GET /lp/send HTTP/1.1\r\n\r\n",
            "GET /lp/poll/ HTTP/1.1\r\n\r\n",
            "GET /lp/pollx HTTP/1.1\r\n\r\n",
            "GET http://x/lp/poll HTTP/1.1\r\n\r\n",
            "POST /lp/send HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST /lp/send HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n",
            "GET /lp/poll HTTP/1.1\r\nConnection: close\r\n\r\n",
            "GET /lp/poll HTTP/1.1\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n",
            "POST /lp/send HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\n",
            "POST /lp/send HTTP/1.1\r\nContent-Length: +2\r\n\r\n",
            "POST /lp/send HTTP/1.1\r\nContent-Length: 2, 2\r\n\r\n",
            "POST /lp/send HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n",
            "POST /lp/send HTTP/1.1\r\nContent-Length: 65537\r\n\r\n",
            "GET /lp/poll HTTP/1.1\r\nContent-Length: 1\r\n\r\n",
            "POST /lp/close HTTP/1.1\r\nContent-Length: 1\r\n\r\n",
            "GET /lp/poll HTTP/1.1\r\nBad Name: x\r\n\r\n",
            "GET /lp/poll\x01 HTTP/1.1\r\n\r\n",
        ];
        for head in not_ours {
            assert_eq!(parse(head).map(|_| ()), Err(NotOurs), "{head:?}");
        }
        let many = format!(
            "GET /lp/poll HTTP/1.1\r\n{}\r\n",
            "X-A: b\r\n".repeat(MAX_HEADERS + 1)
        );
        assert_eq!(parse(&many).map(|_| ()), Err(NotOurs), "too many fields");
        let most = format!(
            "GET /lp/poll HTTP/1.1\r\n{}\r\n",
            "X-A: b\r\n".repeat(MAX_HEADERS)
        );
        assert!(
            parse(&most).unwrap().is_some(),
            "exactly as many as hyper takes"
        );
    }

    #[test]
    fn a_head_is_parsed_only_once_its_blank_line_can_have_arrived() {
        let head = b"GET /lp/poll HTTP/1.1\r\nHost: x\r\n\r\n";
        let ends: Vec<usize> = (1..=head.len())
            .filter(|&end| blank_line_since(&head[..end], end - 1))
            .collect();
        assert_eq!(ends, vec![head.len()]);
        assert!(blank_line_since(b"GET / HTTP/1.1\n\n", 14));
    }

    #[test]
    fn response_heads_are_what_hyper_writes() {
        let response = axum::http::Response::builder()
            .status(404)
            .header("content-type", "application/json")
            .header("cache-control", "no-store")
            .body(())
            .unwrap();
        let (parts, ()) = response.into_parts();
        let date = HttpDate::format(UNIX_EPOCH + std::time::Duration::from_secs(1_796_223_600));
        let head = response_head(&parts, 7, date);
        assert_eq!(
            String::from_utf8(head).unwrap(),
            "HTTP/1.1 404 Not Found\r\ncontent-type: application/json\r\ncache-control: no-store\r\n\
             content-length: 7\r\ndate: Wed, 02 Dec 2026 15:00:00 GMT\r\n\r\n"
        );
    }
}
