//! The internal RPC of the workflows: `POST /internal/v1/<method>` with `Authorization: Bearer
//! <internal_secret>`, answered with the same envelope as the public routes. Every method is
//! idempotent (Restate may replay a call). Refusals the workflows act on carry a typed
//! [`Refusal`] reason, never text to match.

use garde::Validate;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::ids::{InstanceId, TaskId};
use crate::model::{Project, SshPublicKey, Task, VolumeDetail};
use crate::params::{Provider, VolumeConfig};
use crate::status::{InstanceStatus, TaskStatus};

/// `task.claim`: pending → running for this invocation (repeat with the same invocation: no-op).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema, Validate)]
pub struct TaskClaim {
    #[garde(skip)]
    pub task_id: TaskId,
    #[garde(length(chars, min = 1, max = 200))]
    pub invocation_id: String,
}

/// Everything a workflow needs to run a task. Each distinct instance request (the spec many
/// instances share, with its provisioning script of up to 60 KiB and its SSH keys) appears once
/// in `requests`; instances refer to it by index, so the answer grows by a small row per
/// instance, not by a script per instance.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ClaimedTask {
    /// False when the task is already finished (e.g. terminated by its owner): do nothing.
    pub claimed: bool,
    /// The task without `logs` and `result` (they grow with the instances; `task.get` has them).
    pub task: Task,
    pub project: Project,
    pub requests: Vec<ClaimedRequest>,
    pub instances: Vec<ClaimedInstance>,
}

/// The spec shared by the instances of one instance request.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub struct ClaimedRequest {
    pub provider: Provider,
    pub region: String,
    pub size: String,
    pub image: String,
    pub tags: Vec<String>,
    pub volumes: Vec<VolumeConfig>,
    /// The script to run once the machine is up; empty when there is none to run (and in
    /// terminate and delete tasks, which never run it).
    pub payload: String,
    pub ssh_keys: Vec<SshPublicKey>,
}

/// One instance of a claimed task: its identity and progress (the full row is `instance.get`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ClaimedInstance {
    #[serde(rename = "ID")]
    pub id: InstanceId,
    pub name: String,
    pub status: InstanceStatus,
    /// The provider's id of the machine; empty until created.
    pub provider_ref: String,
    pub public_ip: String,
    /// Index into [`ClaimedTask::requests`].
    pub request: usize,
    /// `{public_url}/v1/phone-home/{id}?token=…`; empty when `public_url` is not set.
    pub phone_home_url: String,
}

/// One instance status change. Given fields are recorded with it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema, Validate)]
pub struct InstanceTransition {
    #[garde(skip)]
    pub instance_id: InstanceId,
    #[garde(skip)]
    pub status: InstanceStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[garde(length(max = 64))]
    pub provider_ref: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[garde(length(max = 64))]
    pub public_ip: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[garde(skip)]
    pub volumes: Option<Vec<VolumeDetail>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[garde(length(max = 4096))]
    pub error: Option<String>,
}

impl InstanceTransition {
    pub fn to(instance_id: InstanceId, status: InstanceStatus) -> Self {
        Self {
            instance_id,
            status,
            provider_ref: None,
            public_ip: None,
            volumes: None,
            error: None,
        }
    }
}

/// `instance.transition`: one checked transition of an instance of the task.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema, Validate)]
pub struct TaskInstanceTransition {
    #[garde(skip)]
    pub task_id: TaskId,
    #[serde(flatten)]
    #[garde(dive)]
    pub transition: InstanceTransition,
}

/// `instance.transitionBatch`: many transitions of one task in one transaction, each recorded
/// with a step event keyed by task, instance, step and status. A refused transition is reported
/// in its result and does not stop the others.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema, Validate)]
pub struct InstanceTransitionBatch {
    #[garde(skip)]
    pub task_id: TaskId,
    /// Step name recorded with every transition's event (e.g. "ensure machine").
    #[garde(length(chars, min = 1, max = 200))]
    pub step: String,
    #[garde(length(max = 10_000), dive)]
    pub transitions: Vec<InstanceTransition>,
}

