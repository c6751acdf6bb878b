//! The HTTP edge: heads and bodies that never finish, responses nobody reads, idle sockets
//! filling the ceiling, slow bodies at shutdown, and requests no route answers. Attacks 5 and
//! 6 of the abuse issue, and the refusals hyper and the static files gave without a body.

use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::backpressure::Bystanders;
use crate::common::*;

/// A raw connection that has sent `bytes`.
async fn send_raw(server: &TestServer, bytes: &[u8]) -> TcpStream {
    let mut stream = within("connect", TcpStream::connect(server.addr))
        .await
        .unwrap();
    within("send", stream.write_all(bytes)).await.unwrap();
    stream
}

/// Reads until the server closes the connection; a reset after the response counts as closed.
async fn read_to_close(stream: &mut TcpStream) -> Vec<u8> {
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
    out
}

/// The status, the head and the body of the one response on a connection the server closes.
async fn response(stream: &mut TcpStream) -> (u16, String, String) {
    let raw = String::from_utf8(read_to_close(stream).await).expect("a text response");
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {raw:?}"));
    (status, head.to_ascii_lowercase(), body.to_owned())
}

/// One request on a fresh connection (closed after it); its status, head and body.
async fn raw_request(server: &TestServer, request: &str) -> (u16, String, String) {
    let mut stream = send_raw(server, request.as_bytes()).await;
    response(&mut stream).await
}

fn code(body: &str) -> Value {
    let json: Value = serde_json::from_str(body).unwrap_or_else(|_| panic!("JSON body: {body:?}"));
    json["error"]["code"].clone()
}

const SLOW_BODY: &str = "POST /api/publish/watch HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n[1,";

/// Attack 5: heads and bodies that never finish held connections (and file descriptors)
/// for as long as the client liked. A head gets `--handshake-timeout`, a body
/// `--body-timeout` from the end of its head, then `408 request_timeout` and a closed
/// connection.
#[tokio::test(start_paused = true)]
async fn slowloris_heads_and_bodies_are_cut_off() {
    let server = TestServer::with(&["--handshake-timeout", "8s", "--body-timeout", "3s"]).await;
    let mut bystanders = Bystanders::join(&server).await;
    let base = server.sockets.open();
    let start = Instant::now();
    let mut heads = Vec::new();
    let mut bodies = Vec::new();
    for i in 0..25 {
        // Stalled inside the sniffer (a prefix of `GET /ws`) and inside hyper (another path).
        let head: &[u8] = if i % 2 == 0 {
            b"GET /w"
        } else {
            b"GET /healthz HTTP/1.1\r\nHo"
        };
        heads.push(send_raw(&server, head).await);
        bodies.push(send_raw(&server, SLOW_BODY.as_bytes()).await);
    }
    wait_until("the 50 connections to be accepted", || {
        server.sockets.open() == base + 50
    })
    .await;
    assert_eq!(bystanders.publish(&server, 1).await, 200);
    bystanders.check(&server).await;

    let_time_pass_until("the body timeout", start + Duration::from_millis(3500)).await;
    for body in &mut bodies {
        let (status, head, body) = response(body).await;
        assert_eq!((status, code(&body)), (408, json!("request_timeout")));
        assert!(head.contains("connection: close"), "{head}");
    }
    assert_eq!(bystanders.publish(&server, 2).await, 200);
    bystanders.check(&server).await;

    let_time_pass_until("the handshake timeout", start + Duration::from_millis(8500)).await;
    for head in &mut heads {
        assert_eq!(read_to_close(head).await, b"", "closed without an answer");
    }
    wait_until("the stalled sockets to be closed", || {
        server.sockets.open() <= base
    })
    .await;
    assert_eq!(bystanders.publish(&server, 3).await, 200);
    bystanders.check(&server).await;
    assert_eq!(
        server.hub.stats().published(),
        3,
        "no slow body was published"
    );
}

/// A client that sends requests and never reads the responses: once its socket is full, the
/// write stalls, and after `--write-timeout` the connection is dropped.
#[tokio::test(start_paused = true)]
async fn a_response_nobody_reads_is_dropped() {
    let server = TestServer::with(&["--write-timeout", "2s", "--socket-send-buffer", "4096"]).await;
    let mut bystanders = Bystanders::join(&server).await;
    let base = server.sockets.open();
    let mut stream = server.connect_small_window().await;
    // Pipelined: far more response bytes than both sockets' buffers hold.
    let requests = "GET /api/stats HTTP/1.1\r\nHost: x\r\n\r\n".repeat(400);
    within("send", stream.write_all(requests.as_bytes()))
        .await
        .unwrap();
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
    drop(stream);
}

