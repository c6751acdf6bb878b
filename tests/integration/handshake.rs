//! The WebSocket handshake and closing handshake at the edges of the contract: every upgrade
//! request gets the same answer on the direct path (a head within the sniffer's 2 KiB) as on
//! the hyper path (the same head padded past it), and a close frame with a code RFC 6455
//! forbids is a protocol error.

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;

use crate::bad_input::{bystander, still_served};
use crate::common::*;

/// The RFC 6455 §1.3 example key.
const KEY: &str = "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==";

/// The header fields of a valid upgrade, without `Host`.
const UPGRADE: [&str; 4] = [
    "Connection: Upgrade",
    "Upgrade: websocket",
    "Sec-WebSocket-Version: 13",
    KEY,
];

/// More than the direct path's sniffer looks at, so the head goes to hyper.
const PADDING: usize = 2100;

/// Which path a head is made to take.
#[derive(Clone, Copy, Debug)]
enum Path {
    Direct,
    Hyper,
}

const PATHS: [Path; 2] = [Path::Direct, Path::Hyper];

/// An HTTP/1.1 `GET` head for `target` with `Host`, `fields`, and on the hyper path a padding
/// field first (so the sniffer gives up before the head ends).
fn head(target: &str, fields: &[String], path: Path) -> String {
    head_of(&format!("GET {target} HTTP/1.1"), fields, path)
}

fn head_of(request_line: &str, fields: &[String], path: Path) -> String {
    let mut head = format!("{request_line}\r\nHost: crier\r\n");
    if let Path::Hyper = path {
        head += &format!("X-Padding: {}\r\n", "p".repeat(PADDING));
    }
    for field in fields {
        head += field;
        head += "\r\n";
    }
    head += "\r\n";
    match path {
        Path::Direct => assert!(head.len() < 2048, "a direct head fits the sniffer"),
        Path::Hyper => assert!(head.len() > 2048),
    }
    head
}

fn fields(fields: &[&str]) -> Vec<String> {
    fields.iter().map(|f| f.to_string()).collect()
}

/// A response read off a raw socket: status, the header block, the body.
#[derive(Debug)]
struct Answer {
    status: u16,
    headers: String,
    body: String,
}

/// Sends `head` on a fresh connection and reads the response (head, and the body by its
/// `Content-Length`). Returns the socket too, for a 101.
async fn ask(server: &TestServer, head: &str) -> (Answer, TcpStream) {
    let mut socket = within("connect", TcpStream::connect(server.addr))
        .await
        .unwrap();
    within("send head", socket.write_all(head.as_bytes()))
        .await
        .unwrap();
    let mut received = Vec::new();
    let head_end = within("response head", async {
        loop {
            if let Some(end) = received.windows(4).position(|w| w == b"\r\n\r\n") {
                return end + 4;
            }
            let mut chunk = [0u8; 1024];
            let n = socket.read(&mut chunk).await.unwrap();
            assert!(n > 0, "connection closed without a response: {received:?}");
            received.extend_from_slice(&chunk[..n]);
        }
    })
    .await;
    let response_head = String::from_utf8(received[..head_end].to_vec()).unwrap();
    let status = response_head[9..12].parse().unwrap();
    let content_length = content_length(&response_head);
    within("response body", async {
        while received.len() < head_end + content_length {
            let mut chunk = [0u8; 1024];
            let n = socket.read(&mut chunk).await.unwrap();
            assert!(n > 0, "connection closed in the body");
            received.extend_from_slice(&chunk[..n]);
        }
    })
    .await;
    let answer = Answer {
        status,
        headers: response_head,
        body: String::from_utf8(received[head_end..].to_vec()).unwrap(),
    };
    (answer, socket)
}

/// Asks the same request on both paths; asserts both answers have the same status and body.
async fn same_on_both_paths(server: &TestServer, target: &str, fields: &[String]) -> Answer {
    let (direct, _) = ask(server, &head(target, fields, Path::Direct)).await;
    let (hyper, _) = ask(server, &head(target, fields, Path::Hyper)).await;
    assert_eq!(
        (direct.status, &direct.body),
        (hyper.status, &hyper.body),
        "{fields:?}: direct {direct:?}, hyper {hyper:?}"
    );
    direct
}

