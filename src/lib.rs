//! crier — a real-time connection hub.
//!
//! One process holds WebSocket and HTTP long-poll clients, and fans messages published over
//! HTTP out on named channels through per-client bounded queues. The wire contract is
//! `docs/PROTOCOL.md`; the design and its promises are summarised here.
//!
//! # Map
//!
//! Dependencies point one way: `main → server → http → transport → hub → protocol`; the
//! Redis broker sits beside them: `server → cluster → hub` (it implements the hub's seam).
//!
//! - `main.rs` — thin binary: parse [`config::Config`], init tracing, raise the open-files
//!   limit, bind, [`server::Server::run`] until SIGINT/SIGTERM.
//! - [`config`] — clap flags with `CRIER_*` env vars, turned into typed limits per layer.
//! - [`server`] — accept loop: each new connection's first bytes are sniffed; a valid
//!   WebSocket upgrade of `/ws` is answered on the bare socket ([`transport::ws::direct`]),
//!   everything else (bad upgrades included) goes to hyper (HTTP/1.1 with upgrades) and the
//!   axum router. Also the housekeeping task
//!   (history ageing, long-poll reaper) and graceful shutdown over a root
//!   `CancellationToken` and a `TaskTracker` that holds every spawned task.
//! - [`http`] — axum wiring only: router, publish/history/stats API, long-poll endpoints,
//!   every error rendered as status + JSON body in one place ([`http::error`]).
//! - [`transport`] — adapters that turn connections into hub calls: [`transport::dispatch`]
//!   (what a client frame does, shared by both transports), [`transport::ws`] (the
//!   [`handshake`](transport::ws::handshake) admits or refuses; then one
//!   session task per socket: queue → socket as pre-encoded frames in one
//!   vectored write per batch, socket → hub, pings, idle and write timeouts) and
//!   [`transport::long_poll`] (sessions, held polls, acked batches, reaper).
//! - [`hub`] — the core, free of HTTP/WebSocket types: [`hub::Hub`] (register, subscribe,
//!   publish, take, disconnect), the dashmap registry, channels (offsets, epoch, history ring,
//!   subscribers), per-client bounded queues whose catch-ups are cursors into history,
//!   back-pressure (lagging vs stuck clients) and budgets (channel count, history bytes across
//!   channels, data depth), `HubError`, stats; and [`hub::broker`], the seam to where
//!   positions come from (in memory by default, or a cluster broker the channels mirror).
//! - [`cluster`] — scale-out over Redis (`--redis-url`): the [`hub::broker::ClusterBroker`]
//!   that publishes through one Lua script (offset, history, fan-out in one round trip), and
//!   the listener task that owns the pub/sub connection, keeps each followed channel's local
//!   copy in sequence (catching up from Redis history after a gap) and reconnects.
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
//! - The hub encodes the frames it must order under a channel lock (`message`, `subscribed`,
//!   `missed`) with [`protocol::server`]; a request's reply `id` never enters the hub — the
//!   transport hands `Hub::subscribe` a closure that encodes `subscribed` with it.
//! - Every ending goes through `Hub::disconnect(id, reason)`, exactly once. It closes the
//!   client's queue with the reason, which is also the transport's cancellation signal.
//! - The broker seam ([`hub::broker`]): with the in-memory broker, `Hub::publish` and
//!   `Hub::subscribe` are the whole story (synchronous, unchanged). With a cluster broker the
//!   transports call the `*_stored`/`*_joined` variants, which wait for the broker (a
//!   publish is accepted once stored); the broker calls back only through
//!   `Hub::deliver_from_broker`, `Hub::catch_up_from_broker` and `Hub::stop_mirroring`. No
//!   Redis type crosses into the hub.

pub mod cluster;
pub mod config;
pub mod http;
pub mod hub;
pub mod protocol;
pub mod server;
pub mod transport;
