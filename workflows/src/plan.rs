//! Pure planning of a task chunk, tested natively: what the chunk's plan holds (kept small,
//! because it is journaled), the provider keys and tags of Talis ids within this deployment, how
//! instances group into provider batches and rounds, and the script each batch runs.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use talis_api::cloudinit::{self, Mount};
use talis_api::internal::{ChunkPlan, ChunkRange};
use talis_api::{
    InstanceId, InstanceStatus, ProjectId, TaskAction, TaskId, TaskStatus, VolumeConfig,
};
use talis_provider::{BatchMember, MachineBatch, RoundStart, VolumeSpec};

/// The provider-side names of Talis ids in one deployment. Every key and tag carries the
/// deployment, so two deployments sharing a cloud account never see each other's machines:
/// projects are `<deployment>-<id>` (tag `talis-project-<deployment>-<id>`), instances
/// `<deployment>-<id>` (machines `<name>.i<deployment>-<id>`, volume tag
/// `talis-instance-<deployment>-<id>`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Keys {
    pub deployment: String,
}

impl Keys {
    /// The keys of a deployment ([`talis_api::rules::deployment_id`] says which ids are valid).
    pub fn new(deployment: &str) -> Result<Self, String> {
        talis_api::rules::deployment_id(deployment)?;
        Ok(Keys {
            deployment: deployment.to_owned(),
        })
    }

    pub fn project(&self, id: ProjectId) -> String {
        format!("{}-{id}", self.deployment)
    }

    pub fn instance(&self, id: InstanceId) -> String {
        format!("{}-{id}", self.deployment)
    }

    /// The instance of a provider instance key made by [`Keys::instance`] in this deployment.
    pub fn instance_of(&self, key: &str) -> Option<InstanceId> {
        key.strip_prefix(&self.deployment)?
            .strip_prefix('-')?
            .parse()
            .ok()
    }

    /// Carried by every machine of this deployment: what the reconcile sweep lists.
    pub fn deployment_tag(&self) -> String {
        format!("talis-deployment-{}", self.deployment)
    }

    /// Carried by the machines of one chunk of a task: one list call finds them.
    pub fn chunk_tag(&self, task: TaskId, chunk: u32) -> String {
        format!("talis-chunk-{}-{task}-{chunk}", self.deployment)
    }
}

/// Where one chunk of a task is: which task, which instances, what to tag its machines with.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkRef {
    pub task: TaskId,
    pub project: ProjectId,
    pub action: TaskAction,
    pub chunk: u32,
    pub range: ChunkRange,
    pub keys: Keys,
    /// Base URL of phone-home; empty: readiness by polling the provider.
    pub public_url: String,
    /// The task's first claim: no earlier invocation can have made machines for it (false
    /// when another invocation took the task over, and in journals older than the field).
    #[serde(default)]
    pub first_run: bool,
}

/// One distinct instance request of a chunk, as the provider needs it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Spec {
    pub region: String,
    pub size: String,
    pub image: String,
    /// User tags the provider accepts.
    pub tags: Vec<String>,
    pub volumes: Vec<VolumeConfig>,
    /// The script to run; empty when there is none.
    pub payload: String,
    pub ssh_keys: Vec<String>,
}

/// One instance of a chunk.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Planned {
    pub id: InstanceId,
    pub name: String,
    pub status: InstanceStatus,
    pub provider_ref: Option<String>,
    /// Index into [`Plan::specs`].
    pub spec: usize,
}

/// A chunk planned, as the workflow journals it: each distinct spec once, ids and names per
/// instance. Its size is bounded by the chunk size and the distinct scripts of the request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    pub at: ChunkRef,
    pub task_status: TaskStatus,
    pub specs: Vec<Spec>,
    pub instances: Vec<Planned>,
}

