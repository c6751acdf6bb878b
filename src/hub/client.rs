//! `Client`: the transport-agnostic handle the hub keeps for each connection — its id, its
//! bounded queue (which is also its cancellation signal and records why it left), and its
//! subscriptions.
//!
//! The hub only ever pushes into the queue; the transport adapter that registered the client
//! owns the reading side and turns the final `DisconnectReason` into a close code.

use std::fmt;
use std::sync::{Mutex, OnceLock};

use crate::auth::ClientIdentity;
use crate::protocol::{ChannelName, DisconnectReason};

use super::queue::{ClientQueue, LagCounter};

#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClientId(pub u64);

impl fmt::Debug for ClientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "c{}", self.0)
    }
}

impl fmt::Display for ClientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "c{}", self.0)
    }
}

pub use super::transport_kind::TransportKind;

#[derive(Debug)]
pub struct Client {
    pub id: ClientId,
    pub transport: TransportKind,
    /// Also the client's cancellation signal: `Hub::disconnect` (and so shutdown) closes it
    /// with the reason, which wakes the transport however it is waiting. A per-client
    /// `CancellationToken` would cost a tree node per connection and a lock on the root at
    /// every connect.
    pub queue: ClientQueue,
    subscriptions: Mutex<Subscriptions>,
    /// Who the client is (its verified token), set once at admission; empty in open mode.
    /// Boxed: inline it would add its ~80 bytes to every client, open mode included.
    identity: OnceLock<Box<ClientIdentity>>,
    /// The socket lent to a flusher (`hub::direct`), for connections that can be written from
    /// outside their task.
    pub(crate) direct: OnceLock<super::direct::Direct>,
}

#[derive(Debug, Default)]
struct Subscriptions {
    channels: Vec<ChannelName>,
    /// Set by `disconnect`: no subscription may be added after the list was taken.
    closed: bool,
    /// Set by `Hub::admitted` (under this lock, unless already closed): the client was
    /// announced as `Connected`, so its disconnect is announced too.
    announced: bool,
}

#[derive(Debug, PartialEq, Eq)]
pub(crate) enum AddSubscription {
    Added,
    Already,
    TooMany,
    Closed,
}

impl Client {
    pub(crate) fn new(
        id: ClientId,
        transport: TransportKind,
        queue_capacity: usize,
        queue_max_bytes: usize,
        lagging: LagCounter,
    ) -> Self {
        Self {
            id,
            transport,
            queue: ClientQueue::new(queue_capacity, queue_max_bytes, lagging),
            subscriptions: Mutex::new(Subscriptions::default()),
            identity: OnceLock::new(),
            direct: OnceLock::new(),
        }
    }

    /// The client's identity; `None` in open mode.
    pub fn identity(&self) -> Option<&ClientIdentity> {
        self.identity.get().map(|identity| &**identity)
    }

    /// Attaches the identity the client was admitted with (once; a second is ignored).
    pub fn set_identity(&self, identity: ClientIdentity) {
        let _ = self.identity.set(Box::new(identity));
    }

    /// Why the client was disconnected; `None` while it is connected.
    pub fn disconnect_reason(&self) -> Option<DisconnectReason> {
        self.queue.reason()
    }

    pub fn is_closed(&self) -> bool {
        self.lock_subs().closed
    }

    pub(crate) fn add_subscription(&self, name: &ChannelName, max: usize) -> AddSubscription {
        let mut subs = self.lock_subs();
        if subs.closed {
            AddSubscription::Closed
        } else if subs.channels.contains(name) {
            AddSubscription::Already
        } else if subs.channels.len() >= max {
            AddSubscription::TooMany
        } else {
            if subs.channels.is_empty() {
                // Most clients hold one channel: room for exactly one (16 bytes), where a
                // first `push` makes room for four.
                subs.channels.reserve_exact(1);
            }
            subs.channels.push(name.clone());
            AddSubscription::Added
        }
    }

    pub(crate) fn remove_subscription(&self, name: &ChannelName) -> bool {
        let mut subs = self.lock_subs();
        let before = subs.channels.len();
        subs.channels.retain(|c| c != name);
        subs.channels.len() != before
    }

    /// Marks the client closed and hands back its channels (exactly once) and whether it
    /// was announced.
    pub(crate) fn close_subscriptions(&self) -> (Vec<ChannelName>, bool) {
        let mut subs = self.lock_subs();
        subs.closed = true;
        (std::mem::take(&mut subs.channels), subs.announced)
    }

    /// Runs `announce` once, unless the client is closed already — under the same lock
    /// `close_subscriptions` takes, so a client is announced before it is closed or never.
    pub(crate) fn announce(&self, announce: impl FnOnce()) {
        let mut subs = self.lock_subs();
        if !subs.closed && !subs.announced {
            subs.announced = true;
            announce();
        }
    }

    /// The channels the client is subscribed to now.
    pub fn channels(&self) -> Vec<ChannelName> {
        self.lock_subs().channels.clone()
    }

    fn lock_subs(&self) -> std::sync::MutexGuard<'_, Subscriptions> {
        self.subscriptions.lock().unwrap_or_else(|p| p.into_inner())
    }
}
