//! Params and results of every RPC method. They live here because the service decodes and
//! produces them; `talis-api` re-exports them as the wire contract and documents them in OpenAPI.
//! Every struct is `#[serde(default)]`: a missing field reads as empty and is then reported by
//! validation with its name, like the original's "required" checks.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::model::{
    ApiKey, Instance, Project, SshPublicKey, Task, User, VolumeConfig, VolumeDetail,
};
use crate::status::{InstanceStatus, TaskAction, TaskStatus};

/// Pagination input shared by every list: `limit` (1..=1000, default 50) and the opaque `cursor`
/// from the previous page's `pagination.next_cursor`. `page` (1-based, RPC) and `offset` (REST)
/// are accepted for the original clients; they apply only without a cursor.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct PageParams {
    pub limit: Option<u32>,
    pub cursor: Option<String>,
    pub page: Option<u32>,
    pub offset: Option<u32>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Pagination {
    /// Rows matching the filters over all pages.
    pub total: i64,
    pub limit: i64,
    pub page: i64,
    pub offset: i64,
    /// Pass as `cursor` to get the next page; null on the last page.
    pub next_cursor: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Page<T> {
    pub rows: Vec<T>,
    pub pagination: Pagination,
}

/// One element of a create request: `number_of_instances` machines of one shape (the original's
/// InstanceRequest). Unknown fields are ignored, as by the original's decoder.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct InstanceRequest {
    /// Accepted for compatibility; must be the caller's id unless the caller is admin.
    pub owner_id: Option<u64>,
    /// Required in `instance.create` / `POST /api/v1/instances`; ignored inside `project.create`.
    pub project_name: String,
    /// Cloud provider; `do` (DigitalOcean) is the one implemented.
    pub provider: String,
    pub region: String,
    pub size: String,
    pub image: String,
    pub number_of_instances: i64,
    /// Base hostname; instances are named `<name>-1..N` when N > 1.
    pub name: String,
    pub tags: Vec<String>,
    pub volumes: Vec<VolumeConfig>,
    /// Run the provisioning script after the machine is up.
    pub provision: bool,
    /// Provisioning script sent inline (cloud-init user data, at most 64 KiB).
    pub payload: String,
    pub execute_payload: bool,
    /// Names of the caller's stored SSH keys to install (see `sshkey.create`).
    pub ssh_keys: Vec<String>,
    /// One stored SSH key name (the original's example field); added to `ssh_keys`.
    pub ssh_key_name: String,
    /// The original's server-side script path. Rejected: send `payload` instead.
    pub payload_path: Option<String>,
    /// Ximera sizing of the original; not supported by the `do` provider.
    pub memory: i64,
    pub cpu: i64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct ProjectCreate {
    pub name: String,
    pub owner_id: Option<u64>,
    pub description: String,
    /// JSON object text with optional `resources` and `settings` objects.
    pub config: String,
    /// Instances to create with the project, in the same transaction (up to 10 000 in total).
    pub instances: Vec<InstanceRequest>,
    /// Same key + same params → the same answer, no second project.
    pub idempotency_key: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ProjectCreated {
    #[serde(flatten)]
    pub project: Project,
    /// The create_instances task, when instances were requested.
    pub task_id: Option<i64>,
    pub instance_ids: Vec<i64>,
}

/// A project by name (`project.get`, `project.delete`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct ProjectRef {
    pub name: String,
    pub owner_id: Option<u64>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct OwnerList {
    pub owner_id: Option<u64>,
    #[serde(flatten)]
    pub page: PageParams,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct ProjectListInstances {
    pub name: String,
    pub owner_id: Option<u64>,
    pub status: Option<InstanceStatus>,
    #[serde(flatten)]
    pub page: PageParams,
}

/// Answer of calls that queue a task (`project.delete`, `instance.terminate`). `task_id` is null
/// when nothing was left to do (e.g. a project without live instances is deleted at once).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TaskQueued {
    pub task_id: Option<i64>,
    pub instance_ids: Vec<i64>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct TaskRef {
    pub task_id: u64,
    pub owner_id: Option<u64>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct TaskList {
    /// `projectName` in the original (camelCase); `project_name` also works.
    #[serde(rename = "projectName", alias = "project_name")]
    pub project_name: String,
    pub owner_id: Option<u64>,
    #[serde(flatten)]
    pub page: PageParams,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct TaskUpdateStatus {
    pub task_id: u64,
    pub status: Option<TaskStatus>,
    pub owner_id: Option<u64>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct TaskListByInstance {
    pub instance_id: u64,
    pub action: Option<TaskAction>,
    pub owner_id: Option<u64>,
    #[serde(flatten)]
    pub page: PageParams,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct UserCreate {
    pub username: String,
    pub email: String,
    /// 0 = user, 1 = admin.
    pub role: i64,
    pub public_ssh_key: String,
}

/// The new user's id and its first API key (shown only here).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct UserCreated {
    pub id: i64,
    pub api_key: String,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct UserGet {
    pub username: Option<String>,
    #[serde(flatten)]
    pub page: PageParams,
}

/// `{"user": …}` for a username; `{"users": […], "pagination": …}` without one.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct UserGetResult {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<User>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub users: Option<Vec<User>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pagination: Option<Pagination>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct IdRef {
    pub id: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct SshKeyCreate {
    pub name: String,
    pub public_key: String,
    pub owner_id: Option<u64>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct SshKeyDelete {
    pub name: String,
    pub owner_id: Option<u64>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct ApiKeyCreate {
    pub owner_id: Option<u64>,
    pub name: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ApiKeyCreated {
    #[serde(flatten)]
    pub key: ApiKey,
    /// The key itself; shown only in this answer.
    pub api_key: String,
}

/// `instance.create` params: `{"instances": [...]}`, or the bare array of `POST /api/v1/instances`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct InstanceCreate {
    pub instances: Vec<InstanceRequest>,
    pub idempotency_key: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct InstancesCreated {
    /// One create_instances task per project named in the request.
    pub task_ids: Vec<i64>,
    pub instances: Vec<Instance>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct InstanceTerminate {
    pub owner_id: Option<u64>,
    pub project_name: String,
    pub instance_ids: Vec<u64>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct InstanceGet {
    #[serde(alias = "instance_id")]
    pub id: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct InstanceList {
    pub owner_id: Option<u64>,
    pub project_name: Option<String>,
    pub status: Option<InstanceStatus>,
    /// Include terminated instances (the original's meaning of this flag).
    pub include_deleted: bool,
    #[serde(flatten)]
    pub page: PageParams,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PublicIp {
    #[serde(rename = "ID")]
    pub id: i64,
    pub public_ip: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PublicIps {
    pub public_ips: Vec<PublicIp>,
    pub pagination: Pagination,
}

// ---- internal RPC (workflows → component), `POST /internal/v1/<method>` ----

/// `task.claim`: pending → running for this invocation (repeat with the same invocation: no-op).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct TaskClaim {
    pub task_id: u64,
    pub invocation_id: String,
}

/// Everything a workflow needs to run a task. Each distinct instance request (the spec many
/// instances share, with its provisioning script of up to 60 KiB) appears once in `requests`;
/// instances refer to it by index, so the answer grows by a small row per instance, not by a
/// script per instance.
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

impl ClaimedTask {
    /// The request an instance was made from.
    pub fn request_of(&self, instance: &ClaimedInstance) -> Option<&ClaimedRequest> {
        self.requests.get(instance.request)
    }
}

/// The spec shared by the instances of one instance request.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub struct ClaimedRequest {
    pub provider_id: String,
    pub region: String,
    pub size: String,
    pub image: String,
    pub tags: Vec<String>,
    pub volumes: Vec<VolumeConfig>,
    pub provision: bool,
    /// The provisioning script; empty in terminate and delete tasks, which never run it.
    pub payload: String,
    pub execute_payload: bool,
    pub ssh_keys: Vec<SshPublicKey>,
}

/// One instance of a claimed task: its identity and progress (the full row is `instance.get`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ClaimedInstance {
    #[serde(rename = "ID")]
    pub id: i64,
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

/// `instance.transition`: applies a legal status change (same status again: no-op success;
/// illegal: 409). Given fields are recorded with it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct InstanceTransition {
    pub instance_id: u64,
    pub task_id: u64,
    pub status: Option<InstanceStatus>,
    pub provider_ref: Option<String>,
    pub public_ip: Option<String>,
    pub volumes: Option<Vec<VolumeDetail>>,
    pub error: Option<String>,
}

/// `instance.transitionBatch`: many `instance.transition`s of one task in one transaction, each
/// recorded with a step event keyed by task, instance, step and status. A refused transition
/// (illegal, not of this task) is reported in its result and does not stop the others.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct InstanceTransitionBatch {
    pub task_id: u64,
    /// Step name recorded with every transition's event (e.g. "ensure machine").
    pub step: String,
    /// `task_id` inside each transition is ignored (the batch's applies).
    pub transitions: Vec<InstanceTransition>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TransitionResult {
    pub instance_id: u64,
    /// Why the transition was refused; null when applied.
    pub error: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TransitionsApplied {
    /// One per transition, in order.
    pub results: Vec<TransitionResult>,
}

/// `task.event`: appends a step event; a repeated `event_key` (per task) is a no-op.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct TaskEventRecord {
    pub task_id: u64,
    pub instance_id: Option<u64>,
    pub step: String,
    pub status: String,
    pub detail: String,
    pub event_key: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct EventRecorded {
    pub event_id: i64,
    /// True when this `event_key` had been recorded before.
    pub duplicate: bool,
}

/// `task.finish`: terminal transition (completed, failed or terminated) with a result summary.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct TaskFinish {
    pub task_id: u64,
    pub status: Option<TaskStatus>,
    pub result: Option<serde_json::Value>,
    pub error: Option<String>,
}
