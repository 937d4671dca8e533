//! `--wait` and `talis task watch`: follow a task until it finishes. On a terminal: one progress
//! bar for the task, a line of counts per instance status, failures printed as they appear with
//! the provider's message. Piped: the same facts as plain lines on stderr, throttled.

use std::collections::{BTreeMap, BTreeSet};
use std::io::IsTerminal;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use talis_client::Client;
use talis_client::wire::*;

/// How often the task and its instances are polled.
const POLL: Duration = Duration::from_millis(400);
/// Piped output: at most one progress line this often (status changes print at once).
const PLAIN_EVERY: Duration = Duration::from_secs(2);
/// Consecutive failed polls tolerated (e.g. the API restarting) before giving up.
const MAX_POLL_ERRORS: u32 = 5;

/// How a watched task ended.
#[derive(Debug)]
pub struct Outcome {
    pub task: Task,
    /// Instances of the task that ended `failed`.
    pub failed: Vec<Instance>,
}

impl Outcome {
    pub fn success(&self) -> bool {
        self.task.status == TaskStatus::Completed && self.failed.is_empty()
    }
}

/// The instances a task acts on: created by it, or last touched by it (terminate, delete).
fn of_task(task: &Task, all: Vec<Instance>) -> Vec<Instance> {
    all.into_iter()
        .filter(|i| i.create_task_id == task.id || i.last_task_id == task.id)
        .collect()
}

/// Whether an instance has reached the end of what this task does to it.
fn settled(action: TaskAction, status: InstanceStatus) -> bool {
    use InstanceStatus::*;
    match action {
        TaskAction::CreateInstances => matches!(status, Ready | Failed | Terminated),
        TaskAction::TerminateInstances | TaskAction::DeleteProject => {
            matches!(status, Terminated | Failed)
        }
    }
}

/// Counts per status, in lifecycle order.
#[derive(Debug, PartialEq)]
pub struct Counts {
    pub by_status: BTreeMap<&'static str, usize>,
    pub settled: usize,
    pub total: usize,
}

const ORDER: &[InstanceStatus] = &[
    InstanceStatus::Pending,
    InstanceStatus::Created,
    InstanceStatus::Provisioning,
    InstanceStatus::Ready,
    InstanceStatus::Failed,
    InstanceStatus::Terminating,
    InstanceStatus::Terminated,
    InstanceStatus::Unknown,
];

pub fn count(task: &Task, instances: &[Instance]) -> Counts {
    let mut by_status = BTreeMap::new();
    for i in instances {
        *by_status.entry(i.status.as_str()).or_insert(0) += 1;
    }
    Counts {
        settled: instances
            .iter()
            .filter(|i| settled(task.action, i.status))
            .count(),
        total: (task.instance_count.max(0) as usize).max(instances.len()),
        by_status,
    }
}

impl Counts {
    /// "pending 3 · provisioning 40 · ready 57", in lifecycle order, zero counts left out.
    pub fn line(&self) -> String {
        let parts: Vec<String> = ORDER
            .iter()
            .filter_map(|s| self.by_status.get(s.as_str()).map(|n| format!("{s} {n}")))
            .collect();
        if parts.is_empty() {
            "no instances yet".into()
        } else {
            parts.join(" · ")
        }
    }
}

/// Finds the name of a task's project (instances are listed per project).
async fn project_name(client: &Client, task: &Task) -> Result<Option<String>> {
    let projects = client.project_list_all().await?;
    Ok(projects
        .into_iter()
        .find(|p| p.id == task.project_id)
        .map(|p| p.name))
}

/// Follows `task_id` until it is terminal. `project` avoids a lookup when the caller knows it.
pub async fn watch(
    client: &Client,
    task_id: TaskId,
    project: Option<String>,
    timeout: Option<Duration>,
) -> Result<Outcome> {
    let task = client.task_get(&task_ref(task_id)).await?;
    let project = match project {
        Some(p) => Some(p),
        None => project_name(client, &task).await?,
    };
    let mut filter = InstanceList {
        project_name: project,
        include_deleted: true,
        ..InstanceList::default()
    };
    let mut view = View::new(&task);
    let started = Instant::now();
    let mut errors = 0;
    let mut task = task;
    loop {
        let polled = async {
            let t = client.task_get(&task_ref(task_id)).await?;
            let all = match client.instance_list_all(&filter).await {
                // A delete_project task removes the project: list the owner's instances instead.
                Err(e)
                    if e.api().is_some_and(|a| a.is_not_found())
                        && filter.project_name.is_some() =>
                {
                    filter.project_name = None;
                    client.instance_list_all(&filter).await?
                }
                other => other?,
            };
            Ok::<_, talis_client::Error>((t, all))
        };
        match polled.await {
            Ok((t, all)) => {
                errors = 0;
                task = t;
                let instances = of_task(&task, all);
                view.update(&task, &instances);
                if task.status.is_terminal() {
                    view.finish(&task);
                    let failed = instances
                        .into_iter()
                        .filter(|i| i.status == InstanceStatus::Failed)
                        .collect();
                    return Ok(Outcome { task, failed });
                }
            }
            Err(e) => {
                errors += 1;
                if errors >= MAX_POLL_ERRORS {
                    view.abandon();
                    return Err(e.into());
                }
                view.note(&format!("polling failed ({e}); retrying"));
            }
        }
        if let Some(limit) = timeout
            && started.elapsed() >= limit
        {
            view.abandon();
            bail!(
                "gave up waiting after {}s: task {task_id} is still {} (follow it with `talis task watch {task_id}`)",
                limit.as_secs(),
                task.status
            );
        }
        tokio::time::sleep(POLL).await;
    }
}

