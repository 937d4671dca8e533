//! Internal RPC for the workflows. Every method is idempotent: Restate may replay a call.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};

use talis_api::decode::Valid;
use talis_api::internal::{
    ChunkPlan, ChunkRange, ClaimedInstance, ClaimedRequest, ClaimedTask, Deployment, DeploymentGet,
    EventPurge, EventRecorded, FailedInstance, InstanceLive, InstanceTransition,
    InstanceTransitionBatch, LiveInstances, Progress, Purged, ReconcileRecord, Refusal, TaskChunk,
    TaskClaim, TaskEventRecord, TaskFinish, TaskInstanceTransition, TaskProgress,
    TaskTransitionAll, TransitionResult, TransitionsApplied, TransitionsCounted, Watched,
};
use talis_api::{
    Instance, InstanceId, InstanceStatus, Project, ProjectId, Provider, SshPublicKey, Task,
    TaskAction, TaskId, TaskStatus, VolumeConfig,
};

use super::Service;
use super::events::On;
use crate::db::{Row, RowExt, Value};
use crate::{Error, Result, now, rows};
use talis_api::events::{EventBody, InstanceStatusData, ProviderStepData, ReconcileData};

/// A text column without copying it ("" when it is not text).
fn text_ref(r: &[Value], i: usize) -> &str {
    match r.get(i) {
        Some(Value::Text(s)) => s,
        _ => "",
    }
}

