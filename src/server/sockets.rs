//! The socket ceiling: every accepted connection — WebSocket, long-poll, plain HTTP — holds a
//! file descriptor, so every one counts here from accept until it closes, and past
//! `--max-sockets` a new one is refused at once instead of being served.
//!
//! Why at accept: plain HTTP connections counted nowhere, so idle or unfinished ones could
//! take every file descriptor; then `accept` itself failed and no client of any kind got in.
//! The ceiling sits below the open-files limit (see [`crate::config::Config::socket_ceiling`])
//! so the hub always has descriptors left to answer the refusal.
//!
//! A refused connection gets `503 over_capacity` with the JSON body once its request head has
//! arrived (at most [`REFUSAL_TIMEOUT`]), then closes. Answering takes a descriptor and a
//! little memory for that moment, so at most [`REFUSALS_IN_FLIGHT`] are answered at once;
//! past that a connection is closed unanswered at accept — the cheapest refusal there is.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// How long a refused connection has to send its request head before it is closed unanswered.
pub const REFUSAL_TIMEOUT: Duration = Duration::from_secs(1);

/// Refusals answered at once; taken from the descriptors the ceiling keeps in reserve.
pub const REFUSALS_IN_FLIGHT: usize = 32;

/// The count of open sockets and its ceiling: cheap to clone.
#[derive(Clone, Debug)]
pub struct Sockets {
    open: Arc<AtomicUsize>,
    max: usize,
    refusals: Arc<Semaphore>,
}

/// One open socket, counted until dropped.
#[derive(Debug)]
pub struct SocketSlot(Arc<AtomicUsize>);

impl Drop for SocketSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Sockets {
    pub fn new(max: usize) -> Self {
        Self {
            open: Arc::default(),
            max,
            refusals: Arc::new(Semaphore::new(REFUSALS_IN_FLIGHT)),
        }
    }

    /// Sockets open now (refused ones not included).
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    pub fn max(&self) -> usize {
        self.max
    }

    /// Counts a newly accepted socket, or `None` at the ceiling.
    pub fn admit(&self) -> Option<SocketSlot> {
        let admitted = self
            .open
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |open| {
                (open < self.max).then_some(open + 1)
            })
            .is_ok();
        admitted.then(|| SocketSlot(self.open.clone()))
    }

    /// Room to answer one refusal, or `None` if enough are being answered already.
    pub fn refusal(&self) -> Option<OwnedSemaphorePermit> {
        self.refusals.clone().try_acquire_owned().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_up_to_the_ceiling_and_frees_on_drop() {
        let sockets = Sockets::new(2);
        let a = sockets.admit().unwrap();
        let _b = sockets.admit().unwrap();
        assert!(sockets.admit().is_none());
        assert_eq!(sockets.open(), 2);
        drop(a);
        assert_eq!(sockets.open(), 1);
        assert!(sockets.admit().is_some());
        let refusals: Vec<_> = (0..REFUSALS_IN_FLIGHT)
            .map(|_| sockets.refusal().unwrap())
            .collect();
        assert!(sockets.refusal().is_none());
        drop(refusals);
        assert!(sockets.refusal().is_some());
    }
}
