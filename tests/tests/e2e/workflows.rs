//! End-to-end tests of the durable task execution: real restate-server, real talis-workflows,
//! real talis-host running the API component, real fake cloud, all on loopback.

use std::time::Duration;

use anyhow::Result;
use serde_json::json;
use talis_api::{InstanceStatus, InstanceTerminate, TaskRef, TaskStatus};
use talis_e2e::flow::*;
use talis_stack::restate::{Ports, Restate};
use talis_stack::workflows::{FullStack, Options, StackOptions, Workflows};

const TASK_LIMIT: Duration = Duration::from_secs(90);

/// restate-server starts under a project-local state dir on loopback ports, the workflows
/// endpoint starts, and its registration exposes the TaskWorkflow handlers.
#[tokio::test(flavor = "multi_thread")]
async fn restate_and_workflows_start_and_register() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let restate = Restate::start(&dir.path().join("restate"), dir.path(), Ports::free()).await?;
    let opts = Options::new(
        "http://127.0.0.1:9",
        "workflows-test-secret-of-32-characters",
        "http://127.0.0.1:9",
        "tok",
    );
    let wf = Workflows::start(&opts, dir.path()).await?;
    restate.register(&wf.url()).await?;
    // Registering again (e.g. after a restart) is accepted.
    restate.register(&wf.url()).await?;

    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?;
    let services: serde_json::Value = http
        .get(format!("{}/services/TaskWorkflow", restate.admin_url()))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let mut handlers: Vec<String> = services["handlers"]
        .as_array()
        .expect("handlers")
        .iter()
        .map(|h| h["name"].as_str().unwrap_or_default().to_string())
        .collect();
    handlers.sort();
    assert_eq!(handlers, ["cancel", "run", "status"]);
    assert_eq!(services["ty"], "Workflow");

    // The UI is served by the admin port.
    let ui = http.get(restate.ui_url()).send().await?;
    assert!(ui.status().is_success(), "UI answered {}", ui.status());
    Ok(())
}

/// 100 machines reach ready with IPs, in few provider calls; deleting the project leaves
/// nothing at the provider.
#[tokio::test(flavor = "multi_thread")]
async fn hundred_instances_reach_ready_then_delete_leaves_nothing() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let stack = FullStack::start(dir.path(), StackOptions::default()).await?;
    let (task_id, ids) = create_project(&stack, "fleet", 100, json!({})).await?;
    assert_eq!(ids.len(), 100);
    let t = wait_task(&stack, task_id, TASK_LIMIT).await?;
    assert_eq!(t.status, TaskStatus::Completed, "task: {t:?}");
    let stats = assert_all_ready(&stack, "fleet", 100).await?;
    assert_eq!(stats["droplets"]["live"], 100);
    // One look-up of the project, one multi-create per 10 machines, one project-wide poll per
    // tick: far within the aim of 1.5 provider calls per instance.
    assert_eq!(calls(&stats, "droplets_create"), 10, "{}", stats["calls"]);
    let total = stats["total_calls"].as_u64().unwrap_or(0);
    assert!(total <= 30, "{total} provider calls: {}", stats["calls"]);
    // The task names the Restate invocation that ran it (to find it in the Restate UI).
    assert!(
        t.invocation_id
            .as_deref()
            .is_some_and(|i| i.starts_with("inv_")),
        "{:?}",
        t.invocation_id
    );
    // Every instance has its step history.
    assert!(t.logs.lines().count() >= 100, "{}", t.logs);

    delete_and_assert_clean(&stack, "fleet", TASK_LIMIT).await
}

/// Volumes are created, attached and recorded, and destroyed with the project.
#[tokio::test(flavor = "multi_thread")]
async fn volumes_are_attached_and_deleted_with_the_project() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let stack = FullStack::start(dir.path(), StackOptions::default()).await?;
    let vols = json!({"volumes": [{"name": "data", "size_gb": 10, "filesystem": "ext4", "mount_point": "/data"}]});
    let (task_id, _) = create_project(&stack, "withvol", 5, vols).await?;
    let t = wait_task(&stack, task_id, TASK_LIMIT).await?;
    assert_eq!(t.status, TaskStatus::Completed, "task: {t:?}");
    let stats = assert_all_ready(&stack, "withvol", 5).await?;
    assert_eq!(stats["volumes"]["live"], 5, "{}", stats["volumes"]);
    assert_eq!(stats["volumes"]["attached"], 5, "{}", stats["volumes"]);
    // Per machine one volume create and one droplet create that attaches it; no attach action.
    assert_eq!(calls(&stats, "volumes_create"), 5, "{}", stats["calls"]);
    assert_eq!(calls(&stats, "droplets_create"), 5, "{}", stats["calls"]);
    assert_eq!(
        calls(&stats, "volumeActions_post_byId"),
        0,
        "{}",
        stats["calls"]
    );
    for i in instances(&stack, "withvol").await? {
        assert_eq!(i.volume_details.len(), 1, "volume not recorded: {i:?}");
    }
    delete_and_assert_clean(&stack, "withvol", TASK_LIMIT).await
}

