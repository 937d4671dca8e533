//! Params and results of the public methods. Decoding a params type and validating it (garde)
//! is the boundary: past it, every field holds what its attributes say. The same attributes
//! are the OpenAPI schema (schemars reads them), so the document states exactly what the
//! service enforces. Constraints a schema cannot state (a stored SSH key exists, the user data
//! fits 64 KiB) are checked by the service and say so in their field's description.

use garde::Validate;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::fields::{ProjectConfig, Tag};
use crate::ids::{InstanceId, OwnerId, RowId, TaskId};
use crate::model::{ApiKey, Instance, Project, User};
use crate::rules::*;
use crate::status::{InstanceStatus, TaskAction, TaskStatus};

/// Declares a list's params: its own fields plus the pagination every list takes (`limit`
/// 1..=1000, default 50; the opaque `cursor` from the previous page's
/// `pagination.next_cursor`; `page` (1-based) and `offset` for the original clients, which apply
/// only without a cursor).
macro_rules! list_params {
    ($(#[$m:meta])* pub struct $name:ident { $($(#[$fm:meta])* pub $field:ident: $ty:ty,)* }) => {
        $(#[$m])*
        #[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema, Validate)]
        pub struct $name {
            $($(#[$fm])* pub $field: $ty,)*
            /// Rows per page (default 50).
            #[serde(default, skip_serializing_if = "Option::is_none")]
            #[garde(range(min = 1, max = MAX_LIMIT))]
            pub limit: Option<u32>,
            /// `pagination.next_cursor` of the previous page.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            #[garde(length(max = 18), pattern(DIGITS))]
            pub cursor: Option<String>,
            /// 1-based page number (without a cursor).
            #[serde(default, skip_serializing_if = "Option::is_none")]
            #[garde(skip)]
            pub page: Option<u32>,
            /// Rows to skip (without a cursor).
            #[serde(default, skip_serializing_if = "Option::is_none")]
            #[garde(skip)]
            pub offset: Option<u32>,
        }

        impl $name {
            /// The same params asking for another page.
            pub fn with_page(mut self, limit: Option<u32>, cursor: Option<String>, page: Option<u32>, offset: Option<u32>) -> Self {
                (self.limit, self.cursor, self.page, self.offset) = (limit, cursor, page, offset);
                self
            }
        }

        impl Paged for $name {
            fn paging(&self) -> Paging<'_> {
                Paging { limit: self.limit, cursor: self.cursor.as_deref(), page: self.page, offset: self.offset }
            }
        }
    };
}

pub(crate) use list_params;

/// The pagination fields of a list's params.
#[derive(Clone, Copy, Debug, Default)]
pub struct Paging<'a> {
    pub limit: Option<u32>,
    pub cursor: Option<&'a str>,
    pub page: Option<u32>,
    pub offset: Option<u32>,
}

/// Params of a list.
pub trait Paged {
    fn paging(&self) -> Paging<'_>;
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

/// Cloud providers the workflows can drive.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum Provider {
    /// DigitalOcean.
    #[default]
    #[serde(rename = "do")]
    DigitalOcean,
}

impl Provider {
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::DigitalOcean => "do",
        }
    }
}

/// Filesystem made on a new volume; `""` leaves it unformatted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum Filesystem {
    #[default]
    #[serde(rename = "")]
    None,
    #[serde(rename = "ext4")]
    Ext4,
    #[serde(rename = "xfs")]
    Xfs,
}

impl Filesystem {
    pub fn as_str(self) -> Option<&'static str> {
        match self {
            Filesystem::None => None,
            Filesystem::Ext4 => Some("ext4"),
            Filesystem::Xfs => Some("xfs"),
        }
    }
}

/// A volume to create with each instance and attach to it.
#[derive(
    Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema, Validate,
)]
pub struct VolumeConfig {
    #[garde(length(chars, min = 1, max = 64), pattern(NAME))]
    pub name: String,
    #[garde(range(min = 1, max = MAX_VOLUME_GB))]
    pub size_gb: u32,
    /// Ignored: a volume is always made in its instance's region (accepted for the original).
    #[serde(default)]
    #[garde(length(chars, max = 64))]
    pub region: String,
    #[serde(default)]
    #[garde(skip)]
    pub filesystem: Filesystem,
    /// Absolute path; empty leaves the disk unmounted.
    #[serde(default)]
    #[garde(length(max = MAX_MOUNT_POINT), pattern(MOUNT_POINT))]
    pub mount_point: String,
}

