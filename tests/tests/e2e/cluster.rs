//! The highly available stack (`talis_stack::cluster`: 3 Restate nodes with replication 2, two
//! workflows replicas behind the one registered URL, two API replicas on one SQLite file) under
//! crashes: while a 300-instance project is being deployed on the fake cloud, `kill -9` takes
//! down the Restate node leading most of the task's partitions, one workflows replica and one
//! API replica. The cluster fails over, the supervisors restart the three processes, and the
//! deploy ends with 300/300 ready, no duplicate or orphan machine, each task run by exactly one
//! workflow invocation, and nothing left after `project.delete` (counted by the fake cloud's
//! /_fake/stats).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use talis_client::Client;
use talis_client::wire::{
    Instance, InstanceList, InstanceStatus, ProjectCreate, ProjectRef, Task, TaskId, TaskRef,
    TaskStatus,
};
use talis_stack::cluster::{self, Cluster, Options, Provider};

const N: usize = 300;
/// Instances per workflow chunk: the task runs as 3 `TaskChunk` children on their own keys
/// (so on several partitions).
const CHUNK: usize = 100;
/// Upper bound of each wait; the whole test stays well under nextest's 5 minutes.
const LIMIT: Duration = Duration::from_secs(150);
/// Secrets of at least 32 characters (shorter ones count as unset).
const ADMIN_KEY: &str = "cluster-e2e-admin-key-0123456789abcdef";
const INTERNAL_SECRET: &str = "cluster-e2e-internal-secret-0123456789abcdef";

/// Every create call is held 300 ms and machines boot in 1–2.5 s, so the crash lands while
/// machines are still being made and booting; phone-home is retried like the script's
/// `curl --retry`.
const SLOW_CLOUD: &str = r#"
boot_delay_ms = 1000
boot_jitter_ms = 1500
ip_delay_ms = 0
rate_limit_per_minute = 4294967295
rate_limit_per_hour = 4294967295
[phone_home]
attempts = 120
retry_delay_ms = 500
timeout_ms = 5000
[[faults]]
endpoint = "droplets_create"
kind = "stall"
stall_ms = 300
"#;