/// Attack 5, the lockout: idle plain HTTP connections counted nowhere and took every file
/// descriptor. Now every socket counts toward `--max-sockets`; past it a new client gets
/// `503 over_capacity` with the JSON body, the clients already in keep receiving, and room
/// freed is room a new client gets.
#[tokio::test]
async fn idle_connections_fill_the_socket_ceiling_and_new_clients_get_503() {
    let server = TestServer::with(&["--max-sockets", "20"]).await;
    let mut bystanders = Bystanders::join(&server).await;
    let base = server.sockets.open();
    let mut idle = Vec::new();
    for i in 0..20 - base {
        // Idle before a request, and idle between kept-alive requests.
        let mut stream = if i % 2 == 0 {
            send_raw(&server, b"").await
        } else {
            let mut stream = send_raw(&server, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await;
            let mut buf = [0u8; 512];
            let n = within("healthz", stream.read(&mut buf)).await.unwrap();
            assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
            stream
        };
        stream.flush().await.unwrap();
        idle.push(stream);
    }
    wait_until("the ceiling to be reached", || server.sockets.open() == 20).await;

    let ws = format!("ws://{}/ws?channel=watch", server.addr);
    match within(
        "a refused websocket",
        tokio_tungstenite::connect_async(ws.clone()),
    )
    .await
    {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 503);
            let body = String::from_utf8(response.body().clone().unwrap()).unwrap();
            assert_eq!(code(&body), json!("over_capacity"));
        }
        other => panic!("expected 503, got {other:?}"),
    }
    let (status, _, body) = raw_request(
        &server,
        "POST /lp/connect?channel=watch HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
    )
    .await;
    assert_eq!((status, code(&body)), (503, json!("over_capacity")));
    // The clients already in lose nothing (the publisher's pooled connection is one of the 20).
    assert_eq!(bystanders.publish(&server, 1).await, 200);
    bystanders.check(&server).await;
    let (_, stats) = server.get_json("/api/stats").await;
    assert!(
        stats["rejected_over_capacity"].as_u64().unwrap() >= 2,
        "{stats}"
    );

    drop(idle);
    wait_until("the idle sockets to close", || {
        server.sockets.open() == base
    })
    .await;
    let mut fresh = server.ws("/ws?channel=watch").await;
    fresh.recv_type("subscribed").await;
    fresh.close().await;
    assert_eq!(bystanders.publish(&server, 2).await, 200);
    bystanders.check(&server).await;
}

/// Attack 5, at shutdown: a hundred requests waiting only on their clients' bodies held
/// shutdown to the full grace period. Now they are answered `503 shutting_down` at once, and
/// heads still arriving are closed. On the paused clock, shutdown finishing inside `within`
/// means it finished without any time passing.
#[tokio::test(start_paused = true)]
async fn shutdown_does_not_wait_for_slow_bodies() {
    let server = TestServer::with(&["--body-timeout", "60s", "--handshake-timeout", "60s"]).await;
    let mut bystanders = Bystanders::join(&server).await;
    let base = server.sockets.open();
    let mut bodies = Vec::new();
    let mut heads = Vec::new();
    for _ in 0..20 {
        bodies.push(send_raw(&server, SLOW_BODY.as_bytes()).await);
        heads.push(send_raw(&server, b"GET /w").await);
        heads.push(send_raw(&server, b"GET /healthz HTTP/1.1\r\nHo").await);
    }
    wait_until("the 60 connections to be accepted", || {
        server.sockets.open() == base + 60
    })
    .await;
    assert_eq!(bystanders.publish(&server, 1).await, 200);
    bystanders.check(&server).await;
    bystanders.leave().await;
    let stopped_at = Instant::now();
    server.shutdown().await.unwrap();
    assert_eq!(stopped_at.elapsed(), Duration::ZERO, "no timer had to fire");
    for body in &mut bodies {
        let (status, _, body) = response(body).await;
        assert_eq!((status, code(&body)), (503, json!("shutting_down")));
    }
    for head in &mut heads {
        assert_eq!(read_to_close(head).await, b"");
    }
}

/// Requests no handler words get the contract's JSON body: unknown paths, wrong methods,
/// paths a route cannot parse; and a path that climbs out of the static directory, however
/// it is spelled, is refused.
#[tokio::test]
async fn unknown_paths_wrong_methods_and_traversal_get_json_refusals() {
    let server = TestServer::start().await;
    let mut bystanders = Bystanders::join(&server).await;
    let get = |path: &str| format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    for path in [
        "/nope",
        "/../Cargo.toml",
        "/%2e%2e/Cargo.toml",
        "/%2E%2E/Cargo.toml",
        "/..%2fCargo.toml",
        "/%2e%2e%2fCargo.toml",
        "/app.js/..%2f..%2fCargo.toml",
        "/%252e%252e/Cargo.toml",
        "/..%5cCargo.toml",
        "/%2fetc%2fpasswd",
        "//etc/passwd",
    ] {
        let (status, head, body) = raw_request(&server, &get(path)).await;
        assert_eq!((status, code(&body)), (404, json!("not_found")), "{path}");
        assert!(head.contains("application/json"), "{path}: {head}");
        assert!(
            !body.contains("[package]") && !body.contains("root:"),
            "{path}"
        );
    }
    let (status, _, body) = raw_request(&server, &get("/crier.js")).await;
    assert_eq!(status, 200, "static files are still served");
    assert!(!body.is_empty());

    let (status, head, body) = raw_request(
        &server,
        "DELETE /api/stats HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!((status, code(&body)), (405, json!("method_not_allowed")));
    assert!(head.contains("allow: get"), "{head}");
    let (status, _, body) = raw_request(
        &server,
        "POST /index.html HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!((status, code(&body)), (405, json!("method_not_allowed")));
    let (status, _, body) = raw_request(
        &server,
        "POST /api/publish/%FF HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nConnection: close\r\n\r\n1",
    )
    .await;
    assert_eq!((status, code(&body)), (400, json!("bad_request")));

    // Answered by hyper before any route, without a body (documented).
    let (status, _, body) = raw_request(&server, "GET / HTTP/1.1 extra\r\n\r\n").await;
    assert_eq!((status, body.as_str()), (400, ""));
    let huge = format!(
        "GET / HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(40 * 1024)
    );
    let (status, _, body) = raw_request(&server, &huge).await;
    assert_eq!((status, body.as_str()), (431, ""));

    assert_eq!(bystanders.publish(&server, 1).await, 200);
    bystanders.check(&server).await;
}
