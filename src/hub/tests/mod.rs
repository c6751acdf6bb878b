//! Unit tests of the hub core: no sockets, frames read straight from client queues.

use super::*;
use crate::protocol::{server, ErrorCode};
use serde_json::Value;
use std::time::Duration;

fn raw(json: &str) -> Box<serde_json::value::RawValue> {
    serde_json::value::RawValue::from_string(json.to_owned()).unwrap()
}

/// The `subscribed` reply of a request without an id.
fn no_id(s: &Subscribed<'_>) -> Frame {
    server::subscribed(s, None)
}

fn hub_with(config: HubConfig) -> Hub {
    Hub::new(config, CancellationToken::new())
}

fn hub() -> Hub {
    hub_with(HubConfig::default())
}

fn name(s: &str) -> ChannelName {
    ChannelName::parse(s).unwrap()
}

/// Everything queued for `client`, parsed.
fn drain(hub: &Hub, client: &Client) -> Vec<Value> {
    let mut frames = Vec::new();
    hub.take(client, &mut frames, usize::MAX);
    frames
        .iter()
        .map(|f| serde_json::from_slice(f.as_bytes()).unwrap())
        .collect()
}

fn offsets(frames: &[Value]) -> Vec<u64> {
    frames
        .iter()
        .filter(|f| f["type"] == "message")
        .map(|f| f["offset"].as_u64().unwrap())
        .collect()
}

