//! `--wait` and `talis task watch`: follow a task until it finishes. On a terminal: one progress
//! bar for the task, a line of counts per instance status, failures printed as they appear with
//! the provider's message. Piped: the same facts as plain lines on stderr, throttled.
//!
//! Between two looks at the task the watcher waits on the task's events with the API's
//! long-poll (`event.list` with `wait_ms`), so it looks again as soon as something happened,
//! and not at all while nothing does. Also the summary of `talis task get`.

use std::collections::{BTreeMap, BTreeSet};
use std::io::IsTerminal;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use talis_client::Client;
use talis_client::wire::*;

/// Pause before looking again after a failed look or long-poll.
const POLL: Duration = Duration::from_millis(400);
/// Least time between two looks at the task and its instances (events come in bursts).
const MIN_LOOK_EVERY: Duration = Duration::from_millis(200);
/// Events read per long-poll call (catching up on a long history goes page by page).
const EVENT_PAGE: u32 = 1_000;
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
    long_poll: Duration,
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
    let mut seen: Option<String> = None;
    let mut polling = false;
    loop {
        let looked = Instant::now();
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
        let left = match timeout {
            Some(limit) if started.elapsed() >= limit => {
                view.abandon();
                bail!(
                    "gave up waiting after {}s: task {task_id} is still {} (follow it with `talis task watch {task_id}`)",
                    limit.as_secs(),
                    task.status
                );
            }
            Some(limit) => limit - started.elapsed(),
            None => long_poll,
        };
        if errors > 0 {
            tokio::time::sleep(POLL).await;
            continue;
        }
        if let Err(e) = next_change(client, task_id, &mut seen, long_poll.min(left)).await {
            // Without the event log (an older API), look every POLL instead.
            if !polling {
                view.note(&format!("cannot wait on events ({e}); polling instead"));
                polling = true;
            }
            tokio::time::sleep(POLL).await;
        }
        tokio::time::sleep(MIN_LOOK_EVERY.saturating_sub(looked.elapsed())).await;
    }
}

/// Waits until the task has an event newer than `seen` (or `wait` passes), reading up to the
/// newest one; `seen` becomes its id.
async fn next_change(
    client: &Client,
    task_id: TaskId,
    seen: &mut Option<String>,
    wait: Duration,
) -> talis_client::Result<()> {
    loop {
        let page = client
            .event_list(&EventList {
                task_id: Some(task_id),
                after: seen.clone(),
                limit: Some(EVENT_PAGE),
                wait_ms: Some(wait.as_millis().min(u128::from(u32::MAX)) as u32),
                ..EventList::default()
            })
            .await?;
        if let Some(last) = page.rows.last() {
            *seen = Some(last.id.to_string());
        }
        if page.pagination.next_cursor.is_none() {
            return Ok(());
        }
    }
}

/// Lines of history `talis task get` shows (`--logs` shows them all).
pub const SUMMARY_EVENTS: usize = 20;

/// `talis task get` for a person: status, instances by status, duration, the last events and
/// where to see the workflow.
pub async fn summary(client: &Client, task: &Task) -> Result<String> {
    let project = project_name(client, task).await?;
    let instances = match &project {
        Some(p) => {
            let filter = InstanceList {
                project_name: Some(p.clone()),
                include_deleted: true,
                ..InstanceList::default()
            };
            of_task(task, client.instance_list_all(&filter).await?)
        }
        // A deleted project's instances are no longer listed by project.
        None => Vec::new(),
    };
    let c = count(task, &instances);
    let mut out = format!(
        "task {} {} · {}{}\n",
        task.id,
        task.action,
        task.status,
        project
            .map(|p| format!(" · project {p}"))
            .unwrap_or_default()
    );
    out.push_str(&format!(
        "instances  {}/{} settled · {}\n",
        c.settled,
        c.total,
        c.line()
    ));
    out.push_str(&format!("duration   {}\n", duration(task)));
    if !task.error.is_empty() {
        out.push_str(&format!("error      {}\n", task.error));
    }
    match (&task.invocation_url, &task.invocation_id) {
        (Some(url), _) => out.push_str(&format!("workflow   {url}\n")),
        (None, Some(id)) => out.push_str(&format!(
            "workflow   Restate invocation {id} (Restate UI → Invocations)\n"
        )),
        (None, None) => out.push_str("workflow   not started yet\n"),
    }
    let lines: Vec<&str> = task.logs.lines().collect();
    let shown = &lines[lines.len().saturating_sub(SUMMARY_EVENTS)..];
    out.push_str(&format!(
        "\nlast {} of {} events (all: `talis task get {} --logs`, live: `talis events --task {} --follow`):\n",
        shown.len(),
        lines.len(),
        task.id,
        task.id
    ));
    for l in shown {
        out.push_str("  ");
        out.push_str(l);
        out.push('\n');
    }
    Ok(out)
}

/// From creation to the end (or to now, while it runs), e.g. `1m 05s`.
fn duration(task: &Task) -> String {
    let parse = |t: &str| chrono::DateTime::parse_from_rfc3339(t).ok();
    let Some(start) = parse(&task.created_at) else {
        return "-".into();
    };
    let (end, running) = match task.finished_at.as_deref().and_then(parse) {
        Some(end) => (end.with_timezone(&chrono::Utc), ""),
        None => (chrono::Utc::now(), " so far"),
    };
    let secs = (end - start.with_timezone(&chrono::Utc))
        .num_milliseconds()
        .max(0) as f64
        / 1e3;
    let text = if secs < 60.0 {
        format!("{secs:.1}s")
    } else if secs < 3600.0 {
        format!("{}m {:02}s", (secs / 60.0) as u64, secs as u64 % 60)
    } else {
        format!(
            "{}h {:02}m",
            (secs / 3600.0) as u64,
            (secs as u64 / 60) % 60
        )
    };
    text + running
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
