//! Webhooks (docs/WEBHOOKS.md): a small axum server in the test is the backend's receiver.
//! Each event arrives once, signed, with its fields; a user is offline only when its last
//! connection is gone and the grace is over; a failing receiver gets retries and never slows
//! the hub; a full queue drops, counted; shutdown drops what it cannot deliver, counted.

use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;
use tokio::sync::watch;

use crate::common::*;
use crate::control::{token, ws_of, SECRET};

pub const API_KEY: &str = "webhook-test-key";

#[derive(Clone, Debug)]
struct Hit {
    event: Value,
    signature: String,
    header_event: String,
    header_id: String,
}

#[derive(Clone)]
pub struct Receiver {
    pub url: String,
    hits: Arc<Mutex<Vec<Hit>>>,
    /// The status the receiver answers with.
    status: Arc<AtomicU16>,
    /// While `false`, requests are held unanswered.
    open: watch::Sender<bool>,
}

impl Receiver {
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let receiver = Self {
            url,
            hits: Arc::default(),
            status: Arc::new(AtomicU16::new(200)),
            open: watch::Sender::new(true),
        };
        let app = axum::Router::new()
            .route("/hook", post(hook))
            .with_state(receiver.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        receiver
    }

    fn hits(&self) -> Vec<Hit> {
        self.hits.lock().unwrap().clone()
    }

    fn events(&self) -> Vec<Value> {
        self.hits().into_iter().map(|h| h.event).collect()
    }

    pub fn of_kind(&self, kind: &str) -> Vec<Value> {
        self.events()
            .into_iter()
            .filter(|e| e["event"] == kind)
            .collect()
    }

    pub async fn wait_for(&self, what: &str, condition: impl Fn(&[Value]) -> bool) {
        wait_until(what, || condition(&self.events())).await;
    }
}

async fn hook(State(receiver): State<Receiver>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let header = |name: &str| {
        headers
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default()
    };
    assert_eq!(header("content-type"), "application/json");
    receiver.hits.lock().unwrap().push(Hit {
        event: serde_json::from_slice(&body).expect("a JSON body"),
        signature: header("x-crier-signature"),
        header_event: header("x-crier-event"),
        header_id: header("x-crier-event-id"),
    });
    // Verified here, from the raw bytes, as a backend would: HMAC-SHA256 with the secret.
    let mut mac = Hmac::<Sha256>::new_from_slice(API_KEY.as_bytes()).unwrap();
    mac.update(&body);
    let expected = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    assert_eq!(header("x-crier-signature"), expected, "signature");
    let mut open = receiver.open.subscribe();
    let _ = open.wait_for(|open| *open).await;
    StatusCode::from_u16(receiver.status.load(Ordering::SeqCst)).unwrap()
}

async fn hooked_server(receiver: &Receiver, extra: &[&str]) -> TestServer {
    let mut args = vec![
        "--token-secret",
        SECRET,
        // The first --api-key signs by default (a unit test of `Config` checks it); a secret
        // of its own leaves the backend API on the loopback rule these tests publish by.
        "--webhook-secret",
        API_KEY,
        "--webhook-url",
        &receiver.url,
    ];
    args.extend_from_slice(extra);
    TestServer::with(&args).await
}

async fn stats(server: &TestServer) -> Value {
    let response = within(
        "stats",
        server
            .http
            .get(server.url("/api/stats"))
            .bearer_auth(API_KEY)
            .send(),
    )
    .await
    .unwrap();
    within("stats body", response.json()).await.unwrap()
}

fn webhook_counts(server: &TestServer) -> (u64, u64, u64) {
    let w = &server.hub.stats().webhooks;
    (w.sent.get(), w.failed.get(), w.dropped.get())
}

