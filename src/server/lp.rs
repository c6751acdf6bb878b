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

use std::io::{self, IoSlice};
use std::net::SocketAddr;

use axum::body::{Body, Bytes};
use axum::extract::ConnectInfo;
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, Request, Uri, Version};
use axum::response::Response;
use bytes::BufMut as _;
use tokio::net::TcpStream;
use tokio::time::Instant;
use tower::ServiceExt as _;

use crate::http::deadline::BodyInterrupted;
use crate::http::error::ApiError;
use crate::http::{self, AppState};

use super::connection::Edge;
use super::MAX_HEAD_BYTES;

/// Header fields a head taken here may have: hyper's own limit, so a head with more goes to
/// hyper and gets its `431`.
pub const MAX_HEADERS: usize = 100;

/// Bytes reserved at a time for reading: a poll's head (a few hundred bytes) fits in one.
const READ_CHUNK: usize = 1024;

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
    let mut headers = HeaderMap::with_capacity(request.headers.len());
    let mut body_len = None;
    for field in request.headers.iter() {
        let name = HeaderName::from_bytes(field.name.as_bytes()).map_err(|_| NotOurs)?;
        let value = HeaderValue::from_bytes(field.value).map_err(|_| NotOurs)?;
        if name == header::TRANSFER_ENCODING || name == header::EXPECT || name == header::UPGRADE {
            return Err(NotOurs);
        }
        if name == header::CONNECTION && !value.as_bytes().eq_ignore_ascii_case(b"keep-alive") {
            return Err(NotOurs);
        }
        if name == header::CONTENT_LENGTH {
            if body_len.is_some() {
                return Err(NotOurs);
            }
            body_len = Some(content_length(value.as_bytes()).ok_or(NotOurs)?);
        }
        headers.append(name, value);
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
        loop {
            let head = match self.read_head(stream, &mut buf, max_body).await {
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
                answer = self.answer(head, body, peer) => answer,
                () = client_gone(stream, &mut buf) => return Served::Closed,
            };
            match self.write(stream, answer).await {
                Ok(true) if !self.edge.shutdown.is_cancelled() => {}
                _ => return Served::Closed,
            }
        }
    }

    /// Reads until a head is complete, within the handshake timeout and not past shutdown.
    async fn read_head(&self, stream: &TcpStream, buf: &mut Vec<u8>, max_body: usize) -> HeadRead {
        let deadline = Instant::now() + self.edge.handshake_timeout;
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
                read = tokio::time::timeout_at(deadline, read_some(stream, buf, MAX_HEAD_BYTES)) => read,
                () = self.edge.shutdown.cancelled() => return HeadRead::Gone,
            };
            match read {
                Ok(Ok(n)) if n > 0 => parse = blank_line_since(buf, scanned),
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

    async fn answer(&self, head: Head, body: Bytes, peer: SocketAddr) -> Answer {
        if head.route == Route::Poll {
            return match http::lp::poll_direct(&self.state, head.uri, head.headers).await {
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
        let date = httpdate::fmt_http_date(std::time::SystemTime::now());
        let (head, body, keep_alive) = match answer {
            Answer::Batch(body) => {
                let head = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nx-accel-buffering: no\r\n\
                     cache-control: no-store\r\ncontent-length: {}\r\ndate: {date}\r\n\r\n",
                    body.len()
                );
                (head.into_bytes(), body, true)
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
                (response_head(&parts, body.len(), &date), body, keep_alive)
            }
        };
        write_all(stream, &[&head, &body], self.edge.write_timeout).await?;
        Ok(keep_alive)
    }
}

/// The status line and fields hyper would write for `parts` with a body of `len` bytes.
fn response_head(parts: &axum::http::response::Parts, len: usize, date: &str) -> Vec<u8> {
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
    head.extend_from_slice(format!("content-length: {len}\r\n").as_bytes());
    if !parts.headers.contains_key(header::DATE) {
        head.extend_from_slice(format!("date: {date}\r\n").as_bytes());
    }
    head.extend_from_slice(b"\r\n");
    head
}

/// Reads what the socket has into `buf` (never past `cap` bytes); `Ok(0)` at end of stream.
async fn read_some(stream: &TcpStream, buf: &mut Vec<u8>, cap: usize) -> io::Result<usize> {
    loop {
        stream.readable().await?;
        let room = cap.saturating_sub(buf.len());
        if buf.capacity() == buf.len() {
            buf.reserve(READ_CHUNK.min(room));
        }
        match stream.try_read_buf(&mut (&mut *buf).limit(room)) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            read => return read,
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

/// Writes `parts` in full, vectored; a write that makes no progress for `timeout` fails.
async fn write_all(
    stream: &TcpStream,
    parts: &[&[u8]],
    timeout: std::time::Duration,
) -> io::Result<()> {
    let total: usize = parts.iter().map(|p| p.len()).sum();
    let mut written = 0;
    while written < total {
        let mut skip = written;
        let slices: Vec<IoSlice<'_>> = parts
            .iter()
            .filter_map(|part| {
                if skip >= part.len() {
                    skip -= part.len();
                    None
                } else {
                    let slice = IoSlice::new(&part[skip..]);
                    skip = 0;
                    Some(slice)
                }
            })
            .collect();
        match stream.try_write_vectored(&slices) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => written += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                tokio::time::timeout(timeout, stream.writable())
                    .await
                    .map_err(|_| {
                        io::Error::new(
                            io::ErrorKind::TimedOut,
                            "the client took nothing of the response within the write timeout",
                        )
                    })??;
            }
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
        let head = response_head(&parts, 7, "Wed, 02 Dec 2026 15:00:00 GMT");
        assert_eq!(
            String::from_utf8(head).unwrap(),
            "HTTP/1.1 404 Not Found\r\ncontent-type: application/json\r\ncache-control: no-store\r\n\
             content-length: 7\r\ndate: Wed, 02 Dec 2026 15:00:00 GMT\r\n\r\n"
        );
    }
}