/// Why the component refused an internal call's change.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Refusal {
    /// The task is finished (completed, failed, or terminated by its owner): it may no longer
    /// move its instances, except to compensate a terminated task.
    TaskFinished,
    /// The status change is not allowed from the instance's current status (e.g. it was
    /// terminated meanwhile).
    IllegalTransition,
    /// The instance is not one of the task's.
    NotInTask,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TransitionResult {
    pub instance_id: InstanceId,
    /// Why the transition was refused; null when applied.
    pub refused: Option<Refusal>,
    /// The refusal in words (for logs); null when applied.
    pub message: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TransitionsApplied {
    /// One per transition, in order.
    pub results: Vec<TransitionResult>,
}

impl TransitionsApplied {
    /// Whether any change was refused because the task is finished (its owner stopped it).
    pub fn task_finished(&self) -> bool {
        self.results
            .iter()
            .any(|r| r.refused == Some(Refusal::TaskFinished))
    }
}

/// `task.event`: appends a step event; a repeated `event_key` (per task) is a no-op.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema, Validate)]
pub struct TaskEventRecord {
    #[garde(skip)]
    pub task_id: TaskId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[garde(skip)]
    pub instance_id: Option<InstanceId>,
    #[garde(length(chars, min = 1, max = 200))]
    pub step: String,
    /// The step's outcome in a word (e.g. `ok`, `failed`).
    #[garde(length(chars, min = 1, max = 50))]
    pub status: String,
    #[serde(default)]
    #[garde(length(max = 4096))]
    pub detail: String,
    #[garde(length(chars, min = 1, max = 300))]
    pub event_key: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct EventRecorded {
    pub event_id: i64,
    /// True when this `event_key` had been recorded before.
    pub duplicate: bool,
}

/// The statuses a task may finish with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum FinalStatus {
    Completed,
    Failed,
    Terminated,
}

impl From<FinalStatus> for TaskStatus {
    fn from(s: FinalStatus) -> TaskStatus {
        match s {
            FinalStatus::Completed => TaskStatus::Completed,
            FinalStatus::Failed => TaskStatus::Failed,
            FinalStatus::Terminated => TaskStatus::Terminated,
        }
    }
}

/// `task.finish`: terminal transition with a result summary.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema, Validate)]
pub struct TaskFinish {
    #[garde(skip)]
    pub task_id: TaskId,
    #[garde(skip)]
    pub status: FinalStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[garde(skip)]
    pub result: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[garde(length(max = 4096))]
    pub error: Option<String>,
}

/// Status a machine reports when it phones home.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum PhoneHomeStatus {
    /// The script (and every volume mount) succeeded.
    #[default]
    Ok,
    /// A mount or the owner's script failed.
    Failed,
}

/// Body a machine (or the fake cloud) posts to its phone-home URL.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema, Validate)]
pub struct PhoneHomeBody {
    /// The reporting machine (the provider's id: digits). One script serves a whole
    /// multi-create batch, so the machine, not the URL, says which instance this is.
    #[garde(skip)]
    pub droplet_id: DropletId,
    #[garde(skip)]
    #[schemars(schema_with = "ip_schema")]
    pub public_ip: std::net::IpAddr,
    #[serde(default)]
    #[garde(skip)]
    pub status: PhoneHomeStatus,
}

fn ip_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "string",
        "oneOf": [{ "format": "ipv4" }, { "format": "ipv6" }],
        "description": "The machine's public IPv4 or IPv6 address."
    })
}

/// A provider machine id: digits, sent as a JSON number (the script) or string.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct DropletId(pub u64);

impl<'de> Deserialize<'de> for DropletId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        match serde_json::Value::deserialize(d)? {
            serde_json::Value::Number(n) => n.as_u64(),
            serde_json::Value::String(s) => s.parse().ok(),
            _ => None,
        }
        .filter(|&id| id > 0)
        .map(DropletId)
        .ok_or_else(|| D::Error::custom("must be a positive integer (or its digits as a string)"))
    }
}

impl JsonSchema for DropletId {
    fn inline_schema() -> bool {
        true
    }
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "DropletId".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({ "type": "integer", "format": "int64", "minimum": 1 })
    }
}

impl std::fmt::Display for DropletId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// What the component forwards to the task's workflow when a machine phones home.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PhoneHome {
    pub instance_id: InstanceId,
    pub droplet_id: DropletId,
    pub public_ip: String,
    pub status: PhoneHomeStatus,
}
