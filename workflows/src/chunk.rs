//! One chunk of a task (at most `TALIS_CHUNK_SIZE` instances): plan it, make or destroy its
//! machines, wait for them, record every outcome. A task of one chunk runs this inside its own
//! `TaskWorkflow`; a larger task runs each chunk as a `TaskChunk` child workflow, so no journal
//! entry or message grows with the size of the task.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use restate_sdk::prelude::*;
use talis_api::internal::{InstanceTransition, Progress};
use talis_api::{InstanceId, InstanceStatus, TaskAction};

use crate::App;
use crate::plan::{self, ChunkRef, Failure, Outcome, Plan};
use crate::policy::{provider_policy, rpc_policy};
use crate::steps::{self, Looked, Wave, names};
use crate::wait::{self, Look, Recorded, Wait};

/// Machines ensured per journaled step: one provider round (one project look-up, then the
/// creates), recorded as soon as it returns.
const ROUND_MEMBERS: usize = 100;
/// First pause between two looks at a chunk's progress; doubles up to `TALIS_POLL_MAX_MS`.
const FIRST_LOOK: Duration = Duration::from_millis(300);
/// The durable promise the `cancel` handler resolves: it wakes a waiting chunk at once (the
/// chunk would otherwise see the task terminated at its next look).
pub(crate) const CANCEL: &str = "cancel";

/// A chunk of a large task, as a child workflow keyed `<task>.<chunk>`.
pub struct TaskChunk(pub Arc<App>);

#[restate_sdk::workflow(
    name = "TaskChunk",
    invocation_retry_policy(
        initial_interval = "100ms",
        factor = 2.0,
        max_interval = "5s",
        on_max_attempts = "pause"
    )
)]
impl TaskChunk {
    /// Runs the chunk; the answer is its outcome (counts and failures).
    #[handler]
    async fn run(
        &self,
        ctx: WorkflowContext<'_>,
        at: Json<ChunkRef>,
    ) -> HandlerResult<Json<Outcome>> {
        Ok(Json(run(&ctx, self.0.clone(), at.into_inner()).await?))
    }

    /// Wakes the chunk: its task was terminated, so it stops and destroys what it made.
    #[handler]
    async fn cancel(&self, ctx: SharedWorkflowContext<'_>) -> HandlerResult<()> {
        if ctx.peek_promise::<String>(CANCEL).await?.is_none() {
            ctx.resolve_promise(CANCEL, "requested".to_string());
        }
        Ok(())
    }
}

/// Runs one chunk inside `ctx` (its own `TaskChunk`, or the task's workflow for a task of one
/// chunk).
pub(crate) async fn run(
    ctx: &WorkflowContext<'_>,
    app: Arc<App>,
    at: ChunkRef,
) -> Result<Outcome, TerminalError> {
    let a = app.clone();
    let ran = Arc::new(AtomicBool::new(false));
    let r = ran.clone();
    let plan = ctx
        .run(|| {
            r.store(true, Ordering::Relaxed);
            steps::plan(a, at)
        })
        .name(names::PLAN)
        .retry_policy(rpc_policy())
        .await?
        .into_inner();
    let mut chunk = Chunk {
        ctx,
        app,
        plan: Arc::new(plan),
        ran,
        records: 0,
        looks: 0,
        last: None,
    };
    if chunk.plan.task_status.is_terminal() {
        return chunk.stop().await;
    }
    match chunk.plan.at.action {
        TaskAction::CreateInstances => chunk.create().await,
        TaskAction::TerminateInstances => chunk.terminate().await,
        TaskAction::DeleteProject => {
            Err(TerminalError::new("a project delete is not run in chunks"))
        }
    }
}

struct Chunk<'a, 'ctx> {
    ctx: &'a WorkflowContext<'ctx>,
    app: Arc<App>,
    plan: Arc<Plan>,
    /// Whether a step of this chunk has run in this attempt of the invocation, rather than
    /// being replayed from the journal (see [`Chunk::ensure`]).
    ran: Arc<AtomicBool>,
    /// Record steps so far (numbers their names).
    records: usize,
    looks: usize,
    /// The last look at the chunk's progress.
    last: Option<Progress>,
}

