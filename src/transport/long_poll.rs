//! Long-poll transport: sessions that hold a hub client between HTTP requests.
//!
//! `connect` registers a client exactly like a WebSocket does; the session keeps it (and so
//! its queue). `poll` takes the queue (one poll at a time), waits up to the hold time, and
//! answers with a numbered batch that stays with the session until the next poll acknowledges
//! it, so a response lost in transit loses nothing. A reaper ends sessions nobody polls.

use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use dashmap::DashMap;
use serde_json::value::RawValue;
use tokio::time::{sleep, Instant, Sleep};

use crate::hub::{ChannelName, Client, DisconnectReason, Hub, HubError, Pop, TransportKind};
use crate::protocol::bodies::{poll_batch_body, ConnectChannel};
use crate::protocol::server;

use super::admission::SourceSlot;
use super::dispatch;
use super::identity::{check_channels, Identity};
use super::{Limits, TransportError};

/// Frames one poll response carries: everything queued, up to this many bytes of frames
/// (always at least one frame) — the default `--queue-max-bytes`, so a full default queue
/// goes out in one response. A backlog goes out in as few responses as it fits in (each costs
/// a request, a wake-up and two system calls whatever it carries), while one body — built in
/// one piece and kept until acknowledged — stays bounded however large the messages or a
/// catch-up from history. Was 512 frames: 1,024 queued small frames took two responses, and
/// 64 KiB messages made a 32 MiB body.
pub const MAX_BATCH_BYTES: usize = 256 * 1024;

/// Frames taken from the queue at a time while filling a batch: the batch ends at most this
/// many frames past [`MAX_BATCH_BYTES`].
const TAKE_CHUNK: usize = 16;

#[derive(Clone, Debug)]
pub struct LongPollConfig {
    /// How long a poll waits for messages before answering empty.
    pub hold: Duration,
    /// A session not polled for this long is ended as idle.
    pub session_timeout: Duration,
}

/// A session id: 128 random bits, written as 32 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SessionId(u128);

impl SessionId {
    fn random() -> Self {
        Self(rand::random())
    }

    pub fn parse(s: &str) -> Option<Self> {
        if s.len() != 32 {
            return None;
        }
        u128::from_str_radix(s, 16).ok().map(Self)
    }
}

impl std::fmt::Display for SessionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

#[derive(Clone)]
pub struct LongPoll {
    inner: Arc<Inner>,
}

struct Inner {
    hub: Hub,
    config: LongPollConfig,
    limits: Limits,
    sessions: DashMap<SessionId, Arc<Session>>,
    /// Polls parked right now (each holds an HTTP request open).
    polls_in_flight: AtomicUsize,
    identity: Identity,
}

struct Session {
    client: Arc<Client>,
    /// The session's place in its address's count, given back when the session is gone.
    _slot: Option<SourceSlot>,
    state: Mutex<SessionState>,
}

struct SessionState {
    polling: bool,
    /// When a poll was last answered with the queue's frames (or the hold ran out). Only this
    /// progress keeps a session alive: re-fetching an unacknowledged batch, abandoning polls
    /// and sends do not, so a session cannot be kept without a client that reads.
    last_answered: Instant,
    /// Number of the last batch sent (0 before the first).
    last_batch: u64,
    /// That batch's body, until a poll acknowledges it.
    unacked: Option<Bytes>,
}

impl Session {
    fn lock(&self) -> MutexGuard<'_, SessionState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A successful poll: the JSON body to send.
pub struct PollBatch(pub Bytes);

/// Clears `polling` however the poll ends, including when the HTTP client goes away during
/// the hold and hyper drops the request future (which is not progress: the idle clock is
/// left alone).
struct PollGuard<'a> {
    session: &'a Session,
    in_flight: &'a AtomicUsize,
}