/// Declares the two request forms of "N machines of one shape": inside `project.create` (the
/// project is the one being made) and in `instance.create` (each names its project).
macro_rules! instance_request {
    ($(#[$m:meta])* pub struct $name:ident { $($(#[$fm:meta])* pub $field:ident: $ty:ty,)* }) => {
        $(#[$m])*
        #[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema, Validate)]
        pub struct $name {
            $($(#[$fm])* pub $field: $ty,)*
            /// Accepted for compatibility; must be the caller's id unless the caller is admin.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            #[garde(skip)]
            pub owner_id: Option<OwnerId>,
            #[garde(skip)]
            pub provider: Provider,
            #[garde(length(chars, min = 1, max = 64), pattern(NAME))]
            pub region: String,
            #[garde(length(chars, min = 1, max = 64), pattern(NAME))]
            pub size: String,
            #[garde(length(chars, min = 1, max = MAX_SLUG), pattern(NAME))]
            pub image: String,
            #[garde(range(min = 1, max = MAX_INSTANCES_PER_CALL))]
            pub number_of_instances: u32,
            /// Base hostname; instances are named `<name>-1..N` when N > 1 (default: derived
            /// from the project name).
            #[serde(default)]
            #[garde(length(max = MAX_HOSTNAME), pattern(HOSTNAME))]
            pub name: String,
            /// Provider tags. `talis` and `talis-…` are reserved for Talis's own bookkeeping.
            #[serde(default)]
            #[garde(length(max = MAX_TAGS))]
            pub tags: Vec<Tag>,
            #[serde(default)]
            #[garde(length(max = MAX_VOLUMES), dive)]
            pub volumes: Vec<VolumeConfig>,
            /// Accepted for the original clients; the script runs when `execute_payload` is set.
            #[serde(default)]
            #[garde(skip)]
            pub provision: bool,
            /// Provisioning script sent inline (cloud-init user data). The whole user data
            /// (script, SSH keys, volume mounts, phone-home) must fit 64 KiB: checked at create
            /// time, when the SSH keys are known.
            #[serde(default)]
            #[garde(length(max = MAX_PAYLOAD_BYTES))]
            pub payload: String,
            /// Run `payload` once the machine is up (without a payload: nothing to run).
            #[serde(default)]
            #[garde(skip)]
            pub execute_payload: bool,
            /// Names of the caller's stored SSH keys to install (see `sshkey.create`); an
            /// unknown name answers 404.
            #[serde(default)]
            #[garde(length(max = MAX_SSH_KEYS), inner(length(chars, min = 1, max = MAX_NAME), pattern(NAME)))]
            pub ssh_keys: Vec<String>,
            /// One stored SSH key name (the original's field); added to `ssh_keys`.
            #[serde(default)]
            #[garde(length(chars, max = MAX_NAME), pattern(NAME))]
            pub ssh_key_name: String,
            /// The original's server-side script path: not supported, must be absent or empty
            /// (send the script in `payload`).
            #[serde(default, skip_serializing_if = "Option::is_none")]
            #[garde(length(max = 0))]
            pub payload_path: Option<String>,
            /// Ximera sizing of the original; ignored by the `do` provider (give `size`).
            #[serde(default)]
            #[garde(skip)]
            pub memory: u32,
            /// Ximera sizing of the original; ignored by the `do` provider (give `size`).
            #[serde(default)]
            #[garde(skip)]
            pub cpu: u32,
        }

        impl $name {
            /// The stored SSH key names, `ssh_key_name` included, each once, with the field
            /// that first named each.
            pub fn ssh_key_names(&self) -> Vec<KeyName<'_>> {
                let listed = self.ssh_keys.iter().enumerate().map(|(i, name)| KeyName {
                    field: format!("ssh_keys[{i}]"),
                    name,
                });
                let single = (!self.ssh_key_name.is_empty()).then(|| KeyName {
                    field: "ssh_key_name".into(),
                    name: &self.ssh_key_name,
                });
                let mut seen = std::collections::HashSet::new();
                listed.chain(single).filter(|k| seen.insert(k.name)).collect()
            }

            /// The spec the instances share.
            pub fn spec(&self) -> InstanceSpec<'_> {
                InstanceSpec {
                    provider: self.provider,
                    region: &self.region,
                    size: &self.size,
                    image: &self.image,
                    count: self.number_of_instances,
                    name: &self.name,
                    tags: &self.tags,
                    volumes: &self.volumes,
                    payload: if self.execute_payload { &self.payload } else { "" },
                    provision: self.provision,
                    execute_payload: self.execute_payload,
                    ssh_keys: self.ssh_key_names(),
                }
            }
        }
    };
}

instance_request! {
    /// N machines of one shape, made with the project of a `project.create` (the original's
    /// InstanceRequest; a `project_name` in it is ignored).
    pub struct InstanceRequest {}
}

instance_request! {
    /// N machines of one shape in an existing project (`instance.create`, `POST /api/v1/instances`).
    pub struct InstanceCreateRequest {
        #[garde(length(chars, min = 1, max = MAX_NAME), pattern(NAME))]
        pub project_name: String,
    }
}

/// What the instances of one request share, whichever form it came in.
#[derive(Clone, Debug, PartialEq)]
pub struct InstanceSpec<'a> {
    pub provider: Provider,
    pub region: &'a str,
    pub size: &'a str,
    pub image: &'a str,
    pub count: u32,
    /// Empty: derived from the project name.
    pub name: &'a str,
    pub tags: &'a [Tag],
    pub volumes: &'a [VolumeConfig],
    /// The script to run (empty unless `execute_payload`).
    pub payload: &'a str,
    pub provision: bool,
    pub execute_payload: bool,
    pub ssh_keys: Vec<KeyName<'a>>,
}

/// A stored SSH key named by a request, and the request's field that named it (`ssh_keys[1]`,
/// `ssh_key_name`), so an unknown name is reported where it was sent.
#[derive(Clone, Debug, PartialEq)]
pub struct KeyName<'a> {
    pub field: String,
    pub name: &'a str,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema, Validate)]
pub struct ProjectCreate {
    #[garde(length(chars, min = 1, max = MAX_NAME), pattern(NAME))]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[garde(skip)]
    pub owner_id: Option<OwnerId>,
    #[serde(default)]
    #[garde(length(chars, max = MAX_DESCRIPTION))]
    pub description: String,
    #[serde(default)]
    #[garde(skip)]
    pub config: ProjectConfig,
    /// Instances to create with the project, in the same transaction (one create task).
    #[serde(default)]
    #[garde(length(max = MAX_INSTANCE_REQUESTS), dive)]
    pub instances: Vec<InstanceRequest>,
    /// Same key + same params → the same answer, no second project.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[garde(length(chars, min = 1, max = MAX_IDEMPOTENCY_KEY))]
    pub idempotency_key: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ProjectCreated {
    #[serde(flatten)]
    pub project: Project,
    /// The create_instances task, when instances were requested.
    pub task_id: Option<TaskId>,
    pub instance_ids: Vec<InstanceId>,
}

/// A project by name (`project.get`, `project.delete`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema, Validate)]
pub struct ProjectRef {
    #[garde(length(chars, min = 1, max = MAX_NAME), pattern(NAME))]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[garde(skip)]
    pub owner_id: Option<OwnerId>,
}

list_params! {
    /// A list of the caller's rows (admins: of `owner_id`, or of everyone without it).
    #[derive(Default)]
    pub struct OwnerList {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[garde(skip)]
        pub owner_id: Option<OwnerId>,
    }
}

list_params! {
    #[derive(Default)]
    pub struct ProjectListInstances {
        #[garde(length(chars, min = 1, max = MAX_NAME), pattern(NAME))]
        pub name: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[garde(skip)]
        pub owner_id: Option<OwnerId>,
        /// Only instances in this status (default: all).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[garde(skip)]
        pub status: Option<InstanceStatus>,
    }
}

/// Answer of calls that queue a task (`project.delete`, `instance.terminate`). `task_id` is null
/// when nothing was left to do (e.g. a project without live instances is deleted at once).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TaskQueued {
    pub task_id: Option<TaskId>,
    pub instance_ids: Vec<InstanceId>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema, Validate)]
