//! `TaskWorkflow`: the durable orchestration. Every side effect is a named `ctx.run` step (see
//! `steps`); waiting is durable (promises for phone-home and cancel, `ctx.sleep` between
//! project-wide polls), so a crash of this process, of Restate or of the component resumes from
//! the journal without repeating finished steps.

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use restate_sdk::context::DurableFuture;
use restate_sdk::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::App;
use crate::plan::{self, Action, InstanceOutcome, Plan, Summary};
use crate::steps::{self, Ensured, Seen, Transition, Wave};

/// Machines ensured per journaled step: one provider round (one project look-up, then the
/// creates), recorded as soon as it returns.
const ROUND_MEMBERS: usize = 100;
/// Transitions recorded per journaled step (one internal call, one transaction).
const RECORDS_PER_STEP: usize = 500;
/// Phone-homes arriving within this window are recorded in one step.
const PHONE_HOME_WINDOW: Duration = Duration::from_millis(30);
/// First pause between project polls; doubles up to `Config::poll_max`.
const FIRST_POLL: Duration = Duration::from_millis(500);
/// Polls after a project delete before giving up on machines the provider still lists.
const DELETE_POLLS: usize = 60;

/// Name of the durable promise a machine's phone-home resolves (keyed by the machine, because
/// a multi-create shares one script, so the script cannot name its instance).
fn home_key(provider_ref: &str) -> String {
    format!("home:{provider_ref}")
}
const CANCEL: &str = "cancel";

/// What a machine's phone-home reports (the fake cloud and the real script send the same).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PhoneHome {
    #[serde(default)]
    pub public_ip: Option<String>,
    #[serde(default)]
    pub status: Option<String>,
}

/// Retries for internal RPC steps: the component may be restarting, so never give up (the
/// invocation stays visible in the Restate UI meanwhile).
fn rpc_policy() -> RunRetryPolicy {
    RunRetryPolicy::new()
        .initial_delay(Duration::from_millis(100))
        .exponentiation_factor(2.0)
        .max_delay(Duration::from_secs(2))
}

/// Retries for provider steps: transient errors back off up to ~2 minutes in total, then the
/// step fails terminally and its instances are failed with the last error.
fn provider_policy() -> RunRetryPolicy {
    RunRetryPolicy::new()
        .initial_delay(Duration::from_millis(200))
        .exponentiation_factor(2.0)
        .max_delay(Duration::from_secs(10))
        .max_attempts(20)
        .max_duration(Duration::from_secs(120))
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
        let app = self.0.clone();
        Runner::start(&ctx, app).await
    }

    /// A machine finished its script: resolves its promise (idempotent: repeats are ignored).
    #[handler]
    async fn phone_home(
        &self,
        ctx: SharedWorkflowContext<'_>,
        body: Json<Value>,
    ) -> HandlerResult<()> {
        let body = body.into_inner();
        let droplet = match body.get("droplet_id") {
            Some(Value::Number(n)) => n.to_string(),
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            _ => {
                return Err(TerminalError::new_with_code(
                    400,
                    "droplet_id: required (number or string)",
                )
                .into());
            }
        };
        let home = PhoneHome {
            public_ip: body
                .get("public_ip")
                .and_then(Value::as_str)
                .map(str::to_string),
            status: body
                .get("status")
                .and_then(Value::as_str)
                .map(str::to_string),
        };
        let key = home_key(&droplet);
        if ctx.peek_promise::<Json<PhoneHome>>(&key).await?.is_none() {
            ctx.resolve_promise(&key, Json(home));
        }
        Ok(())
    }

    /// Asks the running task to stop: it destroys what it created and ends `terminated`.
    #[handler]
    async fn cancel(
        &self,
        ctx: SharedWorkflowContext<'_>,
        _reason: Option<Json<Value>>,
    ) -> HandlerResult<()> {
        if ctx.peek_promise::<String>(CANCEL).await?.is_none() {
            ctx.resolve_promise(CANCEL, "requested".to_string());
        }
        Ok(())
    }

    /// Progress of the task as last journaled (phase and counts by status).
    #[handler]
    async fn status(&self, ctx: SharedWorkflowContext<'_>) -> HandlerResult<Json<Value>> {
        Ok(Json(
            ctx.get::<Json<Value>>("progress")
                .await?
                .map(Json::into_inner)
                .unwrap_or(Value::Null),
        ))
    }
}

/// Per-instance state as the workflow knows it (rebuilt identically on replay).
#[derive(Clone, Debug, Default)]
struct State {
    status: String,
    provider_ref: Option<String>,
    public_ip: Option<String>,
    error: Option<String>,
}

