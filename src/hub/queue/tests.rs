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

/// A socket stand-in for the flushers (`hub::direct`): takes at most `room` bytes in all, one
/// byte of framing per frame, and remembers what it took.
struct Sink {
    room: std::sync::Mutex<usize>,
    out: std::sync::Mutex<Vec<u8>>,
}

impl Sink {
    fn with_room(room: usize) -> Self {
        Self {
            room: std::sync::Mutex::new(room),
            out: std::sync::Mutex::new(Vec::new()),
        }
    }

    fn taken(&self) -> String {
        String::from_utf8(self.out.lock().unwrap().clone()).unwrap()
    }
}

impl crate::hub::direct::FrameSink for Sink {
    fn try_write(&self, frames: &mut dyn Iterator<Item = &Frame>) -> std::io::Result<usize> {
        let mut room = self.room.lock().unwrap();
        if *room == 0 {
            return Err(std::io::ErrorKind::WouldBlock.into());
        }
        let mut out = self.out.lock().unwrap();
        let mut written = 0;
        for frame in frames {
            let wire: Vec<u8> = std::iter::once(b'|')
                .chain(frame.as_bytes().iter().copied())
                .collect();
            let n = wire.len().min(*room);
            out.extend_from_slice(&wire[..n]);
            *room -= n;
            written += n;
            if *room == 0 {
                break;
            }
        }
        Ok(written)
    }

    fn wire_len(&self, frame: &Frame) -> usize {
        1 + frame.len()
    }
}

#[test]
fn a_parked_queue_is_flushed_without_waking_its_consumer() {
    let q = ClientQueue::new(8, usize::MAX, LagCounter::default());
    assert!(q.park());
    assert_eq!(q.push_fanout(frame("a")), Ok(Pushed::ToFlush));
    assert_eq!(
        q.push_fanout(frame("b")),
        Ok(Pushed::Queued),
        "handed to the flusher once per turn"
    );
    let sink = Sink::with_room(usize::MAX);
    assert_eq!(
        q.flush(&sink),
        Flushed {
            writes: 1,
            frames: 2,
            handed_back: false
        }
    );
    assert_eq!(sink.taken(), "|a|b");
    assert_eq!(q.len(), 0);
    // Still parked: the next publish goes to the flusher again, and the consumer was never
    // woken (no permit waiting for it).
    assert_eq!(q.push_fanout(frame("c")), Ok(Pushed::ToFlush));
    q.flush(&sink);
    assert_eq!(sink.taken(), "|a|b|c");
    let woken = futures_util::FutureExt::now_or_never(q.notify.notified());
    assert!(woken.is_none(), "the consumer was woken");
    assert!(q.unpark().is_none());
}

#[test]
fn what_the_socket_does_not_take_is_handed_back_with_the_frame_cut_short() {
    let q = ClientQueue::new(8, usize::MAX, LagCounter::default());
    assert!(q.park());
    for s in ["one", "two", "three"] {
        q.push_fanout(frame(s)).unwrap();
    }
    // "|one" and "|t" fit.
    let sink = Sink::with_room(6);
    assert_eq!(
        q.flush(&sink),
        Flushed {
            writes: 1,
            frames: 1,
            handed_back: true
        }
    );
    assert_eq!(sink.taken(), "|one|t");
    // The consumer is woken, finishes "two" from byte 2 of its wire form, then takes the rest.
    assert!(futures_util::FutureExt::now_or_never(q.ready()).is_some());
    let (cut, written) = q.unpark().expect("a frame was cut short");
    assert_eq!((cut.as_bytes(), written), (&b"two"[..], 2));
    let mut out = Vec::new();
    assert_eq!(q.try_take(&mut out, 10), Taken::Frames);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].as_bytes(), b"three");
    // Unparked: a flusher turn that still comes writes nothing.
    q.push_fanout(frame("four")).unwrap();
    q.flush(&Sink::with_room(usize::MAX));
    assert_eq!(q.len(), 1);
}

#[test]
fn a_socket_that_takes_nothing_hands_everything_back() {
    let q = ClientQueue::new(8, usize::MAX, LagCounter::default());
    assert!(q.park());
    q.push_fanout(frame("a")).unwrap();
    q.flush(&Sink::with_room(0));
    assert!(q.unpark().is_none());
    assert_eq!(q.len(), 1);
    assert!(futures_util::FutureExt::now_or_never(q.ready()).is_some());
}

#[test]
fn the_consumer_cannot_park_on_unfinished_work() {
    let q = ClientQueue::new(8, usize::MAX, LagCounter::default());
    q.try_push(frame("a")).unwrap();
    assert!(!q.park(), "frames are queued");
    let mut out = Vec::new();
    q.try_take(&mut out, 10);
    assert!(q.park());
    // A frame cut short must be finished first.
    q.push_fanout(frame("bb")).unwrap();
    q.flush(&Sink::with_room(2));
    assert!(!q.park());
    assert!(q.unpark().is_some());
    assert!(q.park());
    q.close(DisconnectReason::Shutdown);
    assert!(!q.park(), "closed");
}

#[test]
fn replies_and_replays_for_a_parked_consumer_are_its_own() {
    let q = ClientQueue::new(8, usize::MAX, LagCounter::default());
    assert!(q.park());
    q.try_push(frame("reply")).unwrap();
    assert!(futures_util::FutureExt::now_or_never(q.ready()).is_some());
    // Unparked by that push: a publish now wakes the consumer as before.
    assert_eq!(q.push_fanout(frame("m")), Ok(Pushed::Queued));
    let mut out = Vec::new();
    q.try_take(&mut out, 10);
    // A replay cursor stops a flusher: only the consumer reads history.
    assert!(q.park());
    q.push_fanout(frame("m1")).unwrap();
    q.try_push_replay(Replay {
        channel: ChannelName::parse("c").unwrap(),
        epoch: Epoch::from_string("e".into()),
        after: 0,
        through: 3,
    })
    .unwrap();
    let sink = Sink::with_room(usize::MAX);
    q.flush(&sink);
    assert_eq!(sink.taken(), "");
}

#[test]
fn a_frame_cut_short_survives_the_queue_closing() {
    let q = ClientQueue::new(8, usize::MAX, LagCounter::default());
    assert!(q.park());
    q.push_fanout(frame("abcdef")).unwrap();
    q.flush(&Sink::with_room(3));
    q.close(DisconnectReason::Slow);
    let (cut, written) = q.unpark().expect("kept for the close frame to follow");
    assert_eq!((cut.as_bytes(), written), (&b"abcdef"[..], 3));
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
