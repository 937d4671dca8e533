//! The side effects of the workflow: provider and internal-RPC calls executed inside journaled
//! `ctx.run` steps. Each returns small, id-only results and classifies its errors once:
//! retryable (5xx, 429, timeouts, component restarting) → `HandlerError` (Restate retries the
//! step with its policy); terminal (4xx with the provider's message) → recorded as an outcome.

use std::sync::Arc;

use restate_sdk::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use talis_api::internal::{
    ClaimedRequest, ClaimedTask, InstanceTransition, InstanceTransitionBatch, TaskClaim,
    TaskFinish, TransitionsApplied,
};
use talis_api::{InstanceStatus, TaskAction, TaskStatus, VolumeDetail};
use talis_provider::{BatchMember, MachineBatch, VolumeSpec};

use crate::App;
use crate::plan::{Action, Batch, Inst, Plan, Vol};
use crate::rpc::RpcError;

pub(crate) fn rpc_err(e: RpcError) -> HandlerError {
    if e.is_retryable() {
        HandlerError::from(e)
    } else {
        TerminalError::new_with_code(409, e.to_string()).into()
    }
}

/// Ids are integers on the wire; the workflow key and the journal keep them as strings.
pub(crate) fn wire_id(field: &str, id: &str) -> Result<u64, TerminalError> {
    id.parse::<u64>().map_err(|_| {
        TerminalError::new_with_code(400, format!("{field}: {id:?} is not a numeric id"))
    })
}

/// `task.claim`: the task, its project and its instances, reduced to the journaled [`Plan`].
pub(crate) async fn claim(
    app: Arc<App>,
    task_id: String,
    invocation_id: String,
) -> HandlerResult<Json<Plan>> {
    let claimed: ClaimedTask = app
        .rpc
        .call(
            "task.claim",
            &TaskClaim {
                task_id: wire_id("task_id", &task_id)?,
                invocation_id,
            },
        )
        .await
        .map_err(rpc_err)?;
    Ok(Json(plan_from_claim(claimed, &task_id)))
}

fn plan_from_claim(c: ClaimedTask, task_id: &str) -> Plan {
    let action = match c.task.action {
        TaskAction::CreateInstances => Action::CreateInstances,
        TaskAction::TerminateInstances => Action::TerminateInstances,
        TaskAction::DeleteProject => Action::DeleteProject,
    };
    // Each distinct script is journaled once; it runs only when the owner asked for it
    // (`execute_payload`).
    let mut payloads: Vec<String> = Vec::new();
    let request_payload: Vec<Option<usize>> = c
        .requests
        .iter()
        .map(|r| {
            (r.execute_payload && !r.payload.is_empty()).then(|| {
                payloads
                    .iter()
                    .position(|p| *p == r.payload)
                    .unwrap_or_else(|| {
                        payloads.push(r.payload.clone());
                        payloads.len() - 1
                    })
            })
        })
        .collect();
    let no_request = ClaimedRequest::default();
    let instances = c
        .instances
        .iter()
        .map(|ci| {
            let r = c.request_of(ci).unwrap_or(&no_request);
            Inst {
                id: ci.id.to_string(),
                name: ci.name.clone(),
                region: r.region.clone(),
                size: r.size.clone(),
                image: r.image.clone(),
                ssh_public_keys: r.ssh_keys.iter().map(|k| k.public_key.clone()).collect(),
                tags: r.tags.clone(),
                volumes: r
                    .volumes
                    .iter()
                    .map(|v| Vol {
                        name: v.name.clone(),
                        size_gb: u32::try_from(v.size_gb.max(1)).unwrap_or(1),
                        filesystem_type: Some(v.filesystem.clone()).filter(|f| !f.is_empty()),
                        mount_point: v.mount_point.clone(),
                    })
                    .collect(),
                payload: request_payload.get(ci.request).copied().flatten(),
                phone_home_url: Some(ci.phone_home_url.clone()).filter(|u| !u.is_empty()),
                status: ci.status.as_str().to_string(),
                provider_ref: Some(ci.provider_ref.clone()).filter(|r| !r.is_empty()),
            }
        })
        .collect();
    Plan {
        task_id: task_id.to_string(),
        project_id: c.task.project_id.to_string(),
        action,
        claimed: c.claimed,
        payloads,
        instances,
    }
}

