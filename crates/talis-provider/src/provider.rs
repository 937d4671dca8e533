//! The provider trait: what workflows need from a cloud, in provider-neutral terms. A second
//! provider (Linode, Vultr, AWS) implements it; the workflows do not change.

use async_trait::async_trait;

use crate::error::Result;
use crate::model::{Ensured, Machine, MachineBatch, MachineSpec, Volume, VolumeSpec};

/// Called with a batch's position and machines as soon as the batch is ensured.
pub type OnBatch<'a> = dyn Fn(usize, &[Ensured]) + Send + Sync + 'a;

/// What the caller of an ensure round knows before it starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RoundStart {
    /// Some machines may exist already (an earlier attempt may have made them): look up first.
    LookUp,
    /// None can exist: the caller planned these instances without machines and has not tried
    /// to make them before, in this process, since. The round creates at once, saving one
    /// look-up per round (one call of a rate-limited budget); a retry inside the round still
    /// looks up first, as always.
    New,
    /// Another process may have started this round and died (a retried workflow step): its
    /// creates may still be landing. The round waits the provider's settle time (the same as
    /// after an ambiguous failure of its own), then looks up, so it finds them instead of
    /// making them again.
    Resumed,
}

/// Every method is safe to call again after a crash or a retryable error: creation is keyed by
/// the machine name within the project (see [`crate::tags::machine_name`]) and the volume name
/// within the region; deletion of something already gone succeeds.
#[async_trait]
pub trait Provider: Send + Sync {
    /// Short provider name, as stored in `instances.provider` (e.g. "digitalocean").
    fn kind(&self) -> &'static str;

    /// Most members of one [`MachineBatch`] (DigitalOcean: 10, its multi-create limit).
    fn max_batch(&self) -> usize;

    /// One ensure round for batches of one project: one look-up of the project (and, if any
    /// member has volumes, of the volumes) finds what exists by name; the rest is created —
    /// machines without volumes in one call per batch, machines with volumes one by one after
    /// their volumes. Never creates two machines for one instance; duplicates found (from an
    /// earlier race) are destroyed, the oldest kept. Retryable failures are retried after a new
    /// look-up. The outer error is for the round (e.g. invalid input); the inner ones, in the
    /// order of `batches`, for each batch (terminal, or a long rate limit to wait out).
    async fn ensure_round(&self, batches: &[MachineBatch]) -> Result<Vec<Result<Vec<Ensured>>>> {
        self.ensure_round_with(batches, RoundStart::LookUp, &|_, _| {})
            .await
    }

    /// [`Provider::ensure_round`] starting as `start` says, calling `on_batch(position,
    /// machines)` as soon as each batch is ensured (to record progress before the whole round
    /// is done).
    async fn ensure_round_with(
        &self,
        batches: &[MachineBatch],
        start: RoundStart,
        on_batch: &OnBatch<'_>,
    ) -> Result<Vec<Result<Vec<Ensured>>>>;

    /// [`Provider::ensure_round`] for one batch; the machines follow `batch.members`.
    async fn ensure_machines(&self, batch: &MachineBatch) -> Result<Vec<Machine>> {
        let mut r = self.ensure_round(std::slice::from_ref(batch)).await?;
        Ok(r.remove(0)?.into_iter().map(|e| e.machine).collect())
    }

    /// [`Provider::ensure_machines`] for a single machine.
    async fn ensure_machine(&self, spec: &MachineSpec) -> Result<Machine> {
        let mut v = self.ensure_machines(&spec.clone().into()).await?;
        Ok(v.remove(0))
    }

    /// A machine by its provider id; `None` if it no longer exists.
    async fn get_machine(&self, provider_ref: &str) -> Result<Option<Machine>>;

    /// The machine of an instance, if one exists (by name within the project).
    async fn find_machine(&self, project_id: &str, instance_id: &str) -> Result<Option<Machine>>;

    /// Every machine of a project, in as few calls as the provider allows (one tag list,
    /// paginated). Used to poll a whole project's boot progress.
    async fn list_project(&self, project_id: &str) -> Result<Vec<Machine>>;

    /// Destroys the machines of these instances (one look-up of the project, then one delete per
    /// machine). Ok for those that have none.
    async fn delete_machines(&self, project_id: &str, instance_ids: &[String]) -> Result<()>;

    /// Destroys one machine by its provider id. Ok if it is already gone.
    async fn delete_machine(&self, provider_ref: &str) -> Result<()>;

    /// Destroys every machine and volume of a project (by tag). Ok if there are none.
    async fn delete_project(&self, project_id: &str) -> Result<()>;

    /// Ensures a volume (by name in its region); created tagged with its instance.
    async fn ensure_volume(&self, spec: &VolumeSpec) -> Result<Volume>;

    /// Attaches a volume to a machine; Ok if it is already attached there. The provider may
    /// refuse volumes from another region (terminal error).
    async fn attach_volume(&self, volume_ref: &str, machine_ref: &str) -> Result<()>;

    /// Detaches (if needed) and deletes the volumes of these instances (by instance tag, one
    /// look-up). Ok if there are none.
    async fn delete_volumes(&self, instance_ids: &[String]) -> Result<()>;

    /// Every machine carrying `tag` (one paginated list): a deployment's machines for the
    /// reconcile sweep, or one group of a large task for a verification pass.
    async fn list_tagged(&self, tag: &str) -> Result<Vec<Machine>>;
}
