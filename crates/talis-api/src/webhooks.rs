//! Webhooks on the wire: the owner's methods (`webhook.create|list|delete|test|deliveries`),
//! the internal methods the delivery workflow uses (`webhook.pending|endpoint|record`), and the
//! kick the API hands to Restate after commit. How a delivery goes is in `docs/webhooks.md`;
//! where it may go is [`crate::egress`]; how it is signed is [`crate::signing`].

use garde::Validate;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::events::EventKind;
use crate::ids::{OwnerId, RowId};
use crate::params::{Paged, Paging};
use crate::rules::{DIGITS, MAX_LIMIT, MAX_NAME, NAME};
use crate::status::string_enum;

/// Longest webhook URL.
pub const MAX_URL: usize = 2_048;
/// The `type` of the message `webhook.test` sends.
pub const PING: &str = "ping";
/// Most deliveries one `webhook.pending` answer carries.
pub const MAX_PENDING_PAGE: u32 = 500;

string_enum! {
    /// Where a delivery stands.
    DeliveryStatus {
        /// Not delivered yet: waiting for its turn, or between attempts.
        Pending = "pending",
        /// The receiver answered 2xx.
        Delivered = "delivered",
        /// Given up: retries exhausted, the address refused, 410 Gone, or the webhook deleted.
        Failed = "failed",
    }
}

/// `webhook.create`: where to send which events. The secret that signs them is in the answer,
/// and only there.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema, Validate)]
pub struct WebhookCreate {
    /// An `http` or `https` URL. Hosts that are loopback, private, link-local, unique-local,
    /// multicast, unspecified or a cloud metadata service, and names local to a network
    /// (`localhost`, `*.internal` …), are refused unless the operator allows them
    /// (`webhook_allow_hosts`); the address a name resolves to is checked again at delivery.
    #[garde(length(min = 1, max = MAX_URL))]
    pub url: String,
    /// Event kinds to send (`instance.status`, `task.status`, `api.call`, `provider.step`,
    /// `reconcile`).
    #[garde(length(min = 1, max = 16))]
    pub events: Vec<EventKind>,
    /// Only this project's events (by name); without it, all of the owner's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[garde(length(chars, min = 1, max = MAX_NAME), pattern(NAME))]
    pub project: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[garde(skip)]
    pub owner_id: Option<OwnerId>,
}

/// A webhook, as listed (never with its secret).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Webhook {
    pub id: RowId,
    pub owner_id: OwnerId,
    /// The project whose events it gets (null: all of the owner's).
    pub project: Option<String>,
    pub url: String,
    pub events: Vec<EventKind>,
    pub created_at: String,
}

/// `webhook.create`'s answer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct WebhookCreated {
    #[serde(flatten)]
    pub webhook: Webhook,
    /// `whsec_` + base64 of 32 random bytes: the key of the messages' signatures (Standard
    /// Webhooks). Shown only in this answer.
    pub secret: String,
}

/// A webhook by id (`webhook.delete`, `webhook.test`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema, Validate)]
pub struct WebhookRef {
    #[garde(skip)]
    pub id: RowId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[garde(skip)]
    pub owner_id: Option<OwnerId>,
}

crate::params::list_params! {
    /// `webhook.deliveries`: a webhook's deliveries, oldest first.
    pub struct WebhookDeliveries {
        #[garde(skip)]
        pub webhook_id: RowId,
        /// Only deliveries in this status.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[garde(skip)]
        pub status: Option<DeliveryStatus>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[garde(skip)]
        pub owner_id: Option<OwnerId>,
    }
}

/// One message to one webhook, and how its delivery went.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct WebhookDelivery {
    pub id: RowId,
    pub webhook_id: RowId,
    /// The event it carries (null for a `ping`).
    pub event_id: Option<i64>,
    /// The message's `type`: the event kind, or `ping`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The `webhook-id` header: the same on every attempt (receivers deduplicate on it).
    pub message_id: String,
    pub status: DeliveryStatus,
    pub attempts: u32,
    /// The HTTP status of the last attempt (null when none answered).
    pub last_status: Option<u16>,
    pub last_error: Option<String>,
    /// When the next attempt is due (pending deliveries being retried).
    pub next_attempt_at: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

/// The answer of `webhook.test`: the `ping` delivery it queued.
pub type WebhookTested = WebhookDelivery;

/// After commit, the API asks the delivery workflow to deliver every pending delivery of
/// `webhook_id` up to `through` (a delivery id), in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct WebhookKick {
    pub webhook_id: i64,
    pub through: i64,
}

impl WebhookKick {
    /// Restate's idempotency key of this kick: a kick is identified by its last delivery, which
    /// is unique per (event, webhook), so handing the same deliveries again is a no-op.
    pub fn idempotency_key(&self) -> String {
        format!("webhook-{}-through-{}", self.webhook_id, self.through)
    }
}

/// `webhook.pending` (internal): the webhook's pending deliveries with `after < id <= through`,
/// oldest first, with their bodies.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema, Validate)]
pub struct WebhookPending {
    #[garde(skip)]
    pub webhook_id: RowId,
    #[garde(skip)]
    pub after: i64,
    #[garde(skip)]
    pub through: i64,
    #[garde(range(min = 1, max = MAX_PENDING_PAGE))]
    pub limit: u32,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PendingDeliveries {
    pub deliveries: Vec<PendingDelivery>,
}

/// A message to send (no secret: this is journaled).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PendingDelivery {
    pub id: i64,
    pub message_id: String,
    /// The exact body to sign and send: `{"type", "timestamp", "data"}`.
    pub body: String,
    /// When the delivery was made (Unix ms): its retries end a retry period after it.
    pub created_ms: i64,
    /// Attempts already recorded (a drain that stopped midway is continued, not restarted).
    pub attempts: u32,
}

/// `webhook.endpoint` (internal): where a webhook sends and the key it signs with. Only the
/// delivery step asks, and it never journals or logs the answer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema, Validate)]
pub struct WebhookEndpointGet {
    #[garde(skip)]
    pub webhook_id: RowId,
}

#[derive(Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct WebhookEndpoint {
    /// False once the webhook is deleted (`url` and `secret` are then empty).
    pub active: bool,
    pub url: String,
    pub secret: String,
}

impl std::fmt::Debug for WebhookEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookEndpoint")
            .field("active", &self.active)
            .finish_non_exhaustive()
    }
}

/// `webhook.record` (internal): how deliveries went. A finished delivery is never changed
/// again, so a replayed record is a no-op.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema, Validate)]
pub struct WebhookRecord {
    #[garde(length(min = 1, max = 10_000), dive)]
    pub results: Vec<DeliveryResult>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema, Validate)]
pub struct DeliveryResult {
    #[garde(skip)]
    pub delivery_id: i64,
    #[garde(skip)]
    pub status: DeliveryStatus,
    #[garde(skip)]
    pub attempts: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[garde(skip)]
    pub last_status: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[garde(length(max = 1_000))]
    pub error: Option<String>,
    /// Pending deliveries: when the next attempt is due (Unix ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[garde(skip)]
    pub next_attempt_ms: Option<i64>,
}