/// One instance's status change, as `instance.transition` takes it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Transition {
    pub instance_id: String,
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider_ref: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub public_ip: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub volumes: Option<Vec<VolumeDetail>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Records transitions and their step events in one `instance.transitionBatch` call (one
/// transaction; replays are no-ops). Returns the refused ones ("<instance>: <why>"), e.g. an
/// instance that moved on without us (terminated by its owner): reported, not retried.
pub(crate) async fn record(
    app: Arc<App>,
    task_id: String,
    step: String,
    ts: Vec<Transition>,
) -> HandlerResult<Json<Vec<String>>> {
    let task = wire_id("task_id", &task_id)?;
    let transitions = ts
        .into_iter()
        .map(|t| {
            Ok(InstanceTransition {
                instance_id: wire_id("instance_id", &t.instance_id)?,
                task_id: task,
                status: Some(t.status.parse::<InstanceStatus>().map_err(|e| {
                    TerminalError::new_with_code(500, format!("status {:?}: {e}", t.status))
                })?),
                provider_ref: t.provider_ref,
                public_ip: t.public_ip,
                volumes: t.volumes,
                error: t.error,
            })
        })
        .collect::<Result<Vec<_>, TerminalError>>()?;
    let applied: TransitionsApplied = app
        .rpc
        .call(
            "instance.transitionBatch",
            &InstanceTransitionBatch {
                task_id: task,
                step,
                transitions,
            },
        )
        .await
        .map_err(rpc_err)?;
    Ok(Json(
        applied
            .results
            .into_iter()
            .filter_map(|r| Some(format!("{}: {}", r.instance_id, r.error?)))
            .collect(),
    ))
}

pub(crate) async fn finish(
    app: Arc<App>,
    task_id: String,
    status: String,
    result: Value,
    error: Option<String>,
) -> HandlerResult<()> {
    let status = status
        .parse::<TaskStatus>()
        .map_err(|e| TerminalError::new_with_code(500, format!("task status: {e}")))?;
    app.rpc
        .call::<_, Value>(
            "task.finish",
            &TaskFinish {
                task_id: wire_id("task_id", &task_id)?,
                status: Some(status),
                result: Some(result).filter(|r| !r.is_null()),
                error,
            },
        )
        .await
        .map_err(rpc_err)?;
    Ok(())
}

/// What ensuring one instance's machine (and volumes) gave.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Ensured {
    pub index: usize,
    pub provider_ref: Option<String>,
    pub volumes: Vec<VolumeDetail>,
    pub error: Option<String>,
}

impl Ensured {
    /// `created` with the machine and its volumes; `failed` with the error (a machine that
    /// exists is still recorded, so compensation finds it).
    pub(crate) fn transition(&self, plan: &Plan) -> Transition {
        let failed = self.error.is_some();
        Transition {
            instance_id: plan.instances[self.index].id.clone(),
            status: if failed { "failed" } else { "created" }.to_string(),
            provider_ref: self.provider_ref.clone(),
            public_ip: None,
            volumes: Some(self.volumes.clone()).filter(|v| !v.is_empty()),
            error: self.error.clone(),
        }
    }
}

/// What one ensure step gave: the instances it settled, and the batches the provider's rate
/// limit deferred (positions in the step's batch list) with how long to wait — the workflow
/// waits that out with a durable sleep instead of burning retries.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(crate) struct Wave {
    pub ensured: Vec<Ensured>,
    pub deferred: Vec<usize>,
    pub retry_after_ms: u64,
}