#[test]
fn publish_reaches_each_subscriber_once_in_order() {
    let hub = hub();
    let news = name("news");
    let a = hub.register(TransportKind::WebSocket).unwrap();
    let b = hub.register(TransportKind::LongPoll).unwrap();
    hub.subscribe(&a, &news, None, &|s| server::subscribed(s, Some(&raw("1"))))
        .unwrap();
    hub.subscribe(&b, &news, None, &no_id).unwrap();
    for i in 0..50 {
        let p = hub.publish(&news, &i.to_string()).unwrap();
        assert_eq!(p.offset, i + 1);
        assert_eq!(p.enqueued, 2);
    }
    for client in [&a, &b] {
        let frames = drain(&hub, client);
        assert_eq!(frames[0]["type"], "subscribed");
        assert_eq!(frames[0]["offset"], 0);
        assert_eq!(offsets(&frames), (1..=50).collect::<Vec<_>>());
        assert_eq!(frames[1]["data"], 0);
    }
    assert_eq!(drain(&hub, &a).len(), 0);
    let first = hub.register(TransportKind::WebSocket).unwrap();
    hub.subscribe(&first, &news, None, &|s| {
        server::subscribed(s, Some(&raw(r#""x""#)))
    })
    .unwrap();
    assert_eq!(drain(&hub, &first)[0]["id"], "x");
}

#[test]
fn resume_replays_missed_messages_without_gap_or_duplicate() {
    let hub = hub();
    let news = name("news");
    let c = hub.register(TransportKind::WebSocket).unwrap();
    hub.subscribe(&c, &news, None, &no_id).unwrap();
    for i in 0..5 {
        hub.publish(&news, &i.to_string()).unwrap();
    }
    let frames = drain(&hub, &c);
    let epoch = frames[1]["epoch"].as_str().unwrap().to_owned();
    hub.disconnect(c.id, DisconnectReason::ClientClosed);
    for i in 5..9 {
        hub.publish(&news, &i.to_string()).unwrap();
    }
    let again = hub.register(TransportKind::WebSocket).unwrap();
    let since = Since {
        epoch: Some(epoch),
        offset: 5,
    };
    hub.subscribe(&again, &news, Some(&since), &no_id).unwrap();
    hub.publish(&news, "9").unwrap();
    let frames = drain(&hub, &again);
    assert_eq!(frames[0]["type"], "subscribed");
    assert_eq!(frames[0]["recovered"], true);
    assert_eq!(frames[0]["offset"], 9);
    assert_eq!(offsets(&frames), vec![6, 7, 8, 9, 10]);
}

#[test]
fn resume_past_history_sends_missed_then_what_is_left() {
    let hub = hub_with(HubConfig {
        history: HistoryLimits {
            size: 3,
            max_bytes: usize::MAX,
            ttl: Duration::from_secs(60),
        },
        ..HubConfig::default()
    });
    let ch = name("c");
    for i in 0..10 {
        hub.publish(&ch, &i.to_string()).unwrap();
    }
    let epoch = hub.history(&ch, 0, 10, usize::MAX).unwrap().epoch;
    let c = hub.register(TransportKind::WebSocket).unwrap();
    let since = Since {
        epoch: Some(epoch.as_str().to_owned()),
        offset: 2,
    };
    hub.subscribe(&c, &ch, Some(&since), &no_id).unwrap();
    let frames = drain(&hub, &c);
    assert_eq!(frames[0]["recovered"], false);
    assert_eq!(frames[1]["type"], "missed");
    assert_eq!(frames[1]["reason"], "history_exhausted");
    assert_eq!(frames[1]["first_available"], 8);
    assert_eq!(offsets(&frames), vec![8, 9, 10]);
}

#[test]
fn resume_with_another_epoch_reports_epoch_changed() {
    let hub = hub();
    let ch = name("c");
    hub.publish(&ch, "1").unwrap();
    let c = hub.register(TransportKind::WebSocket).unwrap();
    let since = Since {
        epoch: Some("000000000000".into()),
        offset: 1,
    };
    hub.subscribe(&c, &ch, Some(&since), &no_id).unwrap();
    let frames = drain(&hub, &c);
    assert_eq!(frames[1]["type"], "missed");
    assert_eq!(frames[1]["reason"], "epoch_changed");
    assert_eq!(offsets(&frames), vec![1]);
}

#[test]
fn full_queue_evicts_only_the_slow_client() {
    let hub = hub_with(HubConfig {
        queue_capacity: 4,
        ..HubConfig::default()
    });
    let ch = name("c");
    let slow = hub.register(TransportKind::WebSocket).unwrap();
    let fast = hub.register(TransportKind::WebSocket).unwrap();
    hub.subscribe(&slow, &ch, None, &no_id).unwrap();
    hub.subscribe(&fast, &ch, None, &no_id).unwrap();
    let mut received = Vec::new();
    for i in 0..10 {
        hub.publish(&ch, &i.to_string()).unwrap();
        received.extend(offsets(&drain(&hub, &fast)));
    }
    assert_eq!(received, (1..=10).collect::<Vec<_>>());
    assert_eq!(slow.disconnect_reason(), Some(DisconnectReason::Slow));
    assert_eq!(slow.queue.reason(), Some(DisconnectReason::Slow));
    assert_eq!(hub.stats().disconnects(DisconnectReason::Slow), 1);
    assert_eq!(hub.subscriber_count(&ch), 1);
    assert_eq!(hub.client_count(), 1);
}

#[test]
fn limits_and_policy_are_enforced() {
    let hub = hub_with(HubConfig {
        max_connections: 1,
        max_subscriptions: 1,
        ..HubConfig::default()
    });
    let c = hub.register(TransportKind::WebSocket).unwrap();
    assert!(matches!(
        hub.register(TransportKind::LongPoll),
        Err(HubError::OverCapacity(1))
    ));
    hub.subscribe(&c, &name("a"), None, &no_id).unwrap();
    assert_eq!(
        hub.subscribe(&c, &name("a"), None, &no_id)
            .unwrap_err()
            .code(),
        ErrorCode::AlreadySubscribed
    );
    assert_eq!(
        hub.subscribe(&c, &name("b"), None, &no_id)
            .unwrap_err()
            .code(),
        ErrorCode::TooManySubscriptions
    );
    assert_eq!(
        hub.unsubscribe(&c, &name("b")).unwrap_err().code(),
        ErrorCode::NotSubscribed
    );
    assert!(hub.client_publish(&name("chat:x"), "1", None).is_ok());
    assert_eq!(
        hub.client_publish(&name("news"), "1", None)
            .unwrap_err()
            .code(),
        ErrorCode::PublishForbidden
    );
}

#[test]
fn registry_forgets_idle_channels_and_departed_clients() {
    let hub = hub_with(HubConfig {
        history: HistoryLimits {
            size: 0,
            max_bytes: usize::MAX,
            ttl: Duration::from_secs(1),
        },
        ..HubConfig::default()
    });
    let c = hub.register(TransportKind::WebSocket).unwrap();
    hub.subscribe(&c, &name("a"), None, &no_id).unwrap();
    hub.subscribe(&c, &name("b"), None, &no_id).unwrap();
    assert_eq!(hub.channel_count(), 2);
    hub.unsubscribe(&c, &name("a")).unwrap();
    assert_eq!(hub.channel_count(), 1);
    assert!(hub.disconnect(c.id, DisconnectReason::ClientClosed));
    assert!(
        !hub.disconnect(c.id, DisconnectReason::Slow),
        "second call is a no-op"
    );
    assert_eq!(c.disconnect_reason(), Some(DisconnectReason::ClientClosed));
    assert_eq!(hub.channel_count(), 0);
    assert_eq!(hub.client_count(), 0);
    assert!(hub.subscribe(&c, &name("a"), None, &no_id).is_err());
    assert_eq!(hub.channel_count(), 0);
}

#[test]
fn history_expires_by_age_and_sweep_forgets_the_channel() {
    let hub = hub_with(HubConfig {
        history: HistoryLimits {
            size: 10,
            max_bytes: usize::MAX,
            ttl: Duration::ZERO,
        },
        ..HubConfig::default()
    });
    hub.publish(&name("a"), "1").unwrap();
    std::thread::sleep(Duration::from_millis(2));
    assert_eq!(hub.sweep(), 1);
    assert_eq!(hub.channel_count(), 0);
}

#[test]
fn publish_policy_patterns() {
    let p = PublishPolicy::parse("chat:*, exact");
    assert!(p.allows(&name("chat:lobby")));
    assert!(p.allows(&name("exact")));
    assert!(!p.allows(&name("exactly")));
    assert!(!PublishPolicy::parse("").allows(&name("x")));
    assert!(PublishPolicy::parse("*").allows(&name("x")));
}

mod limits;

mod broker;

/// Records which task wrote each frame: a socket stand-in for the flushers.
#[derive(Default)]
struct TaskSink {
    tasks: std::sync::Mutex<std::collections::HashSet<tokio::task::Id>>,
    frames: std::sync::atomic::AtomicUsize,
}

impl crate::hub::direct::FrameSink for TaskSink {
    fn try_write(&self, frames: &mut dyn Iterator<Item = &Frame>) -> std::io::Result<usize> {
        let mut written = 0;
        for frame in frames {
            written += frame.len();
            self.frames
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        // About what a `send` costs: the flusher is slower than the publish that hands it
        // clients, as with real sockets.
        std::thread::sleep(Duration::from_micros(20));
        if let Some(task) = tokio::task::try_id() {
            self.tasks.lock().unwrap().insert(task);
        }
        Ok(written)
    }

    fn wire_len(&self, frame: &Frame) -> usize {
        frame.len()
    }
}

/// Parked subscribers of `channel`, each lending `sink`.
fn parked_subscribers(hub: &Hub, channel: &ChannelName, sink: &Arc<TaskSink>, n: usize) {
    for _ in 0..n {
        let client = hub.register(TransportKind::WebSocket).unwrap();
        hub.subscribe(&client, channel, None, &no_id).unwrap();
        drain(hub, &client);
        assert!(hub.attach_sink(&client, sink.clone()));
        assert!(client.park());
    }
}

/// Waits until every flusher waits for work with nothing handed to it: no write is left.
async fn flushers_settle(hub: &Hub) {
    tokio::time::timeout(Duration::from_secs(10), async {
        while !hub.flushers_idle() {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("the flushers to settle");
}

/// With two flushers, a publish that finds both idle is written by both (the first gives the
/// idle helper its share); below the sharing threshold, and with one flusher, by one. Every
/// subscriber gets the message once either way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publish_to_many_parked_subscribers_is_shared_with_an_idle_helper() {
    for (flushers, subscribers, writers) in [(2, 200, 2), (2, 10, 1), (1, 200, 1)] {
        let hub = hub();
        let tracker = tokio_util::task::TaskTracker::new();
        hub.start_flushers(flushers, &tracker);
        let channel = name("many");
        let sink = Arc::new(TaskSink::default());
        parked_subscribers(&hub, &channel, &sink, subscribers);
        flushers_settle(&hub).await;
        hub.publish(&channel, "1").unwrap();
        flushers_settle(&hub).await;
        assert_eq!(
            sink.frames.load(std::sync::atomic::Ordering::Relaxed),
            subscribers,
            "every subscriber written to, once"
        );
        assert_eq!(
            sink.tasks.lock().unwrap().len(),
            writers,
            "{flushers} flushers, {subscribers} subscribers"
        );
    }
}
