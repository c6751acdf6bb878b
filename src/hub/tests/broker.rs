//! The hub as a cluster node, with a fake broker at the seam: live messages applied by
//! offset, gaps refused until a catch-up from the broker's history, `missed` where history
//! cannot fill them.

use std::sync::Arc;

use futures_util::future::BoxFuture;

use super::super::broker::{ClusterBroker, Permit, Snapshot, Stored};
use super::*;

/// A broker whose joins always succeed at once (the test loads the mirror itself).
struct FakeBroker(Arc<tokio::sync::Semaphore>);

impl ClusterBroker for FakeBroker {
    fn publish<'a>(
        &'a self,
        _: &'a ChannelName,
        _: &'a str,
    ) -> BoxFuture<'a, Result<Stored, HubError>> {
        Box::pin(async { Err(HubError::BrokerUnavailable("fake".into())) })
    }
    fn join<'a>(&'a self, _: &'a ChannelName) -> BoxFuture<'a, Result<(), HubError>> {
        Box::pin(async { Ok(()) })
    }
    fn pin(&self, _: &ChannelName) {}
    fn unpin(&self, _: &ChannelName) {}
    fn left(&self, _: &ChannelName) {}
    fn snapshot<'a>(
        &'a self,
        _: &'a ChannelName,
    ) -> BoxFuture<'a, Result<Option<Snapshot>, HubError>> {
        Box::pin(async { Ok(None) })
    }
    fn admit(&self) -> Result<Permit, HubError> {
        Ok(self.0.clone().try_acquire_owned().unwrap())
    }
    fn broadcast<'a>(
        &'a self,
        _: &'a crate::hub::ControlCommand,
    ) -> BoxFuture<'a, Result<usize, HubError>> {
        Box::pin(async { Err(HubError::BrokerUnavailable("fake".into())) })
    }
    fn gather_user<'a>(
        &'a self,
        _: &'a str,
    ) -> BoxFuture<'a, Result<crate::hub::control::Gathered, HubError>> {
        Box::pin(async { Err(HubError::BrokerUnavailable("fake".into())) })
    }
    fn node(&self) -> &str {
        "fake"
    }
}

impl crate::hub::cluster_presence::ClusterPresence for FakeBroker {
    fn member_changed(
        &self,
        _: &ChannelName,
        _: ClientId,
        _: crate::hub::cluster_presence::MemberChange,
    ) {
    }
    fn presence_page<'a>(
        &'a self,
        _: &'a ChannelName,
        _: u64,
    ) -> BoxFuture<'a, Result<crate::hub::cluster_presence::StoredPage, HubError>> {
        Box::pin(async { Err(HubError::BrokerUnavailable("fake".into())) })
    }
    fn presence_stats<'a>(
        &'a self,
        _: &'a ChannelName,
    ) -> BoxFuture<'a, Result<crate::protocol::PresenceStats, HubError>> {
        Box::pin(async { Err(HubError::BrokerUnavailable("fake".into())) })
    }
    fn user_up<'a>(&'a self, _: &'a str) -> BoxFuture<'a, Result<bool, HubError>> {
        Box::pin(async { Err(HubError::BrokerUnavailable("fake".into())) })
    }
    fn user_down<'a>(&'a self, _: &'a str) -> BoxFuture<'a, Result<bool, HubError>> {
        Box::pin(async { Err(HubError::BrokerUnavailable("fake".into())) })
    }
    fn user_offline<'a>(
        &'a self,
        _: &'a str,
        _: Duration,
    ) -> BoxFuture<'a, Result<crate::hub::cluster_presence::OfflineCheck, HubError>> {
        Box::pin(async { Err(HubError::BrokerUnavailable("fake".into())) })
    }
}

fn node() -> Hub {
    Hub::with_broker(
        HubConfig::default(),
        CancellationToken::new(),
        Broker::Cluster(Arc::new(FakeBroker(Arc::new(tokio::sync::Semaphore::new(
            8,
        ))))),
        Stats::default(),
    )
}

