//! The method table: every RPC method declared once, with its name, who may call it, its params
//! and result types and a one-line doc. Everything else is generated from it: the service's
//! dispatch and handler trait (talis-core), the method listing and both OpenAPI routes
//! ([`crate::openapi`]), the client's methods (talis-client) and the CLI's every-method check.
//! Adding a method is one entry here plus its handler.
//!
//! The tables are callback macros: `public_methods!(m)` expands to `m! { entries }`, each entry
//! `Marker fn_name "wire.name" Access Mode (Params) -> (Result);` with its doc comment.

use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Who may call a method.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Access {
    /// Any API key; acts on the key owner's rows (an admin key may name `owner_id`).
    Owner,
    /// Admin keys only.
    Admin,
    /// The workflows, with the internal secret, on `/internal/v1/` only.
    Internal,
}

/// One RPC method, as a type: `M::NAME`, `M::Params`, `M::Result`.
pub trait Method {
    const NAME: &'static str;
    const ACCESS: Access;
    const MODE: Mode;
    const DOC: &'static str;
    type Params: Serialize + DeserializeOwned + JsonSchema + garde::Validate<Context = ()>;
    type Result: Serialize + DeserializeOwned + JsonSchema;
}

/// Whether a method changes anything: every `Write` call is recorded in the event log (the
/// audit trail), in its own transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    Read,
    Write,
}

/// A method's table entry at run time (listing, OpenAPI).
pub struct MethodInfo {
    pub name: &'static str,
    pub access: Access,
    pub mode: Mode,
    pub doc: &'static str,
    pub params: fn(&mut SchemaGenerator) -> Schema,
    pub result: fn(&mut SchemaGenerator) -> Schema,
}

impl MethodInfo {
    /// The first line of the doc.
    pub fn summary(&self) -> &'static str {
        self.doc
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty())
            .unwrap_or("")
    }
}

