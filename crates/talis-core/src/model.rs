//! Domain models. JSON field names follow the original Talis (`ID`, `owner_id`, `created_at` …) so
//! its Go client keeps decoding them.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::db::{Row, RowExt};
use crate::status::{InstanceStatus, TaskAction, TaskStatus};

/// The owner of what the bootstrap admin key creates without an `owner_id` (a row created by
/// the first migration; 0 is also what "no owner_id" means in params, so it never names a user).
pub const ADMIN_OWNER_ID: i64 = 0;

/// Percent-encodes everything but RFC 3986 unreserved characters (Restate ids need none of it,
/// but the id arrives over RPC).
fn path_segment(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            b => format!("%{b:02X}"),
        })
        .collect()
}

fn json_or_default<T: serde::de::DeserializeOwned + Default>(s: &str) -> T {
    serde_json::from_str(s).unwrap_or_default()
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Project {
    #[serde(rename = "ID")]
    pub id: i64,
    pub owner_id: i64,
    pub name: String,
    pub description: String,
    /// Opaque JSON text (an object with optional `resources` and `settings` objects).
    pub config: String,
    /// `active`, `deleting` (a delete_project task is running) or `deleted`.
    pub status: String,
    pub created_at: String,
    pub updated_at: String,
}

impl Project {
    pub const COLUMNS: &str =
        "id, owner_id, name, description, config, status, created_at, updated_at";
    pub fn from_row(r: &Row) -> Self {
        Self {
            id: r.int(0),
            owner_id: r.int(1),
            name: r.text(2),
            description: r.text(3),
            config: r.text(4),
            status: r.text(5),
            created_at: r.text(6),
            updated_at: r.text(7),
        }
    }
}

/// A volume to create and attach (request side).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct VolumeConfig {
    pub name: String,
    pub size_gb: i64,
    /// Empty or equal to the instance's region.
    pub region: String,
    /// `ext4` or `xfs`; empty leaves the disk unformatted.
    pub filesystem: String,
    /// Absolute path; empty leaves the disk unmounted.
    pub mount_point: String,
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
    pub id: i64,
    pub owner_id: i64,
    pub project_id: i64,
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
    pub create_task_id: i64,
    /// The latest task that acts on this instance.
    pub last_task_id: i64,
    pub created_at: String,
    pub updated_at: String,
}

