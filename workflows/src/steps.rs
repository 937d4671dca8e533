//! The side effects of the workflows: provider and internal-RPC calls executed inside journaled
//! `ctx.run` steps. Each returns small, id-only results and classifies its errors once:
//! retryable (5xx, 429, timeouts, component restarting) → `HandlerError` (Restate retries the
//! step with its policy); terminal (4xx with the provider's message) → recorded as an outcome.

use std::sync::Arc;
use std::time::Duration;

use restate_sdk::prelude::*;
use serde::{Deserialize, Serialize};
use talis_api::internal::{
    ChunkRange, ClaimedTask, FinalStatus, InstanceTransition, InstanceTransitionBatch, Progress,
    TaskChunk, TaskClaim, TaskFinish, TaskProgress, TaskTransitionAll, TransitionsApplied,
};
use talis_api::methods::internal as m;
use talis_api::{InstanceId, InstanceStatus, TaskId, VolumeDetail};

use crate::App;
use crate::metrics;
use crate::plan::{ChunkRef, Plan};
use crate::rpc::RpcError;
use crate::wait::Seen;

/// Step names recorded with the transitions they make (the task's history shows them).
pub mod names {
    pub const CLAIM: &str = "claim";
    pub const PLAN: &str = "plan chunk";
    pub const ENSURE: &str = "ensure machines";
    pub const RECORD_CREATED: &str = "machine created";
    pub const RATE_LIMIT_WAITED: &str = "rate limit waited";
    pub const UNWANTED: &str = "destroy unwanted";
    pub const LOOK: &str = "look";
    pub const POLL: &str = "poll machines";
    pub const RUNNING: &str = "machine running";
    pub const TIMEOUT: &str = "provisioning timeout";
    pub const COMPENSATE: &str = "destroy failed";
    pub const TERMINATE: &str = "terminate";
    pub const DESTROY: &str = "destroy machines";
    pub const TERMINATED: &str = "machines gone";
    pub const DELETE_PROJECT: &str = "delete project";
    pub const DESTROY_PROJECT: &str = "destroy project";
    pub const FINISH: &str = "finish";
    // Housekeeping.
    pub const DEPLOYMENT: &str = "deployment";
    pub const LIST_DEPLOYMENT: &str = "list deployment machines";
    pub const LIVE: &str = "live instances";
    pub const DESTROY_ORPHANS: &str = "destroy orphans";
    pub const RECORD_RECONCILE: &str = "record reconcile";
    pub const PURGE_EVENTS: &str = "purge events";
}

/// The shortest durable sleep for a rate limit (a `retry-after` of 0 still waits this long).
const MIN_RATE_LIMIT_SLEEP: Duration = Duration::from_millis(200);

pub(crate) fn rpc_err(e: RpcError) -> HandlerError {
    if e.is_retryable() {
        HandlerError::from(e)
    } else {
        TerminalError::new_with_code(409, e.to_string()).into()
    }
}

pub(crate) fn provider_err(e: talis_provider::Error) -> HandlerError {
    if e.is_retryable() {
        HandlerError::from(e)
    } else {
        TerminalError::new_with_code(502, e.to_string()).into()
    }
}

/// `task.claim`, reduced to what the workflow journals (no instance lists: chunks are planned
/// one by one).
pub(crate) async fn claim(
    app: Arc<App>,
    task: TaskId,
    invocation_id: String,
) -> HandlerResult<Json<ClaimedTask>> {
    let p = TaskClaim {
        task_id: task,
        invocation_id,
        chunk_size: app.config.chunk_size,
    };
    metrics::step(names::CLAIM, app.rpc.call::<m::TaskClaim>(&p))
        .await
        .map(Json)
        .map_err(rpc_err)
}

/// `task.chunk`: one chunk planned.
pub(crate) async fn plan(app: Arc<App>, at: ChunkRef) -> HandlerResult<Json<Plan>> {
    let p = TaskChunk {
        task_id: at.task,
        range: at.range,
    };
    let c = metrics::step(names::PLAN, app.rpc.call::<m::TaskChunk>(&p))
        .await
        .map_err(rpc_err)?;
    Ok(Json(Plan::new(at, c)))
}

/// Records transitions and their step events in one `instance.transitionBatch` call (one
/// transaction; replays are no-ops). Refusals come back typed, not retried.
pub(crate) async fn record(
    app: Arc<App>,
    task: TaskId,
    step: &'static str,
    transitions: Vec<InstanceTransition>,
) -> HandlerResult<Json<TransitionsApplied>> {
    metrics::step(step, record_now(app, task, step, transitions))
        .await
        .map(Json)
}