type Event = (usize, Ev);
enum Ev {
    Home(Result<Json<PhoneHome>, TerminalError>),
    Flush,
    Poll,
    Deadline,
    Cancel,
}

struct Runner<'a, 'ctx> {
    ctx: &'a WorkflowContext<'ctx>,
    app: Arc<App>,
    plan: Arc<Plan>,
    st: Vec<State>,
    /// The component refused a transition because the task was terminated by its owner: stop
    /// at the next step even if the `cancel` signal never arrives.
    stopped: bool,
}

impl<'a, 'ctx> Runner<'a, 'ctx> {
    /// Runs the task; a terminal failure of any step still finishes the task as failed (with
    /// the step's message), so no task is left `running` behind a dead workflow.
    async fn start(ctx: &'a WorkflowContext<'ctx>, app: Arc<App>) -> HandlerResult<Json<Value>> {
        match Self::execute(ctx, app.clone()).await {
            Ok(v) => Ok(Json(v)),
            Err(e) => {
                let task_id = ctx.key().to_string();
                let error = Some(format!("workflow step failed: {}", e.message()));
                let _ = ctx
                    .run(|| steps::finish(app, task_id, "failed".into(), Value::Null, error))
                    .name("finish failed")
                    .retry_policy(rpc_policy())
                    .await;
                Err(e.into())
            }
        }
    }

    async fn execute(
        ctx: &'a WorkflowContext<'ctx>,
        app: Arc<App>,
    ) -> Result<Value, TerminalError> {
        let task_id = ctx.key().to_string();
        let invocation_id = ctx.invocation_id().to_string();
        let a = app.clone();
        let plan = ctx
            .run(|| steps::claim(a, task_id, invocation_id))
            .name("claim")
            .retry_policy(rpc_policy())
            .await?
            .into_inner();
        let st = plan
            .instances
            .iter()
            .map(|i| State {
                status: i.status.clone(),
                provider_ref: i.provider_ref.clone(),
                ..State::default()
            })
            .collect();
        let mut r = Runner {
            ctx,
            app,
            plan: Arc::new(plan),
            st,
            stopped: false,
        };
        if !r.plan.claimed {
            return Ok(serde_json::json!({"skipped": "task already finished"}));
        }
        let summary = match r.plan.action {
            Action::CreateInstances => r.create().await?,
            Action::TerminateInstances => r.terminate(None).await?,
            Action::DeleteProject => r.delete_project().await?,
        };
        Ok(serde_json::to_value(summary).unwrap_or_default())
    }

    fn progress(&self, phase: &str) {
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        for s in &self.st {
            *counts.entry(s.status.as_str()).or_default() += 1;
        }
        self.ctx.set(
            "progress",
            Json(serde_json::json!({"phase": phase, "counts": counts})),
        );
    }

    async fn cancel_requested(&self) -> Result<bool, TerminalError> {
        Ok(self.ctx.peek_promise::<String>(CANCEL).await?.is_some())
    }

    /// Records transitions in steps of `RECORDS_PER_STEP`, and mirrors them into `st`.
    async fn record(
        &mut self,
        step: &str,
        ts: Vec<(usize, Transition)>,
    ) -> Result<(), TerminalError> {
        for (n, chunk) in ts.chunks(RECORDS_PER_STEP).enumerate() {
            let app = self.app.clone();
            let task_id = self.plan.task_id.clone();
            let list: Vec<Transition> = chunk.iter().map(|(_, t)| t.clone()).collect();
            let s = step.to_string();
            let refused = self
                .ctx
                .run(|| steps::record(app, task_id, s, list))
                .name(format!("record {step} #{n}"))
                .retry_policy(rpc_policy())
                .await?
                .into_inner();
            if refused.iter().any(|m| m.contains("is terminated")) {
                self.stopped = true;
            }
            for (i, t) in chunk {
                let st = &mut self.st[*i];
                st.status = t.status.clone();
                if t.provider_ref.is_some() {
                    st.provider_ref = t.provider_ref.clone();
                }
                if t.public_ip.is_some() {
                    st.public_ip = t.public_ip.clone();
                }
                if t.error.is_some() {
                    st.error = t.error.clone();
                }
            }
        }
        Ok(())
    }

    fn transition(&self, i: usize, status: &str) -> Transition {
        Transition {
            instance_id: self.plan.instances[i].id.clone(),
            status: status.to_string(),
            provider_ref: None,
            public_ip: None,
            volumes: None,
            error: None,
        }
    }