#[tokio::test]
async fn each_event_arrives_once_signed_with_its_fields() {
    let receiver = Receiver::start().await;
    // One delivery at a time: they arrive in the order the hub saw them.
    let server = hooked_server(
        &receiver,
        &[
            "--webhook-concurrency",
            "1",
            "--webhook-offline-grace",
            "0s",
        ],
    )
    .await;
    let ws = ws_of(&server, "ada", &["room"]).await;
    let session = server
        .lp_connect(
            "",
            Some(json!({"channels": ["room"], "token": token("ada")})),
        )
        .await;
    receiver
        .wait_for("two members", |e| {
            e.iter().filter(|e| e["event"] == "member_added").count() == 2
        })
        .await;
    ws.close().await;
    let (status, _) = server
        .post(
            &format!("/lp/close?session={session}&token={}", token("ada")),
            "application/json",
            "",
        )
        .await;
    assert_eq!(status, 200);
    receiver
        .wait_for("user_offline", |e| {
            e.iter().any(|e| e["event"] == "user_offline")
        })
        .await;
    // A marker after everything: nothing else was sent before it.
    let marker = ws_of(&server, "bob", &["marker"]).await;
    receiver
        .wait_for("the marker", |e| {
            e.iter()
                .any(|e| e["event"] == "member_added" && e["channel"] == "marker")
        })
        .await;

    let hits = receiver.hits();
    let ada: Vec<&Hit> = hits
        .iter()
        .filter(|h| h.event["user"] == "ada" || h.event["channel"] == "room")
        .collect();
    let kinds: Vec<&str> = ada
        .iter()
        .map(|h| h.event["event"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "user_online",
            "channel_occupied",
            "member_added",
            "member_added",
            "member_removed",
            "member_removed",
            "channel_vacated",
            "user_offline"
        ]
    );
    let (ws_client, lp_client) = (&ada[2].event["client"], &ada[3].event["client"]);
    assert_ne!(ws_client, lp_client, "two devices are told apart");
    let fields = |h: &Hit| {
        let mut e = h.event.clone();
        let object = e.as_object_mut().unwrap();
        assert!(object.remove("at_ms").unwrap().as_u64().unwrap() > 1_600_000_000_000);
        let id = object.remove("id").unwrap();
        assert_eq!(id.as_str().unwrap(), h.header_id);
        assert_eq!(e["event"].as_str().unwrap(), h.header_event);
        assert!(h.signature.starts_with("sha256="));
        e
    };
    assert_eq!(
        fields(ada[0]),
        json!({"event": "user_online", "user": "ada", "client": ws_client})
    );
    assert_eq!(
        fields(ada[1]),
        json!({"event": "channel_occupied", "channel": "room"})
    );
    assert_eq!(
        fields(ada[3]),
        json!({"event": "member_added", "channel": "room", "client": lp_client, "user": "ada"})
    );
    assert_eq!(
        fields(ada[4]),
        json!({"event": "member_removed", "channel": "room", "client": ws_client, "user": "ada"})
    );
    assert_eq!(
        fields(ada[6]),
        json!({"event": "channel_vacated", "channel": "room"})
    );
    assert_eq!(
        fields(ada[7]),
        json!({"event": "user_offline", "user": "ada"})
    );
    let ids: std::collections::HashSet<&str> = hits.iter().map(|h| h.header_id.as_str()).collect();
    assert_eq!(ids.len(), hits.len(), "every event has its own id");

    wait_until("the counters", || {
        webhook_counts(&server) == (hits.len() as u64, 0, 0)
    })
    .await;
    let stats = stats(&server).await;
    assert_eq!(
        (
            &stats["webhook_sent"],
            &stats["webhook_failed"],
            &stats["webhook_dropped"]
        ),
        (&json!(hits.len()), &json!(0), &json!(0))
    );
    let metrics = within(
        "metrics",
        server
            .http
            .get(server.url("/metrics"))
            .bearer_auth(API_KEY)
            .send(),
    )
    .await
    .unwrap()
    .text()
    .await
    .unwrap();
    assert!(
        metrics.contains(&format!("crier_webhook_sent_total {}", hits.len())),
        "{metrics}"
    );
    marker.close().await;
    server.assert_no_clients().await;
}