fn task_ref(id: TaskId) -> TaskRef {
    TaskRef::new(id)
}

/// What the user sees while waiting.
enum View {
    Bars {
        multi: MultiProgress,
        task: ProgressBar,
        counts: ProgressBar,
        reported: BTreeSet<InstanceId>,
    },
    Plain {
        last_line: Option<Instant>,
        last_status: Option<TaskStatus>,
        reported: BTreeSet<InstanceId>,
    },
}

impl View {
    fn new(task: &Task) -> Self {
        if !std::io::stderr().is_terminal() {
            return View::Plain {
                last_line: None,
                last_status: None,
                reported: BTreeSet::new(),
            };
        }
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
        let bar = multi.add(ProgressBar::new(task.instance_count.max(0) as u64));
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner:.cyan} {prefix:.bold} [{bar:40.cyan/blue}] {pos}/{len} {msg} ({elapsed})",
            )
            .expect("valid template")
            .progress_chars("=> "),
        );
        bar.set_prefix(format!("task {} {}", task.id, task.action));
        bar.enable_steady_tick(Duration::from_millis(120));
        let counts = multi.add(ProgressBar::new_spinner());
        counts.set_style(ProgressStyle::with_template("  {wide_msg}").expect("valid template"));
        View::Bars {
            multi,
            task: bar,
            counts,
            reported: BTreeSet::new(),
        }
    }

    fn update(&mut self, task: &Task, instances: &[Instance]) {
        let c = count(task, instances);
        match self {
            View::Bars {
                multi,
                task: bar,
                counts,
                reported,
            } => {
                bar.set_length(c.total as u64);
                bar.set_position(c.settled as u64);
                bar.set_message(task.status.to_string());
                counts.set_message(c.line());
                for i in new_failures(reported, instances) {
                    let _ = multi.println(failure_line(i));
                }
            }
            View::Plain {
                last_line,
                last_status,
                reported,
            } => {
                for i in new_failures(reported, instances) {
                    eprintln!("{}", failure_line(i));
                }
                let status_changed = *last_status != Some(task.status);
                let due = last_line.is_none_or(|t| t.elapsed() >= PLAIN_EVERY);
                if status_changed || due || task.status.is_terminal() {
                    eprintln!(
                        "task {} {}: {}/{} settled · {}",
                        task.id,
                        task.status,
                        c.settled,
                        c.total,
                        c.line()
                    );
                    *last_line = Some(Instant::now());
                    *last_status = Some(task.status);
                }
            }
        }
    }

    fn note(&self, msg: &str) {
        match self {
            View::Bars { multi, .. } => {
                let _ = multi.println(format!("  ! {msg}"));
            }
            View::Plain { .. } => eprintln!("! {msg}"),
        }
    }

    fn finish(&self, task: &Task) {
        if let View::Bars {
            task: bar, counts, ..
        } = self
        {
            bar.finish_with_message(task.status.to_string());
            counts.finish();
        }
    }

    fn abandon(&self) {
        if let View::Bars { task, counts, .. } = self {
            task.abandon();
            counts.abandon();
        }
    }
}

fn new_failures<'a>(
    reported: &mut BTreeSet<InstanceId>,
    instances: &'a [Instance],
) -> Vec<&'a Instance> {
    instances
        .iter()
        .filter(|i| i.status == InstanceStatus::Failed && reported.insert(i.id))
        .collect()
}

pub fn failure_line(i: &Instance) -> String {
    let why = if i.error.is_empty() {
        "no error recorded"
    } else {
        i.error.as_str()
    };
    format!("  ✗ {} (ID {}): {why}", i.name, i.id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(action: TaskAction, n: i64) -> Task {
        serde_json::from_value(serde_json::json!({
            "ID": 7, "owner_id": 1, "project_id": 1, "action": action, "status": "running",
            "priority": 1, "attempts": 0, "instance_count": n, "logs": "", "error": "",
            "result": null, "created_at": "", "updated_at": "", "dispatched_at": null,
            "finished_at": null
        }))
        .unwrap()
    }

    fn inst(id: i64, status: &str, create_task: i64, last_task: i64) -> Instance {
        serde_json::from_value(serde_json::json!({
            "ID": id, "owner_id": 1, "project_id": 1, "name": format!("n-{id}"),
            "provider_id": "do", "provider_ref": "", "provider_instance_id": 0, "public_ip": "",
            "region": "nyc3", "size": "s", "image": "i", "tags": [], "status": status,
            "volume_ids": [], "volume_details": [], "error": "", "create_task_id": create_task,
            "last_task_id": last_task, "created_at": "", "updated_at": ""
        }))
        .unwrap()
    }

    #[test]
    fn counts_follow_the_action() {
        let create = task(TaskAction::CreateInstances, 4);
        let all = vec![
            inst(1, "ready", 7, 7),
            inst(2, "failed", 7, 7),
            inst(3, "provisioning", 7, 7),
            inst(4, "pending", 7, 7),
            inst(5, "ready", 3, 3), // another task's instance
        ];
        let mine = of_task(&create, all);
        assert_eq!(mine.len(), 4);
        let c = count(&create, &mine);
        assert_eq!((c.settled, c.total), (2, 4));
        assert_eq!(c.line(), "pending 1 · provisioning 1 · ready 1 · failed 1");

        let terminate = task(TaskAction::TerminateInstances, 2);
        let mine = vec![inst(1, "terminating", 7, 7), inst(2, "terminated", 7, 7)];
        assert_eq!(count(&terminate, &mine).settled, 1);
    }
}
