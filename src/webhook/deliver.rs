//! The dispatcher (each delivery is `send`).
//!
//! One dispatcher task reads the hub's events in order, turns them into webhook events (the
//! users' online state lives here: `user_offline` waits out the grace, and a connection
//! within it cancels it), and for each event and URL takes a permit of the semaphore and
//! spawns a delivery. Waiting for a permit is the back-pressure: the queue in front fills and
//! the sink drops, counted. A delivery holds its permit through its retries, so
//! `--webhook-concurrency` bounds requests and backoff sleeps together.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, Semaphore};
use tokio::time::{sleep_until, Instant};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::token::unix_now_ms;
use crate::hub::broker::ClusterBroker;
use crate::hub::HubEvent;

use super::payload::{outgoing, EventKind, Fields, Outgoing};
use super::send::{deliver, Delivery};
use super::{Counters, RateLimitedWarn, WebhookConfig};

mod cluster;

/// What the dispatcher shares with its deliveries.
struct Context {
    /// On a cluster node: where `user_online`/`user_offline` are decided (`cluster`).
    cluster: Option<Arc<dyn ClusterBroker>>,
    config: Arc<WebhookConfig>,
    counters: Counters,
    http: reqwest::Client,
    permits: Arc<Semaphore>,
    tracker: TaskTracker,
    /// Cancelled when the shutdown grace is over: deliveries still running give up.
    abandon: CancellationToken,
    warn: Arc<RateLimitedWarn>,
}

/// Users whose last connection ended, waiting out the offline grace.
#[derive(Default)]
struct Going {
    /// user → (when it goes offline, when its last connection ended in Unix ms).
    users: HashMap<Arc<str>, (Instant, u64)>,
    by_deadline: BTreeSet<(Instant, Arc<str>)>,
}

impl Going {
    fn add(&mut self, user: Arc<str>, deadline: Instant, at_ms: u64) {
        self.cancel(&user);
        self.by_deadline.insert((deadline, user.clone()));
        self.users.insert(user, (deadline, at_ms));
    }

    /// `true` if the user was going (a reconnect within the grace).
    fn cancel(&mut self, user: &Arc<str>) -> bool {
        match self.users.remove(user) {
            Some((deadline, _)) => {
                self.by_deadline.remove(&(deadline, user.clone()));
                true
            }
            None => false,
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.by_deadline.first().map(|(at, _)| *at)
    }

    /// Users whose grace is over at `now` (all of them with `None`).
    fn take_due(&mut self, now: Option<Instant>) -> Vec<(Arc<str>, u64)> {
        let mut due = Vec::new();
        while let Some((at, user)) = self.by_deadline.first().cloned() {
            if now.is_some_and(|now| at > now) {
                break;
            }
            self.by_deadline.pop_first();
            if let Some((_, at_ms)) = self.users.remove(&user) {
                due.push((user, at_ms));
            }
        }
        due
    }
}

pub(super) async fn dispatch(
    cluster: Option<Arc<dyn ClusterBroker>>,
    mut events: mpsc::Receiver<HubEvent>,
    config: Arc<WebhookConfig>,
    counters: Counters,
    tracker: TaskTracker,
    stop: CancellationToken,
) {
    let http = reqwest::Client::builder()
        .timeout(config.timeout)
        .pool_max_idle_per_host(config.concurrency)
        .user_agent(concat!("crier/", env!("CARGO_PKG_VERSION")))
        .build();
    let http = match http {
        Ok(http) => http,
        Err(error) => {
            tracing::error!(%error, "webhooks disabled: cannot build the HTTP client");
            events.close();
            return;
        }
    };
    let cx = Context {
        cluster,
        permits: Arc::new(Semaphore::new(config.concurrency)),
        config,
        counters,
        http,
        tracker,
        abandon: CancellationToken::new(),
        warn: Arc::default(),
    };
    let mut going = Going::default();
    loop {
        let next_offline = going.next_deadline();
        let out = tokio::select! {
            biased;
            () = stop.cancelled() => break,
            event = events.recv() => match event {
                Some(event) => cx.translate_any(event, &mut going).await,
                None => break,
            },
            () = sleep_until(next_offline.unwrap_or_else(Instant::now)), if next_offline.is_some() => {
                let due = going.take_due(Some(Instant::now()));
                cx.offline_any(due, &mut going, None).await
            }
        };
        cx.send_all(out, None, &stop).await;
    }
    cx.drain(events, going).await;
}

impl Context {
    /// The webhook events one hub event makes (none, or one).
    fn translate(&self, event: HubEvent, going: &mut Going) -> Vec<Outgoing> {
        let kinds = self.config.kinds;
        let now_ms = unix_now_ms();
        let secret = &self.config.secret;
        let make = |kind, fields| outgoing(kind, now_ms, fields, secret);
        let out = match event {
            HubEvent::Connected {
                user: Some(user),
                first_of_user: true,
                client,
                ..
            } => {
                // Back within the grace: the user never went offline, so is not online anew.
                let returning = going.cancel(&user);
                (!returning && kinds.has(EventKind::UserOnline)).then(|| {
                    make(
                        EventKind::UserOnline,
                        Fields::User {
                            user: &user,
                            client: Some(client.to_string()),
                        },
                    )
                })
            }
            HubEvent::Disconnected {
                user: Some(user),
                last_of_user: true,
                ..
            } => {
                going.add(user, Instant::now() + self.config.offline_grace, now_ms);
                None
            }
            HubEvent::Connected { .. } | HubEvent::Disconnected { .. } => None,
            // Only a cluster node's broker sends these; `cluster` handles them there.
            HubEvent::ClusterUser { .. } => None,
            HubEvent::ChannelOccupied { channel } => Some(make(
                EventKind::ChannelOccupied,
                Fields::Channel { channel: &channel },
            )),
            HubEvent::ChannelVacated { channel } => Some(make(
                EventKind::ChannelVacated,
                Fields::Channel { channel: &channel },
            )),
            HubEvent::MemberAdded {
                channel,
                client,
                user,
            } => Some(make(
                EventKind::MemberAdded,
                Fields::member(&channel, client, user.as_ref()),
            )),
            HubEvent::MemberRemoved {
                channel,
                client,
                user,
            } => Some(make(
                EventKind::MemberRemoved,
                Fields::member(&channel, client, user.as_ref()),
            )),
        };
        out.into_iter().collect()
    }

