//! [`Provider`] for DigitalOcean: idempotency by tags.
//!
//! A droplet belongs to an instance when it carries `talis-instance-<id>`. A batch costs one
//! look-up of the whole project (by project tag, paginated) plus one create per missing
//! machine, each created with all its tags. A project droplet with a member's name but no
//! instance tag (left by an older multi-create, or by hand) is adopted and tagged rather than
//! duplicated.

use std::collections::{HashMap, HashSet};

use async_trait::async_trait;

use super::api::{self, Droplet, DropletCreate, VolumeCreate};
use super::{DigitalOcean, MAX_BATCH, backoff};
use crate::error::{Error, Result};
use crate::model::{Machine, MachineBatch, MachineStatus, Volume, VolumeSpec};
use crate::provider::Provider;
use crate::tags;

impl DigitalOcean {
    /// Retries a whole look-up-then-act `op` on retryable errors: the look-up makes a repeat
    /// safe even when a previous attempt's answer was lost.
    async fn with_ensure_retries<T, F, Fut>(&self, what: &str, mut op: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let attempts = self.config.ensure_attempts.max(1);
        let mut attempt = 0;
        loop {
            attempt += 1;
            match op().await {
                Ok(v) => return Ok(v),
                // A long rate-limit wait is the caller's to sleep (durably), not ours.
                Err(e)
                    if e.retry_after()
                        .is_some_and(|w| w > self.config.max_rate_limit_wait) =>
                {
                    return Err(e);
                }
                Err(e) if e.is_retryable() && attempt < attempts => {
                    let ambiguous = matches!(e, Error::Timeout | Error::Transport(_))
                        || e.status().is_some_and(|s| s >= 500);
                    let mut wait = e
                        .retry_after()
                        .unwrap_or_else(|| backoff(self.config.backoff, attempt));
                    if ambiguous {
                        wait = wait.max(self.config.settle);
                    }
                    tracing::debug!(%e, ?wait, attempt, "{what}: retrying after a look-up");
                    tokio::time::sleep(wait).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn try_ensure_machines(&self, batch: &MachineBatch) -> Result<Vec<Machine>> {
        let existing = self
            .list_droplets(Some(&tags::project(&batch.project_id)))
            .await?;
        let mut found: HashMap<&str, Droplet> = HashMap::new();
        let mut missing = Vec::new();
        for m in &batch.members {
            let itag = tags::instance(&m.instance_id);
            let mut tagged: Vec<&Droplet> =
                existing.iter().filter(|d| d.tags.contains(&itag)).collect();
            tagged.sort_by_key(|d| d.id);
            if let Some((keep, extra)) = tagged.split_first() {
                // Two creates landed for one instance (e.g. one whose answer timed out while it
                // was still being processed): keep the oldest, destroy the rest.
                for d in extra {
                    tracing::warn!(droplet = d.id, tag = %itag, "destroying a duplicate droplet");
                    self.delete_droplet(d.id).await?;
                }
                found.insert(&m.instance_id, (*keep).clone());
                continue;
            }
            // Left untagged by a crash (or a lost answer) after create: adopt the oldest with
            // this name, destroy any other such leftover.
            let mut untagged: Vec<&Droplet> = existing
                .iter()
                .filter(|d| {
                    d.name == m.name && !d.tags.iter().any(|t| tags::instance_id(t).is_some())
                })
                .collect();
            untagged.sort_by_key(|d| d.id);
            match untagged.split_first() {
                Some((keep, extra)) => {
                    self.tag_droplets(&itag, &[keep.id]).await?;
                    for d in extra {
                        tracing::warn!(droplet = d.id, name = %m.name, "destroying a duplicate droplet");
                        self.delete_droplet(d.id).await?;
                    }
                    let mut d = (*keep).clone();
                    d.tags.push(itag);
                    found.insert(&m.instance_id, d);
                }
                None => missing.push(m),
            }
        }
        // Each missing machine is created on its own, carrying its instance tag from the start.
        // DigitalOcean's multi-create gives every droplet the same tags, so per-instance tags
        // would cost two more calls per droplet (create the tag, assign it): n single creates
        // are fewer calls than 1 multi-create + 2n tag calls, and leave no untagged window.
        for m in missing {
            let mut tags = batch.shared_tags();
            tags.push(tags::instance(&m.instance_id));
            let req = DropletCreate {
                name: Some(m.name.clone()),
                region: batch.region.clone(),
                size: batch.size.clone(),
                image: batch.image.clone(),
                ssh_keys: batch.ssh_keys.iter().map(|k| api::ssh_key_ref(k)).collect(),
                tags,
                user_data: batch.user_data.clone(),
                ..Default::default()
            };
            let d = self
                .create_droplets(&req)
                .await?
                .into_iter()
                .next()
                .ok_or_else(|| Error::Decode("create answered no droplet".into()))?;
            found.insert(&m.instance_id, d);
        }
        batch
            .members
            .iter()
            .map(|m| {
                found
                    .remove(m.instance_id.as_str())
                    .map(machine)
                    .ok_or_else(|| Error::Conflict(format!("no droplet for {}", m.instance_id)))
            })
            .collect()
    }

    async fn try_ensure_volume(&self, spec: &VolumeSpec) -> Result<Volume> {
        let existing = self
            .list_volumes(Some(&spec.name), Some(&spec.region))
            .await?;
        if let Some(v) = existing.into_iter().next() {
            return Ok(volume(v));
        }
        let v = self
            .create_volume(&VolumeCreate {
                name: spec.name.clone(),
                size_gigabytes: spec.size_gigabytes,
                region: spec.region.clone(),
                filesystem_type: spec.filesystem_type.clone(),
                tags: spec.tags(),
            })
            .await?;
        Ok(volume(v))
    }
}

#[async_trait]
impl Provider for DigitalOcean {
    fn kind(&self) -> &'static str {
        "digitalocean"
    }

    fn max_batch(&self) -> usize {
        MAX_BATCH
    }

    async fn ensure_machines(&self, batch: &MachineBatch) -> Result<Vec<Machine>> {
        batch.validate(MAX_BATCH)?;
        self.with_ensure_retries("ensure machines", || self.try_ensure_machines(batch))
            .await
    }

    async fn get_machine(&self, provider_ref: &str) -> Result<Option<Machine>> {
        let id: u64 = provider_ref
            .parse()
            .map_err(|_| Error::invalid("provider_ref", "not a droplet id"))?;
        Ok(self.get_droplet(id).await?.map(machine))
    }

    async fn find_machine(&self, instance_id: &str) -> Result<Option<Machine>> {
        let mut found = self
            .list_droplets(Some(&tags::instance(instance_id)))
            .await?;
        if found.len() > 1 {
            return Err(Error::Conflict(format!(
                "{} droplets carry the tag of instance {instance_id}",
                found.len()
            )));
        }
        Ok(found.pop().map(machine))
    }

    async fn list_project(&self, project_id: &str) -> Result<Vec<Machine>> {
        let ds = self.list_droplets(Some(&tags::project(project_id))).await?;
        Ok(ds.into_iter().map(machine).collect())
    }

    async fn delete_machine(&self, instance_id: &str) -> Result<()> {
        self.delete_droplets_by_tag(&tags::instance(instance_id))
            .await
    }

    async fn delete_project(&self, project_id: &str) -> Result<()> {
        self.delete_droplets_by_tag(&tags::project(project_id))
            .await
    }

    async fn ensure_volume(&self, spec: &VolumeSpec) -> Result<Volume> {
        spec.validate()?;
        self.with_ensure_retries("ensure volume", || self.try_ensure_volume(spec))
            .await
    }

    async fn attach_volume(&self, volume_ref: &str, machine_ref: &str) -> Result<()> {
        let droplet_id: u64 = machine_ref
            .parse()
            .map_err(|_| Error::invalid("machine_ref", "not a droplet id"))?;
        self.with_ensure_retries("attach volume", || async {
            let v = self
                .get_volume(volume_ref)
                .await?
                .ok_or_else(|| Error::invalid("volume_ref", format!("no volume {volume_ref}")))?;
            if v.droplet_ids.contains(&droplet_id) {
                return Ok(());
            }
            self.volume_action(volume_ref, "attach", droplet_id, &v.region.slug)
                .await
                .map(drop)
        })
        .await
    }

    async fn delete_volumes(&self, instance_id: &str) -> Result<()> {
        let itag = tags::instance(instance_id);
        self.with_ensure_retries("delete volumes", || async {
            let all = self.list_volumes(None, None).await?;
            for v in all.into_iter().filter(|v| v.tags.contains(&itag)) {
                for d in &v.droplet_ids {
                    self.volume_action(&v.id, "detach", *d, &v.region.slug)
                        .await?;
                }
                self.delete_volume(&v.id).await?;
            }
            Ok(())
        })
        .await
    }

    async fn list_orphans(&self, live_instances: &HashSet<String>) -> Result<Vec<Machine>> {
        let all = self.list_droplets(Some(tags::TALIS)).await?;
        Ok(all
            .into_iter()
            .map(machine)
            .filter(|m| {
                m.instance_id
                    .as_ref()
                    .is_none_or(|id| !live_instances.contains(id))
            })
            .collect())
    }
}

fn machine(d: Droplet) -> Machine {
    let status = match d.status.as_str() {
        "new" => MachineStatus::New,
        "active" => MachineStatus::Active,
        "off" => MachineStatus::Off,
        "archive" => MachineStatus::Archived,
        _ => MachineStatus::Unknown,
    };
    Machine {
        provider_ref: d.id.to_string(),
        public_ip: d.public_ipv4().map(str::to_string),
        instance_id: d
            .tags
            .iter()
            .find_map(|t| tags::instance_id(t))
            .map(str::to_string),
        project_id: d
            .tags
            .iter()
            .find_map(|t| tags::project_id(t))
            .map(str::to_string),
        name: d.name,
        status,
        region: d.region.slug,
        size: d.size_slug,
        tags: d.tags,
        volume_ids: d.volume_ids,
    }
}

fn volume(v: api::Volume) -> Volume {
    Volume {
        provider_ref: v.id,
        name: v.name,
        region: v.region.slug,
        size_gigabytes: v.size_gigabytes,
        attached_to: v.droplet_ids.iter().map(u64::to_string).collect(),
        tags: v.tags,
    }
}