impl Plan {
    pub fn new(at: ChunkRef, c: ChunkPlan) -> Self {
        let specs = c
            .requests
            .into_iter()
            .map(|r| Spec {
                region: r.region,
                size: r.size,
                image: r.image,
                tags: provider_tags(&r.tags),
                volumes: r.volumes,
                payload: r.payload,
                ssh_keys: r.ssh_keys.into_iter().map(|k| k.public_key).collect(),
            })
            .collect();
        let instances = c
            .instances
            .into_iter()
            .map(|i| Planned {
                id: i.id,
                name: i.name,
                status: i.status,
                provider_ref: Some(i.provider_ref).filter(|r| !r.is_empty()),
                spec: i.request,
            })
            .collect();
        Plan {
            at,
            task_status: c.task_status,
            specs,
            instances,
        }
    }

    pub fn spec(&self, i: usize) -> &Spec {
        &self.specs[self.instances[i].spec]
    }

    /// Instances that still need their machine made (a re-run after a crash skips the rest).
    pub fn to_create(&self) -> Vec<usize> {
        (0..self.instances.len())
            .filter(|&i| self.instances[i].status.needs_machine())
            .collect()
    }

    /// Instances whose machine may still exist.
    pub fn live(&self) -> Vec<usize> {
        (0..self.instances.len())
            .filter(|&i| self.instances[i].status.is_live())
            .collect()
    }

    /// The provider keys of these instances.
    pub fn instance_keys(&self, indexes: &[usize]) -> Vec<String> {
        indexes
            .iter()
            .map(|&i| self.at.keys.instance(self.instances[i].id))
            .collect()
    }

    /// The index of an instance.
    pub fn index_of(&self, id: InstanceId) -> Option<usize> {
        self.instances.binary_search_by_key(&id, |p| p.id).ok()
    }

    /// The mounts of an instance's volumes (those with a mount point), in request order.
    pub fn mounts(&self, i: usize) -> Vec<Mount> {
        cloudinit::mounts(
            &self.spec(i).volumes,
            &self.at.keys.instance(self.instances[i].id),
        )
    }

    /// The script of a batch. One script serves the whole batch (a multi-create shares its
    /// user data), so it carries the phone-home URL of the batch's first instance; every
    /// machine posts its own id to it. `phone_home`: the internal secret and the URL's expiry.
    pub fn user_data(&self, batch: &[usize], phone_home: Option<(&str, i64)>) -> String {
        let first = batch[0];
        let spec = self.spec(first);
        let url = phone_home
            .filter(|_| !self.at.public_url.is_empty())
            .map(|(secret, expires)| {
                talis_api::phone_home::signed_url(
                    &self.at.public_url,
                    secret,
                    self.at.task.get(),
                    self.instances[first].id.get(),
                    expires,
                )
            });
        let payload = Some(spec.payload.as_str()).filter(|p| !p.is_empty());
        cloudinit::user_data(payload, &spec.ssh_keys, url.as_deref(), &self.mounts(first))
    }

    /// The provider's view of a batch: shared shape, script and tags, each member's volumes.
    pub fn machine_batch(&self, batch: &[usize], user_data: String) -> MachineBatch {
        let spec = self.spec(batch[0]);
        let keys = &self.at.keys;
        let project = keys.project(self.at.project);
        let mut tags = spec.tags.clone();
        tags.push(keys.deployment_tag());
        MachineBatch {
            project_id: project.clone(),
            region: spec.region.clone(),
            size: spec.size.clone(),
            image: spec.image.clone(),
            ssh_keys: Vec::new(),
            user_data: Some(user_data),
            extra_tags: tags,
            // The chunk's rounds look up only the chunk's machines (flat cost per round).
            group_tag: Some(keys.chunk_tag(self.at.task, self.at.chunk)),
            members: batch
                .iter()
                .map(|&i| {
                    let inst = &self.instances[i];
                    let key = keys.instance(inst.id);
                    BatchMember {
                        instance_id: key.clone(),
                        name: inst.name.clone(),
                        volumes: self
                            .spec(i)
                            .volumes
                            .iter()
                            .map(|v| VolumeSpec {
                                instance_id: key.clone(),
                                project_id: project.clone(),
                                name: cloudinit::volume_name(&v.name, &key),
                                region: spec.region.clone(),
                                size_gigabytes: v.size_gb,
                                filesystem_type: v.filesystem.as_str().map(str::to_owned),
                            })
                            .collect(),
                    }
                })
                .collect(),
        }
    }