/// Terminating a running create task stops it, destroys what it made and ends `terminated`.
#[tokio::test(flavor = "multi_thread")]
async fn terminate_mid_run_cancels_and_compensates() -> Result<()> {
    let dir = tempfile::tempdir()?;
    // Machines take 3–4 s to boot, so the task is surely mid-run when terminated.
    let slow = format!(
        "boot_delay_ms = 3000\nboot_jitter_ms = 1000\nip_delay_ms = 0\n{}",
        PHONE_HOME_RETRIES
    );
    let stack = FullStack::start(
        dir.path(),
        StackOptions {
            fake_config: Some(slow),
            ..StackOptions::default()
        },
    )
    .await?;
    let (task_id, _) = create_project(&stack, "halt", 30, json!({})).await?;
    wait_created(&stack, "halt", 10, TASK_LIMIT).await?;
    admin(&stack).task_terminate(&TaskRef::new(task_id)).await?;
    let t = wait_task(&stack, task_id, TASK_LIMIT).await?;
    assert_eq!(t.status, TaskStatus::Terminated, "task: {t:?}");
    // The workflow compensates: every machine it made is destroyed, every instance terminated.
    let deadline = std::time::Instant::now() + TASK_LIMIT;
    loop {
        let stats = stack.fake_stats().await?;
        let list = instances(&stack, "halt").await?;
        let counts = by_status(&list);
        if stats["droplets"]["live"] == 0 && counts.get(&InstanceStatus::Terminated) == Some(&30) {
            assert_no_duplicates_or_orphans(&stats);
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not compensated: live {} statuses {counts:?}",
            stats["droplets"]["live"]
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(())
}

/// A terminal provider error (unknown size) fails fast with the provider's message; nothing
/// is left at the provider.
#[tokio::test(flavor = "multi_thread")]
async fn terminal_provider_error_fails_fast_with_the_message() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let stack = FullStack::start(dir.path(), StackOptions::default()).await?;
    let started = std::time::Instant::now();
    let (task_id, _) =
        create_project(&stack, "badsize", 3, json!({"size": "no-such-size"})).await?;
    let t = wait_task(&stack, task_id, TASK_LIMIT).await?;
    assert_eq!(t.status, TaskStatus::Failed, "task: {t:?}");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "took {:?}",
        started.elapsed()
    );
    for i in instances(&stack, "badsize").await? {
        assert_eq!(i.status, InstanceStatus::Failed, "{i:?}");
        assert!(
            i.error.contains("422"),
            "provider message not recorded: {i:?}"
        );
    }
    assert_eq!(stack.fake_stats().await?["droplets"]["live"], 0);
    Ok(())
}

/// 20 % 5xx answers, 429 bursts and stalled requests: still 100/100 ready, no duplicates, and
/// nothing left after delete.
#[tokio::test(flavor = "multi_thread")]
async fn provider_faults_still_give_all_ready_and_no_duplicates() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let faulty = format!(
        r#"boot_delay_ms = 200
boot_jitter_ms = 300
ip_delay_ms = 0
{PHONE_HOME_RETRIES}
[[faults]]
kind = "error_5xx"
probability = 0.2
status = 503
[[faults]]
kind = "rate_limit_429"
probability = 0.05
burst = 3
[[faults]]
kind = "stall"
probability = 0.05
stall_ms = 1500
[[faults]]
endpoint = "droplets_create"
kind = "lost_response"
count = 2
"#
    );
    let stack = FullStack::start(
        dir.path(),
        StackOptions {
            fake_config: Some(faulty),
            ..StackOptions::default()
        },
    )
    .await?;
    let (task_id, _) = create_project(&stack, "flaky", 100, json!({})).await?;
    let t = wait_task(&stack, task_id, Duration::from_secs(150)).await?;
    assert_eq!(t.status, TaskStatus::Completed, "task: {t:?}");
    let stats = assert_all_ready(&stack, "flaky", 100).await?;
    assert_eq!(stats["droplets"]["live"], 100);
    delete_and_assert_clean(&stack, "flaky", Duration::from_secs(150)).await
}

