//! Long-poll requests served on the bare socket (`src/server/lp.rs`): the same answers as
//! hyper's path, word for word; what that path does not take handed to hyper mid-connection;
//! pipelined requests answered in order; heads and bodies that are huge, malformed or never
//! finish cut off as on hyper's path — and bystanders that lose nothing meanwhile.

use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::backpressure::Bystanders;
use crate::common::*;

async fn open(server: &TestServer) -> TcpStream {
    within("connect", TcpStream::connect(server.addr))
        .await
        .unwrap()
}

async fn send(stream: &mut TcpStream, bytes: &str) {
    within("send", stream.write_all(bytes.as_bytes()))
        .await
        .unwrap();
}

/// One response off a kept-alive connection: status, head fields (lowercase, the `date`
/// field left out: it moves) and body. `rest` keeps bytes read past it.
async fn read_response(stream: &mut TcpStream, rest: &mut Vec<u8>) -> (u16, Vec<String>, String) {
    within("a response", async {
        loop {
            if let Some(end) = rest.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8(rest[..end].to_vec()).unwrap();
                let len = content_length(&head);
                let total = end + 4 + len;
                while rest.len() < total {
                    read_more(stream, rest).await;
                }
                let body = String::from_utf8(rest[end + 4..total].to_vec()).unwrap();
                rest.drain(..total);
                let mut lines = head.split("\r\n");
                let status = lines.next().unwrap().split(' ').nth(1).unwrap();
                let fields = lines
                    .map(str::to_ascii_lowercase)
                    .filter(|l| !l.starts_with("date:"))
                    .collect();
                return (status.parse().unwrap(), fields, body);
            }
            read_more(stream, rest).await;
        }
    })
    .await
}

async fn read_more(stream: &mut TcpStream, rest: &mut Vec<u8>) {
    let mut buf = [0u8; 4096];
    let n = stream.read(&mut buf).await.unwrap();
    assert!(
        n > 0,
        "closed mid-response: {:?}",
        String::from_utf8_lossy(rest)
    );
    rest.extend_from_slice(&buf[..n]);
}