impl Chunk<'_, '_> {
    async fn create(&mut self) -> Result<Outcome, TerminalError> {
        let todo = self.plan.to_create();
        let rounds = plan::rounds(
            plan::batches(&self.plan, &todo, self.app.provider.max_batch()),
            ROUND_MEMBERS,
        );
        for (r, round) in rounds.into_iter().enumerate() {
            let mut todo = round;
            for attempt in 0.. {
                let wave = self
                    .ensure(&todo, attempt, format!("{} #{r}.{attempt}", names::ENSURE))
                    .await?;
                let ts = wave
                    .ensured
                    .iter()
                    .map(|e| e.transition(&self.plan))
                    .collect();
                let recorded = self.record(names::RECORD_CREATED, ts).await?;
                if !recorded.unwanted.is_empty() {
                    self.destroy(names::UNWANTED, &recorded.unwanted).await?;
                }
                if recorded.stop {
                    return self.stop().await;
                }
                if wave.deferred.is_empty() {
                    break;
                }
                // The provider's rate limit: wait it out durably, then ensure what is left.
                todo = wave.deferred.iter().map(|&i| todo[i].clone()).collect();
                self.ctx.sleep(wave.rate_limit_sleep()).await?;
                // A long sleep may suspend the invocation: journal that it ended, so the next
                // ensure does not take the new attempt for a resumed round and wait to settle.
                self.ctx
                    .run(|| self.running(async { Ok(()) }))
                    .name(format!("{} #{r}.{attempt}", names::RATE_LIMIT_WAITED))
                    .await?;
            }
        }
        let phone_home = !self.plan.at.public_url.is_empty();
        let mut wait: Option<Wait> = None;
        loop {
            let looked = self.look().await?;
            let w = wait.get_or_insert_with(|| {
                let c = &self.app.config;
                Wait::new(
                    looked.now_ms,
                    c.provision_timeout(),
                    phone_home,
                    FIRST_LOOK,
                    c.poll_max(),
                )
            });
            match w.look(&looked.progress, looked.now_ms) {
                Look::Done => break,
                Look::Stopped => return self.stop().await,
                Look::Wait {
                    record,
                    poll,
                    sleep,
                } => {
                    if !record.is_empty() {
                        if self.record(names::TIMEOUT, record).await?.stop {
                            return self.stop().await;
                        }
                        continue;
                    }
                    if poll && wait::any_made(&looked.progress.waiting) {
                        let seen = self.poll().await?;
                        let ts = w.seen(&looked.progress.waiting, &seen);
                        if !ts.is_empty() && self.record(names::RUNNING, ts).await?.stop {
                            return self.stop().await;
                        }
                    }
                    restate_sdk::select! {
                        _ = self.ctx.sleep(sleep) => {},
                        _ = self.ctx.promise::<String>(CANCEL) => {},
                    }
                }
            }
        }
        let failed: Vec<InstanceId> = self
            .last
            .as_ref()
            .map(|p| p.failed.iter().map(|f| f.id).collect())
            .unwrap_or_default();
        self.destroy(names::COMPENSATE, &failed).await?;
        Ok(self.outcome(false))
    }

    /// Terminates the chunk's live instances: `terminating`, destroy, `terminated`.
    async fn terminate(&mut self) -> Result<Outcome, TerminalError> {
        let live: Vec<InstanceId> = self
            .plan
            .live()
            .into_iter()
            .map(|i| self.plan.instances[i].id)
            .collect();
        self.end_all(&live).await?;
        self.look().await?;
        Ok(self.outcome(false))
    }

    /// The task is finished (stopped by its owner): destroy every machine of the chunk and
    /// record it (a finished task may still record the compensation of its instances).
    async fn stop(&mut self) -> Result<Outcome, TerminalError> {
        let all: Vec<InstanceId> = self.plan.instances.iter().map(|i| i.id).collect();
        self.end_all(&all).await?;
        self.look().await?;
        Ok(self.outcome(true))
    }

    async fn end_all(&mut self, ids: &[InstanceId]) -> Result<(), TerminalError> {
        let to = |s: InstanceStatus| {
            ids.iter()
                .map(|&id| InstanceTransition::to(id, s))
                .collect()
        };
        self.record(names::TERMINATE, to(InstanceStatus::Terminating))
            .await?;
        self.destroy(names::DESTROY, ids).await?;
        self.record(names::TERMINATED, to(InstanceStatus::Terminated))
            .await?;
        Ok(())
    }