fn snapshot(epoch: &str, last_offset: u64, first: u64) -> Snapshot {
    Snapshot {
        epoch: Epoch::from_string(epoch.into()),
        last_offset,
        data: (first..=last_offset).map(|i| i.to_string()).collect(),
    }
}

#[test]
fn a_node_serves_a_channel_only_from_a_mirrored_copy() {
    let hub = node();
    let ch = name("c");
    let client = hub.register(TransportKind::WebSocket).unwrap();
    assert!(matches!(
        hub.subscribe(&client, &ch, None, &no_id),
        Err(HubError::NotMirrored)
    ));
    hub.catch_up_from_broker(&ch, &snapshot("e1", 2, 1))
        .unwrap();
    let since = Since {
        epoch: Some("e1".into()),
        offset: 0,
    };
    hub.subscribe(&client, &ch, Some(&since), &no_id).unwrap();
    let frames = drain(&hub, &client);
    assert_eq!(frames[0]["epoch"], "e1");
    assert_eq!(frames[0]["offset"], 2);
    assert_eq!(offsets(&frames), [1, 2]);
}

#[test]
fn gaps_wait_for_a_catch_up_and_duplicates_are_dropped() {
    let hub = node();
    let ch = name("c");
    let client = hub.register(TransportKind::WebSocket).unwrap();
    hub.catch_up_from_broker(&ch, &snapshot("e1", 2, 1))
        .unwrap();
    hub.subscribe(&client, &ch, None, &no_id).unwrap();
    drain(&hub, &client);
    assert_eq!(hub.deliver_from_broker(&ch, "e1", 3, "3"), Live::Applied(1));
    assert_eq!(hub.deliver_from_broker(&ch, "e1", 3, "3"), Live::Duplicate);
    assert_eq!(hub.deliver_from_broker(&ch, "e1", 6, "6"), Live::Gap);
    assert_eq!(offsets(&drain(&hub, &client)), [3], "nothing past the gap");
    // The broker's history fills it: 4, 5, 6 in order, then live again.
    assert_eq!(
        hub.catch_up_from_broker(&ch, &snapshot("e1", 6, 1))
            .unwrap(),
        3
    );
    assert_eq!(hub.deliver_from_broker(&ch, "e1", 6, "6"), Live::Duplicate);
    assert_eq!(hub.deliver_from_broker(&ch, "e1", 7, "7"), Live::Applied(1));
    assert_eq!(offsets(&drain(&hub, &client)), [4, 5, 6, 7]);
}

#[test]
fn gaps_history_cannot_fill_are_told_as_missed() {
    let hub = node();
    let ch = name("c");
    let client = hub.register(TransportKind::WebSocket).unwrap();
    hub.catch_up_from_broker(&ch, &snapshot("e1", 2, 1))
        .unwrap();
    hub.subscribe(&client, &ch, None, &no_id).unwrap();
    drain(&hub, &client);
    // History now starts at 10: 3..=9 are gone.
    hub.catch_up_from_broker(&ch, &snapshot("e1", 12, 10))
        .unwrap();
    let frames = drain(&hub, &client);
    assert_eq!(frames[0]["type"], "missed");
    assert_eq!(frames[0]["reason"], "history_exhausted");
    assert_eq!(frames[0]["since"]["offset"], 2);
    assert_eq!(frames[0]["first_available"], 10);
    assert_eq!(offsets(&frames), [10, 11, 12]);
    // The broker forgot the channel: a new generation, told as such.
    assert_eq!(hub.deliver_from_broker(&ch, "e2", 1, "1"), Live::Gap);
    hub.catch_up_from_broker(&ch, &snapshot("e2", 1, 1))
        .unwrap();
    let frames = drain(&hub, &client);
    assert_eq!(frames[0]["reason"], "epoch_changed");
    assert_eq!(frames[1]["epoch"], "e2");
    assert_eq!(offsets(&frames), [1]);
    hub.disconnect(client.id, DisconnectReason::ClientClosed);
    assert!(hub.stop_mirroring(&ch, || true));
    assert_eq!(
        hub.deliver_from_broker(&ch, "e2", 2, "2"),
        Live::NotMirrored
    );
}