pub struct TaskRef {
    #[garde(skip)]
    pub task_id: TaskId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[garde(skip)]
    pub owner_id: Option<OwnerId>,
}

impl TaskRef {
    pub fn new(task_id: TaskId) -> Self {
        Self {
            task_id,
            owner_id: None,
        }
    }
}

list_params! {
    #[derive(Default)]
    pub struct TaskList {
        /// `projectName` in the original (camelCase); `project_name` also works.
        #[serde(rename = "projectName", alias = "project_name")]
        #[garde(length(chars, min = 1, max = MAX_NAME), pattern(NAME))]
        pub project_name: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[garde(skip)]
        pub owner_id: Option<OwnerId>,
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema, Validate)]
pub struct TaskUpdateStatus {
    #[garde(skip)]
    pub task_id: TaskId,
    #[garde(skip)]
    pub status: TaskStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[garde(skip)]
    pub owner_id: Option<OwnerId>,
}

list_params! {
    pub struct TaskListByInstance {
        #[garde(skip)]
        pub instance_id: InstanceId,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[garde(skip)]
        pub action: Option<TaskAction>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[garde(skip)]
        pub owner_id: Option<OwnerId>,
    }
}

/// A user's role: 0 = user, 1 = admin (integers, as in the original).
pub const ROLE_USER: u8 = 0;
pub const ROLE_ADMIN: u8 = 1;

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema, Validate)]
pub struct UserCreate {
    #[garde(length(chars, min = 1, max = 64), pattern(NAME))]
    pub username: String,
    #[serde(default)]
    #[garde(length(chars, max = 254), pattern(EMAIL))]
    pub email: String,
    /// 0 = user, 1 = admin.
    #[serde(default)]
    #[garde(range(min = ROLE_USER, max = ROLE_ADMIN))]
    pub role: u8,
    /// An OpenSSH public key (optional; same rules as `sshkey.create`).
    #[serde(default)]
    #[garde(length(max = MAX_SSH_KEY), pattern(SINGLE_LINE), custom(crate::fields::optional_ssh_public_key))]
    pub public_ssh_key: String,
}