/// The public methods (`POST /api/v1/` envelope and `POST /v1/<method>`).
#[macro_export]
macro_rules! public_methods {
    ($cb:ident) => {
        $cb! {
            /// Create a project, optionally with instances (one transaction, one create_instances task).
            ProjectCreate project_create "project.create" Owner Write ($crate::params::ProjectCreate) -> ($crate::params::ProjectCreated);
            /// A project by name.
            ProjectGet project_get "project.get" Owner Read ($crate::params::ProjectRef) -> ($crate::model::Project);
            /// The caller's projects.
            ProjectList project_list "project.list" Owner Read ($crate::params::OwnerList) -> ($crate::params::Page<$crate::model::Project>);
            /// Delete a project; live instances are destroyed first by a delete_project task.
            ProjectDelete project_delete "project.delete" Owner Write ($crate::params::ProjectRef) -> ($crate::params::TaskQueued);
            /// Instances of a project (all statuses unless filtered).
            ProjectListInstances project_list_instances "project.listInstances" Owner Read ($crate::params::ProjectListInstances) -> ($crate::params::Page<$crate::model::Instance>);
            /// A task by id.
            TaskGet task_get "task.get" Owner Read ($crate::params::TaskRef) -> ($crate::model::Task);
            /// Tasks of a project.
            TaskList task_list "task.list" Owner Read ($crate::params::TaskList) -> ($crate::params::Page<$crate::model::Task>);
            /// Stop a pending or running task (its workflow destroys what it made).
            TaskTerminate task_terminate "task.terminate" Owner Write ($crate::params::TaskRef) -> ($crate::model::Task);
            /// Apply a legal task status transition.
            TaskUpdateStatus task_update_status "task.updateStatus" Admin Write ($crate::params::TaskUpdateStatus) -> ($crate::model::Task);
            /// Tasks acting on one instance.
            TaskListByInstance task_list_by_instance "task.listByInstance" Owner Read ($crate::params::TaskListByInstance) -> ($crate::params::Page<$crate::model::Task>);
            /// Create a user (owner) and its first API key (shown only in this answer).
            UserCreate user_create "user.create" Admin Write ($crate::params::UserCreate) -> ($crate::params::UserCreated);
            /// A user by username, or the list of users (a user sees only themself).
            UserGet user_get "user.get" Owner Read ($crate::params::UserGet) -> ($crate::params::UserGetResult);
            /// A user by id.
            UserGetId user_get_id "user.get.id" Owner Read ($crate::params::IdRef) -> ($crate::model::User);
            /// Delete a user and revoke its keys.
            UserDelete user_delete "user.delete" Admin Write ($crate::params::IdRef) -> (());
            /// Store an SSH public key for instances.
            SshKeyCreate sshkey_create "sshkey.create" Owner Write ($crate::params::SshKeyCreate) -> ($crate::model::SshKey);
            /// The caller's SSH keys as a bare array, the original's shape (its Go client decodes `[]SSHKey`). Pages with `limit` and `cursor`: the next page's cursor is the last key's `ID`; a page shorter than `limit` is the last.
            SshKeyList sshkey_list "sshkey.list" Owner Read ($crate::params::OwnerList) -> (Vec<$crate::model::SshKey>);
            /// Delete an SSH key by name.
            SshKeyDelete sshkey_delete "sshkey.delete" Owner Write ($crate::params::SshKeyDelete) -> (());
            /// Create an API key (the key is shown only in this answer).
            ApiKeyCreate apikey_create "apikey.create" Owner Write ($crate::params::ApiKeyCreate) -> ($crate::params::ApiKeyCreated);
            /// The caller's API keys (without the keys).
            ApiKeyList apikey_list "apikey.list" Owner Read ($crate::params::OwnerList) -> ($crate::params::Page<$crate::model::ApiKey>);
            /// Revoke an API key.
            ApiKeyRevoke apikey_revoke "apikey.revoke" Owner Write ($crate::params::IdRef) -> (());
            /// Create instances in existing projects (one task per project).
            InstanceCreate instance_create "instance.create" Owner Write ($crate::params::InstanceCreate) -> ($crate::params::InstancesCreated);
            /// Instances (terminated ones only with include_deleted).
            InstanceList instance_list "instance.list" Owner Read ($crate::params::InstanceList) -> ($crate::params::Page<$crate::model::Instance>);
            /// An instance by id.
            InstanceGet instance_get "instance.get" Owner Read ($crate::params::InstanceGet) -> ($crate::model::Instance);
            /// Terminate instances of a project (one terminate_instances task).
            InstanceTerminate instance_terminate "instance.terminate" Owner Write ($crate::params::InstanceTerminate) -> ($crate::params::TaskQueued);
            /// Public IPs of instances.
            InstancePublicIps instance_public_ips "instance.publicIps" Owner Read ($crate::params::InstanceList) -> ($crate::params::PublicIps);
            /// The caller's events (status changes, provider steps, API calls), oldest first; `wait_ms` long-polls for the next.
            EventList event_list "event.list" Owner Read ($crate::events::EventList) -> ($crate::params::Page<$crate::events::Event>);
            /// An owner's quotas and what it uses (an owner sees its own).
            QuotaGet quota_get "quota.get" Owner Read ($crate::params::QuotaGet) -> ($crate::params::QuotaUsage);
            /// Override an owner's quotas (a null limit goes back to the deployment's default).
            QuotaSet quota_set "quota.set" Admin Write ($crate::params::QuotaSet) -> ($crate::params::QuotaUsage);
            /// Create a webhook: which events go to which URL, signed with the secret of the answer (shown only there).
            WebhookCreate webhook_create "webhook.create" Owner Write ($crate::webhooks::WebhookCreate) -> ($crate::webhooks::WebhookCreated);
            /// The caller's webhooks (never their secrets).
            WebhookList webhook_list "webhook.list" Owner Read ($crate::params::OwnerList) -> ($crate::params::Page<$crate::webhooks::Webhook>);
            /// Delete a webhook; its pending deliveries fail.
            WebhookDelete webhook_delete "webhook.delete" Owner Write ($crate::webhooks::WebhookRef) -> (());
            /// Queue a `ping` message to the webhook, delivered like any event.
            WebhookTest webhook_test "webhook.test" Owner Write ($crate::webhooks::WebhookRef) -> ($crate::webhooks::WebhookTested);
            /// A webhook's deliveries: status, attempts, last HTTP status and error.
            WebhookDeliveries webhook_deliveries "webhook.deliveries" Owner Read ($crate::webhooks::WebhookDeliveries) -> ($crate::params::Page<$crate::webhooks::WebhookDelivery>);
            /// Same as instance.list (the original's all-metadata).
            InstanceMetadata instance_metadata "instance.metadata" Owner Read ($crate::params::InstanceList) -> ($crate::params::Page<$crate::model::Instance>);
        }
    };
}