    async fn create(&mut self) -> Result<Summary, TerminalError> {
        self.progress("creating machines");
        let todo: Vec<usize> = (0..self.st.len())
            .filter(|&i| self.plan.instances[i].needs_machine())
            .collect();
        let batches = plan::batches(&self.plan, &todo, self.app.provider.max_batch());
        for (w, round) in plan::rounds(batches, ROUND_MEMBERS).into_iter().enumerate() {
            if self.cancel_requested().await? {
                return self.terminate(Some("cancelled")).await;
            }
            let mut todo = round;
            for attempt in 0.. {
                let app = self.app.clone();
                let p = self.plan.clone();
                let batches = todo.clone();
                let members: Vec<usize> = todo.iter().flat_map(|b| b.members.clone()).collect();
                let wave: Wave = match self
                    .ctx
                    .run(|| steps::ensure_batches(app, p, batches))
                    .name(format!("ensure machines #{w}.{attempt}"))
                    .retry_policy(provider_policy())
                    .await
                {
                    Ok(v) => v.into_inner(),
                    Err(e) => Wave {
                        ensured: members
                            .iter()
                            .map(|&index| Ensured {
                                index,
                                provider_ref: None,
                                volumes: vec![],
                                error: Some(e.message().to_string()),
                            })
                            .collect(),
                        ..Wave::default()
                    },
                };
                let ts = wave
                    .ensured
                    .iter()
                    .map(|e| (e.index, e.transition(&self.plan)))
                    .collect();
                self.record(steps::ENSURE_STEP, ts).await?;
                if wave.deferred.is_empty() {
                    break;
                }
                // The provider's rate limit: wait it out durably, then ensure what is left.
                todo = wave.deferred.iter().map(|&i| todo[i].clone()).collect();
                self.ctx
                    .sleep(Duration::from_millis(wave.retry_after_ms.max(200)))
                    .await?;
            }
        }
        if self.cancel_requested().await? {
            return self.terminate(Some("cancelled")).await;
        }
        self.progress("waiting for machines");
        let outcome = self.wait().await?;
        if outcome == Wait::Cancelled {
            return self.terminate(Some("cancelled")).await;
        }
        self.compensate_failed().await?;
        self.finish("ready").await
    }

