//! Internal RPC of the workflows: `POST /internal/v1/<method>` with `Authorization: Bearer
//! <internal_secret>`, answered with the same envelope as the public routes. Every method is
//! idempotent (Restate may replay a call).
//!
//! | method | params | result |
//! |---|---|---|
//! | `task.claim` | [`TaskClaim`] | [`ClaimedTask`] (`claimed: false` when the task already finished) |
//! | `instance.transition` | [`InstanceTransition`] | [`Instance`](crate::Instance) (illegal → 409) |
//! | `instance.transitionBatch` | [`InstanceTransitionBatch`] | [`TransitionsApplied`] (refusals per item) |
//! | `task.event` | [`TaskEventRecord`] | [`EventRecorded`] |
//! | `task.finish` | [`TaskFinish`] | [`Task`](crate::Task) |
//!
//! A claim lists each distinct instance request once (`ClaimedTask::requests`: region, size,
//! image, tags, volumes, SSH keys, provisioning script) and every instance refers to its request
//! by index (`ClaimedInstance::request`), so 10 000 instances sharing a 60 KiB script make an
//! answer of a few MB, not 600 MB. The phone-home URL of each claimed instance is
//! `ClaimedInstance::phone_home_url`; it is built by [`phone_home_url`] from `public_url` and the
//! internal secret.

pub use talis_core::auth::{phone_home_token, phone_home_url};
pub use talis_core::params::{
    ClaimedInstance, ClaimedRequest, ClaimedTask, EventRecorded, InstanceTransition,
    InstanceTransitionBatch, TaskClaim, TaskEventRecord, TaskFinish, TransitionResult,
    TransitionsApplied,
};
pub use talis_core::service::INTERNAL_METHODS as METHODS;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// What the component forwards to `{restate_ingress_url}/TaskWorkflow/{task_id}/phone_home`
/// when an instance phones home.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PhoneHome {
    pub instance_id: i64,
    /// The reporting machine, as posted. One script serves a whole multi-create batch (and so
    /// carries one instance's URL), so the workflow matches the machine, not the URL's instance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub droplet_id: Option<serde_json::Value>,
    pub public_ip: String,
    pub status: String,
}

/// Body a machine (or the fake cloud) posts to `/v1/phone-home/{instance_id}?token=…`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct PhoneHomeBody {
    pub droplet_id: Option<serde_json::Value>,
    pub public_ip: String,
    pub status: String,
}