fn error_code(answer: &Answer) -> String {
    let body: Value =
        serde_json::from_str(&answer.body).unwrap_or_else(|_| panic!("a JSON body: {answer:?}"));
    assert!(body["error"]["message"]
        .as_str()
        .is_some_and(|m| !m.is_empty()));
    assert!(
        answer
            .headers
            .to_ascii_lowercase()
            .contains("content-type: application/json"),
        "{answer:?}"
    );
    body["error"]["code"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn bad_upgrades_get_400_not_websocket_on_both_paths() {
    let server = TestServer::start().await;
    let mut other = bystander(&server).await;
    let [connection, upgrade, version, key] = UPGRADE;
    let cases = [
        (
            "version 8",
            [connection, upgrade, "Sec-WebSocket-Version: 8", key],
        ),
        ("no key", [connection, upgrade, version, "X-No-Key: 1"]),
        (
            "key not 16 bytes",
            [connection, upgrade, version, "Sec-WebSocket-Key: c2hvcnQ="],
        ),
        (
            "no connection upgrade",
            ["Connection: keep-alive", upgrade, version, key],
        ),
        ("no version", [connection, upgrade, "X-No-Version: 1", key]),
    ];
    for (i, (what, case)) in cases.iter().enumerate() {
        let answer = same_on_both_paths(&server, "/ws?channel=a", &fields(case)).await;
        assert_eq!(answer.status, 400, "{what}: {answer:?}");
        assert_eq!(error_code(&answer), "not_websocket", "{what}");
        still_served(&server, &mut other, i as u64).await;
    }
    // HTTP/1.0 cannot upgrade (hyper used to answer 101 and then close the connection).
    let http10 = |path| head_of("GET /ws?channel=a HTTP/1.0", &fields(&UPGRADE), path);
    let (direct, _) = ask(&server, &http10(Path::Direct)).await;
    let (hyper, _) = ask(&server, &http10(Path::Hyper)).await;
    assert_eq!((direct.status, &direct.body), (hyper.status, &hyper.body));
    assert_eq!(direct.status, 400, "{direct:?}");
    assert_eq!(error_code(&direct), "not_websocket");
    still_served(&server, &mut other, 99).await;
    other.close().await;
    server.assert_no_clients().await;
}

/// Refusals of valid upgrades: the direct path renders them itself, exactly as hyper's does.
#[tokio::test]
async fn refused_upgrades_get_the_same_error_on_both_paths() {
    let server = TestServer::with(&["--max-subscriptions", "2"]).await;
    let mut other = bystander(&server).await;
    let cases = [
        ("/ws?channel=a%2Fb", 400, "invalid_channel"),
        (
            "/ws?channel=a&channel=b&channel=c",
            400,
            "too_many_subscriptions",
        ),
    ];
    for (i, (target, status, code)) in cases.into_iter().enumerate() {
        let answer = same_on_both_paths(&server, target, &fields(&UPGRADE)).await;
        assert_eq!(answer.status, status, "{target}: {answer:?}");
        assert_eq!(error_code(&answer), code, "{target}");
        still_served(&server, &mut other, i as u64).await;
    }
    other.close().await;
    server.assert_no_clients().await;
}

/// hyper takes at most 100 header fields, and so does the direct path: one more gets hyper's
/// own `431`, with an empty body, whichever path the head's size picks.
#[tokio::test]
async fn a_head_with_more_than_100_header_fields_gets_431_on_both_paths() {
    let server = TestServer::start().await;
    let mut other = bystander(&server).await;
    // `Host`, the four upgrade fields and (on the hyper path) the padding count too.
    let with_fields = |total: usize, path: Path| {
        let own = 1 + UPGRADE.len() + usize::from(matches!(path, Path::Hyper));
        let mut all = fields(&UPGRADE);
        all.extend((own..total).map(|i| format!("X-{i}: v")));
        head("/ws?channel=a", &all, path)
    };
    for (i, total) in [101, 121, 130].into_iter().enumerate() {
        for path in PATHS {
            let (answer, _) = ask(&server, &with_fields(total, path)).await;
            assert_eq!(answer.status, 431, "{total} fields, {path:?}: {answer:?}");
            assert_eq!(answer.body, "", "{total} fields, {path:?}");
        }
        still_served(&server, &mut other, i as u64).await;
    }
    // Exactly 100 is served on both paths.
    for path in PATHS {
        let (answer, socket) = ask(&server, &with_fields(100, path)).await;
        assert_eq!(answer.status, 101, "100 fields, {path:?}: {answer:?}");
        assert!(answer.headers.contains("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="));
        drop(socket);
    }
    still_served(&server, &mut other, 100).await;
    other.close().await;
    server.assert_no_clients().await;
}

/// Connects a WebSocket client on `path` and waits for its `subscribed` to `channel`.
async fn connect(server: &TestServer, path: Path) -> Ws {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut request = format!("ws://{}/ws?channel=c", server.addr)
        .into_client_request()
        .unwrap();
    if let Path::Hyper = path {
        request
            .headers_mut()
            .insert("x-padding", "p".repeat(PADDING).parse().unwrap());
    }
    let (stream, _) = within("connect", tokio_tungstenite::connect_async(request))
        .await
        .unwrap();
    let mut ws = Ws { stream };
    assert_eq!(ws.recv().await["type"], "subscribed");
    ws
}

async fn send_close(ws: &mut Ws, code: u16, reason: &str) {
    let frame = CloseFrame {
        code: CloseCode::from(code),
        reason: reason.into(),
    };
    within("send close", ws.stream.close(Some(frame)))
        .await
        .unwrap();
}

async fn disconnects(server: &TestServer) -> Value {
    let (status, stats) = server.get_json("/api/stats").await;
    assert_eq!(status, 200);
    stats["disconnects"].clone()
}

#[tokio::test]
async fn a_close_code_rfc_6455_forbids_is_a_protocol_error() {
    let server = TestServer::start().await;
    let mut other = bystander(&server).await;
    let forbidden = [0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535];
    let mut n = 0;
    for path in PATHS {
        for code in forbidden {
            let mut ws = connect(&server, path).await;
            send_close(&mut ws, code, "").await;
            assert_eq!(
                ws.recv_close().await,
                (1002, "protocol_error".to_owned()),
                "close code {code} on the {path:?} path"
            );
            n += 1;
            // The hub counts the ending before the close frame is sent.
            assert_eq!(disconnects(&server).await["protocol_error"], n);
            still_served(&server, &mut other, n).await;
        }
    }
    assert_eq!(disconnects(&server).await["client_closed"], 0);
    other.close().await;
    server.assert_no_clients().await;
}

#[tokio::test]
async fn a_valid_close_code_is_echoed_and_counted_as_client_closed() {
    let server = TestServer::start().await;
    let mut other = bystander(&server).await;
    let valid = [
        (1000, "bye"),
        (1001, ""),
        (1002, "your fault"),
        (1003, "x"),
        (1007, ""),
        (1011, "oops"),
        (1012, ""),
        (1013, ""),
        (3000, "iana"),
        (4000, "mine"),
        (4999, "last"),
    ];
    let mut n = 0;
    for path in PATHS {
        for (code, reason) in valid {
            let mut ws = connect(&server, path).await;
            send_close(&mut ws, code, reason).await;
            assert_eq!(
                ws.recv_close().await,
                (code, reason.to_owned()),
                "close code {code} on the {path:?} path"
            );
            n += 1;
            assert_eq!(disconnects(&server).await["client_closed"], n);
            still_served(&server, &mut other, n).await;
        }
    }
    assert_eq!(disconnects(&server).await["protocol_error"], 0);
    other.close().await;
    server.assert_no_clients().await;
}
