//! `TaskWorkflow`: one per task, keyed by the task id (so the component's trigger is
//! idempotent). It claims the task, runs its chunks (inline for a task of one chunk, as
//! `TaskChunk` children otherwise), or deletes a whole project, and finishes the task with the
//! merged outcome. Every side effect is a named journaled step (see `steps`).

use std::sync::Arc;
use std::time::Duration;

use restate_sdk::prelude::*;
use serde_json::Value;
use talis_api::internal::{ClaimedTask, FinalStatus};
use talis_api::{InstanceStatus, TaskAction, TaskId};

use crate::App;
use crate::chunk::{self, CANCEL, TaskChunkClient};
use crate::plan::{ChunkRef, Keys, Outcome};
use crate::policy::rpc_policy;
use crate::steps::{self, names};

/// Polls after a project delete before giving up on machines the provider still lists.
const DELETE_POLLS: usize = 60;
/// State key: how many `TaskChunk` children the task runs (read by `cancel`).
const CHILDREN: &str = "children";
/// State key: the task's phase, for the `status` handler.
const PHASE: &str = "phase";

/// The key of a task's chunk workflow.
fn child_key(task: TaskId, chunk: usize) -> String {
    format!("{task}.{chunk}")
}

pub struct TaskWorkflow(pub Arc<App>);

/// Executes one Talis task (create instances, terminate instances, delete a project).
#[restate_sdk::workflow(
    name = "TaskWorkflow",
    invocation_retry_policy(
        initial_interval = "100ms",
        factor = 2.0,
        max_interval = "5s",
        on_max_attempts = "pause"
    )
)]
impl TaskWorkflow {
    /// Runs the task keyed by this workflow's key. The body of the trigger is ignored.
    #[handler]
    async fn run(
        &self,
        ctx: WorkflowContext<'_>,
        _trigger: Option<Json<Value>>,
    ) -> HandlerResult<Json<Value>> {
        let _active = crate::metrics::ActiveTask::start();
        let task: TaskId = ctx
            .key()
            .parse()
            .map_err(|e: String| TerminalError::new_with_code(400, format!("workflow key: {e}")))?;
        let app = self.0.clone();
        match execute(&ctx, app.clone(), task).await {
            Ok(v) => Ok(Json(v)),
            Err(e) => {
                // A terminal failure of any step still finishes the task as failed (with the
                // step's message), so no task is left `running` behind a dead workflow.
                let error = Some(format!("workflow step failed: {}", e.message()));
                let _ = ctx
                    .run(|| steps::finish(app, task, FinalStatus::Failed, Value::Null, error))
                    .name(format!("{} {:?}", names::FINISH, FinalStatus::Failed))
                    .retry_policy(rpc_policy())
                    .await;
                Err(e.into())
            }
        }
    }

    /// Asks the running task to stop (its owner terminated it): each chunk destroys what it made
    /// and the task ends `terminated`. The task's row already says so; this only wakes the
    /// chunks instead of letting them see it at their next look.
    #[handler]
    async fn cancel(
        &self,
        ctx: SharedWorkflowContext<'_>,
        _reason: Option<Json<Value>>,
    ) -> HandlerResult<()> {
        if ctx.peek_promise::<String>(CANCEL).await?.is_none() {
            ctx.resolve_promise(CANCEL, "requested".to_string());
        }
        let task: TaskId = ctx
            .key()
            .parse()
            .map_err(|e: String| TerminalError::new(e))?;
        let children = ctx.get::<u64>(CHILDREN).await?.unwrap_or(0);
        for n in 0..children as usize {
            ctx.workflow_client::<TaskChunkClient>(child_key(task, n))
                .cancel()
                .send();
        }
        Ok(())
    }

    /// The task's phase as last journaled.
    #[handler]
    async fn status(&self, ctx: SharedWorkflowContext<'_>) -> HandlerResult<String> {
        Ok(ctx.get::<String>(PHASE).await?.unwrap_or_default())
    }
}

