//! The storm at scale (issue 12): 1 000 machines while the provider answers 20 % of calls 503,
//! starts bursts of 429s and loses 10 % of create answers, and 10 kill -9s hit the workflows,
//! restate-server and talis-host in turn, each restarted with its state. It must end with
//! 1 000/1 000 ready, no duplicate machine, and nothing left after `project.delete`. The storm
//! itself is [`talis_stack::storm`], shared with `cargo xtask bench e2e` (`storm-1000`).

use std::time::{Duration, Instant};

use anyhow::Result;
use serde_json::json;
use talis_api::TaskStatus;
use talis_e2e::flow::*;
use talis_stack::storm;
use talis_stack::workflows::{FullStack, StackOptions};

const LIMIT: Duration = Duration::from_secs(240);

#[tokio::test(flavor = "multi_thread")]
async fn a_thousand_machines_through_faults_and_ten_kill9s_end_ready_once_and_clean() -> Result<()>
{
    let dir = tempfile::tempdir()?;
    let mut stack = FullStack::start(
        dir.path(),
        StackOptions {
            fake_config: Some(storm::FAKE_CONFIG.to_string()),
            ..StackOptions::default()
        },
    )
    .await?;
    let started = Instant::now();
    let (task_id, ids) = create_project(&stack, "storm", storm::INSTANCES, json!({})).await?;
    assert_eq!(ids.len(), storm::INSTANCES);
    wait_created(&stack, "storm", 1, LIMIT).await?;
    let mut mid_run = 0;
    for k in 0..storm::KILLS {
        // The task's status before each kill (the API may still be restarting: then unknown).
        if task(&stack, task_id)
            .await
            .is_ok_and(|t| t.status == TaskStatus::Running)
        {
            mid_run += 1;
        }
        stack.crash_and_restart(storm::victim(k)).await?;
        tokio::time::sleep(storm::KILL_EVERY).await;
    }
    eprintln!(
        "{mid_run}/{} kill -9s landed while the task ran ({:.1} s after the create)",
        storm::KILLS,
        started.elapsed().as_secs_f64()
    );
    // Machines boot over 5–35 s: at least the first round of kills (one of each victim) must
    // have hit a running task, or the test proves nothing.
    assert!(
        mid_run >= storm::VICTIMS.len(),
        "only {mid_run} kill -9s landed mid-run"
    );
    let t = wait_task(&stack, task_id, LIMIT).await?;
    assert_eq!(
        t.status,
        TaskStatus::Completed,
        "task after the storm: {t:?}"
    );
    let stats = assert_all_ready(&stack, "storm", storm::INSTANCES).await?;
    assert_eq!(
        stats["droplets"]["live"],
        storm::INSTANCES as u64,
        "{}",
        stats["droplets"]
    );
    eprintln!(
        "storm done in {:.1} s; calls: {}",
        started.elapsed().as_secs_f64(),
        stats["calls"]
    );
    // The faults really fired: 503s, 429s, and creates whose answer was lost.
    let answered = |status: &str| -> u64 {
        stats["calls"]
            .as_object()
            .into_iter()
            .flat_map(|m| m.values())
            .filter_map(|by_status| by_status[status].as_u64())
            .sum()
    };
    assert!(answered("503") > 0, "no 503: {}", stats["calls"]);
    assert!(answered("429") > 0, "no 429: {}", stats["calls"]);
    assert!(
        stats["calls"]["droplets_create"]["lost"].as_u64() > Some(0),
        "no lost create answer: {}",
        stats["calls"]
    );
    delete_and_assert_clean(&stack, "storm", LIMIT).await
}
