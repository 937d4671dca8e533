//! The provider trait: what workflows need from a cloud, in provider-neutral terms. A second
//! provider (Linode, Vultr, AWS) implements it; the workflows do not change.

use std::collections::HashSet;

use async_trait::async_trait;

use crate::error::Result;
use crate::model::{Machine, MachineBatch, MachineSpec, Volume, VolumeSpec};

/// Every method is safe to call again after a crash or a retryable error: creation is keyed by
/// the instance tag (see [`crate::tags`]), deletion of something already gone succeeds.
#[async_trait]
pub trait Provider: Send + Sync {
    /// Short provider name, as stored in `instances.provider` (e.g. "digitalocean").
    fn kind(&self) -> &'static str;

    /// Most members of one [`MachineBatch`] (DigitalOcean: 10, its multi-create limit).
    fn max_batch(&self) -> usize;

    /// Ensures one machine per batch member: one look-up of the project finds the members whose
    /// machine exists (by instance tag, or by project tag + name if it is untagged); the others
    /// are created, each carrying its instance tag. Never creates two machines for one
    /// instance; duplicates found (from an earlier race) are destroyed, the oldest kept. The
    /// result follows the order of `batch.members`.
    async fn ensure_machines(&self, batch: &MachineBatch) -> Result<Vec<Machine>>;

    /// [`Provider::ensure_machines`] for a single machine.
    async fn ensure_machine(&self, spec: &MachineSpec) -> Result<Machine> {
        let mut v = self.ensure_machines(&spec.clone().into()).await?;
        Ok(v.remove(0))
    }

    /// A machine by its provider id; `None` if it no longer exists.
    async fn get_machine(&self, provider_ref: &str) -> Result<Option<Machine>>;

    /// The machine of an instance, if one exists (by instance tag).
    async fn find_machine(&self, instance_id: &str) -> Result<Option<Machine>>;

    /// Every machine of a project, in as few calls as the provider allows (one tag list,
    /// paginated). Used to poll a whole project's boot progress.
    async fn list_project(&self, project_id: &str) -> Result<Vec<Machine>>;

    /// Destroys the machine of an instance (by tag). Ok if there is none.
    async fn delete_machine(&self, instance_id: &str) -> Result<()>;

    /// Destroys every machine of a project (by tag). Ok if there are none.
    async fn delete_project(&self, project_id: &str) -> Result<()>;

    /// Ensures a volume (by name in its region); created tagged with its instance.
    async fn ensure_volume(&self, spec: &VolumeSpec) -> Result<Volume>;

    /// Attaches a volume to a machine; Ok if it is already attached there. The provider may
    /// refuse volumes from another region (terminal error).
    async fn attach_volume(&self, volume_ref: &str, machine_ref: &str) -> Result<()>;

    /// Detaches (if needed) and deletes the volumes of an instance. Ok if there are none.
    async fn delete_volumes(&self, instance_id: &str) -> Result<()>;

    /// Talis-tagged machines whose instance is not in `live_instances`, or that carry no
    /// instance tag at all: what a clean-up sweep should destroy.
    async fn list_orphans(&self, live_instances: &HashSet<String>) -> Result<Vec<Machine>>;
}