    /// Waits for every created machine: phone-home promises (recorded in small windows),
    /// project-wide polls with durable sleeps in between, an overall deadline and cancel.
    async fn wait(&mut self) -> Result<Wait, TerminalError> {
        let waiting: Vec<usize> = (0..self.st.len())
            .filter(|&i| {
                matches!(self.st[i].status.as_str(), "created" | "provisioning")
                    && self.st[i].provider_ref.is_some()
            })
            .collect();
        if waiting.is_empty() {
            return Ok(Wait::Done);
        }
        let ctx = self.ctx;
        let keys: Vec<(usize, String)> = waiting
            .iter()
            .map(|&i| {
                (
                    i,
                    home_key(self.st[i].provider_ref.as_deref().unwrap_or_default()),
                )
            })
            .collect();
        let with_phone_home = waiting
            .iter()
            .all(|&i| self.plan.instances[i].phone_home_url.is_some());
        let mut futs: DurableFuturesUnordered<
            Pin<Box<dyn DurableFuture<Output = Event> + Send + '_>>,
        > = DurableFuturesUnordered::new();
        if with_phone_home {
            for (i, key) in &keys {
                let i = *i;
                futs.push(Box::pin(
                    ctx.promise::<Json<PhoneHome>>(key)
                        .map(move |r| (i, Ev::Home(r))),
                ));
            }
        }
        futs.push(Box::pin(
            ctx.promise::<String>(CANCEL).map(|_| (0, Ev::Cancel)),
        ));
        futs.push(Box::pin(
            ctx.sleep(self.app.config.provision_timeout())
                .map(|_| (0, Ev::Deadline)),
        ));
        let mut poll_every = FIRST_POLL.min(self.app.config.poll_max());
        futs.push(Box::pin(ctx.sleep(poll_every).map(|_| (0, Ev::Poll))));
        let mut pending: std::collections::BTreeSet<usize> = waiting.into_iter().collect();
        let mut homes: Vec<(usize, Result<PhoneHome, String>)> = Vec::new();
        let mut flush_armed = false;
        let mut polls = 0usize;
        while !pending.is_empty() {
            let Some((_, (i, ev))) = futs.next().await? else {
                break;
            };
            match ev {
                Ev::Home(r) => {
                    homes.push((
                        i,
                        r.map(Json::into_inner).map_err(|e| e.message().to_string()),
                    ));
                    if !flush_armed {
                        flush_armed = true;
                        futs.push(Box::pin(
                            ctx.sleep(PHONE_HOME_WINDOW).map(|_| (0, Ev::Flush)),
                        ));
                    }
                }
                Ev::Flush => {
                    flush_armed = false;
                    let ts = std::mem::take(&mut homes)
                        .into_iter()
                        .filter(|(i, _)| pending.contains(i))
                        .map(|(i, h)| {
                            let mut t = self.transition(i, "ready");
                            match h {
                                Ok(h) if h.status.as_deref().unwrap_or("ok") == "ok" => {
                                    t.public_ip =
                                        h.public_ip.or_else(|| self.st[i].public_ip.clone());
                                }
                                Ok(h) => {
                                    t.status = "failed".into();
                                    t.error = Some(format!(
                                        "provisioning script reported {}",
                                        h.status.unwrap_or_default()
                                    ));
                                }
                                Err(e) => {
                                    t.status = "failed".into();
                                    t.error = Some(e);
                                }
                            }
                            (i, t)
                        })
                        .collect::<Vec<_>>();
                    for (i, _) in &ts {
                        pending.remove(i);
                    }
                    self.record("phone home", ts).await?;
                    if self.stopped {
                        return Ok(Wait::Cancelled);
                    }
                    self.progress("waiting for machines");
                }
                Ev::Poll => {
                    polls += 1;
                    let refs: Vec<String> = pending
                        .iter()
                        .filter(|&&i| self.st[i].status == "created" || !with_phone_home)
                        .filter_map(|&i| self.st[i].provider_ref.clone())
                        .collect();
                    if !refs.is_empty() {
                        let app = self.app.clone();
                        let project = self.plan.project_id.clone();
                        let seen: Vec<Seen> = self
                            .ctx
                            .run(|| steps::poll_project(app, project, refs))
                            .name(format!("poll project #{polls}"))
                            .retry_policy(provider_policy())
                            .await
                            .map(Json::into_inner)
                            .unwrap_or_default();
                        let by_ref: BTreeMap<&str, &Seen> =
                            seen.iter().map(|s| (s.provider_ref.as_str(), s)).collect();
                        // Running machines: `provisioning` while their script runs, or `ready`
                        // at once when no phone-home is configured.
                        let next = if with_phone_home {
                            "provisioning"
                        } else {
                            "ready"
                        };
                        let ts: Vec<(usize, Transition)> = pending
                            .iter()
                            .filter(|&&i| self.st[i].status == "created" || !with_phone_home)
                            .filter_map(|&i| {
                                let s = by_ref.get(self.st[i].provider_ref.as_deref()?)?;
                                let mut t = self.transition(i, next);
                                t.public_ip = s.public_ip.clone();
                                Some((i, t))
                            })
                            .collect();
                        if !with_phone_home {
                            for (i, _) in &ts {
                                pending.remove(i);
                            }
                        }
                        if !ts.is_empty() {
                            self.record("machine running", ts).await?;
                            if self.stopped {
                                return Ok(Wait::Cancelled);
                            }
                            self.progress("waiting for machines");
                        }
                    }
                    if !pending.is_empty() {
                        poll_every = (poll_every * 2).min(self.app.config.poll_max());
                        futs.push(Box::pin(ctx.sleep(poll_every).map(|_| (0, Ev::Poll))));
                    }
                }
                Ev::Deadline => {
                    let secs = self.app.config.provision_timeout().as_secs();
                    let ts = pending
                        .iter()
                        .map(|&i| {
                            let mut t = self.transition(i, "failed");
                            t.error = Some(format!("not ready within {secs} s"));
                            (i, t)
                        })
                        .collect();
                    pending.clear();
                    self.record("provisioning timeout", ts).await?;
                }
                Ev::Cancel => return Ok(Wait::Cancelled),
            }
        }
        Ok(Wait::Done)
    }

    /// Failed instances destroy whatever they created (machines, volumes), found by tag.
    async fn compensate_failed(&mut self) -> Result<(), TerminalError> {
        let ids: Vec<String> = (0..self.st.len())
            .filter(|&i| self.st[i].status == "failed")
            .map(|i| self.plan.instances[i].id.clone())
            .collect();
        if ids.is_empty() {
            return Ok(());
        }
        let app = self.app.clone();
        let project = self.plan.project_id.clone();
        self.ctx
            .run(|| steps::destroy(app, project, ids))
            .name("compensate failed")
            .retry_policy(rpc_policy())
            .await?;
        Ok(())
    }