/// Ensures the machines of several batches in one provider round: one look-up of the project
/// (and of the volumes, if any instance has some), then one multi-create per batch, or per
/// machine with volumes (volumes created first, attached by the create). Creation is idempotent
/// by machine name, so a retried step finds what an earlier attempt made. A terminal provider
/// error fails the members of its batch with the provider's message; a rate limit defers the
/// batch; another retryable error fails the step so Restate retries it.
pub(crate) async fn ensure_batches(
    app: Arc<App>,
    plan: Arc<Plan>,
    batches: Vec<Batch>,
) -> HandlerResult<Json<Wave>> {
    let specs: Vec<MachineBatch> = batches.iter().map(|b| machine_batch(&plan, b)).collect();
    // Each batch's `created` is recorded as soon as the batch is made, so an owner polling the
    // task sees steady progress; the workflow records the whole step again from the journal
    // (same transitions: no-ops), which stays the source of truth. One writer, coalescing the
    // batches that arrive while it writes: concurrent transactions would contend for SQLite's
    // write lock.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Vec<Transition>>();
    let writer = {
        let (app, task_id) = (app.clone(), plan.task_id.clone());
        tokio::spawn(async move {
            while let Some(mut ts) = rx.recv().await {
                while let Ok(more) = rx.try_recv() {
                    ts.extend(more);
                }
                // Best effort: a failure is repaired by the journaled record after the step.
                let _ = record(app.clone(), task_id.clone(), ENSURE_STEP.to_string(), ts).await;
            }
        })
    };
    let on_batch = |pos: usize, machines: &[talis_provider::Ensured]| {
        let ts = ensured(&plan, &batches[pos], machines.to_vec())
            .iter()
            .map(|e| e.transition(&plan))
            .collect();
        let _ = tx.send(ts);
    };
    let results = app.provider.ensure_round_with(&specs, &on_batch).await;
    drop(tx);
    let _ = writer.await;
    let results = results.map_err(provider_err)?;
    let mut wave = Wave::default();
    for (pos, (b, r)) in batches.iter().zip(results).enumerate() {
        match r {
            Ok(machines) => wave.ensured.extend(ensured(&plan, b, machines)),
            Err(talis_provider::Error::RateLimited { retry_after }) => {
                wave.deferred.push(pos);
                wave.retry_after_ms = wave.retry_after_ms.max(retry_after.as_millis() as u64);
            }
            Err(e) if e.is_retryable() => return Err(HandlerError::from(e)),
            Err(e) => wave.ensured.extend(b.members.iter().map(|&index| Ensured {
                index,
                provider_ref: None,
                volumes: vec![],
                error: Some(e.to_string()),
            })),
        }
    }
    wave.ensured.sort_by_key(|e| e.index);
    Ok(Json(wave))
}

/// Step name under which machine creation is recorded.
pub(crate) const ENSURE_STEP: &str = "ensure machine";

/// A batch's ensured machines as the workflow journals them.
fn ensured(plan: &Plan, b: &Batch, machines: Vec<talis_provider::Ensured>) -> Vec<Ensured> {
    b.members
        .iter()
        .zip(machines)
        .map(|(&index, e)| {
            let inst = &plan.instances[index];
            Ensured {
                index,
                provider_ref: Some(e.machine.provider_ref),
                volumes: e
                    .volumes
                    .into_iter()
                    .map(|v| VolumeDetail {
                        mount_point: mount_point(inst, &v.name),
                        id: v.provider_ref,
                        name: v.name,
                        region: v.region,
                        size_gb: i64::from(v.size_gigabytes),
                    })
                    .collect(),
                error: None,
            }
        })
        .collect()
}

/// The provider's view of a batch: shared shape and script, each member's volumes.
fn machine_batch(plan: &Plan, b: &Batch) -> MachineBatch {
    MachineBatch {
        project_id: plan.project_id.clone(),
        region: b.region.clone(),
        size: b.size.clone(),
        image: b.image.clone(),
        ssh_keys: Vec::new(),
        user_data: Some(b.user_data.clone()),
        extra_tags: b.tags.clone(),
        members: b
            .members
            .iter()
            .map(|&i| {
                let inst = &plan.instances[i];
                BatchMember {
                    instance_id: inst.id.clone(),
                    name: inst.name.clone(),
                    volumes: inst
                        .volumes
                        .iter()
                        .map(|v| VolumeSpec {
                            instance_id: inst.id.clone(),
                            project_id: plan.project_id.clone(),
                            name: crate::plan::volume_name(&v.name, &inst.id),
                            region: inst.region.clone(),
                            size_gigabytes: v.size_gb,
                            filesystem_type: v.filesystem_type.clone(),
                        })
                        .collect(),
                }
            })
            .collect(),
    }
}

/// The mount point the owner asked for the volume the provider knows as `provider_name`.
fn mount_point(inst: &Inst, provider_name: &str) -> String {
    inst.volumes
        .iter()
        .find(|v| crate::plan::volume_name(&v.name, &inst.id) == provider_name)
        .map(|v: &Vol| v.mount_point.clone())
        .unwrap_or_default()
}

/// One machine's state from a project-wide poll: only what the workflow acts on.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Seen {
    pub provider_ref: String,
    pub public_ip: Option<String>,
}