    /// `user_offline` for users whose grace is over; `at_ms` is when their last connection
    /// ended.
    fn offline(&self, users: Vec<(Arc<str>, u64)>) -> Vec<Outgoing> {
        if !self.config.kinds.has(EventKind::UserOffline) {
            return Vec::new();
        }
        users
            .into_iter()
            .map(|(user, at_ms)| {
                outgoing(
                    EventKind::UserOffline,
                    at_ms,
                    Fields::User {
                        user: &user,
                        client: None,
                    },
                    &self.config.secret,
                )
            })
            .collect()
    }

    /// `send` for each event; those not started are counted as dropped.
    async fn send_all(
        &self,
        events: Vec<Outgoing>,
        deadline: Option<Instant>,
        stop: &CancellationToken,
    ) {
        let mut left = events.into_iter();
        for event in left.by_ref() {
            if !self.send(event, deadline, stop).await {
                break;
            }
        }
        let urls = self.config.urls.len() as u64;
        self.counters.dropped.inc_by(left.count() as u64 * urls);
    }

    /// Starts one delivery per URL, each once a permit is free. Gives up waiting when
    /// `stop` is cancelled (before the drain) or at `deadline` (during it): `false`, and the
    /// URLs not started are counted as dropped.
    async fn send(
        &self,
        event: Outgoing,
        deadline: Option<Instant>,
        stop: &CancellationToken,
    ) -> bool {
        let urls = &self.config.urls;
        for (i, url) in urls.iter().enumerate() {
            let permit = self.permits.clone().acquire_owned();
            let permit = match deadline {
                None => tokio::select! {
                    permit = permit => permit.ok(),
                    () = stop.cancelled() => None,
                },
                Some(deadline) => tokio::time::timeout_at(deadline, permit)
                    .await
                    .ok()
                    .and_then(Result::ok),
            };
            let Some(permit) = permit else {
                self.counters.dropped.inc_by((urls.len() - i) as u64);
                return false;
            };
            self.tracker.spawn(deliver(
                Delivery {
                    url: url.clone(),
                    event: event.clone(),
                    config: self.config.clone(),
                    counters: self.counters.clone(),
                    http: self.http.clone(),
                    abandon: self.abandon.clone(),
                    warn: self.warn.clone(),
                },
                permit,
            ));
        }
        true
    }

    /// Shutdown: what is queued and every user waiting out the grace (the hub is going away:
    /// they are offline) get until the shutdown grace to be delivered; then the rest is
    /// dropped and counted.
    async fn drain(&self, mut events: mpsc::Receiver<HubEvent>, mut going: Going) {
        let deadline = Instant::now() + self.config.shutdown_grace;
        let mut out = Vec::new();
        let urls = self.config.urls.len() as u64;
        while let Ok(event) = events.try_recv() {
            // A cluster node asks Redis per user: not past the shutdown grace.
            if self.cluster.is_some() && Instant::now() >= deadline {
                self.counters.dropped.inc_by(urls);
                continue;
            }
            out.extend(self.translate_any(event, &mut going).await);
        }
        // From here on the sink's pushes fail, and are counted there.
        events.close();
        let due = going.take_due(None);
        let drain = Some((Duration::ZERO, deadline));
        out.extend(self.offline_any(due, &mut going, drain).await);
        self.send_all(out, Some(deadline), &CancellationToken::new())
            .await;
        // Every permit back means every delivery is over.
        let all = self.config.concurrency as u32;
        if tokio::time::timeout_at(deadline, self.permits.acquire_many(all))
            .await
            .is_err()
        {
            self.abandon.cancel();
        }
        while let Ok(event) = events.try_recv() {
            drop(event);
            self.counters.dropped.inc_by(urls);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn going_users_come_due_in_order_and_can_come_back() {
        let mut going = Going::default();
        let now = Instant::now();
        let (ada, bob): (Arc<str>, Arc<str>) = ("ada".into(), "bob".into());
        going.add(ada.clone(), now + Duration::from_secs(2), 1);
        going.add(bob.clone(), now + Duration::from_secs(1), 2);
        assert!(going.take_due(Some(now)).is_empty());
        assert_eq!(going.next_deadline(), Some(now + Duration::from_secs(1)));
        assert!(going.cancel(&bob));
        assert!(!going.cancel(&bob));
        assert_eq!(
            going.take_due(Some(now + Duration::from_secs(5))),
            vec![(ada, 1)]
        );
        assert_eq!(going.next_deadline(), None);
    }
}