/// The grace on tokio's paused clock: offline only once both devices are gone and the grace
/// is over; a reconnect within the grace is no offline and no new online.
#[tokio::test(start_paused = true)]
async fn a_user_with_two_devices_goes_offline_only_after_both_left_and_the_grace() {
    let receiver = Receiver::start().await;
    // A request timeout far beyond the clock's jumps: nothing in flight may time out.
    let server = hooked_server(
        &receiver,
        &[
            "--webhook-concurrency",
            "1",
            "--webhook-offline-grace",
            "5s",
            "--webhook-timeout",
            "1h",
            "--webhook-events",
            "user_online,user_offline,member_removed,member_added",
            // Long-poll and WebSocket timers must not fire while the clock jumps.
            "--idle-timeout",
            "1h",
            "--ping-interval",
            "30m",
        ],
    )
    .await;
    let removed = |n: usize| {
        move |e: &[Value]| e.iter().filter(|e| e["event"] == "member_removed").count() == n
    };
    let d1 = ws_of(&server, "ada", &["room"]).await;
    let d2 = ws_of(&server, "ada", &["room"]).await;
    receiver.wait_for("both devices", |e| e.len() == 3).await;
    d1.close().await;
    receiver.wait_for("device 1 left", removed(1)).await;
    d2.close().await;
    // The hub emits the member's removal and the disconnect in one call: once the removal
    // arrives, the disconnect is queued and will be read before the clock moves.
    receiver.wait_for("device 2 left", removed(2)).await;
    let left = tokio::time::Instant::now();
    let_time_pass_until(
        "just before the grace ends",
        left + Duration::from_millis(4900),
    )
    .await;
    server.round_trip().await;
    assert!(
        receiver.of_kind("user_offline").is_empty(),
        "offline before the grace"
    );

    // A reload: back within the grace, so neither offline nor a second online.
    let d3 = ws_of(&server, "ada", &["room"]).await;
    receiver
        .wait_for("device 3", |e| {
            e.iter().filter(|e| e["event"] == "member_added").count() == 3
        })
        .await;
    let_time_pass_until("well past the first grace", left + Duration::from_secs(20)).await;
    server.round_trip().await;
    d3.close().await;
    receiver.wait_for("device 3 left", removed(3)).await;
    let gone = tokio::time::Instant::now();
    let_time_pass_until("the grace is over", gone + Duration::from_millis(5100)).await;
    receiver
        .wait_for("user_offline", |e| {
            e.iter().any(|e| e["event"] == "user_offline")
        })
        .await;
    let marker = ws_of(&server, "bob", &["marker"]).await;
    receiver
        .wait_for("the marker", |e| e.iter().any(|e| e["channel"] == "marker"))
        .await;
    let users: Vec<(String, String)> = receiver
        .events()
        .iter()
        .filter(|e| e["user"] == "ada" && e["event"].as_str().unwrap().starts_with("user_"))
        .map(|e| {
            (
                e["event"].as_str().unwrap().into(),
                e["user"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        users,
        [
            ("user_online".to_owned(), "ada".to_owned()),
            ("user_offline".to_owned(), "ada".to_owned())
        ]
    );
    marker.close().await;
    server.assert_no_clients().await;
}

#[tokio::test]
async fn a_failing_receiver_gets_retries_with_backoff_and_the_hub_is_unaffected() {
    let receiver = Receiver::start().await;
    receiver.status.store(503, Ordering::SeqCst);
    let server = hooked_server(
        &receiver,
        &[
            "--webhook-events",
            "member_added",
            "--webhook-attempts",
            "3",
            "--webhook-backoff",
            "1ms",
            "--webhook-backoff-max",
            "5ms",
        ],
    )
    .await;
    let mut bystander = ws_of(&server, "bob", &["watch"]).await;
    wait_until("every attempt", || webhook_counts(&server) == (0, 1, 0)).await;
    let hits = receiver.hits();
    assert_eq!(hits.len(), 3, "three attempts");
    assert!(
        hits.iter().all(|h| h.header_id == hits[0].header_id),
        "retries keep the event id"
    );
    // The hub never waited for any of it.
    let reply = server.publish("watch", &json!("still here")).await;
    assert_eq!(reply["enqueued"], 1);
    assert_eq!(bystander.recv_type("message").await["data"], "still here");

    // A 4xx is a refusal: not retried.
    receiver.status.store(400, Ordering::SeqCst);
    bystander.subscribe("other").await;
    wait_until("the refusal", || webhook_counts(&server) == (0, 2, 0)).await;
    assert_eq!(receiver.hits().len(), 4);
    // A receiver back up gets the next one.
    receiver.status.store(204, Ordering::SeqCst);
    bystander.subscribe("third").await;
    wait_until("the delivery", || webhook_counts(&server) == (1, 2, 0)).await;
    bystander.close().await;
    server.assert_no_clients().await;
}

#[tokio::test]
async fn a_full_queue_drops_and_counts_and_shutdown_drops_what_it_cannot_deliver() {
    let receiver = Receiver::start().await;
    receiver.open.send_replace(false);
    let server = hooked_server(
        &receiver,
        &[
            "--webhook-events",
            "channel_occupied",
            "--webhook-queue",
            "1",
            "--webhook-concurrency",
            "1",
            "--shutdown-grace",
            "1s",
        ],
    )
    .await;
    let channels: Vec<String> = (0..10).map(|i| format!("c{i}")).collect();
    let names: Vec<&str> = channels.iter().map(String::as_str).collect();
    let mut client = ws_of(&server, "ada", &names).await;
    // One delivery hangs, one event waits for its permit, one fills the queue: the rest drop.
    wait_until("drops", || webhook_counts(&server).2 >= 7).await;
    wait_until("the first delivery", || receiver.hits().len() == 1).await;
    let reply = server.publish("c0", &json!("unaffected")).await;
    assert_eq!(reply["enqueued"], 1);
    assert_eq!(client.recv_type("message").await["data"], "unaffected");
    assert!(stats(&server).await["webhook_dropped"].as_u64().unwrap() >= 7);

    // Shutdown: the receiver still hangs; nothing more is delivered, all of it is counted.
    let hub = server.hub.clone();
    within("shutdown", server.shutdown()).await.unwrap();
    let w = &hub.stats().webhooks;
    assert_eq!(
        (w.sent.get(), w.failed.get(), w.dropped.get()),
        (0, 0, 10),
        "every event ends in one counter"
    );
    receiver.open.send_replace(true);
}
