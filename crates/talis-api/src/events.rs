//! The event log: every instance and task status change, every provider step outcome and every
//! mutating API call, written in the same transaction as the change it records. Owners read
//! their own with `event.list` (long-poll with `wait_ms`) or `GET /api/v1/events`; webhooks
//! deliver them.

use garde::Validate;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::ids::{InstanceId, OwnerId, RowId, TaskId};
use crate::rules::{DIGITS, MAX_LIMIT, MAX_NAME, NAME};
use crate::status::{InstanceStatus, TaskStatus, string_enum};

string_enum! {
    /// What an event records.
    EventKind {
        /// An instance changed status.
        InstanceStatus = "instance.status",
        /// A task changed status (or was created).
        TaskStatus = "task.status",
        /// A mutating API call.
        ApiCall = "api.call",
        /// A provider step of a workflow ended (machines made or destroyed, a rate-limit wait).
        ProviderStep = "provider.step",
        /// The reconcile sweep destroyed machines no live instance owns.
        Reconcile = "reconcile",
    }
}

/// One event, as listed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Event {
    /// Increasing: pass the last one seen as `after` to get what came next.
    pub id: i64,
    pub at: String,
    /// The project's name (null for events of no project).
    pub project: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_id: Option<TaskId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_id: Option<InstanceId>,
    #[serde(flatten)]
    pub body: EventBody,
}

/// An event's kind and its data.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", content = "data")]
pub enum EventBody {
    #[serde(rename = "instance.status")]
    InstanceStatus(InstanceStatusData),
    #[serde(rename = "task.status")]
    TaskStatus(TaskStatusData),
    #[serde(rename = "api.call")]
    ApiCall(ApiCallData),
    #[serde(rename = "provider.step")]
    ProviderStep(ProviderStepData),
    #[serde(rename = "reconcile")]
    Reconcile(ReconcileData),
}

impl EventBody {
    pub fn kind(&self) -> EventKind {
        match self {
            EventBody::InstanceStatus(_) => EventKind::InstanceStatus,
            EventBody::TaskStatus(_) => EventKind::TaskStatus,
            EventBody::ApiCall(_) => EventKind::ApiCall,
            EventBody::ProviderStep(_) => EventKind::ProviderStep,
            EventBody::Reconcile(_) => EventKind::Reconcile,
        }
    }

    /// The data as stored (JSON text of the kind's data).
    pub fn data_json(&self) -> String {
        match serde_json::to_value(self) {
            Ok(serde_json::Value::Object(mut o)) => {
                o.remove("data").unwrap_or_default().to_string()
            }
            _ => "{}".into(),
        }
    }

    /// An event's body from its stored kind and data.
    pub fn from_stored(kind: &str, data: &str) -> Option<EventBody> {
        let data: serde_json::Value = serde_json::from_str(data).ok()?;
        serde_json::from_value(serde_json::json!({ "kind": kind, "data": data })).ok()
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct InstanceStatusData {
    /// Null when the instance was just made.
    pub from: Option<InstanceStatus>,
    pub to: InstanceStatus,
    /// The workflow step (or API call) that made the change.
    pub step: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_ref: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_ip: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TaskStatusData {
    /// Null when the task was just made.
    pub from: Option<TaskStatus>,
    pub to: TaskStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Who did what through the API (the audit trail).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ApiCallData {
    pub method: String,
    /// The owner the call acted for.
    pub owner_id: OwnerId,
    /// The API key used: its id (null for the bootstrap admin key) and its prefix.
    pub key_id: Option<RowId>,
    pub key_prefix: String,
    /// The request's id (also answered in the `x-request-id` header).
    pub request_id: String,
    /// What the call acted on: the identifying fields of its params (name, ids …).
    pub target: serde_json::Value,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ProviderStepData {
    pub step: String,
    /// The outcome in a word (`ok`, `failed`, `rate_limited` …).
    pub status: String,
    #[serde(default)]
    pub detail: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ReconcileData {
    /// Provider ids of the machines destroyed.
    pub destroyed: Vec<String>,
    /// Their names at the provider.
    pub names: Vec<String>,
}

/// Longest `wait_ms` of a long-poll.
pub const MAX_WAIT_MS: u32 = 30_000;

/// `event.list` params: the caller's events, oldest first, after the cursor.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema, Validate)]
pub struct EventList {
    /// Only this project's events (by name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[garde(length(chars, min = 1, max = MAX_NAME), pattern(NAME))]
    pub project: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[garde(skip)]
    pub task_id: Option<TaskId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[garde(skip)]
    pub instance_id: Option<InstanceId>,
    /// Only these kinds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[garde(length(min = 1, max = 8))]
    pub kinds: Option<Vec<EventKind>>,
    /// Events with an id greater than this (`pagination.next_cursor`, or the last id seen).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[garde(length(max = 18), pattern(DIGITS))]
    pub after: Option<String>,
    /// Rows per page (default 50).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[garde(range(min = 1, max = MAX_LIMIT))]
    pub limit: Option<u32>,
    /// Long-poll: when nothing newer than `after` exists yet, wait up to this many
    /// milliseconds for it (answered as soon as one exists; empty at the deadline).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[garde(range(max = MAX_WAIT_MS))]
    pub wait_ms: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[garde(skip)]
    pub owner_id: Option<OwnerId>,
}