/// The provider answers 429 for longer than the client may hold a step
/// (`TALIS_PROVIDER_MAX_RATE_LIMIT_WAIT_MS` = 0 here): the round's batches are deferred, the
/// chunk sleeps durably, journals that the wait ended ("rate limit waited #0.0") and ensures
/// them again with a look-up ("ensure machines #0.1"); every machine is made once.
#[tokio::test(flavor = "multi_thread")]
async fn rate_limited_batches_are_slept_out_durably_and_made_once() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let limited = format!(
        r#"boot_delay_ms = 0
ip_delay_ms = 0
{PHONE_HOME_RETRIES}
[[faults]]
endpoint = "droplets_create"
kind = "rate_limit_429"
count = 1
burst = 2
"#
    );
    let stack = FullStack::start(
        dir.path(),
        StackOptions {
            fake_config: Some(limited),
            workflows_env: vec![("TALIS_PROVIDER_MAX_RATE_LIMIT_WAIT_MS".into(), "0".into())],
            ..StackOptions::default()
        },
    )
    .await?;
    let (task_id, _) = create_project(&stack, "limited", 30, json!({})).await?;
    let t = wait_task(&stack, task_id, TASK_LIMIT).await?;
    assert_eq!(t.status, TaskStatus::Completed, "task: {t:?}");
    let stats = assert_all_ready(&stack, "limited", 30).await?;
    assert_eq!(stats["droplets"]["live"], 30);
    assert!(
        stats["calls"]["droplets_create"]["429"].as_u64() >= Some(1),
        "no 429 answered: {}",
        stats["calls"]
    );
    let steps: Vec<String> = talis_stack::restate::query(
        &stack.restate.admin_url(),
        &format!(
            "SELECT j.name AS name FROM sys_journal j JOIN sys_invocation i ON j.id = i.id \
             WHERE i.target_service_name = 'TaskWorkflow' AND i.target_service_key = '{task_id}'"
        ),
    )
    .await?
    .iter()
    .filter_map(|r| r["name"].as_str().map(str::to_owned))
    .collect();
    for step in ["rate limit waited #0.0", "ensure machines #0.1"] {
        assert!(steps.iter().any(|s| s == step), "no {step:?} in {steps:?}");
    }
    delete_and_assert_clean(&stack, "limited", TASK_LIMIT).await
}

/// Phone-home retried like the script's `curl --retry`, and no rate limits.
const PHONE_HOME_RETRIES: &str = "rate_limit_per_minute = 4294967295
rate_limit_per_hour = 4294967295
[phone_home]
attempts = 60
retry_delay_ms = 500
timeout_ms = 5000";

/// Deleting a project while its machines are still being created stops the creation (its task
/// ends terminated), and the delete leaves nothing at the provider.
#[tokio::test(flavor = "multi_thread")]
async fn delete_during_creation_stops_it_and_leaves_nothing() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let slow = format!(
        "boot_delay_ms = 3000\nboot_jitter_ms = 1000\nip_delay_ms = 0\n{}",
        PHONE_HOME_RETRIES
    );
    let stack = FullStack::start(
        dir.path(),
        StackOptions {
            fake_config: Some(slow),
            ..StackOptions::default()
        },
    )
    .await?;
    let (create_task, _) = create_project(&stack, "gone", 40, json!({})).await?;
    wait_created(&stack, "gone", 5, TASK_LIMIT).await?;
    delete_and_assert_clean(&stack, "gone", TASK_LIMIT).await?;
    let t = wait_task(&stack, create_task, TASK_LIMIT).await?;
    assert_eq!(t.status, TaskStatus::Terminated, "create task: {t:?}");
    // Nothing reappears once both workflows are done.
    let stats = stack.fake_stats().await?;
    assert_eq!(stats["droplets"]["live"], 0, "{}", stats["droplets"]);
    assert_eq!(stats["orphans"]["count"], 0);
    Ok(())
}

/// Terminating some instances of a ready project destroys exactly their machines.
#[tokio::test(flavor = "multi_thread")]
async fn terminating_instances_destroys_only_theirs() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let stack = FullStack::start(dir.path(), StackOptions::default()).await?;
    let (task_id, ids) = create_project(&stack, "part", 10, json!({})).await?;
    let t = wait_task(&stack, task_id, TASK_LIMIT).await?;
    assert_eq!(t.status, TaskStatus::Completed, "task: {t:?}");
    let queued = admin(&stack)
        .instance_terminate(&InstanceTerminate {
            owner_id: None,
            project_name: "part".into(),
            instance_ids: ids[..3].to_vec(),
        })
        .await?;
    let term = queued.task_id.expect("a terminate task");
    let t = wait_task(&stack, term, TASK_LIMIT).await?;
    assert_eq!(t.status, TaskStatus::Completed, "terminate task: {t:?}");
    let list = instances(&stack, "part").await?;
    let counts = by_status(&list);
    assert_eq!(
        counts.get(&InstanceStatus::Terminated),
        Some(&3),
        "{counts:?}"
    );
    assert_eq!(counts.get(&InstanceStatus::Ready), Some(&7), "{counts:?}");
    let stats = stack.fake_stats().await?;
    assert_eq!(stats["droplets"]["live"], 7, "{}", stats["droplets"]);
    assert_eq!(stats["orphans"]["count"], 0);
    delete_and_assert_clean(&stack, "part", TASK_LIMIT).await
}