/// One list call (paginated) for the whole project; returns the running machines among `refs`.
pub(crate) async fn poll_project(
    app: Arc<App>,
    project_id: String,
    refs: Vec<String>,
) -> HandlerResult<Json<Vec<Seen>>> {
    let machines = app
        .provider
        .list_project(&project_id)
        .await
        .map_err(provider_err)?;
    let wanted: std::collections::HashSet<String> = refs.into_iter().collect();
    Ok(Json(
        machines
            .into_iter()
            .filter(|m| m.is_running() && wanted.contains(&m.provider_ref))
            .map(|m| Seen {
                provider_ref: m.provider_ref,
                public_ip: m.public_ip,
            })
            .collect(),
    ))
}

pub(crate) fn provider_err(e: talis_provider::Error) -> HandlerError {
    if e.is_retryable() {
        HandlerError::from(e)
    } else {
        TerminalError::new_with_code(502, e.to_string()).into()
    }
}

/// Destroys the machines (by name in the project) and volumes (by instance tag) of the given
/// instances; Ok for what is already gone.
pub(crate) async fn destroy(
    app: Arc<App>,
    project_id: String,
    instance_ids: Vec<String>,
) -> HandlerResult<()> {
    app.provider
        .delete_machines(&project_id, &instance_ids)
        .await
        .map_err(provider_err)?;
    app.provider
        .delete_volumes(&instance_ids)
        .await
        .map_err(provider_err)
}

/// Destroys everything tagged for the project; returns how many machines are still listed
/// (deletion is asynchronous at the provider; the workflow polls until 0).
pub(crate) async fn destroy_project(
    app: Arc<App>,
    project_id: String,
    instance_ids: Vec<String>,
) -> HandlerResult<u64> {
    app.provider
        .delete_project(&project_id)
        .await
        .map_err(provider_err)?;
    app.provider
        .delete_volumes(&instance_ids)
        .await
        .map_err(provider_err)?;
    let left = app
        .provider
        .list_project(&project_id)
        .await
        .map_err(provider_err)?;
    Ok(left.len() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claim_answer_becomes_a_compact_plan() {
        let v = serde_json::json!({
            "claimed": true,
            "task": {"ID": 7, "owner_id": 1, "project_id": 3, "action": "create_instances",
                     "status": "running", "priority": 1, "attempts": 1, "instance_count": 1,
                     "logs": "", "error": "", "result": null, "created_at": "", "updated_at": "",
                     "dispatched_at": null, "finished_at": null, "invocation_id": "inv_1"},
            "project": {"ID": 3, "owner_id": 1, "name": "demo", "description": "", "config": "",
                        "status": "active", "created_at": "", "updated_at": ""},
            "requests": [{
                "provider_id": "do", "region": "nyc3", "size": "s-1vcpu-1gb",
                "image": "ubuntu-24-04-x64", "tags": ["env=prod"],
                "ssh_keys": [{"name": "me", "public_key": "ssh-ed25519 AAAA me"}],
                "volumes": [{"name": "data", "size_gb": 10, "region": "", "filesystem": "ext4", "mount_point": "/data"}],
                "provision": true, "payload": "echo hi", "execute_payload": true
            }],
            "instances": [{
                "ID": 11, "name": "web-1", "status": "pending", "provider_ref": "", "public_ip": "",
                "request": 0, "phone_home_url": "http://api/v1/phone-home/11?token=abc"
            }]
        });
        let claimed: ClaimedTask = match serde_json::from_value(v) {
            Ok(c) => c,
            Err(e) => panic!("the contract's claim answer: {e}"),
        };
        let p = plan_from_claim(claimed, "7");
        assert_eq!(p.project_id, "3");
        assert!(p.claimed);
        assert_eq!(p.action, Action::CreateInstances);
        let i = &p.instances[0];
        assert_eq!(i.id, "11");
        assert_eq!(i.status, "pending");
        assert_eq!(i.ssh_public_keys, vec!["ssh-ed25519 AAAA me"]);
        assert_eq!(i.volumes[0].size_gb, 10);
        assert_eq!(i.volumes[0].filesystem_type.as_deref(), Some("ext4"));
        assert_eq!(i.provider_ref, None);
        assert_eq!(p.payload(i), Some("echo hi"));
        assert_eq!(p.payloads.len(), 1);
        assert!(i.phone_home_url.is_some());
        assert!(wire_id("task_id", "x").is_err());
    }
}
