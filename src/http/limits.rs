//! Publishes per second per backend (per API key, or the loopback peers of a hub without
//! keys): `--api-publish-rate`, off by default — a backend is trusted, and one publish may
//! be a fan-out of 10,000 — and there for hubs several backends share. Past it: `429
//! rate_limited` with `Retry-After: 1`; nothing is published.

use std::num::NonZeroU32;

use governor::middleware::NoOpMiddleware;
use governor::nanos::Nanos;
use governor::state::keyed::DashMapStateStore;
use governor::{Quota, RateLimiter};

use crate::auth::Backend;
use crate::protocol::ErrorCode;
use crate::transport::clock::TokioClock;

use super::error::ApiError;

type Limiter = RateLimiter<Backend, DashMapStateStore<Backend>, TokioClock, NoOpMiddleware<Nanos>>;

/// The per-backend publish limiter (none when the rate is 0).
pub struct BackendPublishes(Option<Limiter>);

impl BackendPublishes {
    /// Built in the runtime whose clock it should follow.
    pub fn new(per_second: u32, burst: u32) -> Self {
        Self(NonZeroU32::new(per_second).map(|rate| {
            let burst = NonZeroU32::new(burst).unwrap_or(rate);
            Limiter::dashmap_with_clock(
                Quota::per_second(rate).allow_burst(burst),
                TokioClock::new(),
            )
        }))
    }

    /// Counts `publishes` publishes (a `channels` request is one per channel) of `backend`.
    pub fn check(&self, backend: Option<Backend>, publishes: u32) -> Result<(), ApiError> {
        let (Some(limiter), Some(n)) = (&self.0, NonZeroU32::new(publishes)) else {
            return Ok(());
        };
        let backend = backend.unwrap_or(Backend(0));
        match limiter.check_key_n(&backend, n) {
            Ok(Ok(())) => Ok(()),
            _ => Err(ApiError::new(
                ErrorCode::RateLimited,
                format!(
                    "this backend publishes faster than --api-publish-rate allows ({publishes} asked); retry shortly"
                ),
            )),
        }
    }
}
