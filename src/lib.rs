//! crier — a real-time connection hub.
//!
//! One process holds WebSocket and HTTP long-poll clients, and fans messages published over
//! HTTP out on named channels through per-client bounded queues. The wire contract is
//! `docs/PROTOCOL.md`; the design and its promises are summarised here.
//!
//! # Map
//!
//! Dependencies point one way: `main → server → http → transport → hub → auth → protocol`;
//! the Redis broker sits beside them: `server → cluster → hub` (it implements the hub's seam).
//!
//! - `main.rs` — thin binary: parse [`config::Config`], init tracing, raise the open-files
//!   limit, bind, [`server::Server::run`] until SIGINT/SIGTERM.
//! - [`config`] — clap flags with `CRIER_*` env vars, turned into typed limits per layer.
//! - [`server`] — accept loop: every accepted socket counts toward `--max-sockets`
//!   ([`server::sockets`]; past it `503 over_capacity`); each new connection's first bytes
//!   are read (not peeked) and decide its path: a valid
//!   WebSocket upgrade of `/ws` is answered on the bare socket ([`transport::ws::direct`]);
//!   a connection that opens with an `/lp/*` request is served on the bare socket too,
//!   request by request (`server::lp`: a strict HTTP/1.1 reader for exactly the long-poll
//!   requests, polls answered by [`http::lp::poll_direct`], the other `/lp/*` requests by the
//!   router, so no parked poll holds hyper's two 8 KiB buffers), until a request it does not
//!   take hands the connection, bytes read included, to hyper; everything else (bad upgrades
//!   included) goes to hyper (HTTP/1.1 with upgrades, the sniffed bytes replayed, writes
//!   under `--write-timeout`) and the axum router. Also the housekeeping task
//!   (history ageing, long-poll reaper) and graceful shutdown over a root
//!   `CancellationToken` and a `TaskTracker` that holds every spawned task.
//! - [`http`] — axum wiring only: router, publish/history/stats API, long-poll endpoints,
//!   every error rendered as status + JSON body in one place ([`http::error`]), request
//!   bodies under `--body-timeout` ([`http::deadline`]), and the JSON `404`/`405`/`400` for
//!   what no handler words (unknown paths, wrong methods, extractor rejections). The backend
//!   API (`/api/*`, `/metrics`) sits behind one middleware that asks [`auth::BackendGuard`],
//!   which also tells the publish handlers which backend is publishing ([`http::limits`]).
//! - [`transport`] — adapters that turn connections into hub calls: [`transport::dispatch`]
//!   (what a client frame does, shared by both transports), [`transport::ws`] (the
//!   [`handshake`](transport::ws::handshake) admits or refuses; then one
//!   session task per socket, spawned once the handshake is done, that holds no read
//!   buffer while idle: queue → socket as pre-encoded frames in one
//!   vectored write per batch, socket → hub, pings, idle and write timeouts; while it has
//!   nothing to do it *parks* and lends its socket to the hub's flushers),
//!   [`transport::long_poll`] (sessions, held polls, acked batches, reaper) and
//!   [`transport::identity`] (tokens at admission, sessions bound to their user, the token
//!   lifetime step of housekeeping). Both transports enforce one shared
//!   [`transport::Limits`]: [`transport::admission`] (clients held and opened per source
//!   address, before the hub registers one) and [`transport::rate`] (frames, resubscribes
//!   with history and publishes per connection, counted in `dispatch`; governor limiters on
//!   tokio's clock, keyed by client, so an idle connection costs nothing).
//! - [`hub`] — the core, free of HTTP/WebSocket types: [`hub::Hub`] (register, subscribe,
//!   publish, take, disconnect), the dashmap registry, channels (offsets, epoch, history ring,
//!   subscribers), per-client bounded queues whose catch-ups are cursors into history,
//!   [`hub::direct`] (flusher tasks that write published frames straight to parked
//!   connections' sockets: one wake-up per publish instead of one per subscriber),
//!   back-pressure (lagging vs stuck clients) and budgets (channel count, history bytes across
//!   channels, data depth), `HubError`, stats; and [`hub::broker`], the seam to where
//!   positions come from (in memory by default, or a cluster broker the channels mirror).
//! - [`auth`] — identity, free of HTTP types beyond header values: API keys and the
//!   loopback rule for backends; connection tokens (JWT) verified into a
//!   [`auth::Principal`] (user, rights, info) that each hub `Client` carries as its
//!   [`auth::ClientIdentity`]; one schedule of token notices and expiries for the hub.
//! - [`webhook`] — outbound calls to the backend: the hub's event sink pushes into a bounded
//!   queue; one dispatcher keeps users' online state (offline after a grace) and delivers
//!   signed JSON events under a semaphore, with timeouts, retries (exponential backoff, full
//!   jitter) and counted drops (`webhook_sent`/`_failed`/`_dropped`).
//! - [`cluster`] — scale-out over Redis (`--redis-url`): the [`hub::broker::ClusterBroker`]
//!   that publishes through one Lua script (offset, history, fan-out in one round trip), and
//!   the listener task that owns the pub/sub connection, keeps each followed channel's local
//!   copy in sequence (catching up from Redis history after a gap) and reconnects; backend
//!   control commands reach every node on one more pub/sub channel (`cluster::control`); a
//!   presence writer beside the listener keeps this node's members and heartbeat in Redis,
//!   fans its joins and leaves out, and removes dead nodes' members (`cluster::presence`);
//!   on a cluster node the webhook dispatcher asks Redis before it announces a user online
//!   or offline (`cluster::users`), so exactly one node does.
//! - [`protocol`] — the wire contract as types, at the bottom so every layer speaks it:
//!   channel names and positions, [`protocol::ErrorCode`] (wire string + HTTP status per
//!   code), [`protocol::DisconnectReason`] (close codes), every server frame
//!   ([`protocol::server`]), client frame parsing, query parsing and every HTTP body
//!   ([`protocol::bodies`]). The doc's code tables are tested against it.
//!
//! # Seams
//!
//! - A transport registers a client with `Hub::register` and keeps the returned handle; it
//!   reads the client's queue ([`hub::Pop`]: frames, empty, or closed with the reason) and
//!   never touches the registry's maps.
//! - The hub only pushes into queues (`try_push`, never awaiting). A full queue evicts that
//!   client as `Slow` in one place (`Hub::evict_slow`); the transport turns the reason into
//!   a close code or `disconnect` frame. When most clients lag at once, `Hub::check_load`
//!   refuses publishes (`overloaded`) instead: back-pressure on publishers rather than mass
//!   eviction.
//! - Direct writes ([`hub::direct`]): a direct WebSocket's transport lends the hub a
//!   [`hub::direct::FrameSink`] (its socket, framing included). While the session waits
//!   with nothing of its own to write, its queue is *parked*: a publish hands the client to a
//!   flusher task, which writes what is queued with one non-blocking vectored write (the
//!   first flusher takes every client; the others help it with a share of a turn while its
//!   writes carry one frame each, i.e. far below saturation). The queue stays the only order; flusher and session exclude each other under the queue's
//!   lock (park/unpark), and whatever the socket does not take at once — a frame cut short
//!   included — is handed back to the session, with its write timeout and eviction rules.
//! - The hub encodes the frames it must order under a channel lock (`message`, `subscribed`,
//!   `missed`) with [`protocol::server`]; a request's reply `id` never enters the hub — the
//!   transport hands `Hub::subscribe` a closure that encodes `subscribed` with it.
//! - Identity: a transport authenticates a connecting client's token before
//!   `Hub::register` and attaches the identity to the new `Client`; `dispatch` checks each
//!   `subscribe`/`publish` against it (`forbidden`) before calling the hub, which itself
//!   knows nothing of tokens. Expiry is one more reason: the housekeeping tick calls
//!   `Hub::disconnect(id, TokenExpired)`.
//! - The per-address limits need the peer: `server` tags each hyper request (and each
//!   `/lp/*` request it hands the router from the bare socket) with it (`ConnectInfo`); the
//!   direct WebSocket path reads it off the socket.
//! - Every ending goes through `Hub::disconnect(id, reason)`, exactly once. It closes the
//!   client's queue with the reason, which is also the transport's cancellation signal.
//! - Events: the hub tells one installed [`hub::EventSink`] each membership change
//!   ([`hub::HubEvent`]: connected/disconnected with the user, member added/removed,
//!   channel occupied/vacated), synchronously and never on the publish path; the sink must
//!   not block (webhooks push into a bounded queue). `Connected` comes from
//!   `Hub::admitted`, which `Identity::attach` calls once the user is attached; the same
//!   moments keep the user → clients index that the control API (`/api/users/…`) reads.
//! - The broker seam ([`hub::broker`]): with the in-memory broker, `Hub::publish` and
//!   `Hub::subscribe` are the whole story (synchronous, unchanged). With a cluster broker the
//!   transports call the `*_stored`/`*_joined` variants, which wait for the broker (a
//!   publish is accepted once stored); the broker calls back only through
//!   `Hub::deliver_from_broker`, `Hub::catch_up_from_broker` and `Hub::stop_mirroring`. No
//!   Redis type crosses into the hub.

pub mod auth;
pub mod cluster;
pub mod config;
pub mod http;
pub mod hub;
pub mod protocol;
pub mod server;
pub mod transport;
pub mod webhook;
