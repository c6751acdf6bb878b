//! `GET /api/users/{user}` across nodes: the asking node PUBLISHes a question on the control
//! channel (PUBLISH's reply: how many nodes it reached), each other node answers with its
//! connections of that user on the asker's reply channel, and the asker waits for them at
//! most `--redis-timeout`, then lists what arrived (the reply says how many answered).
//!
//! Bounded: at most [`MAX_QUESTIONS`] questions in flight per node (past it,
//! `broker_unavailable`), at most [`MAX_ANSWERS`] answers kept per question, at most
//! [`ANSWER_MAX`] connections per answer; an answer is published under the node's broker
//! permits (none free: not answered, counted in `broker_dropped`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;

use crate::hub::control::Gathered;
use crate::hub::{Hub, HubError};
use crate::protocol::bodies::UserConnection;

use super::control::{self, Answer, CONTROL_CHANNEL};
use super::Shared;

/// Questions one node may have in flight at once.
const MAX_QUESTIONS: usize = 64;

/// Answers kept per question: the most nodes one answer lists.
const MAX_ANSWERS: usize = 256;

/// Connections one node lists in an answer (a user's connections are bounded by the
/// per-address limits anyway; this bounds one pub/sub message).
pub const ANSWER_MAX: usize = 1000;

/// Questions waiting for answers.
#[derive(Default)]
pub struct Pending {
    next: AtomicU64,
    waiting: Mutex<HashMap<u64, mpsc::Sender<Vec<UserConnection>>>>,
}

impl Pending {
    fn waiting(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<u64, mpsc::Sender<Vec<UserConnection>>>> {
        self.waiting.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A new question and where its answers arrive; `None` when too many are in flight.
    fn open(&self) -> Option<(u64, mpsc::Receiver<Vec<UserConnection>>)> {
        let mut waiting = self.waiting();
        if waiting.len() >= MAX_QUESTIONS {
            return None;
        }
        let request = self.next.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(MAX_ANSWERS);
        waiting.insert(request, tx);
        Some((request, rx))
    }

    fn close(&self, request: u64) {
        self.waiting().remove(&request);
    }

    /// Hands an answer to its question; dropped if the question ended or is full.
    pub fn deliver(&self, answer: Answer) {
        let tx = self.waiting().get(&answer.request).cloned();
        if let Some(tx) = tx {
            let _ = tx.try_send(answer.connections);
        }
    }
}

/// Ends a question however its wait ends.
struct Closing<'a>(&'a Pending, u64);

impl Drop for Closing<'_> {
    fn drop(&mut self) {
        self.0.close(self.1);
    }
}

impl Shared {
    pub(super) async fn gather_user(&self, user: &str) -> Result<Gathered, HubError> {
        let Some((request, mut answers)) = self.pending.open() else {
            self.stats.dropped.inc();
            return Err(HubError::BrokerUnavailable(
                "too many user lookups across nodes in flight".into(),
            ));
        };
        let _closing = Closing(&self.pending, request);
        let deadline = tokio::time::Instant::now() + self.config.timeout;
        let mut conn = self.commands.clone();
        let mut publish = redis::cmd("PUBLISH");
        publish
            .arg(CONTROL_CHANNEL)
            .arg(control::encode_list_user(&self.node, user, request));
        let nodes: usize = self
            .bounded("asking the other nodes", publish.query_async(&mut conn))
            .await?;
        let mut gathered = Gathered {
            nodes,
            answers: Vec::new(),
        };
        // `nodes` counts this one too (its listener received its own question).
        while gathered.answers.len() + 1 < nodes {
            match tokio::time::timeout_at(deadline, answers.recv()).await {
                Ok(Some(answer)) => gathered.answers.push(answer),
                Ok(None) | Err(_) => break,
            }
        }
        Ok(gathered)
    }

    /// Answers `node`'s question about `user` from this node's connections, on a task of its
    /// own so the listener never waits for Redis.
    pub(super) fn answer(self: &Arc<Self>, hub: &Hub, node: &str, user: &str, request: u64) {
        let Ok(permit) = self.calls.clone().try_acquire_owned() else {
            self.stats.dropped.inc();
            tracing::warn!(%node, "too many broker calls in flight: a user lookup went unanswered");
            return;
        };
        let connections = hub
            .user_connections(user)
            .iter()
            .take(ANSWER_MAX)
            .map(|c| c.to_body(Some(&self.node)))
            .collect();
        let answer = Answer {
            request,
            connections,
        };
        let Ok(payload) = serde_json::to_string(&answer) else {
            return;
        };
        let shared = self.clone();
        let channel = control::reply_channel(node);
        tokio::spawn(async move {
            let _permit = permit;
            let mut conn = shared.commands.clone();
            let mut publish = redis::cmd("PUBLISH");
            publish.arg(channel).arg(payload);
            let sent: Result<usize, HubError> = shared
                .bounded("answering a user lookup", publish.query_async(&mut conn))
                .await;
            if let Err(error) = sent {
                tracing::debug!(%error, "could not answer a user lookup");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(request: u64) -> Answer {
        Answer {
            request,
            connections: Vec::new(),
        }
    }

    #[test]
    fn questions_in_flight_are_bounded_and_freed_when_they_end() {
        let pending = Pending::default();
        let mut open: Vec<_> = (0..MAX_QUESTIONS)
            .map(|_| pending.open().unwrap())
            .collect();
        assert!(pending.open().is_none(), "past MAX_QUESTIONS");
        let (request, _) = open.pop().unwrap();
        drop(Closing(&pending, request));
        assert!(
            pending.open().is_some(),
            "a closed question frees its place"
        );
    }

    #[test]
    fn answers_are_bounded_per_question_and_late_ones_dropped() {
        let pending = Pending::default();
        let (request, mut answers) = pending.open().unwrap();
        for _ in 0..MAX_ANSWERS + 10 {
            pending.deliver(answer(request));
        }
        pending.deliver(answer(request + 1)); // no such question
        let mut kept = 0;
        while answers.try_recv().is_ok() {
            kept += 1;
        }
        assert_eq!(kept, MAX_ANSWERS);
        pending.close(request);
        pending.deliver(answer(request)); // after the wait ended
        assert!(answers.try_recv().is_err());
    }
}