    /// The mount point the owner asked for the volume the provider knows as `provider_name`.
    pub fn mount_point(&self, i: usize, provider_name: &str) -> String {
        self.mounts(i)
            .into_iter()
            .find(|m| m.volume == provider_name)
            .map(|m| m.mount_point)
            .unwrap_or_default()
    }
}

/// Groups `indexes` by shape and script, then chunks each group by `max_batch` (DigitalOcean:
/// 10 names per create). An instance with volumes is a batch of its own: the provider creates
/// it alone anyway (its volumes are attached by its create call), and its script mounts its
/// own volumes. Deterministic: replays see the same batches.
pub fn batches(plan: &Plan, indexes: &[usize], max_batch: usize) -> Vec<Vec<usize>> {
    let mut groups: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    let mut alone = Vec::new();
    for &i in indexes {
        if plan.spec(i).volumes.is_empty() {
            groups.entry(plan.instances[i].spec).or_default().push(i);
        } else {
            alone.push(vec![i]);
        }
    }
    let mut out: Vec<Vec<usize>> = groups
        .into_values()
        .flat_map(|members| {
            members
                .chunks(max_batch.max(1))
                .map(<[usize]>::to_vec)
                .collect::<Vec<_>>()
        })
        .collect();
    out.extend(alone);
    out
}

/// How an ensure round starts, decided from what the chunk knows without I/O. `resumed`: no
/// step of the chunk has run in this attempt before this one (all replayed), so an earlier
/// attempt may have started the round and its creates may still land ([`RoundStart::Resumed`]);
/// `attempt`: the try of this round (rate-limit deferrals count up). Only the first try of a
/// round planned in this attempt of the task's first invocation skips the look-up.
pub fn round_start(first_run: bool, resumed: bool, attempt: usize) -> RoundStart {
    match (resumed, first_run && attempt == 0) {
        (true, _) => RoundStart::Resumed,
        (false, true) => RoundStart::New,
        (false, false) => RoundStart::LookUp,
    }
}

/// Splits batches into provider rounds of at most `max_members` machines (each round is one
/// look-up of the project, so larger rounds mean fewer calls).
pub fn rounds(batches: Vec<Vec<usize>>, max_members: usize) -> Vec<Vec<Vec<usize>>> {
    let mut out: Vec<Vec<Vec<usize>>> = Vec::new();
    let mut n = 0;
    for b in batches {
        match out.last_mut() {
            Some(r) if n + b.len() <= max_members => {
                n += b.len();
                r.push(b);
            }
            _ => {
                n = b.len();
                out.push(vec![b]);
            }
        }
    }
    out
}

/// User tags the provider accepts (DO: letters, digits, ':', '-', '_'); `k=v` becomes `k:v`.
fn provider_tags(tags: &[String]) -> Vec<String> {
    let mut t: Vec<String> = tags
        .iter()
        .map(|t| t.replace('=', ":"))
        .filter(|t| talis_provider::tags::is_valid(t))
        .collect();
    t.sort();
    t.dedup();
    t
}

/// How a chunk ended: counts by status and its failures (at most [`MAX_FAILURES`] listed).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcome {
    pub counts: BTreeMap<InstanceStatus, u32>,
    pub failures: Vec<Failure>,
    /// The owner stopped the task; the chunk destroyed what it made.
    pub stopped: bool,
}

/// One failed instance, for the task's result.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    pub instance_id: InstanceId,
    pub name: String,
    pub error: String,
}

/// Failures a task's result lists by name (the rest are counted; every instance's error is on
/// its row).
pub const MAX_FAILURES: usize = 20;

impl Outcome {
    /// Adds another chunk's outcome.
    pub fn merge(&mut self, other: Outcome) {
        for (s, n) in other.counts {
            *self.counts.entry(s).or_default() += n;
        }
        self.failures.extend(other.failures);
        self.failures.truncate(MAX_FAILURES);
        self.stopped |= other.stopped;
    }