impl Instance {
    pub const COLUMNS: &str = "id, owner_id, project_id, name, provider_id, provider_ref, public_ip, region, size, \
         image, tags, status, volume_details, error, create_task_id, last_task_id, created_at, updated_at";
    pub fn from_row(r: &Row) -> Self {
        let provider_ref = r.text(5);
        let volume_details: Vec<VolumeDetail> = json_or_default(&r.text(12));
        Self {
            id: r.int(0),
            owner_id: r.int(1),
            project_id: r.int(2),
            name: r.text(3),
            provider_id: r.text(4),
            provider_instance_id: provider_ref.parse().unwrap_or(0),
            provider_ref,
            public_ip: r.text(6),
            region: r.text(7),
            size: r.text(8),
            image: r.text(9),
            tags: json_or_default(&r.text(10)),
            status: r.text(11).parse().unwrap_or(InstanceStatus::Unknown),
            volume_ids: volume_details.iter().map(|v| v.id.clone()).collect(),
            volume_details,
            error: r.text(13),
            create_task_id: r.int(14),
            last_task_id: r.int(15),
            created_at: r.text(16),
            updated_at: r.text(17),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Task {
    #[serde(rename = "ID")]
    pub id: i64,
    pub owner_id: i64,
    pub project_id: i64,
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

impl Task {
    /// Fills `invocation_url` from the Restate admin base URL (empty: no link).
    pub fn with_ui_link(mut self, restate_ui_url: &str) -> Self {
        self.invocation_url = self
            .invocation_id
            .as_deref()
            .filter(|id| !id.is_empty() && !restate_ui_url.is_empty())
            .map(|id| format!("{restate_ui_url}/ui/invocations/{}", path_segment(id)));
        self
    }

    pub const COLUMNS: &str = "t.id, t.owner_id, t.project_id, t.action, t.status, t.priority, t.attempts, \
         (SELECT COUNT(*) FROM task_instances ti WHERE ti.task_id = t.id), t.logs, t.error, t.result, \
         t.created_at, t.updated_at, t.dispatched_at, t.finished_at, t.invocation_id";
    pub fn from_row(r: &Row) -> Self {
        Self {
            id: r.int(0),
            owner_id: r.int(1),
            project_id: r.int(2),
            action: r.text(3).parse().unwrap_or(TaskAction::CreateInstances),
            status: r.text(4).parse().unwrap_or(TaskStatus::Unknown),
            priority: r.int(5),
            attempts: r.int(6),
            instance_count: r.int(7),
            logs: r.text(8),
            error: r.text(9),
            result: r.opt_text(10).and_then(|s| serde_json::from_str(&s).ok()),
            created_at: r.text(11),
            updated_at: r.text(12),
            dispatched_at: r.opt_text(13),
            finished_at: r.opt_text(14),
            invocation_id: r.opt_text(15),
            invocation_url: None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct User {
    #[serde(rename = "ID")]
    pub id: i64,
    pub username: String,
    pub email: String,
    /// 0 = user, 1 = admin (an integer, as in the original).
    pub role: i64,
    pub public_ssh_key: String,
    pub created_at: String,
    pub updated_at: String,
}

impl User {
    pub const COLUMNS: &str = "id, username, email, role, public_ssh_key, created_at, updated_at";
    pub fn from_row(r: &Row) -> Self {
        Self {
            id: r.int(0),
            username: r.text(1),
            email: r.text(2),
            role: r.int(3),
            public_ssh_key: r.text(4),
            created_at: r.text(5),
            updated_at: r.text(6),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SshKey {
    #[serde(rename = "ID")]
    pub id: i64,
    pub owner_id: i64,
    pub name: String,
    pub public_key: String,
    pub created_at: String,
}

impl SshKey {
    pub const COLUMNS: &str = "id, owner_id, name, public_key, created_at";
    pub fn from_row(r: &Row) -> Self {
        Self {
            id: r.int(0),
            owner_id: r.int(1),
            name: r.text(2),
            public_key: r.text(3),
            created_at: r.text(4),
        }
    }
}

/// An API key as listed (the key itself is only shown once, at creation).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ApiKey {
    #[serde(rename = "ID")]
    pub id: i64,
    pub owner_id: i64,
    pub name: String,
    /// The key's first characters, to recognise it.
    pub prefix: String,
    pub created_at: String,
    pub revoked_at: Option<String>,
}

impl ApiKey {
    pub const COLUMNS: &str = "id, owner_id, name, prefix, created_at, revoked_at";
    pub fn from_row(r: &Row) -> Self {
        Self {
            id: r.int(0),
            owner_id: r.int(1),
            name: r.text(2),
            prefix: r.text(3),
            created_at: r.text(4),
            revoked_at: r.opt_text(5),
        }
    }
}

/// One recorded workflow step.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TaskEvent {
    #[serde(rename = "ID")]
    pub id: i64,
    pub task_id: i64,
    pub instance_id: Option<i64>,
    pub step: String,
    pub status: String,
    pub detail: String,
    pub created_at: String,
}

impl TaskEvent {
    pub const COLUMNS: &str = "id, task_id, instance_id, step, status, detail, created_at";
    pub fn from_row(r: &Row) -> Self {
        Self {
            id: r.int(0),
            task_id: r.int(1),
            instance_id: r.opt_int(2),
            step: r.text(3),
            status: r.text(4),
            detail: r.text(5),
            created_at: r.text(6),
        }
    }
}

/// An SSH public key handed to the provider for an instance.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub struct SshPublicKey {
    pub name: String,
    pub public_key: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_ui_link_only_with_an_invocation_and_a_ui_url() {
        let mut t = Task::from_row(&vec![]);
        assert_eq!(t.clone().with_ui_link("http://r:9070").invocation_url, None);
        t.invocation_id = Some("inv_1a/b".into());
        assert_eq!(t.clone().with_ui_link("").invocation_url, None);
        assert_eq!(
            t.with_ui_link("http://r:9070").invocation_url.as_deref(),
            Some("http://r:9070/ui/invocations/inv_1a%2Fb")
        );
    }
}
