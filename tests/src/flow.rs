//! Helpers of the tests on the full stack (workflows, chaos, the trigger): create a project
//! through the real API with the typed client, wait (bounded) for its task, read its instances,
//! and check the fake cloud's counters.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use talis_api::{
    Instance, InstanceId, InstanceRequest, InstanceStatus, ProjectListInstances, ProjectRef, Task,
    TaskId, TaskRef, TaskStatus,
};
use talis_client::{Client, Route};
use talis_stack::workflows::FullStack;

/// The stack's admin client (one per stack, so polls reuse their connections).
pub fn admin(stack: &FullStack) -> Client {
    static CLIENTS: OnceLock<Mutex<HashMap<String, Client>>> = OnceLock::new();
    let mut clients = CLIENTS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    clients
        .entry(stack.api_url.clone())
        .or_insert_with(|| {
            Client::builder(&stack.api_url)
                .api_key(&stack.admin_key)
                .route(Route::Typed)
                .timeout(Duration::from_secs(60))
                .build()
                .expect("a client of a loopback URL")
        })
        .clone()
}

/// One request of `n` machines named `<name>-m`, running a small script; `extra` fields (JSON,
/// e.g. `volumes` or `size`) replace the defaults.
pub fn request(name: &str, n: usize, extra: Value) -> Result<InstanceRequest> {
    let mut req = json!({
        "provider": "do",
        "region": "nyc3",
        "size": "s-1vcpu-1gb",
        "image": "ubuntu-24-04-x64",
        "number_of_instances": n,
        "name": format!("{name}-m"),
        "provision": true,
        "payload": "#!/bin/sh\necho hello > /tmp/hello\n",
        "execute_payload": true,
    });
    if let (Value::Object(r), Value::Object(e)) = (&mut req, extra) {
        r.extend(e);
    }
    serde_json::from_value(req).context("an instance request")
}

/// Creates a project with `n` machines of one shape; returns (task id, instance ids).
pub async fn create_project(
    stack: &FullStack,
    name: &str,
    n: usize,
    extra: Value,
) -> Result<(TaskId, Vec<InstanceId>)> {
    let created = admin(stack)
        .project_create(&talis_api::ProjectCreate {
            name: name.into(),
            instances: vec![request(name, n, extra)?],
            ..Default::default()
        })
        .await?;
    let task = created.task_id.context("a create task")?;
    Ok((task, created.instance_ids))
}

pub async fn task(stack: &FullStack, task_id: TaskId) -> Result<Task> {
    Ok(admin(stack).task_get(&TaskRef::new(task_id)).await?)
}

/// Waits until the task is terminal (completed, failed, terminated); fails after `limit`.
pub async fn wait_task(stack: &FullStack, task_id: TaskId, limit: Duration) -> Result<Task> {
    let deadline = Instant::now() + limit;
    loop {
        // The API may be restarting in chaos tests: keep asking until the deadline.
        if let Ok(t) = task(stack, task_id).await
            && t.status.is_terminal()
        {
            return Ok(t);
        }
        if Instant::now() > deadline {
            bail!(
                "task {task_id} not finished after {limit:?}: {:?}\nworkflows log:\n{}",
                task(stack, task_id).await,
                stack.workflows.service.log_tail(20)
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Every instance of a project (all pages).
pub async fn instances(stack: &FullStack, project: &str) -> Result<Vec<Instance>> {
    let client = admin(stack);
    let mut params = ProjectListInstances {
        name: project.into(),
        limit: Some(1000),
        ..Default::default()
    };
    let mut out = Vec::new();
    loop {
        let page = client.project_list_instances(&params).await?;
        out.extend(page.rows);
        match page.pagination.next_cursor {
            Some(c) => params.cursor = Some(c),
            None => return Ok(out),
        }
    }
}

/// Counts instances by status.
pub fn by_status(instances: &[Instance]) -> BTreeMap<InstanceStatus, usize> {
    let mut m = BTreeMap::new();
    for i in instances {
        *m.entry(i.status).or_insert(0) += 1;
    }
    m
}

/// Asserts every instance is ready with an IP and a machine, and no machine is duplicated;
/// returns the fake cloud's stats.
pub async fn assert_all_ready(stack: &FullStack, project: &str, n: usize) -> Result<Value> {
    let list = instances(stack, project).await?;
    assert_eq!(list.len(), n, "instances listed");
    let counts = by_status(&list);
    assert_eq!(
        counts.get(&InstanceStatus::Ready),
        Some(&n),
        "statuses: {counts:?}"
    );
    for i in &list {
        assert!(!i.public_ip.is_empty(), "no IP: {i:?}");
        assert!(!i.provider_ref.is_empty(), "no machine: {i:?}");
    }
    let stats = stack.fake_stats().await?;
    assert_no_duplicates_or_orphans(&stats);
    Ok(stats)
}

/// The fake cloud's own count: no instance got two machines, nothing is left unowned.
pub fn assert_no_duplicates_or_orphans(stats: &Value) {
    assert_eq!(
        stats["duplicates"]["count"], 0,
        "duplicates: {}",
        stats["duplicates"]
    );
    assert_eq!(
        stats["orphans"]["count"], 0,
        "orphans: {}",
        stats["orphans"]
    );
}

/// Deletes the project and checks the cloud holds nothing of it any more.
pub async fn delete_and_assert_clean(
    stack: &FullStack,
    project: &str,
    limit: Duration,
) -> Result<()> {
    let queued = admin(stack)
        .project_delete(&ProjectRef {
            name: project.into(),
            owner_id: None,
        })
        .await?;
    if let Some(t) = queued.task_id {
        let t = wait_task(stack, t, limit).await?;
        assert_eq!(t.status, TaskStatus::Completed, "delete task: {t:?}");
    }
    let stats = stack.fake_stats().await?;
    assert_eq!(
        stats["droplets"]["live"], 0,
        "droplets left: {}",
        stats["droplets"]
    );
    assert_eq!(
        stats["volumes"]["live"], 0,
        "volumes left: {}",
        stats["volumes"]
    );
    assert_no_duplicates_or_orphans(&stats);
    Ok(())
}

/// Waits until at least `k` instances of the project have a machine (status created or later).
pub async fn wait_created(
    stack: &FullStack,
    project: &str,
    k: usize,
    limit: Duration,
) -> Result<()> {
    let deadline = Instant::now() + limit;
    loop {
        if let Ok(list) = instances(stack, project).await {
            let made = list.iter().filter(|i| !i.provider_ref.is_empty()).count();
            if made >= k {
                return Ok(());
            }
        }
        if Instant::now() > deadline {
            bail!("fewer than {k} machines made after {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Calls the fake cloud answered for one endpoint, whatever their status.
pub fn calls(stats: &Value, endpoint: &str) -> u64 {
    stats["calls"][endpoint]
        .as_object()
        .map(|m| m.values().filter_map(Value::as_u64).sum())
        .unwrap_or(0)
}