/// [`record`] without its step timing (the early records inside an ensure step).
async fn record_now(
    app: Arc<App>,
    task: TaskId,
    step: &'static str,
    transitions: Vec<InstanceTransition>,
) -> HandlerResult<TransitionsApplied> {
    let p = InstanceTransitionBatch {
        task_id: task,
        step: step.to_owned(),
        transitions,
    };
    app.rpc
        .call::<m::InstanceTransitionBatch>(&p)
        .await
        .map_err(rpc_err)
}

/// Every instance of the task that can go to `to` does (a whole project at once).
pub(crate) async fn transition_all(
    app: Arc<App>,
    task: TaskId,
    step: &'static str,
    to: InstanceStatus,
    error: Option<String>,
) -> HandlerResult<()> {
    let p = TaskTransitionAll {
        task_id: task,
        step: step.to_owned(),
        to,
        error,
    };
    metrics::step(step, app.rpc.call::<m::TaskTransitionAll>(&p))
        .await
        .map(drop)
        .map_err(rpc_err)
}

pub(crate) async fn finish(
    app: Arc<App>,
    task: TaskId,
    status: FinalStatus,
    result: serde_json::Value,
    error: Option<String>,
) -> HandlerResult<()> {
    let p = TaskFinish {
        task_id: task,
        status,
        result: Some(result).filter(|r| !r.is_null()),
        error,
    };
    metrics::step(names::FINISH, app.rpc.call::<m::TaskFinish>(&p))
        .await
        .map(drop)
        .map_err(rpc_err)
}

/// Where a chunk's instances stand, and the time of the look (journaled with it, so the
/// waiting decisions replay identically).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Looked {
    pub progress: Progress,
    pub now_ms: i64,
}