    pub fn total(&self) -> u32 {
        self.counts.values().sum()
    }

    /// The task's end: terminated when stopped, completed when every instance reached the
    /// action's goal, failed otherwise.
    pub fn task_status(&self, action: TaskAction) -> talis_api::internal::FinalStatus {
        use talis_api::internal::FinalStatus;
        if self.stopped {
            FinalStatus::Terminated
        } else if self.counts.get(&action.goal()).copied().unwrap_or(0) == self.total() {
            FinalStatus::Completed
        } else {
            FinalStatus::Failed
        }
    }

    /// A one-line error for a failed task.
    pub fn error(&self, action: TaskAction) -> Option<String> {
        let goal = action.goal();
        let bad = self.total() - self.counts.get(&goal).copied().unwrap_or(0);
        if bad == 0 || self.stopped {
            return None;
        }
        let first = self
            .failures
            .first()
            .map(|f| format!("; first: {} ({}): {}", f.name, f.instance_id, f.error));
        Some(format!(
            "{bad} of {} instances did not reach {goal}{}",
            self.total(),
            first.unwrap_or_default()
        ))
    }

    /// The task's `result`.
    pub fn to_result(&self) -> serde_json::Value {
        serde_json::json!({ "total": self.total(), "counts": self.counts, "failures": self.failures })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_first_try_in_a_live_attempt_of_a_first_run_skips_the_look_up() {
        assert_eq!(round_start(true, false, 0), RoundStart::New);
        // Deferred batches: an earlier try may have timed out on a create that landed later.
        assert_eq!(round_start(true, false, 1), RoundStart::LookUp);
        // Taken over from another invocation: it may have made machines.
        assert_eq!(round_start(false, false, 0), RoundStart::LookUp);
        // The first step of an attempt: settle, then look up, whatever else holds.
        for (first, attempt) in [(true, 0), (true, 2), (false, 0)] {
            assert_eq!(round_start(first, true, attempt), RoundStart::Resumed);
        }
    }
    use talis_api::internal::{ClaimedInstance, ClaimedRequest};

    fn request(region: &str, payload: &str, volumes: bool) -> ClaimedRequest {
        ClaimedRequest {
            region: region.into(),
            size: "s-1vcpu-1gb".into(),
            image: "ubuntu-24-04-x64".into(),
            tags: vec!["env=prod".into(), "bad tag".into()],
            volumes: if volumes {
                vec![VolumeConfig {
                    name: "data".into(),
                    size_gb: 10,
                    filesystem: talis_api::Filesystem::Ext4,
                    mount_point: "/mnt/data".into(),
                    ..Default::default()
                }]
            } else {
                vec![]
            },
            payload: payload.into(),
            ..Default::default()
        }
    }

    fn plan(requests: Vec<ClaimedRequest>, of: &[usize]) -> Plan {
        let instances = of
            .iter()
            .enumerate()
            .map(|(n, &r)| ClaimedInstance {
                id: InstanceId::new(n as i64 + 1).unwrap(),
                name: format!("web-{n}"),
                status: InstanceStatus::Pending,
                provider_ref: String::new(),
                request: r,
            })
            .collect();
        let at = ChunkRef {
            task: TaskId::new(7).unwrap(),
            project: ProjectId::new(3).unwrap(),
            action: TaskAction::CreateInstances,
            chunk: 0,
            range: ChunkRange {
                after: None,
                through: InstanceId::new(99).unwrap(),
                count: 0,
            },
            keys: Keys::new("dev").unwrap(),
            public_url: "http://api".into(),
            first_run: true,
        };
        Plan::new(
            at,
            ChunkPlan {
                task_status: TaskStatus::Running,
                requests,
                instances,
            },
        )
    }

    #[test]
    fn keys_carry_the_deployment() {
        let k = Keys::new("dev-1").unwrap();
        let id = InstanceId::new(42).unwrap();
        assert_eq!(k.instance(id), "dev-1-42");
        assert_eq!(k.instance_of("dev-1-42"), Some(id));
        assert_eq!(k.instance_of("prod-42"), None);
        assert_eq!(k.instance_of("dev-1-x"), None);
        assert_eq!(k.project(ProjectId::new(3).unwrap()), "dev-1-3");
        assert!(talis_provider::tags::is_valid(&k.deployment_tag()));
        assert!(talis_provider::tags::is_valid(
            &k.chunk_tag(TaskId::new(7).unwrap(), 2)
        ));
        for bad in ["", "Dev", "a b", &"x".repeat(33)] {
            assert!(Keys::new(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn batches_chunk_by_ten_and_split_by_request_and_volumes() {
        let mut of = vec![0; 23];
        of.push(1);
        of.extend([2, 2]);
        let p = plan(
            vec![
                request("nyc3", "", false),
                request("ams3", "", false),
                request("nyc3", "echo hi", true),
            ],
            &of,
        );
        let all: Vec<usize> = (0..p.instances.len()).collect();
        let b = batches(&p, &all, 10);
        let sizes: Vec<usize> = b.iter().map(Vec::len).collect();
        assert_eq!(sizes, vec![10, 10, 3, 1, 1, 1]);
        assert_eq!(b, batches(&p, &all, 10), "deterministic");
        let r = rounds(b, 12);
        assert_eq!(
            r.iter()
                .map(|r| r.iter().map(Vec::len).sum::<usize>())
                .collect::<Vec<_>>(),
            vec![10, 10, 6]
        );
    }

    #[test]
    fn a_batch_script_phones_home_through_its_first_member_and_carries_the_tags() {
        let p = plan(vec![request("nyc3", "echo hi", true)], &[0, 0]);
        let ud = p.user_data(&[1], Some(("s3cret", 1_000)));
        let url = talis_api::phone_home::signed_url("http://api", "s3cret", 7, 2, 1_000);
        assert!(ud.contains(&url), "{ud}");
        assert!(ud.contains("scsi-0DO_Volume_data-dev-2'"), "{ud}");
        assert!(ud.contains("echo hi"));
        assert!(!p.user_data(&[0], None).contains("talis-phone-home"));
        let mb = p.machine_batch(&[1], ud);
        assert_eq!(mb.project_id, "dev-3");
        assert_eq!(mb.members[0].instance_id, "dev-2");
        assert_eq!(mb.members[0].volumes[0].name, "data-dev-2");
        assert_eq!(mb.extra_tags, vec!["env:prod", "talis-deployment-dev"]);
        // Every machine carries its chunk's tag, and the chunk's look-ups list by it.
        assert_eq!(mb.group_tag.as_deref(), Some("talis-chunk-dev-7-0"));
        assert!(
            mb.shared_tags()
                .contains(&"talis-chunk-dev-7-0".to_string())
        );
        assert!(mb.validate(10).is_ok(), "{:?}", mb.validate(10));
    }

    #[test]
    fn outcomes_merge_and_decide_the_task() {
        use talis_api::internal::FinalStatus;
        let create = TaskAction::CreateInstances;
        let mut a = Outcome {
            counts: [(InstanceStatus::Ready, 2)].into(),
            ..Default::default()
        };
        assert_eq!(a.task_status(create), FinalStatus::Completed);
        assert_eq!(a.error(create), None);
        let failure = Failure {
            instance_id: InstanceId::new(5).unwrap(),
            name: "web-5".into(),
            error: "422 bad size".into(),
        };
        a.merge(Outcome {
            counts: [(InstanceStatus::Failed, 1)].into(),
            failures: vec![failure],
            stopped: false,
        });
        assert_eq!(a.task_status(create), FinalStatus::Failed);
        assert!(
            a.error(create)
                .unwrap()
                .contains("1 of 3 instances did not reach ready; first: web-5 (5): 422 bad size")
        );
        a.merge(Outcome {
            stopped: true,
            ..Default::default()
        });
        assert_eq!(a.task_status(create), FinalStatus::Terminated);
        assert_eq!(a.to_result()["total"], 3);
    }
}