/// The internal methods (`POST /internal/v1/<method>`, the workflows only), all idempotent.
#[macro_export]
macro_rules! internal_methods {
    ($cb:ident) => {
        $cb! {
            /// pending → running for this invocation; the task, its project, the deployment and the task's instances cut into chunks.
            TaskClaim task_claim "task.claim" Internal Write ($crate::internal::TaskClaim) -> ($crate::internal::ClaimedTask);
            /// One chunk of a task planned: each distinct instance request once and the instances (referring to their request by index).
            TaskChunk task_chunk "task.chunk" Internal Read ($crate::internal::TaskChunk) -> ($crate::internal::ChunkPlan);
            /// Where a chunk's instances stand: the task's status, those still waiting for their machine, the failed ones, counts by status.
            TaskProgress task_progress "task.progress" Internal Read ($crate::internal::TaskProgress) -> ($crate::internal::Progress);
            /// Every instance of the task that may legally go to a status does, in one transaction.
            TaskTransitionAll task_transition_all "task.transitionAll" Internal Write ($crate::internal::TaskTransitionAll) -> ($crate::internal::TransitionsCounted);
            /// Which of these instances may still have a machine (the reconcile sweep).
            InstanceLive instance_live "instance.live" Internal Read ($crate::internal::InstanceLive) -> ($crate::internal::LiveInstances);
            /// Record what the reconcile sweep destroyed.
            ReconcileRecord reconcile_record "reconcile.record" Internal Write ($crate::internal::ReconcileRecord) -> (());
            /// Delete events past the retention.
            EventPurge event_purge "event.purge" Internal Write ($crate::internal::EventPurge) -> ($crate::internal::Purged);
            /// This deployment's identity and public URL.
            DeploymentGet deployment_get "deployment.get" Internal Read ($crate::internal::DeploymentGet) -> ($crate::internal::Deployment);
            /// Apply a legal instance transition (same status: no-op; illegal: 409 `illegal_transition`).
            InstanceTransition instance_transition "instance.transition" Internal Write ($crate::internal::TaskInstanceTransition) -> ($crate::model::Instance);
            /// Many transitions of one task in one transaction, each with its step event; refused ones reported per item with a typed reason.
            InstanceTransitionBatch instance_transition_batch "instance.transitionBatch" Internal Write ($crate::internal::InstanceTransitionBatch) -> ($crate::internal::TransitionsApplied);
            /// Append a step event (a repeated event_key is a no-op).
            TaskEvent task_event "task.event" Internal Write ($crate::internal::TaskEventRecord) -> ($crate::internal::EventRecorded);
            /// Terminal task transition with a result summary.
            TaskFinish task_finish "task.finish" Internal Write ($crate::internal::TaskFinish) -> ($crate::model::Task);
            /// A webhook's pending deliveries in (after, through], oldest first, with their bodies.
            WebhookPending webhook_pending "webhook.pending" Internal Read ($crate::webhooks::WebhookPending) -> ($crate::webhooks::PendingDeliveries);
            /// Where a webhook sends and its signing secret: for the delivery step only, which never journals it.
            WebhookEndpointGet webhook_endpoint "webhook.endpoint" Internal Read ($crate::webhooks::WebhookEndpointGet) -> ($crate::webhooks::WebhookEndpoint);
            /// How deliveries went (a finished delivery never changes again).
            WebhookRecord webhook_record "webhook.record" Internal Write ($crate::webhooks::WebhookRecord) -> (());
        }
    };
}

macro_rules! markers {
    ($($(#[doc = $doc:literal])* $m:ident $f:ident $name:literal $access:ident $mode:ident ($p:ty) -> ($r:ty);)*) => {
        $(
            $(#[doc = $doc])*
            pub struct $m;
            impl Method for $m {
                const NAME: &'static str = $name;
                const ACCESS: Access = Access::$access;
                const MODE: Mode = Mode::$mode;
                const DOC: &'static str = concat!($($doc, "\n"),*);
                type Params = $p;
                type Result = $r;
            }
        )*

        /// The methods of this table, in declaration order.
        pub const METHODS: &[MethodInfo] = &[$(MethodInfo {
            name: $name,
            access: Access::$access,
            mode: Mode::$mode,
            doc: concat!($($doc, "\n"),*),
            params: |g| g.subschema_for::<$p>(),
            result: |g| g.subschema_for::<$r>(),
        }),*];
    };
}

/// Public methods as types (`public::ProjectCreate::NAME` …) and their list.
pub mod public {
    use super::*;
    crate::public_methods!(markers);
}

/// Internal methods as types and their list.
pub mod internal {
    use super::*;
    crate::internal_methods!(markers);
}

/// A public method by name.
pub fn public(name: &str) -> Option<&'static MethodInfo> {
    public::METHODS.iter().find(|m| m.name == name)
}

/// An internal method by name.
pub fn internal(name: &str) -> Option<&'static MethodInfo> {
    internal::METHODS.iter().find(|m| m.name == name)
}
