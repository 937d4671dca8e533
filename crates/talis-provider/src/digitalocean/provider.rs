//! [`Provider`] for DigitalOcean: idempotency by name.
//!
//! A droplet belongs to an instance when it carries the project tag and the name
//! `<name>.i<instance id>` ([`tags::machine_name`]). An ensure round costs one look-up of its
//! group (by chunk tag, 200 per page; none for a [`RoundStart::New`] round), then one
//! multi-create (≤ 10 `names`, shared tags) per batch of machines without volumes; a machine
//! with volumes costs one create per missing volume (after one look-up of the volumes) plus its
//! own create, which attaches them.

use std::collections::{HashMap, HashSet};

use async_trait::async_trait;
use futures::{StreamExt, stream};

use super::api::{self, Droplet, DropletCreate, VolumeCreate};
use super::{DigitalOcean, MAX_BATCH, backoff};
use crate::error::{Error, Result};
use crate::model::{
    BatchMember, Ensured, Machine, MachineBatch, MachineStatus, Volume, VolumeSpec,
};
use crate::provider::{OnBatch, Provider, RoundStart};
use crate::tags;

/// Batches of one round created concurrently (each is one or a few calls).
const ROUND_FAN_OUT: usize = 10;

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
                Err(e) if self.gives_up(&e, attempt, attempts) => return Err(e),
                Err(e) => {
                    let wait = self.retry_wait(&e, attempt);
                    if matches!(e, Error::RateLimited { .. }) {
                        self.rate_limit_waited(wait);
                    }
                    tracing::debug!(%e, ?wait, attempt, "{what}: retrying after a look-up");
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }

    /// Whether `ensure_*` stops at `e`: terminal, out of attempts, or a rate-limit wait longer
    /// than the client holds (the caller's to sleep, durably).
    fn gives_up(&self, e: &Error, attempt: u32, attempts: u32) -> bool {
        !e.is_retryable()
            || attempt >= attempts
            || e.retry_after()
                .is_some_and(|w| w > self.config.max_rate_limit_wait)
    }

    /// Pause before the next look-up; after an ambiguous failure (timeout, broken connection,
    /// 5xx) at least `settle`, so a create still in flight lands first and is found.
    fn retry_wait(&self, e: &Error, attempt: u32) -> std::time::Duration {
        let ambiguous = matches!(e, Error::Timeout | Error::Transport(_))
            || e.status().is_some_and(|s| s >= 500);
        let wait = e
            .retry_after()
            .unwrap_or_else(|| backoff(self.config.backoff, attempt));
        if ambiguous {
            wait.max(self.config.settle)
        } else {
            wait
        }
    }

    async fn round(
        &self,
        batches: &[MachineBatch],
        start: RoundStart,
        on_batch: &OnBatch<'_>,
    ) -> Result<Vec<Result<Vec<Ensured>>>> {
        let (project, lookup_tag) = match batches.first() {
            Some(b) => (b.project_id.clone(), b.lookup_tag()),
            None => return Ok(Vec::new()),
        };
        for b in batches {
            b.validate(MAX_BATCH)?;
            if b.project_id != project {
                return Err(Error::invalid(
                    "project_id",
                    "one ensure round is for one project",
                ));
            }
            if b.lookup_tag() != lookup_tag {
                return Err(Error::invalid(
                    "group_tag",
                    "one ensure round is for one group",
                ));
            }
        }
        let mut names = HashSet::new();
        if let Some(m) = batches
            .iter()
            .flat_map(|b| &b.members)
            .find(|m| !names.insert(m.machine_name()))
        {
            return Err(Error::invalid(
                "instance_id",
                format!("{:?} twice in one round", m.instance_id),
            ));
        }
        if start == RoundStart::Resumed {
            tracing::info!(
                settle = ?self.config.settle,
                "resuming an ensure round another attempt may have started: letting its creates land first"
            );
            tokio::time::sleep(self.config.settle).await;
        }
        let attempts = self.config.ensure_attempts.max(1);
        let mut out: Vec<Option<Result<Vec<Ensured>>>> = batches.iter().map(|_| None).collect();
        for attempt in 1.. {
            let todo: Vec<usize> = (0..batches.len()).filter(|&i| out[i].is_none()).collect();
            let mut retry: Option<Error> = None;
            let listed = if attempt == 1 && start == RoundStart::New {
                Ok((Vec::new(), Vec::new()))
            } else {
                self.look_up(&lookup_tag, todo.iter().map(|&i| &batches[i]))
                    .await
            };
            match listed {
                Err(e) => retry = Some(e),
                Ok((droplets, volumes)) => {
                    let results: Vec<(usize, Result<Vec<Ensured>>)> = stream::iter(todo.clone())
                        .map(|i| {
                            let (d, v) = (&droplets, &volumes);
                            async move {
                                let r = self.ensure_listed(&batches[i], d, v).await;
                                if let Ok(machines) = &r {
                                    on_batch(i, machines);
                                }
                                (i, r)
                            }
                        })
                        .buffer_unordered(ROUND_FAN_OUT)
                        .collect()
                        .await;
                    for (i, r) in results {
                        match r {
                            Err(e) if !self.gives_up(&e, attempt, attempts) => {
                                retry = Some(e);
                            }
                            r => out[i] = Some(r),
                        }
                    }
                }
            }
            let Some(e) = retry else { break };
            if self.gives_up(&e, attempt, attempts) {
                for o in out.iter_mut().filter(|o| o.is_none()) {
                    *o = Some(Err(e.clone()));
                }
                break;
            }
            let wait = self.retry_wait(&e, attempt);
            tracing::debug!(%e, ?wait, attempt, "ensure round: retrying after a look-up");
            tokio::time::sleep(wait).await;
        }
        Ok(out
            .into_iter()
            .map(|o| o.unwrap_or_else(|| Err(Error::Conflict("batch not ensured".into()))))
            .collect())
    }

    /// The droplets of the round's group (its chunk, else its project: see
    /// [`MachineBatch::lookup_tag`]) and, if any member has volumes, the account's volumes.
    async fn look_up(
        &self,
        lookup_tag: &str,
        batches: impl Iterator<Item = &MachineBatch>,
    ) -> Result<(Vec<Droplet>, Vec<api::Volume>)> {
        let with_volumes = batches
            .flat_map(|b| &b.members)
            .any(|m| !m.volumes.is_empty());
        let droplets = self.list_droplets(Some(lookup_tag)).await?;
        let volumes = if with_volumes {
            self.list_volumes(None, None).await?
        } else {
            Vec::new()
        };
        Ok((droplets, volumes))
    }

    /// Ensures one batch against the round's look-up.
    async fn ensure_listed(
        &self,
        batch: &MachineBatch,
        droplets: &[Droplet],
        volumes: &[api::Volume],
    ) -> Result<Vec<Ensured>> {
        let mut found: HashMap<String, Droplet> = HashMap::new();
        let mut missing: Vec<&BatchMember> = Vec::new();
        for m in &batch.members {
            let name = m.machine_name();
            // By name; a droplet made by an older client (plain name, instance tag) counts too.
            let itag = tags::instance(&m.instance_id);
            let mut same: Vec<&Droplet> = droplets
                .iter()
                .filter(|d| d.name == name || d.tags.contains(&itag))
                .collect();
            same.sort_by_key(|d| d.id);
            match same.split_first() {
                Some((keep, extra)) => {
                    // Two creates landed for one instance (e.g. one whose answer timed out while
                    // it was still being processed): keep the oldest, destroy the rest.
                    for d in extra {
                        tracing::warn!(droplet = d.id, %name, "destroying a duplicate droplet");
                        self.delete_droplet(d.id).await?;
                    }
                    found.insert(name, (*keep).clone());
                }
                None => missing.push(m),
            }
        }
        let (bare, with_volumes): (Vec<&BatchMember>, Vec<&BatchMember>) =
            missing.into_iter().partition(|m| m.volumes.is_empty());
        // One call for every machine without volumes (the batch is ≤ 10: DO's multi-create).
        if !bare.is_empty() {
            let names: Vec<String> = bare.iter().map(|m| m.machine_name()).collect();
            for d in self
                .create_droplets(&create_request(batch, names, Vec::new()))
                .await?
            {
                found.insert(d.name.clone(), d);
            }
        }
        // Machines with volumes: volumes first, then one create that attaches them.
        let mut made: HashMap<String, Vec<api::Volume>> = HashMap::new();
        let created = futures::future::join_all(
            with_volumes
                .iter()
                .map(|m| self.create_with_volumes(batch, m, volumes)),
        )
        .await;
        for r in created {
            let (d, vols) = r?;
            made.insert(d.name.clone(), vols);
            found.insert(d.name.clone(), d);
        }
        let mut out = Vec::with_capacity(batch.members.len());
        for m in &batch.members {
            let name = m.machine_name();
            let d = found
                .remove(&name)
                .ok_or_else(|| Error::Conflict(format!("no droplet named {name}")))?;
            let vols = match made.remove(&name) {
                Some(v) => v,
                // Found from an earlier round: its volumes were attached at its creation; one
                // missing (created by hand, or detached) is made and attached now.
                None if !m.volumes.is_empty() => {
                    let vols = self.ensure_volumes_listed(&m.volumes, volumes).await?;
                    for v in vols.iter().filter(|v| !v.droplet_ids.contains(&d.id)) {
                        self.volume_action(&v.id, "attach", d.id, &v.region.slug)
                            .await?;
                    }
                    vols
                }
                None => Vec::new(),
            };
            out.push(Ensured {
                machine: machine(d),
                volumes: vols.into_iter().map(volume).collect(),
            });
        }
        Ok(out)
    }

    /// A machine's volumes (found or created), then the machine, created with them attached.
    async fn create_with_volumes(
        &self,
        batch: &MachineBatch,
        m: &BatchMember,
        listed: &[api::Volume],
    ) -> Result<(Droplet, Vec<api::Volume>)> {
        let mut vols = self.ensure_volumes_listed(&m.volumes, listed).await?;
        let ids = vols.iter().map(|v| v.id.clone()).collect();
        let d = self
            .create_droplets(&create_request(batch, vec![m.machine_name()], ids))
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| Error::Decode("create answered no droplet".into()))?;
        // Attached by the create (the volume objects predate it).
        for v in &mut vols {
            v.droplet_ids = vec![d.id];
        }
        Ok((d, vols))
    }

    /// Volumes by name in their region, from the round's look-up; the missing ones created.
    async fn ensure_volumes_listed(
        &self,
        specs: &[VolumeSpec],
        listed: &[api::Volume],
    ) -> Result<Vec<api::Volume>> {
        let mut out = Vec::with_capacity(specs.len());
        for s in specs {
            let v = match listed
                .iter()
                .find(|v| v.name == s.name && v.region.slug == s.region)
            {
                Some(v) => v.clone(),
                None => match self.create_volume(&volume_create(s)).await {
                    Ok(v) => v,
                    // Made since the look-up (a create that was still in flight): use it.
                    Err(e) if e.status() == Some(409) => self
                        .list_volumes(Some(&s.name), Some(&s.region))
                        .await?
                        .into_iter()
                        .next()
                        .ok_or(e)?,
                    Err(e) => return Err(e),
                },
            };
            out.push(v);
        }
        Ok(out)
    }

    /// Detaches (if needed) and deletes every volume `doomed` picks (one look-up).
    async fn delete_volumes_where(
        &self,
        what: &str,
        doomed: impl Fn(&api::Volume) -> bool,
    ) -> Result<()> {
        self.with_ensure_retries(what, || async {
            let doomed: Vec<api::Volume> = self
                .list_volumes(None, None)
                .await?
                .into_iter()
                .filter(|v| doomed(v))
                .collect();
            let results: Vec<Result<()>> = stream::iter(doomed)
                .map(|v| async move {
                    for d in &v.droplet_ids {
                        self.volume_action(&v.id, "detach", *d, &v.region.slug)
                            .await?;
                    }
                    self.delete_volume(&v.id).await
                })
                .buffer_unordered(ROUND_FAN_OUT)
                .collect()
                .await;
            results.into_iter().collect()
        })
        .await
    }

    async fn try_ensure_volume(&self, spec: &VolumeSpec) -> Result<Volume> {
        let existing = self
            .list_volumes(Some(&spec.name), Some(&spec.region))
            .await?;
        if let Some(v) = existing.into_iter().next() {
            return Ok(volume(v));
        }
        let v = self.create_volume(&volume_create(spec)).await?;
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

    async fn ensure_round_with(
        &self,
        batches: &[MachineBatch],
        start: RoundStart,
        on_batch: &OnBatch<'_>,
    ) -> Result<Vec<Result<Vec<Ensured>>>> {
        self.round(batches, start, on_batch).await
    }

    async fn get_machine(&self, provider_ref: &str) -> Result<Option<Machine>> {
        let id: u64 = provider_ref
            .parse()
            .map_err(|_| Error::invalid("provider_ref", "not a droplet id"))?;
        Ok(self.get_droplet(id).await?.map(machine))
    }

    async fn find_machine(&self, project_id: &str, instance_id: &str) -> Result<Option<Machine>> {
        let mut found: Vec<Droplet> = self
            .list_droplets(Some(&tags::project(project_id)))
            .await?
            .into_iter()
            .filter(|d| machine(d.clone()).instance_id.as_deref() == Some(instance_id))
            .collect();
        if found.len() > 1 {
            return Err(Error::Conflict(format!(
                "{} droplets are named for instance {instance_id}",
                found.len()
            )));
        }
        Ok(found.pop().map(machine))
    }

    async fn list_project(&self, project_id: &str) -> Result<Vec<Machine>> {
        let ds = self.list_droplets(Some(&tags::project(project_id))).await?;
        Ok(ds.into_iter().map(machine).collect())
    }

    async fn delete_machines(&self, project_id: &str, instance_ids: &[String]) -> Result<()> {
        let ids: HashSet<&str> = instance_ids.iter().map(String::as_str).collect();
        self.with_ensure_retries("delete machines", || async {
            let doomed: Vec<u64> = self
                .list_droplets(Some(&tags::project(project_id)))
                .await?
                .into_iter()
                .map(machine)
                .filter(|m| m.instance_id.as_deref().is_some_and(|i| ids.contains(i)))
                .filter_map(|m| m.provider_ref.parse::<u64>().ok())
                .collect();
            let results: Vec<Result<()>> = stream::iter(doomed)
                .map(|id| self.delete_droplet(id))
                .buffer_unordered(ROUND_FAN_OUT)
                .collect()
                .await;
            results.into_iter().collect()
        })
        .await
    }

    async fn delete_machine(&self, provider_ref: &str) -> Result<()> {
        let id: u64 = provider_ref
            .parse()
            .map_err(|_| Error::invalid("provider_ref", "not a droplet id"))?;
        self.delete_droplet(id).await
    }

    async fn delete_project(&self, project_id: &str) -> Result<()> {
        let tag = tags::project(project_id);
        self.delete_droplets_by_tag(&tag).await?;
        self.delete_volumes_where("delete project volumes", |v| v.tags.contains(&tag))
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

    async fn delete_volumes(&self, instance_ids: &[String]) -> Result<()> {
        if instance_ids.is_empty() {
            return Ok(());
        }
        let itags: HashSet<String> = instance_ids.iter().map(|i| tags::instance(i)).collect();
        self.delete_volumes_where("delete volumes", |v| {
            v.tags.iter().any(|t| itags.contains(t))
        })
        .await
    }

    async fn list_tagged(&self, tag: &str) -> Result<Vec<Machine>> {
        if !tags::is_valid(tag) {
            return Err(Error::invalid("tag", format!("{tag:?} is not a valid tag")));
        }
        Ok(self
            .list_droplets(Some(tag))
            .await?
            .into_iter()
            .map(machine)
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
        instance_id: tags::instance_of_machine(&d.name)
            .or_else(|| d.tags.iter().find_map(|t| tags::instance_id(t)))
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

/// One create call: a single `name`, or up to 10 `names` sharing everything else.
fn create_request(batch: &MachineBatch, names: Vec<String>, volumes: Vec<String>) -> DropletCreate {
    let (name, names) = match <[String; 1]>::try_from(names) {
        Ok([one]) => (Some(one), None),
        Err(many) => (None, Some(many)),
    };
    DropletCreate {
        name,
        names,
        region: batch.region.clone(),
        size: batch.size.clone(),
        image: batch.image.clone(),
        ssh_keys: batch.ssh_keys.iter().map(|k| api::ssh_key_ref(k)).collect(),
        tags: batch.shared_tags(),
        user_data: batch.user_data.clone(),
        volumes,
    }
}

fn volume_create(s: &VolumeSpec) -> VolumeCreate {
    VolumeCreate {
        name: s.name.clone(),
        size_gigabytes: s.size_gigabytes,
        region: s.region.clone(),
        filesystem_type: s.filesystem_type.clone(),
        tags: s.tags(),
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
