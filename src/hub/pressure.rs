//! Back-pressure: which clients lag (being drained, falling behind), which are stuck (not
//! drained at all), and when the hub refuses publishes because it cannot keep up.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use super::{Client, Hub, HubError};

/// A queue with frames that nobody took for this long is not being drained: it stops counting
/// toward overload (it is stuck, not lagging), so no set of clients can make the hub refuse
/// publishes by not reading. Long enough for a consumer mid-write or between two polls.
const STALL_MARK: Duration = Duration::from_secs(1);

impl Hub {
    /// Clients whose queue is at least half full right now.
    pub fn lagging_clients(&self) -> usize {
        self.inner.lagging.load(Ordering::Relaxed)
    }

    /// Refuses new publishes while the hub as a whole cannot keep up: many clients lagging at
    /// once means the writers (or the CPU) are the bottleneck, and publishing on would only
    /// evict healthy clients en masse. One slow client never trips this; it is evicted.
    pub fn check_load(&self) -> Result<(), HubError> {
        let config = &self.inner.config;
        let lagging = self.lagging_clients();
        if lagging < config.overload_min_lagging {
            return Ok(());
        }
        let clients = self.client_count();
        if lagging as f64 > config.overload_fraction * clients as f64 {
            self.inner.stats.rejected_overloaded.inc();
            return Err(HubError::Overloaded { lagging, clients });
        }
        Ok(())
    }

    /// Finds clients whose backlog (queue at least half full) makes no progress: after
    /// `STALL_MARK` they stop counting toward overload; after `--stuck-timeout` they are
    /// evicted as slow. Run periodically
    /// by the server; returns how many were evicted.
    pub fn check_stuck(&self) -> usize {
        let now = tokio::time::Instant::now();
        let evict_after = self.inner.config.stuck_timeout;
        let clients: Vec<Arc<Client>> = self
            .inner
            .registry
            .clients
            .iter()
            .map(|e| e.value().clone())
            .collect();
        let mut evicted = 0;
        for client in clients {
            match client.queue.stalled_for(now) {
                Some(stalled) if stalled >= evict_after => {
                    self.evict_slow(&client);
                    evicted += 1;
                }
                Some(stalled) if stalled >= STALL_MARK => client.queue.mark_stuck(),
                _ => {}
            }
        }
        evicted
    }
}
