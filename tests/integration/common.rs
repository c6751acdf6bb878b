//! The test harness: start a server, talk to it over WebSocket, long-poll and HTTP.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::mpsc::RecvTimeoutError;
use std::time::Duration;

use crier::config::Config;
use crier::hub::Hub;
use crier::server::sockets::Sockets;
use crier::server::Server;
use crier::transport::long_poll::LongPoll;
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// Upper bound on any single wait in these tests, in wall-clock time.
pub const WAIT: Duration = Duration::from_secs(10);

/// Real time between two checks in `wait_until`.
const POLL: Duration = Duration::from_millis(5);

// Paused time. Tests of timers run with `#[tokio::test(start_paused = true)]`: the server runs
// in the test's runtime, so a 60 s idle timeout passes in microseconds. But a paused clock
// jumps to the next timer as soon as no task can run and no socket is ready, and a test
// waiting for the server over loopback is one kernel delay away from that: on a busy machine,
// a reply not yet delivered lets the clock run on from timer to timer, in microseconds, and
// fire the very timeouts under test (the idle timeout before a pong is read) or this file's
// own bound. So every wait below stops the clock while it waits, and is bounded in wall-clock
// time: it holds a blocking-pool task whose only job is to time the wait, and tokio does not
// auto-advance a paused clock while a blocking task runs (see `tokio::time::pause`). Time
// then moves only where a test lets it (`let_time_pass_until`) while nothing is in flight, and
// each exchange with the server happens at one instant. For the tests on real time this is
// simply a 10 s bound, as `tokio::time::timeout` would be.

/// Awaits `fut` with the clock stopped, for at most `WAIT` of real time.
pub async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    let (done, finished) = std::sync::mpsc::channel::<()>();
    // Ends when `done` is dropped (the wait is over, or the test unwinds) or at the bound.
    let expired = tokio::task::spawn_blocking(move || {
        let _ = finished.recv_timeout(WAIT);
    });
    tokio::select! {
        biased;
        out = fut => {
            drop(done);
            out
        }
        _ = expired => panic!("timed out waiting for {what}"),
    }
}

/// The real `crier` binary with `args` on an ephemeral port: its process and the address its
/// "listening on" log line names. Its log keeps being drained so it never blocks on a full pipe.
pub async fn spawn_binary(args: &[&str]) -> (tokio::process::Child, String) {
    use tokio::io::{AsyncBufReadExt, BufReader};
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_crier"))
        .args(["--bind", "127.0.0.1:0", "--static-dir", "static"])
        .args(args)
        .env("RUST_LOG", "info")
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("crier binary starts");
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let addr = within("the listening line", async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(rest) = line.split("listening on http://").nth(1) {
                return rest.split_whitespace().next().unwrap().to_owned();
            }
        }
        panic!("crier exited before listening");
    })
    .await;
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, addr)
}

/// The `Content-Length` a raw HTTP/1.1 response head declares (0 when it has none).
pub fn content_length(head: &str) -> usize {
    head.lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse::<usize>().unwrap())
        })
        .unwrap_or(0)
}

/// Polls `condition` until it holds, for at most `WAIT`, with the clock stopped.
pub async fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    within(what, async {
        while !condition() {
            pause().await;
        }
    })
    .await
}

/// One polling interval of real time, for loops that wait on state outside this process (a
/// Redis server's) or with no event to wait on: `tokio::time::sleep` would never end while a
/// test's clock is stopped.
pub async fn pause() {
    tokio::task::spawn_blocking(|| std::thread::sleep(POLL))
        .await
        .unwrap();
}

/// On a paused clock: lets time run (from timer to timer, at once) until `deadline`, which
/// `what` names, for at most `WAIT` of real time. Call it only while no exchange with the
/// server is in flight.
pub async fn let_time_pass_until(what: &str, deadline: Instant) {
    let (done, finished) = std::sync::mpsc::channel::<()>();
    let (expire, expired) = oneshot::channel::<()>();
    // A thread of its own, not the blocking pool, which would hold the clock still. The bound
    // matters when the server keeps the runtime busy: the clock never advances then.
    std::thread::spawn(move || {
        if finished.recv_timeout(WAIT) == Err(RecvTimeoutError::Timeout) {
            let _ = expire.send(());
        }
    });
    tokio::select! {
        biased;
        () = tokio::time::sleep_until(deadline) => drop(done),
        _ = expired => panic!("timed out letting the clock run to {what}"),
    }
}

pub struct TestServer {
    pub addr: SocketAddr,
    pub hub: Hub,
    pub long_poll: LongPoll,
    /// The count of open sockets (every accepted connection); read by the hostile suite.
    #[allow(dead_code)]
    pub sockets: Sockets,
    pub http: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

impl TestServer {
    pub async fn start() -> Self {
        Self::with(&[]).await
    }