/// The new user's id and its first API key (shown only here).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct UserCreated {
    pub id: OwnerId,
    pub api_key: String,
}

list_params! {
    #[derive(Default)]
    pub struct UserGet {
        /// One user by name; without it, the list of users (a user sees only themself).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[garde(length(chars, max = 64), pattern(NAME))]
        pub username: Option<String>,
    }
}

/// `{"user": …}` for a username; `{"users": […], "pagination": …}` without one.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct UserGetResult {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<User>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub users: Option<Vec<User>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pagination: Option<Pagination>,
}

/// A row by id (`user.get.id`, `user.delete`, `apikey.revoke`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema, Validate)]
pub struct IdRef {
    #[garde(skip)]
    pub id: RowId,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema, Validate)]
pub struct SshKeyCreate {
    #[garde(length(chars, min = 1, max = MAX_NAME), pattern(NAME))]
    pub name: String,
    /// An OpenSSH public key line: `<type> <base64 blob> [comment]`, at most 16 KiB, one line.
    /// The blob must decode to a key of the named type (checked by parsing it; the schema can
    /// only state the shape).
    #[garde(length(min = 1, max = MAX_SSH_KEY), pattern(SSH_PUBLIC_KEY), custom(crate::fields::ssh_public_key))]
    pub public_key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[garde(skip)]
    pub owner_id: Option<OwnerId>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema, Validate)]
pub struct SshKeyDelete {
    #[garde(length(chars, min = 1, max = MAX_NAME), pattern(NAME))]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[garde(skip)]
    pub owner_id: Option<OwnerId>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema, Validate)]
