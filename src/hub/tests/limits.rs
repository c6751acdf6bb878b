//! Unit tests of what the hub refuses or sheds to stay within its limits: overload, history
//! bytes, channel count, data depth.

use super::*;

#[test]
fn many_lagging_clients_push_back_on_publishers() {
    let hub = hub_with(HubConfig {
        queue_capacity: 4,
        overload_fraction: 0.5,
        overload_min_lagging: 2,
        ..HubConfig::default()
    });
    let ch = name("c");
    let clients: Vec<_> = (0..3)
        .map(|_| {
            let c = hub.register(TransportKind::LongPoll).unwrap();
            hub.subscribe(&c, &ch, None, &no_id).unwrap();
            c
        })
        .collect();
    // `subscribed` + 1 message = 2 frames = half of 4: every client now lags.
    assert!(hub.check_load().is_ok());
    hub.publish(&ch, "1").unwrap();
    assert_eq!(hub.lagging_clients(), 3);
    assert_eq!(hub.check_load().unwrap_err().code(), ErrorCode::Overloaded);
    assert_eq!(
        hub.client_publish(&name("chat:x"), "1", None)
            .unwrap_err()
            .code(),
        ErrorCode::Overloaded
    );
    // Two clients catch up: one lagging client of three is not overload.
    drain(&hub, &clients[0]);
    drain(&hub, &clients[1]);
    assert_eq!(hub.lagging_clients(), 1);
    assert!(hub.check_load().is_ok());
    hub.disconnect(clients[2].id, DisconnectReason::ClientClosed);
    assert_eq!(hub.lagging_clients(), 0);
}

#[test]
fn history_is_bounded_in_bytes() {
    let hub = hub_with(HubConfig {
        history: HistoryLimits {
            size: 100,
            max_bytes: 500,
            ttl: Duration::from_secs(60),
        },
        ..HubConfig::default()
    });
    let ch = name("c");
    for _ in 0..10 {
        hub.publish(&ch, &format!("\"{}\"", "x".repeat(50)))
            .unwrap();
    }
    // Each message frame is a little over 100 bytes, plus 96 of bookkeeping: two fit in 500.
    let page = hub.history(&ch, 0, 100, usize::MAX).unwrap();
    assert_eq!(page.frames.len(), 2);
    assert_eq!(page.last_offset, 10);
}

#[test]
fn channels_are_capped_and_data_depth_is_bounded() {
    let hub = hub_with(HubConfig {
        max_channels: 2,
        ..HubConfig::default()
    });
    hub.publish(&name("a"), "1").unwrap();
    let c = hub.register(TransportKind::WebSocket).unwrap();
    hub.subscribe(&c, &name("b"), None, &no_id).unwrap();
    assert_eq!(
        hub.publish(&name("c"), "1").unwrap_err().code(),
        ErrorCode::TooManyChannels
    );
    assert_eq!(
        hub.subscribe(&c, &name("c"), None, &no_id)
            .unwrap_err()
            .code(),
        ErrorCode::TooManyChannels
    );
    assert_eq!(
        hub.unsubscribe(&c, &name("c")).unwrap_err().code(),
        ErrorCode::NotSubscribed,
        "a refused subscribe leaves no subscription behind"
    );
    assert_eq!(
        hub.check_room(&[name("a"), name("x")]).unwrap_err().code(),
        ErrorCode::TooManyChannels
    );
    hub.publish(&name("b"), "2").unwrap();
    assert_eq!(hub.channel_count(), 2);
    assert_eq!(hub.stats().rejected_too_many_channels(), 3);

    let nested = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
    assert_eq!(
        hub.publish(&name("a"), &nested(33)).unwrap_err().code(),
        ErrorCode::TooDeep
    );
    hub.publish(&name("a"), &nested(32)).unwrap();
}

#[test]
fn all_history_stays_within_the_budget_oldest_first() {
    let hub = hub_with(HubConfig {
        history_budget: 16 << 10,
        ..HubConfig::default()
    });
    let data = format!("\"{}\"", "x".repeat(200));
    // `old` fills history first; then many channels publish after it.
    for _ in 0..20 {
        hub.publish(&name("old"), &data).unwrap();
    }
    for i in 0..200 {
        hub.publish(&name(&format!("new{}", i % 50)), &data)
            .unwrap();
        assert!(hub.history_bytes() <= (16 << 10) + 300, "within the budget");
    }
    assert!(hub.stats().history_shed() > 0);
    // The oldest went first: `old` lost everything before the newer channels lost anything.
    let old = hub
        .history(&name("old"), 0, 100, usize::MAX)
        .map_or(0, |p| p.frames.len());
    assert_eq!(old, 0);
    // What is left is exactly the newest publishes, whichever channel they went to.
    let kept = |k: usize| {
        hub.history(&name(&format!("new{k}")), 0, 100, usize::MAX)
            .map_or(0, |p| p.frames.len())
    };
    let total: usize = (0..50).map(kept).sum();
    // Each message costs its ~270-byte frame and 96 bytes of bookkeeping: 16 KiB holds 44.
    assert!(total > 35, "most of the budget is still used: {total}");
    for k in 0..50 {
        let expected = (200 - total..200).filter(|i| i % 50 == k).count();
        assert_eq!(kept(k), expected, "new{k}");
    }
    // A resume that needed shed messages is told, not given a gap.
    let c = hub.register(TransportKind::WebSocket).unwrap();
    let since = Since {
        epoch: None,
        offset: 0,
    };
    hub.subscribe(&c, &name("new0"), Some(&since), &no_id)
        .unwrap();
    let frames = drain(&hub, &c);
    assert_eq!(frames[1]["type"], "missed");
    assert_eq!(frames[1]["reason"], "history_exhausted");
}