impl Drop for PollGuard<'_> {
    fn drop(&mut self) {
        let mut state = self.session.lock();
        state.polling = false;
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

impl LongPoll {
    pub fn new(hub: Hub, config: LongPollConfig, limits: Limits) -> Self {
        Self::with_identity(hub, config, Identity::default(), limits)
    }

    /// Admits clients by their tokens and binds each session to its user (`new` is open
    /// mode).
    pub fn with_identity(
        hub: Hub,
        config: LongPollConfig,
        identity: Identity,
        limits: Limits,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                hub,
                config,
                limits,
                sessions: DashMap::new(),
                polls_in_flight: AtomicUsize::new(0),
                identity,
            }),
        }
    }

    pub fn config(&self) -> &LongPollConfig {
        &self.inner.config
    }

    pub fn session_count(&self) -> usize {
        self.inner.sessions.len()
    }

    /// Polls currently parked waiting for messages.
    pub fn polls_in_flight(&self) -> usize {
        self.inner.polls_in_flight.load(Ordering::Relaxed)
    }

    /// Opens a session for a client from `peer` (the address the request came from).
    pub async fn connect(
        &self,
        channels: Vec<ConnectChannel>,
        token: Option<&str>,
        peer: Option<IpAddr>,
    ) -> Result<SessionId, TransportError> {
        let hub = &self.inner.hub;
        if hub.is_shutting_down() {
            return Err(TransportError::ShuttingDown);
        }
        let principal = self.inner.identity.authenticate(token)?;
        // Validate everything before registering, so a bad request leaves nothing behind.
        let mut wanted = Vec::with_capacity(channels.len());
        for c in channels {
            let (name, since) = match c {
                ConnectChannel::Name(name) => (name, None),
                ConnectChannel::Resume { channel, since } => (channel, since),
            };
            wanted.push((ChannelName::parse(&name)?, since));
        }
        let names: Vec<ChannelName> = wanted.iter().map(|(name, _)| name.clone()).collect();
        check_channels(hub.config(), principal.as_ref(), &names)?;
        let max = hub.config().max_subscriptions;
        if wanted.len() > max {
            return Err(HubError::TooManySubscriptions(max).into());
        }
        let slot = self.inner.limits.admission.admit(peer).inspect_err(|_| {
            hub.stats().rejected_too_many_connections.inc();
        })?;
        let client = hub.register(TransportKind::LongPoll)?;
        self.inner.identity.attach(hub, &client, principal);
        for (channel, since) in &wanted {
            let reply = |s: &crate::protocol::Subscribed<'_>| server::subscribed(s, None);
            match hub
                .subscribe_joined(&client, channel, since.as_ref(), false, &reply)
                .await
            {
                Ok(()) => {}
                Err(HubError::AlreadySubscribed(_)) => {}
                Err(e) => {
                    hub.disconnect(client.id, DisconnectReason::ClientClosed);
                    return Err(e.into());
                }
            }
        }
        let id = SessionId::random();
        self.inner.sessions.insert(
            id,
            Arc::new(Session {
                client,
                _slot: slot,
                state: Mutex::new(SessionState {
                    polling: false,
                    last_answered: Instant::now(),
                    last_batch: 0,
                    unacked: None,
                }),
            }),
        );
        Ok(id)
    }

    /// The session, if it exists and the request proves its user (with tokens on, a session
    /// id alone is not enough: a request with another user's token, or none, is as unknown
    /// as a wrong id).
    fn session(&self, id: SessionId, token: Option<&str>) -> Result<Arc<Session>, TransportError> {
        self.inner
            .sessions
            .get(&id)
            .map(|s| s.value().clone())
            .filter(|s| self.inner.identity.owns(&s.client, token))
            .ok_or(TransportError::UnknownSession)
    }

    pub async fn poll(
        &self,
        id: SessionId,
        ack: u64,
        token: Option<&str>,
    ) -> Result<PollBatch, TransportError> {
        let hold = sleep(self.inner.config.hold);
        tokio::pin!(hold);
        self.poll_holding(id, ack, token, hold).await
    }

    /// [`Self::poll`], its hold timed by `hold`, which is re-dated here. A connection that
    /// polls again and again keeps one timer for all its polls: a timer moved to a later
    /// deadline is only re-dated, where a new one is put into the runtime's timer wheel and
    /// taken out again every poll.
    pub async fn poll_holding(
        &self,
        id: SessionId,
        ack: u64,
        token: Option<&str>,
        mut hold: Pin<&mut Sleep>,
    ) -> Result<PollBatch, TransportError> {
        let session = self.session(id, token)?;
        {
            let mut state = session.lock();
            if state.polling {
                return Err(TransportError::PollInProgress);
            }
            // Only two acks are honest: the last batch (received) or the one before it (the
            // last batch was lost in transit; it is sent again). Anything older means another
            // poller took and acknowledged batches this one never saw: refuse rather than
            // skip them silently.
            let resend = ack + 1 == state.last_batch && state.unacked.is_some();
            if ack != state.last_batch && !resend {
                return Err(TransportError::BadAck {
                    ack,
                    last: state.last_batch,
                });
            }
            if ack == state.last_batch {
                state.unacked = None;
            } else if let Some(body) = &state.unacked {
                // The client did not get the last batch: send it again.
                return Ok(PollBatch(body.clone()));
            }
            state.polling = true;
            self.inner.polls_in_flight.fetch_add(1, Ordering::Relaxed);
        }
        let _guard = PollGuard {
            session: &session,
            in_flight: &self.inner.polls_in_flight,
        };
        let client = &session.client;
        hold.as_mut().reset(Instant::now() + self.inner.config.hold);
        tokio::select! {
            // Also wakes when the client is disconnected: that closes the queue.
            () = client.queue.ready() => {}
            () = hold => {}
        }
        let mut frames = Vec::new();
        let mut bytes = 0;
        loop {
            let before = frames.len();
            match self.inner.hub.take(client, &mut frames, TAKE_CHUNK) {
                Pop::Closed(reason) => {
                    // The hub ended this client: its last batch says why, then the session
                    // is gone.
                    frames.push(server::disconnect(reason));
                    self.inner.sessions.remove(&id);
                    break;
                }
                Pop::Empty => break,
                Pop::Frames => {}
            }
            bytes += frames[before..]
                .iter()
                .map(|f| f.as_bytes().len())
                .sum::<usize>();
            if bytes >= MAX_BATCH_BYTES {
                break;
            }
        }
        let mut state = session.lock();
        state.last_answered = Instant::now();
        if frames.is_empty() {
            return Ok(PollBatch(poll_batch_body(state.last_batch, &[])));
        }
        state.last_batch += 1;
        let body = poll_batch_body(state.last_batch, &frames);
        state.unacked = Some(body.clone());
        Ok(PollBatch(body))
    }

    /// Handles a body of one client frame or a JSON array of them; replies arrive by poll.
    /// Returns how many frames were handled: once the session's client is disconnected (a
    /// reply overflowed its queue, or it kept going past its rate limits), the rest of an
    /// array is not handled. Each frame of an array counts against the rate limits.
    pub fn send(
        &self,
        id: SessionId,
        body: &str,
        token: Option<&str>,
    ) -> Result<usize, TransportError> {
        let session = self.session(id, token)?;
        let hub = &self.inner.hub;
        let limits = &self.inner.limits.frames;
        let client = &session.client;
        if body.trim_start().starts_with('[') {
            let frames: Vec<&RawValue> = serde_json::from_str(body).map_err(|e| {
                TransportError::BadRequest(format!("body is not a JSON array of frames: {e}"))
            })?;
            let mut handled = 0;
            for frame in &frames {
                if client.disconnect_reason().is_some() {
                    break;
                }
                dispatch::handle_text(hub, limits, client, frame.get());
                handled += 1;
            }
            Ok(handled)
        } else {
            dispatch::handle_text(hub, limits, client, body);
            Ok(1)
        }
    }

    pub fn close(&self, id: SessionId, token: Option<&str>) -> Result<(), TransportError> {
        self.session(id, token)?;
        let (_, session) = self
            .inner
            .sessions
            .remove(&id)
            .ok_or(TransportError::UnknownSession)?;
        self.inner
            .hub
            .disconnect(session.client.id, DisconnectReason::ClientClosed);
        Ok(())
    }

    /// Ends sessions with no poll answered within the session timeout (and none waiting),
    /// and forgets sessions whose client
    /// the hub already disconnected once they have had that long to collect the news.
    pub fn reap(&self) -> usize {
        let timeout = self.inner.config.session_timeout;
        let now = Instant::now();
        let expired: Vec<(SessionId, Arc<Session>)> = self
            .inner
            .sessions
            .iter()
            .filter(|e| {
                let state = e.value().lock();
                !state.polling && now.saturating_duration_since(state.last_answered) > timeout
            })
            .map(|e| (*e.key(), e.value().clone()))
            .collect();
        for (id, session) in &expired {
            self.inner.sessions.remove(id);
            self.inner
                .hub
                .disconnect(session.client.id, DisconnectReason::IdleTimeout);
        }
        expired.len()
    }

    /// Forgets every session (at shutdown, after their clients were disconnected).
    pub fn clear(&self) {
        self.inner.sessions.clear();
    }
}
