//! The hostile-input suite: each attack on a real server, with bystanders (a WebSocket and a
//! long-poll client) that must lose, duplicate and reorder nothing meanwhile. Every loop is
//! bounded; attacks are scaled down to what proves the bound, not to what exhausts a machine.

#[allow(dead_code)]
#[path = "../integration/common.rs"]
mod common;

mod backpressure;
mod churn;
mod direct;
mod edge;
mod frames;
mod limits;
mod lp_edge;
mod props;
mod rates;
mod rss;
