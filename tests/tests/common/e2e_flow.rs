//! Helpers of the workflow end-to-end and chaos tests: create a project through the real API,
//! wait (bounded) for its task, read its instances, and check the fake cloud's counters.

#![allow(dead_code)]

use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use serde_json::{Value, json};
use talis_stack::workflows::FullStack;

/// Creates a project with `n` machines of one shape; returns (task id, instance ids).
pub async fn create_project(
    stack: &FullStack,
    name: &str,
    n: usize,
    extra: Value,
) -> Result<(u64, Vec<u64>)> {
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
    let created = stack
        .call("project.create", json!({"name": name, "instances": [req]}))
        .await?;
    let task = created["task_id"]
        .as_u64()
        .ok_or_else(|| anyhow::anyhow!("no task_id in {created}"))?;
    let ids = created["instance_ids"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_u64).collect())
        .unwrap_or_default();
    Ok((task, ids))
}

pub async fn task(stack: &FullStack, task_id: u64) -> Result<Value> {
    stack.call("task.get", json!({"task_id": task_id})).await
}

/// Waits until the task is terminal (completed, failed, terminated); fails after `limit`.
pub async fn wait_task(stack: &FullStack, task_id: u64, limit: Duration) -> Result<Value> {
    let deadline = Instant::now() + limit;
    loop {
        // The API may be restarting in chaos tests: keep asking until the deadline.
        if let Ok(t) = task(stack, task_id).await
            && matches!(
                t["status"].as_str(),
                Some("completed" | "failed" | "terminated")
            )
        {
            return Ok(t);
        }
        if Instant::now() > deadline {
            bail!(
                "task {task_id} not finished after {limit:?}: {}\nworkflows log:\n{}",
                task(stack, task_id)
                    .await
                    .map(|t| t.to_string())
                    .unwrap_or_default(),
                stack.workflows.service.log_tail(20)
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Every instance of a project (all pages).
pub async fn instances(stack: &FullStack, project: &str) -> Result<Vec<Value>> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = stack
            .call(
                "project.listInstances",
                json!({"name": project, "limit": 1000, "cursor": cursor}),
            )
            .await?;
        out.extend(page["rows"].as_array().cloned().unwrap_or_default());
        match page["pagination"]["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => return Ok(out),
        }
    }
}

/// Counts instances by status.
pub fn by_status(instances: &[Value]) -> std::collections::BTreeMap<String, usize> {
    let mut m = std::collections::BTreeMap::new();
    for i in instances {
        *m.entry(i["status"].as_str().unwrap_or("?").to_string())
            .or_insert(0) += 1;
    }
    m
}

/// Asserts every instance is ready with an IP and a machine, and no machine is duplicated.
pub async fn assert_all_ready(stack: &FullStack, project: &str, n: usize) -> Result<Value> {
    let list = instances(stack, project).await?;
    assert_eq!(list.len(), n, "instances listed");
    let counts = by_status(&list);
    assert_eq!(counts.get("ready"), Some(&n), "statuses: {counts:?}");
    for i in &list {
        assert!(
            !i["public_ip"].as_str().unwrap_or("").is_empty(),
            "no IP: {i}"
        );
        assert!(
            !i["provider_ref"].as_str().unwrap_or("").is_empty(),
            "no machine: {i}"
        );
    }
    let stats = stack.fake_stats().await?;
    assert_no_duplicates_or_orphans(&stats);
    Ok(stats)
}

/// The fake cloud's own count: no instance got two machines, nothing is left unowned.
fn assert_no_duplicates_or_orphans(stats: &Value) {
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
    let queued = stack
        .call("project.delete", json!({"name": project}))
        .await?;
    if let Some(t) = queued["task_id"].as_u64() {
        let t = wait_task(stack, t, limit).await?;
        assert_eq!(t["status"], "completed", "delete task: {t}");
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
            let made = list
                .iter()
                .filter(|i| !i["provider_ref"].as_str().unwrap_or("").is_empty())
                .count();
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