pub struct ApiKeyCreate {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[garde(skip)]
    pub owner_id: Option<OwnerId>,
    /// A label for the key.
    #[serde(default)]
    #[garde(length(chars, max = MAX_NAME), pattern(SINGLE_LINE))]
    pub name: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ApiKeyCreated {
    #[serde(flatten)]
    pub key: ApiKey,
    /// The key itself; shown only in this answer.
    pub api_key: String,
}

/// `instance.create` params: `{"instances": [...]}` (`POST /api/v1/instances` takes the bare array).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema, Validate)]
pub struct InstanceCreate {
    #[garde(length(min = 1, max = MAX_INSTANCE_REQUESTS), dive)]
    pub instances: Vec<InstanceCreateRequest>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[garde(length(chars, min = 1, max = MAX_IDEMPOTENCY_KEY))]
    pub idempotency_key: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct InstancesCreated {
    /// One create_instances task per project named in the request.
    pub task_ids: Vec<TaskId>,
    pub instances: Vec<Instance>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema, Validate)]
pub struct InstanceTerminate {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[garde(skip)]
    pub owner_id: Option<OwnerId>,
    #[garde(length(chars, min = 1, max = MAX_NAME), pattern(NAME))]
    pub project_name: String,
    #[garde(length(min = 1, max = MAX_INSTANCE_IDS))]
    pub instance_ids: Vec<InstanceId>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema, Validate)]
pub struct InstanceGet {
    #[serde(alias = "instance_id")]
    #[garde(skip)]
    pub id: InstanceId,
}

list_params! {
    #[derive(Default)]
    pub struct InstanceList {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[garde(skip)]
        pub owner_id: Option<OwnerId>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[garde(length(chars, min = 1, max = MAX_NAME), pattern(NAME))]
        pub project_name: Option<String>,
        /// Only instances in this status (the original clients' `instance_status` and
        /// `status_filter` also work).
        #[serde(default, skip_serializing_if = "Option::is_none", alias = "instance_status", alias = "status_filter")]
        #[garde(skip)]
        pub status: Option<InstanceStatus>,
        /// Include terminated instances (the original's meaning of this flag).
        #[serde(default)]
        #[garde(skip)]
        pub include_deleted: bool,
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PublicIp {
    #[serde(rename = "ID")]
    pub id: InstanceId,
    pub public_ip: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PublicIps {
    pub public_ips: Vec<PublicIp>,
    pub pagination: Pagination,
}

/// What an owner may have at once. Each limit has a deployment-wide default (a Spin variable of
/// the same name) and may be overridden per owner by an admin (`quota.set`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Quotas {
    /// Instances not yet terminated (`max_instances_per_owner`, default 10 000).
    pub max_instances: u32,
    /// Projects not deleted (`max_projects_per_owner`, default 100).
    pub max_projects: u32,
    /// API keys not revoked (`max_api_keys_per_owner`, default 50).
    pub max_api_keys: u32,
    /// Stored SSH keys (`max_ssh_keys_per_owner`, default 50).
    pub max_ssh_keys: u32,
    /// Webhooks not deleted (`max_webhooks_per_owner`, default 20).
    #[serde(default = "default_max_webhooks")]
    pub max_webhooks: u32,
}

fn default_max_webhooks() -> u32 {
    Quotas::default().max_webhooks
}

impl Default for Quotas {
    fn default() -> Self {
        Quotas {
            max_instances: 10_000,
            max_projects: 100,
            max_api_keys: 50,
            max_ssh_keys: 50,
            max_webhooks: 20,
        }
    }
}

/// `quota.get`: an owner's limits and what it uses (an owner sees its own; an admin anyone's).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema, Validate)]
pub struct QuotaGet {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[garde(skip)]
    pub owner_id: Option<OwnerId>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct QuotaUsage {
    pub owner_id: OwnerId,
    /// The limits in force (the owner's overrides, else the deployment's defaults).
    pub limits: Quotas,
    /// What the owner has now, counted the same way.
    pub used: Quotas,
}

/// `quota.set` (admin): overrides an owner's limits; a null field goes back to the default.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema, Validate)]
pub struct QuotaSet {
    #[garde(skip)]
    pub owner_id: OwnerId,
    #[serde(default)]
    #[garde(range(max = 1_000_000))]
    pub max_instances: Option<u32>,
    #[serde(default)]
    #[garde(range(max = 100_000))]
    pub max_projects: Option<u32>,
    #[serde(default)]
    #[garde(range(max = 10_000))]
    pub max_api_keys: Option<u32>,
    #[serde(default)]
    #[garde(range(max = 10_000))]
    pub max_ssh_keys: Option<u32>,
    #[serde(default)]
    #[garde(range(max = 10_000))]
    pub max_webhooks: Option<u32>,
}
