//! One delivery of one event to one URL: attempts with a timeout each, retries with
//! exponential backoff and full jitter, and exactly one of sent / failed / dropped counted.

use std::sync::Arc;
use std::time::Duration;

use rand::Rng as _;
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::sleep;
use tokio_util::sync::CancellationToken;

use super::payload::Outgoing;
use super::{Counters, RateLimitedWarn, WebhookConfig};

pub(super) struct Delivery {
    pub(super) url: reqwest::Url,
    pub(super) event: Outgoing,
    pub(super) config: Arc<WebhookConfig>,
    pub(super) counters: Counters,
    pub(super) http: reqwest::Client,
    pub(super) abandon: CancellationToken,
    pub(super) warn: Arc<RateLimitedWarn>,
}

enum Outcome {
    Sent,
    /// Worth another attempt: no answer, a timeout, 5xx, 408 or 429.
    Retry(String),
    /// The receiver refused it (another 4xx): trying again would not help.
    Refused(u16),
}

/// One event to one URL: attempts with backoff until sent, refused, out of attempts, or
/// abandoned at shutdown. Ends in exactly one counter.
pub(super) async fn deliver(d: Delivery, _permit: OwnedSemaphorePermit) {
    let attempts = d.config.attempts.max(1);
    let mut last_error = String::new();
    for attempt in 1..=attempts {
        let outcome = tokio::select! {
            outcome = attempt_once(&d) => outcome,
            () = d.abandon.cancelled() => return abandoned(&d),
        };
        match outcome {
            Outcome::Sent => {
                d.counters.sent.inc();
                return;
            }
            Outcome::Refused(status) => {
                d.counters.failed.inc();
                d.warn.warn(|suppressed| {
                    tracing::warn!(url = %d.url, event = d.event.kind.as_str(), id = %d.event.id,
                        status, suppressed, "webhook refused by the receiver; not retried")
                });
                return;
            }
            Outcome::Retry(error) => last_error = error,
        }
        if attempt < attempts {
            tokio::select! {
                () = sleep(backoff(&d.config, attempt)) => {}
                () = d.abandon.cancelled() => return abandoned(&d),
            }
        }
    }
    d.counters.failed.inc();
    d.warn.warn(|suppressed| {
        tracing::warn!(url = %d.url, event = d.event.kind.as_str(), id = %d.event.id, attempts,
            error = %last_error, suppressed, "webhook failed after every attempt (see webhook_failed)")
    });
}

pub(super) fn abandoned(d: &Delivery) {
    d.counters.dropped.inc();
    tracing::debug!(url = %d.url, id = %d.event.id, "webhook abandoned at shutdown");
}

async fn attempt_once(d: &Delivery) -> Outcome {
    let response = d
        .http
        .post(d.url.clone())
        .header("content-type", "application/json")
        .header("x-crier-signature", &d.event.signature)
        .header("x-crier-event", d.event.kind.as_str())
        .header("x-crier-event-id", &d.event.id)
        .body(d.event.body.clone())
        .send()
        .await;
    match response {
        Ok(response) => {
            let status = response.status();
            if status.is_success() {
                Outcome::Sent
            } else if status.is_client_error() && status != 408 && status != 429 {
                Outcome::Refused(status.as_u16())
            } else {
                Outcome::Retry(format!("HTTP {status}"))
            }
        }
        Err(error) => Outcome::Retry(error.to_string()),
    }
}

/// Full jitter: a uniform delay in `[0, min(max, base · 2^(attempt-1))]`, so receivers
/// that come back are not hit by every hub's retries at once.
pub(super) fn backoff(config: &WebhookConfig, attempt: u32) -> Duration {
    let ceiling = config
        .backoff
        .saturating_mul(1 << (attempt - 1).min(20))
        .min(config.backoff_max);
    ceiling.mul_f64(rand::rng().random::<f64>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_its_cap_with_full_jitter() {
        let config = WebhookConfig {
            urls: Vec::new(),
            kinds: super::super::EventKinds::all(),
            secret: Vec::new(),
            queue: 1,
            concurrency: 1,
            timeout: Duration::from_secs(1),
            attempts: 5,
            backoff: Duration::from_millis(100),
            backoff_max: Duration::from_secs(5),
            offline_grace: Duration::ZERO,
            shutdown_grace: Duration::ZERO,
        };
        for _ in 0..100 {
            assert!(backoff(&config, 1) <= Duration::from_millis(100));
            assert!(backoff(&config, 3) <= Duration::from_millis(400));
            assert!(backoff(&config, 30) <= Duration::from_secs(5));
        }
    }
}