    pub async fn with(args: &[&str]) -> Self {
        Self::around(Server::new(Self::config(args))).await
    }

    /// A scale-out node on the Redis at `redis_url`.
    pub async fn node(redis_url: &str, args: &[&str]) -> Self {
        let mut all = vec!["--redis-url", redis_url];
        if !args.contains(&"--redis-timeout") {
            all.extend_from_slice(&["--redis-timeout", "1s"]);
        }
        all.extend_from_slice(args);
        let server = within(
            "the node to reach Redis",
            Server::connect(Self::config(&all)),
        )
        .await
        .expect("the node reaches Redis");
        Self::around(server).await
    }

    pub fn config(args: &[&str]) -> Config {
        let mut all = vec!["--bind", "127.0.0.1:0", "--static-dir", "static"];
        all.extend_from_slice(args);
        Config::from_args(all).expect("test config parses")
    }

    async fn around(server: Server) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let hub = server.hub();
        let long_poll = server.long_poll();
        let sockets = server.sockets();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(server.run(listener, async move {
            let _ = stopped.await;
        }));
        Self {
            addr,
            hub,
            long_poll,
            sockets,
            // The server ends a kept-alive connection after --handshake-timeout (10 s) without
            // a request; on a paused clock that passes between two requests, so the pool must
            // let such connections go before then rather than send into a closing one.
            http: reqwest::Client::builder()
                .pool_idle_timeout(Duration::from_secs(5))
                .build()
                .unwrap(),
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// A raw TCP connection whose receive buffer is the smallest the kernel allows: what
    /// the hub writes to it fills both sockets' buffers quickly unless it is read.
    pub async fn connect_small_window(&self) -> TcpStream {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        within("connect", socket.connect(self.addr)).await.unwrap()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub async fn ws(&self, path: &str) -> Ws {
        let url = format!("ws://{}{}", self.addr, path);
        let (stream, _) = within("websocket connect", tokio_tungstenite::connect_async(url))
            .await
            .expect("websocket connects");
        Ws { stream }
    }

    /// `POST /api/publish/{channel}` with a JSON body; returns the reply.
    pub async fn publish(&self, channel: &str, data: &Value) -> Value {
        let request = self
            .http
            .post(self.url(&format!("/api/publish/{channel}")))
            .json(data);
        let (status, reply) = within("publish", reply_of(request)).await;
        assert_eq!(status, 200, "publish to {channel}: {reply}");
        assert!(reply.is_object(), "publish reply is JSON: {reply}");
        reply
    }

    pub async fn get_json(&self, path: &str) -> (u16, Value) {
        within("GET", reply_of(self.http.get(self.url(path)))).await
    }

    pub async fn post(
        &self,
        path: &str,
        content_type: &str,
        body: impl Into<reqwest::Body>,
    ) -> (u16, Value) {
        let request = self
            .http
            .post(self.url(path))
            .header("content-type", content_type)
            .body(body);
        within("POST", reply_of(request)).await
    }

    /// One HTTP request and its reply, with the clock stopped: lets the server catch up with
    /// what a client just sent on another connection, without that client sending more
    /// (in practice: loopback delivers those bytes before the request, and the server reads
    /// them while it serves it).
    pub async fn round_trip(&self) {
        assert_eq!(self.get_json("/healthz").await.0, 200);
    }

    /// `POST /lp/connect` with `query`; returns the session id.
    pub async fn lp_connect(&self, query: &str, body: Option<Value>) -> String {
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let (status, reply) = self
            .post(&format!("/lp/connect{query}"), "application/json", body)
            .await;
        assert_eq!(status, 200, "lp connect: {reply}");
        reply["session"].as_str().unwrap().to_owned()
    }

    pub async fn lp_poll(&self, session: &str, ack: u64) -> (u16, Value) {
        self.get_json(&format!("/lp/poll?session={session}&ack={ack}"))
            .await
    }

    /// Starts a poll in the background and waits until the hub holds it.
    pub async fn spawn_parked_poll(&self, session: &str, ack: u64) -> JoinHandle<Value> {
        let url = self.url(&format!("/lp/poll?session={session}&ack={ack}"));
        let http = self.http.clone();
        let before = self.long_poll.polls_in_flight();
        let poll = tokio::spawn(async move {
            http.get(url)
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        });
        wait_until("the poll to park", || {
            self.long_poll.polls_in_flight() > before
        })
        .await;
        poll
    }

    pub async fn lp_send(&self, session: &str, frame: &Value) -> (u16, Value) {
        self.post(
            &format!("/lp/send?session={session}"),
            "application/json",
            frame.to_string(),
        )
        .await
    }

    /// Polls (acknowledging as it goes) until `count` frames have arrived.
    pub async fn lp_collect(&self, session: &str, ack: &mut u64, count: usize) -> Vec<Value> {
        let mut frames = Vec::new();
        within("long-poll frames", async {
            while frames.len() < count {
                let (status, reply) = self.lp_poll(session, *ack).await;
                assert_eq!(status, 200, "poll: {reply}");
                *ack = reply["batch"].as_u64().unwrap();
                frames.extend(reply["messages"].as_array().unwrap().iter().cloned());
            }
        })
        .await;
        frames
    }

    /// Waits until every client has left and every session is gone.
    pub async fn assert_no_clients(&self) {
        wait_until("clients to leave the registry", || {
            self.hub.client_count() == 0 && self.long_poll.session_count() == 0
        })
        .await;
    }

    /// Stops the server and waits for `run` to return.
    pub async fn shutdown(mut self) -> std::io::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let task = self.task.take().unwrap();
        within("server shutdown", task).await.unwrap()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

pub struct Ws {
    pub stream: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

/// What the next non-control frame was.
#[derive(Debug)]
pub enum Incoming {
    Json(Value),
    Closed(Option<(u16, String)>),
    /// The connection ended without a close frame.
    Ended(String),
}

impl Ws {
    pub async fn send(&mut self, frame: Value) {
        self.send_text(&frame.to_string()).await;
    }

    pub async fn send_text(&mut self, text: &str) {
        within("websocket send", self.stream.send(Message::text(text)))
            .await
            .expect("websocket send");
    }

    pub async fn next(&mut self) -> Incoming {
        within("websocket frame", async {
            loop {
                match self.stream.next().await {
                    Some(Ok(Message::Text(text))) => {
                        return Incoming::Json(
                            serde_json::from_str(text.as_str()).expect("server sent JSON"),
                        )
                    }
                    Some(Ok(Message::Close(frame))) => {
                        return Incoming::Closed(
                            frame.map(|f| (u16::from(f.code), f.reason.to_string())),
                        )
                    }
                    Some(Ok(_)) => continue,
                    Some(Err(error)) => return Incoming::Ended(error.to_string()),
                    None => return Incoming::Ended("end of stream".to_owned()),
                }
            }
        })
        .await
    }

    pub async fn recv(&mut self) -> Value {
        match self.next().await {
            Incoming::Json(v) => v,
            other => panic!("expected a frame, got {other:?}"),
        }
    }

    /// Skips frames until one of `kind` arrives.
    pub async fn recv_type(&mut self, kind: &str) -> Value {
        loop {
            let frame = self.recv().await;
            if frame["type"] == kind {
                return frame;
            }
        }
    }

    /// Reads (and discards) frames until the close frame; returns its code and reason.
    pub async fn recv_close(&mut self) -> (u16, String) {
        loop {
            match self.next().await {
                Incoming::Json(_) => continue,
                Incoming::Closed(Some(close)) => return close,
                Incoming::Closed(None) => panic!("close frame without a code"),
                Incoming::Ended(why) => panic!("connection ended without a close frame: {why}"),
            }
        }
    }

    pub async fn subscribe(&mut self, channel: &str) -> Value {
        self.send(serde_json::json!({"type": "subscribe", "channel": channel}))
            .await;
        let reply = self.recv_type("subscribed").await;
        assert_eq!(reply["channel"], channel);
        reply
    }

    pub async fn close(mut self) {
        let _ = within(
            "websocket close",
            self.stream
                .close(Some(tokio_tungstenite::tungstenite::protocol::CloseFrame {
                    code: CloseCode::Normal,
                    reason: "bye".into(),
                })),
        )
        .await;
        // Drain until the server's close reply so the server sees a clean close.
        let _ = within("websocket close reply", async {
            while let Some(Ok(_)) = self.stream.next().await {}
        })
        .await;
    }
}

/// Sends `request`; returns the status and the JSON body (`Null` if there is none).
async fn reply_of(request: reqwest::RequestBuilder) -> (u16, Value) {
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// The last frame of a long-poll batch.
pub fn last_frame(batch: &Value) -> Value {
    batch["messages"]
        .as_array()
        .and_then(|frames| frames.last())
        .cloned()
        .unwrap_or_else(|| panic!("empty batch: {batch}"))
}

/// Offsets of the `message` frames among `frames`.
pub fn offsets(frames: &[Value]) -> Vec<u64> {
    frames
        .iter()
        .filter(|f| f["type"] == "message")
        .map(|f| f["offset"].as_u64().unwrap())
        .collect()
}
