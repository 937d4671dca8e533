//! Internal RPC for the workflows. Every method is idempotent: Restate may replay a call.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};

use super::Service;
use crate::db::{Row, RowExt, Value};
use crate::model::{Instance, Project, SshPublicKey, VolumeConfig};
use crate::params::*;
use crate::status::{InstanceStatus, TaskAction, TaskStatus};
use crate::{Error, Result, auth, now, validate};

/// A text column without copying it ("" when it is not text).
fn text_ref(r: &[Value], i: usize) -> &str {
    match r.get(i) {
        Some(Value::Text(s)) => s,
        _ => "",
    }
}

impl Service<'_> {
    pub(super) fn task_claim(&self, p: TaskClaim) -> Result<ClaimedTask> {
        let id = validate::positive_id("task_id", p.task_id)?;
        let invocation = validate::name("invocation_id", &p.invocation_id, 200)?;
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
                        &[invocation.into(), now().into(), id.into()],
                    )?;
                    true
                }
                s => {
                    s.transition(TaskStatus::Running)?;
                    self.q(
                        "UPDATE tasks SET status = 'running', invocation_id = ?, attempts = attempts + 1, \
                         updated_at = ? WHERE id = ?",
                        &[invocation.into(), now().into(), id.into()],
                    )?;
                    true
                }
            };
            let task = crate::model::Task { logs: String::new(), result: None, ..self.task_scoped(None, id)? };
            let project = self
                .q1(&format!("SELECT {} FROM projects WHERE id = ?", Project::COLUMNS), &[task.project_id.into()])?
                .map(|r| Project::from_row(&r))
                .ok_or(Error::NotFound("project"))?;
            let (requests, instances) = self.claimed_instances(id, task.action == TaskAction::CreateInstances)?;
            Ok(ClaimedTask { claimed, task, project, requests, instances })
        })
    }

    /// The task's instances and the distinct requests they were made from (each once, however
    /// many instances share it). Only a create task carries the provisioning scripts.
    fn claimed_instances(
        &self,
        task_id: i64,
        with_payload: bool,
    ) -> Result<(Vec<ClaimedRequest>, Vec<ClaimedInstance>)> {
        let rows = self.q(
            "SELECT i.id, i.name, i.status, i.provider_ref, i.public_ip, i.request_id, i.provider_id, \
             i.region, i.size, i.image, i.tags FROM task_instances x JOIN instances i ON i.id = x.instance_id \
             WHERE x.task_id = ? ORDER BY i.id",
            &[task_id.into()],
        )?;
        let stored: HashMap<i64, Row> = self
            .q(
                "SELECT id, provision, CASE WHEN ?2 THEN payload ELSE '' END, execute_payload, ssh_keys, volumes \
                 FROM instance_requests WHERE id IN (SELECT DISTINCT i.request_id FROM task_instances x \
                 JOIN instances i ON i.id = x.instance_id WHERE x.task_id = ?1)",
                &[task_id.into(), with_payload.into()],
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
                        provider_id: key.1.to_owned(),
                        region: key.2.to_owned(),
                        size: key.3.to_owned(),
                        image: key.4.to_owned(),
                        tags: serde_json::from_str(key.5).unwrap_or_default(),
                        volumes: serde_json::from_str::<Vec<VolumeConfig>>(&s.text(5))
                            .unwrap_or_default(),
                        provision: s.int(1) != 0,
                        payload: s.text(2),
                        execute_payload: s.int(3) != 0,
                        ssh_keys: serde_json::from_str::<Vec<SshPublicKey>>(&s.text(4))
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
            let id = r.int(0);
            instances.push(ClaimedInstance {
                id,
                name: r.text(1),
                status: r.text(2).parse().unwrap_or(InstanceStatus::Unknown),
                provider_ref: r.text(3),
                public_ip: r.text(4),
                request,
                phone_home_url: if self.cfg.public_url.is_empty() {
                    String::new()
                } else {
                    auth::phone_home_url(&self.cfg.public_url, &self.cfg.internal_secret, id)
                },
            });
        }
        Ok((requests, instances))
    }

    pub(super) fn instance_transition(&self, p: InstanceTransition) -> Result<Instance> {
        let task_id = validate::positive_id("task_id", p.task_id)?;
        self.tx(|| {
            let task = self.task_scoped(None, task_id)?;
            self.apply_transition(&task, &p)
        })
    }

    /// Many transitions of one task in one transaction, each with its step event (keyed, so a
    /// replay adds nothing). A refused transition is reported and does not stop the others.
    pub(super) fn instance_transition_batch(
        &self,
        p: InstanceTransitionBatch,
    ) -> Result<TransitionsApplied> {
        let task_id = validate::positive_id("task_id", p.task_id)?;
        let step = validate::name("step", &p.step, 200)?;
        self.tx(|| {
            let task = self.task_scoped(None, task_id)?;
            let mut results = Vec::with_capacity(p.transitions.len());
            for t in &p.transitions {
                let t = InstanceTransition {
                    task_id: p.task_id,
                    ..t.clone()
                };
                match self.apply_transition(&task, &t) {
                    Ok(_) => {
                        let status = t.status.map(|s| s.as_str()).unwrap_or_default();
                        let detail = t
                            .error
                            .clone()
                            .or_else(|| t.public_ip.as_ref().map(|ip| format!("ip {ip}")))
                            .or_else(|| t.provider_ref.as_ref().map(|r| format!("machine {r}")))
                            .unwrap_or_default();
                        let key = format!("{task_id}:{}:{step}:{status}", t.instance_id);
                        self.insert_event(
                            task_id,
                            Some(t.instance_id as i64),
                            &step,
                            status,
                            &detail,
                            &key,
                        )?;
                        results.push(TransitionResult {
                            instance_id: t.instance_id,
                            error: None,
                        });
                    }
                    Err(e @ (Error::Conflict(_) | Error::NotFound(_) | Error::Invalid { .. })) => {
                        results.push(TransitionResult {
                            instance_id: t.instance_id,
                            error: Some(e.to_string()),
                        });
                    }
                    Err(e) => return Err(e),
                }
            }
            Ok(TransitionsApplied { results })
        })
    }

    /// One checked transition inside the caller's transaction.
    fn apply_transition(
        &self,
        task: &crate::model::Task,
        p: &InstanceTransition,
    ) -> Result<Instance> {
        let instance_id = validate::positive_id("instance_id", p.instance_id)?;
        let task_id = task.id;
        let to = p
            .status
            .ok_or_else(|| Error::invalid("status", "is required"))?;
        if self
            .q1(
                "SELECT 1 FROM task_instances WHERE task_id = ? AND instance_id = ?",
                &[task_id.into(), instance_id.into()],
            )?
            .is_none()
        {
            return Err(Error::NotFound("instance of this task"));
        }
        let current = self.instance_row(instance_id)?;
        current.status.transition(to)?;
        // A finished task must not move machines any more (e.g. terminated by its owner);
        // replays of what it already recorded stay harmless no-ops.
        // A task terminated by its owner still records the compensation of its instances.
        let compensating = task.status == TaskStatus::Terminated
            && matches!(to, InstanceStatus::Terminating | InstanceStatus::Terminated);
        if task.status.is_terminal() && current.status != to && !compensating {
            return Err(Error::Conflict(format!(
                "task {task_id} is {}",
                task.status
            )));
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
                to.as_str().into(),
                p.provider_ref.clone().into(),
                p.public_ip.clone().into(),
                volumes.into(),
                p.error.clone().into(),
                now().into(),
                instance_id.into(),
            ],
        )?;
        self.instance_row(instance_id)
    }

    fn instance_row(&self, id: i64) -> Result<Instance> {
        self.q1(
            &format!("SELECT {} FROM instances WHERE id = ?", Instance::COLUMNS),
            &[id.into()],
        )?
        .map(|r| Instance::from_row(&r))
        .ok_or(Error::NotFound("instance"))
    }

    pub(super) fn task_event(&self, p: TaskEventRecord) -> Result<EventRecorded> {
        let task_id = validate::positive_id("task_id", p.task_id)?;
        let step = validate::name("step", &p.step, 200)?;
        let status = validate::name("status", &p.status, 50)?;
        let key = validate::name("event_key", &p.event_key, 300)?;
        let instance_id = p
            .instance_id
            .map(|i| validate::positive_id("instance_id", i))
            .transpose()?;
        self.tx(|| {
            self.task_scoped(None, task_id)?;
            self.insert_event(task_id, instance_id, &step, &status, &p.detail, &key)
        })
    }

    /// Appends a step event unless its key was recorded before (inside the caller's transaction).
    fn insert_event(
        &self,
        task_id: i64,
        instance_id: Option<i64>,
        step: &str,
        status: &str,
        detail: &str,
        key: &str,
    ) -> Result<EventRecorded> {
        if let Some(r) = self.q1(
            "SELECT id FROM task_events WHERE task_id = ? AND event_key = ?",
            &[task_id.into(), key.into()],
        )? {
            return Ok(EventRecorded {
                event_id: r.int(0),
                duplicate: true,
            });
        }
        let ts = now();
        let event_id = self
            .q1(
                "INSERT INTO task_events (task_id, instance_id, step, status, detail, event_key, created_at) \
                 VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id",
                &[task_id.into(), instance_id.into(), step.into(), status.into(), detail.into(), key.into(), (&ts).into()],
            )?
            .map(|r| r.int(0))
            .ok_or_else(|| Error::Db("event insert returned no row".into()))?;
        // The original's human-readable `logs` column, one line per step.
        let who = instance_id
            .map(|i| format!(" instance {i}"))
            .unwrap_or_default();
        let line = format!("{ts} {step}{who}: {status} {detail}")
            .trim_end()
            .to_owned();
        self.q(
            "UPDATE tasks SET logs = logs || CASE WHEN logs = '' THEN '' ELSE char(10) END || ?, updated_at = ? WHERE id = ?",
            &[Value::Text(line), ts.into(), task_id.into()],
        )?;
        Ok(EventRecorded {
            event_id,
            duplicate: false,
        })
    }

    pub(super) fn task_finish(&self, p: TaskFinish) -> Result<crate::model::Task> {
        let task_id = validate::positive_id("task_id", p.task_id)?;
        let status = p
            .status
            .ok_or_else(|| Error::invalid("status", "is required"))?;
        if !status.is_terminal() {
            return Err(Error::invalid(
                "status",
                "must be completed, failed or terminated",
            ));
        }
        self.tx(|| {
            let task = self.task_scoped(None, task_id)?;
            self.set_task_status(&task, status, p.result.as_ref(), p.error.as_deref())?;
            self.task_scoped(None, task_id)
        })
    }
}
