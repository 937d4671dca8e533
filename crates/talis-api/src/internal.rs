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

/// Most instances one workflow chunk handles (a task larger than this runs as several child
/// workflows), so no journal entry or message grows with the size of the task.
pub const MAX_CHUNK: u32 = 1_000;

/// `task.claim`: pending → running for this invocation (repeat with the same invocation: no-op).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema, Validate)]
pub struct TaskClaim {
    #[garde(skip)]
    pub task_id: TaskId,
    #[garde(length(chars, min = 1, max = 200))]
    pub invocation_id: String,
    /// Instances per chunk of the answer's `chunks`.
    #[garde(range(min = 1, max = MAX_CHUNK))]
    pub chunk_size: u32,
}

/// What a workflow needs to start a task: the task, its project, and its instances cut into
/// chunks by id (each chunk is then planned on its own with `task.chunk`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ClaimedTask {
    /// False when the task is already finished (e.g. terminated by its owner): do nothing.
    pub claimed: bool,
    /// The task without `logs` and `result` (they grow with the instances; `task.get` has them).
    pub task: Task,
    pub project: Project,
    /// This deployment's identity: every provider resource it makes carries it in its tags, so
    /// two deployments sharing a cloud account never touch each other's machines.
    pub deployment: String,
    /// Base URL machines phone home to; empty: no phone-home (readiness by polling).
    pub public_url: String,
    pub chunks: Vec<ChunkRange>,
}

/// The instances of a task with `after < id <= through`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ChunkRange {
    pub after: Option<InstanceId>,
    pub through: InstanceId,
    pub count: u32,
}

/// `task.chunk`: one chunk of a claimed task, planned.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema, Validate)]
pub struct TaskChunk {
    #[garde(skip)]
    pub task_id: TaskId,
    #[serde(flatten)]
    #[garde(skip)]
    pub range: ChunkRange,
}

/// Everything a workflow needs to run one chunk. Each distinct instance request (the spec many
/// instances share, with its provisioning script and SSH keys) appears once in `requests`;
/// instances refer to it by index.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ChunkPlan {
    pub task_status: TaskStatus,
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

/// One instance of a chunk: its identity and progress (the full row is `instance.get`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ClaimedInstance {
    #[serde(rename = "ID")]
    pub id: InstanceId,
    pub name: String,
    pub status: InstanceStatus,
    /// The provider's id of the machine; empty until created.
    pub provider_ref: String,
    /// Index into [`ChunkPlan::requests`].
    pub request: usize,
}

/// `task.progress`: where a chunk's instances stand (phone-homes move them in the database
/// without the workflow).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema, Validate)]
pub struct TaskProgress {
    #[garde(skip)]
    pub task_id: TaskId,
    #[serde(flatten)]
    #[garde(skip)]
    pub range: ChunkRange,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Progress {
    pub task_status: TaskStatus,
    /// Instances of the chunk whose machine is still being made or watched.
    pub waiting: Vec<Watched>,
    /// Instances of the chunk that failed (their machines are destroyed at the end), with their
    /// errors (at most 200 characters each).
    pub failed: Vec<FailedInstance>,
    /// Instances of the chunk by status.
    pub counts: std::collections::BTreeMap<InstanceStatus, u32>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct FailedInstance {
    pub id: InstanceId,
    pub error: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Watched {
    pub id: InstanceId,
    pub status: InstanceStatus,
    /// Empty until created.
    pub provider_ref: String,
}

/// `task.transitionAll`: every instance of the task that can legally go to `to` does, in one
/// transaction (a project delete moves thousands at once).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema, Validate)]
pub struct TaskTransitionAll {
    #[garde(skip)]
    pub task_id: TaskId,
    #[garde(length(chars, min = 1, max = 200))]
    pub step: String,
    #[garde(skip)]
    pub to: InstanceStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[garde(length(max = 4096))]
    pub error: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TransitionsCounted {
    pub applied: u32,
    /// Instances already there, or that may not go there.
    pub skipped: u32,
}

/// `instance.live`: which of these instances may still have a machine (not `terminated`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema, Validate)]
pub struct InstanceLive {
    #[garde(length(max = 10_000))]
    pub instance_ids: Vec<InstanceId>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct LiveInstances {
    pub live: Vec<InstanceId>,
}

/// `reconcile.record`: what the reconcile sweep destroyed (an event of the deployment).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema, Validate)]
pub struct ReconcileRecord {
    #[garde(length(max = 10_000))]
    pub destroyed: Vec<String>,
    #[garde(length(max = 10_000))]
    pub names: Vec<String>,
}

/// `event.purge`: deletes events older than the retention (`event_retention_days`), at most
/// `limit` at a time.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema, Validate)]
pub struct EventPurge {
    #[garde(range(min = 1, max = 100_000))]
    pub limit: u32,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Purged {
    pub deleted: u32,
    pub retention_days: u32,
}

/// `deployment.get`: this deployment's identity and public URL (the reconcile sweep runs
/// without a task to learn them from).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema, Validate)]
pub struct DeploymentGet {}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Deployment {
    pub deployment: String,
    pub public_url: String,
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
