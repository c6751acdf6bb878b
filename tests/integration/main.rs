//! Integration tests: the real server on 127.0.0.1:0, real WebSocket and HTTP clients.
//! Every wait is bounded; tests synchronise on replies and on the hub's own counters.

mod api;
mod auth;
mod bad_input;
mod cluster;
mod cluster_control;
mod cluster_presence;
mod cluster_stamp;
mod cluster_webhooks;
mod common;
mod contract;
mod control;
mod handshake;
mod lifecycle;
mod long_poll;
mod namespaces;
mod presence;
mod redis_server;
mod webhooks;
mod websocket;