async fn execute(
    ctx: &WorkflowContext<'_>,
    app: Arc<App>,
    task: TaskId,
) -> Result<Value, TerminalError> {
    let invocation_id = ctx.invocation_id().to_string();
    let a = app.clone();
    let claim: ClaimedTask = ctx
        .run(|| steps::claim(a, task, invocation_id))
        .name(names::CLAIM)
        .retry_policy(rpc_policy())
        .await?
        .into_inner();
    if !claim.claimed {
        return Ok(serde_json::json!({ "skipped": "task already finished" }));
    }
    let keys = Keys::new(&claim.deployment).map_err(|e| TerminalError::new_with_code(500, e))?;
    let action = claim.task.action;
    ctx.set(PHASE, format!("{action}"));
    let outcome = match action {
        TaskAction::DeleteProject => delete_project(ctx, &app, task, &keys, &claim).await?,
        TaskAction::CreateInstances | TaskAction::TerminateInstances => {
            let at = |n: usize| ChunkRef {
                task,
                project: claim.project.id,
                action,
                chunk: n as u32,
                range: claim.chunks[n],
                keys: keys.clone(),
                public_url: claim.public_url.clone(),
                first_run: claim.task.attempts == 1,
            };
            match claim.chunks.len() {
                0 => Outcome::default(),
                1 => chunk::run(ctx, app.clone(), at(0)).await?,
                n => {
                    ctx.set(CHILDREN, n as u64);
                    let mut children = DurableFuturesUnordered::new();
                    for c in 0..n {
                        children.push(
                            ctx.workflow_client::<TaskChunkClient>(child_key(task, c))
                                .run(Json(at(c)))
                                .call(),
                        );
                    }
                    let mut outcome = Outcome::default();
                    while let Some((_, done)) = children.next().await? {
                        outcome.merge(done?.into_inner());
                    }
                    outcome
                }
            }
        }
    };
    let status = outcome.task_status(action);
    let (result, error) = (outcome.to_result(), outcome.error(action));
    let r = result.clone();
    ctx.run(|| steps::finish(app, task, status, r, error))
        .name(format!("{} {status:?}", names::FINISH))
        .retry_policy(rpc_policy())
        .await?;
    ctx.set(PHASE, format!("{status:?}"));
    Ok(result)
}

/// Destroys everything tagged for the project and waits until the provider lists none; the
/// instances move together (one transaction each way), however many there are.
async fn delete_project(
    ctx: &WorkflowContext<'_>,
    app: &Arc<App>,
    task: TaskId,
    keys: &Keys,
    claim: &ClaimedTask,
) -> Result<Outcome, TerminalError> {
    let a = app.clone();
    ctx.run(|| {
        steps::transition_all(
            a,
            task,
            names::DELETE_PROJECT,
            InstanceStatus::Terminating,
            None,
        )
    })
    .name(format!("record {}", names::DELETE_PROJECT))
    .retry_policy(rpc_policy())
    .await?;
    let project = keys.project(claim.project.id);
    let mut left = 0;
    for n in 0..DELETE_POLLS {
        let (a, p) = (app.clone(), project.clone());
        left = ctx
            .run(|| steps::destroy_project(a, p))
            .name(format!("{} #{n}", names::DESTROY_PROJECT))
            .retry_policy(rpc_policy())
            .await?;
        if left == 0 {
            break;
        }
        ctx.sleep(Duration::from_secs(1)).await?;
    }
    let total: u32 = claim.chunks.iter().map(|c| c.count).sum();
    if left > 0 {
        let error = format!("{left} machines still listed after deleting the project");
        let a = app.clone();
        let e = error.clone();
        ctx.run(|| {
            steps::transition_all(
                a,
                task,
                names::DELETE_PROJECT,
                InstanceStatus::Terminating,
                Some(e),
            )
        })
        .name(format!("record {} error", names::DELETE_PROJECT))
        .retry_policy(rpc_policy())
        .await?;
        return Ok(Outcome {
            counts: [(InstanceStatus::Terminating, total)].into(),
            ..Outcome::default()
        });
    }
    let a = app.clone();
    ctx.run(|| steps::transition_all(a, task, names::TERMINATED, InstanceStatus::Terminated, None))
        .name(format!("record {}", names::TERMINATED))
        .retry_policy(rpc_policy())
        .await?;
    Ok(Outcome {
        counts: [(InstanceStatus::Terminated, total)].into(),
        ..Outcome::default()
    })
}