    fn outcome(&self, stopped: bool) -> Outcome {
        let p = self.last.as_ref();
        let failures = p
            .map(|p| {
                p.failed
                    .iter()
                    .take(plan::MAX_FAILURES)
                    .map(|f| Failure {
                        instance_id: f.id,
                        name: self
                            .plan
                            .index_of(f.id)
                            .map(|i| self.plan.instances[i].name.clone())
                            .unwrap_or_default(),
                        error: f.error.clone(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        Outcome {
            counts: p.map(|p| p.counts.clone()).unwrap_or_default(),
            failures,
            stopped,
        }
    }

    /// One ensure round as a journaled step. A step is journaled only once it returns, so when
    /// this is the first step to run in this attempt (everything before it was replayed) an
    /// earlier attempt — a killed replica, or one cut off from a failed Restate node — may
    /// have sent its creates, which can still land after a prompt look-up: the step then
    /// waits the provider's settle time first. Once any step has run in this attempt, every
    /// later step is new, so a healthy run never waits. (A failed step is retried by a new
    /// attempt, never in place: the SDK's run closure is `FnOnce`.)
    async fn ensure(
        &self,
        batches: &[Vec<usize>],
        attempt: usize,
        name: String,
    ) -> Result<Wave, TerminalError> {
        let (app, plan, b) = (self.app.clone(), self.plan.clone(), batches.to_vec());
        let ran = self.ran.clone();
        match self
            .ctx
            .run(|| {
                let resumed = !ran.swap(true, Ordering::Relaxed);
                let start = plan::round_start(plan.at.first_run, resumed, attempt);
                steps::ensure(app, plan, b, start)
            })
            .name(name)
            .retry_policy(provider_policy())
            .await
        {
            Ok(w) => Ok(w.into_inner()),
            // The provider kept failing: the round's instances fail with its message (and any
            // machine made meanwhile is found and destroyed by name when they are compensated).
            Err(e) => Ok(Wave {
                ensured: batches
                    .iter()
                    .flatten()
                    .map(|&index| steps::Ensured {
                        index,
                        provider_ref: None,
                        volumes: vec![],
                        error: Some(e.message().to_string()),
                    })
                    .collect(),
                ..Wave::default()
            }),
        }
    }

    /// Marks that a step runs in this attempt (its closure is called only when it is not
    /// replayed) and gives its future.
    fn running<F>(&self, step: F) -> F {
        self.ran.store(true, Ordering::Relaxed);
        step
    }

    /// Records transitions (one journaled step, one transaction) and says what the answer means.
    async fn record(
        &mut self,
        step: &'static str,
        ts: Vec<InstanceTransition>,
    ) -> Result<Recorded, TerminalError> {
        if ts.is_empty() {
            return Ok(Recorded::default());
        }
        self.records += 1;
        let (app, task) = (self.app.clone(), self.plan.at.task);
        let applied = self
            .ctx
            .run(|| self.running(steps::record(app, task, step, ts)))
            .name(format!("record {step} #{}", self.records))
            .retry_policy(rpc_policy())
            .await?
            .into_inner();
        Ok(wait::recorded(&applied))
    }

    async fn look(&mut self) -> Result<Looked, TerminalError> {
        self.looks += 1;
        let (app, task, range) = (self.app.clone(), self.plan.at.task, self.plan.at.range);
        let looked = self
            .ctx
            .run(|| self.running(steps::look(app, task, range)))
            .name(format!("{} #{}", names::LOOK, self.looks))
            .retry_policy(rpc_policy())
            .await?
            .into_inner();
        self.last = Some(looked.progress.clone());
        Ok(looked)
    }

    async fn poll(&self) -> Result<Vec<wait::Seen>, TerminalError> {
        let app = self.app.clone();
        let tag = self
            .plan
            .at
            .keys
            .chunk_tag(self.plan.at.task, self.plan.at.chunk);
        Ok(self
            .ctx
            .run(|| self.running(steps::poll(app, tag)))
            .name(format!("{} #{}", names::POLL, self.looks))
            .retry_policy(provider_policy())
            .await
            .map(Json::into_inner)
            .unwrap_or_default())
    }

    async fn destroy(&self, step: &'static str, ids: &[InstanceId]) -> Result<(), TerminalError> {
        if ids.is_empty() {
            return Ok(());
        }
        let app = self.app.clone();
        let keys = &self.plan.at.keys;
        let project = keys.project(self.plan.at.project);
        let instance_keys: Vec<String> = ids.iter().map(|&id| keys.instance(id)).collect();
        self.ctx
            .run(|| self.running(steps::destroy(app, step, project, instance_keys)))
            .name(step)
            .retry_policy(rpc_policy())
            .await
    }
}