impl Service<'_> {
    pub(super) fn task_claim(&self, p: Valid<TaskClaim>) -> Result<ClaimedTask> {
        let id = p.task_id;
        self.tx(|| {
            let task = self.task_scoped(None, id)?;
            let claimed = match task.status {
                s if s.is_terminal() => false,
                TaskStatus::Running => {
                    // Another invocation of the same workflow key takes over (Restate runs one
                    // at a time); the same invocation again changes nothing.
                    self.q(
                        "UPDATE tasks SET invocation_id = ?1, attempts = attempts + (invocation_id IS NOT ?1), \
                         updated_at = ?2 WHERE id = ?3",
                        &[(&p.invocation_id).into(), now().into(), id.get().into()],
                    )?;
                    true
                }
                s => {
                    s.transition(TaskStatus::Running)?;
                    self.task_status_event(&task, Some(s), TaskStatus::Running, None)?;
                    self.q(
                        "UPDATE tasks SET status = ?, invocation_id = ?, attempts = attempts + 1, updated_at = ? WHERE id = ?",
                        &[
                            TaskStatus::Running.as_str().into(),
                            (&p.invocation_id).into(),
                            now().into(),
                            id.get().into(),
                        ],
                    )?;
                    true
                }
            };
            let task = Task { logs: String::new(), result: None, ..self.task_scoped(None, id)? };
            let project = self.project_by_id(task.project_id)?;
            let ids: Vec<InstanceId> = self.task_instance_ids(id)?;
            let mut chunks = Vec::new();
            let mut after = None;
            for chunk in ids.chunks(p.chunk_size as usize) {
                let through = *chunk.last().expect("chunks are never empty");
                chunks.push(ChunkRange { after, through, count: chunk.len() as u32 });
                after = Some(through);
            }
            Ok(ClaimedTask {
                claimed,
                task,
                project,
                deployment: self.cfg.deployment.clone(),
                public_url: self.cfg.public_url.clone(),
                chunks,
            })
        })
    }

    pub(super) fn task_chunk(&self, p: Valid<TaskChunk>) -> Result<ChunkPlan> {
        let task = self.task_scoped(None, p.task_id)?;
        let (requests, instances) = self.claimed_instances(
            task.id,
            &p.range,
            task.action == TaskAction::CreateInstances,
        )?;
        Ok(ChunkPlan {
            task_status: task.status,
            requests,
            instances,
        })
    }

    pub(super) fn task_progress(&self, p: Valid<TaskProgress>) -> Result<Progress> {
        let task = self.task_scoped(None, p.task_id)?;
        let rows = self.q(
            "SELECT i.id, i.status, i.provider_ref, substr(i.error, 1, 200) FROM task_instances x JOIN instances i ON i.id = x.instance_id \
             WHERE x.task_id = ? AND x.instance_id > ? AND x.instance_id <= ? ORDER BY i.id",
            &[task.id.into(), p.range.after.map_or(0, InstanceId::get).into(), p.range.through.into()],
        )?;
        let mut progress = Progress {
            task_status: task.status,
            waiting: Vec::new(),
            failed: Vec::new(),
            counts: Default::default(),
        };
        for r in &rows {
            let id = InstanceId::from_db(r.int(0));
            let status: InstanceStatus = r.text(1).parse().unwrap_or(InstanceStatus::Unknown);
            *progress.counts.entry(status).or_default() += 1;
            if status.needs_machine() {
                progress.waiting.push(Watched {
                    id,
                    status,
                    provider_ref: r.text(2),
                });
            } else if status == InstanceStatus::Failed {
                progress.failed.push(FailedInstance {
                    id,
                    error: r.text(3),
                });
            }
        }
        Ok(progress)
    }

    /// Moves every instance of the task that may legally go to `to`, each with its step event.
    pub(super) fn task_transition_all(
        &self,
        p: Valid<TaskTransitionAll>,
    ) -> Result<TransitionsCounted> {
        self.tx(|| {
            let task = self.task_scoped(None, p.task_id)?;
            let mut counted = TransitionsCounted { applied: 0, skipped: 0 };
            for r in self.q(
                "SELECT i.id, i.status FROM task_instances x JOIN instances i ON i.id = x.instance_id WHERE x.task_id = ?",
                &[task.id.into()],
            )? {
                let id = InstanceId::from_db(r.int(0));
                let status: InstanceStatus = r.text(1).parse().unwrap_or(InstanceStatus::Unknown);
                if status == p.to || status.transition(p.to).is_err() {
                    counted.skipped += 1;
                    continue;
                }
                let t = InstanceTransition { error: p.error.clone(), ..InstanceTransition::to(id, p.to) };
                self.apply_transition(&task, &t, &p.step)?;
                counted.applied += 1;
            }
            Ok(counted)
        })
    }

    pub(super) fn instance_live(&self, p: Valid<InstanceLive>) -> Result<LiveInstances> {
        let rows = self.q(
            "SELECT id FROM instances WHERE id IN (SELECT value FROM json_each(?)) AND status != ? ORDER BY id",
            &[
                super::id_list(p.instance_ids.iter().map(|i| i.get())),
                InstanceStatus::Terminated.as_str().into(),
            ],
        )?;
        Ok(LiveInstances {
            live: rows.iter().map(|r| InstanceId::from_db(r.int(0))).collect(),
        })
    }

    pub(super) fn reconcile_record(&self, p: Valid<ReconcileRecord>) -> Result<()> {
        let body = EventBody::Reconcile(ReconcileData {
            destroyed: p.destroyed.clone(),
            names: p.names.clone(),
        });
        self.tx(|| self.record_event(On::default(), &body, None).map(drop))
    }

    pub(super) fn event_purge(&self, p: Valid<EventPurge>) -> Result<Purged> {
        let days = self.cfg.event_retention_days;
        let deleted = self.purge_events(days, i64::from(p.limit))? as u32;
        // Finished webhook deliveries go with the events they carried.
        self.purge_deliveries(days, i64::from(p.limit))?;
        Ok(Purged {
            deleted,
            retention_days: days,
        })
    }

    pub(super) fn deployment_get(&self, _: Valid<DeploymentGet>) -> Result<Deployment> {
        Ok(Deployment {
            deployment: self.cfg.deployment.clone(),
            public_url: self.cfg.public_url.clone(),
        })
    }

    pub(super) fn project_by_id(&self, id: ProjectId) -> Result<Project> {
        self.q1(
            &format!("SELECT {} FROM projects WHERE id = ?", rows::PROJECT),
            &[id.get().into()],
        )?
        .map(|r| rows::project(&r))
        .ok_or(Error::NotFound("project"))
    }

    /// A chunk's instances and the distinct requests they were made from (each once, however
    /// many instances share it). Only a create task carries the provisioning scripts.
    fn claimed_instances(
        &self,
        task: TaskId,
        range: &ChunkRange,
        with_payload: bool,
    ) -> Result<(Vec<ClaimedRequest>, Vec<ClaimedInstance>)> {
        let after = range.after.map_or(0, InstanceId::get);
        let rows = self.q(
            "SELECT i.id, i.name, i.status, i.provider_ref, i.public_ip, i.request_id, i.provider_id, \
             i.region, i.size, i.image, i.tags FROM task_instances x JOIN instances i ON i.id = x.instance_id \
             WHERE x.task_id = ? AND x.instance_id > ? AND x.instance_id <= ? ORDER BY i.id",
            &[task.into(), after.into(), range.through.into()],
        )?;
        let stored: HashMap<i64, Row> = self
            .q(
                "SELECT id, CASE WHEN ?2 AND execute_payload THEN payload ELSE '' END, ssh_keys, volumes \
                 FROM instance_requests WHERE id IN (SELECT DISTINCT i.request_id FROM task_instances x \
                 JOIN instances i ON i.id = x.instance_id WHERE x.task_id = ?1 AND x.instance_id > ?3 \
                 AND x.instance_id <= ?4)",
                &[task.into(), with_payload.into(), after.into(), range.through.into()],
            )?
            .into_iter()
            .map(|r| (r.int(0), r))
            .collect();
        // Instances of one stored request share its spec; equal specs of different requests
        // (the same request sent twice) are merged by content.
        let mut requests: Vec<ClaimedRequest> = Vec::new();
        let mut by_content: HashMap<u64, Vec<usize>> = HashMap::new();
        let mut by_row: HashMap<(i64, &str, &str, &str, &str, &str), usize> = HashMap::new();
        let mut instances = Vec::with_capacity(rows.len());
        for r in &rows {
            let key = (
                r.int(5),
                text_ref(r, 6),
                text_ref(r, 7),
                text_ref(r, 8),
                text_ref(r, 9),
                text_ref(r, 10),
            );
            let request = match by_row.get(&key) {
                Some(&i) => i,
                None => {
                    let s = stored.get(&key.0).map(|s| s.as_slice()).unwrap_or_default();
                    let spec = ClaimedRequest {
                        provider: serde_json::from_value(key.1.into())
                            .unwrap_or(Provider::DigitalOcean),
                        region: key.2.to_owned(),
                        size: key.3.to_owned(),
                        image: key.4.to_owned(),
                        tags: serde_json::from_str(key.5).unwrap_or_default(),
                        volumes: serde_json::from_str::<Vec<VolumeConfig>>(&s.text(3))
                            .unwrap_or_default(),
                        payload: s.text(1),
                        ssh_keys: serde_json::from_str::<Vec<SshPublicKey>>(&s.text(2))
                            .unwrap_or_default(),
                    };
                    let hash = {
                        let mut h = DefaultHasher::new();
                        spec.hash(&mut h);
                        h.finish()
                    };
                    let same = by_content.entry(hash).or_default();
                    let i = match same.iter().find(|&&i| requests[i] == spec) {
                        Some(&i) => i,
                        None => {
                            requests.push(spec);
                            same.push(requests.len() - 1);
                            requests.len() - 1
                        }
                    };
                    by_row.insert(key, i);
                    i
                }
            };
            instances.push(ClaimedInstance {
                id: InstanceId::from_db(r.int(0)),
                name: r.text(1),
                status: r.text(2).parse().unwrap_or(InstanceStatus::Unknown),
                provider_ref: r.text(3),
                request,
            });
        }
        Ok((requests, instances))
    }

    pub(super) fn instance_transition(&self, p: Valid<TaskInstanceTransition>) -> Result<Instance> {
        self.tx(|| {
            let task = self.task_scoped(None, p.task_id)?;
            self.apply_transition(&task, &p.transition, "transition")
        })
    }

    /// Many transitions of one task in one transaction, each with its step event (keyed, so a
    /// replay adds nothing). A refused transition is reported and does not stop the others.
    pub(super) fn instance_transition_batch(
        &self,
        p: Valid<InstanceTransitionBatch>,
    ) -> Result<TransitionsApplied> {
        let task_id = p.task_id;
        self.tx(|| {
            let task = self.task_scoped(None, task_id)?;
            let mut results = Vec::with_capacity(p.transitions.len());
            for t in &p.transitions {
                match self.apply_transition(&task, t, &p.step) {
                    Ok(_) => results.push(TransitionResult {
                        instance_id: t.instance_id,
                        refused: None,
                        message: None,
                    }),
                    Err(e) => {
                        let refused = match &e {
                            Error::TaskFinished(..) => Refusal::TaskFinished,
                            Error::IllegalTransition(_) => Refusal::IllegalTransition,
                            Error::NotFound(_) => Refusal::NotInTask,
                            _ => return Err(e),
                        };
                        results.push(TransitionResult {
                            instance_id: t.instance_id,
                            refused: Some(refused),
                            message: Some(e.to_string()),
                        });
                    }
                }
            }
            Ok(TransitionsApplied { results })
        })
    }

    /// One checked transition inside the caller's transaction, recorded as an event: the
    /// instance is the task's, the change is legal, and a finished task only compensates. The
    /// same status again, or a late record of an earlier step, changes nothing.
    pub(super) fn apply_transition(
        &self,
        task: &Task,
        p: &InstanceTransition,
        step: &str,
    ) -> Result<Instance> {
        if !self.covers(task.id, p.instance_id)? {
            return Err(Error::NotFound("instance of this task"));
        }
        let current = self.instance_scoped(None, p.instance_id)?;
        if current.status == p.status || current.status.is_past(p.status) {
            return Ok(current);
        }
        current.status.transition(p.status)?;
        // A finished task must not move machines any more (e.g. terminated by its owner),
        // except to record the compensation of a terminated one.
        let compensating = task.status == TaskStatus::Terminated && p.status.is_going();
        if task.status.is_terminal() && !compensating {
            return Err(Error::TaskFinished(task.id.get(), task.status.as_str()));
        }
        let volumes = p
            .volumes
            .as_ref()
            .map(|v| serde_json::to_string(v).unwrap_or_else(|_| "[]".into()));
        self.q(
            "UPDATE instances SET status = ?, provider_ref = COALESCE(?, provider_ref), \
             public_ip = COALESCE(?, public_ip), volume_details = COALESCE(?, volume_details), \
             error = COALESCE(?, error), updated_at = ? WHERE id = ?",
            &[
                p.status.as_str().into(),
                p.provider_ref.clone().into(),
                p.public_ip.clone().into(),
                volumes.into(),
                p.error.clone().into(),
                now().into(),
                p.instance_id.into(),
            ],
        )?;
        let body = EventBody::InstanceStatus(InstanceStatusData {
            from: Some(current.status),
            to: p.status,
            step: step.to_owned(),
            provider_ref: p.provider_ref.clone(),
            public_ip: p.public_ip.clone(),
            error: p.error.clone(),
        });
        let on = On {
            owner: Some(current.owner_id),
            project: Some(current.project_id),
            task: Some(task.id),
            instance: Some(p.instance_id),
        };
        self.record_event(on, &body, None)?;
        // The machine phoned home before this record of it: apply its kept report now.
        if let Some(droplet) = &p.provider_ref
            && !p.status.is_past(InstanceStatus::Provisioning)
            && let Some(report) = self.take_early(task.id, p.instance_id, droplet)?
        {
            return self.apply_transition(task, &report, super::phone_home::STEP);
        }
        self.instance_scoped(None, p.instance_id)
    }

    /// A provider step's outcome, recorded once per `event_key`.
    pub(super) fn task_event(&self, p: Valid<TaskEventRecord>) -> Result<EventRecorded> {
        self.tx(|| {
            let task = self.task_scoped(None, p.task_id)?;
            let body = EventBody::ProviderStep(ProviderStepData {
                step: p.step.clone(),
                status: p.status.clone(),
                detail: p.detail.clone(),
            });
            let on = On {
                owner: Some(task.owner_id),
                project: Some(task.project_id),
                task: Some(task.id),
                instance: p.instance_id,
            };
            let written = self.record_event(on, &body, Some(&p.event_key))?;
            let event_id = self
                .q1(
                    "SELECT id FROM events WHERE task_id = ? AND dedup_key = ?",
                    &[task.id.into(), p.event_key.as_str().into()],
                )?
                .map_or(0, |r| r.int(0));
            Ok(EventRecorded {
                event_id,
                duplicate: !written,
            })
        })
    }

    pub(super) fn task_finish(&self, p: Valid<TaskFinish>) -> Result<Task> {
        self.tx(|| {
            let task = self.task_scoped(None, p.task_id)?;
            self.set_task_status(
                &task,
                p.status.into(),
                p.result.as_ref(),
                p.error.as_deref(),
            )?;
            self.task_scoped(None, p.task_id)
        })
    }
}