/// Reads until the server closes; what arrived.
async fn read_to_close(stream: &mut TcpStream) -> String {
    let mut out = Vec::new();
    within("the server to close the connection", async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    String::from_utf8_lossy(&out).into_owned()
}

fn sorted(mut fields: Vec<String>) -> Vec<String> {
    fields.sort();
    fields
}

/// Each request asked twice: first on a connection that opens with it (served on the bare
/// socket), then on one that opened with `GET /healthz` (so hyper serves all of it). Status,
/// fields and body must be the same.
#[tokio::test]
async fn the_bare_socket_answers_as_hyper_does() {
    let server = TestServer::with(&["--lp-hold", "1s"]).await;
    let mut bystanders = Bystanders::join(&server).await;
    let session = server.lp_connect("?channel=same", None).await;
    server.publish("same", &json!("m")).await;
    let requests = [
        // A batch (the second asking is its resend: ack one behind).
        format!("GET /lp/poll?session={session}&ack=0 HTTP/1.1\r\nHost: x\r\n\r\n"),
        // The same batch once more, an empty answer after the hold, refusals.
        format!("GET /lp/poll?session={session}&ack=1 HTTP/1.1\r\nHost: x\r\n\r\n"),
        format!("GET /lp/poll?session={session}&ack=9 HTTP/1.1\r\nHost: x\r\n\r\n"),
        "GET /lp/poll?session=nope HTTP/1.1\r\nHost: x\r\n\r\n".to_owned(),
        "GET /lp/poll?ack=1 HTTP/1.1\r\nHost: x\r\n\r\n".to_owned(),
        "GET /lp/poll?session=x&ack=-1 HTTP/1.1\r\nHost: x\r\n\r\n".to_owned(),
        format!(
            "GET /lp/poll?session={session}&ack=1 HTTP/1.1\r\nHost: x\r\nOrigin: http://evil.example\r\n\r\n"
        ),
        // Fields a poll does not read, and queries the plain reader leaves to the decoder
        // (an escaped name, a repeat, an empty number).
        format!(
            "GET /lp/poll?s%65ssion={session}&ack=1&x=%41 HTTP/1.1\r\nHost: x\r\nUser-Agent: t\r\n\
             X-Custom: y\r\nCookie: a=b\r\n\r\n"
        ),
        format!("GET /lp/poll?session={session}&ack=1&ack=1 HTTP/1.1\r\nHost: x\r\n\r\n"),
        format!("GET /lp/poll?session={session}&ack= HTTP/1.1\r\nHost: x\r\n\r\n"),
        format!(
            "POST /lp/send?session={session} HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\n\r\n{{\"a\":1"
        ),
        "POST /lp/send?session=nope HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}".to_owned(),
        "POST /lp/connect HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n{\"cha".to_owned(),
        "POST /lp/connect?channel=bad%20name HTTP/1.1\r\nHost: x\r\n\r\n".to_owned(),
        "POST /lp/close?session=nope HTTP/1.1\r\nHost: x\r\n\r\n".to_owned(),
    ];
    for request in &requests {
        let mut direct = open(&server).await;
        let mut rest = Vec::new();
        send(&mut direct, request).await;
        let (status, fields, body) = read_response(&mut direct, &mut rest).await;
        let mut routed = open(&server).await;
        let mut routed_rest = Vec::new();
        send(&mut routed, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert_eq!(read_response(&mut routed, &mut routed_rest).await.0, 200);
        send(&mut routed, request).await;
        let (routed_status, routed_fields, routed_body) =
            read_response(&mut routed, &mut routed_rest).await;
        assert_eq!(
            (status, sorted(fields), body),
            (routed_status, sorted(routed_fields), routed_body),
            "{request}"
        );
    }
    assert_eq!(bystanders.publish(&server, 1).await, 200);
    bystanders.check(&server).await;
    // The session handed out batch 1 (twice: once resent), then only empty answers; the two
    // sends queued an `error` frame each.
    let mut ack = 1;
    server.publish("same", &json!("n")).await;
    let frames = server.lp_collect(&session, &mut ack, 3).await;
    assert_eq!(
        (frames[0]["type"].as_str(), frames[1]["type"].as_str()),
        (Some("error"), Some("error"))
    );
    assert_eq!(frames[2]["data"], "n", "nothing lost on the session either");
}

/// Requests written back to back on one connection are answered in order, across the hand
/// over to hyper (`GET /healthz` is not taken on the bare socket; everything after it is
/// hyper's).
#[tokio::test]
async fn pipelined_requests_are_answered_in_order_across_the_hand_over() {
    let server = TestServer::start().await;
    let mut bystanders = Bystanders::join(&server).await;
    let session = server.lp_connect("?channel=p", None).await;
    let frame = json!({"type": "subscribe", "channel": "q", "id": 7}).to_string();
    let mut stream = open(&server).await;
    let requests = format!(
        "POST /lp/send?session={session} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{frame}\
         GET /lp/poll?session={session}&ack=0 HTTP/1.1\r\nHost: x\r\n\r\n\
         GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n\
         POST /lp/close?session={session} HTTP/1.1\r\nHost: x\r\n\r\n",
        frame.len()
    );
    send(&mut stream, &requests).await;
    let mut rest = Vec::new();
    let (status, _, body) = read_response(&mut stream, &mut rest).await;
    assert_eq!((status, body.as_str()), (202, r#"{"accepted":1}"#));
    let (status, _, body) = read_response(&mut stream, &mut rest).await;
    assert_eq!(status, 200);
    let batch: Value = serde_json::from_str(&body).unwrap();
    let types: Vec<&str> = batch["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["type"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["subscribed", "subscribed"], "{batch}");
    assert_eq!(batch["messages"][1]["id"], 7);
    let (status, _, _) = read_response(&mut stream, &mut rest).await;
    assert_eq!(status, 200, "healthz, from hyper");
    let (status, _, body) = read_response(&mut stream, &mut rest).await;
    assert_eq!((status, body.as_str()), (200, r#"{"closed":true}"#));
    wait_until("the closed session to be gone", || {
        server.long_poll.session_count() == 1
    })
    .await;
    assert_eq!(bystanders.publish(&server, 1).await, 200);
    bystanders.check(&server).await;
}

/// Heads the bare socket does not take get hyper's refusals, as on any other path: too large
/// (`431`), too many fields (`431`), malformed (`400`); a chunked body is read by hyper; an
/// `HTTP/1.0` poll is served by hyper.
#[tokio::test]
async fn hostile_heads_get_hypers_refusals() {
    let server = TestServer::start().await;
    let mut bystanders = Bystanders::join(&server).await;
    let huge = format!(
        "GET /lp/poll?session=x HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(40 * 1024)
    );
    let many = format!(
        "GET /lp/poll?session=x HTTP/1.1\r\n{}\r\n",
        "X-A: b\r\n".repeat(101)
    );
    for (request, status) in [
        (huge.as_str(), 431),
        (many.as_str(), 431),
        (
            "POST /lp/send?session=x HTTP/1.1\r\nContent-Length: abc\r\n\r\n",
            400,
        ),
        (
            "POST /lp/send?session=x HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            400,
        ),
        ("GET /lp/poll?session=x HTTP/1.1\r\nHost\r\n\r\n", 400),
    ] {
        let mut stream = open(&server).await;
        // The server may close before it has read everything: a failed write is fine.
        let _ = stream.write_all(request.as_bytes()).await;
        let answer = read_to_close(&mut stream).await;
        assert!(
            answer.starts_with(&format!("HTTP/1.1 {status} ")),
            "{status} for {:.60}: {answer:.200}",
            request
        );
    }
    // Bodies and versions the bare socket leaves to hyper are still served.
    let mut stream = open(&server).await;
    send(
        &mut stream,
        "POST /lp/send?session=nope HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
    )
    .await;
    let mut rest = Vec::new();
    let (status, _, body) = read_response(&mut stream, &mut rest).await;
    assert_eq!(status, 404, "{body}");
    let mut stream = open(&server).await;
    send(&mut stream, "GET /lp/poll?session=nope HTTP/1.0\r\n\r\n").await;
    let answer = read_to_close(&mut stream).await;
    assert!(answer.contains("unknown_session"), "{answer}");
    assert_eq!(bystanders.publish(&server, 1).await, 200);
    bystanders.check(&server).await;
}

/// Slowloris on the bare socket: a poll head that never ends is closed unanswered after
/// `--handshake-timeout`, as is a kept-alive connection with no next request; a send body
/// that never ends gets `408 request_timeout` after `--body-timeout`, connection closed. None
/// of it costs the bystanders anything.
#[tokio::test(start_paused = true)]
async fn slow_heads_and_bodies_on_the_bare_socket_are_cut_off() {
    let server = TestServer::with(&["--handshake-timeout", "8s", "--body-timeout", "3s"]).await;
    let mut bystanders = Bystanders::join(&server).await;
    let session = server.lp_connect("?channel=s", None).await;
    let base = server.sockets.open();
    let start = Instant::now();
    let mut head = open(&server).await;
    send(&mut head, "GET /lp/poll?session=").await;
    let mut body = open(&server).await;
    send(
        &mut body,
        &format!("POST /lp/send?session={session} HTTP/1.1\r\nContent-Length: 100\r\n\r\n[1,"),
    )
    .await;
    let mut kept = open(&server).await;
    send(&mut kept, "POST /lp/close?session=nope HTTP/1.1\r\n\r\n").await;
    let mut rest = Vec::new();
    assert_eq!(read_response(&mut kept, &mut rest).await.0, 404);
    wait_until("the three connections to be accepted", || {
        server.sockets.open() == base + 3
    })
    .await;

    let_time_pass_until("the body timeout", start + Duration::from_millis(3500)).await;
    let answer = read_to_close(&mut body).await;
    assert!(answer.starts_with("HTTP/1.1 408 "), "{answer}");
    assert!(answer.contains("connection: close"), "{answer}");
    assert!(answer.contains("request_timeout"), "{answer}");
    assert_eq!(bystanders.publish(&server, 1).await, 200);
    bystanders.check(&server).await;

    let_time_pass_until("the handshake timeout", start + Duration::from_millis(8500)).await;
    assert_eq!(
        read_to_close(&mut head).await,
        "",
        "closed without an answer"
    );
    assert_eq!(read_to_close(&mut kept).await, "", "idle keep-alive closed");
    wait_until("the stalled sockets to be closed", || {
        server.sockets.open() <= base
    })
    .await;
    assert_eq!(bystanders.publish(&server, 2).await, 200);
    bystanders.check(&server).await;
    assert_eq!(
        server.hub.stats().published(),
        2,
        "the slow body did nothing"
    );
}

/// A head dribbled a byte at a time is read to its end and answered (and parsed once: the
/// blank line decides, not every byte).
#[tokio::test]
async fn a_head_in_single_bytes_is_answered() {
    let server = TestServer::start().await;
    let mut stream = open(&server).await;
    for byte in "GET /lp/poll?session=nope HTTP/1.1\r\nHost: x\r\n\r\n".bytes() {
        within("send", stream.write_all(&[byte])).await.unwrap();
        within("flush", stream.flush()).await.unwrap();
    }
    let mut rest = Vec::new();
    let (status, _, body) = read_response(&mut stream, &mut rest).await;
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("unknown_session"), "{body}");
}

/// Requests pipelined on the bare socket by a client that never reads: what it sends past
/// 32 KiB stays in the kernel, the answers fill both sockets' buffers, the write stalls, and
/// after `--write-timeout` the connection is dropped. The bystanders lose nothing.
#[tokio::test(start_paused = true)]
async fn answers_nobody_reads_are_dropped_after_the_write_timeout() {
    let server = TestServer::with(&["--write-timeout", "2s", "--socket-send-buffer", "4096"]).await;
    let mut bystanders = Bystanders::join(&server).await;
    let base = server.sockets.open();
    let mut stream = server.connect_small_window().await;
    let requests = "POST /lp/close?session=nope HTTP/1.1\r\nHost: x\r\n\r\n".repeat(2000);
    // The hub stops reading once its 32 KiB are full and the answers stall: the rest of the
    // requests may never be taken, so the write is not waited for.
    let writer = tokio::spawn(async move {
        let _ = stream.write_all(requests.as_bytes()).await;
        stream
    });
    wait_until("the connection to be accepted", || {
        server.sockets.open() == base + 1
    })
    .await;
    let start = Instant::now();
    let_time_pass_until("the write timeout", start + Duration::from_secs(3)).await;
    wait_until("the unread connection to be dropped", || {
        server.sockets.open() == base
    })
    .await;
    assert_eq!(bystanders.publish(&server, 1).await, 200);
    bystanders.check(&server).await;
    writer.abort();
}
