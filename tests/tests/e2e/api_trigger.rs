//! The workflow trigger on the full stack (restate-server, workflows, fake cloud, host): a call
//! that commits never fails because the trigger did, and the sweep dispatches what was missed.

use std::time::{Duration, Instant};

use anyhow::Result;
use serde_json::json;
use talis_api::TaskStatus;
use talis_e2e::flow;
use talis_stack::workflows::{FullStack, StackOptions};

const LIMIT: Duration = Duration::from_secs(90);

/// The trigger is real: with restate-server down the call still succeeds (the task is committed,
/// undispatched); once Restate is back, the sweep of a later request dispatches it and the
/// workflow runs it to the end.
#[tokio::test(flavor = "multi_thread")]
async fn a_failed_trigger_never_fails_the_call_and_the_sweep_dispatches_later() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut stack = FullStack::start(dir.path(), StackOptions::default()).await?;
    let (first, _) = flow::create_project(&stack, "p", 2, json!({})).await?;
    let done = flow::wait_task(&stack, first, LIMIT).await?;
    assert_eq!(done.status, TaskStatus::Completed, "{done:?}");
    assert!(done.dispatched_at.is_some());

    stack.restate.service.stop(Duration::from_secs(5)).await?;
    let (task, _) = flow::create_project(&stack, "q", 1, json!({})).await?;
    assert_eq!(flow::task(&stack, task).await?.dispatched_at, None);
    stack.restate.restart().await?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while flow::task(&stack, task).await?.dispatched_at.is_none() {
        anyhow::ensure!(
            Instant::now() < deadline,
            "task {task} was never re-triggered"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let done = flow::wait_task(&stack, task, LIMIT).await?;
    assert_eq!(done.status, TaskStatus::Completed, "{done:?}");
    flow::assert_all_ready(&stack, "q", 1).await?;
    Ok(())
}