    /// Terminates every instance of the plan still alive: `terminating`, destroy by tag,
    /// `terminated`. Used for terminate tasks and for a cancelled create (`why` = "cancelled").
    async fn terminate(&mut self, why: Option<&str>) -> Result<Summary, TerminalError> {
        self.progress("terminating");
        let live: Vec<usize> = (0..self.st.len())
            .filter(|&i| self.st[i].status != "terminated")
            .collect();
        let ts = live
            .iter()
            .map(|&i| (i, self.transition(i, "terminating")))
            .collect();
        self.record("terminate", ts).await?;
        for (n, chunk) in live.chunks(RECORDS_PER_STEP).enumerate() {
            let app = self.app.clone();
            let ids: Vec<String> = chunk
                .iter()
                .map(|&i| self.plan.instances[i].id.clone())
                .collect();
            let project = self.plan.project_id.clone();
            self.ctx
                .run(|| steps::destroy(app, project, ids))
                .name(format!("destroy machines #{n}"))
                .retry_policy(rpc_policy())
                .await?;
        }
        let ts = live
            .iter()
            .map(|&i| (i, self.transition(i, "terminated")))
            .collect();
        self.record("terminated", ts).await?;
        match why {
            Some(why) => {
                self.finish_as("terminated", "terminated", Some(why.to_string()))
                    .await
            }
            None => self.finish("terminated").await,
        }
    }

    /// Destroys every resource tagged for the project and waits until the provider lists none.
    async fn delete_project(&mut self) -> Result<Summary, TerminalError> {
        self.progress("deleting project");
        let live: Vec<usize> = (0..self.st.len())
            .filter(|&i| self.st[i].status != "terminated")
            .collect();
        let ts = live
            .iter()
            .map(|&i| (i, self.transition(i, "terminating")))
            .collect();
        self.record("delete project", ts).await?;
        let mut left = 0;
        for n in 0..DELETE_POLLS {
            let app = self.app.clone();
            let project = self.plan.project_id.clone();
            let ids: Vec<String> = self.plan.instances.iter().map(|i| i.id.clone()).collect();
            left = self
                .ctx
                .run(|| steps::destroy_project(app, project, ids))
                .name(format!("destroy project #{n}"))
                .retry_policy(rpc_policy())
                .await?;
            if left == 0 {
                break;
            }
            self.ctx.sleep(Duration::from_secs(1)).await?;
        }
        if left > 0 {
            let err = format!("{left} machines still listed after deleting the project");
            let ts = live
                .iter()
                .map(|&i| {
                    let mut t = self.transition(i, "terminating");
                    t.error = Some(err.clone());
                    (i, t)
                })
                .collect();
            self.record("delete project", ts).await?;
            return self.finish_as("terminated", "failed", Some(err)).await;
        }
        let ts = live
            .iter()
            .map(|&i| (i, self.transition(i, "terminated")))
            .collect();
        self.record("terminated", ts).await?;
        self.finish("terminated").await
    }

    fn summary(&self) -> Summary {
        Summary::new(
            self.plan
                .instances
                .iter()
                .zip(&self.st)
                .map(|(i, s)| InstanceOutcome {
                    instance_id: i.id.clone(),
                    name: i.name.clone(),
                    status: s.status.clone(),
                    provider_ref: s.provider_ref.clone(),
                    public_ip: s.public_ip.clone(),
                    error: s.error.clone(),
                })
                .collect(),
        )
    }

    /// Completed when every instance reached `want`, failed otherwise.
    async fn finish(&mut self, want: &str) -> Result<Summary, TerminalError> {
        let summary = self.summary();
        let status = summary.task_status(want);
        let error = summary.error(want);
        self.finish_as(want, status, error).await
    }

    async fn finish_as(
        &mut self,
        _want: &str,
        status: &str,
        error: Option<String>,
    ) -> Result<Summary, TerminalError> {
        let summary = self.summary();
        let app = self.app.clone();
        let task_id = self.plan.task_id.clone();
        let result = serde_json::to_value(&summary).unwrap_or_default();
        let s = status.to_string();
        self.ctx
            .run(|| steps::finish(app, task_id, s, result, error))
            .name(format!("finish {status}"))
            .retry_policy(rpc_policy())
            .await?;
        self.progress(status);
        Ok(summary)
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Wait {
    Done,
    Cancelled,
}
