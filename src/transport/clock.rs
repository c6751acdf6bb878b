//! The clock the rate limiters read: tokio's, so that a test on a paused clock
//! (`tokio::time::pause`) refills them exactly as far as it lets time pass — a limit is
//! tested by counting, never by sleeping.

use governor::clock::Clock;
use governor::nanos::Nanos;
use tokio::time::Instant;

/// Time since the limiter was built, as governor's [`Nanos`].
#[derive(Clone, Debug)]
pub struct TokioClock {
    start: Instant,
}

impl TokioClock {
    /// A clock starting now. Build it in the runtime whose clock it should follow.
    pub fn new() -> Self {
        Self {
            start: Instant::now(),
        }
    }
}

impl Default for TokioClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for TokioClock {
    type Instant = Nanos;

    fn now(&self) -> Nanos {
        Instant::now().saturating_duration_since(self.start).into()
    }
}
