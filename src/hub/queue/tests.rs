//! Unit tests of the client queue: bounds, wake-ups, lag counting, replays.

use super::*;

/// How the transports consume: wait for `ready`, then take what is there. `false` once
/// the queue is closed.
async fn pop_batch(q: &ClientQueue, out: &mut Vec<Frame>, max: usize) -> bool {
    q.ready().await;
    !matches!(q.try_take(out, max), Taken::Closed(_))
}

fn frame(s: &str) -> Frame {
    Frame::from_string(s.to_owned())
}

#[test]
fn full_queue_refuses_without_waiting() {
    let q = ClientQueue::new(2, usize::MAX, LagCounter::default());
    assert_eq!(q.try_push(frame("a")), Ok(()));
    assert_eq!(q.try_push(frame("b")), Ok(()));
    assert_eq!(q.try_push(frame("c")), Err(PushError::Full));
    assert_eq!(q.len(), 2);
}

#[test]
fn closed_queue_refuses_and_reports_closed() {
    let q = ClientQueue::new(2, usize::MAX, LagCounter::default());
    q.try_push(frame("a")).unwrap();
    q.close(DisconnectReason::Slow);
    q.close(DisconnectReason::Shutdown);
    assert_eq!(q.try_push(frame("b")), Err(PushError::Closed));
    let mut out = Vec::new();
    assert_eq!(
        q.try_take(&mut out, 10),
        Taken::Closed(DisconnectReason::Slow),
        "the first reason is kept"
    );
    assert!(out.is_empty());
}

#[tokio::test]
async fn pop_batch_takes_everything_in_order_then_waits() {
    let q = std::sync::Arc::new(ClientQueue::new(8, usize::MAX, LagCounter::default()));
    for s in ["1", "2", "3"] {
        q.try_push(frame(s)).unwrap();
    }
    let mut out = Vec::new();
    assert!(pop_batch(&q, &mut out, 10).await);
    let got: Vec<&str> = out
        .iter()
        .map(|f| std::str::from_utf8(f.as_bytes()).unwrap())
        .collect();
    assert_eq!(got, ["1", "2", "3"]);

    let q2 = q.clone();
    let waiter = tokio::spawn(async move {
        let mut out = Vec::new();
        let open = pop_batch(&q2, &mut out, 10).await;
        (open, out.len())
    });
    tokio::task::yield_now().await;
    q.try_push(frame("4")).unwrap();
    assert_eq!(waiter.await.unwrap(), (true, 1));
}

#[tokio::test]
async fn close_wakes_a_waiting_consumer() {
    let q = std::sync::Arc::new(ClientQueue::new(8, usize::MAX, LagCounter::default()));
    let q2 = q.clone();
    let waiter = tokio::spawn(async move { pop_batch(&q2, &mut Vec::new(), 10).await });
    tokio::task::yield_now().await;
    q.close(DisconnectReason::Shutdown);
    assert!(!waiter.await.unwrap());
}

#[test]
fn lagging_is_counted_across_the_half_full_mark() {
    let lagging = LagCounter::default();
    let q = ClientQueue::new(4, usize::MAX, lagging.clone());
    q.try_push(frame("1")).unwrap();
    assert_eq!(lagging.load(Ordering::Relaxed), 0);
    q.try_push(frame("2")).unwrap();
    q.try_push(frame("3")).unwrap();
    assert_eq!(lagging.load(Ordering::Relaxed), 1);
    q.try_take(&mut Vec::new(), 2);
    assert_eq!(lagging.load(Ordering::Relaxed), 0);
    q.try_push(frame("4")).unwrap();
    assert_eq!(lagging.load(Ordering::Relaxed), 1);
    q.close(DisconnectReason::Slow);
    assert_eq!(lagging.load(Ordering::Relaxed), 0);
}

#[test]
fn queue_is_bounded_in_bytes_but_always_takes_one_frame() {
    let q = ClientQueue::new(100, 10, LagCounter::default());
    assert_eq!(
        q.try_push(frame(&"x".repeat(25))),
        Ok(()),
        "one frame always fits"
    );
    assert_eq!(q.try_push(frame("y")), Err(PushError::Full));
    q.try_take(&mut Vec::new(), 10);
    assert_eq!(q.try_push(frame("123456")), Ok(()));
    assert_eq!(q.try_push(frame("1234")), Ok(()));
    assert_eq!(q.try_push(frame("1")), Err(PushError::Full));
}

#[test]
fn a_replay_takes_one_slot_and_stops_the_take_where_it_stands() {
    let q = ClientQueue::new(3, usize::MAX, LagCounter::default());
    let replay = Replay {
        channel: ChannelName::parse("c").unwrap(),
        epoch: Epoch::from_string("e".into()),
        after: 0,
        through: 5_000,
    };
    q.try_push(frame("subscribed")).unwrap();
    q.try_push_replay(replay.clone()).unwrap();
    q.try_push(frame("live")).unwrap();
    assert_eq!(q.try_push(frame("x")), Err(PushError::Full));
    let mut out = Vec::new();
    assert_eq!(
        q.try_take(&mut out, 10),
        Taken::Replay(Box::new(replay.clone()))
    );
    assert_eq!(out.len(), 1, "the frame before the replay");
    let rest = Replay {
        after: 64,
        ..replay
    };
    q.put_back(Box::new(rest.clone()));
    assert_eq!(q.try_take(&mut out, 10), Taken::Replay(Box::new(rest)));
    assert_eq!(q.try_take(&mut out, 10), Taken::Frames);
    assert_eq!(out.len(), 2, "the live frame after it");
}

#[test]
fn batch_respects_max() {
    let q = ClientQueue::new(8, usize::MAX, LagCounter::default());
    for s in ["1", "2", "3"] {
        q.try_push(frame(s)).unwrap();
    }
    let mut out = Vec::new();
    assert_eq!(q.try_take(&mut out, 2), Taken::Frames);
    assert_eq!(out.len(), 2);
    assert_eq!(q.len(), 1);
    assert_eq!(q.try_take(&mut out, 2), Taken::Frames);
    assert_eq!(q.try_take(&mut out, 2), Taken::Empty);
    assert_eq!(out.len(), 3);
}

/// An idle client's queue holds no allocation: taking the last frame gives it back, a
/// partial take keeps it.
#[test]
fn a_drained_queue_holds_no_allocation() {
    let q = ClientQueue::new(8, usize::MAX, LagCounter::default());
    assert_eq!(lock(&q.state).entries.capacity(), 0);
    q.try_push(frame("a")).unwrap();
    q.try_push(frame("b")).unwrap();
    let mut out = Vec::new();
    assert_eq!(q.try_take(&mut out, 1), Taken::Frames);
    assert!(
        lock(&q.state).entries.capacity() > 0,
        "one frame still queued"
    );
    assert_eq!(q.try_take(&mut out, 8), Taken::Frames);
    assert_eq!(out.len(), 2);
    assert_eq!(lock(&q.state).entries.capacity(), 0);
}