#[tokio::test(flavor = "multi_thread")]
async fn deploy_300_survives_kill9_of_a_restate_node_a_workflows_and_an_api_replica() -> Result<()>
{
    let t0 = Instant::now();
    let dir = tempfile::tempdir()?;
    let mut opts = Options::new(ADMIN_KEY, INTERNAL_SECRET, "cluster-e2e");
    opts.provider = Provider::Fake {
        config: Some(SLOW_CLOUD.into()),
    };
    opts.workflows_env = vec![
        ("TALIS_CHUNK_SIZE".into(), CHUNK.to_string()),
        ("TALIS_PROVISION_TIMEOUT_SECS".into(), "120".into()),
        ("TALIS_POLL_MAX_MS".into(), "2000".into()),
    ];
    let c = Arc::new(Cluster::start(dir.path(), opts).await?);
    eprintln!("cluster up in {:.1} s", t0.elapsed().as_secs_f64());
    // In a task of its own, so a failed assertion still shows the processes' logs.
    let run = tokio::spawn({
        let c = c.clone();
        async move { scenario(&c).await }
    })
    .await;
    if !matches!(run, Ok(Ok(()))) {
        for s in c.services() {
            eprintln!(
                "--- {} (restarts {}):\n{}",
                s.name(),
                s.restarts(),
                s.log_tail(15)
            );
        }
    }
    c.stop().await;
    eprintln!("whole test {:.1} s", t0.elapsed().as_secs_f64());
    if !matches!(run, Ok(Ok(()))) {
        eprintln!("state and logs kept in {}", dir.keep().display());
    }
    match run {
        Ok(result) => result,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}

async fn scenario(c: &Cluster) -> Result<()> {
    let admin = Client::builder(c.api_url()).api_key(ADMIN_KEY).build()?;
    let project = "ha";
    let t = Instant::now();
    let params: ProjectCreate = serde_json::from_value(json!({
        "name": project,
        "instances": [{
            "provider": "do",
            "region": "nyc3",
            "size": "s-1vcpu-1gb",
            "image": "ubuntu-24-04-x64",
            "number_of_instances": N,
            "name": "ha-m",
            "provision": true,
            "payload": "#!/bin/sh\necho hello > /tmp/hello\n",
            "execute_payload": true,
        }],
    }))?;
    let created = admin.project_create(&params).await?;
    let task_id = created.task_id.context("project.create queued no task")?;
    assert_eq!(created.instance_ids.len(), N);

    // Mid-run: some machines exist, most do not yet, and every chunk has been started.
    wait_for(&admin, project, LIMIT, |list| made(list) >= 30).await?;
    let chunk_keys: Vec<String> = (0..N.div_ceil(CHUNK))
        .map(|n| format!("{task_id}.{n}"))
        .collect();
    let partitions = wait_partitions(c, task_id, &chunk_keys).await?;
    let leaders = c.partition_leaders();
    let mut led: BTreeMap<usize, Vec<u16>> = BTreeMap::new();
    for p in &partitions {
        let (node, _) = leaders
            .get(p)
            .with_context(|| format!("no leader of partition {p} in the nodes' logs"))?;
        led.entry(*node).or_default().push(*p);
    }
    let (victim, victim_partitions) = led
        .iter()
        .max_by_key(|(_, ps)| ps.len())
        .map(|(n, ps)| (*n, ps.clone()))
        .expect("the task's invocations have partitions");
    let before = admin.task_get(&TaskRef::new(task_id)).await?;
    assert_eq!(
        before.status,
        TaskStatus::Running,
        "the crash must land mid-run"
    );
    let list = instances(&admin, project).await?;
    let (made_before, ready_before) = (made(&list), ready(&list));
    assert!(ready_before < N, "every machine was ready before the crash");

    // The crash: a Restate node leading the task's partitions, a workflows replica and an API
    // replica, at once.
    c.restate[victim].kill9().await?;
    c.workflows[0].kill9().await?;
    c.hosts[0].kill9().await?;
    eprintln!(
        "killed restate n{} (leader of partitions {victim_partitions:?} of the task's {partitions:?}), \
         workflows-1 and talis-host-1 with {made_before}/{N} machines made and {ready_before} \
         ready, {:.1} s after create",
        victim + 1,
        t.elapsed().as_secs_f64()
    );

    // Another node takes over every partition the victim led.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let now = c.partition_leaders();
        let moved = victim_partitions.iter().all(|p| {
            now.get(p)
                .is_some_and(|(n, e)| *n != victim && *e > leaders[p].1)
        });
        if moved {
            break;
        }
        if Instant::now() > deadline {
            bail!("partitions {victim_partitions:?} have no new leader: {now:?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Each killed process restarts on its own.
    c.restate[victim]
        .wait_restarts(1, Duration::from_secs(60))
        .await?;
    c.workflows[0]
        .wait_restarts(1, Duration::from_secs(60))
        .await?;
    c.hosts[0].wait_restarts(1, Duration::from_secs(60)).await?;

    let done = wait_task(&admin, task_id, LIMIT).await?;
    assert_eq!(done.status, TaskStatus::Completed, "create task: {done:?}");
    eprintln!("300 ready {:.1} s after create", t.elapsed().as_secs_f64());
    let list = instances(&admin, project).await?;
    assert_eq!(list.len(), N);
    let counts = by_status(&list);
    assert_eq!(counts.get(&InstanceStatus::Ready), Some(&N), "{counts:?}");
    for i in &list {
        assert!(
            !i.public_ip.is_empty() && !i.provider_ref.is_empty(),
            "{i:?}"
        );
    }
    let stats = c.fake_stats().await?;
    assert_clean(&stats);
    assert_eq!(stats["droplets"]["live"], N as u64, "{}", stats["droplets"]);

    // Dispatched once: one claim, and one invocation of the task and of each chunk.
    assert_eq!(
        done.attempts, 1,
        "the task was claimed by several invocations"
    );
    let runs = run_invocations(c, "TaskWorkflow", &[task_id.to_string()]).await?;
    assert_eq!(
        runs[&task_id.to_string()],
        vec![done.invocation_id.clone().context("no invocation id")?],
        "TaskWorkflow invocations of task {task_id}"
    );
    let chunk_runs = run_invocations(c, "TaskChunk", &chunk_keys).await?;
    for key in &chunk_keys {
        assert_eq!(chunk_runs[key].len(), 1, "TaskChunk invocations of {key}");
    }
    // Restate reached both workflows replicas through the one registered URL, and both API
    // replicas served.
    let (workflows, api) = (c.workflows_lb.connections(), c.api.connections());
    eprintln!(
        "connections per replica: workflows {workflows:?}, API {api:?}, Restate ingress {:?}",
        c.ingress.connections()
    );
    assert!(
        workflows.iter().all(|n| *n > 0),
        "workflows replicas: {workflows:?}"
    );
    assert!(api.iter().all(|n| *n > 0), "API replicas: {api:?}");

    // Delete: nothing left, and the delete task ran once too.
    let queued = admin
        .project_delete(&ProjectRef {
            name: project.into(),
            owner_id: None,
        })
        .await?;
    let delete_id = queued.task_id.context("project.delete queued no task")?;
    let deleted = wait_task(&admin, delete_id, LIMIT).await?;
    assert_eq!(
        deleted.status,
        TaskStatus::Completed,
        "delete task: {deleted:?}"
    );
    assert_eq!(deleted.attempts, 1);
    let runs = run_invocations(c, "TaskWorkflow", &[delete_id.to_string()]).await?;
    assert_eq!(runs[&delete_id.to_string()].len(), 1);
    let stats = c.fake_stats().await?;
    assert_clean(&stats);
    assert_eq!(stats["droplets"]["live"], 0, "{}", stats["droplets"]);
    assert_eq!(stats["volumes"]["live"], 0, "{}", stats["volumes"]);
    // The project is gone; no instance anywhere is left live (only this test's rows exist).
    let left = admin.instance_list_all(&InstanceList::default()).await?;
    assert!(
        left.is_empty(),
        "live instances after delete: {}",
        left.len()
    );
    Ok(())
}

/// No machine twice for one instance, none without an owner.
fn assert_clean(stats: &Value) {
    assert_eq!(stats["duplicates"]["count"], 0, "{}", stats["duplicates"]);
    assert_eq!(stats["orphans"]["count"], 0, "{}", stats["orphans"]);
}

async fn instances(admin: &Client, project: &str) -> Result<Vec<Instance>> {
    Ok(admin
        .instance_list_all(&InstanceList {
            project_name: Some(project.into()),
            include_deleted: true,
            ..InstanceList::default()
        })
        .await?)
}

/// Instances with a machine.
fn made(list: &[Instance]) -> usize {
    list.iter().filter(|i| !i.provider_ref.is_empty()).count()
}

fn ready(list: &[Instance]) -> usize {
    list.iter()
        .filter(|i| i.status == InstanceStatus::Ready)
        .count()
}

fn by_status(list: &[Instance]) -> BTreeMap<InstanceStatus, usize> {
    let mut m = BTreeMap::new();
    for i in list {
        *m.entry(i.status).or_insert(0) += 1;
    }
    m
}

async fn wait_for(
    admin: &Client,
    project: &str,
    limit: Duration,
    done: impl Fn(&[Instance]) -> bool,
) -> Result<()> {
    let deadline = Instant::now() + limit;
    loop {
        if let Ok(list) = instances(admin, project).await
            && done(&list)
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("project {project}: condition not met after {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until the task is terminal. The API answers through its balancer, so a call may
/// fail while a replica restarts: such errors are retried until the deadline.
async fn wait_task(admin: &Client, id: TaskId, limit: Duration) -> Result<Task> {
    let deadline = Instant::now() + limit;
    loop {
        if let Ok(t) = admin.task_get(&TaskRef::new(id)).await
            && t.status.is_terminal()
        {
            return Ok(t);
        }
        if Instant::now() > deadline {
            bail!(
                "task {id} not finished after {limit:?}: {:?}",
                admin.task_get(&TaskRef::new(id)).await
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The partitions of the task's invocations (`TaskWorkflow` and its `TaskChunk` children),
/// once Restate lists them all.
async fn wait_partitions(c: &Cluster, task: TaskId, chunks: &[String]) -> Result<BTreeSet<u16>> {
    let mut keys = vec![task.to_string()];
    keys.extend(chunks.iter().cloned());
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let rows = c
            .query(&format!(
                "SELECT target_service_key AS key, CAST(partition_key AS VARCHAR) AS pk \
                 FROM sys_invocation_status WHERE target_handler_name = 'run' \
                 AND target_service_key IN ({})",
                sql_list(&keys)
            ))
            .await?;
        let found: BTreeMap<String, u64> = rows
            .iter()
            .filter_map(|r| {
                Some((
                    r["key"].as_str()?.to_string(),
                    r["pk"].as_str()?.parse().ok()?,
                ))
            })
            .collect();
        if keys.iter().all(|k| found.contains_key(k)) {
            return Ok(found
                .values()
                .map(|pk| cluster::partition_of(*pk))
                .collect());
        }
        if Instant::now() > deadline {
            bail!("Restate lists only {found:?} of the invocations {keys:?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Invocation ids of `service`'s `run` handler per key (every key present, maybe empty).
async fn run_invocations(
    c: &Cluster,
    service: &str,
    keys: &[String],
) -> Result<BTreeMap<String, Vec<String>>> {
    let rows = c
        .query(&format!(
            "SELECT id, target_service_key AS key FROM sys_invocation \
             WHERE target_service_name = '{service}' AND target_handler_name = 'run' \
             AND target_service_key IN ({})",
            sql_list(keys)
        ))
        .await?;
    let mut out: BTreeMap<String, Vec<String>> =
        keys.iter().map(|k| (k.clone(), Vec::new())).collect();
    for r in rows {
        if let (Some(k), Some(id)) = (r["key"].as_str(), r["id"].as_str()) {
            out.entry(k.to_string()).or_default().push(id.to_string());
        }
    }
    Ok(out)
}

/// `'a', 'b'` (the keys are task ids and `<task>.<n>`: digits and dots only).
fn sql_list(keys: &[String]) -> String {
    assert!(
        keys.iter()
            .all(|k| k.chars().all(|c| c.is_ascii_digit() || c == '.'))
    );
    keys.iter()
        .map(|k| format!("'{k}'"))
        .collect::<Vec<_>>()
        .join(", ")
}
