//! Webhook delivery (see `docs/webhooks.md`). The API writes one delivery row per (event,
//! webhook) in the event's transaction and, after commit, hands the batch to `WebhookDispatch`
//! in one call; the dispatcher sends one kick per webhook to `WebhookEndpoint`, a virtual object
//! keyed by the webhook id, so one webhook's deliveries go out one at a time, in order. Each
//! attempt is a journaled step that fetches the endpoint and its secret (never journaled),
//! checks where the host resolves (SSRF guard), signs (Standard Webhooks) and posts; failures
//! are retried with exponential backoff on durable timers until the retry period ends.
//!
//! - [`retry`]: when to try again (no I/O, tested natively).
//! - [`sender`]: the HTTP side: guarded resolver, signing, classifying answers.
//! - [`endpoint`]: the Restate handlers.
//! - [`Outcomes`]: counts of attempt outcomes, the hook for metrics.

mod endpoint;
pub mod retry;
pub mod sender;

use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

pub use endpoint::{WebhookDispatch, WebhookEndpoint};
pub use sender::Sender;

/// What one delivery attempt came to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The receiver answered 2xx.
    Delivered,
    /// It did not; another attempt is scheduled.
    Retrying,
    /// It did not and the delivery is given up (retry period over, address refused, 410 Gone).
    Failed,
    /// Not attempted: the webhook was deleted.
    Skipped,
}

impl Outcome {
    pub const ALL: [Outcome; 4] = [
        Outcome::Delivered,
        Outcome::Retrying,
        Outcome::Failed,
        Outcome::Skipped,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Delivered => "delivered",
            Outcome::Retrying => "retrying",
            Outcome::Failed => "failed",
            Outcome::Skipped => "skipped",
        }
    }
}

/// Webhook delivery attempts by outcome since the process started. [`Outcomes::observe`] is
/// called exactly once per attempt actually made (inside the attempt's step, never on a
/// replay); a metrics exporter reads [`Outcomes::snapshot`] ("webhook deliveries by outcome").
#[derive(Debug, Default)]
pub struct Outcomes([AtomicU64; 4]);

impl Outcomes {
    pub fn observe(&self, outcome: Outcome) {
        self.0[outcome as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> [(Outcome, u64); 4] {
        Outcome::ALL.map(|o| (o, self.0[o as usize].load(Ordering::Relaxed)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_are_counted_by_kind() {
        let o = Outcomes::default();
        o.observe(Outcome::Retrying);
        o.observe(Outcome::Retrying);
        o.observe(Outcome::Delivered);
        assert_eq!(
            o.snapshot(),
            [
                (Outcome::Delivered, 1),
                (Outcome::Retrying, 2),
                (Outcome::Failed, 0),
                (Outcome::Skipped, 0)
            ]
        );
    }
}