pub(crate) async fn look(
    app: Arc<App>,
    task: TaskId,
    range: ChunkRange,
) -> HandlerResult<Json<Looked>> {
    let p = TaskProgress {
        task_id: task,
        range,
    };
    let progress = metrics::step(names::LOOK, app.rpc.call::<m::TaskProgress>(&p))
        .await
        .map_err(rpc_err)?;
    Ok(Json(Looked {
        progress,
        now_ms: now_ms(),
    }))
}

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
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
    pub(crate) fn transition(&self, plan: &Plan) -> InstanceTransition {
        let to = if self.error.is_some() {
            InstanceStatus::Failed
        } else {
            InstanceStatus::Created
        };
        InstanceTransition {
            provider_ref: self.provider_ref.clone(),
            volumes: Some(self.volumes.clone()).filter(|v| !v.is_empty()),
            error: self.error.clone(),
            ..InstanceTransition::to(plan.instances[self.index].id, to)
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

impl Wave {
    /// The durable sleep before ensuring the deferred batches again.
    pub(crate) fn rate_limit_sleep(&self) -> Duration {
        Duration::from_millis(self.retry_after_ms).max(MIN_RATE_LIMIT_SLEEP)
    }
}

/// Ensures the machines of several batches in one provider round: one look-up of the project
/// (and of the volumes, if any instance has some), then one multi-create per batch, or per
/// machine with volumes. Creation is idempotent by machine name, so a retried step finds what
/// an earlier attempt made. The scripts are made here, with phone-home URLs that expire one
/// provision timeout from now. A terminal provider error fails the members of its batch with
/// the provider's message; a rate limit defers the batch; another retryable error fails the
/// step so Restate retries it. `start` says whether the round first lets an earlier attempt's
/// creates land, and whether it looks up before creating ([`crate::plan::round_start`]).
pub(crate) async fn ensure(
    app: Arc<App>,
    plan: Arc<Plan>,
    batches: Vec<Vec<usize>>,
    start: talis_provider::RoundStart,
) -> HandlerResult<Json<Wave>> {
    let wave = metrics::step(names::ENSURE, ensure_now(app, plan, batches, start)).await?;
    // Counted here, in the step that decides it, not where the workflow sleeps (replayed).
    if !wave.deferred.is_empty() {
        metrics::workflow_rate_limit_wait(wave.rate_limit_sleep());
    }
    Ok(Json(wave))
}

async fn ensure_now(
    app: Arc<App>,
    plan: Arc<Plan>,
    batches: Vec<Vec<usize>>,
    start: talis_provider::RoundStart,
) -> HandlerResult<Wave> {
    let expires = now_ms() / 1000 + app.config.provision_timeout().as_secs() as i64;
    let secret = app.config.internal_secret.as_str();
    let specs: Vec<talis_provider::MachineBatch> = batches
        .iter()
        .map(|b| plan.machine_batch(b, plan.user_data(b, Some((secret, expires)))))
        .collect();
    // Each batch's `created` is recorded as soon as the batch is made, so an owner sees steady
    // progress and its machines' phone-homes find them; the workflow records the whole step
    // again from the journal (same transitions: no-ops), which stays the source of truth. One
    // writer, coalescing the batches that arrive while it writes: concurrent transactions would
    // contend for SQLite's write lock.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Vec<InstanceTransition>>();
    let writer = {
        let (app, task) = (app.clone(), plan.at.task);
        tokio::spawn(async move {
            while let Some(mut ts) = rx.recv().await {
                while let Ok(more) = rx.try_recv() {
                    ts.extend(more);
                }
                // Best effort: a failure is repaired by the journaled record after the step.
                let _ = record_now(app.clone(), task, names::RECORD_CREATED, ts).await;
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
    let results = app
        .provider
        .ensure_round_with(&specs, start, &on_batch)
        .await;
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
            Err(e) => wave.ensured.extend(b.iter().map(|&index| Ensured {
                index,
                provider_ref: None,
                volumes: vec![],
                error: Some(e.to_string()),
            })),
        }
    }
    wave.ensured.sort_by_key(|e| e.index);
    Ok(wave)
}

/// A batch's ensured machines as the workflow journals them.
fn ensured(plan: &Plan, batch: &[usize], machines: Vec<talis_provider::Ensured>) -> Vec<Ensured> {
    batch
        .iter()
        .zip(machines)
        .map(|(&index, e)| Ensured {
            index,
            provider_ref: Some(e.machine.provider_ref),
            volumes: e
                .volumes
                .into_iter()
                .map(|v| VolumeDetail {
                    mount_point: plan.mount_point(index, &v.name),
                    id: v.provider_ref,
                    name: v.name,
                    region: v.region,
                    size_gb: i64::from(v.size_gigabytes),
                })
                .collect(),
            error: None,
        })
        .collect()
}

/// One list call (paginated) of the machines carrying `tag`.
pub(crate) async fn poll(app: Arc<App>, tag: String) -> HandlerResult<Json<Vec<Seen>>> {
    let machines = metrics::step(names::POLL, app.provider.list_tagged(&tag))
        .await
        .map_err(provider_err)?;
    Ok(Json(
        machines
            .into_iter()
            .map(|m| Seen {
                running: m.is_running(),
                public_ip: m.public_ip,
                provider_ref: m.provider_ref,
            })
            .collect(),
    ))
}

/// Destroys the machines (by name in the project) and volumes (by instance tag) of the given
/// instance keys; Ok for what is already gone.
pub(crate) async fn destroy(
    app: Arc<App>,
    step: &'static str,
    project_key: String,
    instance_keys: Vec<String>,
) -> HandlerResult<()> {
    if instance_keys.is_empty() {
        return Ok(());
    }
    metrics::step(step, async {
        app.provider
            .delete_machines(&project_key, &instance_keys)
            .await?;
        app.provider.delete_volumes(&instance_keys).await
    })
    .await
    .map_err(provider_err)
}

/// Destroys everything tagged for the project (machines and volumes); returns how many machines
/// are still listed (deletion is asynchronous at the provider; the workflow polls until 0).
pub(crate) async fn destroy_project(app: Arc<App>, project_key: String) -> HandlerResult<u64> {
    metrics::step(names::DESTROY_PROJECT, async {
        app.provider.delete_project(&project_key).await?;
        app.provider.list_project(&project_key).await
    })
    .await
    .map(|left| left.len() as u64)
    .map_err(provider_err)
}

/// The instances of `ids` known to the API as still possibly having a machine.
pub(crate) async fn live(
    app: Arc<App>,
    ids: Vec<InstanceId>,
) -> HandlerResult<Json<Vec<InstanceId>>> {
    let p = talis_api::internal::InstanceLive { instance_ids: ids };
    metrics::step(names::LIVE, app.rpc.call::<m::InstanceLive>(&p))
        .await
        .map(|l| Json(l.live))
        .map_err(rpc_err)
}
