//! What the API answers with: the rows of the data model. JSON field names follow the original
//! Talis (`ID`, `owner_id`, `created_at` …) so its Go client keeps decoding them.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::ids::{InstanceId, OwnerId, ProjectId, RowId, TaskId};
use crate::status::{InstanceStatus, ProjectStatus, TaskAction, TaskStatus};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Project {
    #[serde(rename = "ID")]
    pub id: ProjectId,
    pub owner_id: OwnerId,
    pub name: String,
    pub description: String,
    /// JSON object text (optional `resources` and `settings` objects); empty when unset.
    pub config: String,
    pub status: ProjectStatus,
    pub created_at: String,
    pub updated_at: String,
}

/// A volume as created at the provider.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct VolumeDetail {
    pub id: String,
    pub name: String,
    pub region: String,
    pub size_gb: i64,
    pub mount_point: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Instance {
    #[serde(rename = "ID")]
    pub id: InstanceId,
    pub owner_id: OwnerId,
    pub project_id: ProjectId,
    pub name: String,
    pub provider_id: String,
    /// The provider's id of the machine (DigitalOcean droplet id); empty until created.
    pub provider_ref: String,
    /// `provider_ref` as a number, the original's field (0 until created).
    pub provider_instance_id: i64,
    pub public_ip: String,
    pub region: String,
    pub size: String,
    pub image: String,
    pub tags: Vec<String>,
    pub status: InstanceStatus,
    pub volume_ids: Vec<String>,
    pub volume_details: Vec<VolumeDetail>,
    pub error: String,
    /// The create_instances task that made this instance.
    pub create_task_id: TaskId,
    /// The latest task that acts on this instance.
    pub last_task_id: TaskId,
    pub created_at: String,
    pub updated_at: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Task {
    #[serde(rename = "ID")]
    pub id: TaskId,
    pub owner_id: OwnerId,
    pub project_id: ProjectId,
    pub action: TaskAction,
    pub status: TaskStatus,
    /// 1 = high (creates), 2 = low (terminations), as in the original.
    pub priority: i64,
    pub attempts: i64,
    /// Number of instances this task covers.
    pub instance_count: i64,
    /// Newline-separated progress lines (one per recorded step event).
    pub logs: String,
    pub error: String,
    /// Per-instance summary written when the task finishes.
    pub result: Option<serde_json::Value>,
    pub created_at: String,
    pub updated_at: String,
    /// When the workflow trigger was accepted; null until then.
    pub dispatched_at: Option<String>,
    pub finished_at: Option<String>,
    /// The Restate invocation executing this task (set when the workflow claims it): open the
    /// Restate UI (admin port, `/ui/`) → Invocations to see its journal, retries and timers.
    pub invocation_id: Option<String>,
    /// That invocation's page in the Restate UI (`{restate_ui_url}/ui/invocations/{id}`); null
    /// until claimed or when the API has no `restate_ui_url`.
    pub invocation_url: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct User {
    #[serde(rename = "ID")]
    pub id: OwnerId,
    pub username: String,
    pub email: String,
    /// 0 = user, 1 = admin (an integer, as in the original).
    pub role: u8,
    pub public_ssh_key: String,
    pub created_at: String,
    pub updated_at: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SshKey {
    #[serde(rename = "ID")]
    pub id: RowId,
    pub owner_id: OwnerId,
    pub name: String,
    pub public_key: String,
    pub created_at: String,
}

/// An API key as listed (the key itself is only shown once, at creation).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ApiKey {
    #[serde(rename = "ID")]
    pub id: RowId,
    pub owner_id: OwnerId,
    pub name: String,
    /// The key's first characters, to recognise it.
    pub prefix: String,
    pub created_at: String,
    pub revoked_at: Option<String>,
}

/// An SSH public key handed to the machines of an instance request.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub struct SshPublicKey {
    pub name: String,
    pub public_key: String,
}
